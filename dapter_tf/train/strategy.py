"""The ``tf.distribute`` strategy a run trains under, and one step run on every replica of it."""

import functools

import tensorflow as tf

from dapter_tf.errors import DapterError
from dapter_tf.train.config import STRATEGIES


@functools.cache
def _mirrored_strategy() -> tf.distribute.MirroredStrategy:
    # One MirroredStrategy per process: a second one reuses the first one's collective instance
    # keys, and their all-reduces then abort with shape mismatches (seen with TF 2.21 on CPUs).
    # Runs that train several models in one process (the demo, a lambda sweep) share this one.
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def build_strategy(name: str) -> tf.distribute.Strategy:
    """Builds the ``tf.distribute`` strategy a run trains under.

    Args:
        name: ``"default"``: the no-op strategy on one device. ``"mirrored"``: synchronous data
            parallelism over every local GPU or, without GPUs, over every logical CPU device
            (``tf.config.set_logical_device_configuration`` splits a CPU, as the tests do).

    Raises:
        DapterError: on an unknown name.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored_strategy()
    raise DapterError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")


def check_batches(config, n_train: int, strategy) -> None:
    """Checks, before anything is written, that the batches fit the data and the replicas."""
    if config.batch_size % strategy.num_replicas_in_sync:
        raise DapterError(
            f"batch_size {config.batch_size} does not split over {strategy.num_replicas_in_sync} replicas"
        )
    if n_train < config.batch_size:
        raise DapterError(f"{n_train} training images do not fill one batch of {config.batch_size}; lower --batch_size")


def distribute_step(strategy, step_fn):
    """``step_fn`` run on every replica of ``strategy`` in one ``tf.function``, its outputs summed.

    ``step_fn(images, labels)`` returns per-replica scalars already divided by the global batch
    size, so the sum over replicas is the batch mean.
    """

    @tf.function
    def distributed_step(images, labels):
        per_replica = strategy.run(step_fn, args=(images, labels))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    return distributed_step

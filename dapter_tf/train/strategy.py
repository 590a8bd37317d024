"""The ``tf.distribute`` strategy a run trains under, and one step run on every replica of it."""

import functools
import os

import tensorflow as tf

from dapter_tf import cluster
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


@functools.cache
def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    # One per process too, and made before any other TensorFlow op runs: it configures the
    # process's collective ops, which TensorFlow allows only at start-up (the binaries build it
    # right after their flags, before any data is read).
    task = cluster.parse_tf_config(os.environ.get("TF_CONFIG"))
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as e:
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DapterError(f"cannot join the cluster TF_CONFIG describes: {first_line}") from None
    cluster.join(task)
    return strategy


def build_strategy(name: str) -> tf.distribute.Strategy:
    """Builds the ``tf.distribute`` strategy a run trains under.

    Args:
        name: ``"default"``: the no-op strategy on one device. ``"mirrored"``: synchronous data
            parallelism over every local GPU or, without GPUs, over every logical CPU device
            (``tf.config.set_logical_device_configuration`` splits a CPU, as the tests do).
            ``"multi_worker"``: the same over every worker of the cluster ``TF_CONFIG`` describes
            (``tf.distribute.MultiWorkerMirroredStrategy``), each worker using its local GPUs or
            its CPU; only the chief writes (``dapter_tf.cluster``).

    Raises:
        DapterError: on an unknown name, or a missing or malformed ``TF_CONFIG``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored_strategy()
    if name == "multi_worker":
        return _multi_worker_strategy()
    raise DapterError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")


def check_batches(config, n_train: int, strategy) -> None:
    """Checks, before anything is written, that the batches fit the data and the replicas (and XLA the step)."""
    if getattr(config, "xla", False):
        check_xla(strategy)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise DapterError(
            f"batch_size {config.batch_size} does not split over {strategy.num_replicas_in_sync} replicas: "
            f"give a multiple of {strategy.num_replicas_in_sync}"
        )
    if n_train < config.batch_size:
        raise DapterError(f"{n_train} training images do not fill one batch of {config.batch_size}; lower --batch_size")


def check_xla(strategy) -> None:
    """Refuses XLA where TensorFlow cannot compile the step: all-reduces on CPU devices."""
    if strategy.num_replicas_in_sync > 1 and not tf.config.list_logical_devices("GPU"):
        raise DapterError(
            "--xla cannot compile the all-reduce of several CPU replicas (TensorFlow: collectives are not "
            "implemented for CPU devices under XLA); use --xla with --strategy=default on CPUs, or on GPUs"
        )


def distribute_step(strategy, step_fn, xla: bool = False):
    """``step_fn`` run on every replica of ``strategy`` in one ``tf.function``, its outputs summed.

    ``step_fn(images, labels)`` returns per-replica scalars already divided by the global batch
    size, so the sum over replicas is the batch mean. With ``xla``, each replica's step is compiled
    by XLA (``jit_compile``), as Keras's own ``fit`` compiles it.
    """
    if xla:
        check_xla(strategy)
        step_fn = tf.function(step_fn, jit_compile=True)

    @tf.function
    def distributed_step(images, labels):
        per_replica = strategy.run(step_fn, args=(images, labels))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    return distributed_step


def barrier(strategy) -> None:
    """Returns once every worker has reached it: what the chief wrote before it, the others may read after.

    An all-reduce of one number, which no replica finishes before all have joined; on one process it
    returns at once.
    """
    if cluster.current() is not None:
        _all_reduce_one(strategy)()


@functools.cache
def _all_reduce_one(strategy):
    @tf.function  # Collectives run eagerly are slow and warn of it.
    def all_reduce():
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)

    return all_reduce

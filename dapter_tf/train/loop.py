"""The training loop both trainings share (keras-io's custom training loop guide, SimCLR's ``run.py``).

A compiled step under a ``tf.distribute`` strategy, a ``tf.train.CheckpointManager`` that lets a
killed run resume mid-epoch, TensorBoard summaries and a progress bar.
"""

import dataclasses
import os
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dapter_tf.data.images import ImageSet
from dapter_tf.data.pipeline import build_dataset
from dapter_tf.train.strategy import distribute_step


@dataclasses.dataclass(frozen=True)
class Trainable:
    """What a training loop trains, and how: the loop itself is the same for every model.

    Attributes:
        checkpoint: Everything that must survive a crash (models, optimizer).
        optimizer: Its ``iterations`` counts finished steps, so it says where to resume.
        step_fn: ``(images, labels) -> dict of per-replica scalars``, each already divided by the
            global batch size (summing over replicas gives the batch mean).
        eval_fn: ``() -> dict of floats``, run after every epoch.
        after_step: ``(finished steps) -> None``, run eagerly after every step and before a
            checkpoint is saved there (the adversarial defence restarts decoders in it); it must
            depend on the step count alone, so that a resumed run does what an uninterrupted one did.
    """

    checkpoint: tf.train.Checkpoint
    optimizer: object
    step_fn: Callable
    eval_fn: Callable = dict
    after_step: Callable | None = None


def run_training_loop(
    workdir: str,
    strategy,
    trainable: Trainable,
    train_set: ImageSet,
    labels: np.ndarray,
    config,
    deadline: float | None = None,
) -> dict:
    """Runs ``config.epochs`` epochs of ``trainable.step_fn``, resuming from the workdir's last checkpoint.

    Args:
        workdir: Holds ``checkpoints/`` and ``tb/``.
        strategy: The strategy the models were built under.
        trainable: The models' checkpoint, optimizer, step and evaluation.
        train_set: The training images.
        labels: Their labels for this task.
        config: A TargetConfig or DapterConfig (or any config with epochs, batch_size, seed,
            augment and checkpoint_every_steps).
        deadline: A ``time.time()`` after which training stops at the end of the step running
            then (a checkpoint is saved there); ``None``: train every epoch.

    Returns:
        ``{"resumed_from_step", "steps", "train/...", "eval/..."}`` of the last epoch.
    """
    checkpoint, optimizer, after_step = trainable.checkpoint, trainable.optimizer, trainable.after_step
    steps_per_epoch = len(train_set) // config.batch_size
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(workdir, "checkpoints"), max_to_keep=2)
    resumed_from = 0
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        resumed_from = int(optimizer.iterations.numpy())
        logging.info("resumed from %s at step %d", manager.latest_checkpoint, resumed_from)
        print(f"Resumed from checkpoint at step {resumed_from}.", flush=True)
    writer = tf.summary.create_file_writer(os.path.join(workdir, "tb"))

    distributed_step = distribute_step(strategy, trainable.step_fn)

    step = resumed_from
    summary = {}
    for epoch in range(step // steps_per_epoch, config.epochs):
        done = step - epoch * steps_per_epoch
        # Seeding the shuffle by epoch makes every epoch's order reproducible, so a resumed run
        # skips exactly the batches it had already trained on.
        dataset = build_dataset(
            train_set.images,
            labels,
            config.batch_size,
            shuffle_seed=config.seed * 1000 + epoch,
            augment=config.augment,
            drop_remainder=True,
        ).skip(done)
        print(f"Epoch {epoch + 1}/{config.epochs}", flush=True)
        bar = keras.utils.Progbar(steps_per_epoch, unit_name="step")
        bar.update(done)
        totals = {}
        for images, batch_labels in strategy.experimental_distribute_dataset(dataset):
            out = {k: float(v) for k, v in distributed_step(images, batch_labels).items()}
            step += 1
            if after_step is not None:
                after_step(step)
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + v
            bar.update(step - epoch * steps_per_epoch, values=list(out.items()))
            if step % config.checkpoint_every_steps == 0:
                manager.save(checkpoint_number=step)
            if deadline is not None and time.time() > deadline:
                break
        evaluation = trainable.eval_fn()
        summary = {f"train/{k}": v / max(1, step - epoch * steps_per_epoch - done) for k, v in totals.items()}
        summary.update({f"eval/{k}": v for k, v in evaluation.items()})
        with writer.as_default(step=step):
            for k, v in summary.items():
                tf.summary.scalar(k, v)
        writer.flush()
        manager.save(checkpoint_number=step)
        print("  " + "  ".join(f"{k}={v:.4f}" for k, v in summary.items()), flush=True)
        if deadline is not None and time.time() > deadline:
            print(f"Stopped at step {step}: out of time.", flush=True)
            break
    return {"resumed_from_step": resumed_from, "steps": step, **summary}

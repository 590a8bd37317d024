"""The training loop every training shares (keras-io's custom training loop guide, SimCLR's ``run.py``).

A compiled step under a ``tf.distribute`` strategy, a ``tf.train.CheckpointManager`` that lets a
killed run resume mid-epoch, TensorBoard summaries and a progress bar.

Under ``--strategy=multi_worker`` every worker runs this loop on its share of each global batch.
Only the chief writes into the workdir (``dapter_tf.cluster``): the others save their checkpoints
into a scratch folder they delete, and write no summaries. Every worker resumes from the chief's
last checkpoint, so a cluster restarted after it lost a worker (any worker, killed any way) carries
on from there. ``tf.distribute.experimental.PreemptionCheckpointHandler`` was weighed and not
used: it saves only on a preemption signal it can catch (not on SIGKILL, an out-of-memory kill or
a lost host, which the periodic checkpoints here cover anyway), keeps its own step counter and
folder layout instead of the mid-epoch resume this loop has, and its restart-on-preemption is
implemented for Google's platforms only.

A divergence guard stops a run whose loss or weights stop being finite (a learning rate far too
high): it names the step, keeps the last finite checkpoint (none is saved with a non-finite weight)
and lets the trainer write no model. A full disk, or a corrupt record, is one line too.
"""

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging

from dapter_tf import cluster, cluster_startup
from dapter_tf.data.pipeline import build_training_dataset, steps_per_epoch
from dapter_tf.data.tfrecords import tf_error_reason
from dapter_tf.errors import DapterError
from dapter_tf.records.files import no_space_left
from dapter_tf.train.strategy import distribute_step


@dataclasses.dataclass(frozen=True)
class Trainable:
    """What a training loop trains, and how: the loop itself is the same for every model.

    Attributes:
        checkpoint: Everything that must survive a crash (models, optimizer).
        optimizer: Updates the weights (the loop counts its steps itself: a float16 loss-scaling
            optimizer skips the updates of steps whose gradients overflow).
        step_fn: ``(images, labels) -> dict of per-replica scalars``, each already divided by the
            global batch size (summing over replicas gives the batch mean).
        eval_fn: ``() -> dict of floats``, run after every epoch.
        after_step: ``(finished steps) -> None``, run eagerly after every step and before a
            checkpoint is saved there (the adversarial defence restarts decoders in it); it must
            depend on the step count alone, so that a resumed run does what an uninterrupted one did.
        variables: The trained variables: the divergence guard checks that they are finite before
            every checkpoint (the step's figures it checks at every step).
    """

    checkpoint: tf.train.Checkpoint
    optimizer: object
    step_fn: Callable
    eval_fn: Callable = dict
    after_step: Callable | None = None
    variables: tuple = ()


class DivergedError(DapterError):
    """Training stopped because a loss or a weight was no longer finite (the divergence guard)."""


def _first_non_finite(values: dict) -> str | None:
    """The name of the first of a step's figures that is NaN or infinite, or None."""
    return next((k for k, v in values.items() if not math.isfinite(v)), None)


def _all_finite(variables) -> bool:
    """Whether every floating-point variable holds finite values only (seed generators' states are integers)."""
    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables if tf.as_dtype(v.dtype).is_floating)


def _diverged(step: int, total: int, what: str, config, manager) -> DivergedError:
    """The divergence guard's one line: the step, what went non-finite, the likely cause, what was kept."""
    rate = getattr(config, "learning_rate", None)
    cause = (
        f"the learning rate {rate:g} is likely too high: lower --learning_rate"
        if rate is not None
        else "lower the learning rate"
    )
    latest = manager.latest_checkpoint
    kept = (
        f"the last finite checkpoint (step {latest.rpartition('-')[2]}) is kept in {manager.directory}"
        if latest
        else "no checkpoint had been saved"
    )
    return DivergedError(
        f"training diverged at step {step} of {total}: {what} ({cause}, in a new --workdir); {kept}; "
        "no model was written"
    )


def _restore(trainable: Trainable, latest: str | None) -> tf.Variable:
    """Restores ``latest`` (if any) into the trainable's checkpoint; returns the loop's step count in it.

    The loop counts its own steps (see ``Trainable.optimizer``) in a ``loop_step`` variable it adds
    to the checkpoint; a checkpoint from before it counted resumes from the optimizer's count.
    """
    checkpoint = trainable.checkpoint
    loop_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="loop_step")
    counted = latest and tf.train.load_checkpoint(latest).has_tensor("loop_step/.ATTRIBUTES/VARIABLE_VALUE")
    if counted or not latest:
        checkpoint.loop_step = loop_step
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        if not counted:
            loop_step.assign(trainable.optimizer.iterations)
            checkpoint.loop_step = loop_step
        logging.info("resumed from %s at step %d", latest, int(loop_step.numpy()))
        print(f"Resumed from checkpoint at step {int(loop_step.numpy())}.", flush=True)
    return loop_step


def run_training_loop(
    workdir: str,
    strategy,
    trainable: Trainable,
    train_set,
    labels,
    config,
    deadline: float | None = None,
) -> dict:
    """Runs ``config.epochs`` epochs of ``trainable.step_fn``, resuming from the workdir's last checkpoint.

    Args:
        workdir: Holds ``checkpoints/`` and ``tb/`` (written by the chief alone).
        strategy: The strategy the models were built under.
        trainable: The models' checkpoint, optimizer, step and evaluation.
        train_set: The training images: an ``ImageSet`` or a streamed ``RecordSet``.
        labels: Their labels for this task (``pipeline.training_labels``).
        config: A TargetConfig or DapterConfig (or any config with epochs, batch_size, seed,
            augment and checkpoint_every_steps; ``xla`` if it has one).
        deadline: A ``time.time()`` after which training stops at the end of the step running
            then (a checkpoint is saved there); ``None``: train every epoch. One process only:
            workers' clocks would stop them at different steps.

    Returns:
        ``{"resumed_from_step", "steps", "train/...", "eval/..."}`` of the last epoch.
    """
    checkpoint, after_step = trainable.checkpoint, trainable.after_step
    chief = cluster.is_chief()
    steps = steps_per_epoch(train_set, config.batch_size, cluster.num_workers())
    chief_dir = os.path.join(workdir, "checkpoints")
    scratch = None if chief else cluster.scratch_dir(workdir)
    manager = tf.train.CheckpointManager(
        checkpoint, chief_dir if chief else os.path.join(scratch, "checkpoints"), max_to_keep=2
    )
    loop_step = _restore(trainable, tf.train.latest_checkpoint(chief_dir))  # The chief's, on every worker.
    resumed_from = int(loop_step.numpy())
    writer = tf.summary.create_file_writer(os.path.join(workdir, "tb")) if chief else tf.summary.create_noop_writer()

    distributed_step = distribute_step(strategy, trainable.step_fn, getattr(config, "xla", False))

    total = steps * config.epochs

    def save(at_step: int) -> None:
        """Saves a checkpoint, never one holding a non-finite weight (the divergence guard)."""
        if not _all_finite(trainable.variables):
            raise _diverged(at_step, total, "a weight is no longer finite", config, manager)
        manager.save(checkpoint_number=at_step)

    step = resumed_from
    summary = {}
    try:
        for epoch in range(step // steps, config.epochs):
            done = step - epoch * steps

            def dataset_fn(input_context, epoch=epoch, done=done):
                # Seeding the shuffle by epoch makes every epoch's order reproducible, so a resumed run
                # skips exactly the batches it had already trained on.
                return build_training_dataset(
                    train_set,
                    labels,
                    config.batch_size,
                    seed=config.seed * 1000 + epoch,
                    augment=config.augment,
                    skip_batches=done,
                    input_context=input_context,
                )

            print(f"Epoch {epoch + 1}/{config.epochs}", flush=True)
            # A bar redrawn at every step suits a terminal; in a log file (dapter-protect's, a CI
            # job's) it is one line per epoch (Keras' verbose=2), not a line per step.
            bar = keras.utils.Progbar(steps, unit_name="step", verbose=1 if sys.stdout.isatty() else 2)
            bar.update(done)
            totals = {}
            for images, batch_labels in strategy.distribute_datasets_from_function(dataset_fn):
                out = {k: float(v) for k, v in distributed_step(images, batch_labels).items()}
                step += 1
                cluster_startup.note_step(step)  # For the line a signal ends a cluster worker with.
                bad = _first_non_finite(out)
                if bad is not None:
                    raise _diverged(step, total, f"{bad} became {out[bad]}", config, manager)
                loop_step.assign(step)
                if after_step is not None:
                    after_step(step)
                for k, v in out.items():
                    totals[k] = totals.get(k, 0.0) + v
                bar.update(step - epoch * steps, values=list(out.items()))
                if step % config.checkpoint_every_steps == 0:
                    save(step)
                if deadline is not None and time.time() > deadline:
                    break
            evaluation = trainable.eval_fn()
            summary = {f"train/{k}": v / max(1, step - epoch * steps - done) for k, v in totals.items()}
            summary.update({f"eval/{k}": v for k, v in evaluation.items()})
            with writer.as_default(step=step):
                for k, v in summary.items():
                    tf.summary.scalar(k, v)
            writer.flush()
            save(step)
            print("  " + "  ".join(f"{k}={v:.4f}" for k, v in summary.items()), flush=True)
            if deadline is not None and time.time() > deadline:
                print(f"Stopped at step {step}: out of time.", flush=True)
                break
    except (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError) as e:
        if cluster.current() is None:
            raise
        raise DapterError(
            f"lost a worker of the cluster at step {step + 1} ({type(e).__name__}); restart every "
            f"worker with the same command: training resumes from the chief's last checkpoint"
        ) from None
    except tf.errors.DataLossError as e:
        raise DapterError(
            f"a training record could not be read at step {step + 1} ({tf_error_reason(e)}): "
            "rewrite the records with dapter-write-records"
        ) from None
    except (OSError, tf.errors.OpError) as e:
        if not no_space_left(e):
            raise
        raise DapterError(
            f"no space left on device while writing {workdir} at step {step}: free some space and rerun "
            f"the same command (training resumes from {manager.latest_checkpoint or 'the start'})"
        ) from None
    if scratch is not None:
        cluster.remove_scratch(scratch)
    return {"resumed_from_step": resumed_from, "steps": step, **summary}

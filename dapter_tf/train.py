"""Training loops: the target (DLIS) model, and the converter on L_dap against the frozen target.

Both loops share one shape (keras-io's custom training loop guide, SimCLR's ``run.py``): a
compiled step under a ``tf.distribute`` strategy, a ``tf.train.CheckpointManager`` that lets a
killed run resume mid-epoch, TensorBoard summaries and a progress bar. Every file a run leaves in
its workdir is written atomically (temp file, then rename), so a crash never leaves half a file.
"""

import dataclasses
import functools
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dapter_tf import classifier, evaluate, losses
from dapter_tf.data import DataConfig, ImageSet, build_dataset
from dapter_tf.defences.adversarial import AdversarialDecoders, AdversaryConfig, mean_image_error
from dapter_tf.errors import DapterError
from dapter_tf.model import (
    DEFAULT_FILTERS,
    DEFAULT_OUTPUT_STEP,
    build_converter,
    check_image_size,
    check_output_block,
    check_output_step,
)
from dapter_tf.tasks import Task

STRATEGIES = ("default", "mirrored")
# What L_acc compares the target's answer on converted images with (DapterConfig.acc_labels).
ACC_LABELS = ("true", "target")
TARGET_FILE = "target.keras"
CONVERTER_FILE = "converter.keras"


def _check_training_fields(config) -> None:
    if config.epochs < 1:
        raise DapterError(f"epochs must be >= 1, got {config.epochs}")
    if config.batch_size < 1:
        raise DapterError(f"batch_size must be >= 1, got {config.batch_size}")
    if not config.learning_rate > 0:
        raise DapterError(f"learning_rate must be > 0, got {config.learning_rate}")
    if config.strategy not in STRATEGIES:
        raise DapterError(f"unknown strategy {config.strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    if config.checkpoint_every_steps < 1:
        raise DapterError(f"checkpoint_every_steps must be >= 1, got {config.checkpoint_every_steps}")


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    """Training of a target (DLIS) model: what the provider already has before DAPter.

    Attributes:
        data: Where the images come from.
        model: A name from ``classifier.TARGET_BUILDERS``.
        width: The model's width (``None``: the builder's default).
        epochs: Passes over the training images.
        batch_size: Global batch size, split across replicas.
        learning_rate: Adam's initial learning rate, decayed to 0 over the run (cosine).
        seed: Seeds weights, shuffling and the data order.
        strategy: ``"default"`` (one device) or ``"mirrored"`` (every local GPU, or every logical CPU).
        augment: Random flips and 4-pixel shifts.
        checkpoint_every_steps: Save a checkpoint this often (and at every epoch's end).
        init_model: A trained classifier's ``.keras`` file to start from (transfer learning, as the
            auto-recognition attacker of §5.1 fine-tunes one); its architecture replaces ``model``
            and ``width``. Empty: random initialisation.
        l2: Weight of the L2 regulariser, ``l2 * sum(||kernel||^2) / 2`` over the convolution and
            dense kernels, added to the cross-entropy (§5.1's "regularization part"); 0: none.
    """

    data: DataConfig = DataConfig()
    model: str = "resnet18"
    width: int | None = None
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    strategy: str = "default"
    augment: bool = True
    checkpoint_every_steps: int = 200
    init_model: str = ""
    l2: float = 0.0

    def __post_init__(self):
        classifier.check_target_name(self.model)
        if self.width is not None and self.width < 1:
            raise DapterError(f"width must be >= 1, got {self.width}")
        if not self.l2 >= 0:
            raise DapterError(f"l2 must be >= 0, got {self.l2}")
        _check_training_fields(self)


@dataclasses.dataclass(frozen=True)
class DapterConfig:
    """Training of a converter against a frozen target on L_dap (Eq. 1).

    Attributes:
        data: Where the images come from.
        target_path: The trained target's ``.keras`` file.
        lambda_: lambda of Eq. 1, in [0, 1]; 0.9 is the paper's sweet point (§7.1).
        filters: The converter's channels at full, half and quarter resolution.
        epochs: Passes over the training images.
        batch_size: Global batch size, split across replicas.
        learning_rate: Adam's learning rate (the initial one with ``cosine_decay``).
        seed: Seeds weights, shuffling and the data order.
        strategy: ``"default"`` or ``"mirrored"``.
        augment: Random flips and 4-pixel shifts of the training images.
        checkpoint_every_steps: Save a checkpoint this often (and at every epoch's end).
        eval_images: Test images measured at the end of every epoch (TensorBoard); the final
            measurement uses all of them.
        output_step: The converter sends pixels on the grid 128 + k * ``output_step`` levels
            (``model.OutputLevels``); 1 is the paper's plain sigmoid output.
        init_converter: A trained converter's ``.keras`` file (or workdir) to start from, as the
            fine-tuning rounds of the lambda tuner (§7.1) do; empty: random initialisation.
        cosine_decay: Decay the learning rate to 0 over the run (cosine), as target training does;
            off, it stays constant.
        output_block: The coarse output code (``model.build_converter``): one colour per
            ``output_block`` x ``output_block`` block; 1 is the paper's converter.
        adversary: The adversarial reconstruction defence (``defences.adversarial``); its default
            (weight 0) is the paper's L_dap alone.
        acc_labels: What L_acc compares the target's answer on converted images with: ``true``, the
            label (Eq. 4), or ``target``, the target's own softmax on the original image
            (``losses.distillation_loss``, beyond the paper).
    """

    data: DataConfig = DataConfig()
    target_path: str = ""
    lambda_: float = 0.9
    filters: tuple = DEFAULT_FILTERS
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    strategy: str = "default"
    augment: bool = True
    checkpoint_every_steps: int = 200
    eval_images: int = 1000
    output_step: int = DEFAULT_OUTPUT_STEP
    init_converter: str = ""
    cosine_decay: bool = False
    output_block: int = 1
    adversary: AdversaryConfig = AdversaryConfig()
    acc_labels: str = "true"

    def __post_init__(self):
        losses.check_lambda(self.lambda_)
        check_output_step(self.output_step)
        check_output_block(self.output_block)
        if self.acc_labels not in ACC_LABELS:
            raise DapterError(f"acc_labels must be one of {', '.join(ACC_LABELS)}, got {self.acc_labels!r}")
        if not self.target_path:
            raise DapterError("a target model is needed: give the .keras file of a trained target")
        # Recorded absolute, so that export and release find it from any directory.
        object.__setattr__(self, "target_path", os.path.abspath(self.target_path))
        if len(self.filters) != 3 or min(self.filters) < 1:
            raise DapterError(f"filters must be three positive channel counts, got {self.filters}")
        if self.eval_images < 1:
            raise DapterError(f"eval_images must be >= 1, got {self.eval_images}")
        _check_training_fields(self)


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


def write_json(path: str, obj) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_model(model: keras.Model, path: str) -> None:
    """Saves ``model`` as a ``.keras`` file, atomically."""
    tmp = f"{path[: -len('.keras')]}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def _check_batches(config, n_train: int, strategy) -> None:
    """Checks, before anything is written, that the batches fit the data and the replicas."""
    if config.batch_size % strategy.num_replicas_in_sync:
        raise DapterError(
            f"batch_size {config.batch_size} does not split over {strategy.num_replicas_in_sync} replicas"
        )
    if n_train < config.batch_size:
        raise DapterError(f"{n_train} training images do not fill one batch of {config.batch_size}; lower --batch_size")


def config_to_dict(config) -> dict:
    """A config dataclass as plain JSON values (tuples become lists), as ``config.json`` holds it."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=_json_default))


def prepare_workdir(workdir: str, config) -> None:
    """Creates ``workdir`` and records ``config`` in it, or checks it against the run it holds.

    A workdir that already holds a run resumes that run, so its config must match, except for
    ``epochs`` (a finished run may be extended). A field the record lacks was added to the config
    after that run was made: it matches if the new config leaves it at its default.

    Raises:
        DapterError: if the workdir holds a run with another config.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    new = config_to_dict(config)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        old = _fill_defaults(old, config)
        if old.get("target_path"):  # Older runs recorded it as given, relative to where they started.
            old["target_path"] = os.path.abspath(old["target_path"])
        changed = sorted(k for k in set(old) | set(new) if k != "epochs" and old.get(k) != new.get(k))
        if changed:
            raise DapterError(
                f"{workdir} holds a run with another config (differs in: {', '.join(changed)}); "
                f"use a new --workdir or the same flags to resume it"
            )
    write_json(path, new)


def _fill_defaults(record: dict, config) -> dict:
    """``record`` (a ``config.json``) with the fields it lacks set to the defaults of ``config``'s type.

    Nested configs (a spec inside a loop config) are filled the same way, from their own types.
    """
    filled = dict(record)
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in filled:
            if dataclasses.is_dataclass(value) and isinstance(filled[field.name], dict):
                filled[field.name] = _fill_defaults(filled[field.name], value)
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            continue
        plain = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else default
        filled[field.name] = json.loads(json.dumps(plain, default=_json_default))
    return filled


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


def run_training_loop(
    *,
    workdir: str,
    strategy,
    checkpoint: tf.train.Checkpoint,
    optimizer,
    step_fn,
    train_set: ImageSet,
    labels: np.ndarray,
    config,
    eval_fn,
    after_step=None,
    deadline: float | None = None,
) -> dict:
    """Runs ``config.epochs`` epochs of ``step_fn``, resuming from the workdir's last checkpoint.

    Args:
        workdir: Holds ``checkpoints/`` and ``tb/``.
        strategy: The strategy the models were built under.
        checkpoint: Everything that must survive a crash (models, optimizer).
        optimizer: Its ``iterations`` counts finished steps, so it says where to resume.
        step_fn: ``(images, labels) -> dict of per-replica scalars``, each already divided by the
            global batch size (summing over replicas gives the batch mean).
        train_set: The training images.
        labels: Their labels for this task.
        config: A TargetConfig or DapterConfig.
        eval_fn: ``() -> dict of floats``, run after every epoch.
        after_step: ``(finished steps) -> None``, run eagerly after every step and before a
            checkpoint is saved there (the adversarial defence restarts decoders in it); it must
            depend on the step count alone, so that a resumed run does what an uninterrupted one did.
        deadline: A ``time.time()`` after which training stops at the end of the step running
            then (a checkpoint is saved there); ``None``: train every epoch.

    Returns:
        ``{"resumed_from_step", "steps", "train/...", "eval/..."}`` of the last epoch.
    """
    steps_per_epoch = len(train_set) // config.batch_size
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(workdir, "checkpoints"), max_to_keep=2)
    resumed_from = 0
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        resumed_from = int(optimizer.iterations.numpy())
        logging.info("resumed from %s at step %d", manager.latest_checkpoint, resumed_from)
        print(f"Resumed from checkpoint at step {resumed_from}.", flush=True)
    writer = tf.summary.create_file_writer(os.path.join(workdir, "tb"))

    distributed_step = distribute_step(strategy, step_fn)

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
        evaluation = eval_fn()
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


def train_target(config: TargetConfig, task: Task, train_set: ImageSet, test_set: ImageSet, workdir: str) -> dict:
    """Trains a target model and saves it as ``workdir/target.keras``.

    Returns:
        Results: test accuracy, steps, and whether the run resumed.
    """
    strategy = build_strategy(config.strategy)
    _check_batches(config, len(train_set), strategy)
    if config.init_model:
        initial = _load_initial_model(config.init_model, train_set.images.shape[1:], task)  # Fails fast.
    prepare_workdir(workdir, config)
    finished = finished_results(workdir, config, len(train_set), TARGET_FILE)
    if finished is not None:
        print(f"{workdir} holds this run, finished: nothing to do (its results are kept)", flush=True)
        return finished
    keras.utils.set_random_seed(config.seed)
    labels = train_set.labels[task.target_label]
    with strategy.scope():
        if config.init_model:
            # Cloned under the strategy's scope so its variables are mirrored like a new model's.
            model = keras.models.clone_model(initial)
            model.set_weights(initial.get_weights())
        else:
            model = classifier.build_target(config.model, train_set.images.shape[1:], task.num_classes, config.width)
        kernels = [w for w in model.trainable_variables if w.path.endswith("kernel")]
        # Cosine decay to 0 over the run: a constant rate leaves batch-norm targets trained on a few
        # thousand images swinging by 5-10 points of test accuracy from one epoch to the next.
        schedule = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * (len(train_set) // config.batch_size)
        )
        optimizer = keras.optimizers.Adam(schedule)
        optimizer.build(model.trainable_variables)

    def step_fn(images, batch_labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = losses.accuracy_loss(batch_labels, logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
            if config.l2:
                # Added once per step in all: each replica adds its 1/replicas share.
                loss += tf.nn.scale_regularization_loss(config.l2 * tf.add_n([tf.nn.l2_loss(k) for k in kernels]))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(batch_labels, tf.int64)), tf.float32)
        return {"loss": loss, "accuracy": tf.reduce_sum(correct) / config.batch_size}

    test_labels = test_set.labels[task.target_label]

    def eval_fn():
        return {"accuracy": evaluate.target_accuracy(model, test_set.images, test_labels)}

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    start = time.time()
    loop = run_training_loop(
        workdir=workdir,
        strategy=strategy,
        checkpoint=checkpoint,
        optimizer=optimizer,
        step_fn=step_fn,
        train_set=train_set,
        labels=labels,
        config=config,
        eval_fn=eval_fn,
    )
    save_model(model, os.path.join(workdir, TARGET_FILE))
    results = {
        "model": model.name,
        "replicas": int(strategy.num_replicas_in_sync),
        "parameters": int(model.count_params()),
        # The last epoch's evaluation already measured the final model on the whole test set; a
        # rerun of a finished run trains no epoch and so measures it here.
        "test_accuracy": (
            loop["eval/accuracy"]
            if "eval/accuracy" in loop
            else evaluate.target_accuracy(model, test_set.images, test_labels)
        ),
        "train_seconds": time.time() - start,
        **loop,
    }
    write_json(os.path.join(workdir, "results.json"), results)
    return results


def _load_initial_model(path: str, input_shape, task: Task) -> keras.Model:
    """Loads the classifier a fine-tuning run starts from, and checks that it fits the images and task."""
    model = classifier.load_model_file(path, "initial model")
    if tuple(model.input_shape[1:3]) not in ((None, None), tuple(input_shape[:2])):
        raise DapterError(
            f"{path} takes {model.input_shape[1]}x{model.input_shape[2]} images, not {input_shape[0]}x{input_shape[1]}"
        )
    if model.output_shape[-1] != task.num_classes:
        raise DapterError(
            f"{path} has {model.output_shape[-1]} outputs but label {task.target_label!r} "
            f"has {task.num_classes} classes"
        )
    return model


def build_dapter_step(
    converter: keras.Model,
    target: keras.Model,
    optimizer,
    lambda_: float,
    global_batch_size: int,
    adversary: AdversarialDecoders | None = None,
    trivial_error: float = 1.0,
    acc_labels: str = "true",
):
    """Builds one replica's L_dap training step (the GAN-generator pattern of keras-io's guides).

    Both models run inside the tape, but only the converter's weights get gradients; the target is
    called with ``training=False`` so its batch-norm statistics do not move either. With an
    adversary, its decoders first train on this batch's converted images (the converter fixed),
    then the converter trains on L_dap + weight * L_adv against the updated decoders
    (``defences.adversarial``): the two players alternate, as a GAN's discriminator and generator.

    Args:
        converter: The converter being trained.
        target: The frozen target.
        optimizer: Updates the converter.
        lambda_: lambda of Eq. 1.
        global_batch_size: Examples per step over all replicas; losses are averaged over it.
        adversary: The online decoders of the adversarial defence, or ``None`` (L_dap alone).
        trivial_error: E0 of L_adv (the mean training image's mean squared error).
        acc_labels: ``true`` (Eq. 4) or ``target`` (distil the target's answer on the original).

    Returns:
        ``step_fn(images, labels) -> {"L_dap", "L_eta", "L_acc"}`` (with an adversary also
        ``"L_adv"``, ``"L_total"`` and each decoder's ``"adversary_<k>_mse"``), each a replica's
        share of the global batch mean.
    """
    lambda_ = losses.check_lambda(lambda_)

    def step_fn(images, labels):
        soft_labels = None
        if acc_labels == "target":
            soft_labels = tf.stop_gradient(tf.nn.softmax(target(images, training=False)))
        with tf.GradientTape() as tape:
            converted = converter(images, training=True)
            decoder_losses = {}
            if adversary is not None:
                with tape.stop_recording():
                    decoder_losses = adversary.train_step(converted, images)
            logits = target(converted, training=False)
            terms = losses.dap_loss(converted, labels, logits, lambda_, soft_labels)
            terms["total"] = terms["dap"]
            if adversary is not None:
                terms["adv"] = adversary.penalty(converted, images, trivial_error)
                terms["total"] = terms["dap"] + adversary.config.weight * terms["adv"]
            mean = {k: tf.nn.compute_average_loss(v, global_batch_size=global_batch_size) for k, v in terms.items()}
        grads = tape.gradient(mean["total"], converter.trainable_variables)
        optimizer.apply(grads, converter.trainable_variables)
        out = {"L_dap": mean["dap"], "L_eta": mean["eta"], "L_acc": mean["acc"]}
        if adversary is not None:
            out.update({"L_adv": mean["adv"], "L_total": mean["total"], **decoder_losses})
        return out

    return step_fn


def train_dapter(config: DapterConfig, task: Task, train_set: ImageSet, test_set: ImageSet, workdir: str) -> dict:
    """Trains a converter on L_dap against the frozen target; saves ``workdir/converter.keras``.

    Only the converter's weights move: the target is frozen, called with ``training=False`` (its
    batch-norm statistics stay put) and left out of the gradient.

    Returns:
        Results: the full test-set measurement of ``evaluate.evaluate_converter`` plus training info.
    """
    strategy = build_strategy(config.strategy)
    _check_batches(config, len(train_set), strategy)
    with strategy.scope():
        target = classifier.load_target(config.target_path)  # Fails fast, before the workdir exists.
    if target.output_shape[-1] != task.num_classes:
        raise DapterError(
            f"{config.target_path} has {target.output_shape[-1]} outputs but task {task.name!r} "
            f"has {task.num_classes} classes"
        )
    check_image_size(*train_set.images.shape[1:3], config.output_block)
    takes = tuple(target.input_shape[1:3])
    if None not in takes and takes != tuple(train_set.images.shape[1:3]):
        # Before the workdir is made: a refused run leaves nothing that blocks the corrected one.
        raise DapterError(
            f"{config.target_path} takes {takes[0]}x{takes[1]} images but the data are "
            f"{train_set.images.shape[1]}x{train_set.images.shape[2]}: train at the target's size (--image_size)"
        )
    if config.init_converter:
        initial = load_converter(config.init_converter)  # Fails fast too.
    prepare_workdir(workdir, config)
    finished = finished_results(workdir, config, len(train_set), CONVERTER_FILE)
    if finished is not None:
        print(f"{workdir} holds this run, finished: nothing to do (its results are kept)", flush=True)
        return finished
    keras.utils.set_random_seed(config.seed)
    labels = train_set.labels[task.target_label]
    adversary, trivial_error = None, 1.0
    with strategy.scope():
        converter = build_converter(config.filters, output_step=config.output_step, output_block=config.output_block)
        if config.init_converter:
            _copy_weights(initial, converter, config.init_converter)
        rate = config.learning_rate
        if config.cosine_decay:
            rate = keras.optimizers.schedules.CosineDecay(rate, config.epochs * (len(train_set) // config.batch_size))
        optimizer = keras.optimizers.Adam(rate)
        optimizer.build(converter.trainable_variables)
        if config.adversary.enabled:
            # The decoders' prior: what the adversary knows without any converted image.
            mean_image = train_set.images.mean(axis=0, dtype=np.float64).astype(np.float32) / 255.0
            trivial_error = mean_image_error(train_set.images, mean_image)
            adversary = AdversarialDecoders(config.adversary, mean_image, config.batch_size, config.seed)

    step_fn = build_dapter_step(
        converter, target, optimizer, config.lambda_, config.batch_size, adversary, trivial_error, config.acc_labels
    )
    test_labels = test_set.labels[task.target_label]
    eval_set = test_set.take(config.eval_images)

    def eval_fn():
        m = evaluate.evaluate_converter(
            converter, target, eval_set.images, eval_set.labels[task.target_label], with_bandwidth=False
        )
        return {k: m[k] for k in ("accuracy_converted", "entropy_converted", "entropy_ratio")}

    checkpoint = tf.train.Checkpoint(
        converter=converter, optimizer=optimizer, **(adversary.trackables() if adversary else {})
    )

    def restart_decoders(step: int) -> None:
        for k in adversary.restart_due(step):
            adversary.restart(k, step)

    start = time.time()
    loop = run_training_loop(
        workdir=workdir,
        strategy=strategy,
        checkpoint=checkpoint,
        optimizer=optimizer,
        step_fn=step_fn,
        train_set=train_set,
        labels=labels,
        config=config,
        eval_fn=eval_fn,
        after_step=restart_decoders if adversary else None,
    )
    train_seconds = time.time() - start
    save_model(converter, os.path.join(workdir, CONVERTER_FILE))
    results = {
        "lambda": config.lambda_,
        "output_block": config.output_block,
        "adversary_weight": config.adversary.weight,
        "replicas": int(strategy.num_replicas_in_sync),
        "converter_parameters": int(converter.count_params()),
        "train_seconds": train_seconds,
        **loop,
        **evaluate.evaluate_converter(converter, target, test_set.images, test_labels),
    }
    write_json(os.path.join(workdir, "results.json"), results)
    return results


def recorded_target_path(workdir: str, override: str = "") -> str:
    """The target a train_dapter workdir's converter was trained against, as a path that opens from here.

    ``config.json`` records ``target_path`` as the training run was given it (since issue 17: made
    absolute). A relative record from an older run is tried from here, then from the workdir.

    Args:
        workdir: A ``train_dapter`` workdir.
        override: A target given on the command line (``--target``): used as it is.

    Raises:
        DapterError: on a folder that is no workdir, or a recorded target that is not found.
    """
    if override:
        return override
    config_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(config_path):
        raise DapterError(f"{workdir} is not a train_dapter workdir (no config.json)")
    with open(config_path) as f:
        recorded = json.load(f).get("target_path") or ""
    if not recorded:
        raise DapterError(f"{config_path} names no target_path: give --target")
    for candidate in (recorded, os.path.join(workdir, recorded)):
        if os.path.isfile(candidate):
            return candidate
    raise DapterError(
        f"{config_path} names target {recorded}, which is not found from here or from {workdir}: give --target"
    )


def finished_results(workdir: str, config, train_images: int, model_file: str) -> dict | None:
    """A finished run's ``results.json``, or None when ``workdir`` holds no finished run of ``config``.

    A run is finished when its results record every step of ``config.epochs`` epochs and its model
    file is there; rerunning it is then a no-op that keeps its records (and the model file's bytes)
    as they are. A longer ``epochs`` resumes it instead.
    """
    path = os.path.join(workdir, "results.json")
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(workdir, model_file))):
        return None
    with open(path) as f:
        results = json.load(f)
    if results.get("steps") != config.epochs * (train_images // config.batch_size):
        return None
    return results


def _copy_weights(source: keras.Model, converter: keras.Model, where: str) -> None:
    shapes = [tuple(w.shape) for w in source.get_weights()]
    if shapes != [tuple(w.shape) for w in converter.get_weights()]:
        raise DapterError(
            f"{where}: that converter has other layer shapes than --filters asks for; cannot start from it"
        )
    converter.set_weights(source.get_weights())


def load_converter(path: str) -> keras.Model:
    """Loads a trained converter from a ``.keras`` file or from a train_dapter workdir.

    Raises:
        DapterError: if there is no loadable converter there.
    """
    if os.path.isdir(path):
        path = os.path.join(path, CONVERTER_FILE)
    return classifier.load_model_file(path, "converter")


def converter_lambda(converter_path: str) -> float | None:
    """The lambda recorded in a converter's workdir (``config.json`` beside its file, or in the folder), if any."""
    if os.path.isdir(converter_path):
        converter_path = os.path.join(converter_path, CONVERTER_FILE)
    path = os.path.join(os.path.dirname(converter_path), "config.json")
    try:
        with open(path) as f:
            return float(json.load(f)["lambda_"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

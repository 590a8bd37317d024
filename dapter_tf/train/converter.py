"""Training of a converter on L_dap (Eq. 1) against the frozen target.

Every file a run leaves in its workdir is written atomically (temp file, then rename), so a crash
never leaves half a file.
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from dapter_tf import cluster, evaluate, losses
from dapter_tf.data.images import ImageSet
from dapter_tf.data.pipeline import image_statistics, training_labels
from dapter_tf.data.tasks import Task
from dapter_tf.defences.adversarial import AdversarialDecoders
from dapter_tf.errors import DapterError
from dapter_tf.models import saving, served
from dapter_tf.models.converter import (
    OutputLevels,
    build_block_converter,
    build_class_code_converter,
    build_converter,
    build_patch_converter,
    build_split_converter,
)
from dapter_tf.pixels import check_image_size
from dapter_tf.records import files, runs
from dapter_tf.train.config import PATCH_ARCHITECTURES, DapterConfig
from dapter_tf.train.loop import Trainable, run_training_loop
from dapter_tf.train.precision import computing_in, float32_copy
from dapter_tf.train.strategy import barrier, build_strategy, check_batches


def build_dapter_step(
    converter: keras.Model,
    target: keras.Model,
    optimizer,
    lambda_: float,
    global_batch_size: int,
    adversary: AdversarialDecoders | None = None,
    trivial_error: float = 1.0,
    acc_labels: str = "true",
    code_margin: float = 0.0,
    task_head=None,
    task_head_weight: float = 0.0,
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
        code_margin: The weight of L_margin (``losses.code_margin_loss``) on the output before its
            grid (``OutputLevels``); 0 leaves L_dap alone.
        task_head: A linear layer on the block encoder's mean features (``TASK_FEATURES``), trained
            with the converter on L_head (``losses.task_head_loss``), or ``None``.
        task_head_weight: The weight of L_head.

    Returns:
        ``step_fn(images, labels) -> {"L_dap", "L_eta", "L_acc"}`` (with an adversary also
        ``"L_adv"``, ``"L_total"`` and each decoder's ``"adversary_<k>_mse"``; with a code margin
        ``"L_margin"`` and ``"L_total"``; with a task head ``"L_head"`` and ``"L_total"``), each a
        replica's share of the global batch mean.
    """
    lambda_ = losses.check_lambda(lambda_)
    # One pass gives the converted image and what the extra terms read inside the converter.
    outputs, step = {"converted": converter.output}, None
    if code_margin:
        levels = next((layer for layer in converter.layers if isinstance(layer, OutputLevels)), None)
        if levels is None or levels.step == 1:
            raise DapterError("code_margin needs a converter with an output grid (OutputLevels, step > 1)")
        outputs["pre_snap"], step = levels.input, levels.step
    if task_head is not None:
        outputs["features"] = task_features(converter)
    forward = keras.Model(converter.inputs, outputs) if len(outputs) > 1 else None
    trainable = converter.trainable_variables + (task_head.trainable_variables if task_head is not None else [])

    def step_fn(images, labels):
        soft_labels = None
        if acc_labels == "target":
            soft_labels = tf.stop_gradient(tf.nn.softmax(target(images, training=False)))
        with tf.GradientTape() as tape:
            if forward is not None:
                inside = forward(images, training=True)
                converted = inside["converted"]
            else:
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
            if code_margin:
                terms["margin"] = losses.code_margin_loss(inside["pre_snap"], step)
                terms["total"] = terms["total"] + code_margin * terms["margin"]
            if task_head is not None:
                features = tf.cast(tf.reshape(inside["features"], [tf.shape(images)[0], -1]), tf.float32)
                terms["head"] = losses.task_head_loss(labels, task_head(features), soft_labels)
                terms["total"] = terms["total"] + task_head_weight * terms["head"]
            mean = {k: tf.nn.compute_average_loss(v, global_batch_size=global_batch_size) for k, v in terms.items()}
        grads = tape.gradient(mean["total"], trainable)
        optimizer.apply(grads, trainable)
        out = {"L_dap": mean["dap"], "L_eta": mean["eta"], "L_acc": mean["acc"]}
        if adversary is not None:
            out.update({"L_adv": mean["adv"], "L_total": mean["total"], **decoder_losses})
        if code_margin:
            out.update({"L_margin": mean["margin"], "L_total": mean["total"]})
        if task_head is not None:
            out.update({"L_head": mean["head"], "L_total": mean["total"]})
        return out

    return step_fn


# The block encoder's layer whose output L_head reads: the photo's mean features at the block resolution.
TASK_FEATURES = "context_pool"


def task_features(converter: keras.Model):
    """The tensor L_head's linear head reads: the block encoder's mean features (``TASK_FEATURES``)."""
    try:
        return converter.get_layer(TASK_FEATURES).output
    except ValueError:
        raise DapterError(f"task_head needs the block encoder, whose {TASK_FEATURES!r} layer it reads") from None


def build_task_head(num_classes: int, features: int) -> keras.layers.Layer:
    """L_head's linear head (``losses.task_head_loss``): float32, dropped when training ends."""
    head = keras.layers.Dense(num_classes, name="task_head", dtype="float32")
    head.build((None, features))
    return head


def train_dapter(config: DapterConfig, task: Task, train_set, test_set: ImageSet, workdir: str) -> dict:
    """Trains a converter on L_dap against the frozen target; saves ``workdir/converter.keras``.

    Only the converter's weights move: the target is frozen, called with ``training=False`` (its
    batch-norm statistics stay put) and left out of the gradient.

    Args:
        config: The run's config.
        task: Its task.
        train_set: An ``ImageSet``, or a ``tfrecords.RecordSet`` streamed from its shards.
        test_set: The held-out images.
        workdir: Where the run's files go (the chief's alone, in a cluster).

    Returns:
        Results: the full test-set measurement of ``evaluate.evaluate_converter`` plus training info.
    """
    strategy = build_strategy(config.strategy)
    train_set, validation_set = split_validation(train_set, config)
    check_batches(config, len(train_set), strategy)
    with strategy.scope():
        # Fails fast, before the workdir exists.
        target = saving.load_target(config.target_path, config.target_contract)
    check_target_fits(config, task, train_set, target)
    if saving.is_saved_model(config.target_path) or config.target_contract != served.DEFAULT_CONTRACT:
        # A target the project did not build: a wrong contract scores about chance on its own task.
        originals = test_set.take(config.eval_images)
        served.check_target_serves(
            target, originals.images, originals.labels[task.target_label], config.target_path, config.target_contract
        )
    if config.init_converter:
        initial = saving.load_converter(config.init_converter)  # Fails fast too.
    classifier_path = config.target_path if config.class_code == "target" else config.class_code
    if classifier_path:
        saving.load_model_file(classifier_path, "class-code classifier")  # Fails fast too.
    finished = runs.start_run(workdir, config, len(train_set), runs.CONVERTER_FILE)
    if finished is not None:
        return finished
    keras.utils.set_random_seed(config.seed)
    labels = training_labels(train_set, task.target_label)
    adversary, trivial_error = None, 1.0

    def build():
        if classifier_path:
            # The converter's own copy of the classifier: it must not share weights with the target.
            classifier = saving.load_model_file(classifier_path, "class-code classifier")
            return build_class_code_converter(classifier, train_set.image_shape, config.output_step)
        if config.architecture == "block_encoder":
            return build_block_converter(config.filters, config.output_block, config.output_step)
        if config.architecture in PATCH_ARCHITECTURES:
            builder = build_patch_converter if config.architecture == "fig3_patches" else build_split_converter
            return builder(
                config.filters, output_step=config.output_step, output_block=config.output_block, patch=config.patch
            )
        return build_converter(config.filters, output_step=config.output_step, output_block=config.output_block)

    with strategy.scope():
        with computing_in(config.mixed_precision):
            converter = build()
        if config.init_converter:
            _copy_weights(initial, converter, config.init_converter)
        task_head = None
        if config.task_head:
            task_head = build_task_head(task.num_classes, int(task_features(converter).shape[-1]))
        rate = config.learning_rate
        if config.cosine_decay:
            rate = keras.optimizers.schedules.CosineDecay(rate, config.epochs * (len(train_set) // config.batch_size))
        optimizer = keras.optimizers.Adam(rate)
        optimizer.build(converter.trainable_variables + (task_head.trainable_variables if task_head else []))
        if config.adversary.enabled:
            # The decoders' prior: what the adversary knows without any converted image.
            mean_image, trivial_error = image_statistics(train_set)
            adversary = AdversarialDecoders(config.adversary, mean_image, config.batch_size, config.seed)

    step_fn = build_dapter_step(
        converter,
        target,
        optimizer,
        config.lambda_,
        config.batch_size,
        adversary,
        trivial_error,
        config.acc_labels,
        config.code_margin,
        task_head,
        config.task_head,
    )
    test_labels = test_set.labels[task.target_label]
    eval_set = test_set.take(config.eval_images)

    best = BestEpoch(workdir) if validation_set is not None else None

    def eval_fn():
        m = evaluate.evaluate_converter(
            converter, target, eval_set.images, eval_set.labels[task.target_label], with_bandwidth=False
        )
        measured = {k: m[k] for k in ("accuracy_converted", "entropy_converted", "entropy_ratio")}
        if validation_set is not None:
            accuracy = evaluate.evaluate_converter(
                converter, target, validation_set.images, validation_set.labels[task.target_label], False
            )["accuracy_converted"]
            measured["validation_accuracy"] = accuracy
            best.offer(accuracy, int(optimizer.iterations.numpy()), converter)
        return measured

    checkpoint = tf.train.Checkpoint(
        converter=converter,
        optimizer=optimizer,
        **(adversary.trackables() if adversary else {}),
        **({"task_head": task_head} if task_head else {}),
    )

    def restart_decoders(step: int) -> None:
        for k in adversary.restart_due(step):
            adversary.restart(k, step)

    start = time.time()
    trainable = Trainable(
        checkpoint,
        optimizer,
        step_fn,
        eval_fn,
        restart_decoders if adversary else None,
        variables=tuple(converter.variables),
    )
    loop = run_training_loop(workdir, strategy, trainable, train_set, labels, config)
    train_seconds = time.time() - start
    selection = {}
    if cluster.is_chief():
        if best is not None:
            # The best epoch's weights, saved by this process or, in a resumed run, by an earlier one:
            # the converter saved and measured below is that epoch's.
            selection = best.restore(converter)
        saving.save_model(float32_copy(converter, build), os.path.join(workdir, runs.CONVERTER_FILE))
    results = {
        "lambda": config.lambda_,
        "output_block": config.output_block,
        "architecture": config.architecture,
        "class_code": config.class_code,
        "adversary_weight": config.adversary.weight,
        "replicas": int(strategy.num_replicas_in_sync),
        "converter_parameters": int(converter.count_params()),
        "train_seconds": train_seconds,
        **loop,
        **selection,
        **evaluate.evaluate_converter(converter, target, test_set.images, test_labels),
    }
    runs.write_results(workdir, results)
    barrier(strategy)  # The other workers return once the chief's files are there.
    return results


def split_validation(train_set, config: DapterConfig):
    """The training photos and the validation split ``config.validation_images`` holds out of them.

    A seeded random draw (the shared files are sorted by class), never the test split: the epoch it
    selects must not have seen the held-out photos the accuracy drop is measured on.

    Returns:
        ``(train_set, validation_set)``; ``validation_set`` is ``None`` when none is asked for.

    Raises:
        DapterError: for streamed records, or when too few training photos would be left.
    """
    n = config.validation_images
    if not n:
        return train_set, None
    if not isinstance(train_set, ImageSet):
        raise DapterError(
            "validation_images needs the training photos in memory (--source=npz, folder or csv), "
            "not streamed records: set --validation_images=0"
        )
    if len(train_set) - n < config.batch_size:
        raise DapterError(
            f"validation_images={n} leaves {len(train_set) - n} of {len(train_set)} training photos, "
            f"fewer than a batch of {config.batch_size}"
        )
    held = np.zeros(len(train_set), dtype=bool)
    held[np.random.default_rng(config.seed).permutation(len(train_set))[:n]] = True
    return train_set.select(~held), train_set.select(held)


class BestEpoch:
    """The best epoch's converter on the validation split, kept in the workdir so a resumed run knows it.

    ``best_epoch.npz`` holds its weights with its step and accuracy, in one atomic write by the chief, so
    a kill can never leave weights of one epoch beside the figures of another; ``best_epoch.json``
    repeats the figures for a reader. It is rewritten after every epoch that matched or beat the best so
    far (a later epoch wins a tie: it trained at a lower rate under a decay).
    """

    RECORD, WEIGHTS = "best_epoch.json", "best_epoch.npz"

    def __init__(self, workdir: str):
        self.record = os.path.join(workdir, self.RECORD)
        self.weights = os.path.join(workdir, self.WEIGHTS)
        self.accuracy = self._read()["validation_accuracy"] if os.path.exists(self.weights) else -1.0

    def offer(self, accuracy: float, step: int, converter: keras.Model) -> None:
        """Keeps ``converter``'s weights if ``accuracy`` matches or beats the best so far."""
        if accuracy < self.accuracy:
            return
        self.accuracy = accuracy
        if not cluster.is_chief():
            return
        with files.atomic_file(self.weights) as f:
            np.savez(f, *converter.get_weights(), validation_accuracy=accuracy, step=step)
        files.write_json(self.record, {"validation_accuracy": accuracy, "step": step})

    def restore(self, converter: keras.Model) -> dict:
        """Loads the best epoch's weights into ``converter``; returns what the results record of it."""
        with np.load(self.weights) as saved:
            count = sum(name.startswith("arr_") for name in saved.files)
            converter.set_weights([saved[f"arr_{k}"] for k in range(count)])
        record = self._read()
        return {"selected_step": record["step"], "validation_accuracy": record["validation_accuracy"]}

    def _read(self) -> dict:
        with np.load(self.weights) as saved:
            return {"validation_accuracy": float(saved["validation_accuracy"]), "step": int(saved["step"])}


def _copy_weights(source: keras.Model, converter: keras.Model, where: str) -> None:
    shapes = [tuple(w.shape) for w in source.get_weights()]
    if shapes != [tuple(w.shape) for w in converter.get_weights()]:
        raise DapterError(
            f"{where}: that converter has other layer shapes than --filters asks for; cannot start from it"
        )
    converter.set_weights(source.get_weights())


def check_target_fits(config: DapterConfig, task: Task, train_set, target: keras.Model) -> None:
    """Refuses, before the workdir is made, a target of another task or image size than the data's.

    A refused run then leaves nothing behind that would block the corrected one.
    """
    if target.output_shape[-1] != task.num_classes:
        raise DapterError(
            f"{config.target_path} has {target.output_shape[-1]} outputs but task {task.name!r} "
            f"has {task.num_classes} classes"
        )
    height, width = train_set.image_shape[:2]
    check_image_size(height, width, config.output_block)
    side = 4 * config.patch  # The patch and split converters halve their H/p patches twice.
    if config.architecture in PATCH_ARCHITECTURES and (height % side or width % side):
        raise DapterError(
            f"architecture {config.architecture} needs image sides that are multiples of {side}, got {height}x{width}"
        )
    takes = tuple(target.input_shape[1:3])
    if None not in takes and takes != (height, width):
        raise DapterError(
            f"{config.target_path} takes {takes[0]}x{takes[1]} images but the data are "
            f"{height}x{width}: train at the target's size (--image_size)"
        )

"""The image-reconstruction attack (§5.3, Fig. 7, Fig. 9(b), Fig. 13).

The adversary trains a generator to map converted images back to their originals with
L_recover = ||I_r - I||_2, the converter fixed: the paper's, symmetric to the converter (the same
eight-layer U-Net, with a plain sigmoid output), a much stronger U-Net (``attacks.reconstructors``), or
the lookup of the mean original of each converted training image (``attacks.lookup``). In
the paper's strongest setting, which this module uses, he trains on the converter's own training
images. Quality is SSIM (scikit-image) and PSNR on held-out images; below an SSIM of 0.2 the paper
calls the images unrecoverable.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from skimage.metrics import structural_similarity

from dapter_tf import evaluate, figures, models, train
from dapter_tf.attacks import lookup, reconstructors
from dapter_tf.attacks.data_structures import AttackInputData, ReconstructionSpec
from dapter_tf.data import ImageSet
from dapter_tf.errors import DapterError
from dapter_tf.records import files, runs
from dapter_tf.records.attacks import ReconstructionResult

RECONSTRUCTOR_FILE = "reconstructor.keras"


@dataclasses.dataclass(frozen=True)
class _LoopConfig:
    """What ``train.run_training_loop`` reads of a config, and what ``config.json`` records."""

    spec: ReconstructionSpec
    converter_path: str
    epochs: int
    batch_size: int
    seed: int
    # Flipping the input would need the same flip of the original it is compared with.
    augment: bool = False
    checkpoint_every_steps: int = 200
    strategy: str = "default"


def converter_filters(converter: keras.Model) -> tuple:
    """The channels of a converter's full-, half- and quarter-resolution layers (``models.build_converter``).

    A class-code converter (``models.build_class_code_converter``) and a block encoder
    (``models.build_block_converter``, whose last layer is ``block_colours``) have no such layers:
    their symmetric generator is the paper's, mirroring the default converter's channels.
    """
    if any(layer.name in ("codebook", "block_colours") for layer in converter.layers):
        return models.DEFAULT_FILTERS
    try:
        return tuple(int(converter.get_layer(n).filters) for n in ("conv1", "conv4_down", "conv5_down"))
    except ValueError:
        raise DapterError(f"{converter.name} is not a converter of model.build_converter") from None


def mean_ssim(originals: np.ndarray, images: np.ndarray) -> float:
    """Mean SSIM of uint8 RGB images against their originals (scikit-image, 7x7 windows, per channel)."""
    return float(
        np.mean([structural_similarity(a, b, channel_axis=-1, data_range=255) for a, b in zip(originals, images)])
    )


def psnr(originals: np.ndarray, images: np.ndarray) -> float:
    """PSNR in dB of uint8 images against their originals, from the mean squared error over all pixels.

    One figure for the set: a per-image mean would be infinite if a single image came back exactly.
    """
    mse = np.mean((originals.astype(np.float64) - images.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def train_reconstructor(
    spec: ReconstructionSpec,
    converter_path: str,
    pairs: ImageSet,
    workdir: str,
    filters,
    max_seconds: float | None = None,
) -> keras.Model:
    """Trains the reconstructor on (converted, original) pairs with L_recover; resumes a killed run.

    Args:
        spec: The attack's settings.
        converter_path: The converter, recorded in ``config.json``.
        pairs: Converted images as ``images`` and their originals as the ``"original"`` label.
        workdir: Holds ``config.json``, ``checkpoints/``, ``tb/`` and ``reconstructor.keras``.
        filters: The reconstructor's channels (``spec.architecture`` says how they are laid out).
        max_seconds: Stop training after about this long (a verifier's bounded check); ``None``:
            train every epoch.
    """
    config = _LoopConfig(spec, converter_path, spec.epochs, spec.batch_size, spec.seed)
    if len(pairs) < spec.batch_size:
        raise DapterError(f"{len(pairs)} training pairs do not fill one batch of {spec.batch_size}")
    runs.prepare_workdir(workdir, config)
    keras.utils.set_random_seed(spec.seed)
    strategy = train.build_strategy(config.strategy)
    steps = spec.epochs * (len(pairs) // spec.batch_size)
    with strategy.scope():
        reconstructor = reconstructors.build_reconstructor(spec.architecture, filters)
        optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(spec.learning_rate, steps))
        optimizer.build(reconstructor.trainable_variables)

    def step_fn(converted, originals):
        originals = tf.cast(originals, tf.float32) / 255.0
        with tf.GradientTape() as tape:
            restored = reconstructor(converted, training=True)
            # L_recover = ||I_r - I||_2 per image; its square, averaged over pixels, has the same
            # minimiser and gradients that do not vanish as the error shrinks.
            per_example = tf.reduce_mean(tf.square(restored - originals), axis=[1, 2, 3])
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=spec.batch_size)
        grads = tape.gradient(loss, reconstructor.trainable_variables)
        optimizer.apply(grads, reconstructor.trainable_variables)
        return {"L_recover": loss}

    checkpoint = tf.train.Checkpoint(reconstructor=reconstructor, optimizer=optimizer)
    deadline = None if max_seconds is None else time.time() + max_seconds
    trainable = train.Trainable(checkpoint, optimizer, step_fn, variables=tuple(reconstructor.variables))
    train.run_training_loop(workdir, strategy, trainable, pairs, pairs.labels["original"], config, deadline)
    models.save_model(reconstructor, os.path.join(workdir, RECONSTRUCTOR_FILE))
    return reconstructor


def run_reconstruction(
    input_data: AttackInputData,
    spec: ReconstructionSpec,
    workdir: str,
    converter,
    max_seconds: float | None = None,
) -> ReconstructionResult:
    """Trains a reconstructor against ``converter`` and measures it on the held-out images.

    Writes ``workdir/grid.png`` (Fig. 13: rows of originals, converted and reconstructed images)
    and ``workdir/results.json``. ``max_seconds`` bounds the training (see ``train_reconstructor``).
    """
    own = input_data.train if not spec.train_images else input_data.train.take(spec.train_images)
    return reconstruct_images(
        converter, input_data.converter_path, own.images, input_data.test.images, spec, workdir, max_seconds
    )


def reconstruct_images(
    converter,
    converter_path: str,
    train_images: np.ndarray,
    test_images: np.ndarray,
    spec: ReconstructionSpec,
    workdir: str,
    max_seconds: float | None = None,
) -> ReconstructionResult:
    """The reconstruction attack on bare images: trains on ``train_images`` converted, measures on ``test_images``.

    Args:
        converter: The frozen converter.
        converter_path: Its file, recorded in the attacker's ``config.json``.
        train_images: uint8 images the attacker converts and learns to restore.
        test_images: uint8 held-out images it is measured on.
        spec: The attacker.
        workdir: As ``run_reconstruction``.
        max_seconds: Bounds the training (``None``: every epoch).
    """
    print(f"Converting {len(train_images)} training and {len(test_images)} held-out images ...", flush=True)
    converted = evaluate.convert_images(converter, train_images)
    originals = test_images
    test_converted = evaluate.convert_images(converter, originals)
    if spec.architecture == reconstructors.LOOKUP:
        # Nothing to train: the table is the attacker (its counterpart of parameters: the values it stores).
        os.makedirs(workdir, exist_ok=True)
        table = lookup.fit_lookup(converted, train_images)
        restored = lookup.reconstruct(table, test_converted)
        epochs, parameters = 0, table.stored_values
        print(f"   lookup: {len(table.codes):,} distinct converted images among {len(train_images):,}", flush=True)
    else:
        pairs = ImageSet(converted, {"original": train_images}, "converted")
        filters = spec.attacker_filters() or converter_filters(converter)
        reconstructor = train_reconstructor(spec, converter_path, pairs, workdir, filters, max_seconds)
        restored = evaluate.convert_images(reconstructor, test_converted)
        epochs, parameters = spec.epochs, int(reconstructor.count_params())
    grid = os.path.join(workdir, "grid.png")
    n = spec.grid_images
    figures.save_grid(grid, originals[:n], test_converted[:n], restored[:n])
    # The floor a reconstruction must clear to have learnt anything of the image: one fixed image.
    mean_image = np.broadcast_to(np.round(train_images.mean(axis=0)).astype(np.uint8), originals.shape)
    result = ReconstructionResult(
        ssim=mean_ssim(originals, restored),
        psnr=psnr(originals, restored),
        ssim_converted=mean_ssim(originals, test_converted),
        psnr_converted=psnr(originals, test_converted),
        images_train=len(train_images),
        images_test=len(originals),
        epochs=epochs,
        grid=grid,
        lambda_=runs.converter_lambda(converter_path),
        ssim_mean_image=mean_ssim(originals, mean_image),
        psnr_mean_image=psnr(originals, mean_image),
        attacker=spec.architecture,
        parameters=parameters,
    )
    files.write_json(os.path.join(workdir, "results.json"), dataclasses.asdict(result))
    print(f"   {result.summary()}", flush=True)
    return result


def reconstruction_sweep(
    sweep_dir: str, input_data: AttackInputData, spec: ReconstructionSpec, workdir: str
) -> list[dict]:
    """Runs the reconstruction attack on every converter of a lambda sweep (Fig. 9(b)).

    Args:
        sweep_dir: A ``analysis.lambda_study.run_sweep`` workdir: ``sweep.json`` and ``lambda_<value>/``.
        input_data: The images; its ``converter_path`` is replaced by each point's converter.
        spec: The attack's settings, the same for every point.
        workdir: Holds one ``lambda_<value>/`` per point and ``ssim_sweep.json``; a rerun skips
            finished points.

    Returns:
        One point per lambda: ``lambda``, ``ssim``, ``psnr``, ``ssim_converted``, and the sweep's
        ``entropy_ratio`` and ``accuracy_drop_points``.
    """
    path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.isfile(path):
        raise DapterError(f"no lambda sweep in {sweep_dir} (sweep.json not found)")
    with open(path) as f:
        sweep_points = json.load(f)["points"]
    points = []
    for i, sweep_point in enumerate(sweep_points):
        lambda_ = sweep_point["lambda"]
        out = runs.lambda_point_dir(workdir, lambda_)
        done = os.path.join(out, "results.json")
        if os.path.isfile(done):
            with open(done) as f:
                measured = json.load(f)
            print(f"== lambda {lambda_:.3f} ({i + 1}/{len(sweep_points)}): done before, read from {out}", flush=True)
        else:
            converter_path = os.path.join(runs.lambda_point_dir(sweep_dir, lambda_), runs.CONVERTER_FILE)
            print(f"== lambda {lambda_:.3f} ({i + 1}/{len(sweep_points)}) -> {out}", flush=True)
            point_input = dataclasses.replace(input_data, converter_path=converter_path)
            point_input.validate()
            converter = models.load_converter(converter_path)
            measured = dataclasses.asdict(run_reconstruction(point_input, spec, out, converter))
        points.append(
            {
                "lambda": lambda_,
                **{k: measured.get(k) for k in ("ssim", "psnr", "ssim_converted", "psnr_converted", "ssim_mean_image")},
                **{k: sweep_point.get(k) for k in ("entropy_ratio", "accuracy_drop_points")},
            }
        )
        files.write_json(os.path.join(workdir, "ssim_sweep.json"), {"sweep_dir": sweep_dir, "points": points})
    return points

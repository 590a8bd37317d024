"""Converting a trained converter to TFLite in every quantization mode, and gating each file on parity.

Only the converter ships to phones; the target model never leaves the provider. Conversion goes
through ``TFLiteConverter.from_keras_model``, which keeps the weights (``from_concrete_functions``
with a Keras 3 model silently drops them: see ../shared/DESIGN.md), and every file is checked
against the Keras converter on real held-out images before it is trusted (``check_parity``,
``parity_failures``).

Modes, in the manner of tensorflow/models' ``export_tflite_lib`` quantization types:

=================  ==========================  ============  =================================
mode               weights / activations       input/output  output grid (``OutputLevels``)
=================  ==========================  ============  =================================
``float32``        float32 / float32           float [0, 1]  in the file
``float16``        float16 / float32           float [0, 1]  in the file
``dynamic_range``  int8 / float32 (hybrid)      float [0, 1]  in the file
``int8``           int8 / int8                 uint8 pixels  applied to the bytes afterwards
``int8_int8_io``   int8 / int8                 int8          applied afterwards
``int8_float_io``  int8 / int8                 float [0, 1]  applied afterwards
=================  ==========================  ============  =================================

``int8`` is the file a phone app ships: its input scale is 1/255, so the camera's uint8 bytes go
in unchanged and the output bytes are the pixels sent. Full-int8 files end at the sigmoid (or its
output blocks), because int8 intermediates cannot hold the output grid exactly:
``models.snap_to_levels`` applies it. Before conversion they are rewritten so that int8 holds the
colours that decide the code (``export.tflite.int8_rewrite``: no scale shared by a copy connection or an
average pool, ReLU outliers capped, logits clipped): without it, a coarse code's colours moved by
grid steps.
"""

import contextlib
import dataclasses
import glob
import hashlib
import io
import os
import shutil
import warnings

import keras
import numpy as np
import tensorflow as tf

from dapter_tf import DapterError, evaluate
from dapter_tf.models import output_step_of, strip_output_levels
from dapter_tf.records.files import staged_folder, write_bytes, write_json
from export.tflite.contract import (
    output_contract,
    with_contract,
)
from export.tflite.int8_rewrite import activation_caps, benefits_from_rewrite, rewrite_for_int8
from export.tflite.modes import FULL_INTEGER_MODES, check_mode, file_name, output_step_after_interpreter
from export.tflite.native_output import native_output_captured
from export.tflite.parity import (
    DEFAULT_TOLERANCES,
    ParityError,
    check_parity,
    format_parity_line,
    parity_failures,
)
from export.tflite.subpixel import (
    subpixel_upsampling,
)

_IO_TYPES = {"int8": tf.uint8, "int8_int8_io": tf.int8, "int8_float_io": tf.float32}
DEFAULT_CALIBRATION_STEPS = 200
# Where a run whose files broke their gate leaves them (and its export.json), beside the shipped ones.
FAILED_DIR = "failed"


def fix_input_shape(converter: keras.Model, height: int, width: int) -> keras.Model:
    """Wraps ``converter`` with a fixed batch-1 H x W input, as a phone app runs it."""
    images = keras.Input(shape=(height, width, 3), batch_size=1, name="images")
    return keras.Model(images, converter(images), name="converter_fixed")


def representative_dataset(images: np.ndarray, steps: int, seed: int = 0):
    """A calibration generator of ``steps`` real images drawn without replacement (all if fewer).

    Args:
        images: uint8 N x H x W x 3 training images of the task.
        steps: How many images calibrate the activation ranges.
        seed: Seeds which images are drawn.

    Returns:
        A function yielding ``[1 x H x W x 3 float32 image in [0, 1]]``, as TFLiteConverter wants.
    """
    chosen = calibration_draw(images, steps, seed)

    def generate():
        for image in chosen:
            yield [image[None].astype(np.float32) / 255.0]

    return generate


def calibration_draw(images: np.ndarray, steps: int, seed: int = 0) -> np.ndarray:
    """The ``steps`` images (all if fewer) that calibrate a full-int8 file, drawn without replacement by ``seed``."""
    return images[np.random.default_rng(seed).permutation(len(images))[:steps]]


def _check_calibration(calibration_images, calibration_steps, image_size) -> None:
    if calibration_images is None or len(calibration_images) == 0 or calibration_steps < 1:
        raise DapterError("full-int8 quantization needs real calibration images and calibration_steps >= 1")
    if calibration_images.dtype != np.uint8 or calibration_images.shape[1:] != (*image_size, 3):
        raise DapterError(
            f"calibration images must be uint8 N x {image_size[0]} x {image_size[1]} x 3, "
            f"got {calibration_images.dtype} {calibration_images.shape}"
        )


def convert_to_tflite(
    converter: keras.Model,
    mode: str,
    image_size,
    calibration_images: np.ndarray | None = None,
    calibration_steps: int = DEFAULT_CALIBRATION_STEPS,
    seed: int = 0,
    subpixel: bool = True,
    int8_rewrite: bool = True,
) -> bytes:
    """Converts ``converter`` to a ``.tflite`` flatbuffer in one quantization mode.

    On the first ``cifar2_10_reference`` (a wide Fig. 3 converter, one colour per 32x32 image,
    before issue 31 rebuilt the release with the block encoder; 2,000 held-out images,
    200 calibration images) the int8 file without ``int8_rewrite`` differed from Keras by 9.94
    levels per pixel on average and lost 11.45 points of target accuracy (0.7790 against 0.8935);
    with it, 0.76 levels and 0.8940 against 0.8935, inside every default tolerance.

    Args:
        converter: A trained converter (any input size).
        mode: One of ``MODES`` (see the module docstring).
        image_size: (height, width) of the fixed batch-1 input.
        calibration_images: uint8 N x H x W x 3 real training images; needed by the full-int8 modes.
        calibration_steps: How many of them calibrate the activation ranges.
        seed: Seeds which calibration images are drawn.
        subpixel: Export 3x3 stride-2 transposed convolutions as the exact sub-pixel equivalent
            (``subpixel_upsampling``), which XNNPACK runs several times faster.
        int8_rewrite: Rewrite the full-int8 file of a coarse-code Fig. 3 converter
            (``int8_rewrite.benefits_from_rewrite``) so that int8 holds its block colours (``export.tflite.int8_rewrite``, its ReLU caps measured on
            the calibration images drawn); False gives the plain conversion, kept to measure what
            the rewrite buys.

    Returns:
        The flatbuffer's bytes.

    Raises:
        ValueError: (a DapterError) on an unknown mode, or a full-int8 mode without calibration images.
    """
    check_mode(mode)
    image_size = tuple(int(s) for s in image_size)
    representative = None
    if mode in FULL_INTEGER_MODES:
        _check_calibration(calibration_images, calibration_steps, image_size)
        representative = representative_dataset(calibration_images, calibration_steps, seed)
        # int8 intermediates cannot hold the output grid: the file ends at the sigmoid.
        converter = strip_output_levels(converter)
        if int8_rewrite and benefits_from_rewrite(converter):
            # The caps come from the very images that calibrate the ranges.
            caps = activation_caps(converter, calibration_draw(calibration_images, calibration_steps, seed))
            converter = rewrite_for_int8(converter, caps)
    if subpixel:
        converter = subpixel_upsampling(converter)
    return convert_keras_model(fix_input_shape(converter, *image_size), mode, representative)


def convert_keras_model(model: keras.Model, mode: str, representative=None) -> bytes:
    """Converts any fixed-shape Keras model to a ``.tflite`` flatbuffer in one of ``MODES``.

    Args:
        model: A Keras model whose inputs have fixed shapes.
        mode: One of ``MODES``; the full-int8 modes quantize every input and output alike.
        representative: For the full-int8 modes, a function yielding lists of input arrays (one
            per model input, batch 1) drawn from real data, or dicts of them by input name (a
            file's inputs need not keep the model's order).

    Returns:
        The flatbuffer's bytes.
    """
    check_mode(mode)
    # Keras 3 prints the exported signature to stdout while converting; keep the user's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        lite = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        lite.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        lite.target_spec.supported_types = [tf.float16]
    if mode in FULL_INTEGER_MODES:
        if representative is None:
            raise DapterError(f"{mode} quantization needs a representative dataset of real inputs")
        lite.representative_dataset = representative
        lite.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        lite.inference_input_type = _IO_TYPES[mode]
        lite.inference_output_type = _IO_TYPES[mode]
    with native_output_captured(), warnings.catch_warnings():
        # With integer input the converter warns that it got no input statistics; it derives them
        # from the representative data, and a converter's input scale comes out 1/255 (tested).
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        return lite.convert()


def export_converter(
    converter: keras.Model,
    target: keras.Model,
    output_dir: str,
    calibration_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    calibration_steps: int = DEFAULT_CALIBRATION_STEPS,
    modes=("float32", "int8"),
    tolerances: dict | None = None,
    force: bool = False,
    seed: int = 0,
    progress=None,
) -> dict:
    """Writes ``converter_<mode>.tflite`` for each mode, checks each against Keras, and gates on parity.

    Args:
        converter: The trained Keras converter.
        target: The frozen target, used only to measure accuracy (it is not exported).
        output_dir: Where the files and ``export.json`` go.
        calibration_images: uint8 training images for full-int8 calibration.
        test_images: uint8 held-out images for the parity check.
        test_labels: Their target labels.
        calibration_steps: Calibration images used.
        modes: Which of ``MODES`` to export.
        tolerances: ``{mode: Tolerance}`` overriding ``DEFAULT_TOLERANCES``.
        force: Keep going (and return) when a file breaks its tolerances; the breaches are recorded.
        seed: Seeds which calibration images are drawn.
        progress: Optional callable taking one line per exported file.

    Returns:
        ``{"files": {mode: {"mode", "file", "path", "bytes", "sha256", "input_shape", "tolerance",
        "failures", parity...}}, ...}``, also saved as ``output_dir/export.json``.

    Raises:
        ParityError: if a file breaks its tolerances and ``force`` is False. Nothing shipped in
            ``output_dir`` changes; this run's files and export.json go to ``output_dir/failed/``.
        DapterError: on an image size the target does not take (``check_image_size``).
    """
    modes, tolerances = _check_export_args(calibration_steps, modes, tolerances)
    image_size = tuple(int(s) for s in test_images.shape[1:3])
    check_image_size(converter, target, image_size)
    # What a failed or killed earlier run left (its failed/ files, a staging folder) never blocks this one.
    failed_dir = os.path.join(output_dir, FAILED_DIR)
    shutil.rmtree(failed_dir, ignore_errors=True)
    for entry in glob.glob(os.path.join(glob.escape(output_dir), ".export-*")):  # Staging of versions before 0.2.
        shutil.rmtree(entry, ignore_errors=True)
    keras_converted = evaluate.convert_images(converter, test_images)
    step = output_step_of(converter)
    # Every file, export.json included, is written into a staging folder that replaces the shipped
    # set only once every file of this run has passed its gate: a crash, a full disk or a failed gate
    # leaves the shipped files and export.json as they were (records.files.staged_folder).
    with staged_folder(output_dir, keep=True) as staging:
        files = {}
        for mode in modes:
            after = output_step_after_interpreter(mode, step)
            model_bytes = convert_to_tflite(converter, mode, image_size, calibration_images, calibration_steps, seed)
            contract = output_contract(model_bytes, after)
            model_bytes = with_contract(model_bytes, contract)
            write_bytes(os.path.join(staging, file_name(mode)), model_bytes)
            parity = check_parity(model_bytes, keras_converted, target, test_images, test_labels, after)
            files[mode] = _file_entry(
                mode, model_bytes, output_dir, image_size, contract, parity, tolerances[mode], step
            )
            if progress:
                progress(format_parity_line(mode, files[mode]))
        result = {
            "image_size": list(image_size),
            "output_step": step,
            "calibration_steps": int(min(calibration_steps, len(calibration_images))),
            "files": files,
        }
        if "float32" in files and "int8" in files:
            result["size_ratio_float32_to_int8"] = files["float32"]["bytes"] / files["int8"]["bytes"]
        broken = [f"{mode}: {'; '.join(e['failures'])}" for mode, e in files.items() if e["failures"]]
        if broken and not force:
            for entry in files.values():
                entry["path"] = os.path.join(failed_dir, entry["file"])
            write_json(os.path.join(staging, "export.json"), result)
            os.makedirs(output_dir, exist_ok=True)
            os.replace(staging, failed_dir)
            raise ParityError(
                f"export broke its parity tolerances ({' | '.join(broken)}); nothing shipped was changed in "
                f"{output_dir}, the new files are in {failed_dir}; pass --force to accept them"
            )
        write_json(os.path.join(staging, "export.json"), result)
    return result


def _check_export_args(calibration_steps: int, modes, tolerances: dict | None) -> tuple[list, dict]:
    """The checked modes, and every mode's tolerance (``DEFAULT_TOLERANCES`` overridden by ``tolerances``)."""
    if calibration_steps < 1:
        raise DapterError(f"calibration_steps must be >= 1, got {calibration_steps}")
    modes = [check_mode(mode) for mode in modes]
    if not modes:
        raise DapterError("export needs at least one quantization mode")
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    for tolerance in tolerances.values():
        tolerance.validate()
    return modes, tolerances


def _file_entry(mode, model_bytes, output_dir, image_size, contract, parity, tolerance, step) -> dict:
    """One file's record in ``export.json``: what it is, its hash and contract, its parity and verdict."""
    return {
        "mode": mode,
        "file": file_name(mode),
        "path": os.path.join(output_dir, file_name(mode)),
        "bytes": len(model_bytes),
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "input_shape": [*image_size, 3],
        "output_step_after_interpreter": output_step_after_interpreter(mode, step),
        "contract": contract,
        **parity,
        "tolerance": dataclasses.asdict(tolerance),
        "failures": parity_failures(parity, tolerance, step),
    }


def check_image_size(converter: keras.Model, target: keras.Model | None, image_size) -> None:
    """Refuses an export at a size the target (or a fixed-size converter) does not take.

    The converter is fully convolutional and would export at any size, but its gate measures the
    target's accuracy on the file's output, and a release states the size its claims were measured
    at: an export at another size than the target's is refused rather than half-checked.

    Raises:
        DapterError: naming both sizes.
    """
    size = tuple(int(s) for s in image_size)
    for name, model in (("converter", converter), ("target", target)):
        if model is None:
            continue
        expected = tuple(model.input_shape[1:3])
        if None not in expected and tuple(int(s) for s in expected) != size:
            raise DapterError(
                f"the {name} takes {expected[0]}x{expected[1]} images and the export data are {size[0]}x{size[1]}: "
                f"export at {expected[0]}x{expected[1]} (--image_size={expected[0]})"
            )

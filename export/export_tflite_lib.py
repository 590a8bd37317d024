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
in unchanged and the output bytes are the pixels sent. Full-int8 files end at the sigmoid, because
int8 intermediates cannot hold the output grid exactly: ``model.snap_to_levels`` applies it.
"""

import contextlib
import dataclasses
import hashlib
import io
import os
import shutil
import sys
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from dapter_tf import DapterError, evaluate, metrics
from dapter_tf.model import output_step_of, snap_to_levels, strip_output_levels
from dapter_tf.train import write_json

MODES = ("float32", "float16", "dynamic_range", "int8", "int8_int8_io", "int8_float_io")
# Modes whose whole body is integer: they need calibration images and end at the sigmoid.
FULL_INTEGER_MODES = ("int8", "int8_int8_io", "int8_float_io")
_IO_TYPES = {"int8": tf.uint8, "int8_int8_io": tf.int8, "int8_float_io": tf.float32}
DEFAULT_CALIBRATION_STEPS = 200
# Where a run whose files broke their gate leaves them (and its export.json), beside the shipped ones.
FAILED_DIR = "failed"


def check_mode(mode: str) -> str:
    """Returns ``mode`` if known; raises ValueError (a DapterError) naming the known modes otherwise."""
    if mode not in MODES:
        raise DapterError(f"unknown quantization mode {mode!r}; choose from: {', '.join(MODES)}")
    return mode


def file_name(mode: str) -> str:
    """The file a mode is written to, e.g. ``converter_int8.tflite``."""
    return f"converter_{check_mode(mode)}.tflite"


def output_step_after_interpreter(mode: str, output_step: int) -> int:
    """The grid step to apply to the interpreter's bytes: the converter's for full-int8 files, else 1."""
    return output_step if check_mode(mode) in FULL_INTEGER_MODES else 1


@keras.saving.register_keras_serializable(package="dapter_tf_export")
class DepthToSpace(keras.layers.Layer):
    """``tf.nn.depth_to_space`` as a layer (TFLite's DEPTH_TO_SPACE, which XNNPACK runs)."""

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block_size)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale = self.block_size
        return (batch, height and height * scale, width and width * scale, channels // scale**2)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


def _is_rewritable(layer) -> bool:
    return (
        isinstance(layer, keras.layers.Conv2DTranspose)
        and tuple(layer.kernel_size) == (3, 3)
        and tuple(layer.strides) == (2, 2)
        and layer.padding == "same"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.data_format == "channels_last"
    )


# For a 3x3 stride-2 "same" transposed convolution, TensorFlow writes input pixel m through kernel
# tap k to output pixel 2m + k. Output 2m + phase thus reads: phase 0, tap 2 from m - 1 and tap 0
# from m; phase 1, tap 1 from m. Each phase's window rows (oldest first) and the kernel row each uses:
_PHASE_TAPS = {0: (2, 0), 1: (1,)}


def phase_kernels(kernel: np.ndarray) -> dict:
    """Splits a 3x3 stride-2 "same" transposed-convolution kernel into its four output phases.

    Output pixel (2m + a, 2n + b) depends only on inputs m - 1..m and n - 1..n (``_PHASE_TAPS``),
    so phase (a, b) is an ordinary stride-1 convolution at the input's resolution with a 2x2,
    2x1, 1x2 or 1x1 kernel: 9 taps in all, the transposed kernel's own weights and no zeros.

    Args:
        kernel: Keras ``Conv2DTranspose`` kernel, shape (3, 3, C_out, C_in).

    Returns:
        ``{(a, b): Conv2D kernel of shape (rows, cols, C_in, C_out)}``.
    """
    kernels = {}
    for a, rows in _PHASE_TAPS.items():
        for b, cols in _PHASE_TAPS.items():
            kernels[a, b] = np.stack([np.stack([kernel[k_h, k_w].T for k_w in cols]) for k_h in rows])
    return kernels


def _subpixel_block(layer) -> keras.Model:
    """The exact stride-1 equivalent of one transposed convolution: four phase convolutions + depth-to-space."""
    kernel = layer.get_weights()[0]
    bias = layer.get_weights()[1] if layer.use_bias else np.zeros(kernel.shape[2], kernel.dtype)
    # Every layer is named after the one it replaces: the names end up in the .tflite file, and
    # Keras's automatic ones (conv2d_12) count up through the process, so the same converter would
    # give other bytes depending on what was exported before it.
    images = keras.Input(shape=(None, None, kernel.shape[3]), name=f"{layer.name}_in")
    phases = []
    for (a, b), phase_kernel in phase_kernels(kernel).items():
        # A two-tap direction reads m - 1 and m: pad one row (column) before, none after.
        x = images
        if (a, b) != (1, 1):
            x = keras.layers.ZeroPadding2D(((1 - a, 0), (1 - b, 0)), name=f"{layer.name}_pad{a}{b}")(images)
        # The activation is element-wise, so it commutes with the interleaving: each phase applies it.
        conv = keras.layers.Conv2D(
            kernel.shape[2], phase_kernel.shape[:2], activation=layer.activation, name=f"{layer.name}_phase{a}{b}"
        )
        phases.append(conv(x))
        conv.set_weights([phase_kernel, bias])
    # Depth-to-space wants channel group 2a + b for phase (a, b): the order of phase_kernels.
    concatenated = keras.layers.Concatenate(name=f"{layer.name}_phases")(phases)
    interleaved = DepthToSpace(2, name=f"{layer.name}_depth_to_space")(concatenated)
    return keras.Model(images, interleaved, name=layer.name)


def subpixel_upsampling(converter: keras.Model) -> keras.Model:
    """The converter with every 3x3 stride-2 transposed convolution replaced by its exact sub-pixel form.

    TFLite's TRANSPOSE_CONV runs outside XNNPACK's fast paths: at 224x224 the converter's two
    up-sampling layers cost more than its six convolutions together (bench/bench_export.py prints
    the per-layer cost). Four phase convolutions at the input's resolution, interleaved by
    depth-to-space (``phase_kernels``), compute the same function with the same weights and MACs,
    on ops XNNPACK runs at full speed. Other layers are shared with ``converter``, not copied.
    """
    if not any(_is_rewritable(layer) for layer in converter.layers):
        return converter
    return keras.models.clone_model(
        converter, clone_function=lambda layer: _subpixel_block(layer) if _is_rewritable(layer) else layer
    )


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
    chosen = np.random.default_rng(seed).permutation(len(images))[:steps]

    def generate():
        for index in chosen:
            yield [images[index][None].astype(np.float32) / 255.0]

    return generate


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
) -> bytes:
    """Converts ``converter`` to a ``.tflite`` flatbuffer in one quantization mode.

    Args:
        converter: A trained converter (any input size).
        mode: One of ``MODES`` (see the module docstring).
        image_size: (height, width) of the fixed batch-1 input.
        calibration_images: uint8 N x H x W x 3 real training images; needed by the full-int8 modes.
        calibration_steps: How many of them calibrate the activation ranges.
        seed: Seeds which calibration images are drawn.
        subpixel: Export 3x3 stride-2 transposed convolutions as the exact sub-pixel equivalent
            (``subpixel_upsampling``), which XNNPACK runs several times faster.

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
    if subpixel:
        converter = subpixel_upsampling(converter)
    return convert_keras_model(fix_input_shape(converter, *image_size), mode, representative)


def convert_keras_model(model: keras.Model, mode: str, representative=None) -> bytes:
    """Converts any fixed-shape Keras model to a ``.tflite`` flatbuffer in one of ``MODES``.

    Args:
        model: A Keras model whose inputs have fixed shapes.
        mode: One of ``MODES``; the full-int8 modes quantize every input and output alike.
        representative: For the full-int8 modes, a function yielding lists of input arrays (one
            per model input, batch 1) drawn from real data.

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
    with _native_output_captured(), warnings.catch_warnings():
        # With integer input the converter warns that it got no input statistics; it derives them
        # from the representative data, and a converter's input scale comes out 1/255 (tested).
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        return lite.convert()


@contextlib.contextmanager
def _native_output_captured():
    """Keeps what native code prints ("fully_quantize: 0, ...", "INFO: Created ... delegate") off the terminal.

    The calibrator and the interpreter write straight to file descriptors 1 and 2, past Python's
    sys.stdout; what was captured is replayed on stderr if the call fails.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)
        os.dup2(captured.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        except BaseException:
            os.dup2(saved[1], 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def run_tflite(model_bytes: bytes, images: np.ndarray, batch_size: int = 100, output_step: int = 1) -> np.ndarray:
    """Runs a converter ``.tflite`` on uint8 images with ai_edge_litert; returns the uint8 images sent.

    Handles float and quantized input/output from the tensors' own quantization parameters.
    ``output_step`` > 1 applies the converter's output grid to the bytes (full-int8 files end at the
    sigmoid; see ``convert_to_tflite``).
    """
    from ai_edge_litert.interpreter import Interpreter

    # The first interpreter of a process prints "INFO: Created TensorFlow Lite XNNPACK delegate".
    with _native_output_captured():
        interpreter = Interpreter(model_content=model_bytes)
        interpreter.allocate_tensors()  # The delegate is created here.
    inp = interpreter.get_input_details()[0]
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        interpreter.resize_tensor_input(inp["index"], batch.shape)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        output = interpreter.get_output_details()[0]
        x = batch.astype(np.float32) / 255.0
        if inp["dtype"] != np.float32:
            scale, zero_point = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        scale, zero_point = output["quantization"]
        out.append(decode_output(interpreter.get_tensor(output["index"]), scale, zero_point, output_step))
    return np.concatenate(out)


def decode_output(raw: np.ndarray, scale: float, zero_point: int, output_step: int = 1) -> np.ndarray:
    """The output contract: a converter file's raw output tensor -> the uint8 pixels sent.

    The one implementation of the step the model card states and the ``.tflite`` file carries in
    its metadata (``output_contract``); the parity gate, ``dapter-verify`` and ``dapter-convert``
    all go through it, and android_app's ``OutputDecoding`` computes the same on the shared vectors
    of ``android_app/core/src/test/resources/output_decoding.json``:

      x = float32(q - zero_point) * float32(scale)  (a float32 output: x = q)
      p = round_half_even(255 * clip(x, 0, 1))       (in float32)
      pixel = 128 + step * sign(p - 128) * floor((|p - 128| + step // 2) / step), clipped to 0..255
              (``model.snap_to_levels``; step 1: pixel = p)

    Args:
        raw: The interpreter's output: float32, uint8 or int8.
        scale: Its quantization scale (ignored for float32).
        zero_point: Its zero point (ignored for float32).
        output_step: The grid step (``output_step_after_interpreter``).
    """
    y = np.asarray(raw)
    if y.dtype != np.float32:
        y = (y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return snap_to_levels(metrics.to_uint8(y), output_step)


def output_decoding_text(step="step", quantized_only: bool = False) -> str:
    """``decode_output``'s formula in words: for the file's contract (the symbol ``step``, float
    outputs too) and for a card's int8 paragraph (its number, quantized outputs only)."""
    half = "step // 2" if step == "step" else step // 2
    dequantize = "x = float32(q - zero_point) * float32(scale)"
    return (
        f"{dequantize if quantized_only else 'x = q (float32 output), else ' + dequantize}; "
        f"p = round_half_even(255 * clip(x, 0, 1)) in float32; pixel = 128 + {step} * sign(p - 128) * "
        f"floor((abs(p - 128) + {half}) / {step}), clipped to 0..255"
    )


# The name of the .tflite metadata entry that describes the file's input and output (a JSON text).
CONTRACT_METADATA = "dapter_io_contract"
CONTRACT_FORMAT = "dapter-tf io contract 1"


def output_contract(model_bytes: bytes, output_step: int) -> dict:
    """What a converter file takes and gives, from its own tensors: the JSON its metadata carries."""
    from ai_edge_litert.interpreter import Interpreter

    with _native_output_captured():
        interpreter = Interpreter(model_content=model_bytes)
    described = {}
    for side, details in (
        ("input", interpreter.get_input_details()[0]),
        ("output", interpreter.get_output_details()[0]),
    ):
        scale, zero_point = details["quantization"]
        described[side] = {
            "shape": [int(s) for s in details["shape"]],
            "dtype": np.dtype(details["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero_point),
        }
    return {
        "format": CONTRACT_FORMAT,
        **described,
        "input_encoding": "x = pixel / 255 (float32 input), else q = clip(round_half_even(float32(pixel / 255) / "
        "float32(scale) + zero_point)) to the type's range",
        "output_step": int(output_step),
        "output_decoding": output_decoding_text() + " (step 1: pixel = p)",
    }


def with_contract(model_bytes: bytes, contract: dict) -> bytes:
    """``model_bytes`` with ``contract`` as the metadata entry ``CONTRACT_METADATA`` (replacing one there).

    Written with TensorFlow's own flatbuffer tools; the interpreter ignores metadata it does not
    know, so the file runs, and runs as fast, as before.
    """
    import json

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    model.metadata = [m for m in (model.metadata or []) if m.name != CONTRACT_METADATA.encode()]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(contract, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = CONTRACT_METADATA.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_contract(model_bytes: bytes) -> dict | None:
    """The contract a ``.tflite`` file carries (``with_contract``), or None for a file without one."""
    import json

    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    for entry in model.metadata or []:
        if entry.name == CONTRACT_METADATA.encode():
            return json.loads(bytes(np.asarray(model.buffers[entry.buffer].data, np.uint8)).decode())
    return None


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """What a ``.tflite`` file may differ from the Keras converter on real held-out images.

    Attributes:
        max_pixel_diff_steps: Largest |TFLite - Keras| pixel difference, in output grid steps (a
            pixel on a rounding boundary moves by one whole step, 16 levels on the default grid).
        mean_pixel_diff: Largest mean |TFLite - Keras| over all pixels, in uint8 levels.
        accuracy_drop_points: Largest fall of the target's accuracy (Keras-converted minus
            TFLite-converted), in percentage points; a file fails when the whole 95 % interval of
            its paired drop lies above it (``accuracy_drop_exceeds``).
        entropy_change_bits: Largest |mean entropy TFLite - mean entropy Keras| (§4.1), in bits.
    """

    max_pixel_diff_steps: float
    mean_pixel_diff: float
    accuracy_drop_points: float
    entropy_change_bits: float

    def validate(self) -> "Tolerance":
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) >= 0:
                raise DapterError(f"tolerance {field.name} must be >= 0, got {getattr(self, field.name)}")
        return self


# Defaults from the committed CIFAR-10 converter (lambda 0.9, grid step 16) on 2,000 test images:
# every mode's max diff was one grid step (a pixel on a rounding boundary); mean diffs were 0.000
# (float32), 0.006 (float16), 0.18 (dynamic range) and 0.26 levels (full int8); entropy moved by at
# most 0.032 bits and the target's accuracy by at most 0.75 points, upwards. The defaults leave about
# 4x headroom over those figures, so a broken file (dropped weights, wrong scales) cannot pass.
_FLOAT_TOLERANCE = Tolerance(
    max_pixel_diff_steps=1, mean_pixel_diff=0.05, accuracy_drop_points=0.5, entropy_change_bits=0.02
)
_INTEGER_TOLERANCE = Tolerance(
    max_pixel_diff_steps=2, mean_pixel_diff=1.0, accuracy_drop_points=1.0, entropy_change_bits=0.15
)
DEFAULT_TOLERANCES = {
    "float32": _FLOAT_TOLERANCE,
    "float16": dataclasses.replace(_FLOAT_TOLERANCE, mean_pixel_diff=0.1, entropy_change_bits=0.05),
    "dynamic_range": _INTEGER_TOLERANCE,
    **{mode: _INTEGER_TOLERANCE for mode in FULL_INTEGER_MODES},
}


def check_parity(
    model_bytes: bytes,
    keras_converted: np.ndarray,
    target: keras.Model | None,
    images: np.ndarray,
    labels: np.ndarray | None,
    output_step: int = 1,
) -> dict:
    """Compares a ``.tflite`` converter with the Keras converter on real images.

    Args:
        model_bytes: The ``.tflite`` file's bytes.
        keras_converted: uint8 images the Keras converter made from ``images``.
        target: The frozen target, or None where it is not at hand (a verifier without it).
        images: uint8 held-out originals.
        labels: Their target labels (None with no target).
        output_step: The grid to apply after the interpreter (full-int8 files; see ``run_tflite``).

    Returns:
        ``max_pixel_diff`` and ``mean_pixel_diff`` (uint8 levels, TFLite vs Keras output),
        ``differing_pixels`` (fraction), ``entropy_keras`` and ``entropy_tflite`` (mean bits), and
        with a target ``accuracy_keras``, ``accuracy_tflite``, ``accuracy_drop_points`` (Keras
        minus TFLite, points), its standard error and 95 % interval (``accuracy_drop_error_points``,
        ``_low_points``, ``_high_points``) and the predictions that flipped each way
        (``flipped_to_wrong``, ``flipped_to_right``; ``metrics.paired_drop_interval``).
    """
    lite_converted = run_tflite(model_bytes, images, output_step=output_step)
    diff = np.abs(lite_converted.astype(np.int16) - keras_converted.astype(np.int16))
    result = {
        "images": int(len(images)),
        "max_pixel_diff": int(diff.max()),
        "mean_pixel_diff": float(diff.mean()),
        "differing_pixels": float((diff > 0).mean()),
        "entropy_keras": float(np.mean(metrics.image_entropy(keras_converted))),
        "entropy_tflite": float(np.mean(metrics.image_entropy(lite_converted))),
    }
    if target is not None:
        right_keras = evaluate.target_correct(target, keras_converted, labels)
        right_lite = evaluate.target_correct(target, lite_converted, labels)
        interval = metrics.paired_drop_interval(right_keras, right_lite)
        result.update(
            accuracy_keras=float(right_keras.mean()),
            accuracy_tflite=float(right_lite.mean()),
            accuracy_drop_points=interval["drop_points"],
            accuracy_drop_error_points=interval["error_points"],
            accuracy_drop_low_points=interval["low_points"],
            accuracy_drop_high_points=interval["high_points"],
            flipped_to_wrong=interval["flipped_to_wrong"],
            flipped_to_right=interval["flipped_to_right"],
        )
    return result


def accuracy_drop_exceeds(parity: dict, tolerance_points: float) -> bool:
    """Whether ``parity`` shows the file losing more than ``tolerance_points`` of target accuracy.

    A point figure moves by 100 / n points per flipped image (1.56 points at n = 64), so a fixed
    bar on it fails sound files by chance. The gate fails only when the whole 95 % interval of the
    paired drop lies above the bar: the flips are evidence of a loss, not noise. A broken file
    (wrong scales, dropped weights) loses tens of points and fails on any sample, and the pixel
    gates catch it first.
    """
    return parity["accuracy_drop_low_points"] > tolerance_points


def parity_failures(parity: dict, tolerance: Tolerance, output_step: int) -> list[str]:
    """The tolerances ``parity`` (from ``check_parity``) breaks, one readable line each; empty if none."""
    failures = []
    if parity["max_pixel_diff"] > tolerance.max_pixel_diff_steps * output_step:
        failures.append(
            f"max pixel diff {parity['max_pixel_diff']} > {tolerance.max_pixel_diff_steps:g} step(s) "
            f"of {output_step} level(s)"
        )
    if parity["mean_pixel_diff"] > tolerance.mean_pixel_diff:
        failures.append(f"mean pixel diff {parity['mean_pixel_diff']:.3f} > {tolerance.mean_pixel_diff:g}")
    if "accuracy_drop_points" in parity and accuracy_drop_exceeds(parity, tolerance.accuracy_drop_points):
        failures.append(
            f"target accuracy drop {parity['accuracy_drop_points']:.2f} points, 95 % interval "
            f"[{parity['accuracy_drop_low_points']:.2f}, {parity['accuracy_drop_high_points']:.2f}] wholly above "
            f"{tolerance.accuracy_drop_points:g} ({parity['flipped_to_wrong']} of {parity['images']} predictions "
            f"flipped to wrong, {parity['flipped_to_right']} to right)"
        )
    change = abs(parity["entropy_tflite"] - parity["entropy_keras"])
    if change > tolerance.entropy_change_bits:
        failures.append(f"entropy change {change:.3f} bits > {tolerance.entropy_change_bits:g}")
    return failures


class ParityError(DapterError):
    """An exported file broke its parity tolerances (the files and export.json are still written)."""


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
    if calibration_steps < 1:
        raise DapterError(f"calibration_steps must be >= 1, got {calibration_steps}")
    modes = [check_mode(mode) for mode in modes]
    if not modes:
        raise DapterError("export needs at least one quantization mode")
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    for tolerance in tolerances.values():
        tolerance.validate()
    image_size = tuple(int(s) for s in test_images.shape[1:3])
    check_image_size(converter, target, image_size)
    os.makedirs(output_dir, exist_ok=True)
    # A failed earlier run's files never block this one.
    failed_dir = os.path.join(output_dir, FAILED_DIR)
    shutil.rmtree(failed_dir, ignore_errors=True)
    keras_converted = evaluate.convert_images(converter, test_images)
    step = output_step_of(converter)
    # Every file is written into a staging folder and reaches its shipping name only once every
    # file of this run has passed its gate: a crash or a failed gate leaves the shipped files and
    # export.json as they were.
    staging = tempfile.mkdtemp(prefix=".export-", dir=output_dir)
    try:
        files = {}
        for mode in modes:
            after = output_step_after_interpreter(mode, step)
            model_bytes = convert_to_tflite(converter, mode, image_size, calibration_images, calibration_steps, seed)
            contract = output_contract(model_bytes, after)
            model_bytes = with_contract(model_bytes, contract)
            name = file_name(mode)
            with open(os.path.join(staging, name), "wb") as f:
                f.write(model_bytes)
            parity = check_parity(model_bytes, keras_converted, target, test_images, test_labels, after)
            files[mode] = {
                "mode": mode,
                "file": name,
                "path": os.path.join(output_dir, name),
                "bytes": len(model_bytes),
                "sha256": hashlib.sha256(model_bytes).hexdigest(),
                "input_shape": [*image_size, 3],
                "output_step_after_interpreter": after,
                "contract": contract,
                **parity,
                "tolerance": dataclasses.asdict(tolerances[mode]),
                "failures": parity_failures(parity, tolerances[mode], step),
            }
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
            os.replace(staging, failed_dir)
            raise ParityError(
                f"export broke its parity tolerances ({' | '.join(broken)}); nothing shipped was changed in "
                f"{output_dir}, the new files are in {failed_dir}; pass --force to accept them"
            )
        for entry in files.values():
            os.replace(os.path.join(staging, entry["file"]), entry["path"])
        write_json(os.path.join(output_dir, "export.json"), result)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


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


def format_parity_line(mode: str, entry: dict) -> str:
    """One line per exported file: size, pixel differences, accuracy and entropy against Keras."""
    line = (
        f"{mode}: {entry['bytes']:,} bytes, pixel diff max {entry['max_pixel_diff']} "
        f"mean {entry['mean_pixel_diff']:.3f}, entropy {entry['entropy_tflite']:.3f} "
        f"vs Keras {entry['entropy_keras']:.3f}"
    )
    if "accuracy_tflite" in entry:
        line += (
            f", target accuracy {entry['accuracy_tflite']:.4f} vs Keras {entry['accuracy_keras']:.4f} "
            f"(drop {entry['accuracy_drop_points']:+.2f} ± {entry['accuracy_drop_error_points']:.2f} points; "
            f"{entry['flipped_to_wrong']} of {entry['images']} flipped to wrong, {entry['flipped_to_right']} to right)"
        )
    if entry.get("failures"):
        line += f"  BROKEN: {'; '.join(entry['failures'])}"
    return line

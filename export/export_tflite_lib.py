"""Converting a trained converter to TFLite and checking each file against the Keras converter.

Only the converter ships to phones; the target model never leaves the provider. Conversion goes
through ``TFLiteConverter.from_keras_model``, which keeps the weights (``from_concrete_functions``
with a Keras 3 model silently drops them: see ../shared/DESIGN.md), and every file is checked on
real images before it is trusted.
"""

import contextlib
import io
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from dapter_tf import DapterError, evaluate, metrics
from dapter_tf.model import output_step_of, snap_to_levels, strip_output_levels
from dapter_tf.train import write_json

MODES = ("float32", "int8")


def fix_input_shape(converter: keras.Model, height: int, width: int) -> keras.Model:
    """Wraps ``converter`` with a fixed batch-1 H x W input, as a phone app runs it."""
    images = keras.Input(shape=(height, width, 3), batch_size=1, name="images")
    return keras.Model(images, converter(images), name="converter_fixed")


def _representative_dataset(images: np.ndarray, steps: int):
    def generate():
        for image in images[:steps]:
            yield [image[None].astype(np.float32) / 255.0]

    return generate


def convert_to_tflite(
    converter: keras.Model, mode: str, image_size, calibration_images=None, calibration_steps: int = 100
) -> bytes:
    """Converts ``converter`` to a ``.tflite`` flatbuffer.

    Args:
        converter: A trained converter (any input size).
        mode: ``"float32"``: float weights and activations, float [0, 1] images in and out.
            ``"int8"``: full integer quantization (int8 weights and activations) with uint8 image
            input and output, the pixel bytes a phone has; the input scale is 1/255, so uint8
            pixels go in unchanged. The file ends at the sigmoid: the converter's output grid
            (``model.OutputLevels``) is applied to its bytes afterwards (``model.snap_to_levels``),
            since int8 intermediates cannot hold the grid exactly.
        image_size: (height, width) of the fixed input.
        calibration_images: uint8 N x H x W x 3 real images for int8 calibration.
        calibration_steps: How many of them calibrate the activation ranges.

    Returns:
        The flatbuffer's bytes.

    Raises:
        ValueError: on an unknown mode, or int8 without calibration images.
    """
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose one of: {', '.join(MODES)}")
    # Keras 3 prints the exported signature to stdout while converting; keep the user's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        lite = tf.lite.TFLiteConverter.from_keras_model(fix_input_shape(converter, *image_size))
    if mode == "int8":
        if calibration_images is None or len(calibration_images) == 0 or calibration_steps < 1:
            raise ValueError("int8 quantization needs real calibration images and calibration_steps >= 1")
        with contextlib.redirect_stdout(io.StringIO()):
            lite = tf.lite.TFLiteConverter.from_keras_model(
                fix_input_shape(strip_output_levels(converter), *image_size)
            )
        lite.optimizations = [tf.lite.Optimize.DEFAULT]
        lite.representative_dataset = _representative_dataset(calibration_images, calibration_steps)
        lite.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        lite.inference_input_type = tf.uint8
        lite.inference_output_type = tf.uint8
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # With uint8 input the converter warns that it got no input statistics; it derives them
        # from the calibration images, and the input scale comes out 1/255 (tested).
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        return lite.convert()


def run_tflite(model_bytes: bytes, images: np.ndarray, batch_size: int = 100, output_step: int = 1) -> np.ndarray:
    """Runs a converter ``.tflite`` on uint8 images with ai_edge_litert; returns the uint8 images sent.

    Handles float and quantized input/output from the tensors' own quantization parameters.
    ``output_step`` > 1 applies the converter's output grid to the bytes (int8 files end at the
    sigmoid; see ``convert_to_tflite``).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
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
        y = interpreter.get_tensor(output["index"])
        if output["dtype"] != np.float32:
            scale, zero_point = output["quantization"]
            y = (y.astype(np.float32) - zero_point) * scale
        out.append(snap_to_levels(metrics.to_uint8(y), output_step))
    return np.concatenate(out)


def check_parity(
    model_bytes: bytes,
    keras_converted: np.ndarray,
    target: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    output_step: int = 1,
) -> dict:
    """Compares a ``.tflite`` converter with the Keras converter on real images.

    Args:
        model_bytes: The ``.tflite`` file's bytes.
        keras_converted: uint8 images the Keras converter made from ``images``.
        target: The frozen target.
        images: uint8 held-out originals.
        labels: Their target labels.
        output_step: The grid to apply after the interpreter (int8 files; see ``run_tflite``).

    Returns:
        ``max_pixel_diff`` and ``mean_pixel_diff`` (uint8 levels, TFLite vs Keras output),
        ``accuracy_keras`` and ``accuracy_tflite`` (target accuracy on each one's converted images),
        ``accuracy_change_points`` (TFLite minus Keras), ``entropy_tflite`` (mean bits).
    """
    lite_converted = run_tflite(model_bytes, images, output_step=output_step)
    diff = np.abs(lite_converted.astype(np.int16) - keras_converted.astype(np.int16))
    acc_keras = evaluate.target_accuracy(target, keras_converted, labels)
    acc_lite = evaluate.target_accuracy(target, lite_converted, labels)
    return {
        "images": int(len(images)),
        "max_pixel_diff": int(diff.max()),
        "mean_pixel_diff": float(diff.mean()),
        "accuracy_keras": acc_keras,
        "accuracy_tflite": acc_lite,
        "accuracy_change_points": 100.0 * (acc_lite - acc_keras),
        "entropy_tflite": float(np.mean(metrics.image_entropy(lite_converted))),
    }


def export_converter(
    converter: keras.Model,
    target: keras.Model,
    output_dir: str,
    calibration_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    calibration_steps: int = 100,
) -> dict:
    """Writes ``converter_float32.tflite`` and ``converter_int8.tflite`` and checks both.

    Args:
        converter: The trained Keras converter.
        target: The frozen target, used only to measure accuracy (it is not exported).
        output_dir: Where the files and ``export.json`` go.
        calibration_images: uint8 training images for int8 calibration.
        test_images: uint8 held-out images for the parity check.
        test_labels: Their target labels.
        calibration_steps: Calibration images used.

    Returns:
        ``{"files": {mode: {"path", "bytes", parity...}}, "size_ratio_float32_to_int8"}``, also
        saved as ``output_dir/export.json``.
    """
    if calibration_steps < 1:
        raise DapterError(f"calibration_steps must be >= 1, got {calibration_steps}")
    image_size = test_images.shape[1:3]
    os.makedirs(output_dir, exist_ok=True)
    keras_converted = evaluate.convert_images(converter, test_images)
    step = output_step_of(converter)
    files = {}
    for mode in MODES:
        after = step if mode == "int8" else 1  # The float file holds the grid; int8 bytes get it after.
        model_bytes = convert_to_tflite(converter, mode, image_size, calibration_images, calibration_steps)
        path = os.path.join(output_dir, f"converter_{mode}.tflite")
        with open(f"{path}.tmp", "wb") as f:
            f.write(model_bytes)
        os.replace(f"{path}.tmp", path)
        files[mode] = {
            "path": path,
            "bytes": len(model_bytes),
            "output_step_after_interpreter": after,
            **check_parity(model_bytes, keras_converted, target, test_images, test_labels, after),
        }
    result = {
        "image_size": list(image_size),
        "output_step": step,
        "calibration_steps": int(min(calibration_steps, len(calibration_images))),
        "files": files,
        "size_ratio_float32_to_int8": files["float32"]["bytes"] / files["int8"]["bytes"],
    }
    write_json(os.path.join(output_dir, "export.json"), result)
    return result

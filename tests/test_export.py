"""TFLite export: float32 and full-int8 files run by ai_edge_litert and checked against Keras."""

import keras
import numpy as np
import pytest

from dapter_tf import classifier, evaluate
from dapter_tf.model import build_converter, snap_to_levels
from export import export_tflite_lib


@pytest.fixture(scope="module")
def converter():
    keras.utils.set_random_seed(0)
    # Default width: the size ratio below is about the shipped model. The plain sigmoid output
    # (step 1) makes every pixel level count in the parity checks; the stepped output is tested below.
    return build_converter(output_step=1)


def _on_grid(pixels, step):
    return ((pixels.astype(int) - 128) % step == 0) | (pixels == 255)


def test_stepped_output_survives_export_on_its_grid(embedded):
    keras.utils.set_random_seed(0)
    stepped = build_converter(output_step=16)
    out = stepped.get_layer("conv8_out")
    kernel, bias = out.get_weights()
    out.set_weights([kernel * 60.0, bias])  # Spread the untrained outputs over the whole range.
    images = embedded[1].images[:20]
    keras_pixels = evaluate.convert_images(stepped, images)
    assert _on_grid(keras_pixels, 16).all() and len(np.unique(keras_pixels)) >= 10
    lite = export_tflite_lib.run_tflite(export_tflite_lib.convert_to_tflite(stepped, "float32", (32, 32)), images)
    assert _on_grid(lite, 16).all()
    assert (lite != keras_pixels).mean() < 0.001  # Only pixels on a rounding boundary may differ.
    # int8 files end at the sigmoid and the grid is applied to their bytes.
    int8 = export_tflite_lib.convert_to_tflite(stepped, "int8", (32, 32), embedded[0].images[:50])
    lite8 = export_tflite_lib.run_tflite(int8, images, output_step=16)
    assert _on_grid(lite8, 16).all()
    assert (lite8 != keras_pixels).mean() < 0.1  # Quantisation error moves a few pixels across a boundary.


def test_snap_to_levels_by_hand():
    # Ties (120, 136: half a step from a level) go away from 128.
    pixels = np.array([0, 7, 119, 120, 127, 128, 135, 136, 137, 250, 255], np.uint8)
    np.testing.assert_array_equal(snap_to_levels(pixels, 16), [0, 0, 112, 112, 128, 128, 128, 144, 144, 255, 255])
    np.testing.assert_array_equal(snap_to_levels(pixels, 1), pixels)


@pytest.fixture(scope="module")
def exported(converter, embedded, tiny_target_path, tmp_path_factory):
    train_set, test_set = embedded
    target = classifier.load_target(tiny_target_path)
    out = tmp_path_factory.mktemp("export")
    result = export_tflite_lib.export_converter(
        converter,
        target,
        str(out),
        train_set.images,
        test_set.images[:100],
        test_set.labels["label"][:100],
        calibration_steps=5,
    )
    return result


def test_float32_file_matches_keras_to_one_pixel_level(exported):
    f = exported["files"]["float32"]
    # Float TFLite and Keras differ by rounding only: at most one uint8 level after to_uint8.
    assert f["max_pixel_diff"] <= 1 and f["mean_pixel_diff"] < 0.01
    assert f["accuracy_tflite"] == pytest.approx(f["accuracy_keras"], abs=0.011)


def test_int8_file_matches_keras_within_quantization_error(exported):
    f = exported["files"]["int8"]
    assert f["mean_pixel_diff"] < 2.0 and f["max_pixel_diff"] <= 16


def test_files_keep_their_weights_and_int8_is_over_three_times_smaller(exported, converter):
    weight_bytes = 4 * converter.count_params()
    float_size, int8_size = exported["files"]["float32"]["bytes"], exported["files"]["int8"]["bytes"]
    # A file that dropped its weights would be a few KB (../shared/DESIGN.md).
    assert weight_bytes <= float_size < weight_bytes + 50_000
    assert exported["size_ratio_float32_to_int8"] >= 3.0
    assert int8_size < weight_bytes / 4 + 50_000


def test_int8_file_takes_and_gives_uint8_pixels(exported):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=exported["files"]["int8"]["path"])
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    assert list(inp["shape"]) == [1, 32, 32, 3]
    scale, zero_point = inp["quantization"]
    assert scale == pytest.approx(1 / 255) and zero_point == 0  # Pixel bytes go in unchanged.


def test_export_at_another_image_size(converter, embedded):
    images = np.repeat(np.repeat(embedded[1].images[:4], 2, axis=1), 2, axis=2)  # 64x64 real images.
    model_bytes = export_tflite_lib.convert_to_tflite(converter, "float32", (64, 64))
    lite = export_tflite_lib.run_tflite(model_bytes, images)
    diff = np.abs(lite.astype(int) - evaluate.convert_images(converter, images).astype(int))
    assert lite.shape == (4, 64, 64, 3) and diff.max() <= 1


def test_unknown_mode_and_missing_calibration(converter):
    with pytest.raises(ValueError, match="unknown quantization mode 'int4'"):
        export_tflite_lib.convert_to_tflite(converter, "int4", (32, 32))
    with pytest.raises(ValueError, match="int8 quantization needs real calibration images"):
        export_tflite_lib.convert_to_tflite(converter, "int8", (32, 32))

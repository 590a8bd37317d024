"""TFLite export: float32 and full-int8 files run by ai_edge_litert and checked against Keras."""

import keras
import numpy as np
import pytest

from dapter_tf import classifier, evaluate
from dapter_tf.model import build_converter
from export import export_tflite_lib


@pytest.fixture(scope="module")
def converter():
    keras.utils.set_random_seed(0)
    return build_converter()  # Default width: the size ratio below is about the shipped model.


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

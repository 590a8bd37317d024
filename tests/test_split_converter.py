"""The split form of the Fig. 3 converter: a thin full-resolution path, the rest on pixel patches (issue 32)."""

import json
import re

import keras
import numpy as np
import pytest
from conftest import assert_float_tflite_matches_keras, tiny_dapter_config

from dapter_tf import DapterError, models, train
from dapter_tf.data.tasks import get_task
from dapter_tf.models import build_split_converter
from dapter_tf.train.converter import check_target_fits
from export.benchmark import benchmark_lib
from export.tflite import export_tflite_lib


def test_macs_by_hand_at_224():
    # Full resolution: layer 1 (3 -> 8, 3x3) and layer 8 (the 8 copy channels and the 8 of the context -> 3).
    full = 224 * 224 * 9 * 3 * 8 + 224 * 224 * 9 * 16 * 3
    # Fig. 3's layers 1-7 on 4x4 patches of 48 values, as in the patch form (tests/test_patch_converter.py),
    # then the context's 1x1 convolution of the 96 channels of its copy connection to 8, at 56x56.
    patches = 3 * 56 * 56 * 9 * 48 * 48 + 4 * 28 * 28 * 9 * 48 * 96 + 56 * 56 * 96 * 8
    assert full + patches == 360_062_976  # 0.360 GMAC, against Fig. 3's 1,137,991,680 and the patch form's 520 M.
    lite = export_tflite_lib.convert_to_tflite(build_split_converter(), "float32", (224, 224))
    assert sum(benchmark_lib.tflite_macs(lite).values()) == full + patches


def test_the_context_is_the_same_for_every_pixel_of_a_patch():
    keras.utils.set_random_seed(0)
    converter = build_split_converter((8, 8, 8))
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    context = keras.Model(converter.input, converter.get_layer("context_repeat").output)(images).numpy()
    assert context.shape == (2, 32, 32, 8)
    # Each 4x4 block holds one vector, repeated: the value at its top-left pixel.
    blocks = context.reshape(2, 8, 4, 8, 4, 8)
    np.testing.assert_array_equal(blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape))
    # Layer 8 reads the copy path (8 channels at full resolution) beside it.
    assert converter.get_layer("conv8_out").input.shape[-1] == models.SPLIT_FULL_FILTERS + 8


def test_keras_and_tflite_agree_in_float_and_int8_and_the_file_round_trips(embedded, tmp_path):
    keras.utils.set_random_seed(0)
    converter = build_split_converter((8, 8, 8))
    images = embedded[1].images[:8]
    keras_pixels = assert_float_tflite_matches_keras(converter, images)
    from ai_edge_litert.interpreter import Interpreter

    # The phone's file: full int8, uint8 pixels in and out.
    int8 = export_tflite_lib.convert_to_tflite(converter, "int8", (32, 32), embedded[0].images[:32])
    interpreter = Interpreter(model_content=int8)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    interpreter.set_tensor(inp["index"], images[:1].astype(np.uint8))
    interpreter.invoke()
    got = interpreter.get_tensor(out["index"])[0].astype(np.float32)
    assert np.mean(np.abs(got - keras_pixels[0]) <= 16) > 0.95  # Within a grid step, but where int8 rounds.
    converter.save(tmp_path / "c.keras")
    loaded = models.load_converter(str(tmp_path / "c.keras"))
    np.testing.assert_array_equal(loaded(images[:2] / 255.0).numpy(), converter(images[:2] / 255.0).numpy())


def test_a_bad_patch_side_is_refused(tiny_target_path):
    with pytest.raises(DapterError, match="the split converter needs patches of 2, 4, 8 or 16 pixels, got 3"):
        build_split_converter(patch=3)
    with pytest.raises(DapterError, match=re.escape("patch must be 2, 4, 8 or 16 pixels (a power of two; for 1 use")):
        tiny_dapter_config(tiny_target_path, architecture="fig3_split", patch=1)


def test_one_training_step_of_the_split_converter_on_2x2_patches_is_recorded(embedded, tiny_target_path, tmp_path):
    config = tiny_dapter_config(tiny_target_path, architecture="fig3_split", filters=(8, 8, 8), patch=2)
    results = train.train_dapter(config, get_task("cifar10"), embedded[0].take(32), embedded[1].take(32), str(tmp_path))
    assert results["steps"] == 1 and results["architecture"] == "fig3_split"
    converter = models.load_converter(str(tmp_path))
    assert converter.get_layer("to_patches").get_config()["patch"] == 2
    assert converter.get_layer("conv1").input.shape[-1] == 12  # 2x2 patches of 3 colours.
    assert converter.get_layer("conv1_full").output.shape[-1] == models.SPLIT_FULL_FILTERS
    assert converter(embedded[1].images[:1].astype("float32") / 255.0).shape == (1, 32, 32, 3)
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert (recorded["architecture"], recorded["patch"]) == ("fig3_split", 2)


def test_image_sides_must_be_multiples_of_four_patches(embedded, tiny_target_path):
    target = keras.models.load_model(tiny_target_path)
    message = "fig3_split needs image sides that are multiples of 64, got 32x32"
    with pytest.raises(DapterError, match=re.escape(message)):
        check_target_fits(
            tiny_dapter_config(tiny_target_path, architecture="fig3_split", patch=16),
            get_task("cifar10"),
            embedded[0].take(8),
            target,
        )

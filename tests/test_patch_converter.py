"""The efficient form of the Fig. 3 converter: the same eight layers on 4x4 pixel patches (issue 32)."""

import json
import re

import keras
import numpy as np
import pytest
from conftest import assert_float_tflite_matches_keras, tiny_dapter_config

from dapter_tf import DapterError, models, train
from dapter_tf.data.tasks import get_task
from dapter_tf.models import FromPatches, ToPatches, build_patch_converter
from dapter_tf.train.converter import check_target_fits
from export.benchmark import benchmark_lib
from export.tflite import export_tflite_lib


def test_patches_by_hand_and_back():
    # One 4x4 single-channel image: its one patch holds the 16 pixels in row-major order.
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    patches = ToPatches(4)(image).numpy()
    assert patches.shape == (1, 1, 1, 16)
    np.testing.assert_array_equal(patches.ravel(), np.arange(16))
    # 2x2 patches of an RGB image: the top-left patch is pixels (0,0), (0,1), (1,0), (1,1), 3 values each.
    rgb = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    two = ToPatches(2)(rgb).numpy()
    np.testing.assert_array_equal(two[0, 0, 0], rgb[0, :2, :2].reshape(-1))
    np.testing.assert_array_equal(FromPatches(2)(two).numpy(), rgb)


def test_macs_by_hand_at_224():
    # Layers 1-3 at 56x56 on 48 channels (the first reads the 48 values of a 4x4 patch): 3 x 56*56*9*48*48;
    # 4 and 5 halve to 28x28 (48 -> 96) and 14x14 (96 -> 192): 28*28*9*48*96 + 14*14*9*96*192;
    # 6 and 7 (sub-pixel form) the same as 5 and 4: 14*14*9*192*96 + 28*28*9*96*48;
    # 8 reads the copy connection's 96 channels and the 48 of the patches at 56x56 and gives 48 (16 pixels
    # x 3): 56*56*9*144*48.
    by_hand = 3 * 56 * 56 * 9 * 48 * 48 + 4 * 28 * 28 * 9 * 48 * 96 + 56 * 56 * 9 * 144 * 48
    assert by_hand == 520_224_768  # 0.520 GMAC, against the Fig. 3 converter's 1,137,991,680.
    lite = export_tflite_lib.convert_to_tflite(build_patch_converter(), "float32", (224, 224))
    assert sum(benchmark_lib.tflite_macs(lite).values()) == by_hand


def test_keras_and_tflite_agree_and_the_file_round_trips(embedded, tmp_path):
    keras.utils.set_random_seed(0)
    converter = build_patch_converter((8, 8, 8))
    images = embedded[1].images[:8]
    assert_float_tflite_matches_keras(converter, images)
    converter.save(tmp_path / "c.keras")
    loaded = models.load_converter(str(tmp_path / "c.keras"))
    np.testing.assert_array_equal(loaded(images[:2] / 255.0).numpy(), converter(images[:2] / 255.0).numpy())


def test_a_new_patch_converter_passes_the_image_through(embedded):
    # Layer 8 starts as sigmoid(6 (x - 1/2)) of each pixel value: black 0.047, white 0.953, grey 0.5;
    # the features of layers 1-7 at a tenth of their scale move it by less than the output grid's step.
    keras.utils.set_random_seed(0)
    images = embedded[1].images[:16].astype(np.float32) / 255.0
    passed = 1.0 / (1.0 + np.exp(-models.PASS_GAIN * (images - 0.5)))
    assert models.PASS_GAIN == 6.0 and passed.min() >= 0.047 and passed.max() <= 0.953
    converted = build_patch_converter()(images).numpy()
    assert np.abs(converted - passed).max() < 0.05  # Half an output step (8/255) and a little.
    # Fig. 3 starts elsewhere: its first images are far from the photo.
    assert np.abs(models.build_converter()(images).numpy() - passed).mean() > 0.2


def test_patches_of_one_pixel_are_refused():
    with pytest.raises(DapterError, match="the patch converter needs patches of at least 2x2 pixels"):
        build_patch_converter(patch=1)
    with pytest.raises(DapterError, match="the patch converter needs patches of 2, 4, 8 or 16 pixels, got 3"):
        build_patch_converter(patch=3)


def test_one_training_step_of_the_patch_converter_is_recorded(embedded, tiny_target_path, tmp_path):
    config = tiny_dapter_config(tiny_target_path, architecture="fig3_patches", filters=(8, 8, 8))
    results = train.train_dapter(config, get_task("cifar10"), embedded[0].take(32), embedded[1].take(32), str(tmp_path))
    assert results["steps"] == 1 and results["architecture"] == "fig3_patches"
    converter = models.load_converter(str(tmp_path))
    assert {"to_patches", "from_patches"} <= {layer.name for layer in converter.layers}
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == "fig3_patches"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"architecture": "fig3_patches", "patch": 3}, "patch must be 2, 4, 8 or 16 pixels (a power of two; for 1 use"),
        ({"architecture": "fig3_patches", "patch": 1}, "patch must be 2, 4, 8 or 16 pixels (a power of two; for 1 use"),
        ({"architecture": "fig3", "patch": 2}, "patch=2 needs architecture fig3_patches or fig3_split"),
    ],
)
def test_a_bad_patch_side_is_refused(tiny_target_path, overrides, message):
    with pytest.raises(DapterError, match=re.escape(message)):
        tiny_dapter_config(tiny_target_path, **overrides)


def test_patches_of_two_pixels_are_trained_and_recorded(embedded, tiny_target_path, tmp_path):
    config = tiny_dapter_config(tiny_target_path, architecture="fig3_patches", filters=(8, 8, 8), patch=2)
    train.train_dapter(config, get_task("cifar10"), embedded[0].take(32), embedded[1].take(32), str(tmp_path))
    converter = models.load_converter(str(tmp_path))
    assert converter.get_layer("to_patches").get_config()["patch"] == 2
    assert converter.get_layer("conv1").input.shape[-1] == 12  # 2x2 patches of 3 colours.
    assert converter(embedded[1].images[:1].astype("float32") / 255.0).shape == (1, 32, 32, 3)
    assert json.loads((tmp_path / "config.json").read_text())["patch"] == 2


def test_image_sides_must_be_multiples_of_four_patches(embedded, tiny_target_path):
    target = keras.models.load_model(tiny_target_path)
    photos = embedded[0].take(8)  # 32x32
    check_target_fits(
        tiny_dapter_config(tiny_target_path, architecture="fig3_patches", patch=8), get_task("cifar10"), photos, target
    )
    with pytest.raises(
        DapterError, match=re.escape("fig3_patches needs image sides that are multiples of 64, got 32x32")
    ):
        check_target_fits(
            tiny_dapter_config(tiny_target_path, architecture="fig3_patches", patch=16),
            get_task("cifar10"),
            photos,
            target,
        )

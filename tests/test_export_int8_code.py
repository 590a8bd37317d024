"""Full-int8 export of a coarse output code: export.tflite.int8_rewrite keeps its block colours on their grid step."""

import keras
import numpy as np
import pytest
from conftest import spread_converter

from dapter_tf import evaluate, models
from export.tflite import export_tflite_lib
from export.tflite.int8_rewrite import LOGIT_CLIP, activation_caps, rewrite_for_int8
from export.tflite.parity import DEFAULT_TOLERANCES, check_parity, parity_failures


def test_activation_caps_by_hand():
    # A 1x1 convolution that passes the red channel through a ReLU: its activations are the red
    # pixels / 255. 10 images of 2x2 hold red values 0..39; at the 90th percentile 4 of the 40 values
    # (36..39) lie above the cap, so the cap is 35 / 255, whatever the batch size.
    images = keras.Input((None, None, 3))
    red = keras.layers.Conv2D(1, 1, activation="relu", name="red")
    model = keras.Model(images, red(images))
    red.set_weights([np.array([1.0, 0.0, 0.0], np.float32).reshape(1, 1, 3, 1), np.zeros(1, np.float32)])
    pixels = np.zeros((10, 2, 2, 3), np.uint8)
    pixels[..., 0] = np.random.default_rng(0).permutation(40).reshape(10, 2, 2)
    for batch_size in (3, 10):
        caps = activation_caps(model, pixels, percentile=90, batch_size=batch_size)
        assert caps == {"red": pytest.approx(35 / 255)}


def test_rewrite_computes_the_same_block_colours_with_other_ops(embedded):
    _, test_set = embedded
    converter = models.strip_output_levels(spread_converter(10.0, seed=1, filters=(4, 8, 8), output_block=8))
    rewritten = rewrite_for_int8(converter)
    names = [layer.name for layer in rewritten.layers]
    # The copy connection feeds the output convolution part by part; the block mean is a depthwise
    # convolution of weights 1/64; no average pool is left for int8 to tie to the sigmoid's scale.
    assert {"conv8_out_part0", "conv8_out_part1", "conv8_out_sum", "conv8_out_clip", "output_blocks_mean"} <= set(names)
    assert "copy_connection" not in names and "output_blocks" not in names
    np.testing.assert_array_equal(rewritten.get_layer("output_blocks_mean").get_weights()[0], np.full((8, 8, 3, 1), 1 / 64))
    x = test_set.images[:20].astype(np.float32) / 255
    # The same function: only the logit clip at +-8 may move a pixel, by at most 255 * sigmoid(-8) levels.
    difference = np.abs(rewritten.predict(x, verbose=0) - converter.predict(x, verbose=0)) * 255
    assert difference.max() <= 255 / (1 + np.exp(LOGIT_CLIP))


def test_coarse_code_int8_file_passes_its_gate_only_with_the_rewrite(embedded, tiny_target_path, tmp_path):
    train_set, test_set = embedded
    target = models.load_target(tiny_target_path)
    # One colour per 8x8 block on the grid of step 16, shaped as the first cifar2_10_reference was: its sigmoid
    # saturated over much of each block and the upsampling path's activations far larger than the
    # copy connection's. The plain int8 file clips every bright pixel at the brightest calibrated
    # block mean and quantizes the copy connection at the upsampling path's scale.
    converter = spread_converter(30.0, seed=1, filters=(4, 8, 8), output_block=8, output_step=16)
    upsampling = converter.get_layer("conv7_up")
    kernel, bias = upsampling.get_weights()
    upsampling.set_weights([kernel * 30, bias])
    images, labels = test_set.images[:100], test_set.labels["label"][:100]
    plain = export_tflite_lib.convert_to_tflite(converter, "int8", (32, 32), train_set.images, 50, int8_rewrite=False)
    parity = check_parity(
        plain, evaluate.convert_images(converter, images), target, images, labels, output_step=16
    )
    failures = parity_failures(parity, DEFAULT_TOLERANCES["int8"], 16)
    # Measured: max 32, mean 2.87 levels (about 18 % of the block colours a grid step off).
    assert any(failure.startswith("mean pixel diff") for failure in failures), parity
    # The export path rewrites the file and passes the same, unchanged gate.
    result = export_tflite_lib.export_converter(
        converter, target, str(tmp_path), train_set.images, images, labels, calibration_steps=50, modes=("int8",)
    )
    entry = result["files"]["int8"]
    # Measured: max 16, mean 0.67 levels.
    assert entry["failures"] == [] and entry["mean_pixel_diff"] < parity["mean_pixel_diff"] / 2, (entry, parity)

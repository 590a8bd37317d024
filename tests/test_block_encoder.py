"""The block encoder: a converter for the coarse output code whose cost falls with the block side."""

import json

import keras
import numpy as np
import pytest
from conftest import assert_one_error_line, run_binary, tiny_dapter_config

from dapter_tf import DapterError, models, train
from dapter_tf.analysis import protection
from dapter_tf.data.tasks import get_task
from dapter_tf.models import RepeatBlocks, build_block_converter, output_block_of
from dapter_tf.records import runs
from export.benchmark import benchmark_lib
from export.tflite import export_tflite_lib


def _conv_macs(model: keras.Model) -> int:
    """Multiply-accumulates of every Conv2D of a fixed-size model: H_out * W_out * k_h * k_w * C_in * C_out."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, c_out = layer.output.shape
            k_h, k_w = layer.kernel_size
            total += height * width * k_h * k_w * layer.input.shape[-1] * c_out
    return total


def test_macs_fall_with_the_block_side_and_match_the_tflite_count():
    macs = [_conv_macs(build_block_converter((24, 48, 96), b, input_shape=(224, 224, 3))) for b in (4, 8, 16, 32)]
    assert macs == sorted(macs, reverse=True) and len(set(macs)) == 4
    # b = 32 by hand at 224x224: 4x4 patches (48 values) at 56x56, two 3x3 convolutions there, then three
    # halvings of a stride-2 and a stride-1 3x3 convolution, with channels 24, 24, 48, 96 at 56, 28, 14 and 7
    # pixels, then the context's 1x1 convolution on one pixel and the 1x1 head. Nothing runs at 224 or 112.
    #   56*56*9*48*24  +  56*56*9*24*24  = 32,514,048 + 16,257,024
    #   28*28*9*24*24  +  28*28*9*24*24  =  4,064,256 +  4,064,256
    #   14*14*9*24*48  +  14*14*9*48*48  =  2,032,128 +  4,064,256
    #    7*7*9*48*96   +   7*7*9*96*96   =  2,032,128 +  4,064,256
    #    1*1*1*96*96 (context)  +  7*7*1*96*3 (head)  =  9,216 + 14,112
    #   -> 69,115,680: 16x below the Fig. 3 converter's 1.138 G.
    assert macs[-1] == 69_115_680
    # The bench counts on the .tflite file: the same figure, here at 32x32 for b = 8.
    converter = build_block_converter((4, 8, 8), 8)
    lite = export_tflite_lib.convert_to_tflite(converter, "float32", (32, 32))
    fixed = build_block_converter((4, 8, 8), 8, input_shape=(32, 32, 3))
    assert sum(benchmark_lib.tflite_macs(lite).values()) == _conv_macs(fixed)


def test_repeat_blocks_spreads_each_colour_over_its_block_by_hand():
    colours = np.array([[[[0.1, 0.2, 0.3]], [[0.4, 0.5, 0.6]]]], np.float32)  # 1 x 2 x 1 x 3: two blocks.
    out = RepeatBlocks(2)(colours).numpy()
    assert out.shape == (1, 4, 2, 3)
    np.testing.assert_array_equal(out[0, :2], np.full((2, 2, 3), [0.1, 0.2, 0.3], np.float32))
    np.testing.assert_array_equal(out[0, 2:], np.full((2, 2, 3), [0.4, 0.5, 0.6], np.float32))


def test_output_is_constant_over_each_block_and_on_the_grid(embedded, tmp_path):
    keras.utils.set_random_seed(0)
    converter = build_block_converter((4, 8, 8), 8)
    head = converter.get_layer("block_colours")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 30.0, bias])  # Spread the colours over the grid.
    images = embedded[1].images[:4].astype(np.float32) / 255.0
    sent = np.round(converter.predict(images, verbose=0) * 255)
    assert sent.shape == images.shape
    blocks = sent.reshape(4, 4, 8, 4, 8, 3)
    assert np.all(blocks == blocks[:, :, :1, :, :1, :])  # Constant within every 8x8 block.
    # On the grid 128 + 16 k, whose top level 256 is clipped to 255 (pixels.grid_levels).
    assert len(np.unique(sent)) > 2 and np.all(((sent - 128) % 16 == 0) | (sent == 255))
    assert output_block_of(converter) == 8

    path = str(tmp_path / "converter.keras")
    models.save_model(converter, path)
    loaded = models.load_converter(path)  # safe_mode=True
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), converter.predict(images, verbose=0))
    assert output_block_of(loaded) == 8


def test_blocks_of_one_pixel_are_refused():
    with pytest.raises(
        DapterError,
        match="the block encoder needs blocks of at least 2x2 pixels; for blocks of 1 use the Fig. 3 converter",
    ):
        build_block_converter((4, 8, 8), 1)


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {"architecture": "unet"},
            "architecture must be one of fig3, fig3_patches, fig3_split, block_encoder, got 'unet'",
        ),
        (
            {"architecture": "block_encoder"},
            "architecture block_encoder needs output_block >= 2 (it stops at the block resolution); "
            "with output_block 1 use architecture fig3",
        ),
        (
            {"architecture": "block_encoder", "output_block": 8, "class_code": "target"},
            "class_code and output_block are two output codes: choose one",
        ),
    ],
)
def test_config_refuses_an_architecture_without_its_code(fields, message):
    with pytest.raises(DapterError) as error:
        tiny_dapter_config("t.keras", **fields)
    assert str(error.value) == message


def test_frontier_recipes_take_the_architecture():
    base = tiny_dapter_config("t.keras")
    recipe = protection.parse_recipe("b32_enc: architecture=block_encoder output_block=32")
    assert recipe.apply(base).architecture == "block_encoder" and recipe.family == "coarse code"
    with pytest.raises(DapterError, match="recipe enc: architecture block_encoder needs output_block >= 2"):
        protection.check_recipes([protection.parse_recipe("enc: architecture=block_encoder")], base)


def test_one_training_step_of_the_block_encoder_is_recorded(embedded, tiny_target_path, tmp_path):
    config = tiny_dapter_config(tiny_target_path, architecture="block_encoder", output_block=8)
    results = train.train_dapter(config, get_task("cifar10"), embedded[0].take(32), embedded[1].take(32), str(tmp_path))
    assert results["steps"] == 1 and results["architecture"] == "block_encoder"
    converter = models.load_converter(str(tmp_path))
    assert output_block_of(converter) == 8 and "repeat_blocks" in {layer.name for layer in converter.layers}
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == "block_encoder"
    # A rerun must match the record: the Fig. 3 converter cannot resume this run.
    with pytest.raises(DapterError, match="differs in: architecture"):
        runs.prepare_workdir(str(tmp_path), tiny_dapter_config(tiny_target_path, output_block=8))


def test_train_dapter_refuses_the_block_encoder_without_blocks_in_one_line(tiny_target_path, tmp_path):
    proc = run_binary(
        "experiments.train_dapter",
        f"--target={tiny_target_path}",
        f"--workdir={tmp_path / 'run'}",
        "--architecture=block_encoder",
    )
    assert_one_error_line(proc, "architecture block_encoder needs output_block >= 2")
    assert not (tmp_path / "run").exists()

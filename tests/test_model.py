"""The converter of Fig. 3: shapes, range, layer count, copy connection, round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import spread_converter

from dapter_tf import DapterError
from dapter_tf.models import OutputLevels, build_converter, check_image_size, output_step_of


@pytest.fixture(scope="module")
def converter():
    keras.utils.set_random_seed(0)
    return build_converter((4, 8, 8), output_step=1)  # The paper's plain sigmoid: every level counts.


@pytest.mark.parametrize("height, width", [(32, 32), (64, 64), (224, 224), (32, 96)], ids=["32", "64", "224", "32x96"])
def test_output_has_the_input_shape_and_pixel_range(converter, height, width):
    images = np.random.default_rng(0).random((2, height, width, 3), dtype=np.float32)
    out = np.asarray(converter(images))
    assert out.shape == (2, height, width, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_eight_convolution_layers(converter):
    conv_types = (keras.layers.Conv2D, keras.layers.Conv2DTranspose)
    convs = [layer for layer in converter.layers if isinstance(layer, conv_types)]
    assert len(convs) == 8
    assert [c.strides for c in convs] == [(1, 1)] * 3 + [(2, 2)] * 4 + [(1, 1)]


def test_copy_connection_joins_layer_3_output_to_layer_8_input(converter):
    concat = converter.get_layer("copy_connection")
    inbound = [t._keras_history.operation.name for t in concat.input]
    assert inbound == ["conv3", "conv7_up"]
    assert converter.get_layer("conv8_out").input is concat.output


def test_config_round_trip_gives_the_same_model(converter):
    clone = keras.Model.from_config(converter.get_config())
    clone.set_weights(converter.get_weights())
    images = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(clone(images)), np.asarray(converter(images)), atol=1e-6)


def test_keras_file_round_trip_in_safe_mode(converter, tmp_path):
    path = str(tmp_path / "converter.keras")
    converter.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    images = np.random.default_rng(2).random((1, 64, 64, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(converter(images)), atol=1e-6)


@pytest.mark.parametrize("height, width", [(30, 32), (32, 34), (0, 32)], ids=["30x32", "32x34", "empty"])
def test_sides_must_be_multiples_of_four(height, width):
    with pytest.raises(DapterError, match="multiples of 4"):
        check_image_size(height, width)


def test_output_levels_round_to_the_grid_around_128_by_hand():
    # In levels of 255: 128 +- 16k, clipped to 0..255. 0.53 is 7.2 levels above 128: sent as 128.
    x = tf.constant([0.5, 0.53, 0.54, 0.44, 1.0, 0.0])
    out = np.asarray(OutputLevels(16)(x, training=False)) * 255
    np.testing.assert_allclose(out, [128, 128, 144, 112, 255, 0], atol=1e-4)


def test_output_levels_pass_the_gradient_straight_through():
    x = tf.Variable([0.5, 0.53, 0.9])
    with tf.GradientTape() as tape:
        y = OutputLevels(16)(x, training=True)
        loss = tf.reduce_sum(y * tf.constant([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(np.asarray(y) * 255, [128, 128, 224], atol=1e-4)
    np.testing.assert_allclose(tape.gradient(loss, x), [1.0, 2.0, 3.0])


def test_stepped_converter_round_trips_in_safe_mode_and_sends_grid_pixels(tmp_path):
    stepped = spread_converter(60.0, filters=(4, 8, 8), output_step=16)
    path = str(tmp_path / "stepped.keras")
    stepped.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert output_step_of(loaded) == 16 and output_step_of(build_converter(output_step=1)) == 1
    images = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
    pixels = np.round(np.asarray(loaded(images)) * 255).astype(int)
    np.testing.assert_array_equal(pixels, np.round(np.asarray(stepped(images)) * 255).astype(int))
    assert (((pixels - 128) % 16 == 0) | (pixels == 255)).all() and len(np.unique(pixels)) > 5


@pytest.mark.parametrize("step", [0, 129, 2.5])
def test_output_step_out_of_range(step):
    with pytest.raises(DapterError, match="output_step must be an integer number of pixel levels in 1..128"):
        build_converter(output_step=step)

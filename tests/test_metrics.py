"""Image entropy (§4.1), accuracy drop and PNG bandwidth on hand-checkable images."""

import math

import numpy as np
import pytest

from dapter_tf import metrics


def test_entropy_of_a_constant_image_is_zero():
    assert metrics.image_entropy(np.full((4, 4, 3), 77, np.uint8)) == 0.0


def test_entropy_of_two_equally_frequent_values_is_one_bit_per_channel():
    image = np.zeros((2, 2, 3), np.uint8)
    image[0, 0] = image[1, 1] = 255
    assert metrics.image_entropy(image) == pytest.approx(3.0)


def test_entropy_of_all_256_values_is_eight_bits_per_channel():
    image = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)
    assert metrics.image_entropy(image) == pytest.approx(24.0)


def test_entropy_of_a_three_to_one_split_in_one_channel():
    image = np.zeros((2, 2, 3), np.uint8)
    image[0, 0, 1] = 9  # Green: three 0s and one 9; red and blue constant.
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert metrics.image_entropy(image) == pytest.approx(expected)


def test_entropy_is_per_image_in_a_batch():
    batch = np.zeros((2, 2, 2, 3), np.uint8)
    batch[1, 0, 0] = batch[1, 1, 1] = 200
    np.testing.assert_allclose(metrics.image_entropy(batch), [0.0, 3.0])


def test_entropy_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        metrics.image_entropy(np.zeros((2, 2, 3), np.float32))


def test_to_uint8_rounds_and_clips():
    out = metrics.to_uint8(np.array([-0.2, 0.0, 128 / 255, 0.999, 1.3]))
    np.testing.assert_array_equal(out, [0, 0, 128, 255, 255])


def test_accuracy_and_drop_in_points():
    logits = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    assert metrics.accuracy(logits, np.array([0, 1, 1, 1])) == 0.75
    assert metrics.accuracy_drop_points(0.90, 0.87) == pytest.approx(3.0)


def test_bandwidth_of_gray_images_is_far_below_noise():
    noise = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    gray = np.full_like(noise, 128)
    assert metrics.bandwidth_ratio(noise, noise) == 1.0
    # 3,072 random bytes barely compress; a constant image is a few dozen bytes of PNG.
    assert metrics.bandwidth_ratio(gray, noise) < 0.05
    assert metrics.png_bytes(noise[:1]) > 3072

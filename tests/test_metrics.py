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


def test_paired_drop_and_its_standard_error_by_hand():
    # Right, right, wrong, wrong on originals; right, wrong, right, wrong converted: d = 0, 1, -1, 0.
    # Mean 0; std sqrt(0.5); standard error sqrt(0.5) / sqrt(4) = 0.3536, i.e. 35.36 points.
    assert metrics.paired_drop([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx((0.0, 35.355339))
    # Two of four answers lost: 50 points; d = 0, 0, 1, 1 has std 0.5, so 25 points.
    assert metrics.paired_drop([1, 1, 1, 1], [1, 1, 0, 0]) == pytest.approx((50.0, 25.0))
    # 50 % on 100 images: sqrt(0.25 / 100) = 5 points.
    assert metrics.binomial_error_points(0.5, 100) == pytest.approx(5.0)


def test_paired_drop_interval_counts_flipped_predictions_by_hand():
    # 64 images, the one flip of the CI failure that a fixed one-point gate failed: 1 of 64 right
    # answers turned wrong, none the other way. Drop 100 / 64 = 1.5625 points; d has mean 1/64 and
    # std sqrt(1/64 - 1/64**2) = 0.12402, so the standard error is 1.5503 points and the 95 %
    # interval 1.5625 -/+ 1.96 * 1.5503 = [-1.476, 4.601]: one image is not evidence of a loss.
    a = np.ones(64, bool)
    b = a.copy()
    b[0] = False
    interval = metrics.paired_drop_interval(a, b)
    assert interval["flipped_to_wrong"] == 1 and interval["flipped_to_right"] == 0
    assert interval["drop_points"] == pytest.approx(1.5625)
    assert interval["error_points"] == pytest.approx(1.55030, abs=1e-4)
    assert interval["low_points"] == pytest.approx(-1.4760, abs=1e-3)
    assert interval["high_points"] == pytest.approx(4.6010, abs=1e-3)
    # Flips both ways cancel in the drop but not in its noise: 2 lost, 2 gained of 4.
    even = metrics.paired_drop_interval([1, 1, 0, 0], [0, 0, 1, 1])
    assert (even["flipped_to_wrong"], even["flipped_to_right"], even["drop_points"]) == (2, 2, 0.0)
    assert even["error_points"] == pytest.approx(50.0)


def test_paired_drop_interval_refuses_unpaired_arrays():
    with pytest.raises(metrics.DapterError, match="equal non-empty"):
        metrics.paired_drop_interval(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(metrics.DapterError, match="equal non-empty"):
        metrics.paired_drop_interval([], [])

"""L_eta, L_acc and L_dap on hand-computed tiny inputs."""

import math

import numpy as np
import pytest
import tensorflow as tf

from dapter_tf import DapterError, losses

# A 2x2 RGB image, two black and two white pixels: each value is 128/255 or 127/255 from I_128.
BLACK_WHITE = np.array([[[[0, 0, 0], [1, 1, 1]], [[1, 1, 1], [0, 0, 0]]]], np.float32)


def test_entropy_loss_of_the_reference_image_is_zero():
    gray = np.full((1, 2, 2, 3), 128 / 255, np.float32)
    assert float(losses.entropy_reduction_loss(gray)[0]) == pytest.approx(0.0, abs=1e-7)


def test_entropy_loss_of_black_and_white_is_one_half():
    # Mean of |0 - 128/255| (6 values) and |1 - 128/255| (6 values) = (128 + 127) / 2 / 255 = 0.5.
    assert float(losses.entropy_reduction_loss(BLACK_WHITE)[0]) == pytest.approx(0.5, abs=1e-6)


def test_entropy_loss_is_per_example_and_size_free():
    gray = np.full((1, 4, 4, 3), 128 / 255, np.float32)
    big = np.tile(BLACK_WHITE, (1, 2, 2, 1))  # The same image at 4x4 has the same per-pixel loss.
    out = losses.entropy_reduction_loss(np.concatenate([gray, big]))
    np.testing.assert_allclose(out.numpy(), [0.0, 0.5], atol=1e-6)


def test_entropy_loss_gradient_is_sign_over_pixel_values():
    # d/dx mean|x - r| = sign(x - r) / 12 for the 12 values of a 2x2x3 image.
    image = tf.constant(BLACK_WHITE)
    with tf.GradientTape() as tape:
        tape.watch(image)
        loss = losses.entropy_reduction_loss(image)[0]
    grad = tape.gradient(loss, image).numpy()
    np.testing.assert_allclose(grad, np.where(BLACK_WHITE > 0.5, 1, -1) / 12, atol=1e-7)


def test_accuracy_loss_is_cross_entropy_in_nats():
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]], np.float32)
    # Uniform over two classes: ln 2. Softmax (3/4, 1/4) with label 0: ln(4/3).
    out = losses.accuracy_loss(np.array([1, 0]), logits).numpy()
    np.testing.assert_allclose(out, [math.log(2.0), math.log(4.0 / 3.0)], rtol=1e-6)


def test_dap_loss_weights_the_two_terms_by_lambda():
    terms = losses.dap_loss(BLACK_WHITE, np.array([0]), np.zeros((1, 2), np.float32), 0.9)
    assert float(terms["eta"][0]) == pytest.approx(0.5, abs=1e-6)
    assert float(terms["acc"][0]) == pytest.approx(math.log(2.0), rel=1e-6)
    assert float(terms["dap"][0]) == pytest.approx(0.9 * 0.5 + 0.1 * math.log(2.0), rel=1e-6)


@pytest.mark.parametrize("lambda_, expected", [(0.0, math.log(2.0)), (1.0, 0.5)], ids=["accuracy_only", "entropy_only"])
def test_dap_loss_at_the_ends_of_lambda(lambda_, expected):
    terms = losses.dap_loss(BLACK_WHITE, np.array([0]), np.zeros((1, 2), np.float32), lambda_)
    assert float(terms["dap"][0]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("lambda_", [-0.01, 1.01, float("nan")], ids=["negative", "above_one", "nan"])
def test_lambda_outside_zero_one_is_rejected(lambda_):
    with pytest.raises(DapterError, match=r"lambda must lie in \[0, 1\]"):
        losses.dap_loss(BLACK_WHITE, np.array([0]), np.zeros((1, 2), np.float32), lambda_)


def test_distillation_loss_by_hand():
    # A target unsure between two classes on the original (0.5, 0.5), and logits (0, 0) on the
    # converted image: cross-entropy -2 * 0.5 * ln(0.5) = ln 2.
    assert float(losses.distillation_loss([[0.5, 0.5]], [[0.0, 0.0]])[0]) == pytest.approx(np.log(2.0))
    # One-hot soft labels are Eq. 4 itself.
    logits = tf.constant([[2.0, -1.0, 0.5]])
    np.testing.assert_allclose(
        losses.distillation_loss([[0.0, 0.0, 1.0]], logits), losses.accuracy_loss([2], logits), rtol=1e-6
    )
    terms = losses.dap_loss(tf.fill((1, 2, 2, 3), 128 / 255), [0], [[0.0, 0.0]], 0.5, soft_labels=[[0.5, 0.5]])
    assert float(terms["acc"][0]) == pytest.approx(np.log(2.0)) and float(terms["dap"][0]) == pytest.approx(
        0.5 * np.log(2.0)
    )


def test_code_margin_loss_by_hand():
    # Step 16: levels at 128 + 16k; 4 levels from one is (4/16)^2 = 0.0625; the midpoint 136 is 0.25.
    pre = np.array([128.0, 132.0, 136.0 - 1e-3, 112.0], np.float32).reshape(1, 2, 2, 1) / 255.0
    pre = np.repeat(pre, 3, axis=-1)
    expected = (0.0 + 0.0625 + 0.25 + 0.0) / 4
    np.testing.assert_allclose(losses.code_margin_loss(pre, 16).numpy(), [expected], atol=1e-4)
    # Its gradient pulls each value towards its level: 132 goes down, 124 goes up, a level stays.
    x = tf.Variable(np.array([132.0, 124.0, 128.0], np.float32).reshape(1, 1, 3, 1) / 255.0)
    with tf.GradientTape() as tape:
        loss = losses.code_margin_loss(x, 16)
    grad = tape.gradient(loss, x).numpy().ravel()
    assert grad[0] > 0 and grad[1] < 0 and grad[2] == 0

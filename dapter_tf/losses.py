"""The data abuse prevention loss L_dap (Eq. 1) and its two terms, L_eta (Eq. 2-3) and L_acc (Eq. 4).

Every function returns one value per example; the training loop averages them over the global
batch (``tf.nn.compute_average_loss``), so the numbers below do not depend on batch size or on how
many replicas share a batch.
"""

import tensorflow as tf

from dapter_tf.errors import DapterError
from dapter_tf.pixels import REFERENCE_PIXEL, grid_levels


def entropy_reduction_loss(converted):
    """L_eta = eta(converted, I_128), Eq. 2-3, normalised per pixel.

    The paper's sum of |I_hat - I_128| over pixels and images is divided here by the number of
    pixel values (H * W * 3) of each image, with pixels in [0, 1]. So L_eta is the mean absolute
    distance of a pixel value from 128/255: 0 for an all-128 image, at most 128/255 (about 0.502).
    This keeps L_eta on the scale of a cross-entropy in nats (0 to a few), so that lambda weighs the
    two terms the same way at every image size; the paper's default lambda = 0.9 refers to it.

    Args:
        converted: float N x H x W x 3 images in [0, 1].

    Returns:
        float32 (N,).
    """
    converted = tf.convert_to_tensor(converted, tf.float32)
    return tf.reduce_mean(tf.abs(converted - REFERENCE_PIXEL), axis=[1, 2, 3])


def accuracy_loss(labels, logits):
    """L_acc, Eq. 4: cross-entropy (natural log) of the frozen target's softmax on the true label.

    Args:
        labels: int (N,) class indices.
        logits: float (N, classes), the target's output before softmax.

    Returns:
        float32 (N,).
    """
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int64), logits=tf.cast(logits, tf.float32)
    )


def distillation_loss(soft_labels, logits):
    """L_acc against the target's own answer on the original image: cross-entropy to its softmax.

    Beyond the paper (``DapterConfig.acc_labels="target"``): what the service must keep is the
    target's answer, and its whole distribution over classes says more about the target than the
    true label does, which helps a small converter that must compute the answer itself (the
    coarse output code). Equal to Eq. 4 when ``soft_labels`` is one-hot on the true label.

    Args:
        soft_labels: float (N, classes), the target's softmax on the original images.
        logits: float (N, classes), the target's output on the converted images.

    Returns:
        float32 (N,).
    """
    return tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.cast(soft_labels, tf.float32), logits=tf.cast(logits, tf.float32)
    )


def code_margin_loss(pre_snap, step: int):
    """L_margin, beyond the paper: how near each output value lies to a rounding boundary of the grid.

    ``OutputLevels`` rounds the sigmoid's output to the grid 128 + k * ``step``; a value near the
    midpoint of two levels takes either one after the small error of a full-int8 file (about 0.6
    levels on average for a trained block encoder), so a coarse code's colours flip by a whole step
    and the int8 file's entropy breaks its parity gate. L_margin is the mean squared distance, in
    grid steps, of each value from the level it rounds to (0 at a level, at most 0.25 at a
    midpoint): a short fine-tuning on it (``DapterConfig.code_margin``) moves every value towards
    the middle of its level, which keeps the code stage exact in int8, as quantization-aware
    fine-tuning does, without changing which level most values take.

    Args:
        pre_snap: float N x H x W x 3, the converter's output in [0, 1] before ``OutputLevels``.
        step: The grid's step in levels of 255 (``OutputLevels.step``), > 1.

    Returns:
        float32 (N,).
    """
    pre_snap = tf.convert_to_tensor(pre_snap, tf.float32)
    distance = tf.stop_gradient(grid_levels(pre_snap, step)) - pre_snap
    return tf.reduce_mean(tf.square(distance * 255.0 / step), axis=[1, 2, 3])


def task_head_loss(labels, head_logits, soft_labels=None):
    """L_head, beyond the paper: the cross-entropy of the converter's own linear head on its features.

    A coarse code sends a few colours, so the converter itself must read the task from the photo; the
    target's gradient reaches its encoder only through those colours, and on a served MobileNetV2
    (CelebA Male, one colour per image) that signal alone took 10 epochs to reach 0.77 accuracy. A
    linear head on the encoder's mean features, trained on the same labels as L_acc, gives the encoder
    the task directly; the head is dropped when training ends and is never part of the converter.

    Args:
        labels: int (N,) true labels (used when ``soft_labels`` is ``None``).
        head_logits: float (N, classes), the head's output.
        soft_labels: float (N, classes), the target's softmax on the originals, or ``None``.

    Returns:
        float32 (N,).
    """
    if soft_labels is None:
        return accuracy_loss(labels, head_logits)
    return distillation_loss(soft_labels, head_logits)


def check_lambda(lambda_: float) -> float:
    """Returns ``lambda_`` if it lies in [0, 1], the range Eq. 1 allows; raises DapterError otherwise."""
    if not 0.0 <= float(lambda_) <= 1.0:
        raise DapterError(f"lambda must lie in [0, 1] (Eq. 1), got {lambda_}")
    return float(lambda_)


def dap_loss(converted, labels, logits, lambda_: float, soft_labels=None):
    """L_dap = lambda * L_eta + (1 - lambda) * L_acc, Eq. 1.

    Args:
        converted: float N x H x W x 3, the converter's output in [0, 1].
        labels: int (N,) true labels of the target task.
        logits: float (N, classes), the frozen target's output on ``converted``.
        lambda_: The weight in [0, 1]; larger removes more entropy.
        soft_labels: The target's softmax on the original images: L_acc is then
            ``distillation_loss`` instead of Eq. 4's cross-entropy to ``labels``.

    Returns:
        A dict of float32 (N,) tensors: ``"dap"``, ``"eta"`` and ``"acc"``.
    """
    lambda_ = check_lambda(lambda_)
    eta = entropy_reduction_loss(converted)
    acc = accuracy_loss(labels, logits) if soft_labels is None else distillation_loss(soft_labels, logits)
    return {"dap": lambda_ * eta + (1.0 - lambda_) * acc, "eta": eta, "acc": acc}

"""Measuring a converter against its target: the usability and security indices of §7.1, and bandwidth."""

import keras
import numpy as np

from dapter_tf import metrics

BATCH_SIZE = 500


def target_logits(target: keras.Model, images: np.ndarray) -> np.ndarray:
    """The target's logits on uint8 images."""
    return target.predict(images.astype(np.float32) / 255.0, batch_size=BATCH_SIZE, verbose=0)


def target_correct(target: keras.Model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """bool (N,): whether the target's answer on each uint8 image is its label (what paired figures count)."""
    return np.argmax(target_logits(target, images), -1) == np.asarray(labels)


def target_accuracy(target: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    """The target's accuracy on uint8 images."""
    return metrics.accuracy(target_logits(target, images), labels)


def convert_images(converter: keras.Model, images: np.ndarray) -> np.ndarray:
    """Converts uint8 images into the uint8 images a phone would send (rounded, as §4.1 measures)."""
    return metrics.to_uint8(converter.predict(images.astype(np.float32) / 255.0, batch_size=BATCH_SIZE, verbose=0))


def summarize(
    target: keras.Model, originals: np.ndarray, converted: np.ndarray, labels: np.ndarray, with_bandwidth: bool = True
) -> dict:
    """Compares converted images with their originals, both as uint8 images that would be sent.

    Returns:
        ``accuracy_original``, ``accuracy_converted``, ``accuracy_drop_points`` (usability index),
        its paired standard error and 95 % interval (``accuracy_drop_error_points``, ``_low_points``,
        ``_high_points``) and the answers that flipped (``flipped_to_wrong``, ``flipped_to_right``;
        ``metrics.paired_drop_interval``),
        ``entropy_original``, ``entropy_converted`` (mean bits; the security index),
        ``entropy_ratio``, and with ``with_bandwidth`` ``png_bytes_original``,
        ``png_bytes_converted``, ``bandwidth_ratio`` (converted over original) and
        ``bandwidth_saving`` (original over converted, the paper's "x times").
    """
    right_original = target_correct(target, originals, labels)
    right_converted = target_correct(target, converted, labels)
    acc_original, acc_converted = float(right_original.mean()), float(right_converted.mean())
    drop = metrics.paired_drop_interval(right_original, right_converted)
    entropy_original = float(np.mean(metrics.image_entropy(originals)))
    entropy_converted = float(np.mean(metrics.image_entropy(converted)))
    result = {
        "images": int(len(originals)),
        "accuracy_original": acc_original,
        "accuracy_converted": acc_converted,
        "accuracy_drop_points": metrics.accuracy_drop_points(acc_original, acc_converted),
        "accuracy_drop_error_points": drop["error_points"],
        "accuracy_drop_low_points": drop["low_points"],
        "accuracy_drop_high_points": drop["high_points"],
        "flipped_to_wrong": drop["flipped_to_wrong"],
        "flipped_to_right": drop["flipped_to_right"],
        "entropy_original": entropy_original,
        "entropy_converted": entropy_converted,
        "entropy_ratio": entropy_converted / entropy_original if entropy_original else float("nan"),
    }
    if with_bandwidth:
        png_original = metrics.png_bytes(originals)
        png_converted = metrics.png_bytes(converted)
        result.update(
            {
                "png_bytes_original": png_original,
                "png_bytes_converted": png_converted,
                "bandwidth_ratio": png_converted / png_original,
                "bandwidth_saving": png_original / png_converted,
            }
        )
    return result


def evaluate_converter(
    converter: keras.Model, target: keras.Model, images: np.ndarray, labels: np.ndarray, with_bandwidth: bool = True
) -> dict:
    """Converts ``images`` with the Keras converter and summarises the result (see ``summarize``)."""
    return summarize(target, images, convert_images(converter, images), labels, with_bandwidth)

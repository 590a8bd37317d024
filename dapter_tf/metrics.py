"""What the paper measures on converted images: image entropy (§4.1), accuracy drop and bandwidth (§7.4)."""

import io
import math

import numpy as np
import PIL.Image

from dapter_tf.errors import DapterError


def to_uint8(images) -> np.ndarray:
    """Rounds float [0, 1] images to the uint8 pixels that would be sent to the provider."""
    return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def image_entropy(images: np.ndarray) -> np.ndarray:
    """Image entropy of §4.1 for each uint8 image, in bits.

    H = -sum_i p_i log2 p_i over the 256 values of a channel, summed over R, G and B, so an image
    has between 0 and 24 bits.

    Args:
        images: uint8 N x H x W x 3 (or one H x W x 3 image).

    Returns:
        float64 (N,) entropies (a 0-d array for one image).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"image entropy is defined on uint8 images, got {images.dtype}")
    single = images.ndim == 3
    if single:
        images = images[None]
    n, h, w, c = images.shape
    # One histogram per (image, channel): shift each channel's values into its own 256-bin range.
    channels = images.transpose(0, 3, 1, 2).reshape(n * c, h * w).astype(np.int64)
    offsets = (np.arange(n * c, dtype=np.int64) * 256)[:, None]
    counts = np.bincount((channels + offsets).ravel(), minlength=n * c * 256).reshape(n, c, 256)
    p = counts / float(h * w)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    entropy = terms.sum(axis=(1, 2))
    return entropy[0] if single else entropy


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of examples whose arg-max logit is the label."""
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


def accuracy_drop_points(accuracy_original: float, accuracy_converted: float) -> float:
    """Accuracy lost by converting, in percentage points (positive means converted is worse)."""
    return 100.0 * (accuracy_original - accuracy_converted)


def paired_drop(correct_original: np.ndarray, correct_converted: np.ndarray) -> tuple[float, float]:
    """The accuracy drop in points on the same images, and its standard error.

    The two accuracies are measured on the same images, so the drop's noise comes from the images
    whose answer changed: with per-image differences d_i = correct_original_i - correct_converted_i,
    the standard error is std(d) / sqrt(n) (in points).

    Args:
        correct_original: bool (N,), the target right on the original image.
        correct_converted: bool (N,), the target right on its converted version.
    """
    d = np.asarray(correct_original, np.float64) - np.asarray(correct_converted, np.float64)
    return 100.0 * float(d.mean()), 100.0 * float(d.std() / math.sqrt(len(d)))


def binomial_error_points(accuracy: float, n: int) -> float:
    """The standard error, in points, of an accuracy measured on ``n`` images."""
    return 100.0 * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n)


# The two-sided 95 % normal quantile.
Z_95 = 1.959963984540054


def paired_drop_interval(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """The accuracy lost going from ``a`` to ``b`` on the same images, counted by flipped predictions.

    Only the images whose answer flipped carry information about the drop: ``flipped_to_wrong``
    (right under ``a``, wrong under ``b``) and ``flipped_to_right``. The drop is their difference
    over n, with ``paired_drop``'s standard error and a 95 % normal interval around it, so that "a
    file loses more than t points" can be read as "the whole interval lies above t" rather than
    as a point figure that moves by 100 / n points per image.

    Args:
        correct_a: bool (N,), right under the reference (the Keras converter, the original image).
        correct_b: bool (N,), right under the candidate.

    Returns:
        ``images``, ``flipped_to_wrong``, ``flipped_to_right``, ``drop_points``, ``error_points``,
        ``low_points`` and ``high_points`` (the 95 % interval).
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise DapterError(f"paired accuracies need two equal non-empty (N,) arrays, got {a.shape} and {b.shape}")
    drop, error = paired_drop(a, b)
    return {
        "images": int(len(a)),
        "flipped_to_wrong": int(np.sum(a & ~b)),
        "flipped_to_right": int(np.sum(~a & b)),
        "drop_points": drop,
        "error_points": error,
        "low_points": drop - Z_95 * error,
        "high_points": drop + Z_95 * error,
    }


IMAGE_FORMATS = ("png", "jpeg")
# libjpeg's and Pillow's default quality (with 4:2:0 chroma subsampling), what most apps upload.
DEFAULT_JPEG_QUALITY = 75


def check_jpeg_quality(quality: int) -> int:
    """Returns ``quality`` if Pillow's JPEG encoder takes it (1..95); raises DapterError otherwise."""
    if int(quality) != quality or not 1 <= quality <= 95:
        raise DapterError(f"JPEG quality must be an integer in 1..95 (Pillow's range), got {quality}")
    return int(quality)


def encoded_sizes(
    images: np.ndarray, image_format: str = "png", jpeg_quality: int = DEFAULT_JPEG_QUALITY
) -> np.ndarray:
    """Bytes of each uint8 image encoded on its own, as a phone would upload it.

    Args:
        images: uint8 N x H x W x 3.
        image_format: ``"png"`` (zlib level 9, lossless) or ``"jpeg"`` (``jpeg_quality``, baseline,
            4:2:0 chroma subsampling).
        jpeg_quality: 1..95.

    Returns:
        int64 (N,) sizes in bytes.
    """
    if image_format not in IMAGE_FORMATS:
        raise DapterError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    if image_format == "png":
        options = {"compress_level": 9}
    else:  # subsampling=2 is 4:2:0, stated rather than left to the encoder's default.
        options = {"quality": check_jpeg_quality(jpeg_quality), "subsampling": 2}
    sizes = []
    for image in np.asarray(images):
        buffer = io.BytesIO()
        PIL.Image.fromarray(image).save(buffer, format=image_format.upper(), **options)
        sizes.append(buffer.tell())
    return np.array(sizes, np.int64)


def png_bytes(images: np.ndarray) -> int:
    """Total bytes of the images encoded one by one as PNG (zlib level 9), as a phone would upload them."""
    return int(encoded_sizes(images, "png").sum())


def bandwidth_ratio(converted: np.ndarray, originals: np.ndarray) -> float:
    """PNG bytes of the converted images over PNG bytes of the originals (the paper's 1/2.1 to 1/41)."""
    return png_bytes(converted) / png_bytes(originals)

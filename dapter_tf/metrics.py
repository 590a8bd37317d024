"""What the paper measures on converted images: image entropy (§4.1), accuracy drop and bandwidth (§7.4)."""

import io

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

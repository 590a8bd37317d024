"""The image set type every part of the data flow passes around, and the checks of its arrays."""

import dataclasses

import numpy as np
import tensorflow as tf

from dapter_tf.errors import DapterError


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Images with their labels, as they come off disk.

    Attributes:
        images: uint8 array, N x H x W x 3, RGB.
        labels: label name -> int64 array of N labels (``"label"`` for single-label sets).
        source: Where the images came from, for reports.
        names: The N images' file names, where they came from files (``None`` otherwise).
    """

    images: np.ndarray
    labels: dict
    source: str
    names: np.ndarray | None = None

    def __len__(self):
        return len(self.images)

    @property
    def image_shape(self) -> tuple:
        """(H, W, 3) of every image (as ``tfrecords.RecordSet`` has it)."""
        return tuple(self.images.shape[1:])

    def select(self, index) -> "ImageSet":
        """Returns the examples at ``index`` (a slice or an integer array), labels and names alike."""
        names = None if self.names is None else self.names[index]
        return ImageSet(self.images[index], {k: v[index] for k, v in self.labels.items()}, self.source, names)

    def take(self, n: int) -> "ImageSet":
        """Returns the first ``n`` examples (all of them if there are fewer)."""
        return self.select(slice(0, n))

    def skip(self, n: int) -> "ImageSet":
        """Returns all examples after the first ``n``."""
        return self.select(slice(n, None))

    def shuffled(self, seed: int) -> "ImageSet":
        """Returns the examples in a seeded random order (the shared files are sorted by class)."""
        return self.select(np.random.default_rng(seed).permutation(len(self)))


def validate_images(images, where: str) -> np.ndarray:
    """Checks that ``images`` is a non-empty uint8 N x H x W x 3 array.

    Args:
        images: The array to check.
        where: Where it came from, named in the error message.

    Returns:
        ``images`` unchanged.

    Raises:
        DapterError: on the wrong type, rank, channel count or dtype, or an empty array.
    """
    if not isinstance(images, np.ndarray):
        raise DapterError(f"{where}: images must be a numpy array, got {type(images).__name__}")
    if images.ndim != 4:
        raise DapterError(
            f"{where}: images must have rank 4 (N x H x W x 3), got rank {images.ndim} with shape {images.shape}"
        )
    if images.shape[-1] != 3:
        raise DapterError(f"{where}: images must have 3 (RGB) channels, got {images.shape[-1]} in shape {images.shape}")
    if images.dtype != np.uint8:
        raise DapterError(f"{where}: images must be uint8 pixels in 0..255, got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise DapterError(f"{where}: the dataset is empty (0 images)")
    return images


def validate_labels(labels: dict, n: int, where: str) -> dict:
    out = {}
    for name, values in labels.items():
        values = np.asarray(values)
        if values.ndim != 1 or len(values) != n:
            raise DapterError(f"{where}: label {name!r} has shape {values.shape}, expected ({n},)")
        if not np.issubdtype(values.dtype, np.integer):
            raise DapterError(f"{where}: label {name!r} must be integers, got dtype {values.dtype}")
        out[name] = values.astype(np.int64)
    return out


def to_float(images):
    """Maps uint8 pixels to float32 in [0, 1], the range the converter and targets take."""
    return tf.cast(images, tf.float32) / 255.0

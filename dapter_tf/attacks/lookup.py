"""The lookup attacker: the mean original of each converted image seen in training.

Given the converter's own (converted, original) training pairs, the attacker that minimises the
expected squared error is the conditional mean E[I | C(I)]. Where a converter sends few distinct
images (a class code, a coarse code), that mean is computable exactly by grouping the training
pairs by their converted image, and no decoder trained by gradient descent can beat it on codes it
has seen. A held-out converted image that matches no training one gets the mean of its nearest
(Euclidean) training code: for a converter whose every output is distinct, this is a 1-nearest-
neighbour regressor, a weak attacker that the learned decoders outscore.

It trains nothing, so it needs no epochs, and it runs in seconds on the suite's images.
"""

import dataclasses

import numpy as np

# Held-out images compared against every training code at once (bounds the distance matrix's memory).
_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class LookupTable:
    """Distinct converted training images and the mean of the originals each one came from.

    Attributes:
        codes: uint8 K x H x W x 3, every distinct converted training image.
        means: uint8 K x H x W x 3, the rounded mean original of each code's training pairs.
        counts: int K, how many training pairs each code has.
    """

    codes: np.ndarray
    means: np.ndarray
    counts: np.ndarray

    @property
    def stored_values(self) -> int:
        """Numbers the table holds (its mean images), the lookup's counterpart of a decoder's parameters."""
        return int(self.means.size)


def fit_lookup(converted: np.ndarray, originals: np.ndarray) -> LookupTable:
    """Groups uint8 (converted, original) training pairs by converted image; each group's mean original.

    Args:
        converted: uint8 N x H x W x 3 converted training images.
        originals: uint8 N x H x W x 3, their originals.
    """
    flat = converted.reshape(len(converted), -1)
    codes, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Sums of up to 255 * N stay exact in float64; one reduceat over the pairs sorted by code.
    sums = np.add.reduceat(originals.reshape(len(originals), -1)[order].astype(np.float64), starts, axis=0)
    means = np.round(sums / counts[:, None]).astype(np.uint8)
    shape = (len(codes), *converted.shape[1:])
    return LookupTable(codes.reshape(shape), means.reshape(shape), counts)


def nearest_codes(table: LookupTable, converted: np.ndarray) -> np.ndarray:
    """Index into ``table.codes`` of each converted image's exact match, or else of its nearest code."""
    index = {code.tobytes(): i for i, code in enumerate(table.codes)}
    found = np.array([index.get(image.tobytes(), -1) for image in converted], dtype=np.int64)
    unseen = np.flatnonzero(found < 0)
    if len(unseen):
        codes = table.codes.reshape(len(table.codes), -1).astype(np.float64)
        code_norms = np.einsum("ij,ij->i", codes, codes)
        for start in range(0, len(unseen), _CHUNK):
            rows = unseen[start : start + _CHUNK]
            x = converted[rows].reshape(len(rows), -1).astype(np.float64)
            # ||x - c||^2 without its constant ||x||^2; float64 keeps integer-pixel distances exact.
            found[rows] = np.argmin(code_norms[None, :] - 2.0 * x @ codes.T, axis=1)
    return found


def reconstruct(table: LookupTable, converted: np.ndarray) -> np.ndarray:
    """The lookup attacker's reconstructions of uint8 converted images."""
    return table.means[nearest_codes(table, converted)]

"""The tf.data pipeline that feeds training: shuffled, augmented, batched, prefetched."""

import numpy as np
import tensorflow as tf

from dapter_tf.data.images import to_float


def _augment(image, label):
    # Flip and a 4-pixel shift: the standard CIFAR recipe, cheap enough for 2 CPU cores.
    image = tf.image.random_flip_left_right(image)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    image = tf.image.pad_to_bounding_box(image, 4, 4, height + 8, width + 8)
    image = tf.image.random_crop(image, tf.stack([height, width, 3]))
    return image, label


def build_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    shuffle_seed=None,
    augment: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Builds a batched pipeline of (float32 [0, 1] images, int64 labels).

    Args:
        images: uint8 N x H x W x 3.
        labels: N integer labels.
        batch_size: The global batch size.
        shuffle_seed: If set, shuffles once with this seed, so the order is reproducible (training
            resumes mid-epoch by skipping the batches it already saw).
        augment: Random flips and shifts.
        drop_remainder: Drop a last partial batch (training under a strategy wants equal batches).
    """
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=False)
    ds = ds.map(lambda x, y: (to_float(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        ds = ds.map(_augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

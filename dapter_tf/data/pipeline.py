"""The tf.data pipelines that feed training and measurement: shuffled, augmented, batched, prefetched.

A training set is an ``ImageSet`` held in memory or a ``RecordSet`` streamed from TFRecord shards
(``tfrecords``); ``build_training_dataset`` gives one worker its share of either.
"""

import numpy as np
import tensorflow as tf

from dapter_tf.data.images import to_float
from dapter_tf.data.tfrecords import RecordSet, parse_fn, read_examples
from dapter_tf.errors import DapterError


def _augment(image, label, seed):
    """A random flip and 4-pixel shift (the standard CIFAR recipe, cheap enough for 2 CPU cores).

    Stateless: the draw is a function of ``seed`` alone, so the same image at the same place of the
    same run is augmented the same way in every run, resumed or not, whatever the threads do.

    Args:
        image: One float image, H x W x 3.
        label: Its label, passed through.
        seed: A shape [2] int64 tensor, unique to the image's place in the run (``_augment_seeds``).
    """
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    image = tf.image.pad_to_bounding_box(image, 4, 4, height + 8, width + 8)
    image = tf.image.stateless_random_crop(image, tf.stack([height, width, 3]), crop_seed)
    return image, label


def _augmented(ds: tf.data.Dataset, seed: int, stride: int = 1, offset: int = 0) -> tf.data.Dataset:
    """``ds`` (of float image, label pairs, in its final order) augmented by ``_augment``.

    The i-th example's seed is ``(seed, i * stride + offset)``: the run's seed and the example's
    place in the pass, before any batch is skipped, so that a resumed run augments the batches it
    has left exactly as an uninterrupted run does.

    Args:
        ds: The examples, shuffled.
        seed: The pass's seed (the training loop's is the run's seed and the epoch).
        stride: How many streams share the places (a cluster's workers each reading their own
            shards): each takes every ``stride``-th place, from ``offset``.
        offset: This stream's first place.
    """

    def augment(position, example):
        image, label = example
        return _augment(image, label, tf.stack([tf.constant(seed, tf.int64), position * stride + offset]))

    return ds.enumerate().map(augment, num_parallel_calls=tf.data.AUTOTUNE)


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
        augment: Random flips and shifts, seeded by ``shuffle_seed`` (0 when it is None).
        drop_remainder: Drop a last partial batch (training under a strategy wants equal batches).
    """
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=False)
    ds = ds.map(lambda x, y: (to_float(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        ds = _augmented(ds, shuffle_seed or 0)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


# The shuffle buffer of a streamed (TFRecord) training set: it holds serialized examples, so its
# memory is this many encoded images whatever the set's size. An in-memory set shuffles whole.
RECORD_SHUFFLE_BUFFER = 8192


def training_labels(train_set, label: str):
    """What ``build_training_dataset`` takes as the labels of ``train_set``'s task label ``label``."""
    return label if isinstance(train_set, RecordSet) else train_set.labels[label]


def steps_per_epoch(train_set, global_batch_size: int, num_workers: int = 1) -> int:
    """Full global batches in one pass: the same count on every worker, or their all-reduces would hang.

    An in-memory set is read whole by every worker, which keeps its slice of each global batch (so a
    cluster trains on the same batches as one process); a record set is split by shard, each worker
    reading only its own files, so its steps are those of the worker with the fewest images.

    Raises:
        DapterError: when a record set has fewer shards than there are workers.
    """
    if not isinstance(train_set, RecordSet) or num_workers == 1:
        return len(train_set) // global_batch_size
    if len(train_set.files) < num_workers:
        raise DapterError(
            f"{len(train_set.files)} training shards cannot be split over {num_workers} workers; "
            f"write at least {num_workers} (dapter-write-records --train_shards)"
        )
    per_worker = global_batch_size // num_workers
    return min(sum(train_set.counts[i::num_workers]) // per_worker for i in range(num_workers))


def build_training_dataset(
    train_set,
    labels,
    global_batch_size: int,
    *,
    seed: int,
    augment: bool,
    skip_batches: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_buffer: int = 0,
) -> tf.data.Dataset:
    """One worker's training batches of one epoch, each split into its replicas' batches.

    The examples are shuffled (seeded, the same order on every run), mapped to float [0, 1],
    augmented and batched. Given the same order of examples and a buffer that holds them all, an
    in-memory set and the records written from it give the same batches.

    Args:
        train_set: An ``ImageSet`` (in memory) or a ``RecordSet`` (streamed from TFRecord shards).
        labels: From ``training_labels``: the label array of an ``ImageSet`` (or any array with one
            row per image, as a reconstructor's originals), the label name of a ``RecordSet``.
        global_batch_size: Examples per step over every replica.
        seed: Seeds the shuffle and the augmentation.
        augment: Random flips and shifts, a function of ``seed`` and each example's place in the
            pass: the same in every run, and in a resumed run that skips batches.
        skip_batches: Global batches to skip (a resumed run skips those it already trained on).
        input_context: This worker's place (``strategy.distribute_datasets_from_function``);
            ``None``: one worker, one replica.
        shuffle_buffer: Examples the shuffle holds; 0: all of an in-memory set,
            ``RECORD_SHUFFLE_BUFFER`` of a record set.
    """
    context = input_context or tf.distribute.InputContext()
    workers, index = context.num_input_pipelines, context.input_pipeline_id
    per_replica = context.get_per_replica_batch_size(global_batch_size)
    steps = steps_per_epoch(train_set, global_batch_size, workers)  # Fails clearly with too few shards.
    if isinstance(train_set, RecordSet):
        ds = read_examples(train_set, train_set.files[index::workers])
        ds = ds.shuffle(shuffle_buffer or RECORD_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False)
        parse = parse_fn(train_set)

        def to_pair(serialized):
            image, all_labels = parse(serialized)
            return image, all_labels[labels]

        ds = ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
        batch = global_batch_size // workers
    else:
        ds = tf.data.Dataset.from_tensor_slices((train_set.images, labels))
        ds = ds.shuffle(shuffle_buffer or len(train_set), seed=seed, reshuffle_each_iteration=False)
        batch = global_batch_size
    ds = ds.map(lambda x, y: (to_float(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        # A record set's workers read different examples: each gets its own places. Every worker
        # reads the whole in-memory set, so each augments it as one process does.
        streams = workers if isinstance(train_set, RecordSet) else 1
        ds = _augmented(ds, seed, stride=streams, offset=index if streams > 1 else 0)
    ds = ds.batch(batch, drop_remainder=True).take(steps).skip(skip_batches)
    if batch == global_batch_size and workers > 1:
        # Every worker read the whole global batch: keep its own consecutive slice.
        share = global_batch_size // workers
        ds = ds.map(lambda x, y: (x[index * share : (index + 1) * share], y[index * share : (index + 1) * share]))
        batch = share
    if per_replica != batch:
        ds = ds.rebatch(per_replica, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _uint8_batches(train_set, size: int = 2000):
    if isinstance(train_set, RecordSet):
        parse = parse_fn(train_set)
        yield from read_examples(train_set).map(lambda r: parse(r)[0]).batch(size).as_numpy_iterator()
    else:
        for start in range(0, len(train_set), size):
            yield train_set.images[start : start + size]


def image_statistics(train_set) -> tuple[np.ndarray, float]:
    """The mean training image and E0, the mean over the images of its mean squared error (pixels in [0, 1]).

    What the adversarial defence's decoders know without any converted image. Two passes of
    bounded memory, so a streamed record set works as an in-memory one.
    """
    if isinstance(train_set, RecordSet):
        total = sum(batch.sum(axis=0, dtype=np.float64) for batch in _uint8_batches(train_set))
        mean_image = (total / len(train_set)).astype(np.float32) / 255.0
    else:
        mean_image = train_set.images.mean(axis=0, dtype=np.float64).astype(np.float32) / 255.0
    error = 0.0
    for batch in _uint8_batches(train_set):
        x = batch.astype(np.float32) / 255.0
        error += float(np.sum(np.mean((x - mean_image) ** 2, axis=(1, 2, 3))))
    return mean_image, error / len(train_set)

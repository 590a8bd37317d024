"""A task's images as sharded TFRecord files: written once, then streamed so memory stays bounded.

Layout of a records folder (``write_records``)::

    manifest.json                      task, image size, label names and per-shard counts
    train-00000-of-00008.tfrecord      one tf.train.Example per image: PNG bytes + int64 labels
    ...
    test-00000-of-00002.tfrecord

Images are stored in the order their source gave them (already shuffled with the writer's seed,
resized to the task's size, labels derived), consecutively over the shards, so reading the shards
in order gives that order back. A trainer reads a worker's shards as a stream (``RecordSet``,
``data.pipeline``); anything that needs a split whole (a test set, an attack) reads it into an
``ImageSet`` (``read_split``).
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from dapter_tf.data.images import ImageSet
from dapter_tf.errors import DapterError
from dapter_tf.records.files import read_json, write_json

MANIFEST_FILE = "manifest.json"
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class RecordSet:
    """One split stored as TFRecord shards: read as a stream by the training pipeline, never whole.

    Attributes:
        files: The shards, in order.
        counts: Images in each shard.
        image_shape: (H, W, 3) of every image.
        label_names: The int64 labels each example holds.
        source: Where the images came from, for reports.
        label_max: Label name -> its largest value in the split (sizes labels such as LFW identities).
    """

    files: tuple
    counts: tuple
    image_shape: tuple
    label_names: tuple
    source: str
    label_max: dict

    def __len__(self):
        return sum(self.counts)


def shard_name(split: str, shard: int, num_shards: int) -> str:
    return f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def _example(image: np.ndarray, labels: dict) -> bytes:
    feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()]))}
    for name, value in labels.items():
        feature[f"label/{name}"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_split(images: ImageSet, out_dir: str, split: str, num_shards: int, progress=None) -> dict:
    """Writes ``images`` as ``num_shards`` consecutive shards (sizes differ by at most one image).

    Each shard is written under a temporary name and renamed when complete, so a killed writer
    leaves no shard that looks finished.

    Args:
        images: The split, in the order it is to be read back.
        out_dir: The records folder.
        split: ``"train"`` or ``"test"``.
        num_shards: How many files; at least the number of workers that will read the split.
        progress: Called with the number of images written so far (a progress bar), or ``None``.

    Returns:
        The split's manifest entry: files, counts, label_max.
    """
    if not 1 <= num_shards <= len(images):
        raise DapterError(f"num_shards must be in 1..{len(images)} (the {split} images), got {num_shards}")
    bounds = np.linspace(0, len(images), num_shards + 1).round().astype(int)
    files, counts = [], []
    for shard in range(num_shards):
        name = shard_name(split, shard, num_shards)
        tmp = os.path.join(out_dir, f".{name}.tmp")
        with tf.io.TFRecordWriter(tmp) as writer:
            for i in range(bounds[shard], bounds[shard + 1]):
                writer.write(_example(images.images[i], {k: v[i] for k, v in images.labels.items()}))
                if progress is not None:
                    progress(i + 1)
        os.replace(tmp, os.path.join(out_dir, name))
        files.append(name)
        counts.append(int(bounds[shard + 1] - bounds[shard]))
    return {
        "files": files,
        "counts": counts,
        "label_max": {k: int(v.max()) for k, v in images.labels.items()},
        "source": images.source,
    }


def write_manifest(out_dir: str, task_name: str, image_shape, label_names, splits: dict) -> None:
    """Writes ``manifest.json``, last, so a folder with a manifest holds every shard it names."""
    write_json(
        os.path.join(out_dir, MANIFEST_FILE),
        {"task": task_name, "image_shape": list(image_shape), "labels": sorted(label_names), "splits": splits},
    )


def write_records(task_name: str, splits: dict, out_dir: str, shards: dict, progress=None) -> dict:
    """Writes every split of ``splits`` (name -> ImageSet) as shards, then the manifest.

    Args:
        task_name: The task the images serve (a reader of another task is refused).
        splits: ``{"train": ImageSet, "test": ImageSet}`` (either may be left out).
        out_dir: A new folder, or an empty one.
        shards: Split name -> how many shards.
        progress: ``(split, images written, images in the split) -> None``, or ``None``.

    Returns:
        The manifest.

    Raises:
        DapterError: on a folder that holds files already, or a bad shard count.
    """
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise DapterError(f"{out_dir} is not empty: write records into a new folder")
    os.makedirs(out_dir, exist_ok=True)
    shapes = {images.image_shape for images in splits.values()}
    if len(shapes) != 1:
        raise DapterError(f"the splits' images differ in shape: {sorted(shapes)}")
    entries = {}
    for split, images in splits.items():
        report = None if progress is None else (lambda n, split=split, total=len(images): progress(split, n, total))
        entries[split] = write_split(images, out_dir, split, shards[split], report)
    labels = set.intersection(*(set(images.labels) for images in splits.values()))
    write_manifest(out_dir, task_name, shapes.pop(), labels, entries)
    return read_manifest(out_dir)


def read_manifest(folder: str) -> dict:
    """The manifest of a records folder.

    Raises:
        DapterError: on a folder without one, or one whose shards are missing.
    """
    if not folder or not os.path.isdir(folder):
        raise DapterError(f"records folder not found: {folder} (write one with dapter-write-records)")
    manifest = read_json(os.path.join(folder, MANIFEST_FILE))
    if manifest is None:
        raise DapterError(
            f"{folder} holds no {MANIFEST_FILE}: not a records folder (write one with dapter-write-records)"
        )
    for split, entry in manifest["splits"].items():
        missing = [f for f in entry["files"] if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise DapterError(
                f"{folder}: {split} shard {missing[0]} is missing ({len(missing)} of {len(entry['files'])})"
            )
    return manifest


def record_set(folder: str, split: str, task_name: str, image_size) -> RecordSet:
    """The ``split`` of a records folder as a stream, checked against the task that will read it.

    Raises:
        DapterError: on a missing folder or split, or records of another task or image size.
    """
    manifest = read_manifest(folder)
    if manifest["task"] != task_name:
        raise DapterError(f"{folder} holds records of task {manifest['task']!r}, not {task_name!r}")
    if tuple(manifest["image_shape"][:2]) != tuple(image_size):
        raise DapterError(
            f"{folder} holds {manifest['image_shape'][0]}x{manifest['image_shape'][1]} images but the task "
            f"wants {image_size[0]}x{image_size[1]}: write the records with the same --image_size"
        )
    if split not in manifest["splits"]:
        raise DapterError(f"{folder} holds no {split} split (it has: {', '.join(manifest['splits'])})")
    entry = manifest["splits"][split]
    return RecordSet(
        files=tuple(os.path.join(folder, f) for f in entry["files"]),
        counts=tuple(entry["counts"]),
        image_shape=tuple(manifest["image_shape"]),
        label_names=tuple(manifest["labels"]),
        source=f"{entry['source']} (records in {folder})",
        label_max=dict(entry["label_max"]),
    )


def parse_fn(records: RecordSet):
    """``serialized example -> (uint8 H x W x 3 image, {label: int64})``, for ``Dataset.map``."""
    spec = {"image": tf.io.FixedLenFeature([], tf.string)}
    spec.update({f"label/{k}": tf.io.FixedLenFeature([], tf.int64) for k in records.label_names})

    def parse(serialized):
        example = tf.io.parse_single_example(serialized, spec)
        image = tf.io.decode_png(example["image"], channels=3)
        image = tf.ensure_shape(image, records.image_shape)
        return image, {k: example[f"label/{k}"] for k in records.label_names}

    return parse


def read_examples(records: RecordSet, files=None) -> tf.data.Dataset:
    """The serialized examples of ``files`` (default: all shards), in order."""
    files = list(records.files if files is None else files)
    # One file after the other keeps the stored order; decoding, the costly part, runs in parallel
    # in the map that follows.
    return tf.data.TFRecordDataset(files, buffer_size=1 << 20)


def read_split(records: RecordSet, max_images: int = 0) -> ImageSet:
    """Reads a split whole into memory, in stored order (its first ``max_images``; 0: all)."""
    ds = read_examples(records)
    if max_images:
        ds = ds.take(max_images)
    ds = ds.map(parse_fn(records), num_parallel_calls=tf.data.AUTOTUNE).batch(1024)
    images, labels = [], {k: [] for k in records.label_names}
    for batch_images, batch_labels in ds.as_numpy_iterator():
        images.append(batch_images)
        for k, v in batch_labels.items():
            labels[k].append(v)
    return ImageSet(np.concatenate(images), {k: np.concatenate(v) for k, v in labels.items()}, records.source)

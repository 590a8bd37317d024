"""A task's images as sharded TFRecord files: written once, then streamed so memory stays bounded.

Layout of a records folder (``write_records``)::

    manifest.json                      task, image size, label names, per-shard counts and byte sizes
    train-00000-of-00008.tfrecord      one tf.train.Example per image: PNG bytes + int64 labels
    ...
    test-00000-of-00002.tfrecord

Images are stored in the order their source gave them (already shuffled with the writer's seed,
resized to the task's size, labels derived), consecutively over the shards, so reading the shards
in order gives that order back. A trainer reads a worker's shards as a stream (``RecordSet``,
``data.pipeline``); anything that needs a split whole (a test set, an attack) reads it into an
``ImageSet`` (``read_split``).

Nothing is lost silently: opening a split (``record_set``) checks every shard against the manifest
(its byte size, then a pass that counts its records and checks their CRCs, without decoding), so a
missing, empty, truncated or corrupted shard is one error naming the file before any training
starts. A writer puts the whole folder together beside its target and renames it into place last:
a killed or disk-full writer leaves no records folder, only a staging folder that the next run
removes.
"""

import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from dapter_tf.data.images import ImageSet
from dapter_tf.errors import DapterError
from dapter_tf.records.files import read_json, staged_folder, write_json

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

    ``out_dir`` is the writer's staging folder (``write_records``): nothing in it counts as
    written until the whole folder is renamed into place.

    Args:
        images: The split, in the order it is to be read back.
        out_dir: The folder the shards go into.
        split: ``"train"`` or ``"test"``.
        num_shards: How many files; at least the number of workers that will read the split.
        progress: Called with the number of images written so far (a progress bar), or ``None``.

    Returns:
        The split's manifest entry: files, counts, sizes (bytes), label_max, source.
    """
    bounds = np.linspace(0, len(images), num_shards + 1).round().astype(int)
    files, counts, sizes = [], [], []
    for shard in range(num_shards):
        name = shard_name(split, shard, num_shards)
        path = os.path.join(out_dir, name)
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(bounds[shard], bounds[shard + 1]):
                writer.write(_example(images.images[i], {k: v[i] for k, v in images.labels.items()}))
                if progress is not None:
                    progress(i + 1)
        files.append(name)
        counts.append(int(bounds[shard + 1] - bounds[shard]))
        sizes.append(os.path.getsize(path))
    return {
        "files": files,
        "counts": counts,
        "sizes": sizes,
        "label_max": {k: int(v.max()) for k, v in images.labels.items()},
        "source": images.source,
    }


def write_manifest(out_dir: str, task_name: str, image_shape, label_names, splits: dict) -> None:
    """Writes ``manifest.json``, last, so a folder with a manifest holds every shard it names."""
    write_json(
        os.path.join(out_dir, MANIFEST_FILE),
        {"task": task_name, "image_shape": list(image_shape), "labels": sorted(label_names), "splits": splits},
    )


# What a writer killed before records were staged (older versions wrote into the target itself)
# left in its target: shards under their final or temporary names, and no manifest.
_LEFTOVER = re.compile(r"\.?(train|test)-\d{5}-of-\d{5}\.tfrecord(\.tmp)?|manifest\.json\.tmp")


def check_out_dir(out_dir: str) -> None:
    """Raises DapterError unless ``out_dir`` can take a records folder: new, empty, or a killed writer's leftovers.

    A binary calls it before loading any images, so a refusal comes at once.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DapterError(f"{out_dir} is a file: write records into a new folder")
    if os.path.isdir(out_dir) and not all(_LEFTOVER.fullmatch(name) for name in os.listdir(out_dir)):
        raise DapterError(f"{out_dir} is not empty: write records into a new folder")


def _write_failure(out_dir: str, error: Exception) -> str:
    """The one-line reason a write into ``out_dir`` failed (a full disk, a quota), naming the file."""
    if isinstance(error, OSError):
        reason, where = error.strerror or str(error), error.filename
    else:
        # TensorFlow's file errors read "PATH; REASON".
        where, _, reason = error.message.partition("; ")
        if not reason:
            reason, where = error.message, None
    while_writing = f" while writing {os.path.basename(where)}" if where else ""
    return (
        f"cannot write records to {out_dir}: {reason}{while_writing}; nothing was left behind "
        "(free some space, or choose another --out_dir, and run again)"
    )


def write_records(task_name: str, splits: dict, out_dir: str, shards: dict, progress=None) -> dict:
    """Writes every split of ``splits`` (name -> ImageSet) as shards, then the manifest, as one set.

    Everything is written into a staging folder beside ``out_dir`` (``records.files.staged_folder``) that
    is renamed to ``out_dir`` as the last step: a killed or failed writer leaves no records folder
    (its staging folder is removed by the next writer of the same folder), so a rerun proceeds.

    Args:
        task_name: The task the images serve (a reader of another task is refused).
        splits: ``{"train": ImageSet, "test": ImageSet}`` (either may be left out).
        out_dir: A new folder, an empty one, or one a killed writer left (``check_out_dir``).
        shards: Split name -> how many shards.
        progress: ``(split, images written, images in the split) -> None``, or ``None``.

    Returns:
        The manifest.

    Raises:
        DapterError: on a folder that holds other files already, a bad shard count, or a failed
            write (a full disk).
    """
    check_out_dir(out_dir)
    shapes = {images.image_shape for images in splits.values()}
    if len(shapes) != 1:
        raise DapterError(f"the splits' images differ in shape: {sorted(shapes)}")
    for split, images in splits.items():
        if not 1 <= shards[split] <= len(images):
            raise DapterError(f"num_shards must be in 1..{len(images)} (the {split} images), got {shards[split]}")
    os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
    try:
        # The one step that makes the records visible is the staging folder's rename onto out_dir
        # (which holds nothing, or a killed older writer's leftovers that it replaces).
        with staged_folder(out_dir) as staging:
            entries = {}
            for split, images in splits.items():
                report = None if progress is None else (lambda n, split=split, total=len(images): progress(split, n, total))
                entries[split] = write_split(images, staging, split, shards[split], report)
            labels = set.intersection(*(set(images.labels) for images in splits.values()))
            write_manifest(staging, task_name, shapes.pop(), labels, entries)
    except (OSError, tf.errors.OpError) as e:
        raise DapterError(_write_failure(out_dir, e)) from None
    return read_manifest(out_dir)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_plain_name(value) -> bool:
    return isinstance(value, str) and value == os.path.basename(value) and value not in ("", ".", "..")


def _manifest_problem(manifest) -> str | None:
    """What keeps ``manifest`` (parsed JSON) from being a records manifest, or None when it is one."""
    if not isinstance(manifest, dict):
        return f"it holds a JSON {type(manifest).__name__}, not an object"
    for key, kind, kind_name in (
        ("task", str, "string"),
        ("image_shape", list, "list"),
        ("labels", list, "list"),
        ("splits", dict, "object"),
    ):
        if not isinstance(manifest.get(key), kind):
            return f"{key!r} is missing or not a {kind_name}"
    shape = manifest["image_shape"]
    if len(shape) != 3 or not all(_is_count(n) and n > 0 for n in shape) or shape[2] != 3:
        return f"'image_shape' is {shape}, not [height, width, 3]"
    if not all(isinstance(label, str) for label in manifest["labels"]):
        return "'labels' is not a list of names"
    for split, entry in manifest["splits"].items():
        if split not in SPLITS:
            return f"it names a split {split!r} (records hold {' and '.join(SPLITS)})"
        if not isinstance(entry, dict):
            return f"split {split!r} is not an object"
        files = entry.get("files")
        # Plain names only: a manifest never points outside its folder.
        if not (isinstance(files, list) and files and all(map(_is_plain_name, files))):
            return f"split {split!r} has no 'files' list of shard names"
        for key in ("counts", "sizes"):
            values = entry.get(key)
            if (key in entry or key == "counts") and not (
                isinstance(values, list) and len(values) == len(files) and all(map(_is_count, values))
            ):
                return f"split {split!r} has no {key!r} list of one number per file"
        label_max = entry.get("label_max")
        if not (isinstance(label_max, dict) and all(_is_count(v) for v in label_max.values())):
            return f"split {split!r} has no 'label_max' object of numbers"
        if not isinstance(entry.get("source"), str):
            return f"split {split!r} has no 'source' string"
    return None


def read_manifest(folder: str) -> dict:
    """The manifest of a records folder, checked: its shape, and that its shards exist with their sizes.

    Manifests written before shard sizes were recorded have no ``sizes``: their shards are checked
    by ``check_shards`` alone.

    Raises:
        DapterError: on a folder without one, a manifest that is not JSON or not a records
            manifest, or shards that are missing or of another size than written.
    """
    if not folder or not os.path.isdir(folder):
        raise DapterError(f"records folder not found: {folder} (write one with dapter-write-records)")
    path = os.path.join(folder, MANIFEST_FILE)
    try:
        manifest = read_json(path)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError.
        raise DapterError(f"{path} is not JSON ({e}): write the records again with dapter-write-records") from None
    if manifest is None:
        raise DapterError(
            f"{folder} holds no {MANIFEST_FILE}: not a records folder (write one with dapter-write-records)"
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise DapterError(
            f"{path} is not a records manifest ({problem}): write the records again with dapter-write-records"
        )
    for split, entry in manifest["splits"].items():
        missing = [f for f in entry["files"] if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise DapterError(
                f"{folder}: {split} shard {missing[0]} is missing ({len(missing)} of {len(entry['files'])})"
            )
        for name, size in zip(entry["files"], entry.get("sizes", ()), strict=False):
            found = os.path.getsize(os.path.join(folder, name))
            if found != size:
                raise DapterError(
                    f"{folder}: {split} shard {name} is {found} bytes but was written as {size} (truncated or "
                    "changed since): write the records again with dapter-write-records"
                )
    return manifest


def tf_error_reason(error: tf.errors.OpError) -> str:
    """The reason in TensorFlow's message, without the op and function names wrapped around it."""
    # e.g. "{{function_node __wrapped__ReduceDataset...}} corrupted record at 73054 [Op:ReduceDataset] name: ",
    # or "... truncated record at 300671' failed with Read less bytes than requested ...".
    damage = re.search(r"(corrupted|truncated) record at \d+", error.message)
    if damage:
        return damage.group(0)
    reason = re.sub(r"\{\{.*?\}\}|\[Op:.*?\]|\bname:\s*$", "", error.message)
    return " ".join(reason.split())


def count_records(path: str) -> int:
    """The records in one shard, read without decoding them (their CRCs are checked).

    Raises:
        tf.errors.DataLossError: on a corrupted or truncated shard.
    """
    # Counting batches is about four times faster than counting records one by one (a step each).
    batches = tf.data.TFRecordDataset(path, buffer_size=1 << 20).batch(4096)
    return int(batches.reduce(np.int64(0), lambda n, batch: n + tf.size(batch, out_type=tf.int64)))


def check_shards(folder: str, split: str, entry: dict) -> None:
    """Checks that each shard of a split's manifest ``entry`` holds, uncorrupted, the images the manifest says.

    Raises:
        DapterError: naming the first shard that is corrupted, truncated or holds another count.
    """
    for name, expected in zip(entry["files"], entry["counts"], strict=True):
        try:
            found = count_records(os.path.join(folder, name))
        except tf.errors.OpError as e:
            raise DapterError(
                f"{folder}: {split} shard {name} is damaged ({tf_error_reason(e)}): write the records again with "
                "dapter-write-records"
            ) from None
        if found != expected:
            raise DapterError(
                f"{folder}: {split} shard {name} holds {found} images but {MANIFEST_FILE} says {expected}: write the "
                "records again with dapter-write-records"
            )


def record_set(folder: str, split: str, task_name: str, image_size) -> RecordSet:
    """The ``split`` of a records folder as a stream, checked against the task that will read it.

    Every shard of the split is checked against the manifest (``check_shards``) before it is
    used, so a trainer never starts on records that would lose images or fail half way.

    Raises:
        DapterError: on a missing folder or split, a bad manifest, damaged shards, or records of
            another task or image size.
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
    check_shards(folder, split, entry)
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

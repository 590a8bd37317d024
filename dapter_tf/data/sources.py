"""Where images come from: the embedded CIFAR-10 sample, `.npz` files, official folders, tfds and TFRecord shards."""

import dataclasses
import importlib.resources
import os
import zipfile

import numpy as np

from dapter_tf.data import folders, tfrecords
from dapter_tf.data.images import ImageSet, validate_images, validate_labels
from dapter_tf.data.tasks import CIFAR10_SUPERCLASS, Task
from dapter_tf.errors import DapterError

SOURCES = ("embedded", "npz", "folder", "csv", "tfds", "tfrecord")
EMBEDDED_SAMPLE = "cifar10_sample.npz"


def load_npz(path: str) -> ImageSet:
    """Loads an ``.npz`` file with ``x`` (uint8 N x H x W x 3) and ``y`` (N integer labels).

    Raises:
        DapterError: if the file is missing, is not a readable ``.npz``, lacks ``x`` or ``y``, or
            holds images of the wrong shape or dtype.
    """
    if not os.path.isfile(path):
        raise DapterError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise DapterError(
                    f"{path}: missing array(s) {', '.join(missing)}; an .npz needs 'x' (uint8 "
                    f"N x H x W x 3) and 'y' (N labels), it has: {', '.join(archive.files) or 'nothing'}"
                )
            x, y = archive["x"], archive["y"]
    except DapterError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DapterError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    validate_images(x, path)
    return ImageSet(x, validate_labels({"label": y}, len(x), path), source=path)


def embedded_sample_path() -> str:
    """Returns the path of the CIFAR-10 sample packaged with dapter_tf (see docs/datasets.md)."""
    return str(importlib.resources.files("dapter_tf") / "assets" / EMBEDDED_SAMPLE)


def load_embedded(split: str) -> ImageSet:
    """Loads the ``train`` or ``test`` split of the embedded CIFAR-10 sample."""
    if split not in ("train", "test"):
        raise DapterError(f"unknown split {split!r} of the embedded sample; use 'train' or 'test'")
    path = embedded_sample_path()
    with np.load(path, allow_pickle=False) as archive:
        x, y = archive[f"x_{split}"], archive[f"y_{split}"]
    return ImageSet(validate_images(x, path), {"label": y.astype(np.int64)}, source=f"embedded:{split}")


# Where tfds fetches each dataset from: --download checks it answers before tfds starts, because
# tfds retries an unreachable host for minutes.
TFDS_HOSTS = {"cifar10": "www.cs.toronto.edu", "cifar100": "www.cs.toronto.edu", "celeb_a": "drive.google.com"}


def check_reachable(host: str, timeout: float = 5.0) -> None:
    """Raises DapterError at once if ``host`` does not answer on port 443."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
        raise DapterError(f"--download needs network, but {host} cannot be reached ({e})") from None


def _tfds_labels(task: Task, features: dict) -> dict:
    """Maps a tfds example's features to the task's labels."""
    if task.tfds_name == "celeb_a":
        return {a: np.asarray(features["attributes"][a]).astype(np.int64) for a in task.label_classes}
    if task.tfds_name == "cifar100":
        return {"coarse_label": features["coarse_label"], "label": features["label"]}
    return derive_labels(task, {"label": features["label"]})


def load_tfds(
    task: Task,
    split: str,
    data_dir: str | None = None,
    download: bool = False,
    manual_dir: str | None = None,
) -> ImageSet:
    """Loads a tfds split of ``task`` into memory, never touching the network unless ``download`` is set.

    Args:
        task: The task; its ``tfds_name`` names the dataset.
        split: ``"train"`` or ``"test"``.
        data_dir: tfds's data directory (tfds's default if ``None``).
        download: Let tfds download and prepare the dataset (needs network).
        manual_dir: Where tfds finds files it cannot download itself (e.g. CelebA's archives).

    Raises:
        DapterError: if tfds does not know the dataset, or it is not prepared in ``data_dir`` and
            ``download`` is off. ``tfds.load`` with downloads allowed retries for minutes without
            network, so the default fails at once instead.
    """
    import tensorflow_datasets as tfds  # Slow to import; only this source needs it.
    from absl import logging

    name = task.tfds_name
    if name is None:
        raise DapterError(f"task {task.name!r} has no tfds dataset")
    # tfds warns about every missing version folder; the error below says it once, clearly.
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    except tfds.core.registered.DatasetNotFoundError:
        raise DapterError(f"tfds has no dataset called {name!r}") from None
    finally:
        logging.set_verbosity(verbosity)
    if not prepared:
        if not download:
            raise DapterError(
                f"tfds dataset {name!r} is not prepared in {builder.data_dir_root}; it is not available "
                f"offline: pass --download to fetch it (needs network), or use another --source"
            )
        check_reachable(TFDS_HOSTS.get(name, "storage.googleapis.com"))
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
    ds = builder.as_dataset(split=split)
    images, labels = [], []
    for example in tfds.as_numpy(ds):
        images.append(example["image"])
        labels.append(_tfds_labels(task, example))
    where = f"tfds:{name}:{split}"
    if not images:
        raise DapterError(f"{where}: the split is empty")
    merged = {k: np.array([row[k] for row in labels]) for k in labels[0]}
    return ImageSet(task.prepare_images(images), validate_labels(merged, len(images), where), source=where)


def derive_labels(task: Task, labels: dict) -> dict:
    """Adds the labels a task derives from CIFAR-10's class (the Cifar2:10 stand-in's superclass)."""
    if task.name == "cifar2_10" and "superclass" not in labels:
        labels = {**labels, "superclass": CIFAR10_SUPERCLASS[np.asarray(labels["label"])]}
    return labels


def check_source(task: Task, source: str) -> None:
    """Raises DapterError unless ``source`` is a known source that can serve ``task``."""
    if source not in SOURCES:
        raise DapterError(f"unknown data source {source!r}; choose one of: {', '.join(SOURCES)}")
    # Any task's images can be written to records (dapter-write-records), so every task reads them.
    if source not in task.sources and source != "tfrecord":
        raise DapterError(
            f"dataset {task.name!r} cannot be read with --source={source}; use one of: {', '.join(task.sources)}"
        )


def record_set(task: Task, data_dir: str | None, split: str) -> tfrecords.RecordSet:
    """The ``split`` of the records folder ``data_dir`` (``--source=tfrecord``), checked against ``task``."""
    if not data_dir:
        raise DapterError("--source=tfrecord needs the records folder (--data_dir)")
    return tfrecords.record_set(data_dir, split, task.name, task.image_size)


def load_split(
    task: Task,
    source: str,
    split: str,
    npz_path: str | None = None,
    data_dir: str | None = None,
    tfds_data_dir: str | None = None,
    tfds_manual_dir: str | None = None,
    download: bool = False,
    max_images: int = 0,
    seed: int = 0,
) -> ImageSet:
    """Loads one split of ``task``'s data from ``source``, shuffled, and checks it fits the task.

    Args:
        task: The task the images are for.
        source: One of ``SOURCES`` that ``task.sources`` allows.
        split: ``"train"`` or ``"test"``.
        npz_path: The file to read, for ``source="npz"``.
        data_dir: The dataset's folder, for ``source="folder"`` (see ``folders.read_folder``), or the
            records folder, for ``source="tfrecord"`` (see ``tfrecords``).
        tfds_data_dir: tfds's data directory, for ``source="tfds"`` (tfds's default if ``None``).
        tfds_manual_dir: tfds's manual directory, for ``source="tfds"``.
        download: Whether tfds may download (needs network).
        max_images: Keep at most this many images (0: all), after the seeded shuffle.
        seed: Seeds the shuffle (the shared files are sorted by class).

    Raises:
        DapterError: on a source the task cannot use, a missing path, or labels outside the
            task's classes.
    """
    check_source(task, source)
    if source == "embedded":
        images = load_embedded(split)
    elif source == "npz":
        if not npz_path:
            raise DapterError(f"--source=npz needs a path for the {split} split (--{split}_npz)")
        images = load_npz(npz_path)
    elif source == "folder":
        if not data_dir:
            raise DapterError("--source=folder needs the dataset's folder (--data_dir)")
        return check_labels(task, folders.read_folder(task, data_dir, split, max_images, seed))
    elif source == "tfrecord":
        # Stored already prepared and shuffled (with the writer's seed): read in that order.
        return check_labels(task, tfrecords.read_split(record_set(task, data_dir, split), max_images))
    else:
        images = load_tfds(task, split, tfds_data_dir, download, tfds_manual_dir)
    images = dataclasses.replace(images, labels=derive_labels(task, images.labels))
    if images.images.shape[1:3] != task.image_size:
        images = dataclasses.replace(images, images=task.prepare_images(images.images))
    images = images.shuffled(seed)
    if max_images:
        images = images.take(max_images)
    return check_labels(task, images)


def check_labels(task: Task, images: ImageSet) -> ImageSet:
    """Returns ``images`` if it holds every label of ``task`` within its classes; DapterError otherwise."""
    missing = [k for k in task.label_classes if k not in images.labels]
    if missing:
        raise DapterError(f"{images.source}: has no label(s) {', '.join(missing)} that task {task.name!r} needs")
    for name, classes in task.label_classes.items():
        values = images.labels[name]
        if values.min() < 0 or (classes and values.max() >= classes):
            raise DapterError(
                f"{images.source}: label {name!r} must lie in 0..{classes - 1} for task {task.name!r}, "
                f"found {values.min()}..{values.max()}"
            )
    return images

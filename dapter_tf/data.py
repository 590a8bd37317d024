"""Real images and labels: the embedded CIFAR-10 sample, `.npz` files and tfds, as tf.data pipelines."""

import dataclasses
import importlib.resources
import os
import zipfile

import numpy as np
import tensorflow as tf

from dapter_tf.errors import DapterError
from dapter_tf.tasks import CIFAR10_SUPERCLASS, Task

SOURCES = ("embedded", "npz", "folder", "tfds")
EMBEDDED_SAMPLE = "cifar10_sample.npz"


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


def _validate_labels(labels: dict, n: int, where: str) -> dict:
    out = {}
    for name, values in labels.items():
        values = np.asarray(values)
        if values.ndim != 1 or len(values) != n:
            raise DapterError(f"{where}: label {name!r} has shape {values.shape}, expected ({n},)")
        if not np.issubdtype(values.dtype, np.integer):
            raise DapterError(f"{where}: label {name!r} must be integers, got dtype {values.dtype}")
        out[name] = values.astype(np.int64)
    return out


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
    return ImageSet(x, _validate_labels({"label": y}, len(x), path), source=path)


def embedded_sample_path() -> str:
    """Returns the path of the CIFAR-10 sample packaged with dapter_tf (see README, "Data")."""
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
    return ImageSet(task.prepare_images(images), _validate_labels(merged, len(images), where), source=where)


def derive_labels(task: Task, labels: dict) -> dict:
    """Adds the labels a task derives from CIFAR-10's class (the Cifar2:10 stand-in's superclass)."""
    if task.name == "cifar2_10" and "superclass" not in labels:
        labels = {**labels, "superclass": CIFAR10_SUPERCLASS[np.asarray(labels["label"])]}
    return labels


def check_source(task: Task, source: str) -> None:
    """Raises DapterError unless ``source`` is a known source that can serve ``task``."""
    if source not in SOURCES:
        raise DapterError(f"unknown data source {source!r}; choose one of: {', '.join(SOURCES)}")
    if source not in task.sources:
        raise DapterError(
            f"dataset {task.name!r} cannot be read with --source={source}; use one of: {', '.join(task.sources)}"
        )


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
        data_dir: The dataset's folder, for ``source="folder"`` (see ``folders.read_folder``).
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
        from dapter_tf import folders

        if not data_dir:
            raise DapterError("--source=folder needs the dataset's folder (--data_dir)")
        return _check_labels(task, folders.read_folder(task, data_dir, split, max_images, seed))
    else:
        images = load_tfds(task, split, tfds_data_dir, download, tfds_manual_dir)
    images = dataclasses.replace(images, labels=derive_labels(task, images.labels))
    if images.images.shape[1:3] != task.image_size:
        images = dataclasses.replace(images, images=task.prepare_images(images.images))
    images = images.shuffled(seed)
    if max_images:
        images = images.take(max_images)
    return _check_labels(task, images)


def _check_labels(task: Task, images: ImageSet) -> ImageSet:
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


def to_float(images):
    """Maps uint8 pixels to float32 in [0, 1], the range the converter and targets take."""
    return tf.cast(images, tf.float32) / 255.0


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


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where a run's training and test images come from, and which task they serve.

    Attributes:
        dataset: A task name from ``tasks.TASKS``.
        source: ``"embedded"`` (the packaged CIFAR-10 sample), ``"npz"``, ``"folder"`` (a
            dataset's on-disk layout, see ``folders``) or ``"tfds"``.
        train_npz: Training ``.npz``, for ``source="npz"``.
        test_npz: Test ``.npz``, for ``source="npz"``.
        data_dir: The dataset's folder, for ``source="folder"``.
        tfds_data_dir: tfds's data directory, for ``source="tfds"``.
        tfds_manual_dir: tfds's manual directory (files tfds cannot download), for ``source="tfds"``.
        download: Let tfds download (needs network).
        target_label: The task's label to serve instead of its default (CelebA: any attribute).
        image_size: Square image side instead of the task's own (0: the task's own).
        max_train: Use at most this many training images (0: all), after a seeded shuffle.
        max_test: Use at most this many test images (0: all), after a seeded shuffle.
    """

    dataset: str = "cifar10"
    source: str = "embedded"
    train_npz: str | None = None
    test_npz: str | None = None
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    tfds_manual_dir: str | None = None
    download: bool = False
    target_label: str | None = None
    image_size: int = 0
    max_train: int = 0
    max_test: int = 0

    def __post_init__(self):
        from dapter_tf.tasks import get_task

        task = get_task(self.dataset, self.target_label, self.image_size)
        check_source(task, self.source)
        for name in ("max_train", "max_test"):
            if getattr(self, name) < 0:
                raise DapterError(f"{name} must be >= 0 (0 means all images), got {getattr(self, name)}")


def _where(config: DataConfig) -> dict:
    return dict(
        data_dir=config.data_dir,
        tfds_data_dir=config.tfds_data_dir,
        tfds_manual_dir=config.tfds_manual_dir,
        download=config.download,
    )


def _load_test(task: Task, config: DataConfig, seed: int) -> ImageSet:
    return load_split(
        task,
        config.source,
        "test",
        npz_path=config.test_npz,
        max_images=config.max_test,
        seed=seed + 1,
        **_where(config),
    )


def load_test_data(config: DataConfig, seed: int = 0):
    """Loads only the held-out images of ``load_data(config, seed)``: the same images in the same order.

    For measures that need no training images (bandwidth); a task whose label counts depend on the
    data (LFW identities) keeps them unfilled.

    Returns:
        (task, test ImageSet).

    Raises:
        DapterError: as ``load_data``.
    """
    from dapter_tf.model import check_image_size
    from dapter_tf.tasks import get_task

    task = get_task(config.dataset, config.target_label, config.image_size)
    test = _load_test(task, config, seed)
    check_image_size(*test.images.shape[1:3])
    return task, test


def load_data(config: DataConfig, seed: int = 0):
    """Loads and checks a run's task, training images and test images.

    Both splits are shuffled with ``seed`` (the shared files are sorted by class) and then cut to
    ``max_train`` / ``max_test``. Datasets without an official test split (the shared CelebA and
    LFW folders) are split once, the same way for every seed (see ``folders``).

    Returns:
        (task, train ImageSet, test ImageSet). A task whose label counts depend on the data (LFW
        identities) comes back with them filled in.

    Raises:
        DapterError: on any problem with the data (see ``load_split``), or when the two splits'
            image sizes differ or do not suit the converter.
    """
    from dapter_tf.model import check_image_size
    from dapter_tf.tasks import get_task

    task = get_task(config.dataset, config.target_label, config.image_size)
    train = load_split(
        task,
        config.source,
        "train",
        npz_path=config.train_npz,
        max_images=config.max_train,
        seed=seed,
        **_where(config),
    )
    test = _load_test(task, config, seed)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DapterError(f"training images are {train.images.shape[1:]} but test images are {test.images.shape[1:]}")
    check_image_size(*train.images.shape[1:3])
    unsized = {k: v for k, v in task.label_classes.items() if not v}
    if unsized:
        counts = {k: int(max(train.labels[k].max(), test.labels[k].max())) + 1 for k in unsized}
        task = dataclasses.replace(task, label_classes={**task.label_classes, **counts})
    return task, train, test

"""A run's data: its ``DataConfig``, and loading its task, training and test images in one checked call."""

import dataclasses

from dapter_tf.data import photos, tfrecords
from dapter_tf.data.images import ImageSet
from dapter_tf.data.sources import check_labels, check_source, load_split, record_set
from dapter_tf.data.tasks import Task, get_task
from dapter_tf.errors import DapterError
from dapter_tf.pixels import check_image_size


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where a run's training and test images come from, and which task they serve.

    Attributes:
        dataset: A task name from ``tasks.TASKS``.
        source: ``"embedded"`` (the packaged CIFAR-10 sample), ``"npz"``, ``"folder"`` (a
            dataset's on-disk layout, see ``folders``; for ``photos``, a folder per class),
            ``"csv"`` (``photos`` listed in ``labels_csv``), ``"tfds"`` or ``"tfrecord"`` (shards
            written by ``dapter-write-records``, see ``tfrecords``: trainers stream them).
        train_npz: Training ``.npz``, for ``source="npz"``.
        test_npz: Test ``.npz``, for ``source="npz"``.
        data_dir: The dataset's folder, for ``source="folder"``; the records folder, for ``source="tfrecord"``.
        tfds_data_dir: tfds's data directory, for ``source="tfds"``.
        tfds_manual_dir: tfds's manual directory (files tfds cannot download), for ``source="tfds"``.
        download: Let tfds download (needs network).
        target_label: The task's label to serve instead of its default (CelebA: any attribute).
        image_size: Square image side instead of the task's own (0: the task's own).
        max_train: Use at most this many training images (0: all), after a seeded shuffle.
        max_test: Use at most this many test images (0: all), after a seeded shuffle.
        labels_csv: The ``photos`` task's CSV of files and labels, for ``source="csv"`` (``data.photos``).
        label_column: The CSV's column of the target's label.
        file_column: The CSV's column of photo paths, relative to the CSV's folder.
        attack_columns: The CSV's columns of attack labels (what the labelling attackers read).
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
    labels_csv: str | None = None
    label_column: str = "label"
    file_column: str = "file"
    attack_columns: tuple = ()

    def __post_init__(self):
        _check_photo_fields(self)
        task = config_task(self)  # Lists a photos task's files: a bad set is refused here, before any output.
        check_source(task, self.source)
        for name in ("max_train", "max_test"):
            if getattr(self, name) < 0:
                raise DapterError(f"{name} must be >= 0 (0 means all images), got {getattr(self, name)}")


def _check_photo_fields(config: DataConfig) -> None:
    """Refuses the photos fields where they would be ignored, and the ones the photos task cannot take."""
    csv_fields = config.labels_csv or config.attack_columns
    if config.dataset != "photos":
        if csv_fields or config.source == "csv":
            raise DapterError(
                "--labels_csv, --attack_columns and --source=csv describe the provider's own photos: "
                f"use them with --dataset=photos, not --dataset={config.dataset}"
            )
        return
    if config.target_label:
        raise DapterError(
            "--target_label picks a label of a registered task; with --dataset=photos the target's label is "
            "--label_column (a CSV's column) or the class folders' names"
        )
    if config.source == "folder" and csv_fields:
        raise DapterError(
            "--dataset=photos --source=folder reads a folder per class (--data_dir): --labels_csv and "
            "--attack_columns need --source=csv"
        )
    if config.source == "csv" and config.data_dir:
        raise DapterError(
            "--source=csv reads the photos the CSV names, relative to its folder: drop --data_dir"
        )


def config_task(config: DataConfig) -> Task:
    """The task ``config`` serves: a registered task, or the photos task with its labels listed from its files.

    Raises:
        DapterError: as ``tasks.get_task``, or ``photos.list_photos`` for a photos task.
    """
    task = get_task(config.dataset, config.target_label, config.image_size)
    if task.name != "photos":
        return task
    if config.source == "tfrecord" and config.data_dir:
        # Records of photos hold their labels, the target's first (dapter-write-records writes the
        # task's labels in order); class counts are filled from the records, their names are not kept.
        labels = tfrecords.read_manifest(config.data_dir)["labels"]
        return dataclasses.replace(
            task, target_label=labels[0], attack_labels=tuple(labels[1:]), label_classes=dict.fromkeys(labels, 0)
        )
    return photos.photo_task(task, _photo_listing(config))


def _photo_listing(config: DataConfig) -> photos.PhotoListing:
    return photos.list_photos(
        config.source,
        data_dir=config.data_dir,
        labels_csv=config.labels_csv,
        label_column=config.label_column,
        file_column=config.file_column,
        attack_columns=config.attack_columns,
    )


def _load_split(task: Task, config: DataConfig, split: str, npz_path, max_images: int, seed: int) -> ImageSet:
    """One split of ``config``'s images, from photos or any other source (``sources.load_split``)."""
    if task.name == "photos" and config.source in ("folder", "csv"):
        return check_labels(task, photos.read_photos(task, _photo_listing(config), split, max_images, seed))
    return load_split(task, config.source, split, npz_path=npz_path, max_images=max_images, seed=seed, **_where(config))


def _where(config: DataConfig) -> dict:
    return dict(
        data_dir=config.data_dir,
        tfds_data_dir=config.tfds_data_dir,
        tfds_manual_dir=config.tfds_manual_dir,
        download=config.download,
    )


def _load_test(task: Task, config: DataConfig, seed: int) -> ImageSet:
    return _load_split(task, config, "test", config.test_npz, config.max_test, seed + 1)


def load_test_data(config: DataConfig, seed: int = 0):
    """Loads only the held-out images of ``load_data(config, seed)``: the same images in the same order.

    For measures that need no training images (bandwidth); a task whose label counts depend on the
    data (LFW identities) keeps them unfilled.

    Returns:
        (task, test ImageSet).

    Raises:
        DapterError: as ``load_data``.
    """
    task = config_task(config)
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
    task = config_task(config)
    train = _load_split(task, config, "train", config.train_npz, config.max_train, seed)
    test = _load_test(task, config, seed)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DapterError(f"training images are {train.images.shape[1:]} but test images are {test.images.shape[1:]}")
    check_image_size(*train.images.shape[1:3])
    unsized = {k: v for k, v in task.label_classes.items() if not v}
    if unsized:
        counts = {k: int(max(train.labels[k].max(), test.labels[k].max())) + 1 for k in unsized}
        task = dataclasses.replace(task, label_classes={**task.label_classes, **counts})
    return task, train, test


def load_training_data(config: DataConfig, seed: int = 0):
    """``load_data`` for a trainer: the same, but records (``source="tfrecord"``) stay on disk, streamed.

    Returns:
        (task, train ``ImageSet`` or ``tfrecords.RecordSet``, test ImageSet).

    Raises:
        DapterError: as ``load_data``; ``max_train`` with records (cut them when writing them).
    """
    if config.source != "tfrecord":
        return load_data(config, seed)
    if config.max_train:
        raise DapterError("--max_train cuts in-memory sets; with --source=tfrecord write fewer records instead")
    task = config_task(config)
    train = record_set(task, config.data_dir, "train")
    test = _load_test(task, config, seed)
    if train.image_shape != test.images.shape[1:]:
        raise DapterError(f"training images are {train.image_shape} but test images are {test.images.shape[1:]}")
    check_image_size(*train.image_shape[:2])
    missing = [k for k in task.label_classes if k not in train.label_names]
    if missing:
        raise DapterError(f"{train.source}: has no label(s) {', '.join(missing)} that task {task.name!r} needs")
    unsized = {k: v for k, v in task.label_classes.items() if not v}
    if unsized:
        counts = {k: int(max(train.label_max[k], test.labels[k].max())) + 1 for k in unsized}
        task = dataclasses.replace(task, label_classes={**task.label_classes, **counts})
    return task, train, test

"""A run's data: its ``DataConfig``, and loading its task, training and test images in one checked call."""

import dataclasses

from dapter_tf.data.images import ImageSet
from dapter_tf.data.sources import check_source, load_split, record_set
from dapter_tf.data.tasks import Task, get_task
from dapter_tf.errors import DapterError
from dapter_tf.pixels import check_image_size


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where a run's training and test images come from, and which task they serve.

    Attributes:
        dataset: A task name from ``tasks.TASKS``.
        source: ``"embedded"`` (the packaged CIFAR-10 sample), ``"npz"``, ``"folder"`` (a
            dataset's on-disk layout, see ``folders``), ``"tfds"`` or ``"tfrecord"`` (shards
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
    task = get_task(config.dataset, config.target_label, config.image_size)
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

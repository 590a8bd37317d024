"""Tasks: which dataset a target (DLIS) model serves, its target label and its attack labels."""

import dataclasses

from dapter_tf.errors import DapterError

CIFAR10_CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclasses.dataclass(frozen=True)
class Task:
    """A DLIS task in the paper's sense (§6, "Abuse Settings").

    Attributes:
        name: The task's registry name, e.g. ``"cifar10"``.
        tfds_name: The tensorflow-datasets name its images come from, or ``None``.
        target_label: The label the target model infers (the service the user pays for).
        attack_labels: Labels a greedy provider would like to read off the converted images.
        num_classes: Number of classes of ``target_label``.
        class_names: Names of the ``target_label`` classes, in label order.
        image_size: (height, width) of the task's images.
    """

    name: str
    tfds_name: str | None
    target_label: str
    attack_labels: tuple[str, ...]
    num_classes: int
    class_names: tuple[str, ...]
    image_size: tuple[int, int]


TASKS = {
    "cifar10": Task(
        name="cifar10",
        tfds_name="cifar10",
        target_label="label",
        attack_labels=(),
        num_classes=10,
        class_names=CIFAR10_CLASS_NAMES,
        image_size=(32, 32),
    ),
}


def get_task(name: str) -> Task:
    """Returns the registered task called ``name``.

    Raises:
        DapterError: if no task has that name.
    """
    if name not in TASKS:
        raise DapterError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]

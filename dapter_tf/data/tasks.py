"""Tasks: which dataset a target (DLIS) model serves, its target label, its attack labels, its pixels.

A task is the paper's "dataset + target task" pair (Table 3, §7.3): the label the user pays the
service to infer (``target_label``) and the labels a greedy provider would like to read off the
converted images (``attack_labels``). Every label is a small integer class; a binary attribute
(CelebA) is a two-class label, so every target has a softmax head and L_acc is one cross-entropy.

``prepare_images`` is the one place where a task's images are cropped and resized, so the target,
the converter and the attacks all see the same pixels whatever layout the files came in.
"""

import dataclasses

import numpy as np
from PIL import Image

from dapter_tf.errors import DapterError
from dapter_tf.pixels import check_image_size
from dapter_tf.resize import fit_image

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
# The stand-in for Cifar20:100 offline: CIFAR-10's classes grouped by semantics, as Cifar20 groups
# CIFAR-100's.
CIFAR10_SUPERCLASS_NAMES = ("vehicle", "animal")
CIFAR10_SUPERCLASS = np.array([0, 0, 1, 1, 1, 1, 1, 1, 0, 0], np.int64)

CIFAR100_COARSE_NAMES = (
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
)

# The 40 CelebA attributes in the official order of list_attr_celeba.txt.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
BINARY_CLASS_NAMES = ("no", "yes")
LFW_GENDER_NAMES = ("female", "male")


@dataclasses.dataclass(frozen=True)
class Task:
    """A DLIS task in the paper's sense (§6, "Abuse Settings").

    Attributes:
        name: The task's registry name, e.g. ``"cifar10"``.
        description: One line for reports; a stand-in says here what it stands in for.
        sources: The data sources that can serve it (see ``data.SOURCES``).
        target_label: The label the target model infers (the service the user pays for).
        attack_labels: Labels a greedy provider would like to read off the converted images.
        label_classes: Label name -> number of classes; 0 means "as many as the data has" (LFW
            identities), filled in once the data is loaded.
        class_names: Names of the ``target_label`` classes, in label order.
        image_size: (height, width) every image is brought to (``prepare_images``).
        tfds_name: The tensorflow-datasets name its images come from, or ``None``.
        stand_in_for: The paper's dataset this task replaces offline, or ``None``.
    """

    name: str
    description: str
    sources: tuple[str, ...]
    target_label: str
    attack_labels: tuple[str, ...]
    label_classes: dict
    class_names: tuple[str, ...]
    image_size: tuple[int, int]
    tfds_name: str | None = None
    stand_in_for: str | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes of ``target_label``."""
        return self.label_classes[self.target_label]

    def with_target(self, label: str) -> "Task":
        """Returns the task with ``label`` as the target and every other label as an attack.

        Raises:
            DapterError: if the task has no such label.
        """
        if label == self.target_label:
            return self
        if label not in self.label_classes:
            raise DapterError(
                f"task {self.name!r} has no label {label!r}; its labels are: {', '.join(self.label_classes)}"
            )
        attacks = tuple(k for k in self.label_classes if k != label)
        names = BINARY_CLASS_NAMES if self.label_classes[label] == 2 and self.name == "celeba" else ()
        return dataclasses.replace(self, target_label=label, attack_labels=attacks, class_names=names)

    def with_image_size(self, size: int) -> "Task":
        """Returns the task with square ``size`` x ``size`` images (0 keeps the task's own size)."""
        if not size:
            return self
        check_image_size(size, size)
        return dataclasses.replace(self, image_size=(size, size))

    def prepare_images(self, images) -> np.ndarray:
        """Crops and resizes images to the task's pixels: uint8 N x H x W x 3, RGB.

        The one place where a task's geometry is decided, by ``resize.RESIZE_POLICY``
        (``resize.fit_image``, which ``dapter-convert`` and the Android harness apply too): an image
        of another aspect loses the edges of its longer side (CelebA's 89x109 faces keep their 89x89
        middle for a square task), and is then resized with a box filter (area averaging, no
        aliasing) to ``image_size``. Grayscale images (LFW's gray set) are repeated into three channels.

        Args:
            images: A uint8 N x H x W x C array (C = 1 or 3), or a sequence of uint8 H x W (x C)
                arrays or PIL images, which may differ in size.
        """
        out = np.empty((len(images), *self.image_size, 3), np.uint8)
        height, width = self.image_size
        for i, image in enumerate(images):
            if not isinstance(image, Image.Image):
                array = np.asarray(image)
                if array.dtype != np.uint8:
                    raise DapterError(f"images must be uint8 pixels, got dtype {array.dtype}")
                image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
            out[i] = fit_image(image, height, width)
        return out


_CIFAR_SOURCES = ("embedded", "npz", "tfds")

TASKS = {
    "cifar10": Task(
        name="cifar10",
        description="CIFAR-10: 10 classes (SLD)",
        sources=_CIFAR_SOURCES,
        target_label="label",
        attack_labels=(),
        label_classes={"label": 10},
        class_names=CIFAR10_CLASS_NAMES,
        image_size=(32, 32),
        tfds_name="cifar10",
    ),
    "cifar2_10": Task(
        name="cifar2_10",
        description=(
            "Cifar2:10, a STAND-IN for the paper's Cifar20:100 (no CIFAR-100 offline): target "
            "vehicle/animal, attack the 10 CIFAR-10 classes"
        ),
        sources=_CIFAR_SOURCES,
        target_label="superclass",
        attack_labels=("label",),
        label_classes={"superclass": 2, "label": 10},
        class_names=CIFAR10_SUPERCLASS_NAMES,
        image_size=(32, 32),
        tfds_name="cifar10",
        stand_in_for="Cifar20:100",
    ),
    "cifar20_100": Task(
        name="cifar20_100",
        description="Cifar20:100 (HLD): target the 20 CIFAR-100 superclasses, attack the 100 classes",
        sources=("tfds",),
        target_label="coarse_label",
        attack_labels=("label",),
        label_classes={"coarse_label": 20, "label": 100},
        class_names=CIFAR100_COARSE_NAMES,
        image_size=(32, 32),
        tfds_name="cifar100",
    ),
    "celeba": Task(
        name="celeba",
        description="CelebA (MLD): one of 40 binary attributes as target, the others as attacks",
        sources=("folder", "tfds"),
        target_label="Male",
        attack_labels=tuple(a for a in CELEBA_ATTRIBUTES if a != "Male"),
        label_classes={a: 2 for a in CELEBA_ATTRIBUTES},
        class_names=BINARY_CLASS_NAMES,
        image_size=(64, 64),
        tfds_name="celeb_a",
    ),
    "lfw": Task(
        name="lfw",
        description="LFW (MLD): target gender, attack identity",
        sources=("folder",),
        target_label="gender",
        attack_labels=("identity",),
        label_classes={"gender": 2, "identity": 0},
        class_names=LFW_GENDER_NAMES,
        image_size=(64, 64),
    ),
    "imagenet10": Task(
        name="imagenet10",
        description="ImageNet10 (SLD): 10 ILSVRC-2012 classes (Imagenette's, see dapter_tf/synsets/)",
        sources=("folder",),
        target_label="label",
        attack_labels=(),
        label_classes={"label": 10},
        class_names=(),  # Filled from the shipped synset list (data.imagenet_synsets).
        image_size=(224, 224),
    ),
    "imagenet8_32": Task(
        name="imagenet8_32",
        description="ImageNet8:32 (HLD): target 8 synsets, attack their 32 child synsets (see dapter_tf/synsets/)",
        sources=("folder",),
        target_label="coarse_label",
        attack_labels=("label",),
        label_classes={"coarse_label": 8, "label": 32},
        class_names=(),
        image_size=(224, 224),
    ),
    "photos": Task(
        name="photos",
        description="a provider's own labelled photos (a folder per class, or a CSV): see data.photos",
        sources=("folder", "csv"),
        target_label="label",
        attack_labels=(),
        label_classes={"label": 0},
        class_names=(),  # Labels, class counts and names come from the files (data.photos.photo_task).
        image_size=(64, 64),
    ),
}


def get_task(name: str, target_label: str | None = None, image_size: int = 0) -> Task:
    """Returns the registered task called ``name``, optionally with another target label or size.

    Args:
        name: A key of ``TASKS``.
        target_label: A label of the task to serve instead of its default (CelebA: any of the 40
            attributes); every other label becomes an attack label.
        image_size: Square image side to use instead of the task's own (0: the task's own).

    Raises:
        DapterError: if no task has that name or label, or the size does not suit the converter.
    """
    if name not in TASKS:
        raise DapterError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    task = TASKS[name]
    if target_label:
        task = task.with_target(target_label)
    return task.with_image_size(image_size)

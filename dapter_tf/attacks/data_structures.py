"""What the attacks of §5 take: the attack input and one spec per attack (their results: ``records.attacks``).

Shaped like tensorflow/privacy's membership-inference module: an enum of attack kinds, an input
that ``validate()`` checks before anything trains, one spec dataclass per attack (each with its own
``validate()``); the results that print a summary and round-trip through a JSON file are records.
"""

import dataclasses
import os

from dapter_tf.attacks import reconstructors
from dapter_tf.data import DataConfig, ImageSet
from dapter_tf.data.tasks import Task
from dapter_tf.errors import DapterError
from dapter_tf.models import targets
from dapter_tf.models.saving import check_model_file, check_target_path
from dapter_tf.models.served import TargetContract

# The paper's visual study (§7.3.2) asked volunteers about these four CelebA attributes.
PAPER_VISUAL_ATTRIBUTES = ("Arched_Eyebrows", "Bangs", "Chubby", "Eyeglasses")
# The auto-recognition attackers: §5.1's transfer learning, and a classifier trained from scratch.
LABELLING_ATTACKERS = ("finetuned", "scratch")


@dataclasses.dataclass(frozen=True)
class AttackInputData:
    """What every attack starts from.

    Attributes:
        task: The DLIS task: its target label is the service, its other labels what an attacker wants.
        train: The adversary's own labelled images. For reconstruction they are also the converter's
            own training images: §5.3 lets the adversary use them, its strongest setting.
        test: Held-out images every attack is measured on.
        converter_path: The public converter's ``.keras`` file.
        target_path: The target: a ``.keras`` file or a SavedModel directory (auto-recognition
            reports its accuracy too).
        data: Where the images came from, recorded in the attack workdirs.
        target_contract: The target's input contract (``models.served``); None: the JSON beside
            the target, else our zoo's.
    """

    task: Task
    train: ImageSet
    test: ImageSet
    converter_path: str
    target_path: str = ""
    data: DataConfig = DataConfig()
    target_contract: TargetContract | None = None

    def validate(self) -> None:
        """Raises DapterError on a missing model file, empty or mismatched images, or missing labels."""
        check_model_file(self.converter_path, "converter")
        if self.target_path:
            check_target_path(self.target_path)
        for name, images in (("train", self.train), ("test", self.test)):
            if not len(images):
                raise DapterError(f"the attack's {name} images are empty")
            missing = [k for k in self.task.label_classes if k not in images.labels]
            if missing:
                raise DapterError(f"the attack's {name} images have no label(s) {', '.join(missing)}")
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise DapterError(
                f"train images are {self.train.images.shape[1:]} but test images are {self.test.images.shape[1:]}"
            )

    def check_target(self, target) -> None:
        """Raises DapterError unless ``target`` (or None: no target) answers with the task's classes."""
        task = self.task
        if target is not None and target.output_shape[-1] != task.num_classes:
            raise DapterError(
                f"{self.target_path} has {target.output_shape[-1]} outputs but the target label "
                f"{task.target_label!r} of task {task.name!r} has {task.num_classes} classes"
            )


def _check_labels(labels, task: Task, what: str) -> tuple:
    labels = tuple(labels) or task.attack_labels
    if not labels:
        raise DapterError(f"task {task.name!r} has no attack labels for {what}; give some")
    for label in labels:
        if label not in task.label_classes:
            raise DapterError(
                f"{what}: task {task.name!r} has no label {label!r}; its labels are: {', '.join(task.label_classes)}"
            )
        if label == task.target_label:
            raise DapterError(f"{what}: {label!r} is the target label, not an attack label")
    return labels


def _check_positive(spec, *names) -> None:
    for name in names:
        if getattr(spec, name) < 1:
            raise DapterError(f"{name} must be >= 1, got {getattr(spec, name)}")


@dataclasses.dataclass(frozen=True)
class AutoRecognitionSpec:
    """The auto-recognition attack (§5.1, §7.3.1): transfer learning onto converted images.

    For each attack label the adversary has a classifier trained on normal images (``pretrained``,
    or trained here for ``pretrain_epochs``), converts his own labelled images with the public
    converter and fine-tunes the classifier on them with cross-entropy plus an L2 regulariser.

    Attributes:
        attack_labels: Labels to attack (empty: all the task's attack labels).
        model: Architecture of classifiers trained here (``targets.TARGET_BUILDERS``); §7.3.1
            uses the target's own, ResNet18.
        width: Their width (``None``: the builder's default).
        pretrained: Attack label -> ``.keras`` file of a classifier the adversary already has for it.
        pretrain_epochs: Epochs on original images for labels without a ``pretrained`` file.
        finetune_epochs: Epochs of fine-tuning on converted images.
        pretrain_learning_rate: Adam's initial rate on originals (cosine decay to 0).
        finetune_learning_rate: Adam's initial rate when fine-tuning (cosine decay to 0).
        l2: Weight of the L2 regulariser when fine-tuning.
        batch_size: Global batch size.
        attack_images: The adversary's labelled images, from the training split (0: all of them,
            the strongest adversary).
        augment: Random flips and shifts while training.
        seed: Seeds weights and data order.
        attackers: Which attackers label converted images: ``finetuned`` (§5.1: the classifier
            trained on originals, fine-tuned on converted images) and ``scratch`` (the same
            architecture trained from random weights on converted images only, with the
            pre-training's epochs and learning rate).
    """

    attack_labels: tuple = ()
    model: str = "resnet18"
    width: int | None = 16
    pretrained: dict = dataclasses.field(default_factory=dict)
    pretrain_epochs: int = 10
    finetune_epochs: int = 5
    pretrain_learning_rate: float = 1e-3
    finetune_learning_rate: float = 3e-4
    l2: float = 5e-4
    batch_size: int = 128
    attack_images: int = 0
    augment: bool = True
    seed: int = 0
    attackers: tuple = ("finetuned",)

    def validate(self, task: Task) -> None:
        """Raises DapterError on labels the task lacks, an unknown attacker, or an out-of-range number."""
        unknown = [a for a in self.attackers if a not in LABELLING_ATTACKERS]
        if unknown or not self.attackers or len(set(self.attackers)) != len(self.attackers):
            raise DapterError(
                f"auto-recognition attackers must be some of {', '.join(LABELLING_ATTACKERS)}, "
                f"each once; got {', '.join(self.attackers) or 'none'}"
            )
        labels = _check_labels(self.attack_labels, task, "auto-recognition")
        for label, path in self.pretrained.items():
            if label not in labels:
                raise DapterError(f"a pretrained classifier is given for {label!r}, which is not attacked")
            if not os.path.isfile(path):
                raise DapterError(f"pretrained classifier for {label!r} not found: {path}")
        targets.check_target_name(self.model)
        _check_positive(self, "pretrain_epochs", "finetune_epochs", "batch_size")
        if self.attack_images < 0:
            raise DapterError(f"attack_images must be >= 0, got {self.attack_images}")
        if not (self.pretrain_learning_rate > 0 and self.finetune_learning_rate > 0):
            raise DapterError("learning rates must be > 0")
        if not self.l2 >= 0:
            raise DapterError(f"l2 must be >= 0, got {self.l2}")


@dataclasses.dataclass(frozen=True)
class ReconstructionSpec:
    """The image-reconstruction attack (§5.3): a generator trained to undo the fixed converter.

    Attributes:
        architecture: The attacker (``attacks.reconstructors.ATTACKERS``): ``symmetric``, the paper's
            generator mirroring the converter, ``unet``, a much stronger four-level U-Net, or
            ``lookup``, the mean original of each converted training image (no network: ``filters``,
            ``epochs``, ``batch_size`` and ``learning_rate`` do not apply).
        filters: The attacker's channels: for ``symmetric`` at full, half and quarter resolution
            (empty: the converter's own, so the generator mirrors it as §5.3 says); for ``unet``
            one per level (empty: ``attacks.reconstructors.DEFAULT_UNET_FILTERS``).
        epochs: Passes over the (converted, original) training pairs.
        batch_size: Global batch size.
        learning_rate: Adam's learning rate (cosine decay to 0).
        train_images: Training pairs to use (0: all the training images).
        grid_images: Held-out images shown in the Fig. 13-style grid.
        seed: Seeds weights and data order.
    """

    filters: tuple = ()
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    train_images: int = 0
    grid_images: int = 16
    seed: int = 0
    architecture: str = "symmetric"

    def validate(self, task: Task) -> None:
        """Raises DapterError on an unknown attacker, out-of-range numbers, bad filters or image sizes."""
        reconstructors.check_reconstructor(self.architecture)
        if self.filters and min(self.filters) < 1:
            raise DapterError(f"filters must be positive channel counts, got {self.filters}")
        if self.filters and self.architecture == "symmetric" and len(self.filters) != 3:
            raise DapterError(f"filters must be three positive channel counts, got {self.filters}")
        if self.filters and self.architecture == "unet" and len(self.filters) < 2:
            raise DapterError(f"a U-Net attacker needs two or more channel counts, got {self.filters}")
        if self.filters and self.architecture == reconstructors.LOOKUP:
            raise DapterError(f"the lookup attacker is not a network and takes no filters, got {self.filters}")
        _check_positive(self, "epochs", "batch_size", "grid_images")
        if self.train_images < 0:
            raise DapterError(f"train_images must be >= 0, got {self.train_images}")
        if not self.learning_rate > 0:
            raise DapterError(f"learning_rate must be > 0, got {self.learning_rate}")
        multiple = reconstructors.side_multiple(self.architecture, self.attacker_filters())
        if any(side % multiple for side in task.image_size):
            raise DapterError(
                f"the {self.architecture} attacker needs image sides that are multiples of {multiple}, "
                f"task {task.name!r} has {task.image_size[0]}x{task.image_size[1]}"
            )

    def attacker_filters(self) -> tuple:
        """``filters``, or the default U-Net's for ``unet`` without them (``symmetric`` defaults to the converter's)."""
        if self.architecture == "unet" and not self.filters:
            return reconstructors.DEFAULT_UNET_FILTERS
        return self.filters


@dataclasses.dataclass(frozen=True)
class VisualSpec:
    """The visual-recognition study kit (§5.2, §7.3.2): a page on which people label converted images.

    Attributes:
        attack_labels: Binary attributes people are asked about (empty: the paper's four CelebA
            attributes where the task has them, else all the task's binary attack labels).
        per_class: Positive and negative images per attribute (the paper: 20 and 20).
        seed: Seeds which images are picked and their order on the page.
        title: The page's heading.
    """

    attack_labels: tuple = ()
    per_class: int = 20
    seed: int = 0
    title: str = "Labelling study"

    def labels_for(self, task: Task) -> tuple:
        """The attributes asked about: ``attack_labels``, or the default for ``task``."""
        if self.attack_labels:
            return tuple(self.attack_labels)
        if all(a in task.label_classes and a != task.target_label for a in PAPER_VISUAL_ATTRIBUTES):
            return PAPER_VISUAL_ATTRIBUTES
        return tuple(a for a in task.attack_labels if task.label_classes[a] == 2)

    def validate(self, task: Task) -> None:
        """Raises DapterError unless every attribute is a binary attack label of ``task``."""
        labels = _check_labels(self.labels_for(task), task, "visual recognition")
        for label in labels:
            if task.label_classes[label] != 2:
                raise DapterError(
                    f"visual recognition asks yes/no questions: {label!r} has {task.label_classes[label]} classes"
                )
        _check_positive(self, "per_class")

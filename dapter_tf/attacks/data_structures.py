"""What the attacks of §5 take and give: attack kinds, the attack input, specs and results.

Shaped like tensorflow/privacy's membership-inference module: an enum of attack kinds, an input
that ``validate()`` checks before anything trains, one spec dataclass per attack (each with its own
``validate()``), and results that print a summary and round-trip through a JSON file.
"""

import dataclasses
import enum
import json
import os

from dapter_tf.data import DataConfig, ImageSet
from dapter_tf.errors import DapterError
from dapter_tf.tasks import Task

# The paper's visual study (§7.3.2) asked volunteers about these four CelebA attributes.
PAPER_VISUAL_ATTRIBUTES = ("Arched_Eyebrows", "Bangs", "Chubby", "Eyeglasses")
# The auto-recognition attackers: §5.1's transfer learning, and a classifier trained from scratch.
LABELLING_ATTACKERS = ("finetuned", "scratch")


class AttackType(enum.Enum):
    """The three attacks of §5."""

    AUTO_RECOGNITION = "auto_recognition"  # §5.1: a fine-tuned classifier labels converted images.
    VISUAL_RECOGNITION = "visual_recognition"  # §5.2: people label converted images.
    RECONSTRUCTION = "reconstruction"  # §5.3: a generator restores the originals.


@dataclasses.dataclass(frozen=True)
class AttackInputData:
    """What every attack starts from.

    Attributes:
        task: The DLIS task: its target label is the service, its other labels what an attacker wants.
        train: The adversary's own labelled images. For reconstruction they are also the converter's
            own training images: §5.3 lets the adversary use them, its strongest setting.
        test: Held-out images every attack is measured on.
        converter_path: The public converter's ``.keras`` file.
        target_path: The target's ``.keras`` file (auto-recognition reports its accuracy too).
        data: Where the images came from, recorded in the attack workdirs.
    """

    task: Task
    train: ImageSet
    test: ImageSet
    converter_path: str
    target_path: str = ""
    data: DataConfig = DataConfig()

    def validate(self) -> None:
        """Raises DapterError on a missing model file, empty or mismatched images, or missing labels."""
        if not os.path.isfile(self.converter_path):
            raise DapterError(f"converter file not found: {self.converter_path}")
        if self.target_path and not os.path.isfile(self.target_path):
            raise DapterError(f"target model file not found: {self.target_path}")
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
        model: Architecture of classifiers trained here (``classifier.TARGET_BUILDERS``); §7.3.1
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
        from dapter_tf import classifier

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
        classifier.check_target_name(self.model)
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
        architecture: The attacker (``attacks.models.RECONSTRUCTORS``): ``symmetric``, the paper's
            generator mirroring the converter, or ``unet``, a much stronger four-level U-Net.
        filters: The attacker's channels: for ``symmetric`` at full, half and quarter resolution
            (empty: the converter's own, so the generator mirrors it as §5.3 says); for ``unet``
            one per level (empty: ``attacks.models.DEFAULT_UNET_FILTERS``).
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
        from dapter_tf.attacks import models

        models.check_reconstructor(self.architecture)
        if self.filters and min(self.filters) < 1:
            raise DapterError(f"filters must be positive channel counts, got {self.filters}")
        if self.filters and self.architecture == "symmetric" and len(self.filters) != 3:
            raise DapterError(f"filters must be three positive channel counts, got {self.filters}")
        if self.filters and self.architecture == "unet" and len(self.filters) < 2:
            raise DapterError(f"a U-Net attacker needs two or more channel counts, got {self.filters}")
        _check_positive(self, "epochs", "batch_size", "grid_images")
        if self.train_images < 0:
            raise DapterError(f"train_images must be >= 0, got {self.train_images}")
        if not self.learning_rate > 0:
            raise DapterError(f"learning_rate must be > 0, got {self.learning_rate}")
        multiple = models.side_multiple(self.architecture, self.attacker_filters())
        if any(side % multiple for side in task.image_size):
            raise DapterError(
                f"the {self.architecture} attacker needs image sides that are multiples of {multiple}, "
                f"task {task.name!r} has {task.image_size[0]}x{task.image_size[1]}"
            )

    def attacker_filters(self) -> tuple:
        """``filters``, or the default U-Net's for ``unet`` without them (``symmetric`` defaults to the converter's)."""
        from dapter_tf.attacks import models

        if self.architecture == "unet" and not self.filters:
            return models.DEFAULT_UNET_FILTERS
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


@dataclasses.dataclass(frozen=True)
class AutoRecognitionResult:
    """One attack label's auto-recognition attack (Fig. 11; with binary labels, Fig. 12).

    Accuracies are fractions, losses percentage points (original minus converted).

    Attributes:
        attack_label: The label attacked.
        target_accuracy_original: The target on original held-out images.
        target_accuracy_converted: The target on their converted versions.
        target_loss_points: The target task's accuracy loss.
        attack_accuracy_original: The adversary's classifier on original images (Acc_vanilla).
        attack_accuracy_converted_no_finetune: The same classifier, not fine-tuned, on converted images.
        attack_accuracy_converted: The fine-tuned classifier on converted images: the attack.
        attack_loss_points: The attack task's accuracy loss.
        loss_ratio: attack loss over target loss (``None`` where the target lost nothing).
        majority_accuracy: Always answering the attack label's most frequent class.
        images_train: Images the adversary fine-tuned on.
        images_test: Held-out images measured.
        p_co: With two binary labels: how often target and attack labels agree (§7.3.1).
        acc_ideal: |P_co - 0.5| + 0.5 (Eq. 5).
        acc_ideal_hat: Acc_ideal x Acc_vanilla (Eq. 6): the paper's ideal attack accuracy.
        acc_best_given_target: The best any attacker can do knowing only the target label: the
            attack's majority class within each target class (at least ``acc_ideal``). Any labels.
        attacker: ``finetuned`` (§5.1) or ``scratch`` (trained on converted images only; its
            "without fine-tuning" figure is the pre-trained classifier's, as for ``finetuned``).
    """

    attack_label: str
    target_accuracy_original: float
    target_accuracy_converted: float
    target_loss_points: float
    attack_accuracy_original: float
    attack_accuracy_converted_no_finetune: float
    attack_accuracy_converted: float
    attack_loss_points: float
    loss_ratio: float | None
    majority_accuracy: float
    images_train: int
    images_test: int
    p_co: float | None = None
    acc_ideal: float | None = None
    acc_ideal_hat: float | None = None
    acc_best_given_target: float | None = None
    attack_type: str = AttackType.AUTO_RECOGNITION.value
    attacker: str = "finetuned"

    def summary(self) -> str:
        ratio = "n/a (target lost nothing)" if self.loss_ratio is None else f"{self.loss_ratio:.1f}x"
        by = "" if self.attacker == "finetuned" else f" ({self.attacker} attacker)"
        line = (
            f"auto-recognition of {self.attack_label}{by}: target {self.target_accuracy_original:.4f} -> "
            f"{self.target_accuracy_converted:.4f} ({self.target_loss_points:+.2f} points lost); attack "
            f"{self.attack_accuracy_original:.4f} -> {self.attack_accuracy_converted:.4f} "
            f"({self.attack_loss_points:+.2f} points lost; {self.attack_accuracy_converted_no_finetune:.4f} "
            f"without fine-tuning); loss ratio {ratio}; majority class {self.majority_accuracy:.4f}"
        )
        if self.acc_best_given_target is not None:
            line += f"; best given the target label {self.acc_best_given_target:.4f}"
        if self.acc_ideal is not None:
            line += f"; P_co {self.p_co:.3f}, Acc_ideal {self.acc_ideal:.3f}"
            line += f", Acc_ideal x Acc_vanilla {self.acc_ideal_hat:.4f}"
        return line


@dataclasses.dataclass(frozen=True)
class ReconstructionResult:
    """The reconstruction attack on held-out images (Fig. 9(b), Fig. 13).

    Attributes:
        ssim: Mean SSIM (scikit-image) of reconstructed against original images.
        psnr: PSNR (dB) of reconstructed against original images, from their mean squared error.
        ssim_converted: Mean SSIM of the converted images themselves against the originals.
        psnr_converted: PSNR of the converted images against the originals.
        ssim_mean_image: Mean SSIM of the training images' mean image against every original:
            what a "reconstruction" knowing nothing of the image scores (aligned faces score high).
        psnr_mean_image: PSNR of that mean image against the originals.
        images_train: (converted, original) pairs the reconstructor trained on.
        images_test: Held-out images measured.
        epochs: Training epochs.
        grid: The Fig. 13-style PNG (original, converted, reconstructed rows).
        lambda_: The converter's lambda, where its workdir records it.
        attacker: The reconstruction attacker (``attacks.models.RECONSTRUCTORS``).
        parameters: Its number of parameters.
    """

    ssim: float
    psnr: float
    ssim_converted: float
    psnr_converted: float
    images_train: int
    images_test: int
    epochs: int
    grid: str
    lambda_: float | None = None
    ssim_mean_image: float | None = None
    psnr_mean_image: float | None = None
    attack_type: str = AttackType.RECONSTRUCTION.value
    attacker: str = "symmetric"
    parameters: int | None = None

    def summary(self) -> str:
        at = "" if self.lambda_ is None else f" at lambda {self.lambda_:g}"
        by = "" if self.attacker == "symmetric" else f" ({self.attacker} attacker)"
        line = (
            f"reconstruction{at}{by}: SSIM {self.ssim:.4f}, PSNR {self.psnr:.2f} dB on {self.images_test} held-out "
            f"images (converted images themselves: SSIM {self.ssim_converted:.4f}, PSNR {self.psnr_converted:.2f} dB"
        )
        if self.ssim_mean_image is not None:
            line += f"; the mean training image: SSIM {self.ssim_mean_image:.4f}, PSNR {self.psnr_mean_image:.2f} dB"
        return line + ")"


@dataclasses.dataclass(frozen=True)
class VisualResult:
    """The labelling-study kit written for the visual-recognition attack.

    Attributes:
        page: The self-contained HTML page people label on.
        answer_key: The CSV of true answers, kept apart from the page.
        attributes: The attributes asked about.
        items: Images on the page.
    """

    page: str
    answer_key: str
    attributes: tuple
    items: int
    attack_type: str = AttackType.VISUAL_RECOGNITION.value

    def summary(self) -> str:
        return (
            f"visual recognition: {self.items} converted images about {', '.join(self.attributes)} on {self.page}; "
            f"answer key in {self.answer_key} (score with dapter-score-labelling)"
        )


_RESULT_TYPES = {
    AttackType.AUTO_RECOGNITION.value: AutoRecognitionResult,
    AttackType.RECONSTRUCTION.value: ReconstructionResult,
    AttackType.VISUAL_RECOGNITION.value: VisualResult,
}


@dataclasses.dataclass(frozen=True)
class AttackResults:
    """Every attack run against one converter.

    Attributes:
        task: The task's name.
        converter_path: The converter attacked.
        target_path: Its target.
        results: One result per attack (and per attack label).
    """

    task: str
    converter_path: str
    target_path: str
    results: tuple

    def summary(self) -> str:
        """One line per result, under a line naming the converter."""
        head = f"attacks on {self.converter_path} (task {self.task}, target {self.target_path or 'n/a'}):"
        return "\n".join([head] + [f"  {r.summary()}" for r in self.results])

    def save(self, path: str) -> None:
        """Writes the results as JSON, atomically."""
        from dapter_tf.train import write_json

        write_json(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: str) -> "AttackResults":
        """Reads results written by ``save``.

        Raises:
            DapterError: if the file is missing or is not attack results.
        """
        if not os.path.isfile(path):
            raise DapterError(f"attack results not found: {path}")
        try:
            with open(path) as f:
                raw = json.load(f)
            results = []
            for r in raw["results"]:
                kind = _RESULT_TYPES[r["attack_type"]]
                if kind is VisualResult:
                    r = {**r, "attributes": tuple(r["attributes"])}
                results.append(kind(**r))
            return cls(raw["task"], raw["converter_path"], raw["target_path"], tuple(results))
        except (ValueError, KeyError, TypeError) as e:
            raise DapterError(f"{path}: not attack results ({type(e).__name__}: {e})") from None

"""The record of the attacks of §5 on one converter: one typed result per attack, and their JSON file.

Written by ``dapter_tf.attacks``; read by the release, the reports and the reproduction report,
which need none of the attack code.
"""

import dataclasses
import enum

from dapter_tf.records.files import read_record, write_json


class AttackType(enum.Enum):
    """The three attacks of §5."""

    AUTO_RECOGNITION = "auto_recognition"  # §5.1: a fine-tuned classifier labels converted images.
    VISUAL_RECOGNITION = "visual_recognition"  # §5.2: people label converted images.
    RECONSTRUCTION = "reconstruction"  # §5.3: a generator restores the originals.


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
        write_json(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: str) -> "AttackResults":
        """Reads results written by ``save``.

        Raises:
            DapterError: if the file is missing or is not attack results.
        """

        def parse(raw):
            results = []
            for r in raw["results"]:
                kind = _RESULT_TYPES[r["attack_type"]]
                if kind is VisualResult:
                    r = {**r, "attributes": tuple(r["attributes"])}
                results.append(kind(**r))
            return cls(raw["task"], raw["converter_path"], raw["target_path"], tuple(results))

        return read_record(path, "attack results", parse)

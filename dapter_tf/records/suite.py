"""The record of an attack suite: every attacker's figures beside its baseline, the criteria and the verdicts.

Written by ``dapter_tf.attacks.suite``; read by the release (the card's claims), the protection
frontier and the reproduction report, which need none of the attack code.
"""

import dataclasses

from dapter_tf import metrics
from dapter_tf.errors import DapterError
from dapter_tf.records.attacks import AutoRecognitionResult, ReconstructionResult
from dapter_tf.records.files import read_record, write_json


@dataclasses.dataclass(frozen=True)
class SecurityCriteria:
    """What a converter must reach for the suite to call it protective.

    Attributes:
        max_drop_points: Usability: the target may lose at most this many points (§7.1: 3).
        max_ssim: Reconstruction: the strongest attacker's SSIM may be at most this (the paper's
            0.2); ``None``: no absolute bar.
        max_ssim_over_mean_image: Reconstruction: the strongest attacker's SSIM may exceed the mean
            training image's by at most this (on aligned faces the mean image alone scores about
            0.3, so an absolute 0.2 cannot be met); ``None``: no such bar.
        max_label_gap_points: Labelling: every attack label's best attacker may beat the bound of
            knowing only the target label by at most this many points; ``None``: no bar.

    A criterion without a bar is reported and holds.
    """

    max_drop_points: float = 3.0
    max_ssim: float | None = 0.2
    max_ssim_over_mean_image: float | None = None
    max_label_gap_points: float | None = 5.0

    def validate(self) -> "SecurityCriteria":
        if not self.max_drop_points > 0:
            raise DapterError(f"max_drop_points must be > 0, got {self.max_drop_points}")
        if self.max_ssim is not None and not -1 <= self.max_ssim <= 1:
            raise DapterError(f"max_ssim must lie in [-1, 1] (SSIM's range), got {self.max_ssim}")
        if self.max_ssim_over_mean_image is not None and not 0 <= self.max_ssim_over_mean_image <= 2:
            raise DapterError(f"max_ssim_over_mean_image must lie in [0, 2], got {self.max_ssim_over_mean_image}")
        if self.max_label_gap_points is not None and not 0 <= self.max_label_gap_points <= 100:
            raise DapterError(f"max_label_gap_points must lie in [0, 100], got {self.max_label_gap_points}")
        return self


# The attacker who trains nothing and looks at the converted image as it is sent.
AS_SENT = "the converted image as sent"


@dataclasses.dataclass(frozen=True)
class StrongestReconstruction:
    """The best reconstruction of the suite: which attacker, its SSIM and PSNR, and the mean image's."""

    attacker: str
    ssim: float
    psnr: float
    ssim_mean_image: float
    psnr_mean_image: float


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One criterion of the suite: whether it holds (``None``: not measured, ``detail`` says why), and why."""

    name: str
    holds: bool | None
    detail: str


@dataclasses.dataclass(frozen=True)
class SuiteResults:
    """Every attacker of the suite against one converter, with the baselines and the verdicts.

    Attributes:
        task: The task's name.
        converter_path: The converter attacked.
        target_path: Its target (empty: usability not measured).
        images_train: Converted training images the attackers trained on.
        images_test: Held-out images everything is measured on.
        target_accuracy_original: The target on original held-out images (``None`` without a target).
        target_accuracy_converted: The target on their converted versions.
        accuracy_drop_points: The target's loss, in points.
        accuracy_drop_error_points: Its standard error on these images (``metrics.paired_drop``).
        entropy_original: Mean image entropy of the originals (§4.1, bits).
        entropy_converted: Mean image entropy of the converted images.
        reconstruction: One result per reconstruction attacker.
        labelling: One result per labelling attacker and attack label.
        criteria: The thresholds of the verdicts.
        seconds: How long the suite took (attackers that resumed count only what was left).
    """

    task: str
    converter_path: str
    target_path: str
    images_train: int
    images_test: int
    target_accuracy_original: float | None
    target_accuracy_converted: float | None
    accuracy_drop_points: float | None
    accuracy_drop_error_points: float | None
    entropy_original: float
    entropy_converted: float
    reconstruction: tuple
    labelling: tuple
    criteria: SecurityCriteria
    seconds: float = 0.0

    @property
    def strongest_reconstruction(self) -> StrongestReconstruction | None:
        """The reconstruction with the highest SSIM, counting the converted image as sent among the attackers.

        Looking at the converted image needs no training; a converter close to the identity must
        not pass because a trained attacker happened to learn less than that.
        """
        if not self.reconstruction:
            return None
        first = self.reconstruction[0]
        candidates = [(r.attacker, r.ssim, r.psnr) for r in self.reconstruction]
        candidates.append((AS_SENT, first.ssim_converted, first.psnr_converted))
        attacker, ssim, psnr = max(candidates, key=lambda c: c[1])
        return StrongestReconstruction(attacker, ssim, psnr, first.ssim_mean_image, first.psnr_mean_image)

    @property
    def max_ssim(self) -> float | None:
        best = self.strongest_reconstruction
        return None if best is None else best.ssim

    @property
    def ssim_mean_image(self) -> float | None:
        return None if not self.reconstruction else self.reconstruction[0].ssim_mean_image

    def label_gaps(self) -> dict:
        """Attack label -> (the strongest attacker's result, its gap over the target-label bound, points)."""
        gaps = {}
        for result in self.labelling:
            gap = 100.0 * (result.attack_accuracy_converted - result.acc_best_given_target)
            if result.attack_label not in gaps or gap > gaps[result.attack_label][1]:
                gaps[result.attack_label] = (result, gap)
        return gaps

    @property
    def max_label_gap_points(self) -> float | None:
        gaps = self.label_gaps()
        return max(gap for _, gap in gaps.values()) if gaps else None

    def verdicts(self) -> tuple:
        """Usability, reconstruction and labelling, each judged by ``criteria``."""
        c = self.criteria
        verdicts = []
        if self.accuracy_drop_points is None:
            verdicts.append(Verdict("usability", None, "no target"))
        else:
            holds = self.accuracy_drop_points <= c.max_drop_points
            verdicts.append(
                Verdict(
                    "usability",
                    holds,
                    f"target loses {self.accuracy_drop_points:+.2f} ± {self.accuracy_drop_error_points:.2f} points "
                    f"on {self.images_test} images ({'at most' if holds else 'more than'} {c.max_drop_points:g})",
                )
            )
        best = self.strongest_reconstruction
        if best is None:
            verdicts.append(Verdict("reconstruction", None, "no reconstruction attacker"))
        else:
            bars, missed = [], []
            if c.max_ssim is not None:
                bars.append(f"at most {c.max_ssim:g}")
                if best.ssim > c.max_ssim:
                    missed.append(f"{best.ssim - c.max_ssim:.3f} above {c.max_ssim:g}")
            if c.max_ssim_over_mean_image is not None:
                bar = best.ssim_mean_image + c.max_ssim_over_mean_image
                bars.append(f"at most the mean image's {best.ssim_mean_image:.3f} + {c.max_ssim_over_mean_image:g}")
                if best.ssim > bar:
                    missed.append(f"{best.ssim - bar:.3f} above the mean image + {c.max_ssim_over_mean_image:g}")
            detail = (
                f"strongest: {best.attacker}: SSIM {best.ssim:.3f} (PSNR {best.psnr:.2f} dB), mean "
                f"training image {best.ssim_mean_image:.3f} (PSNR {best.psnr_mean_image:.2f} dB); bar: "
                f"{' and '.join(bars) or 'none'}"
            )
            verdicts.append(
                Verdict("reconstruction", not missed, detail + (f"; missed by {', '.join(missed)}" if missed else ""))
            )
        gaps = self.label_gaps()
        if not gaps:
            verdicts.append(Verdict("labelling", None, "the task has no attack label"))
        else:
            parts, holds = [], True
            for label, (result, gap) in sorted(gaps.items()):
                holds &= c.max_label_gap_points is None or gap <= c.max_label_gap_points
                error = metrics.binomial_error_points(result.attack_accuracy_converted, result.images_test)
                parts.append(
                    f"{label}: {result.attacker} attacker {result.attack_accuracy_converted:.4f} ± {error / 100:.4f} "
                    f"against {result.acc_best_given_target:.4f} knowing only the target label ({gap:+.2f} points)"
                )
            bar = "none" if c.max_label_gap_points is None else f"at most +{c.max_label_gap_points:g} points"
            verdicts.append(Verdict("labelling", holds, "; ".join(parts) + f"; bar: {bar}"))
        return tuple(verdicts)

    @property
    def holds(self) -> bool:
        """Whether every measured criterion holds (unmeasured ones do not count against it)."""
        return all(v.holds is not False for v in self.verdicts())

    def summary(self) -> str:
        """One line per attacker, then one per verdict."""
        lines = [f"attack suite on {self.converter_path} (task {self.task}, {self.images_test} held-out images):"]
        if self.target_accuracy_original is not None:
            lines.append(
                f"  target: {self.target_accuracy_original:.4f} -> {self.target_accuracy_converted:.4f} "
                f"({self.accuracy_drop_points:+.2f} ± {self.accuracy_drop_error_points:.2f} points lost)"
            )
        lines.append(
            f"  entropy: {self.entropy_original:.2f} -> {self.entropy_converted:.2f} bits "
            f"({100 * self.entropy_converted / self.entropy_original:.1f} %)"
        )
        lines += [f"  {r.summary()}" for r in self.reconstruction + self.labelling]
        for v in self.verdicts():
            state = {True: "holds", False: "MISSED", None: "not measured"}[v.holds]
            lines.append(f"  {v.name}: {state}: {v.detail}")
        return "\n".join(lines)

    def save(self, path: str) -> None:
        """Writes the results (and, for readers of the file, the verdicts) as JSON, atomically."""
        record = dataclasses.asdict(self)
        record["verdicts"] = [dataclasses.asdict(v) for v in self.verdicts()]
        record["max_ssim"] = self.max_ssim
        record["max_label_gap_points"] = self.max_label_gap_points
        write_json(path, record)

    @classmethod
    def load(cls, path: str) -> "SuiteResults":
        """Reads results written by ``save``.

        Raises:
            DapterError: if the file is missing or is not suite results.
        """

        def parse(raw):
            for derived in ("verdicts", "max_ssim", "max_label_gap_points"):
                raw.pop(derived, None)
            raw["reconstruction"] = tuple(ReconstructionResult(**r) for r in raw["reconstruction"])
            raw["labelling"] = tuple(AutoRecognitionResult(**r) for r in raw["labelling"])
            raw["criteria"] = SecurityCriteria(**raw["criteria"])
            return cls(**raw)

        return read_record(path, "attack suite results", parse)

"""The model card's claims: each a measured figure with the rule it must keep, parsed back and re-measured by verify."""

import dataclasses
import math
import re

import keras
import numpy as np

from dapter_tf import DapterError, evaluate, metrics
from dapter_tf.models import output_step_of
from export.tflite.modes import output_step_after_interpreter
from export.tflite.parity import check_parity

MANIFEST = "manifest.json"
MODEL_CARD = "model_card.md"
CONVERTER = "converter.keras"
# The target's input contract (``models.served.TargetContract``), in a bundle whose target is not our zoo's.
TARGET_CONTRACT = "target_contract.json"
CLAIMS_HEADING = "## Claims"
TFLITE_NAME = re.compile(r"^converter_(?P<mode>[a-z0-9_]+)\.tflite$")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One machine-checkable line of a model card.

    Attributes:
        name: Identifier, e.g. ``entropy_converted`` or ``converter_int8.tflite:mean_pixel_diff``.
        description: What is measured, for people.
        value: The claimed number.
        relation: ``within`` (|measured - value| <= tolerance), ``within%`` (relative tolerance, in
            percent), ``at_most`` (measured <= value + tolerance) or ``exactly``.
        tolerance: The slack of the relation (0 for ``exactly``).
    """

    name: str
    description: str
    value: float
    relation: str
    tolerance: float = 0.0

    def holds(self, measured: float) -> bool:
        """Whether ``measured`` (a re-measurement) bears the claim out."""
        if self.relation == "exactly":
            return measured == self.value
        if self.relation == "at_most":
            return measured <= self.value + self.tolerance
        slack = self.tolerance * abs(self.value) / 100 if self.relation == "within%" else self.tolerance
        return abs(measured - self.value) <= slack

    def holds_if(self) -> str:
        """The relation as the card writes it (parsed back by ``parse_claims``)."""
        if self.relation == "exactly":
            return "exactly"
        if self.relation == "at_most":
            return f"at most +{self.tolerance:g}" if self.tolerance else "at most"
        return f"within ±{self.tolerance:g}{'%' if self.relation == 'within%' else ''}"


_HOLDS_IF = re.compile(r"^(?:(exactly)|at most(?: \+(?P<slack>[0-9.]+))?|within ±(?P<tol>[0-9.]+)(?P<pct>%)?)$")


def format_value(value: float) -> str:
    """A claim's value as the card writes it: whole numbers exactly, others to 6 significant digits.

    A parameter count is claimed exactly, so it must survive the card: 1,237,891 written as 1.23789e+06
    read back as 1,237,890 and failed its own verify.
    """
    return str(int(value)) if math.isfinite(value) and value == int(value) else f"{value:.6g}"


def _parse_claim_row(line: str) -> Claim:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) != 4:
        raise DapterError(f"{MODEL_CARD}: a claims row needs 4 cells (claim | what | value | holds if): {line!r}")
    name, description, value, holds_if = cells
    match = _HOLDS_IF.match(holds_if)
    try:
        number = float(value)
    except ValueError:
        raise DapterError(f"{MODEL_CARD}: claim {name.strip('`')} has no number as its value: {value!r}") from None
    if not match:
        raise DapterError(f"{MODEL_CARD}: claim {name.strip('`')} has an unknown relation {holds_if!r}")
    if match.group(1):
        relation, tolerance = "exactly", 0.0
    elif match.group("tol") is not None:
        relation, tolerance = ("within%" if match.group("pct") else "within"), float(match.group("tol"))
    else:
        relation, tolerance = "at_most", float(match.group("slack") or 0)
    return Claim(name.strip("`"), description, number, relation, tolerance)


def parse_claims(card_text: str) -> list[Claim]:
    """The claims of a model card: the rows of the table under ``## Claims``.

    Raises:
        DapterError: if the card has no claims table or a row cannot be read.
    """
    lines = card_text.splitlines()
    try:
        start = lines.index(CLAIMS_HEADING)
    except ValueError:
        raise DapterError(f"{MODEL_CARD} has no '{CLAIMS_HEADING}' section") from None
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not line.startswith("| claim |") and not set(line) <= set("|-: "):
            rows.append(_parse_claim_row(line))
    if not rows:
        raise DapterError(f"{MODEL_CARD}: the '{CLAIMS_HEADING}' section has no claims")
    return rows


def _on_grid_fraction_off(pixels: np.ndarray, step: int) -> float:
    """Fraction of pixels off the output grid 128 + k * step (255 is the grid's clipped top)."""
    on = ((pixels.astype(np.int32) - 128) % step == 0) | (pixels == 255)
    return float(1.0 - on.mean())


def measure_claims(
    converter: keras.Model,
    tflite_files: dict,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    target: keras.Model | None = None,
    converted: np.ndarray | None = None,
) -> dict:
    """Measures every figure a card claims, on real held-out ``images``.

    Args:
        converter: The Keras converter.
        tflite_files: ``{file name: bytes}`` of ``converter_<mode>.tflite`` files.
        images: uint8 N x H x W x 3 held-out images of the task.
        labels: Their target labels (with ``target``).
        target: The target, when the measurer has it (the provider at release; a verifier may not).
        converted: ``images`` through the Keras converter, where the caller has them already.

    Returns:
        ``{claim name: measured value}``; the accuracy figures only with a target.
    """
    if converted is None:
        converted = evaluate.convert_images(converter, images)
    step = output_step_of(converter)
    entropy_original = float(np.mean(metrics.image_entropy(images)))
    entropy_converted = float(np.mean(metrics.image_entropy(converted)))
    measured = {
        "converter_parameters": float(converter.count_params()),
        "output_step": float(step),
        "pixels_off_grid": _on_grid_fraction_off(converted, step),
        "entropy_converted": entropy_converted,
        "entropy_ratio": entropy_converted / entropy_original,
        "bandwidth_saving": metrics.png_bytes(images) / metrics.png_bytes(converted),
    }
    if target is not None:
        right_original = evaluate.target_correct(target, images, labels)
        right_converted = evaluate.target_correct(target, converted, labels)
        drop = metrics.paired_drop_interval(right_original, right_converted)
        measured["accuracy_converted"] = float(right_converted.mean())
        measured["accuracy_drop_points"] = drop["drop_points"]
        # Reported beside the figure on the card; the claim itself compares the point figure.
        measured["accuracy_drop_error_points"] = drop["error_points"]
    for name, model_bytes in tflite_files.items():
        mode = TFLITE_NAME.match(name).group("mode")
        after = output_step_after_interpreter(mode, step)
        parity = check_parity(model_bytes, converted, target, images, labels, after)
        measured[f"{name}:max_pixel_diff"] = float(parity["max_pixel_diff"])
        measured[f"{name}:mean_pixel_diff"] = parity["mean_pixel_diff"]
        measured[f"{name}:entropy_change"] = abs(parity["entropy_tflite"] - parity["entropy_keras"])
        if target is not None:
            # The claim is the parity gate's test (export.tflite.parity.accuracy_drop_exceeds): the low
            # end of the paired drop's 95 % interval; the point figure and its error go in the table.
            measured[f"{name}:accuracy_drop_vs_keras"] = parity["accuracy_drop_low_points"]
            measured[f"{name}:accuracy_drop_vs_keras_points"] = parity["accuracy_drop_points"]
            measured[f"{name}:accuracy_drop_vs_keras_error"] = parity["accuracy_drop_error_points"]
    return measured


@dataclasses.dataclass(frozen=True)
class ClaimTolerances:
    """How far a verifier's re-measurement on its own images may fall from the card's figure.

    The verifier's images are other images of the same task, so the card's means carry sampling
    noise; these defaults are several standard errors at a few hundred images.
    """

    entropy_bits: float = 0.25
    entropy_ratio: float = 0.02
    bandwidth_percent: float = 10.0
    accuracy_drop_points: float = 2.0
    ssim: float = 0.05
    label_gap_points: float = 3.0

    def validate(self) -> "ClaimTolerances":
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) >= 0:
                raise DapterError(f"claim tolerance {field.name} must be >= 0, got {getattr(self, field.name)}")
        return self


def make_claims(measured: dict, export: dict, tolerances: ClaimTolerances = ClaimTolerances()) -> list[Claim]:
    """The card's claims from release-time measurements and each file's parity tolerance."""
    claims = [
        Claim("converter_parameters", "parameters of converter.keras", measured["converter_parameters"], "exactly"),
        Claim("output_step", "output grid: pixels sent are 128 + k * step", measured["output_step"], "exactly"),
        Claim("pixels_off_grid", "fraction of converted pixels off that grid", 0.0, "at_most"),
        Claim(
            "entropy_converted",
            "mean image entropy of converted images (§4.1), bits",
            round(measured["entropy_converted"], 4),
            "within",
            tolerances.entropy_bits,
        ),
        Claim(
            "entropy_ratio",
            "mean entropy, converted / original",
            round(measured["entropy_ratio"], 4),
            "within",
            tolerances.entropy_ratio,
        ),
        Claim(
            "bandwidth_saving",
            "PNG bytes, original / converted (§7.4)",
            round(measured["bandwidth_saving"], 4),
            "within%",
            tolerances.bandwidth_percent,
        ),
    ]
    if "accuracy_drop_points" in measured:
        claims.append(
            Claim(
                "accuracy_drop_points",
                "target accuracy lost by converting, points (needs the target to re-measure)",
                round(measured["accuracy_drop_points"], 3),
                "at_most",
                tolerances.accuracy_drop_points,
            )
        )
    step = measured["output_step"]
    for name in sorted(n for n in measured_files(measured)):
        mode = TFLITE_NAME.match(name).group("mode")
        tolerance = export["files"][mode]["tolerance"]
        claims += [
            Claim(
                f"{name}:max_pixel_diff",
                "largest abs(TFLite - Keras) pixel difference, levels",
                tolerance["max_pixel_diff_steps"] * step,
                "at_most",
            ),
            Claim(
                f"{name}:mean_pixel_diff",
                "mean abs(TFLite - Keras) pixel difference, levels",
                tolerance["mean_pixel_diff"],
                "at_most",
            ),
            Claim(
                f"{name}:entropy_change",
                "abs(mean entropy, TFLite - Keras), bits",
                tolerance["entropy_change_bits"],
                "at_most",
            ),
        ]
        if f"{name}:accuracy_drop_vs_keras" in measured:
            claims.append(
                Claim(
                    f"{name}:accuracy_drop_vs_keras",
                    "target accuracy, Keras-converted minus TFLite-converted: low end of its 95 % interval, "
                    "points (needs the target)",
                    tolerance["accuracy_drop_points"],
                    "at_most",
                )
            )
    return claims


ATTACK_SSIM_CLAIM = "attack_max_ssim"


LABEL_GAP_CLAIM = "attack_label_gap_points"


def suite_claims(suite, tolerances: ClaimTolerances = ClaimTolerances()) -> list[Claim]:
    """The card's claims from an attack suite's results (``dapter_tf.attacks.SuiteResults``).

    ``attack_max_ssim``: the strongest reconstruction attacker's SSIM, which ``dapter-verify
    --attacks`` re-measures with an attacker of its own; ``attack_label_gap_points.<label>``: each
    attack label's best labelling attacker over the bound of knowing only the target label, which
    only a full suite run re-measures (it needs the attack labels and hours).
    """
    claims = []
    if suite.max_ssim is not None:
        best = suite.strongest_reconstruction
        claims.append(
            Claim(
                ATTACK_SSIM_CLAIM,
                f"mean SSIM on held-out images of the strongest reconstruction ({best.attacker}), the "
                f"attackers trained on the converter's own training images",
                round(best.ssim, 4),
                "at_most",
                tolerances.ssim,
            )
        )
    for label, (result, gap) in sorted(suite.label_gaps().items()):
        claims.append(
            Claim(
                f"{LABEL_GAP_CLAIM}.{label}",
                f"best labelling attacker ({result.attacker}) of {label} minus knowing only the target label, points",
                round(gap, 2),
                "at_most",
                tolerances.label_gap_points,
            )
        )
    return claims


# The floor of a verification without a target: the card's other claims are means over images
# (entropy, PNG bytes, pixel differences, SSIM). The entropy claim allows +-0.25 bits; a converted
# image's entropy spreads by about 0.5 bits (the class code of results/protection/cifar10/
# model_partitioning_baseline.md on the embedded sample's 500 test images; a photo's by 1.6), so two
# standard errors of the mean, 2 * 0.5 / sqrt(n) bits, fit within it from n = 16; 100 images leave
# room for a converter whose outputs spread up to 1.25 bits.
MIN_IMAGES = 100


def is_accuracy_claim(name: str) -> bool:
    """Whether claim ``name`` is an accuracy claim (re-measured only with a target)."""
    return name == "accuracy_drop_points" or name.endswith(":accuracy_drop_vs_keras")


def accuracy_slack(claim: Claim) -> float:
    """The points an accuracy claim's figure may move before the claim fails.

    ``accuracy_drop_points`` allows its tolerance over the release's own figure; a file's
    ``accuracy_drop_vs_keras`` bounds the drop itself, and a sound file flips no prediction (0).
    """
    return claim.tolerance if claim.name == "accuracy_drop_points" else claim.value + claim.tolerance


def images_needed(claims: list[Claim], with_target: bool) -> tuple[int, str]:
    """The fewest held-out images on which ``claims`` mean anything, and why, in words.

    An accuracy figure moves by 100 / n points per flipped prediction, and one flipped prediction
    has a paired standard error of 100 / n points (``metrics.paired_drop``). A claim that allows
    ``t`` points is checked at all only where two such standard errors fit within ``t``:
    n >= 200 / t (100 images for the accuracy drop's 2 points, 400 for a float file's 0.5-point
    bound). This is a floor: the verifier prints each accuracy claim's standard error from the flips
    it saw, and whether the claim is decided at 95 % confidence. The other claims need ``MIN_IMAGES``;
    a claim that allows 0 points sets no floor (no sample resolves it exactly).

    Args:
        claims: The card's claims.
        with_target: Whether the accuracy claims are re-measured (the verifier has a target).

    Returns:
        ``(images, reason)``: the number and the claim that sets it.
    """
    needed = MIN_IMAGES
    reason = "the card's means of entropy, PNG bytes and pixel differences are not measured on fewer"
    for claim in claims:
        slack = accuracy_slack(claim) if with_target and is_accuracy_claim(claim.name) else 0.0
        if slack > 0 and math.ceil(200 / slack) > needed:
            needed = math.ceil(200 / slack)
            reason = (
                f"{claim.name} allows {slack:g} points, and two standard errors of one flipped prediction, "
                f"2 x 100 / n points, must fit within it"
            )
    return needed, reason


def check_images(claims: list[Claim], images: int, with_target: bool) -> None:
    """Refuses to verify ``claims`` on fewer held-out images than ``images_needed`` says they need.

    Raises:
        DapterError: one line with the number needed.
    """
    needed, reason = images_needed(claims, with_target)
    if images < needed:
        hint = " or leave out --target" if needed > MIN_IMAGES else ""
        raise DapterError(
            f"verifying this card's claims needs at least {needed} held-out images, got {images} ({reason}): "
            f"give more test images (--max_test=0 takes all){hint}"
        )


def accuracy_confidence(limit: float, drop: float, error: float, images: int) -> str:
    """An accuracy drop with its paired standard error and 95 % interval, and what it says of ``limit``.

    Args:
        limit: The most points the claim allows the drop.
        drop: The measured drop, points.
        error: Its paired standard error, points.
        images: How many images it was measured on.
    """
    low, high = drop - metrics.Z_95 * error, drop + metrics.Z_95 * error
    text = f"the drop is {drop:.2f} ± {error:.2f} points on {images} images (95 % interval {low:.2f} to {high:.2f})"
    if high <= limit:
        return f"{text}: at most {limit:g} at 95 % confidence"
    if low > limit:
        return f"{text}: more than {limit:g} at 95 % confidence"
    # The standard error falls as 1 / sqrt(n): the interval clears the limit from n (Z * error / margin)^2.
    margin = abs(limit - drop)
    decide = ""
    if margin:
        decide = f"; about {math.ceil(images * (metrics.Z_95 * error / margin) ** 2)} images would decide it"
    return f"{text}: undecided against {limit:g} at 95 % confidence{decide}"


def measured_files(measured: dict) -> set:
    """The ``.tflite`` file names that ``measure_claims`` measured."""
    return {key.split(":")[0] for key in measured if ":" in key}

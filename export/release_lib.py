"""The release bundle of a converter (§2, §3.2.2): files, SHA-256 manifest, model card, and its verification.

DAPter's promise to users rests on the converter being public: anyone can check that the app runs
the converter that was released and that it does what its card says. A bundle is a folder with

  converter.keras            the Keras converter (never the target: it stays with the provider)
  converter_<mode>.tflite    the exported files that passed their parity gate (export_tflite_lib)
  model_card.md              task, target name, lambda, data, and the measured figures; its
                             "Claims" table is machine-checkable
  manifest.json              SHA-256 and size of every other file

``verify_bundle`` checks every hash and re-measures every claim on images the verifier supplies
(with a target of its own, the accuracy claim too), and names each file or claim that does not hold.
Claims are measured by one function, ``measure_claims``, at release and at verification alike.
"""

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil

import keras
import numpy as np

from dapter_tf import DapterError, evaluate, metrics
from dapter_tf.model import output_step_of
from dapter_tf.train import write_json
from export import export_tflite_lib

MANIFEST = "manifest.json"
MODEL_CARD = "model_card.md"
CONVERTER = "converter.keras"
CLAIMS_HEADING = "## Claims"
_TFLITE_NAME = re.compile(r"^converter_(?P<mode>[a-z0-9_]+)\.tflite$")


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


def _format_value(value: float) -> str:
    return f"{value:.6g}" if value != int(value) or abs(value) >= 1e6 else str(int(value))


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
) -> dict:
    """Measures every figure a card claims, on real held-out ``images``.

    Args:
        converter: The Keras converter.
        tflite_files: ``{file name: bytes}`` of ``converter_<mode>.tflite`` files.
        images: uint8 N x H x W x 3 held-out images of the task.
        labels: Their target labels (with ``target``).
        target: The target, when the measurer has it (the provider at release; a verifier may not).

    Returns:
        ``{claim name: measured value}``; the accuracy figures only with a target.
    """
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
        mode = _TFLITE_NAME.match(name).group("mode")
        after = export_tflite_lib.output_step_after_interpreter(mode, step)
        parity = export_tflite_lib.check_parity(model_bytes, converted, target, images, labels, after)
        measured[f"{name}:max_pixel_diff"] = float(parity["max_pixel_diff"])
        measured[f"{name}:mean_pixel_diff"] = parity["mean_pixel_diff"]
        measured[f"{name}:entropy_change"] = abs(parity["entropy_tflite"] - parity["entropy_keras"])
        if target is not None:
            # The claim is the parity gate's test (export_tflite_lib.accuracy_drop_exceeds): the low
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
        mode = _TFLITE_NAME.match(name).group("mode")
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


def measured_files(measured: dict) -> set:
    """The ``.tflite`` file names that ``measure_claims`` measured."""
    return {key.split(":")[0] for key in measured if ":" in key}


def sha256(path: str) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(bundle_dir: str) -> dict:
    """Writes ``manifest.json``: SHA-256 and bytes of every file in the bundle but itself."""
    files = {}
    for name in sorted(os.listdir(bundle_dir)):
        path = os.path.join(bundle_dir, name)
        if name != MANIFEST and os.path.isfile(path):
            files[name] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
    manifest = {"format": "dapter-tf release bundle 1", "files": files}
    write_json(os.path.join(bundle_dir, MANIFEST), manifest)
    return manifest


@dataclasses.dataclass(frozen=True)
class ReleaseInfo:
    """What the card says about where the converter comes from (not measured)."""

    name: str
    task: str
    target_label: str
    target_name: str
    lambda_: float | None
    data: str
    image_size: tuple
    attacks: str = ""
    published_target: str = ""


def _suite_section(suite) -> list[str]:
    """The card's table of every attacker of the attack suite, with the baselines and the verdicts."""
    lines = [
        "## Attack suite (the security index)",
        "",
        "Every attacker was trained after the converter froze, on converted images of the converter's own "
        f"training images (the labellers on all {suite.images_train:,}; each reconstruction row says how many), "
        f"and measured on {suite.images_test:,} held-out images (`dapter-attack-suite`).",
        "",
        "| attacker | figure | value | baseline |",
        "|---|---|---|---|",
    ]
    for r in suite.reconstruction:
        lines.append(
            f"| reconstruction, {r.attacker} ({r.parameters or 0:,} parameters, {r.epochs} epochs on "
            f"{r.images_train:,} pairs) | SSIM / PSNR | "
            f"{r.ssim:.4f} / {r.psnr:.2f} dB | "
            f"mean training image {r.ssim_mean_image:.4f} / {r.psnr_mean_image:.2f} dB |"
        )
    for r in suite.labelling:
        lines.append(
            f"| labelling {r.attack_label}, {r.attacker} | accuracy on converted images | "
            f"{r.attack_accuracy_converted:.4f} (originals {r.attack_accuracy_original:.4f}) | "
            f"knowing only the target label {r.acc_best_given_target:.4f} |"
        )
    lines += ["", "| criterion | verdict | detail |", "|---|---|---|"]
    for v in suite.verdicts():
        lines.append(f"| {v.name} | {({True: 'holds', False: 'missed', None: 'not measured'})[v.holds]} | {v.detail} |")
    return lines + [""]


def render_card(info: ReleaseInfo, measured: dict, claims: list[Claim], export: dict, images: int, suite=None) -> str:
    """The model card's Markdown: description, measured figures, parity table, attacks, and the claims table."""
    height, width = info.image_size
    lines = [
        f"# Model card: {info.name}",
        "",
        "A DAPter converter (Wu et al., WWW 2021): it runs on the user's phone and removes from each image",
        "what the cloud service's target model does not need, so the service still works but the images",
        "are hard to label for other models. The target model is not part of this release.",
        "",
        "## Task",
        "",
        f"- Task: {info.task}; the target serves `{info.target_label}`",
        f"- Target: {info.target_name} (kept by the provider, not released)"
        + (f"; published beside this bundle as `{info.published_target}`" if info.published_target else ""),
        f"- λ (L_dap = λ L_eta + (1 - λ) L_acc): {info.lambda_ if info.lambda_ is not None else 'not recorded'}",
        f"- Images: {height}x{width} RGB, uint8; converted pixels on the grid 128 + k * {int(measured['output_step'])}",
        f"- Measured on: {images} held-out images of {info.data}",
        f"- Released: {datetime.date.today().isoformat()} with dapter-tf",
        "",
        "## Measured",
        "",
        "| figure | value |",
        "|---|---|",
        f"| mean entropy, converted (bits) | {measured['entropy_converted']:.3f} |",
        f"| entropy, converted / original | {measured['entropy_ratio']:.3f} |",
        f"| PNG bandwidth saving (original / converted bytes) | {measured['bandwidth_saving']:.2f}x |",
    ]
    if "accuracy_drop_points" in measured:
        lines.append(f"| target accuracy on converted images | {measured['accuracy_converted']:.4f} |")
        lines.append(
            "| target accuracy lost by converting (points, ± paired standard error) | "
            f"{measured['accuracy_drop_points']:.2f} ± {measured['accuracy_drop_error_points']:.2f} |"
        )
    lines += [
        "",
        "## TFLite files and parity with the Keras converter",
        "",
        "| file | bytes | max pixel diff | mean pixel diff | entropy change (bits) "
        "| target accuracy drop vs Keras (points, ± standard error) |",
        "|---|---|---|---|---|---|",
    ]
    files = sorted(measured_files(measured))
    for name in files:
        mode = _TFLITE_NAME.match(name).group("mode")
        drop = measured.get(f"{name}:accuracy_drop_vs_keras_points")
        error = measured.get(f"{name}:accuracy_drop_vs_keras_error")
        lines.append(
            f"| `{name}` | {export['files'][mode]['bytes']:,} | {measured[f'{name}:max_pixel_diff']:.0f} | "
            f"{measured[f'{name}:mean_pixel_diff']:.3f} | {measured[f'{name}:entropy_change']:.3f} | "
            f"{'' if drop is None else f'{drop:+.2f} ± {error:.2f}'} |"
        )
    lines.append("")
    if any(name.startswith("converter_int8") for name in files):
        step = int(measured["output_step"])
        lines += [
            f"Full-int8 files (`converter_int8*.tflite`) end at the sigmoid, so the grid (step {step}) is applied to "
            "their output: with the output tensor's q, scale and zero point, "
            f"{export_tflite_lib.output_decoding_text(step, quantized_only=True)}. "
            "This is what the parity figures above and `dapter-verify` measure "
            "(`export.export_tflite_lib.decode_output`; android_app's `OutputDecoding`). "
            "`converter_int8.tflite` takes uint8 pixels as they are (scale 1/255, zero point 0).",
            "",
        ]
    if files and all("contract" in export["files"][_TFLITE_NAME.match(n).group("mode")] for n in files):
        lines += [
            "Every `.tflite` file carries its input and output contract in its own metadata (entry "
            f"`{export_tflite_lib.CONTRACT_METADATA}`, JSON: dtype, scale, zero point, the grid step, the formulas).",
            "",
        ]
    if suite is not None:
        lines += _suite_section(suite)
    if info.attacks:
        lines += ["## Attacks (reported; `verify` does not re-run them)", "", "```", info.attacks, "```", ""]
    lines += [
        CLAIMS_HEADING,
        "",
        "`dapter-verify` re-measures each claim on the verifier's own held-out images of the task",
        "(the accuracy claims only when given a target) and fails on any that does not hold. Bring a",
        "random sample of a few hundred or more: the means of one class alone differ from the task's.",
        "With `--attacks` it also trains a reconstruction attacker of its own for a bounded time on the",
        f"verifier's training images and checks `{ATTACK_SSIM_CLAIM}`; the labelling gaps are re-measured",
        "only by a full `dapter-attack-suite` run.",
        "",
        "| claim | what | value | holds if |",
        "|---|---|---|---|",
    ]
    for claim in claims:
        lines.append(f"| `{claim.name}` | {claim.description} | {_format_value(claim.value)} | {claim.holds_if()} |")
    lines.append("")
    return "\n".join(lines)


def build_bundle(
    converter_path: str,
    export_dir: str,
    output_dir: str,
    info: ReleaseInfo,
    images: np.ndarray,
    labels: np.ndarray,
    target: keras.Model,
    target_path: str,
    tolerances: ClaimTolerances = ClaimTolerances(),
    suite=None,
) -> dict:
    """Writes a release bundle to ``output_dir`` and returns its manifest.

    Args:
        converter_path: The converter's ``.keras`` file.
        export_dir: A ``dapter-export-tflite`` output folder (``export.json`` and the files).
        output_dir: The bundle's folder; must not exist or be empty.
        info: Task, target name, lambda, data (the card's description).
        images: uint8 held-out images the claims are measured on.
        labels: Their target labels.
        target: The target, to measure the accuracy claims (it is not bundled).
        target_path: Its file, to make sure no copy of it lands in the bundle.
        tolerances: The slack each claim allows a verifier.
        suite: The converter's attack suite results (``dapter_tf.attacks.SuiteResults``), whose
            figures the card states as claims; ``None``: no security claims beyond entropy.

    Raises:
        DapterError: on a missing export, a file that broke its parity gate or is not the file
            it passed (SHA-256 against export.json), a non-empty
            ``output_dir``, or a bundle that would hold the target.
    """
    export_json = os.path.join(export_dir, "export.json")
    if not os.path.isfile(export_json):
        raise DapterError(f"{export_dir} has no export.json: run dapter-export-tflite first")
    with open(export_json) as f:
        export = json.load(f)
    broken = [mode for mode, e in export["files"].items() if e.get("failures")]
    if broken:
        raise DapterError(f"refusing to release files that broke their parity gate: {', '.join(broken)}")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise DapterError(f"{output_dir} is not empty: a bundle goes into a new folder")
    if sha256(converter_path) == sha256(target_path):
        raise DapterError("the bundle would hold the target model; nothing was released")
    converter = keras.models.load_model(converter_path, compile=False, safe_mode=True)
    if tuple(converter.output_shape[1:]) != tuple(converter.input_shape[1:]):
        raise DapterError(
            f"{converter_path} is not a converter: it maps {converter.input_shape[1:]} to {converter.output_shape[1:]}"
        )
    tflite_files = {}
    for mode in export["files"]:
        name = export_tflite_lib.file_name(mode)
        path = os.path.join(export_dir, name)
        if not os.path.isfile(path):
            raise DapterError(f"{path} is listed in export.json but missing")
        with open(path, "rb") as f:
            tflite_files[name] = f.read()
        recorded = export["files"][mode].get("sha256")
        if recorded is None:
            raise DapterError(f"{export_json} records no SHA-256 for {name}: re-run dapter-export-tflite")
        if hashlib.sha256(tflite_files[name]).hexdigest() != recorded:
            raise DapterError(
                f"{path} is not the file its parity gate passed (its SHA-256 differs from export.json's): "
                "re-run dapter-export-tflite"
            )
    measured = measure_claims(converter, tflite_files, images, labels, target)
    claims = make_claims(measured, export, tolerances)
    if suite is not None:
        claims += suite_claims(suite, tolerances)
    os.makedirs(output_dir, exist_ok=True)
    shutil.copyfile(converter_path, os.path.join(output_dir, CONVERTER))
    for name, model_bytes in tflite_files.items():
        with open(os.path.join(output_dir, name), "wb") as f:
            f.write(model_bytes)
    with open(os.path.join(output_dir, MODEL_CARD), "w") as f:
        f.write(render_card(info, measured, claims, export, len(images), suite))
    manifest = write_manifest(output_dir)
    target_hash = sha256(target_path)
    if any(entry["sha256"] == target_hash for entry in manifest["files"].values()):
        shutil.rmtree(output_dir)
        raise DapterError("the bundle would hold the target model; nothing was released")
    return manifest


_CARD_TASK = re.compile(r"^- Task: (?P<task>\S+); the target serves `(?P<label>[^`]+)`", re.MULTILINE)
_CARD_IMAGES = re.compile(r"^- Images: (?P<height>\d+)x(?P<width>\d+) RGB", re.MULTILINE)


def parse_card_task(card: str) -> tuple[str, str, tuple[int, int]]:
    """The task, target label and image size a model card's "Task" section states.

    Raises:
        DapterError: if the card does not state them.
    """
    task, images = _CARD_TASK.search(card), _CARD_IMAGES.search(card)
    if task is None or images is None:
        raise DapterError("the model card states no task and image size ('- Task: ...' and '- Images: HxW RGB')")
    return task["task"], task["label"], (int(images["height"]), int(images["width"]))


def check_verifier_data(bundle_dir: str, task_name: str, target_label: str, image_size) -> None:
    """Refuses to verify a bundle on another task's data, another label, or another image size.

    A card's claims hold for the images it was measured on: re-measured on CelebA faces, a CIFAR-10
    converter's entropy and bandwidth figures say nothing, and a pass would be false comfort.

    Raises:
        DapterError: one line naming what differs.
    """
    card_path = os.path.join(bundle_dir, MODEL_CARD)
    if not os.path.isfile(card_path):
        return  # verify_bundle reports the missing card itself.
    with open(card_path) as f:
        card_task, card_label, card_size = parse_card_task(f.read())
    size = tuple(int(s) for s in image_size)
    differences = []
    if card_task != task_name:
        differences.append(f"task {task_name}, the bundle's is {card_task}")
    elif card_label != target_label:
        differences.append(f"target label {target_label}, the bundle's is {card_label}")
    if size != card_size:
        differences.append(f"images {size[0]}x{size[1]}, the bundle's are {card_size[0]}x{card_size[1]}")
    if differences:
        raise DapterError(
            f"the verifier's data do not match {bundle_dir} ({'; '.join(differences)}): give data of the bundle's task"
        )


@dataclasses.dataclass(frozen=True)
class Finding:
    """One check of ``verify_bundle``: a file's hash or a claim, and whether it held.

    A claim the verifier could not re-measure (no target, no ``--attacks``) is ``skipped``: it
    does not fail the bundle, and it is not reported as checked either.
    """

    subject: str
    ok: bool
    detail: str
    skipped: bool = False


def check_manifest(bundle_dir: str) -> list[Finding]:
    """Checks every file of the manifest against its SHA-256 and size, and that nothing else is in the bundle."""
    path = os.path.join(bundle_dir, MANIFEST)
    if not os.path.isfile(path):
        return [Finding(MANIFEST, False, "missing")]
    try:
        with open(path) as f:
            listed = json.load(f)["files"]
    except (ValueError, KeyError, TypeError) as e:
        return [Finding(MANIFEST, False, f"not a manifest ({type(e).__name__})")]
    findings = []
    for name, entry in sorted(listed.items()):
        file_path = os.path.join(bundle_dir, name)
        if not os.path.isfile(file_path):
            findings.append(Finding(name, False, "missing"))
        elif sha256(file_path) != entry["sha256"]:
            findings.append(
                Finding(
                    name, False, f"SHA-256 {sha256(file_path)[:16]}... is not the manifest's {entry['sha256'][:16]}..."
                )
            )
        else:
            findings.append(Finding(name, True, f"SHA-256 {entry['sha256'][:16]}... matches"))
    for name in sorted(set(os.listdir(bundle_dir)) - set(listed) - {MANIFEST}):
        findings.append(Finding(name, False, "not in the manifest"))
    return findings


def verify_bundle(
    bundle_dir: str,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    target: keras.Model | None = None,
    measured_elsewhere: dict | None = None,
) -> list[Finding]:
    """Checks a bundle's hashes and re-measures its card's claims on the verifier's images.

    Claims that need a target are reported as skipped (``ok`` True, ``skipped``) without one; so
    are the attack suite's claims unless ``measured_elsewhere`` has them.

    Args:
        bundle_dir: The bundle.
        images: The verifier's uint8 held-out images of the task.
        labels: Their target labels (with ``target``).
        target: A target of the task, to re-measure the accuracy claims.
        measured_elsewhere: ``{claim name: value}`` re-measured by the caller, as ``dapter-verify
            --attacks`` measures ``attack_max_ssim`` with an attacker of its own.

    Returns:
        One ``Finding`` per file and per claim; the bundle holds when every ``ok`` is True.
    """
    if not os.path.isdir(bundle_dir):
        raise DapterError(f"bundle folder not found: {bundle_dir}")
    findings = check_manifest(bundle_dir)
    card_path = os.path.join(bundle_dir, MODEL_CARD)
    if not os.path.isfile(card_path):
        return findings + [Finding(MODEL_CARD, False, "missing: no claims to check")]
    with open(card_path) as f:
        claims = parse_claims(f.read())
    converter_path = os.path.join(bundle_dir, CONVERTER)
    try:
        converter = keras.models.load_model(converter_path, compile=False, safe_mode=True)
    except Exception as e:  # A flipped byte can break the zip in many ways; all mean the same here.
        return findings + [Finding(CONVERTER, False, f"cannot be loaded ({type(e).__name__}): claims not checked")]
    tflite_files = {}
    for claim in claims:
        name = claim.name.split(":")[0]
        if ":" in claim.name and name not in tflite_files:
            path = os.path.join(bundle_dir, name)
            if not os.path.isfile(path):
                findings.append(Finding(name, False, f"named by claim {claim.name} but missing"))
                continue
            with open(path, "rb") as f:
                tflite_files[name] = f.read()
    try:
        measured = measure_claims(converter, tflite_files, images, labels, target)
    except Exception as e:  # A corrupted .tflite fails inside the interpreter.
        return findings + [Finding("claims", False, f"could not be measured ({type(e).__name__}: {e})")]
    measured.update(measured_elsewhere or {})
    for claim in claims:
        if claim.name not in measured:
            needs_target = claim.name.endswith("accuracy_drop_points") or claim.name.endswith("accuracy_drop_vs_keras")
            if needs_target and target is None:
                findings.append(Finding(claim.name, True, "skipped: needs the target (--target)", skipped=True))
            elif claim.name == ATTACK_SSIM_CLAIM:
                findings.append(Finding(claim.name, True, "skipped: needs a reconstruction attack (--attacks)", True))
            elif claim.name.startswith(f"{LABEL_GAP_CLAIM}."):
                findings.append(
                    Finding(claim.name, True, "skipped: only a full dapter-attack-suite run re-measures it", True)
                )
            else:
                findings.append(Finding(claim.name, False, "no way to measure it"))
            continue
        value = measured[claim.name]
        verdict = "holds" if claim.holds(value) else "does not hold"
        findings.append(
            Finding(
                claim.name,
                claim.holds(value),
                f"card {_format_value(claim.value)} ({claim.holds_if()}), measured {value:.6g}: {verdict}",
            )
        )
    return findings

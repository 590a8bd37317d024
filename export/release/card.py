"""The model card of a release: what the converter is, how to decode its output, its claims and its attack figures."""

import dataclasses
import datetime
import re

from dapter_tf import DapterError
from dapter_tf.resize import RESIZE_POLICY
from export.release.claims import (
    ATTACK_SSIM_CLAIM,
    CLAIMS_HEADING,
    TFLITE_NAME,
    Claim,
    format_value,
    measured_files,
)
from export.tflite.contract import CONTRACT_METADATA, output_decoding_text


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
    # The converter's ``class_code`` ("target" or a classifier's file; "" for the paper's converter).
    class_code: str = ""
    # The target's input contract, as ``TargetContract.describe`` says it ("" : our zoo's, unstated).
    target_contract: str = ""
    # The converter's architecture and training in one line (``release._describe_converter``; "" : unstated).
    converter: str = ""
    # Its cost at 224x224 beside MobileNetV2 1.0 int8 (``yardstick.measure_converter_cost``; None: not measured).
    cost: dict | None = None


def _suite_section(suite) -> list[str]:
    """The card's table of every attacker of the attack suite, with the baselines and the verdicts."""
    # Only labellers train on every training image; a suite without them says so by saying nothing of them.
    labellers = f"the labellers on all {suite.images_train:,}; " if suite.labelling else ""
    lines = [
        "## Attack suite (the security index)",
        "",
        "Every attacker was trained after the converter froze, on converted images of the converter's own "
        f"training images ({labellers}each reconstruction row says how many), "
        f"and measured on {suite.images_test:,} held-out images (`dapter-attack-suite`).",
        "",
        "| attacker | figure | value | baseline |",
        "|---|---|---|---|",
    ]
    for r in suite.reconstruction:
        # The lookup trains nothing (epochs 0): its size is the values its table stores.
        how = (
            f"{r.parameters or 0:,} parameters, {r.epochs} epochs on {r.images_train:,} pairs"
            if r.epochs
            else f"a table of {r.parameters or 0:,} values from {r.images_train:,} pairs, no training"
        )
        lines.append(
            f"| reconstruction, {r.attacker} ({how}) | SSIM / PSNR | "
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


def _cost_section(cost: dict) -> list[str]:
    """The converter's cost at the phones' published size: GMAC, the host ratio to MobileNetV2, and what it implies."""
    size = cost["image_size"]
    phones = "; ".join(
        f"on a {p['device']} ({p['threads']} threads, whose MobileNetV2 1.0 {size}x{size} int8 runs in {p['ms']:g} ms: "
        f"{p['source']}) about **{p['estimate_ms']:.1f} ms**"
        for p in cost["phones"]
    )
    return [
        "## Cost on phones (an estimate, not a claim)",
        "",
        f"At {size}x{size}{'' if size == 224 else ' (the size nearest 224x224 that its blocks divide)'} the converter computes {cost['gmac']:.3f} GMAC (counted on its int8 file). Timed beside "
        f"MobileNetV2 1.0 as a full-int8 file (`keras.applications`, uint8 pixels in and out) at {size}x{size}, "
        f"{cost['num_threads']} thread, XNNPACK, interleaved, on the releasing host ({cost['cpu']}), its int8 file "
        f"took **{cost['ratio']:.2f}x** MobileNetV2's time (fastest of {cost['num_runs']} runs each). That ratio "
        f"implies {phones}. `dapter-adb-benchmark` measures both on a phone.",
        "",
    ]


def _class_code_lines(info: ReleaseInfo) -> list[str]:
    """What a class-code converter costs, said before any figure (``models.build_class_code_converter``)."""
    if not info.class_code:
        return []
    source = "a copy of the target itself" if info.class_code == "target" else f"the classifier `{info.class_code}`"
    return [
        "**This is a class-code converter, not the paper's.** It holds a frozen classifier "
        f"({source}) and sends, for each photo, only the learned codebook image of the class that "
        "classifier decides: C(x) = grid(sigmoid(B[argmax F(x)])). A converted image therefore carries at most "
        "log2(classes) bits of the photo, which bounds what any reconstruction can recover; the price is that the "
        "phone runs a model as large as that classifier, and"
        + (
            " the provider's model ships inside `converter.keras` and every `.tflite` file."
            if info.class_code == "target"
            else " the service's accuracy is that classifier's."
        ),
        "",
    ]


def render_card(info: ReleaseInfo, measured: dict, claims: list[Claim], export: dict, images: int, suite=None) -> str:
    """The model card's Markdown: description, measured figures, parity table, attacks, and the claims table."""
    height, width = info.image_size
    lines = [
        f"# Model card: {info.name}",
        "",
        "A DAPter converter (Wu et al., WWW 2021): it runs on the user's phone and removes from each image",
        "what the cloud service's target model does not need, so the service still works but the images",
        "are hard to label for other models. "
        + (
            "A copy of the target is inside this converter (below)."
            if info.class_code == "target"
            else "The target model is not part of this release."
        ),
        "",
        *_class_code_lines(info),
        "## Task",
        "",
        f"- Task: {info.task}; the target serves `{info.target_label}`",
        f"- Target: {info.target_name}"
        + (
            " (a copy is inside the converter)"
            if info.class_code == "target"
            else " (kept by the provider, not released)"
        )
        + (f"; published beside this bundle as `{info.published_target}`" if info.published_target else ""),
        *([f"- Target's input contract: {info.target_contract} (between the converter and the target, as the "
           "provider's server applies it)"] if info.target_contract else []),
        *([f"- Converter: {info.converter}"] if info.converter else []),
        f"- λ (L_dap = λ L_eta + (1 - λ) L_acc): {info.lambda_ if info.lambda_ is not None else 'not recorded'}",
        f"- Images: {height}x{width} RGB, uint8; converted pixels on the grid 128 + k * {int(measured['output_step'])}",
        f"- Photos of another size are first brought to {height}x{width} by the policy the converter was trained "
        "with (`dapter_tf.resize.fit_image`; `dapter-convert` and android_app's `ResizePolicy` apply it): "
        f"{RESIZE_POLICY}",
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
        mode = TFLITE_NAME.match(name).group("mode")
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
            f"{output_decoding_text(step, quantized_only=True)}. "
            "This is what the parity figures above and `dapter-verify` measure "
            "(`export.tflite.contract.decode_output`; android_app's `OutputDecoding`). "
            "`converter_int8.tflite` takes uint8 pixels as they are (scale 1/255, zero point 0).",
            "",
        ]
    if "converter_int8.tflite" in files:
        lines += [
            "**On phones, ship `converter_int8.tflite`**: the smallest and fastest file, uint8 camera pixels in and "
            "the pixels to send out, within the parity figures above of the Keras converter.",
            "",
        ]
    if files and all("contract" in export["files"][TFLITE_NAME.match(n).group("mode")] for n in files):
        lines += [
            "Every `.tflite` file carries its input and output contract in its own metadata (entry "
            f"`{CONTRACT_METADATA}`, JSON: dtype, scale, zero point, the grid step, the formulas).",
            "",
        ]
    if info.cost is not None:
        lines += _cost_section(info.cost)
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
        lines.append(f"| `{claim.name}` | {claim.description} | {format_value(claim.value)} | {claim.holds_if()} |")
    lines.append("")
    return "\n".join(lines)


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

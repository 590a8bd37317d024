"""The parity gate: an exported file against its Keras converter, pixel by pixel and by the target's accuracy."""

import dataclasses

import keras
import numpy as np

from dapter_tf import DapterError, evaluate, metrics
from export.tflite.interpreter import run_tflite
from export.tflite.modes import FULL_INTEGER_MODES


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """What a ``.tflite`` file may differ from the Keras converter on real held-out images.

    Attributes:
        max_pixel_diff_steps: Largest |TFLite - Keras| pixel difference, in output grid steps (a
            pixel on a rounding boundary moves by one whole step, 16 levels on the default grid).
        mean_pixel_diff: Largest mean |TFLite - Keras| over all pixels, in uint8 levels.
        accuracy_drop_points: Largest fall of the target's accuracy (Keras-converted minus
            TFLite-converted), in percentage points; a file fails when the whole 95 % interval of
            its paired drop lies above it (``accuracy_drop_exceeds``).
        entropy_change_bits: Largest |mean entropy TFLite - mean entropy Keras| (§4.1), in bits.
    """

    max_pixel_diff_steps: float
    mean_pixel_diff: float
    accuracy_drop_points: float
    entropy_change_bits: float

    def validate(self) -> "Tolerance":
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) >= 0:
                raise DapterError(f"tolerance {field.name} must be >= 0, got {getattr(self, field.name)}")
        return self


# Defaults from the committed CIFAR-10 converter (lambda 0.9, grid step 16) on 2,000 test images:
# every mode's max diff was one grid step (a pixel on a rounding boundary); mean diffs were 0.000
# (float32), 0.006 (float16), 0.18 (dynamic range) and 0.26 levels (full int8); entropy moved by at
# most 0.032 bits and the target's accuracy by at most 0.75 points, upwards. The defaults leave about
# 4x headroom over those figures, so a broken file (dropped weights, wrong scales) cannot pass.
_FLOAT_TOLERANCE = Tolerance(
    max_pixel_diff_steps=1, mean_pixel_diff=0.05, accuracy_drop_points=0.5, entropy_change_bits=0.02
)


_INTEGER_TOLERANCE = Tolerance(
    max_pixel_diff_steps=2, mean_pixel_diff=1.0, accuracy_drop_points=1.0, entropy_change_bits=0.15
)


DEFAULT_TOLERANCES = {
    "float32": _FLOAT_TOLERANCE,
    "float16": dataclasses.replace(_FLOAT_TOLERANCE, mean_pixel_diff=0.1, entropy_change_bits=0.05),
    "dynamic_range": _INTEGER_TOLERANCE,
    **{mode: _INTEGER_TOLERANCE for mode in FULL_INTEGER_MODES},
}


def check_parity(
    model_bytes: bytes,
    keras_converted: np.ndarray,
    target: keras.Model | None,
    images: np.ndarray,
    labels: np.ndarray | None,
    output_step: int = 1,
) -> dict:
    """Compares a ``.tflite`` converter with the Keras converter on real images.

    Args:
        model_bytes: The ``.tflite`` file's bytes.
        keras_converted: uint8 images the Keras converter made from ``images``.
        target: The frozen target, or None where it is not at hand (a verifier without it).
        images: uint8 held-out originals.
        labels: Their target labels (None with no target).
        output_step: The grid to apply after the interpreter (full-int8 files; see ``run_tflite``).

    Returns:
        ``max_pixel_diff`` and ``mean_pixel_diff`` (uint8 levels, TFLite vs Keras output),
        ``differing_pixels`` (fraction), ``entropy_keras`` and ``entropy_tflite`` (mean bits), and
        with a target ``accuracy_keras``, ``accuracy_tflite``, ``accuracy_drop_points`` (Keras
        minus TFLite, points), its standard error and 95 % interval (``accuracy_drop_error_points``,
        ``_low_points``, ``_high_points``) and the predictions that flipped each way
        (``flipped_to_wrong``, ``flipped_to_right``; ``metrics.paired_drop_interval``).
    """
    lite_converted = run_tflite(model_bytes, images, output_step=output_step)
    diff = np.abs(lite_converted.astype(np.int16) - keras_converted.astype(np.int16))
    result = {
        "images": int(len(images)),
        "max_pixel_diff": int(diff.max()),
        "mean_pixel_diff": float(diff.mean()),
        "differing_pixels": float((diff > 0).mean()),
        "entropy_keras": float(np.mean(metrics.image_entropy(keras_converted))),
        "entropy_tflite": float(np.mean(metrics.image_entropy(lite_converted))),
    }
    if target is not None:
        right_keras = evaluate.target_correct(target, keras_converted, labels)
        right_lite = evaluate.target_correct(target, lite_converted, labels)
        interval = metrics.paired_drop_interval(right_keras, right_lite)
        result.update(
            accuracy_keras=float(right_keras.mean()),
            accuracy_tflite=float(right_lite.mean()),
            accuracy_drop_points=interval["drop_points"],
            accuracy_drop_error_points=interval["error_points"],
            accuracy_drop_low_points=interval["low_points"],
            accuracy_drop_high_points=interval["high_points"],
            flipped_to_wrong=interval["flipped_to_wrong"],
            flipped_to_right=interval["flipped_to_right"],
        )
    return result


def accuracy_drop_exceeds(parity: dict, tolerance_points: float) -> bool:
    """Whether ``parity`` shows the file losing more than ``tolerance_points`` of target accuracy.

    A point figure moves by 100 / n points per flipped image (1.56 points at n = 64), so a fixed
    bar on it fails sound files by chance. The gate fails only when the whole 95 % interval of the
    paired drop lies above the bar: the flips are evidence of a loss, not noise. A broken file
    (wrong scales, dropped weights) loses tens of points and fails on any sample, and the pixel
    gates catch it first.
    """
    return parity["accuracy_drop_low_points"] > tolerance_points


def parity_failures(parity: dict, tolerance: Tolerance, output_step: int) -> list[str]:
    """The tolerances ``parity`` (from ``check_parity``) breaks, one readable line each; empty if none."""
    failures = []
    if parity["max_pixel_diff"] > tolerance.max_pixel_diff_steps * output_step:
        failures.append(
            f"max pixel diff {parity['max_pixel_diff']} > {tolerance.max_pixel_diff_steps:g} step(s) "
            f"of {output_step} level(s)"
        )
    if parity["mean_pixel_diff"] > tolerance.mean_pixel_diff:
        failures.append(f"mean pixel diff {parity['mean_pixel_diff']:.3f} > {tolerance.mean_pixel_diff:g}")
    if "accuracy_drop_points" in parity and accuracy_drop_exceeds(parity, tolerance.accuracy_drop_points):
        failures.append(
            f"target accuracy drop {parity['accuracy_drop_points']:.2f} points, 95 % interval "
            f"[{parity['accuracy_drop_low_points']:.2f}, {parity['accuracy_drop_high_points']:.2f}] wholly above "
            f"{tolerance.accuracy_drop_points:g} ({parity['flipped_to_wrong']} of {parity['images']} predictions "
            f"flipped to wrong, {parity['flipped_to_right']} to right)"
        )
    change = abs(parity["entropy_tflite"] - parity["entropy_keras"])
    if change > tolerance.entropy_change_bits:
        failures.append(f"entropy change {change:.3f} bits > {tolerance.entropy_change_bits:g}")
    return failures


class ParityError(DapterError):
    """An exported file broke its parity tolerances (the files and export.json are still written)."""


def format_parity_line(mode: str, entry: dict) -> str:
    """One line per exported file: size, pixel differences, accuracy and entropy against Keras."""
    line = (
        f"{mode}: {entry['bytes']:,} bytes, pixel diff max {entry['max_pixel_diff']} "
        f"mean {entry['mean_pixel_diff']:.3f}, entropy {entry['entropy_tflite']:.3f} "
        f"vs Keras {entry['entropy_keras']:.3f}"
    )
    if "accuracy_tflite" in entry:
        line += (
            f", target accuracy {entry['accuracy_tflite']:.4f} vs Keras {entry['accuracy_keras']:.4f} "
            f"(drop {entry['accuracy_drop_points']:+.2f} ± {entry['accuracy_drop_error_points']:.2f} points; "
            f"{entry['flipped_to_wrong']} of {entry['images']} flipped to wrong, {entry['flipped_to_right']} to right)"
        )
    if entry.get("failures"):
        line += f"  BROKEN: {'; '.join(entry['failures'])}"
    return line

"""Writing what a run measured: report.md, report.json and a grid of originals beside converted images."""

import dataclasses
import os

import numpy as np

from dapter_tf.figures import save_grid
from dapter_tf.records.files import write_json

GRID_IMAGES = 16


def _change(drop_points: float) -> str:
    return f"{drop_points:.2f} points lost" if drop_points >= 0 else f"{-drop_points:.2f} points gained"


def one_line_summary(results: dict) -> str:
    """The headline of a run: accuracy and entropy before and after conversion, and bandwidth."""
    line = (
        f"target accuracy {results['accuracy_original']:.4f} -> {results['accuracy_converted']:.4f} "
        f"({_change(results['accuracy_drop_points'])}); mean entropy "
        f"{results['entropy_original']:.2f} -> {results['entropy_converted']:.2f} bits "
        f"({100 * results['entropy_ratio']:.1f} %)"
    )
    if "bandwidth_ratio" in results:
        line += f"; PNG bytes x{results['bandwidth_ratio']:.3f} ({results['bandwidth_saving']:.2f}x fewer)"
    return line


# The paper's two thresholds at its sweet point (§7.1), which every run is held against.
PAPER_LAMBDA = 0.9
PAPER_MAX_DROP_POINTS = 3.0
PAPER_MAX_ENTROPY_RATIO = 0.30


def accuracy_verdict(results: dict, bar_points: float = PAPER_MAX_DROP_POINTS) -> str:
    """The verdict on an accuracy drop: "met", "missed", or, where its 95 % interval spans the bar, "within noise"."""
    drop, low, high = (
        results[k] for k in ("accuracy_drop_points", "accuracy_drop_low_points", "accuracy_drop_high_points")
    )
    if high < bar_points:
        return "met"
    if low > bar_points:
        return "missed"
    side = "met" if drop < bar_points else "missed"
    return (
        f"{side} by the point figure, but its 95 % interval [{low:.2f}, {high:.2f}] spans {bar_points:g}: within noise"
    )


def _paper_thresholds(config, r: dict) -> list[str]:
    """The run against the paper's thresholds, met or missed, with each term explained."""
    where = (
        ""
        if config.lambda_ == PAPER_LAMBDA
        else (f" The paper states them at λ = {PAPER_LAMBDA}; this run is at λ = {config.lambda_}.")
    )
    entropy = "met" if r["entropy_ratio"] < PAPER_MAX_ENTROPY_RATIO else "missed"
    if "accuracy_drop_error_points" not in r:  # Results recorded before the paired error was.
        drop = f"{r['accuracy_drop_points']:+.2f} points of {r['images']} images (no paired error recorded)"
        verdict = "met" if r["accuracy_drop_points"] < PAPER_MAX_DROP_POINTS else "missed"
    else:
        drop = (
            f"{r['accuracy_drop_points']:+.2f} ± {r['accuracy_drop_error_points']:.2f} points (95 % interval "
            f"[{r['accuracy_drop_low_points']:.2f}, {r['accuracy_drop_high_points']:.2f}]; {r['flipped_to_wrong']} "
            f"answers lost, {r['flipped_to_right']} gained, of {r['images']})"
        )
        verdict = accuracy_verdict(r)
    return [
        "## Against the paper's thresholds (§7.1)",
        "",
        "| threshold (λ = 0.9) | measured | verdict |",
        "|---|---|---|",
        f"| target accuracy drop < {PAPER_MAX_DROP_POINTS:g} points | {drop} | {verdict} |",
        f"| converted entropy < {100 * PAPER_MAX_ENTROPY_RATIO:.0f} % of the original's | "
        f"{100 * r['entropy_ratio']:.1f} % | {entropy} |",
        "",
        "Terms. *Accuracy drop*: the target's accuracy on the original held-out images minus on their "
        "converted versions, in points (the usability index). The two are measured on the same images, so "
        "its noise comes only from the images whose answer changed: ± is that paired standard error, and the "
        f"interval is ± 1.96 of it. On {r['images']} images one answer is {100 / r['images']:.2f} points, and "
        f"an accuracy near {r['accuracy_original']:.2f} has a standard error of "
        f"{100 * (r['accuracy_original'] * (1 - r['accuracy_original']) / r['images']) ** 0.5:.2f} points on its "
        "own. *Entropy*: §4.1's image entropy, summed over R, G and B (0 to 24 bits), averaged over the images "
        "(the security index)." + where,
        "",
    ]


def _markdown(config, results: dict, export: dict | None, task=None) -> str:
    r = results
    lines = ["# DAPter run report", ""]
    if task is not None:
        lines += [f"Task: {task.description}; target label `{task.target_label}`.", ""]
        if task.stand_in_for:
            lines += [
                f"**This task is a stand-in for the paper's {task.stand_in_for}**, which is not available here.",
                "",
            ]
    lines += [
        f"Task `{config.data.dataset}` from `{config.data.source}`, target `{config.target_path}`, "
        f"lambda = {config.lambda_}, {config.epochs} epoch(s), measured on {r['images']} held-out images.",
        "",
        "| measure | original | converted |",
        "|---|---|---|",
        f"| target accuracy | {r['accuracy_original']:.4f} | {r['accuracy_converted']:.4f} "
        f"({_change(r['accuracy_drop_points'])}) |",
        f"| mean image entropy (bits, §4.1) | {r['entropy_original']:.3f} | {r['entropy_converted']:.3f} "
        f"({100 * r['entropy_ratio']:.1f} %) |",
        f"| PNG bytes | {r['png_bytes_original']} | {r['png_bytes_converted']} "
        f"(ratio {r['bandwidth_ratio']:.3f}, {r['bandwidth_saving']:.2f}x fewer) |",
        "",
        *_paper_thresholds(config, r),
        "![originals (odd rows) and converted (even rows)](grid.png)",
        "",
    ]
    if export:
        lines += [
            "## TFLite export",
            "",
            "| file | bytes | max pixel diff vs Keras | mean pixel diff | entropy (Keras) "
            "| target accuracy (TFLite-converted) | drop vs Keras-converted (points ± standard error; "
            "predictions flipped to wrong / to right) | parity gate |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for mode, e in export["files"].items():
            gate = "; ".join(e.get("failures", [])) or "passed"
            if e.get("failures") and f"{os.sep}failed{os.sep}" in e["path"]:
                gate += " (not shipped: it lies in export/failed/)"
            lines.append(
                f"| `{os.path.basename(e['path'])}` ({mode}) | {e['bytes']:,} | {e['max_pixel_diff']} | "
                f"{e['mean_pixel_diff']:.3f} | {e['entropy_tflite']:.3f} ({e['entropy_keras']:.3f}) | "
                f"{e['accuracy_tflite']:.4f} | {e['accuracy_drop_points']:+.2f} ± "
                f"{e['accuracy_drop_error_points']:.2f} ({e['flipped_to_wrong']} / {e['flipped_to_right']} of "
                f"{e['images']}) | {gate} |"
            )
        lines += [
            "",
            "*Parity gate*: each file is run with `ai_edge_litert` on the held-out images and compared with the "
            "Keras converter; it fails on a pixel, mean-pixel or entropy difference over its tolerance, or when "
            "the whole 95 % interval of its accuracy drop lies above its tolerance (1 point for integer files, "
            "0.5 for float ones): a file that breaks it would be refused by `dapter-release`.",
        ]
        if "size_ratio_float32_to_int8" in export:
            lines += ["", f"float32 / int8 size ratio: {export['size_ratio_float32_to_int8']:.2f}"]
        lines.append("")
    return "\n".join(lines)


def write_report(
    workdir: str,
    config,
    results: dict,
    originals: np.ndarray,
    converted: np.ndarray,
    export: dict | None = None,
    task=None,
) -> None:
    """Writes ``report.md``, ``report.json`` and ``grid.png`` into ``workdir``.

    Args:
        workdir: The train_dapter workdir.
        config: The run's DapterConfig.
        results: What ``train.train_dapter`` returned.
        originals: uint8 images for the grid (the first ``GRID_IMAGES`` are shown).
        converted: Their converted versions.
        export: What ``export_tflite_lib.export_converter`` returned, if the run exported.
        task: The run's task, named in the report (a stand-in says so).
    """
    save_grid(os.path.join(workdir, "grid.png"), originals[:GRID_IMAGES], converted[:GRID_IMAGES])
    write_json(
        os.path.join(workdir, "report.json"),
        {
            "config": dataclasses.asdict(config),
            "task": task.description if task is not None else config.data.dataset,
            "stand_in_for": task.stand_in_for if task is not None else None,
            "results": results,
            "export": export,
        },
    )
    tmp = os.path.join(workdir, "report.md.tmp")
    with open(tmp, "w") as f:
        f.write(_markdown(config, results, export, task))
    os.replace(tmp, os.path.join(workdir, "report.md"))

"""Writing what a run measured: report.md, report.json and a grid of originals beside converted images."""

import dataclasses
import os

import numpy as np
import PIL.Image

from dapter_tf.train import write_json

GRID_IMAGES = 16
_GRID_COLUMNS = 8
_GAP = 2


def save_grid(path: str, *image_sets: np.ndarray) -> None:
    """Saves a PNG with a row of each set's images per group: originals, then converted, and so on.

    Fig. 13's layout: ``save_grid(path, originals, converted, reconstructed)`` shows each original
    above its converted and reconstructed versions. Small images are enlarged (nearest neighbour, 4x
    for 32x32) so their pixels stay visible.
    """
    n = min(len(images) for images in image_sets)
    k_sets = len(image_sets)
    first = image_sets[0]
    scale = max(1, 128 // first.shape[1])
    h, w = first.shape[1] * scale, first.shape[2] * scale
    groups = -(-n // _GRID_COLUMNS)
    canvas = np.full((k_sets * groups * (h + _GAP) + _GAP, _GRID_COLUMNS * (w + _GAP) + _GAP, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, _GRID_COLUMNS)
        for k, images in enumerate(image_sets):
            top = (k_sets * r + k) * (h + _GAP) + _GAP
            left = c * (w + _GAP) + _GAP
            canvas[top : top + h, left : left + w] = images[i].repeat(scale, 0).repeat(scale, 1)
    tmp = f"{path}.tmp"
    PIL.Image.fromarray(canvas).save(tmp, format="PNG")
    os.replace(tmp, path)


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
        "Paper (λ = 0.9): accuracy drop < 3 points; converted entropy < 30 % of the original's.",
        "",
        "![originals (odd rows) and converted (even rows)](grid.png)",
        "",
    ]
    if export:
        lines += [
            "## TFLite export",
            "",
            "| file | bytes | max pixel diff vs Keras | mean pixel diff | entropy (Keras) "
            "| target accuracy (TFLite-converted) | drop vs Keras-converted (points) | parity gate |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for mode, e in export["files"].items():
            gate = "; ".join(e.get("failures", [])) or "passed"
            lines.append(
                f"| `{os.path.basename(e['path'])}` ({mode}) | {e['bytes']:,} | {e['max_pixel_diff']} | "
                f"{e['mean_pixel_diff']:.3f} | {e['entropy_tflite']:.3f} ({e['entropy_keras']:.3f}) | "
                f"{e['accuracy_tflite']:.4f} | {e['accuracy_drop_points']:+.2f} | {gate} |"
            )
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

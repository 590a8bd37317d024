"""Writing what a run measured: report.md, report.json and grid.png.

grid.png shows held-out originals above their converted versions (and, where the run attacked its
converter, above the attacker's reconstructions), each row and column named, under the headline
figures. Where a reconstruction attack ran (the demo's), the report gives the attacker's SSIM beside
the mean training image's and says in plain words whether the converted photos can be restored.
"""

import dataclasses
import os

import numpy as np

from dapter_tf.figures import labelled_grid, save_figure
from dapter_tf.records.files import write_json

# Images in grid.png: one column each (the demo picks one held-out image per class, ``grid_picks``).
GRID_IMAGES = 10
ROW_ORIGINALS = "originals"
ROW_CONVERTED = "converted\n(what is sent)"
ROW_RECONSTRUCTED = "reconstructed\nby the attacker"
# How far an attacker's SSIM may rise above the mean training image's before the photos count as
# restored: dapter-protect's default bar (--max_ssim_over_mean), that of its attack suite.
MAX_SSIM_OVER_MEAN_IMAGE = 0.05
# An attacker's SSIM from which the photos count as restored outright, not only in part: about where
# reconstructions keep each photo's shapes and edges, not only its layout and colours in blurs.
RESTORED_SSIM = 0.5
# Where to go from here, named in the report and on the picture.
PROTECTIVE_PATH = "dapter-protect (docs/protection.md)"


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


def grid_picks(labels, count: int = GRID_IMAGES) -> np.ndarray:
    """Indices of the images grid.png shows: the first image of each class, by class, then the next ones.

    With at least ``count`` classes it is one image of each of the ``count`` lowest classes; with fewer,
    one of each class and then the first images not picked yet, in order, up to ``count``.
    """
    labels = np.asarray(labels)
    first = {}
    for i, label in enumerate(labels.tolist()):
        first.setdefault(label, i)
    picks = [first[label] for label in sorted(first)][:count]
    taken = set(picks)
    picks += [i for i in range(len(labels)) if i not in taken][: count - len(picks)]
    return np.asarray(picks, dtype=np.int64)


def class_name(task, label: int) -> str:
    """The name of a target class for a column of grid.png: the task's, else ``class <label>``."""
    names = getattr(task, "class_names", None) or ()
    return names[label] if 0 <= label < len(names) else f"class {label}"


def attack_restores(attack: dict) -> bool:
    """Whether the attacker restored the photos: its SSIM above the mean image's by more than the bar."""
    return attack["ssim"] - attack["ssim_mean_image"] > MAX_SSIM_OVER_MEAN_IMAGE


def _how_restored(attack: dict) -> str:
    """``restored`` or ``partly restored``, for an attacker that ``attack_restores``."""
    return "restored" if attack["ssim"] >= RESTORED_SSIM else "partly restored"


def attack_summary(attack: dict) -> str:
    """One line: the attacker's SSIM beside the mean image's, and what it means."""
    line = (
        f"reconstruction attacker ({attack['attacker']}, {attack['epochs']} epoch(s) on {attack['images_train']} "
        f"converted training images): SSIM {attack['ssim']:.3f} on {attack['images_test']} held-out images, "
        f"the mean training image {attack['ssim_mean_image']:.3f}"
    )
    if attack_restores(attack):
        restored = f"the converted photos can be {_how_restored(attack)}; L_dap alone does not protect them"
        return line + f": {restored}. See {PROTECTIVE_PATH}."
    return line + f": not restored by this short attack, which proves no protection. See {PROTECTIVE_PATH}."


def _protect_command(config) -> str:
    data = config.data
    return (
        f"dapter-protect --target={config.target_path} --dataset={data.dataset} --source={data.source} "
        "--workdir=protect_out"
    )


def _attack_section(config, attack: dict) -> list[str]:
    """The reconstruction attack: who attacked, how, the SSIMs beside each other, and what they mean."""
    a = attack
    gain = a["ssim"] - a["ssim_mean_image"]
    parameters = f", {a['parameters']:,} parameters" if a.get("parameters") else ""
    lines = [
        "## Can the converted photos be restored? A reconstruction attack",
        "",
        f"After the converter froze, an attacker who has it (it ships inside the app) trained a decoder "
        f"(`{a['attacker']}`{parameters}; `dapter_tf.attacks.reconstructors`) for {a['epochs']} epoch(s) to "
        f"turn converted images back into the originals, on {a['images_train']:,} images of the converter's own "
        "training split, converted by it (the paper's strongest setting, §5.3). The decoder was then measured "
        f"on the {a['images_test']:,} held-out images, which it never saw. The decoder some defences train "
        "against while the converter learns is never this attacker.",
        "",
        "| on the held-out images | SSIM | PSNR (dB) |",
        "|---|---|---|",
        f"| the attacker's reconstructions | {a['ssim']:.4f} | {a['psnr']:.2f} |",
        f"| the mean training image (an attacker who outputs the same image every time) | "
        f"{a['ssim_mean_image']:.4f} | {a['psnr_mean_image']:.2f} |",
        f"| the converted images as sent | {a['ssim_converted']:.4f} | {a['psnr_converted']:.2f} |",
        "",
        "*SSIM* (structural similarity, scikit-image) is 1 for a perfect copy of the original and near 0 for an "
        "unrelated image. The mean image is the floor: what an attacker scores who learnt nothing of each photo.",
        "",
    ]
    if attack_restores(a):
        lines += [
            f"**What it means: the converted photos can be {_how_restored(a)}.** The attacker's SSIM is "
            f"{gain:.2f} above the mean image's, where a protective converter keeps it within "
            f"{MAX_SSIM_OVER_MEAN_IMAGE:g} (dapter-protect's bar)"
            + (
                ""
                if a["ssim"] >= RESTORED_SSIM
                else f"; below {RESTORED_SSIM:g} its reconstructions keep the layout and colours of each photo "
                "more than its details, and an attacker trained longer on more images does better (on CIFAR-10 "
                "at λ = 0.9 the project's attack suite reached SSIM 0.93, `results/protection/`)"
            )
            + ". The lower entropy above did not hide the photos: whatever they look like, they still carry "
            f"enough to rebuild them{'' if a['ssim'] >= RESTORED_SSIM else ' in part'}, so **L_dap alone does "
            "not protect them**. A converter that does is trained "
            f"against attackers and checked by the attack suite: run `{_protect_command(config)}` (see "
            "`docs/protection.md` in the repository), which searches the protective recipes and ships only one "
            "that its attackers cannot invert.",
        ]
    else:
        lines += [
            f"**What it means: this short attack did not restore the photos** (its SSIM is {gain:+.2f} from the "
            f"mean image's, within {MAX_SSIM_OVER_MEAN_IMAGE:g}). That is no proof of protection: a stronger "
            "attacker, trained longer on more images, may do what this one did not (on CIFAR-10 at λ = 0.9 the "
            "project's attack suite restored L_dap's converted photos at SSIM 0.93, `results/protection/`). To "
            f"establish protection, run `{_protect_command(config)}` (see `docs/protection.md` in the "
            "repository): its attack suite trains every attacker at full strength.",
        ]
    return lines + [""]


def _grid_title(config, results: dict, attack: dict | None) -> str:
    r = results
    lines = [
        f"DAPter at λ = {config.lambda_:g}: target accuracy {r['accuracy_original']:.3f} → "
        f"{r['accuracy_converted']:.3f}; entropy {r['entropy_original']:.1f} → {r['entropy_converted']:.1f} bits "
        f"({100 * r['entropy_ratio']:.1f} % of the original's)"
    ]
    if attack is not None:
        lines.append(
            f"attacker ({attack['attacker']}) SSIM {attack['ssim']:.3f} vs {attack['ssim_mean_image']:.3f} for "
            f"the mean training image, on {attack['images_test']} held-out images"
        )
    return "\n".join(lines)


def _grid_caption(attack: dict | None) -> str:
    if attack is None:
        return (
            "Lower entropy is not protection: only an attacker trained on converted images shows whether they "
            "can be restored (dapter-attack-suite; docs/protection.md)."
        )
    if attack_restores(attack):
        return (
            f"The attacker {'restores' if attack['ssim'] >= RESTORED_SSIM else 'partly restores'} the converted "
            "photos: L_dap alone does not protect them. "
            f"For a protective converter, see {PROTECTIVE_PATH}."
        )
    return (
        "This short attacker did not restore the photos; that proves no protection. "
        f"For the full attack suite, see {PROTECTIVE_PATH}."
    )


def save_labelled_grid(
    path: str,
    config,
    results: dict,
    originals: np.ndarray,
    converted: np.ndarray,
    column_labels=(),
    attack: dict | None = None,
    reconstructed: np.ndarray | None = None,
):
    """Draws grid.png: named rows (originals, converted, reconstructed), each column's class, the figures.

    Returns the row labels and the column labels drawn.
    """
    rows = [originals, converted] + ([reconstructed] if reconstructed is not None else [])
    row_labels = [ROW_ORIGINALS, ROW_CONVERTED] + ([ROW_RECONSTRUCTED] if reconstructed is not None else [])
    fig = labelled_grid(
        rows,
        row_labels,
        column_labels,
        title=_grid_title(config, results, attack),
        caption=_grid_caption(attack),
    )
    save_figure(fig, path, tight=False)
    return row_labels, list(column_labels)


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


def _markdown(config, results: dict, export: dict | None, task=None, attack: dict | None = None) -> str:
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
        *(_attack_section(config, attack) if attack is not None else []),
        *_paper_thresholds(config, r),
        "![held-out originals (top row), converted"
        + (", and reconstructed by the attacker" if attack is not None else "")
        + "; each column named by its class](grid.png)",
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
    labels=None,
    attack: dict | None = None,
    reconstructed: np.ndarray | None = None,
) -> None:
    """Writes ``report.md``, ``report.json`` and ``grid.png`` into ``workdir``.

    Args:
        workdir: The train_dapter workdir.
        config: The run's DapterConfig.
        results: What ``train.train_dapter`` returned.
        originals: uint8 held-out images for the grid (the first ``GRID_IMAGES`` are shown).
        converted: Their converted versions.
        export: What ``export_tflite_lib.export_converter`` returned, if the run exported.
        task: The run's task, named in the report (a stand-in says so); its class names name the
            grid's columns.
        labels: The target labels of ``originals`` (None: the columns are not named).
        attack: A reconstruction attack on the converter (``ReconstructionResult`` as a dict), if one ran.
        reconstructed: The attacker's reconstructions of ``originals`` (the grid's third row).
    """
    n = min(GRID_IMAGES, len(originals))
    columns = [] if labels is None else [class_name(task, int(label)) for label in np.asarray(labels)[:n]]
    rows, columns = save_labelled_grid(
        os.path.join(workdir, "grid.png"),
        config,
        results,
        originals[:n],
        converted[:n],
        columns,
        attack,
        None if reconstructed is None else reconstructed[:n],
    )
    write_json(
        os.path.join(workdir, "report.json"),
        {
            "config": dataclasses.asdict(config),
            "task": task.description if task is not None else config.data.dataset,
            "stand_in_for": task.stand_in_for if task is not None else None,
            "results": results,
            "export": export,
            "attack": None
            if attack is None
            else {
                **attack,
                "ssim_over_mean_image": attack["ssim"] - attack["ssim_mean_image"],
                "max_ssim_over_mean_image": MAX_SSIM_OVER_MEAN_IMAGE,
                "restored": attack_restores(attack),
                "summary": attack_summary(attack),
            },
            "grid": {"path": "grid.png", "rows": [r.replace("\n", " ") for r in rows], "columns": columns},
        },
    )
    tmp = os.path.join(workdir, "report.md.tmp")
    with open(tmp, "w") as f:
        f.write(_markdown(config, results, export, task, attack))
    os.replace(tmp, os.path.join(workdir, "report.md"))

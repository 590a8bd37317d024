"""Table 4 of §7.2: every target's importance under every converter, normalised by row, with its margins and plot."""

import numpy as np

from dapter_tf import evaluate
from dapter_tf.analysis.saliency import mean_importance
from dapter_tf.errors import DapterError
from dapter_tf.figures import pyplot, save_figure


def normalize_rows(matrix) -> np.ndarray:
    """Table 4's normalisation: each target's row divided by its entry for its own converter (the diagonal).

    A row whose diagonal is 0 becomes NaN: nothing there can be compared with it.
    """
    matrix = np.asarray(matrix, np.float64)
    diagonal = np.diag(matrix)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(diagonal > 0, matrix / np.where(diagonal > 0, diagonal, 1.0), np.nan)


def row_margins(matrix) -> np.ndarray:
    """For each target, its own converter's importance over the largest of the other converters'.

    The paper's "at least 2.24x" is the smallest of these; a margin below 1 is a row whose own
    converter does not lead. Infinite where every other converter's importance is 0.
    """
    matrix = np.asarray(matrix, np.float64)
    n = len(matrix)
    if n < 2:
        raise DapterError("a cross-converter table needs at least two targets and converters")
    margins = []
    for i in range(n):
        others = np.delete(matrix[i], i).max()
        margins.append(matrix[i, i] / others if others > 0 else float("inf"))
    return np.array(margins)


def cross_converter_table(
    targets: dict,
    converters: dict,
    images: np.ndarray,
    labels: dict,
    class_source: str = "auto",
    layer_name: str | None = None,
) -> dict:
    """Table 4: the mean importance of every converter attached to every target.

    Args:
        targets: Name -> target model, one per task (the rows).
        converters: Name -> converter, the same names: the converter trained against that target.
        images: uint8 held-out images.
        labels: Name -> each image's label for that target's task.
        class_source: One of ``CLASS_SOURCES``.
        layer_name: The layer to explain in every target (each target's default when ``None``).

    Returns:
        ``names``, ``importance`` (mean V_D, rows targets, columns converters), ``normalized``
        (``normalize_rows``), ``margins`` (``row_margins``), ``accuracy`` (each target on each
        converter's images), ``importance_original`` and ``accuracy_original`` (each target on the
        original images), ``images``, ``images_explained`` (per target: how many got a map) and
        ``class_source``.
    """
    names = list(targets)
    if list(converters) != names:
        raise DapterError(f"targets ({', '.join(names)}) and converters ({', '.join(converters)}) must pair up by name")
    converted = {name: evaluate.convert_images(converters[name], images) for name in names}
    rows, accuracy, original, accuracy_original, explained = [], [], [], [], []
    for row in names:
        target, row_labels = targets[row], labels[row]
        v, count = mean_importance(target, images, row_labels, class_source, layer_name)
        original.append(v)
        explained.append(count)
        accuracy_original.append(evaluate.target_accuracy(target, images, row_labels))
        rows.append([mean_importance(target, converted[c], row_labels, class_source, layer_name)[0] for c in names])
        accuracy.append([evaluate.target_accuracy(target, converted[c], row_labels) for c in names])
    return {
        "names": names,
        "importance": rows,
        "normalized": normalize_rows(rows).tolist(),
        "margins": row_margins(rows).tolist(),
        "accuracy": accuracy,
        "importance_original": original,
        "accuracy_original": accuracy_original,
        "images": int(len(images)),
        "images_explained": explained,
        "class_source": class_source,
    }


def format_cross_converter_table(table: dict) -> str:
    """Table 4 as Markdown: normalised importance, each row's margin, and accuracy beside it."""
    names = table["names"]
    explained = table.get("images_explained") or [table["images"]] * len(names)
    lines = [
        "| target \\ converter | " + " | ".join(names) + " | own / best other | images explained |",
        "|---" * (len(names) + 3) + "|",
    ]
    for name, row, margin, count in zip(names, table["normalized"], table["margins"], explained):
        lines.append(f"| {name} | " + " | ".join(f"{v:.3g}" for v in row) + f" | {margin:.2f}x | {count} |")
    lines += [
        "",
        "Target accuracy on each converter's images (original images last):",
        "",
        "| target \\ converter | " + " | ".join(names) + " | original |",
        "|---" * (len(names) + 2) + "|",
    ]
    for name, row, plain in zip(names, table["accuracy"], table["accuracy_original"]):
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + f" | {plain:.3f} |")
    return "\n".join(lines)


def plot_cross_converter(table: dict, path: str, title: str) -> None:
    """Table 4 as a heat map of log10(normalised importance), each cell labelled with its value."""
    plt = pyplot()
    names = table["names"]
    values = np.asarray(table["normalized"], np.float64)
    # Zero (no evidence at all) is drawn at the smallest positive value's colour, labelled "0".
    positive = values[values > 0]
    floor = min(1e-3, float(positive.min())) if len(positive) else 1e-3
    shown = np.log10(np.clip(np.nan_to_num(values, nan=floor), floor, None))
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2.5, 1.0 * len(names) + 1.5))
    image = ax.imshow(shown, cmap="viridis", vmin=np.log10(floor), vmax=max(0.0, float(shown.max())))
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j, i, f"{values[i, j]:.2g}", ha="center", va="center", color="white" if shown[i, j] < -1 else "black"
            )
    ax.set_xticks(range(len(names)), [f"converter\n{n}" for n in names], fontsize=7)
    ax.set_yticks(range(len(names)), [f"target {n}" for n in names], fontsize=7)
    fig.colorbar(image, ax=ax, label="log10 importance / own converter's")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)

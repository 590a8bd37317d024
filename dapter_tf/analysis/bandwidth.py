"""Bandwidth (§7.4): the bytes a phone uploads for converted images against those of the originals.

The converter leaves few pixel levels (most pixels sent as 128), so a lossless encoder packs its
output far tighter than a photo: the paper reports 2.1x to 41x fewer bytes. Each image is encoded on
its own, as an app uploads it, as PNG (lossless, zlib level 9) and as JPEG (the quality is recorded
in every result). The saving is the originals' bytes over the converted images' bytes, for the whole
set (what the network carries) and image by image (its distribution).
"""

import glob
import json
import os

import keras
import numpy as np

from dapter_tf import evaluate, metrics
from dapter_tf.data import validate_images
from dapter_tf.errors import DapterError
from dapter_tf.figures import pyplot, save_figure
from dapter_tf.records.files import write_json

# The paper's range of savings (§7.4), drawn on the plot.
PAPER_SAVINGS = (2.1, 41.0)
RESULT_PREFIX = "bandwidth_"
PERCENTILES = tuple(range(0, 101, 5))


def compare_sizes(original_bytes, converted_bytes) -> dict:
    """Savings of converted images over their originals, from per-image byte counts.

    Args:
        original_bytes: (N,) bytes of each original.
        converted_bytes: (N,) bytes of each converted image, in the same order.

    Returns:
        ``bytes_original`` / ``bytes_converted`` (totals), ``saving`` (total over total: what the
        network carries), ``saving_mean`` / ``saving_median`` of the per-image savings, and
        ``saving_percentiles`` at ``PERCENTILES``.
    """
    original = np.asarray(original_bytes, np.float64)
    converted = np.asarray(converted_bytes, np.float64)
    if original.shape != converted.shape or original.ndim != 1 or not len(original):
        raise DapterError(f"need two equal, non-empty lists of sizes, got {original.shape} and {converted.shape}")
    if (converted <= 0).any() or (original <= 0).any():
        raise DapterError("every encoded image has a positive size")
    per_image = original / converted
    return {
        "bytes_original": int(original.sum()),
        "bytes_converted": int(converted.sum()),
        "saving": float(original.sum() / converted.sum()),
        "saving_mean": float(per_image.mean()),
        "saving_median": float(np.median(per_image)),
        "saving_percentiles": [float(v) for v in np.percentile(per_image, PERCENTILES)],
    }


def measure_bandwidth(
    converter: keras.Model, images: np.ndarray, jpeg_quality: int = metrics.DEFAULT_JPEG_QUALITY
) -> dict:
    """Converts ``images`` and compares the bytes of both sets as PNG and as JPEG.

    Args:
        converter: The trained converter.
        images: uint8 N x H x W x 3 originals, as the phone would otherwise send them.
        jpeg_quality: JPEG quality (1..95) for both sets.

    Returns:
        ``images``, ``side``, ``entropy_original`` / ``entropy_converted`` (mean bits, §4.1), and
        ``png`` and ``jpeg``: ``compare_sizes`` of each format.
    """
    images = validate_images(images, "bandwidth")
    metrics.check_jpeg_quality(jpeg_quality)
    converted = evaluate.convert_images(converter, images)
    result = {
        "images": int(len(images)),
        "side": int(images.shape[1]),
        "entropy_original": float(metrics.image_entropy(images).mean()),
        "entropy_converted": float(metrics.image_entropy(converted).mean()),
    }
    for image_format in metrics.IMAGE_FORMATS:
        sizes = [metrics.encoded_sizes(x, image_format, jpeg_quality) for x in (images, converted)]
        result[image_format] = compare_sizes(*sizes)
    return result


def result_path(workdir: str, name: str) -> str:
    """Where ``dapter-bandwidth`` keeps the measurements named ``name`` (a file per dataset)."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return os.path.join(workdir, f"{RESULT_PREFIX}{slug}.json")


def save_result(workdir: str, result: dict) -> str:
    """Writes one dataset's measurements (``result["name"]`` names it) and returns the file's path."""
    os.makedirs(workdir, exist_ok=True)
    path = result_path(workdir, result["name"])
    write_json(path, result)
    return path


def load_results(workdir: str) -> list:
    """Every dataset's measurements in ``workdir``, in file-name order."""
    results = []
    for path in sorted(glob.glob(os.path.join(workdir, f"{RESULT_PREFIX}*.json"))):
        with open(path) as f:
            results.append(json.load(f))
    return results


def format_table(results) -> str:
    """The bandwidth table as Markdown: a row per dataset and image side."""
    lines = [
        "| dataset | λ | side | images | entropy (bits) | PNG: saving (total) | PNG: mean | PNG: median [5 %, 95 %] "
        "| JPEG: saving (total) | JPEG: mean | JPEG: median [5 %, 95 %] |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        lambda_ = "?" if result.get("lambda") is None else f"{result['lambda']:.2f}"
        for size in result["sizes"]:
            cells = [
                result["name"],
                lambda_,
                f"{size['side']}x{size['side']}",
                str(size["images"]),
                f"{size['entropy_original']:.2f} → {size['entropy_converted']:.2f}",
            ]
            for image_format in metrics.IMAGE_FORMATS:
                measured = size[image_format]
                p = measured["saving_percentiles"]
                cells.append(f"{measured['saving']:.2f}x")
                cells.append(f"{measured['saving_mean']:.2f}x")
                cells.append(f"{measured['saving_median']:.2f}x [{p[1]:.2f}, {p[-2]:.2f}]")
            lines.append("| " + " | ".join(cells) + " |")
    qualities = sorted({r["jpeg_quality"] for r in results})
    lines.append("")
    lines.append(
        "Saving = bytes of the originals / bytes of the converted images, each image encoded on its own "
        "(total: over the whole set; mean, median and percentiles: image by image): "
        f"PNG at zlib level 9, JPEG at quality {', '.join(map(str, qualities))} (4:2:0). "
        f"The paper: {PAPER_SAVINGS[0]}x to {PAPER_SAVINGS[1]:g}x."
    )
    return "\n".join(lines)


def plot_savings(results, path: str) -> None:
    """The distribution of per-image savings (one curve per dataset and side), PNG beside JPEG."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, image_format in zip(axes, metrics.IMAGE_FORMATS):
        for i, result in enumerate(results):
            for k, size in enumerate(result["sizes"]):
                measured = size[image_format]
                ax.plot(
                    measured["saving_percentiles"],
                    np.array(PERCENTILES) / 100.0,
                    color=colours[i % len(colours)],
                    linestyle="-" if k == 0 else "--",
                    label=f"{result['name']} {size['side']}px (total {measured['saving']:.1f}x)",
                )
        for bound in PAPER_SAVINGS:
            ax.axvline(bound, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks([0.5, 1, 2, 5, 10, 20, 50], ["0.5", "1", "2", "5", "10", "20", "50"])
        ax.set_xlabel("bytes of the original / bytes of the converted image")
        quality = f", quality {results[0]['jpeg_quality']}" if image_format == "jpeg" and results else ""
        ax.set_title(
            f"{image_format.upper()}{quality}; dotted: the paper's {PAPER_SAVINGS[0]}x and {PAPER_SAVINGS[1]:g}x",
            fontsize=9,
        )
        ax.legend(fontsize=6, loc="lower right")
    axes[0].set_ylabel("fraction of images saving at most x")
    save_figure(fig, path)

r"""Export benchmark: the Fig. 3 converter's latency, MACs and file sizes at 224x224, side by side in one run.

Prints, from one run on this machine (every timing at --num_threads threads, on a real image):
  * file sizes of the float32 and full-int8 (uint8 pixel I/O) .tflite files;
  * latency of the Keras converter at batch 1 under tf.function, of the float32 file and of the
    int8 file (ai_edge_litert, XNNPACK), as exported (transposed convolutions rewritten into their
    exact sub-pixel form) and with TFLite's own TRANSPOSE_CONV, and the ratios the export targets
    are stated in: int8 / float32 <= 0.5, float32 TFLite / Keras <= 0.5, int8 file <= 150 KB;
  * the converter's MACs against this CPU's peak, measured with a compute-bound 3x3 convolution
    (128 -> 128 channels at 56x56) in the same runtime and thread count;
  * the per-layer cost (each layer as its own .tflite on the activations the converter feeds it);
  * the same Keras / float32 ratio at --small_size, where Keras' per-call overhead dominates.

The images are the embedded CIFAR-10 sample resized to --image_size. --converter takes a trained
converter; otherwise --architecture is timed with seeded random weights (its latency does not depend
on what it learned): the Fig. 3 converter (24/48/96), its efficient form on 4x4 pixel patches
(fig3_patches, 48/96/192; --patch for other sides), its split form (fig3_split: a thin
full-resolution path, the rest on the patches), or the block encoder of dapter-protect's wide rungs
(48/96/192, --block).

  .venv/bin/python bench/bench_export.py [--num_threads=1] [--architecture=fig3_patches] \
      [--output_json=bench_export.json]
"""

import json
import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli import runner  # noqa: E402  (the repository root is on the path only now)

_CONVERTER = flags.DEFINE_string(
    "converter", "", "A trained converter (.keras file or dapter-train-dapter workdir); empty: --architecture, seeded random."
)
_ARCHITECTURE = flags.DEFINE_enum(
    "architecture",
    "fig3",
    ["fig3", "fig3_patches", "fig3_split", "block_encoder"],
    "Without --converter, the converter timed with seeded random weights: fig3 (the paper's, 24/48/96), "
    "fig3_patches (its efficient form, 48/96/192), fig3_split (its split form, 48/96/192 on the patches) "
    "or block_encoder (48/96/192, blocks of --block).",
)
_BLOCK = flags.DEFINE_integer("block", 32, "The block side of --architecture=block_encoder.")
_PATCH = flags.DEFINE_integer(
    "patch", 4, "The patch side of --architecture=fig3_patches or fig3_split (2, 4, 8 or 16)."
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Side of the square images timed (a multiple of 4).")
_SMALL_SIZE = flags.DEFINE_integer("small_size", 32, "A second, small side for the Keras / TFLite ratio (0: skip).")
_NUM_THREADS = flags.DEFINE_integer("num_threads", 1, "Threads for TFLite and for TensorFlow (intra-op).")
_WARMUP_RUNS = flags.DEFINE_integer("warmup_runs", 5, "Warm-up runs before timing each model.")
_NUM_RUNS = flags.DEFINE_integer("num_runs", 30, "Timed runs of each model.")
_LAYER_RUNS = flags.DEFINE_integer("layer_runs", 10, "Timed runs of each single-layer file (0: no per-layer table).")
_CALIBRATION_STEPS = flags.DEFINE_integer("calibration_steps", 32, "Real images calibrating the int8 files.")
_OUTPUT_JSON = flags.DEFINE_string("output_json", "", "Also write every figure to this JSON file.")
_SAVE_TFLITE_DIR = flags.DEFINE_string(
    "save_tflite_dir",
    "",
    "Also write the timed .tflite files here (converter_<size>_<mode>.tflite), e.g. to time them on "
    "phones with dapter-adb-benchmark.",
)

KB = 1000
TARGET_INT8_TO_FLOAT32 = 0.5
TARGET_FLOAT32_TO_KERAS = 0.5
TARGET_INT8_BYTES = 150 * KB


def _verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else f"MISSED by {value / limit:.2f}x"


def main():
    from export.benchmark import benchmark_lib

    # TensorFlow fixes its thread pools at its first op: set them before anything runs.
    benchmark_lib.configure_tensorflow_threads(_NUM_THREADS.value)
    import keras
    import numpy as np
    import tensorflow as tf

    from dapter_tf import data, models
    from dapter_tf.analysis.recipe_search import WIDE_FILTERS
    from dapter_tf.models import check_image_size, strip_output_levels
    from export.tflite import export_tflite_lib
    from export.tflite.subpixel import subpixel_upsampling

    size = _IMAGE_SIZE.value
    check_image_size(size, size)
    config = benchmark_lib.BenchmarkConfig(_NUM_THREADS.value, _WARMUP_RUNS.value, _NUM_RUNS.value).validate()
    if _CONVERTER.value:
        converter, source = models.load_converter(_CONVERTER.value), _CONVERTER.value
    else:
        keras.utils.set_random_seed(0)
        converter, source = {
            "fig3": lambda: (models.build_converter(), "Fig. 3 converter (24, 48, 96)"),
            "fig3_patches": lambda: (
                models.build_patch_converter(patch=_PATCH.value),
                f"Fig. 3 on {_PATCH.value}x{_PATCH.value} patches (48, 96, 192)",
            ),
            "fig3_split": lambda: (
                models.build_split_converter(patch=_PATCH.value),
                f"Fig. 3 split on {_PATCH.value}x{_PATCH.value} patches (8 at full resolution; 48, 96, 192)",
            ),
            "block_encoder": lambda: (
                models.build_block_converter(WIDE_FILTERS, _BLOCK.value),
                f"block encoder (48, 96, 192), b={_BLOCK.value}",
            ),
        }[_ARCHITECTURE.value]()
        source += ", seeded random weights"
    samples = data.load_embedded("test").images[: _CALIBRATION_STEPS.value + 1]

    def resized(side):
        return tf.image.resize(samples, (side, side)).numpy().round().clip(0, 255).astype(np.uint8)

    images = resized(size)
    calibration, image = images[:-1], images[-1]
    value = benchmark_lib.image_input(image)
    out = {"converter": source, "image_size": size, "config": config.__dict__, "cpu": benchmark_lib.cpu_name()}

    print(f"converter: {source}, {converter.count_params():,} parameters")
    print(f"CPU: {out['cpu']}, {os.cpu_count()} cores; {config.num_threads} thread(s), real image, XNNPACK on\n")
    files = {}
    for label, mode, subpixel in (
        ("float32", "float32", True),
        ("int8", "int8", True),
        ("float32, TRANSPOSE_CONV", "float32", False),
        ("int8, TRANSPOSE_CONV", "int8", False),
    ):
        files[label] = export_tflite_lib.convert_to_tflite(
            converter, mode, (size, size), calibration, len(calibration), subpixel=subpixel
        )
    if _SAVE_TFLITE_DIR.value:
        os.makedirs(_SAVE_TFLITE_DIR.value, exist_ok=True)
        for label, model_bytes in files.items():
            name = f"converter_{size}_{label.replace(', ', '_').lower()}.tflite"
            with open(os.path.join(_SAVE_TFLITE_DIR.value, name), "wb") as f:
                f.write(model_bytes)
    macs = sum(benchmark_lib.tflite_macs(files["float32"]).values())
    latency = {"keras (tf.function, batch 1)": benchmark_lib.benchmark_keras(converter, config, value)}
    for label, model_bytes in files.items():
        latency[f"tflite {label}"] = benchmark_lib.benchmark_tflite(model_bytes, config, value)
    out["macs"] = macs
    out["bytes"] = {label: len(b) for label, b in files.items()}
    out["latency"] = latency

    print(f"MACs at {size}x{size}: {macs / 1e9:.3f} G\n")
    columns = ("bytes", "init ms", "first ms", "avg ms", "p50", "p90", "std")
    print(f"{'model':40s} " + " ".join(f"{c:>9s}" for c in columns))
    for label, stats in latency.items():
        size_text = f"{out['bytes'][label[7:]]:,}" if label.startswith("tflite ") else ""
        times = [stats[k] / 1e3 for k in ("init_us", "first_inference_us", "avg_us", "p50_us", "p90_us", "std_us")]
        print(f"{label:40s} {size_text:>9s} " + " ".join(f"{t:9.2f}" for t in times))

    avg = {label: stats["avg_us"] for label, stats in latency.items()}
    ratios = {
        "int8 / float32": avg["tflite int8"] / avg["tflite float32"],
        "float32 TFLite / Keras": avg["tflite float32"] / avg["keras (tf.function, batch 1)"],
        "int8 / float32, TRANSPOSE_CONV": avg["tflite int8, TRANSPOSE_CONV"] / avg["tflite float32, TRANSPOSE_CONV"],
        "float32 TFLite / Keras, TRANSPOSE_CONV": avg["tflite float32, TRANSPOSE_CONV"]
        / avg["keras (tf.function, batch 1)"],
    }
    out["ratios"] = ratios
    print(f"\nTargets at {size}x{size} (as exported):")
    for text, value, limit, shown in (
        ("int8 / float32 latency", ratios["int8 / float32"], TARGET_INT8_TO_FLOAT32, "<= 0.5"),
        ("float32 TFLite / Keras batch-1", ratios["float32 TFLite / Keras"], TARGET_FLOAT32_TO_KERAS, "<= 0.5"),
        ("int8 file, bytes", out["bytes"]["int8"], TARGET_INT8_BYTES, "<= 150 KB"),
    ):
        value_text = f"{value:,}" if isinstance(value, int) else f"{value:.3f}"
        print(f"  {text:32s} {value_text:>10s}  ({shown}: {_verdict(value, limit)})")
    print(
        f"With TFLite's own TRANSPOSE_CONV: int8 / float32 {ratios['int8 / float32, TRANSPOSE_CONV']:.3f}, "
        f"float32 / Keras {ratios['float32 TFLite / Keras, TRANSPOSE_CONV']:.3f}, int8 file "
        f"{out['bytes']['int8, TRANSPOSE_CONV']:,} bytes"
    )

    peak = benchmark_lib.measure_peak(config)
    out["peak_gmacs"] = peak
    print(f"\nMACs against this CPU's peak (a 3x3 conv, 128 -> 128 channels at 56x56, {config.num_threads} thread(s)):")
    for mode in ("float32", "int8"):
        achieved = macs / avg[f"tflite {mode}"] / 1e3
        ideal_ms = macs / peak[mode] / 1e6
        out[f"{mode}_gmacs"] = achieved
        print(
            f"  {mode:7s}: peak {peak[mode]:6.1f} GMAC/s -> {ideal_ms:5.2f} ms ideal for {macs / 1e9:.3f} GMAC; "
            f"the converter runs at {achieved:6.1f} GMAC/s, {100 * achieved / peak[mode]:4.1f} % of peak "
            f"({avg[f'tflite {mode}'] / 1e3:.2f} ms)"
        )

    if _LAYER_RUNS.value:
        layer_config = benchmark_lib.BenchmarkConfig(config.num_threads, 2, _LAYER_RUNS.value)
        exported = subpixel_upsampling(strip_output_levels(converter))
        layers = benchmark_lib.benchmark_layers(exported, calibration[:8], image, layer_config)
        out["layers"] = layers
        total = {mode: sum(row[f"{mode}_us"] for row in layers) for mode in ("float32", "int8")}
        print("\nPer-layer cost (each layer as its own .tflite, as exported; the sum includes each file's own copies):")
        header = ("MMAC", "float32 us", "GMAC/s", "int8 us", "GMAC/s", "int8 share")
        print(f"  {'layer':16s} " + " ".join(f"{c:>10s}" for c in header))
        for row in layers:
            f_rate = row["macs"] / row["float32_us"] / 1e3
            i_rate = row["macs"] / row["int8_us"] / 1e3
            share = 100 * row["int8_us"] / total["int8"]
            print(
                f"  {row['layer']:16s} {row['macs'] / 1e6:10.1f} {row['float32_us']:10.0f} {f_rate:10.1f} "
                f"{row['int8_us']:10.0f} {i_rate:10.1f} {share:9.1f}%"
            )
        print(f"  {'sum':16s} {macs / 1e6:10.1f} {total['float32']:10.0f} {'':10s} {total['int8']:10.0f}")

    if _SMALL_SIZE.value:
        small = _SMALL_SIZE.value
        check_image_size(small, small)
        small_value = benchmark_lib.image_input(resized(small)[-1])
        small_float = export_tflite_lib.convert_to_tflite(converter, "float32", (small, small))
        small_keras = benchmark_lib.benchmark_keras(converter, config, small_value)["avg_us"]
        small_lite = benchmark_lib.benchmark_tflite(small_float, config, small_value)["avg_us"]
        out["small"] = {"image_size": small, "keras_us": small_keras, "tflite_float32_us": small_lite}
        print(
            f"\nAt {small}x{small}: Keras {small_keras:.0f} us, float32 TFLite {small_lite:.0f} us, "
            f"ratio {small_lite / small_keras:.3f} (per-call overhead, not arithmetic, dominates here)"
        )

    if _OUTPUT_JSON.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT_JSON.value)), exist_ok=True)
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump(out, f, indent=2, sort_keys=True)
        print(f"\nwrote {_OUTPUT_JSON.value}")


if __name__ == "__main__":
    runner.run(main)

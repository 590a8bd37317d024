r"""Converters against the yardstick: int8 latency / MobileNetV2 1.0 int8 at 224x224, with GMAC, bytes and peak.

Every model is exported as a full-int8 ``.tflite`` with uint8 pixels in and out (the file a phone
runs) at --image_size, and all of them are timed in one run, interleaved (``benchmark_lib
.benchmark_interleaved``: one invoke of each in turn), on one real image, with XNNPACK at
--num_threads threads. The yardstick is ``keras.applications.MobileNetV2`` 1.0 (``weights=None``,
``export.benchmark.yardstick``). The converters:

  * the Fig. 3 converter (24/48/96), the paper's, its wide form (48/96/192), and its two forms for
    phones: the same layers on 4x4 pixel patches (``models.build_patch_converter``, 48/96/192) and
    its split form (``models.build_split_converter``: 8 channels at full resolution, the rest so);
  * the block encoder of ``dapter-protect``'s ladder at each --blocks side, narrow (16/32/64) and wide;
  * the converter each committed reference release ships (``results/release/*/converter.keras``,
    trained weights), calibrated on embedded CIFAR-10 images resized to --image_size.

The untrained ones have seeded random weights (cost does not depend on what a model learned). The
ratio is of the fastest runs (a shared machine's load only ever adds time), the medians' beside it.
Each row also gives the share of this CPU's int8 peak (``benchmark_lib.measure_peak``) the file
reaches, and what the ratio implies on the phones whose MobileNetV2 latency is published: an
estimate, not a measurement.

  .venv/bin/python bench/bench_yardstick.py --output_json=results/export/yardstick.json \
      > results/export/yardstick.txt
"""

import glob
import json
import os
import re
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli import runner  # noqa: E402  (the repository root is on the path only now)
from cli.flags_lib import parse_ints  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Side of the square images (a multiple of every block side).")
_BLOCKS = flags.DEFINE_list("blocks", "32,8", "Block sides b of the block encoders to time (empty: none).")
_RELEASES = flags.DEFINE_string(
    "releases", os.path.join(_REPO, "results", "release"), "Time the converter.keras of each bundle in this folder."
)
_NUM_THREADS = flags.DEFINE_integer("num_threads", 1, "Threads for TFLite.")
_WARMUP_RUNS = flags.DEFINE_integer("warmup_runs", 3, "Warm-up runs of each file.")
_NUM_RUNS = flags.DEFINE_integer("num_runs", 30, "Timed runs of each file, interleaved.")
_OUTPUT_JSON = flags.DEFINE_string("output_json", "", "Also write every figure to this JSON file.")
_SAVE_TFLITE_DIR = flags.DEFINE_string(
    "save_tflite_dir",
    "",
    "Also keep every timed int8 file here, for phones: the yardstick as mobilenet_v2_1.0_int8.tflite "
    "(dapter-adb-benchmark --yardstick) and each converter under its row's name.",
)


def main():
    from export.benchmark import benchmark_lib

    benchmark_lib.configure_tensorflow_threads(_NUM_THREADS.value)
    import keras
    import numpy as np
    import tensorflow as tf

    from dapter_tf import data, models
    from dapter_tf.analysis import recipe_search
    from dapter_tf.models import (
        build_block_converter,
        build_converter,
        build_patch_converter,
        build_split_converter,
        check_image_size,
        check_output_block,
    )
    from export.benchmark import yardstick
    from export.tflite import export_tflite_lib

    size = _IMAGE_SIZE.value
    blocks = parse_ints(_BLOCKS.value, "--blocks") if _BLOCKS.value else []
    for block in blocks:
        check_output_block(block)
        check_image_size(size, size, block)
    config = benchmark_lib.BenchmarkConfig(_NUM_THREADS.value, _WARMUP_RUNS.value, _NUM_RUNS.value).validate()
    sample = data.load_embedded("train").images[:200]
    calibration = tf.image.resize(sample, (size, size)).numpy().round().clip(0, 255).astype(np.uint8)
    value = benchmark_lib.image_input(calibration[0])

    keras.utils.set_random_seed(0)
    converters = [
        ("Fig. 3 24/48/96 (the paper's)", build_converter((24, 48, 96))),
        ("Fig. 3 48/96/192 (wide)", build_converter((48, 96, 192))),
        ("Fig. 3 on 4x4 patches 48/96/192", build_patch_converter()),
        ("Fig. 3 split, 8 + 4x4 patches 48/96/192", build_split_converter()),
    ]
    for block in blocks:
        for filters in (recipe_search.NARROW_FILTERS, recipe_search.WIDE_FILTERS):
            text = "/".join(map(str, filters))
            converters.append((f"block encoder {text}, b={block}", build_block_converter(filters, block)))
    for path in sorted(glob.glob(os.path.join(_RELEASES.value, "*", "converter.keras"))):
        bundle = os.path.basename(os.path.dirname(path))
        converters.append((f"{bundle} (shipped, trained)", models.load_converter(path)))

    print(f"exporting {len(converters) + 1} int8 files at {size}x{size} ...", file=sys.stderr, flush=True)
    files = {yardstick.YARDSTICK_NAME: yardstick.export_yardstick((size, size))}
    for label, converter in converters:
        files[label] = export_tflite_lib.convert_to_tflite(converter, "int8", (size, size), calibration)
    if _SAVE_TFLITE_DIR.value:
        os.makedirs(_SAVE_TFLITE_DIR.value, exist_ok=True)
        for label, model_bytes in files.items():
            name = yardstick.YARDSTICK_FILE if label == yardstick.YARDSTICK_NAME else f"{_file_stem(label)}_int8.tflite"
            with open(os.path.join(_SAVE_TFLITE_DIR.value, name), "wb") as f:
                f.write(model_bytes)
    peak = benchmark_lib.measure_peak(config)
    stats = benchmark_lib.benchmark_interleaved(files, config, {label: value for label in files if label != yardstick.YARDSTICK_NAME})
    base = stats[yardstick.YARDSTICK_NAME]

    rows = []
    for label, model_bytes in files.items():
        s = stats[label]
        gmac = sum(benchmark_lib.tflite_macs(model_bytes).values()) / 1e9
        ratio = s["min_us"] / base["min_us"]
        rows.append(
            {
                "model": label,
                "gmac": gmac,
                "bytes": len(model_bytes),
                "min_ms": s["min_us"] / 1e3,
                "median_ms": s["p50_us"] / 1e3,
                "ratio": ratio,
                "median_ratio": s["p50_us"] / base["p50_us"],
                "peak_fraction": gmac / (s["min_us"] / 1e6) / peak["int8"],
                "phones": yardstick.implied_phone_ms(ratio),
            }
        )

    phone = yardstick.PUBLISHED_LATENCIES[0]
    print(
        f"int8 latency against {yardstick.YARDSTICK_NAME} at {size}x{size}, uint8 pixels in and out, ai_edge_litert\n"
        f"with XNNPACK, {config.num_threads} thread(s), {config.num_runs} interleaved runs of each on one real image, "
        f"on {benchmark_lib.cpu_name()}.\n"
        f"Ratios compare the fastest runs (medians' beside). This CPU's int8 peak: {peak['int8']:.1f} GMAC/s "
        f"(a 3x3 conv, 128 -> 128 at 56x56).\n"
        f"Phone column: an estimate, the ratio times {phone.ms:g} ms ({phone.device}, {phone.threads} threads; "
        f"{phone.source}).\n"
    )
    print(
        f"{'model':40s} {'GMAC':>7s} {'int8 bytes':>11s} {'min ms':>8s} {'median ms':>9s} "
        f"{'ratio':>6s} {'med.':>6s} {'% peak':>7s} {'est. ' + phone.device:>14s}"
    )
    for r in rows:
        print(
            f"{r['model']:40s} {r['gmac']:7.3f} {r['bytes']:11,d} {r['min_ms']:8.2f} {r['median_ms']:9.2f} "
            f"{r['ratio']:6.2f} {r['median_ratio']:6.2f} {100 * r['peak_fraction']:6.1f}% "
            f"{r['phones'][0]['estimate_ms']:11.1f} ms"
        )
    if _OUTPUT_JSON.value:
        out = {
            "image_size": size,
            "config": config.__dict__,
            "cpu": benchmark_lib.cpu_name(),
            "peak_gmacs": peak,
            "rows": rows,
        }
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {_OUTPUT_JSON.value}")


def _file_stem(label: str) -> str:
    """A row's name as a file name: "block encoder 16/32/64, b=32" -> "block_encoder_16_32_64_b32"."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", label.replace("b=", "b"))).strip("_").lower()


if __name__ == "__main__":
    runner.run(main)

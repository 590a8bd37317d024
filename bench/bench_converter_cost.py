r"""Converter cost: the block encoder against the Fig. 3 converter with the same coarse output code, at 224x224.

For each block side b of --blocks, builds the block encoder (``models.build_block_converter``) and
the Fig. 3 converter with ``OutputBlocks(b)``, each at --filters and at --wide_filters, with seeded
random weights (their cost does not depend on what they learned), converts each to a float32
``.tflite`` at --image_size and prints one table: MACs counted from the file
(``benchmark_lib.tflite_macs``), parameters, the MACs' ratio to the plain Fig. 3 converter's
(--filters, no blocks: 1.138 GMAC at 224x224), and the host latency (ai_edge_litert with XNNPACK,
--num_threads threads, on a real image) as a ratio to that converter's, timed in the same run. The
ratio is of the fastest runs: on a shared machine other processes' load only ever adds time, so
the minimum is the steadiest figure (the median is shown beside it).

  .venv/bin/python bench/bench_converter_cost.py --output_json=results/export/converter_cost.json \
      > results/export/converter_cost.txt
"""

import json
import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli import runner  # noqa: E402  (the repository root is on the path only now)
from cli.flags_lib import parse_ints  # noqa: E402

_BLOCKS = flags.DEFINE_list("blocks", "4,8,16,32", "Block sides b of the coarse output code (powers of two >= 2).")
_FILTERS = flags.DEFINE_list("filters", "24,48,96", "Both converters' channels (the Fig. 3 converter's default).")
_WIDE_FILTERS = flags.DEFINE_list(
    "wide_filters", "48,96,192", "Their channels in the wide form the protective recipes use (empty: skip)."
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Side of the square images (a multiple of 4 and of every b).")
_NUM_THREADS = flags.DEFINE_integer("num_threads", 1, "Threads for TFLite.")
_WARMUP_RUNS = flags.DEFINE_integer("warmup_runs", 3, "Warm-up runs before timing each file.")
_NUM_RUNS = flags.DEFINE_integer("num_runs", 20, "Timed runs of each file.")
_OUTPUT_JSON = flags.DEFINE_string("output_json", "", "Also write every figure to this JSON file.")


def main():
    from export.benchmark import benchmark_lib

    benchmark_lib.configure_tensorflow_threads(_NUM_THREADS.value)
    import keras
    import numpy as np
    import tensorflow as tf

    from dapter_tf import data
    from dapter_tf.models import build_block_converter, build_converter, check_image_size, check_output_block
    from export.tflite import export_tflite_lib

    size = _IMAGE_SIZE.value
    blocks = parse_ints(_BLOCKS.value, "--blocks")
    widths = [parse_ints(_FILTERS.value, "--filters")]
    if _WIDE_FILTERS.value:
        widths.append(parse_ints(_WIDE_FILTERS.value, "--wide_filters"))
    for block in blocks:
        check_output_block(block)
        check_image_size(size, size, block)
    config = benchmark_lib.BenchmarkConfig(_NUM_THREADS.value, _WARMUP_RUNS.value, _NUM_RUNS.value).validate()
    sample = data.load_embedded("test").images[:1]
    image = tf.image.resize(sample, (size, size)).numpy().round().clip(0, 255).astype(np.uint8)[0]
    value = benchmark_lib.image_input(image)

    # Every converter is built first, so a bad block side is one error line before anything is timed.
    keras.utils.set_random_seed(0)
    models = [("Fig. 3 (reference)", "fig3", widths[0], 1, build_converter(widths[0]))]
    for block in blocks:
        for filters in widths:
            text = "/".join(map(str, filters))
            encoder = build_block_converter(filters, block)
            models.append((f"block encoder {text}, b={block}", "block_encoder", filters, block, encoder))
            fig3 = build_converter(filters, output_block=block)
            models.append((f"Fig. 3 {text}, b={block}", "fig3", filters, block, fig3))
    rows = []
    for label, architecture, filters, block, converter in models:
        lite = export_tflite_lib.convert_to_tflite(converter, "float32", (size, size))
        stats = benchmark_lib.benchmark_tflite(lite, config, value)
        rows.append(
            {
                "label": label,
                "architecture": architecture,
                "filters": list(filters),
                "block": block,
                "macs": sum(benchmark_lib.tflite_macs(lite).values()),
                "parameters": int(converter.count_params()),
                "p50_us": stats["p50_us"],
                "min_us": stats["min_us"],
                "avg_us": stats["avg_us"],
            }
        )
    reference = rows[0]
    for row in rows:
        row["macs_ratio"] = row["macs"] / reference["macs"]
        row["latency_ratio"] = row["min_us"] / reference["min_us"]

    print(f"Converter cost at {size}x{size}: float32 .tflite, MACs counted from the file; latency with ai_edge_litert")
    print(f"(XNNPACK, {config.num_threads} thread(s), {config.num_runs} runs on a real image), in one run. Ratios are")
    print(f"to the plain Fig. 3 converter ({'/'.join(map(str, widths[0]))}, no blocks); latency ratios compare the fastest runs.\n")
    header = ("GMAC", "params", "MAC ratio", "min ms", "median ms", "lat. ratio")
    print(f"{'converter':32s} " + " ".join(f"{c:>10s}" for c in header))
    for row in rows:
        print(
            f"{row['label']:32s} {row['macs'] / 1e9:10.4f} {row['parameters']:10,d} {row['macs_ratio']:10.3f} "
            f"{row['min_us'] / 1e3:10.2f} {row['p50_us'] / 1e3:10.2f} {row['latency_ratio']:10.3f}"
        )
    if _OUTPUT_JSON.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT_JSON.value)), exist_ok=True)
        out = {"image_size": size, "config": config.__dict__, "cpu": benchmark_lib.cpu_name(), "rows": rows}
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump(out, f, indent=2, sort_keys=True)
        print(f"\nwrote {_OUTPUT_JSON.value}")


if __name__ == "__main__":
    runner.run(main)

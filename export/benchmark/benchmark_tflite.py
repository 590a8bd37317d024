r"""Times converter .tflite files on this host with the conventions of TFLite's benchmark_model, beside Keras.

For each file in --graph it reports, in microseconds, what benchmark_model prints: Init (building
the interpreter and allocating tensors), First inference, Warmup (avg), and the average, min, max,
std, p50 and p90 of --num_runs timed runs, at --num_threads threads, with XNNPACK on or off
(--use_xnnpack). With --keras it also times the Keras converter at batch 1 under tf.function, in
the same run and with TensorFlow held to the same thread count, and prints each file's latency
as a ratio of it. With --yardstick (the default) it also times MobileNetV2 1.0 as a full-int8 file
(export.benchmark.yardstick: uint8 pixels in and out, seeded random weights) at the files' input size,
interleaved with them (one run of each in turn), and prints each file's fastest run as a ratio of
the yardstick's: the figure app teams can set beside what they know runs on their phones. Every model runs on the same real image: --image, or by default a picture of the
embedded CIFAR-10 sample resized to the files' input size (full-int8 latency depends on the data,
so random pixels, benchmark_model's default, are not used).

Writes --output_json and --output_csv (one row per model) when given.

Example:
  dapter-benchmark-tflite --graph=runs/dapter/export/converter_float32.tflite,runs/dapter/export/converter_int8.tflite \
      --keras=runs/dapter --num_threads=1 --output_json=bench.json --output_csv=bench.csv
"""

import json
import os

from absl import flags

from cli import runner

_GRAPH = flags.DEFINE_list(
    "graph", None, "The .tflite files to time (benchmark_model's --graph), comma-separated.", required=True
)
_KERAS = flags.DEFINE_string(
    "keras",
    "",
    "Also time this Keras converter (.keras file or dapter-train-dapter workdir) at batch 1 under tf.function.",
)
_NUM_THREADS = flags.DEFINE_integer(
    "num_threads", 1, "Threads for the interpreter, and TensorFlow's intra-op threads (>= 1)."
)
_WARMUP_RUNS = flags.DEFINE_integer(
    "warmup_runs", 1, "Runs before the timed ones (>= 1); the first is reported as the first inference."
)
_NUM_RUNS = flags.DEFINE_integer("num_runs", 50, "Timed runs (>= 1).")
_USE_XNNPACK = flags.DEFINE_bool(
    "use_xnnpack",
    True,
    "Run through the XNNPACK delegate (ai_edge_litert's default); false: TFLite's built-in kernels.",
)
_YARDSTICK = flags.DEFINE_bool(
    "yardstick",
    True,
    "Also time MobileNetV2 1.0 int8 at the files' input size, interleaved with them, and give each file's "
    "latency as a ratio of it (building it takes about a minute at 224x224).",
)
_IMAGE = flags.DEFINE_string(
    "image", "", "A PNG or JPEG image to run on, resized to the input size; empty: an embedded CIFAR-10 test image."
)
_OUTPUT_JSON = flags.DEFINE_string("output_json", "", "Write the results to this JSON file.")
_OUTPUT_CSV = flags.DEFINE_string("output_csv", "", "Write one CSV row per model to this file.")


def _image(size):
    import numpy as np
    import tensorflow as tf

    from dapter_tf import DapterError, data

    if _IMAGE.value:
        if not os.path.isfile(_IMAGE.value):
            raise DapterError(f"--image {_IMAGE.value} does not exist")
        try:
            image = tf.io.decode_image(tf.io.read_file(_IMAGE.value), channels=3, expand_animations=False)
        except tf.errors.InvalidArgumentError as e:
            raise DapterError(f"--image {_IMAGE.value} is not a PNG, JPEG, GIF or BMP image") from e
    else:
        image = data.load_embedded("test").images[0]
    return tf.image.resize(image, size).numpy().round().clip(0, 255).astype(np.uint8)


def _input_size(model_bytes: bytes, path: str):
    from ai_edge_litert.interpreter import Interpreter

    from dapter_tf import DapterError

    shape = Interpreter(model_content=model_bytes).get_input_details()[0]["shape"]
    if len(shape) != 4 or shape[-1] != 3:
        raise DapterError(f"{path} is not a converter: its input has shape {list(shape)}, not 1 x H x W x 3")
    return int(shape[1]), int(shape[2])


def main():
    from export.benchmark import benchmark_lib

    # TensorFlow fixes its thread pools at its first op: hold it to the interpreter's thread count.
    benchmark_lib.configure_tensorflow_threads(_NUM_THREADS.value)
    from dapter_tf import DapterError, models
    from dapter_tf.records.files import atomic_file

    config = benchmark_lib.BenchmarkConfig(
        _NUM_THREADS.value, _WARMUP_RUNS.value, _NUM_RUNS.value, _USE_XNNPACK.value
    ).validate()
    files = {}
    for path in _GRAPH.value:
        if not os.path.isfile(path):
            raise DapterError(f"--graph {path} does not exist")
        with open(path, "rb") as f:
            files[path] = f.read()
    try:
        sizes = {path: _input_size(model_bytes, path) for path, model_bytes in files.items()}
    except ValueError as e:
        raise DapterError(f"a --graph file is not a .tflite model: {e}") from e
    if len(set(sizes.values())) > 1:
        raise DapterError(f"the --graph files take different input sizes: {sizes}")
    size = next(iter(sizes.values()))
    value = benchmark_lib.image_input(_image(size))
    converter = models.load_converter(_KERAS.value) if _KERAS.value else None

    rows = []
    if converter is not None:
        rows.append(
            {"model": f"keras:{_KERAS.value}", "bytes": None, **benchmark_lib.benchmark_keras(converter, config, value)}
        )
    if _YARDSTICK.value:
        from export.benchmark import yardstick

        if min(size) < 32:
            raise DapterError(f"the MobileNetV2 yardstick needs images of at least 32x32, got {size[0]}x{size[1]}")
        print(f"building {yardstick.YARDSTICK_NAME} at {size[0]}x{size[1]} ...", flush=True)
        timed = {**files, yardstick.YARDSTICK_NAME: yardstick.export_yardstick(size)}
        # Interleaved, so a shared machine's passing load falls on the yardstick and the files alike.
        stats = benchmark_lib.benchmark_interleaved(timed, config, {path: value for path in files})
    else:
        timed = files
        stats = {path: benchmark_lib.benchmark_tflite(model_bytes, config, value) for path, model_bytes in files.items()}
    rows.extend({"model": path, "bytes": len(model_bytes), **stats[path]} for path, model_bytes in timed.items())
    keras_avg = rows[0]["avg_us"] if converter is not None else None
    yardstick_min = stats[yardstick.YARDSTICK_NAME]["min_us"] if _YARDSTICK.value else None
    for row in rows:
        row["ratio_to_keras"] = row["avg_us"] / keras_avg if keras_avg else None
        row["ratio_to_yardstick"] = row["min_us"] / yardstick_min if yardstick_min else None
        print(benchmark_lib.format_benchmark_line(row))
    if _OUTPUT_JSON.value:
        with atomic_file(_OUTPUT_JSON.value, "w") as f:
            json.dump({"image_size": list(size), "config": config.__dict__, "models": rows}, f, indent=2)
    if _OUTPUT_CSV.value:
        with atomic_file(_OUTPUT_CSV.value, "w") as f:
            f.write(benchmark_lib.to_csv(rows))


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

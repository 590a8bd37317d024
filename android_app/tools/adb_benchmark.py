r"""Benchmarks converter .tflite files on attached Android phones with the harness app, over adb.

For every phone (--serial, or --all_devices, or the only one attached) and every --model: pushes the
model to --remote_dir, installs --apk if given, starts the harness Activity with `am start -W`,
waits up to --timeout_s for its result JSON and pulls it into --output_dir, then appends one row to
--output_dir/phones.csv and rewrites --output_dir/phones.md, a table comparable across phones and
with the host's `dapter-benchmark-tflite`. With --benchmark_model (TFLite's native benchmark_model
binary for the phone's ABI) it also runs that with the same threads, runs and delegate, and puts
its "Inference timings in us" beside the app's.

With --yardstick (MobileNetV2 1.0 int8 at the same input size) the app times it in turn with each
model, and the table gives both latencies and their ratio: the phone's figure to set beside the
host's (bench/bench_yardstick.py, dapter-benchmark-tflite).

Checks first, and stops with one error line, when adb is missing, no phone is attached, a phone is
unauthorized or offline, several are attached without --serial or --all_devices, or a flag is out
of range; a phone whose run fails gets its own error line, and the others still run.

Example (every attached phone, int8 and float32 converters, 4 threads):
  python -m android_app.tools.adb_benchmark --all_devices \
      --model=release/cifar10/converter_int8.tflite,release/cifar10/converter_float32.tflite \
      --apk=android_app/app/build/outputs/apk/release/app-release.apk --num_threads=4
"""

import os
import sys

from absl import flags

from cli import runner
from dapter_tf import DapterError

_MODEL = flags.DEFINE_list("model", None, "The .tflite files to benchmark, comma-separated.", required=True)
_SERIAL = flags.DEFINE_list(
    "serial", [], "The phones to run on (serials from 'adb devices'); empty: the only one attached."
)
_ALL_DEVICES = flags.DEFINE_bool("all_devices", False, "Run on every attached phone (ignored with --serial).")
_APK = flags.DEFINE_string(
    "apk", "", "Install this harness APK first (adb install -r); empty: it must already be installed."
)
_NUM_THREADS = flags.DEFINE_integer(
    "num_threads", 1, "Interpreter threads, as benchmark_model's --num_threads (1..64)."
)
_WARMUP_RUNS = flags.DEFINE_integer(
    "warmup_runs", 1, "Runs before the timed ones (>= 1); the first is reported as the first inference."
)
_NUM_RUNS = flags.DEFINE_integer("num_runs", 50, "Timed runs (>= 1).")
_DELEGATE = flags.DEFINE_enum(
    "delegate",
    "xnnpack",
    ["cpu", "xnnpack", "gpu", "nnapi"],
    "Where TFLite runs the model: cpu (its built-in kernels, XNNPACK off), xnnpack (TFLite's default "
    "CPU path), gpu (the GPU delegate) or nnapi (Android's Neural Networks API).",
)
_IMAGE = flags.DEFINE_string(
    "image", "", "A PNG or JPEG to run on, resized on the phone to the model's input; empty: seeded random pixels."
)
_BENCHMARK_MODEL = flags.DEFINE_string(
    "benchmark_model",
    "",
    "TFLite's native benchmark_model binary for the phone's ABI; when given it is pushed and run with the "
    "same settings and its timings are put beside the app's.",
)
_YARDSTICK = flags.DEFINE_string(
    "yardstick",
    "",
    "MobileNetV2 1.0 as a full-int8 .tflite at the models' input size (bench/bench_yardstick.py "
    "--save_tflite_dir writes mobilenet_v2_1.0_int8.tflite): the app times it in turn with each model, with the "
    "same threads, delegate, warm-up and runs, and the table gives each model's latency as a ratio of it.",
)
_TIMEOUT_S = flags.DEFINE_float("timeout_s", 300.0, "Seconds to wait for one model's result on one phone (> 0).")
_REMOTE_DIR = flags.DEFINE_string(
    "remote_dir", "/data/local/tmp/dapter", "Where models, the image and benchmark_model are pushed on the phone."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "android_bench", "Where the pulled result JSON files, phones.csv and phones.md are written."
)
_ADB = flags.DEFINE_string("adb", "", "The adb executable; empty: adb on PATH, else $ANDROID_HOME/platform-tools/adb.")


def _check_local_file(path: str, flag: str) -> None:
    if not os.path.isfile(path):
        raise DapterError(f"{flag} {path} is not a file")


def main():
    from android_app.tools import adb_lib

    config = adb_lib.AdbBenchmarkConfig(
        num_threads=_NUM_THREADS.value,
        warmup_runs=_WARMUP_RUNS.value,
        num_runs=_NUM_RUNS.value,
        delegate=_DELEGATE.value,
        timeout_s=_TIMEOUT_S.value,
        remote_dir=_REMOTE_DIR.value,
    )
    for model in _MODEL.value:
        _check_local_file(model, "--model")
        if not model.endswith(".tflite"):
            raise DapterError(f"--model {model} is not a .tflite file")
    for path, flag in (
        (_APK.value, "--apk"),
        (_IMAGE.value, "--image"),
        (_BENCHMARK_MODEL.value, "--benchmark_model"),
        (_YARDSTICK.value, "--yardstick"),
    ):
        if path:
            _check_local_file(path, flag)
    adb = adb_lib.find_adb(_ADB.value)
    serials = adb_lib.select_devices(adb_lib.list_devices(adb), _SERIAL.value, _ALL_DEVICES.value)
    # Nothing is written before every check above has passed.
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    csv_path = os.path.join(_OUTPUT_DIR.value, "phones.csv")
    adb_lib.read_rows(csv_path)  # An incompatible earlier table fails now, not after the runs.

    rows, failures = [], []
    for serial in serials:
        device = adb_lib.Device(adb, serial)
        try:
            info = device.describe()
            device.shell(["mkdir", "-p", config.remote_dir])
            device.ensure_app(_APK.value)
            remote_binary = (
                adb_lib.push_benchmark_model(device, _BENCHMARK_MODEL.value, config) if _BENCHMARK_MODEL.value else ""
            )
            for model in _MODEL.value:
                print(f"{serial}: {os.path.basename(model)} ({config.delegate}, {config.num_threads} threads) ...")
                result = adb_lib.run_app_benchmark(
                    device, model, config, _OUTPUT_DIR.value, _IMAGE.value, _YARDSTICK.value
                )
                native = adb_lib.run_benchmark_model(device, remote_binary, model, config) if remote_binary else None
                rows.append(adb_lib.make_row(serial, info, model, result, native))
                line = f"{serial}: {os.path.basename(model)} avg {result['avg_us'] / 1000:.2f} ms"
                if native:
                    line += f", benchmark_model {native['avg_us'] / 1000:.2f} ms"
                if result.get("yardstick_model"):
                    line += (
                        f", MobileNetV2 1.0 int8 min {result['yardstick_min_us'] / 1000:.2f} ms: "
                        f"{result['min_us'] / result['yardstick_min_us']:.2f}x (fastest runs)"
                    )
                print(line)
        except DapterError as e:
            failures.append(str(e))
    if rows:
        adb_lib.append_rows(csv_path, os.path.join(_OUTPUT_DIR.value, "phones.md"), rows)
        print(f"wrote {len(rows)} rows to {csv_path} and {os.path.join(_OUTPUT_DIR.value, 'phones.md')}")
    if failures:
        # One line per phone that failed; the rows of the others are kept above.
        sys.stderr.write("".join(f"error: {message}\n" for message in failures))
        sys.exit(1)


def run():
    runner.run(main, tensorflow=False)


if __name__ == "__main__":
    run()

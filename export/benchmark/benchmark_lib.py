"""Timing converters on the host with the conventions of TFLite's ``benchmark_model``, and counting their MACs.

``benchmark_tflite`` reports what ``benchmark_model`` prints (``Init``, ``First inference``,
``Warmup (avg)``, ``Inference (avg)``, and min / max / std / percentiles of the timed runs), all in
microseconds, for a ``.tflite`` run by ai_edge_litert with a chosen thread count and XNNPACK on or
off. ``benchmark_keras`` times the Keras converter at batch 1 under ``tf.function`` with the same
statistics, so the two can be compared in one run. ``tflite_macs`` counts a file's multiply-accumulates,
the cost no runtime can avoid, and ``benchmark_layers`` times every layer on its own.
"""

import csv
import dataclasses
import io
import time

import keras
import numpy as np
import tensorflow as tf

from dapter_tf import DapterError
from dapter_tf.models import OutputBlocks, OutputLevels
from export.tflite import export_tflite_lib
from export.tflite.subpixel import DepthToSpace

_CUSTOM_OBJECTS = {
    "OutputLevels": OutputLevels,
    "OutputBlocks": OutputBlocks,
    "DepthToSpace": DepthToSpace,
}


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """How to time a model, with ``benchmark_model``'s flag names and defaults.

    Attributes:
        num_threads: Threads the runtime may use (``--num_threads``); >= 1.
        warmup_runs: Untimed-for-the-average runs first (``--warmup_runs``); >= 1, the first of
            them is reported as the first inference.
        num_runs: Timed runs (``--num_runs``); >= 1.
        use_xnnpack: Run float and quantized ops through the XNNPACK delegate (the default of
            ai_edge_litert and of ``benchmark_model``); False uses TFLite's built-in kernels.
    """

    num_threads: int = 1
    warmup_runs: int = 1
    num_runs: int = 50
    use_xnnpack: bool = True

    def validate(self) -> "BenchmarkConfig":
        for name in ("num_threads", "warmup_runs", "num_runs"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise DapterError(f"{name} must be an integer >= 1, got {value}")
        return self


def _stats(init_s: float, warmup_s: list, runs_s: list) -> dict:
    runs_us = np.asarray(runs_s) * 1e6
    return {
        "init_us": init_s * 1e6,
        "first_inference_us": warmup_s[0] * 1e6,
        "warmup_avg_us": float(np.mean(warmup_s) * 1e6),
        "avg_us": float(runs_us.mean()),
        "min_us": float(runs_us.min()),
        "max_us": float(runs_us.max()),
        "std_us": float(runs_us.std()),
        "p50_us": float(np.percentile(runs_us, 50)),
        "p90_us": float(np.percentile(runs_us, 90)),
        "count": len(runs_us),
    }


def _timed(call, n: int) -> list:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def input_for(details: dict, value: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """The input tensor to hand the interpreter, quantized with the tensor's own parameters.

    Args:
        details: The interpreter's input details.
        value: The input in real units without its batch axis (a converter: an H x W x 3 image in
            [0, 1]); None draws random pixels, as ``benchmark_model`` does (but int8 latency depends
            on the data: prefer a real image).
        seed: Seeds the random pixels.
    """
    shape = tuple(int(s) for s in details["shape"])
    if value is None:
        value = np.random.default_rng(seed).integers(0, 256, shape[1:]).astype(np.float32) / 255.0
    if value.shape != shape[1:]:
        raise DapterError(f"the model takes inputs of shape {shape[1:]}, got {value.shape}")
    x = value[None].astype(np.float32)
    if details["dtype"] != np.float32:
        scale, zero_point = details["quantization"]
        info = np.iinfo(details["dtype"])
        x = np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(details["dtype"])
    return x


def image_input(image: np.ndarray) -> np.ndarray:
    """A uint8 H x W x 3 image as the converter's float input in [0, 1]; one error line for anything else."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise DapterError(f"a converter input must be a uint8 H x W x 3 image, got {image.dtype} {image.shape}")
    return image.astype(np.float32) / 255.0


def benchmark_tflite(model_bytes: bytes, config: BenchmarkConfig, value: np.ndarray | None = None) -> dict:
    """Times a ``.tflite`` file with ai_edge_litert as ``benchmark_model`` does.

    Args:
        model_bytes: The file's bytes.
        config: Threads, warm-up and timed runs, XNNPACK.
        value: The input in real units (``image_input`` of a real image); random pixels if None.

    Returns:
        ``STAT_FIELDS`` in microseconds, ``count``, and the config. ``init_us`` is building the
        interpreter and allocating its tensors (delegate set-up included).
    """
    # One file interleaved with nothing: its warm-up runs, then its timed runs.
    return benchmark_interleaved({"model": model_bytes}, config, {"model": value})["model"]


def benchmark_interleaved(files: dict, config: BenchmarkConfig, values: dict | None = None) -> dict:
    """Times several ``.tflite`` files in one run, one invoke of each in turn, as ``benchmark_tflite`` does each.

    Interleaving puts a shared machine's passing load on every file alike, so their ratios hold
    where each one's latency alone would not.

    Args:
        files: Name -> the file's bytes.
        config: Threads, warm-up and timed runs (per file), XNNPACK.
        values: Name -> its input in real units (``image_input``); a missing name gets random pixels.

    Returns:
        Name -> the statistics of ``benchmark_tflite``.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    config.validate()
    values = values or {}
    resolver = OpResolverType.AUTO if config.use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    invokes, inits = {}, {}
    for name, model_bytes in files.items():
        start = time.perf_counter()
        interpreter = Interpreter(
            model_content=model_bytes, num_threads=config.num_threads, experimental_op_resolver_type=resolver
        )
        interpreter.allocate_tensors()
        inits[name] = time.perf_counter() - start
        details = interpreter.get_input_details()[0]
        interpreter.set_tensor(details["index"], input_for(details, values.get(name)))
        output_index = interpreter.get_output_details()[0]["index"]
        invokes[name] = (lambda i, o: lambda: (i.invoke(), i.get_tensor(o)))(interpreter, output_index)
    warmups = {name: [] for name in files}
    runs = {name: [] for name in files}
    for count, times in ((config.warmup_runs, warmups), (config.num_runs, runs)):
        for _ in range(count):
            for name, invoke in invokes.items():
                times[name].extend(_timed(invoke, 1))
    return {
        name: {**_stats(inits[name], warmups[name], runs[name]), **dataclasses.asdict(config)} for name in files
    }


def measure_peak(config: BenchmarkConfig) -> dict:
    """This CPU's reachable GMAC/s, float32 and int8: a compute-bound 3x3 convolution, 128 -> 128 channels at 56x56.

    A converter's MACs over its latency, divided by this, is the fraction of the host it uses.

    Returns:
        ``{"float32": GMAC/s, "int8": GMAC/s}`` of the fastest of ``config.num_runs`` runs.
    """
    keras.utils.set_random_seed(1)
    inputs = keras.Input(batch_shape=(1, 56, 56, 128))
    probe = keras.Model(inputs, keras.layers.Conv2D(128, 3, padding="same")(inputs))
    images = np.random.default_rng(1).random((4, 56, 56, 128), dtype=np.float32)
    peak = {}
    for mode in ("float32", "int8_int8_io"):
        model_bytes = export_tflite_lib.convert_keras_model(probe, mode, lambda: ([image[None]] for image in images))
        macs = sum(tflite_macs(model_bytes).values())
        stats = benchmark_tflite(model_bytes, config, images[0])
        peak["int8" if mode != "float32" else mode] = macs / stats["min_us"] / 1e3
    return peak


def configure_tensorflow_threads(num_threads: int) -> None:
    """Makes TensorFlow run each op on ``num_threads`` threads, one op at a time, as TFLite does.

    Must be called before TensorFlow runs its first op (TensorFlow fixes its thread pools then).
    """
    tf.config.threading.set_intra_op_parallelism_threads(num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def benchmark_keras(model: keras.Model, config: BenchmarkConfig, value: np.ndarray) -> dict:
    """Times a Keras model at batch 1 under ``tf.function``, with the statistics of ``benchmark_tflite``.

    ``value`` is the input without its batch axis (a converter: ``image_input`` of a real image).

    ``init_us`` is tracing and compiling the function; every call includes copying the output to
    numpy, as an app reading the pixels would. TensorFlow's thread count is fixed per process
    (``configure_tensorflow_threads``) and reported as ``num_threads``.
    """
    config.validate()
    x = tf.constant(value[None].astype(np.float32))
    start = time.perf_counter()
    convert = tf.function(lambda inputs: model(inputs, training=False))
    convert.get_concrete_function(tf.TensorSpec(x.shape, tf.float32))
    init_s = time.perf_counter() - start
    warmup = _timed(lambda: convert(x).numpy(), config.warmup_runs)
    runs = _timed(lambda: convert(x).numpy(), config.num_runs)
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    return {
        **_stats(init_s, warmup, runs),
        **dataclasses.asdict(config),
        "num_threads": threads or None,  # 0: TensorFlow's default, every core.
        "use_xnnpack": None,
    }


# MACs per output element of each op that multiplies: (weights input index, how to count).
_MAC_OPS = ("CONV_2D", "TRANSPOSE_CONV", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def tflite_macs(model_bytes: bytes) -> dict:
    """Multiply-accumulates of each multiplying op of a ``.tflite`` file, from its tensors' shapes.

    Counting on the file counts what the runtime runs (after any rewriting at export), at the
    file's fixed input size. CONV_2D: H_out * W_out * k_h * k_w * C_in * C_out; TRANSPOSE_CONV
    scatters every input pixel through the whole kernel: H_in * W_in * k_h * k_w * C_in * C_out;
    DEPTHWISE_CONV_2D: H_out * W_out * k_h * k_w * C_out; FULLY_CONNECTED: rows * C_in * C_out.
    Biases and activations are not multiply-accumulates and are left out, as MAC counts usually do.

    Returns:
        ``{"<index>:<op name>:<output tensor name>": MACs}`` in execution order.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    shapes = {t["index"]: [int(d) for d in t["shape"]] for t in interpreter.get_tensor_details()}
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    macs = {}
    # The op list is not public API; ai_edge_litert has kept it since tf.lite.Interpreter.
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        if name not in _MAC_OPS:
            continue
        out = shapes[op["outputs"][0]]
        if name == "CONV_2D":
            c_out, k_h, k_w, c_in = shapes[op["inputs"][1]]
            count = out[1] * out[2] * k_h * k_w * c_in * c_out
        elif name == "TRANSPOSE_CONV":
            c_out, k_h, k_w, c_in = shapes[op["inputs"][1]]
            _, h, w, _ = shapes[op["inputs"][2]]
            count = h * w * k_h * k_w * c_in * c_out
        elif name == "DEPTHWISE_CONV_2D":
            _, k_h, k_w, c_out = shapes[op["inputs"][1]]
            count = out[1] * out[2] * k_h * k_w * c_out
        else:
            c_out, c_in = shapes[op["inputs"][1]]
            count = int(np.prod(out[:-1])) * c_in * c_out
        macs[f"{op['index']}:{name}:{names[op['outputs'][0]]}"] = count
    return macs


def _csv_value(key: str, value):
    if isinstance(value, float):
        return f"{value:.1f}" if key.endswith("_us") else f"{value:.4f}"
    return "" if value is None else value


def to_csv(rows: list[dict]) -> str:
    """Benchmark rows (dicts with the same keys) as CSV text, one row per model."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(k, v) for k, v in row.items()})
    return out.getvalue()


def fix_batch_shape(converter: keras.Model, height: int, width: int) -> keras.Model:
    """The converter's graph with a fixed batch-1 ``height`` x ``width`` input and the same weights."""
    config = converter.get_config()
    config["layers"][0]["config"]["batch_shape"] = [1, height, width, 3]
    fixed = keras.Model.from_config(config, custom_objects=_CUSTOM_OBJECTS)
    fixed.set_weights(converter.get_weights())
    return fixed


def _single_layer_tflite(layer, input_shapes, calibration: list | None) -> bytes:
    """One layer as its own ``.tflite``: float32, or full int8 (int8 I/O) calibrated on ``calibration``."""
    names = [f"input_{i}" for i in range(len(input_shapes))]
    inputs = [keras.Input(batch_shape=shape, name=name) for name, shape in zip(names, input_shapes)]
    model = keras.Model(inputs, layer(inputs if len(inputs) > 1 else inputs[0]))
    if calibration is None:
        return export_tflite_lib.convert_keras_model(model, "float32")
    # Calibration samples keyed by input name: a file's inputs need not keep the model's order (the
    # block encoder's add_context takes its 1 x 1 context second, and the file first).
    return export_tflite_lib.convert_keras_model(
        model,
        "int8_int8_io",
        lambda: ({n: x[i : i + 1] for n, x in zip(names, calibration)} for i in range(len(calibration[0]))),
    )


def benchmark_layers(
    converter: keras.Model, calibration_images: np.ndarray, image: np.ndarray, config: BenchmarkConfig
) -> list[dict]:
    """Per-layer cost: each layer of the converter timed as its own float32 and full-int8 ``.tflite``.

    Each layer gets the activations the whole converter feeds it on ``image`` (and is calibrated on
    those of ``calibration_images``), so its timing sees real data; single-layer files pay their own
    input and output copies, so the layers' sum is a little above the whole file's time.

    Args:
        converter: The Keras converter.
        calibration_images: uint8 N x H x W x 3 real images (a few are enough).
        image: A uint8 H x W x 3 real image to time on.
        config: Threads and runs.

    Returns:
        One row per layer: ``layer``, ``macs``, ``float32_us``, ``int8_us`` (averages).
    """
    height, width = image.shape[:2]
    fixed = fix_batch_shape(converter, height, width)
    layers = [layer for layer in fixed.layers if not isinstance(layer, (keras.layers.InputLayer, OutputLevels))]
    # Each layer's own input tensors in this graph (a nested block's .input would be its inner one).
    layer_inputs = [list(layer._inbound_nodes[0].input_tensors) for layer in layers]
    probe = keras.Model(fixed.inputs, [t for inputs in layer_inputs for t in inputs])
    calibration_values = probe.predict(calibration_images.astype(np.float32) / 255.0, verbose=0)
    image_values = probe.predict(image_input(image)[None], verbose=0)
    rows, position = [], 0
    for layer, inputs in zip(layers, layer_inputs):
        count = len(inputs)
        calibration = [np.asarray(v, np.float32) for v in calibration_values[position : position + count]]
        values = [np.asarray(v, np.float32)[0] for v in image_values[position : position + count]]
        position += count
        shapes = [tuple(t.shape) for t in inputs]
        row = {"layer": layer.name}
        for mode, calib in (("float32", None), ("int8", calibration)):
            model_bytes = _single_layer_tflite(layer, shapes, calib)
            if mode == "float32":
                row["macs"] = sum(tflite_macs(model_bytes).values())
            # Multi-input layers (the copy connection) are timed on random inputs.
            value = values[0] if count == 1 else None
            row[f"{mode}_us"] = benchmark_tflite(model_bytes, config, value)["avg_us"]
        rows.append(row)
    return rows


def format_benchmark_line(row: dict) -> str:
    """One model's timings in ``benchmark_model``'s words (microseconds)."""
    line = (
        f"{row['model']}: Init: {row['init_us']:.0f}, First inference: {row['first_inference_us']:.0f}, "
        f"Warmup (avg): {row['warmup_avg_us']:.0f}, Inference (avg): {row['avg_us']:.0f} "
        f"(min {row['min_us']:.0f}, max {row['max_us']:.0f}, std {row['std_us']:.0f}, p50 {row['p50_us']:.0f}, "
        f"p90 {row['p90_us']:.0f}; count={row['count']}, threads={row['num_threads']})"
    )
    if row.get("ratio_to_keras"):
        line += f", {row['ratio_to_keras']:.3f}x Keras"
    if row.get("ratio_to_yardstick"):
        line += f", {row['ratio_to_yardstick']:.3f}x MobileNetV2 1.0 int8 (fastest runs)"
    return line


# The x86 instructions XNNPACK's int8 kernels are chosen by, best first. Without a VNNI dot product
# (an AVX2-only AMD EPYC here) int8 runs no faster than float32 and a converter's latency follows its
# MACs, so the same files gave MobileNetV2 ratios about three times higher there than on an Intel Xeon
# with AVX-512 VNNI (results/export/README.md): a ratio means little without them.
INT8_INSTRUCTIONS = ("avx512_vnni", "avx_vnni", "avx512f", "avx2")


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The host CPU's model name and its int8 instructions (from ``cpuinfo``), recorded beside a bench's timings.

    Returns:
        For example "AMD EPYC (avx2)" or "Intel(R) Xeon(R) Processor (avx512_vnni, avx512f, avx2)";
        "unknown CPU" where the file cannot be read or names no model.
    """
    name, flags = None, set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name is None:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    if name is None:
        return "unknown CPU"
    found = [f for f in INT8_INSTRUCTIONS if f in flags]
    return f"{name} ({', '.join(found) if found else 'no AVX2'})"

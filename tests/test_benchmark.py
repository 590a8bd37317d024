"""The host benchmark: benchmark_model's statistics, MAC counts by hand, the binary and the bench script."""

import csv
import io
import json

import keras
import numpy as np
import pytest
from conftest import REPO, assert_one_error_line, run_binary

from dapter_tf import DapterError
from dapter_tf.models import build_converter
from export.benchmark import benchmark_lib, timing, yardstick
from export.benchmark.benchmark_lib import BenchmarkConfig
from export.tflite import export_tflite_lib


def _one_layer(layer, input_shape) -> bytes:
    inputs = keras.Input(batch_shape=(1, *input_shape))
    return export_tflite_lib.convert_keras_model(keras.Model(inputs, layer(inputs)), "float32")


def test_tflite_macs_by_hand():
    # 3x3 conv, 3 -> 4 channels on 8x8, "same": 8 * 8 outputs * 9 taps * 3 in * 4 out.
    same = _one_layer(keras.layers.Conv2D(4, 3, padding="same"), (8, 8, 3))
    assert list(benchmark_lib.tflite_macs(same).values()) == [8 * 8 * 9 * 3 * 4]
    # Stride 2 computes a quarter of the outputs.
    strided = _one_layer(keras.layers.Conv2D(4, 3, strides=2, padding="same"), (8, 8, 3))
    assert list(benchmark_lib.tflite_macs(strided).values()) == [4 * 4 * 9 * 3 * 4]
    # A transposed conv scatters each of the 4 x 4 inputs through its 3 x 3 x 2 x 5 kernel.
    transposed = _one_layer(keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same"), (4, 4, 2))
    assert list(benchmark_lib.tflite_macs(transposed).values()) == [4 * 4 * 9 * 2 * 5]
    dense = _one_layer(keras.layers.Dense(7), (6,))
    assert list(benchmark_lib.tflite_macs(dense).values()) == [6 * 7]


def test_converter_macs_are_the_fig3_sum_and_survive_the_subpixel_rewrite():
    keras.utils.set_random_seed(0)
    converter = build_converter()
    h = w = 32
    by_hand = (
        h * w * 9 * 3 * 24  # conv1
        + 2 * h * w * 9 * 24 * 24  # conv2, conv3
        + (h // 2) * (w // 2) * 9 * 24 * 48  # conv4, stride 2
        + (h // 4) * (w // 4) * 9 * 48 * 96  # conv5, stride 2
        + (h // 4) * (w // 4) * 9 * 96 * 48  # conv6, transposed from H/4
        + (h // 2) * (w // 2) * 9 * 48 * 24  # conv7, transposed from H/2
        + h * w * 9 * 48 * 3  # conv8 on the copy connection's 48 channels
    )
    direct = export_tflite_lib.convert_to_tflite(converter, "float32", (h, w), subpixel=False)
    rewritten = export_tflite_lib.convert_to_tflite(converter, "float32", (h, w))
    assert sum(benchmark_lib.tflite_macs(direct).values()) == by_hand
    # The four phase convolutions hold the transposed kernel's 9 taps: the same MACs.
    assert sum(benchmark_lib.tflite_macs(rewritten).values()) == by_hand
    assert len(benchmark_lib.tflite_macs(rewritten)) == 6 + 2 * 4


@pytest.fixture(scope="module")
def int8_file(embedded):
    keras.utils.set_random_seed(0)
    return export_tflite_lib.convert_to_tflite(build_converter(), "int8", (32, 32), embedded[0].images, 4)


@pytest.mark.parametrize("use_xnnpack", [True, False])
def test_benchmark_tflite_reports_benchmark_model_statistics(int8_file, embedded, use_xnnpack):
    config = BenchmarkConfig(num_threads=1, warmup_runs=2, num_runs=7, use_xnnpack=use_xnnpack)
    stats = benchmark_lib.benchmark_tflite(int8_file, config, benchmark_lib.image_input(embedded[1].images[0]))
    assert stats["count"] == 7 and stats["use_xnnpack"] is use_xnnpack and stats["num_threads"] == 1
    assert all(stats[field] > 0 for field in timing.STAT_FIELDS if field != "std_us")
    assert stats["min_us"] <= stats["p50_us"] <= stats["p90_us"] <= stats["max_us"]
    assert stats["min_us"] <= stats["avg_us"] <= stats["max_us"]
    assert stats["warmup_avg_us"] >= stats["first_inference_us"] / 2  # The first run is one of two warm-ups.


def test_benchmark_keras_has_the_same_statistics(embedded):
    keras.utils.set_random_seed(0)
    stats = benchmark_lib.benchmark_keras(
        build_converter(filters=(4, 8, 8)),
        BenchmarkConfig(num_runs=3),
        benchmark_lib.image_input(embedded[1].images[0]),
    )
    assert stats["count"] == 3 and set(timing.STAT_FIELDS) <= set(stats)
    assert stats["min_us"] <= stats["avg_us"] <= stats["max_us"]


def test_bad_benchmark_config_and_input():
    with pytest.raises(DapterError, match="num_runs must be an integer >= 1, got 0"):
        BenchmarkConfig(num_runs=0).validate()
    with pytest.raises(DapterError, match="num_threads must be an integer >= 1, got -1"):
        BenchmarkConfig(num_threads=-1).validate()
    with pytest.raises(
        DapterError, match=r"a converter input must be a uint8 H x W x 3 image, got float32 \(4, 4, 3\)"
    ):
        benchmark_lib.image_input(np.zeros((4, 4, 3), np.float32))


def test_input_for_matches_the_vectors_shared_with_the_android_app():
    # android_app/core's InputEncodingTest runs the same cases through the phone's encoder.
    vectors = json.loads((REPO / "android_app/core/src/test/resources/input_encoding.json").read_text())
    image = np.array(vectors["pixels"], np.uint8).reshape(vectors["shape"][1:])
    for case in vectors["cases"]:
        details = {"shape": vectors["shape"], "dtype": np.dtype(case["dtype"]).type}
        details["quantization"] = (case["scale"], case["zero_point"])
        got = benchmark_lib.input_for(details, benchmark_lib.image_input(image)).ravel()
        np.testing.assert_array_equal(got, np.array(case["expected"], got.dtype), err_msg=case["name"])


def test_input_for_quantizes_with_the_tensor_parameters():
    details = {"shape": np.array([1, 1, 2, 3]), "dtype": np.uint8, "quantization": (1 / 255, 0)}
    value = np.array([[[0.0, 128 / 255, 1.0], [1 / 255, 2 / 255, 254 / 255]]], np.float32)
    np.testing.assert_array_equal(benchmark_lib.input_for(details, value)[0], [[[0, 128, 255], [1, 2, 254]]])
    with pytest.raises(DapterError, match=r"the model takes inputs of shape \(1, 2, 3\), got \(2, 2, 3\)"):
        benchmark_lib.input_for(details, np.zeros((2, 2, 3), np.float32))


def test_csv_holds_one_row_per_model():
    rows = [
        {"model": "a.tflite", "bytes": 10, "avg_us": 1234.56, "ratio_to_keras": 0.25, "use_xnnpack": True},
        {"model": "keras:x", "bytes": None, "avg_us": 4938.2, "ratio_to_keras": 1.0, "use_xnnpack": None},
    ]
    read = list(csv.DictReader(io.StringIO(benchmark_lib.to_csv(rows))))
    assert [r["model"] for r in read] == ["a.tflite", "keras:x"]
    assert read[0]["avg_us"] == "1234.6" and read[0]["ratio_to_keras"] == "0.2500" and read[1]["bytes"] == ""


def test_benchmark_binary_times_files_beside_keras(tmp_path, int8_file):
    keras.utils.set_random_seed(0)
    converter = build_converter(filters=(4, 8, 8))
    converter.save(tmp_path / "converter.keras")
    graph = tmp_path / "converter_float32.tflite"
    graph.write_bytes(export_tflite_lib.convert_to_tflite(converter, "float32", (32, 32)))
    proc = run_binary(
        "export.benchmark.benchmark_tflite",
        f"--graph={graph}",
        f"--keras={tmp_path / 'converter.keras'}",
        "--num_runs=3",
        "--use_xnnpack=false",
        f"--output_json={tmp_path / 'b.json'}",
        f"--output_csv={tmp_path / 'b.csv'}",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    keras_row, lite_row, yardstick_row = result["models"]
    assert keras_row["model"].startswith("keras:") and lite_row["model"] == str(graph)
    assert lite_row["use_xnnpack"] is False and lite_row["count"] == 3 and result["image_size"] == [32, 32]
    assert lite_row["ratio_to_keras"] == pytest.approx(lite_row["avg_us"] / keras_row["avg_us"])
    # The yardstick, timed interleaved with the file at its size: MobileNetV2 1.0 as full int8.
    assert yardstick_row["model"] == "MobileNetV2 1.0 int8" and yardstick_row["count"] == 3
    assert 3_500_000 < yardstick_row["bytes"] < 4_500_000 and yardstick_row["ratio_to_yardstick"] == 1.0
    assert lite_row["ratio_to_yardstick"] == pytest.approx(lite_row["min_us"] / yardstick_row["min_us"])
    assert keras_row["ratio_to_yardstick"] == pytest.approx(keras_row["min_us"] / yardstick_row["min_us"])
    assert "Inference (avg):" in proc.stdout and "x Keras" in proc.stdout and "x MobileNetV2 1.0 int8" in proc.stdout
    assert len((tmp_path / "b.csv").read_text().splitlines()) == 4


def test_benchmark_interleaved_times_each_file_in_turn(int8_file, embedded):
    config = benchmark_lib.BenchmarkConfig(num_threads=1, warmup_runs=2, num_runs=5)
    value = benchmark_lib.image_input(embedded[1].images[0])
    stats = benchmark_lib.benchmark_interleaved({"a": int8_file, "b": int8_file}, config, {"a": value})
    assert list(stats) == ["a", "b"]
    for s in stats.values():
        assert s["count"] == 5 and s["min_us"] <= s["p50_us"] <= s["max_us"] and s["num_threads"] == 1


def test_the_yardstick_estimates_a_phone_latency_from_a_ratio():
    # Pixel 3, 4 threads: MobileNetV2 1.0 224 quantized runs in 12 ms, so half of it is 6 ms.
    (pixel3,) = yardstick.implied_phone_ms(0.5)
    assert (pixel3["device"], pixel3["threads"], pixel3["estimate_ms"]) == ("Pixel 3", 4, 6.0)
    assert "hosted models" in pixel3["source"]
    with pytest.raises(DapterError, match="a latency ratio must be > 0, got 0"):
        yardstick.implied_phone_ms(0)
    with pytest.raises(DapterError, match="the MobileNetV2 yardstick needs images of at least 32x32, got 16x16"):
        yardstick.build_yardstick((16, 16))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--graph=/nonexistent/converter.tflite"], "--graph /nonexistent/converter.tflite does not exist"),
        (["--graph={setup}", "--num_runs=0"], "num_runs must be an integer >= 1, got 0"),
        (["--graph={notes}"], "a --graph file is not a .tflite model"),
        (["--graph={setup}", "--image=/nonexistent.png"], "--image /nonexistent.png does not exist"),
    ],
)
def test_benchmark_binary_bad_input_gets_one_line(tmp_path, int8_file, args, message):
    model = tmp_path / "converter_int8.tflite"
    model.write_bytes(int8_file)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    args = [a.format(setup=model, notes=notes) for a in args]
    assert_one_error_line(run_binary("export.benchmark.benchmark_tflite", *args), message)


def test_bench_script_prints_the_targets(tmp_path):
    # The bench script at a small size and few runs: that it runs and reports every figure (the
    # 224x224 figures themselves come from running it by hand; see the README).
    proc = run_binary(
        "bench.bench_export",
        "--image_size=32",
        "--small_size=0",
        "--num_runs=2",
        "--warmup_runs=1",
        "--layer_runs=1",
        "--calibration_steps=4",
        f"--output_json={tmp_path / 'bench.json'}",
        f"--save_tflite_dir={tmp_path / 'phone'}",
    )
    assert proc.returncode == 0, proc.stderr
    for text in ("int8 / float32 latency", "float32 TFLite / Keras batch-1", "int8 file", "% of peak", "conv7_up"):
        assert text in proc.stdout, text
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["macs"] == 1137991680 // (7 * 7)  # 224^2 / 32^2 = 49 times fewer at 32x32.
    assert [row["layer"] for row in result["layers"]][-2:] == ["copy_connection", "conv8_out"]
    # The timed files are kept for phones (dapter-adb-benchmark), byte for byte the sizes reported.
    saved = {p.name: p.stat().st_size for p in (tmp_path / "phone").iterdir()}
    assert saved == {
        "converter_32_float32.tflite": result["bytes"]["float32"],
        "converter_32_int8.tflite": result["bytes"]["int8"],
        "converter_32_float32_transpose_conv.tflite": result["bytes"]["float32, TRANSPOSE_CONV"],
        "converter_32_int8_transpose_conv.tflite": result["bytes"]["int8, TRANSPOSE_CONV"],
    }


def test_bench_script_times_the_block_encoder_layer_by_layer(tmp_path):
    # --architecture picks the form timed: here dapter-protect's wide block encoder at b = 8, 32x32.
    proc = run_binary(
        "bench.bench_export",
        "--architecture=block_encoder",
        "--block=8",
        "--image_size=32",
        "--small_size=0",
        "--num_runs=2",
        "--warmup_runs=1",
        "--layer_runs=1",
        "--calibration_steps=4",
        f"--output_json={tmp_path / 'bench.json'}",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["converter"] == "block encoder (48, 96, 192), b=8, seeded random weights"
    # By hand at 32x32: 4x4 patches (48 values) at 8x8, then 96 channels there and 192 at 4x4.
    #   8*8*9*48*96 + 8*8*9*96*96 + 4*4*9*96*192 + 4*4*9*192*192 + 192*192 (context) + 4*4*192*3 (head)
    assert result["macs"] == 2_654_208 + 5_308_416 + 2_654_208 + 5_308_416 + 36_864 + 9_216
    layers = [row["layer"] for row in result["layers"]]
    assert layers[:3] == ["to_patches", "patches1", "conv1"] and "block_colours" in layers


def test_yardstick_bench_sets_every_converter_beside_mobilenet_v2(tmp_path):
    # At 32x32 and two runs: that every row is there with its figures (the 224x224 ones come from
    # running it by hand; results/export/yardstick.txt).
    proc = run_binary(
        "bench.bench_yardstick",
        "--image_size=32",
        "--blocks=32",
        "--num_runs=2",
        "--warmup_runs=1",
        f"--output_json={tmp_path / 'yardstick.json'}",
        f"--save_tflite_dir={tmp_path / 'phone'}",
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["model"]: r for r in json.loads((tmp_path / "yardstick.json").read_text())["rows"]}
    assert set(rows) == {
        "MobileNetV2 1.0 int8",
        "Fig. 3 24/48/96 (the paper's)",
        "Fig. 3 48/96/192 (wide)",
        "Fig. 3 on 4x4 patches 48/96/192",
        "Fig. 3 split, 8 + 4x4 patches 48/96/192",
        "block encoder 16/32/64, b=32",
        "block encoder 48/96/192, b=32",
        "cifar2_10_reference (shipped, trained)",
    }
    assert rows["MobileNetV2 1.0 int8"]["ratio"] == 1.0
    assert rows["Fig. 3 24/48/96 (the paper's)"]["gmac"] == pytest.approx(1.137991680 / 49)  # 224^2 / 32^2 = 49.
    # The split form's 360,062,976 MACs at 224x224 (tests/test_split_converter.py), all of them convolutions.
    assert rows["Fig. 3 split, 8 + 4x4 patches 48/96/192"]["gmac"] == pytest.approx(0.360062976 / 49)
    fig3 = rows["Fig. 3 24/48/96 (the paper's)"]
    assert fig3["phones"][0]["estimate_ms"] == pytest.approx(12.0 * fig3["ratio"])
    assert "estimate" in proc.stdout and "% peak" in proc.stdout
    # Every timed file is kept for phones, the yardstick under the name dapter-adb-benchmark's help gives.
    saved = {p.name: p.stat().st_size for p in (tmp_path / "phone").iterdir()}
    assert saved["mobilenet_v2_1.0_int8.tflite"] == rows["MobileNetV2 1.0 int8"]["bytes"]
    assert saved["block_encoder_16_32_64_b32_int8.tflite"] == rows["block encoder 16/32/64, b=32"]["bytes"]
    assert len(saved) == len(rows)


def test_train_step_bench_runs_both_loops_on_the_same_function(tmp_path):
    # Tiny: one warm-up and two timed steps of 8 images against a width-4 ResNet18. The figures
    # themselves come from running it by hand (results/train_step/).
    out = tmp_path / "train_step.json"
    proc = run_binary(
        "bench.bench_train_step", "--batch_size=8", "--steps=2", "--warmup_steps=1", "--width=4",
        f"--output_json={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    loops = result["loops"]
    assert list(loops) == [
        "DAPter custom loop (GradientTape)", "keras.Model.fit (jit_compile auto)", "keras.Model.fit (jit_compile False)"
    ]  # fmt: skip
    # Same initial weights, same first batch, same L_dap: the fit model is the custom loop's function.
    first = [row["first_batch_L_dap"] for row in loops.values()]
    assert max(first) - min(first) < 1e-5 and 0 < first[0] < 3
    custom, fit_auto, fit_plain = (row["images_per_s"] for row in loops.values())
    assert result["ratio_custom_over_fit"] == pytest.approx(custom / fit_auto)
    assert result["ratio_custom_over_fit_without_xla"] == pytest.approx(custom / fit_plain)
    assert "custom loop / fit, images per second:" in proc.stdout


def test_train_step_bench_refuses_bad_flags():
    assert_one_error_line(run_binary("bench.bench_train_step", "--steps=0"), "--steps must be >= 1, got 0")
    assert_one_error_line(run_binary("bench.bench_train_step", "--lambda_=1.5"), "lambda must lie in [0, 1]")
    assert_one_error_line(
        run_binary("bench.bench_train_step", "--batch_size=1000"),
        "33000 images are needed for the steps asked, the data has 3500",
    )


def test_cpu_name_gives_the_model_and_the_int8_instructions_the_ratios_depend_on(tmp_path):
    # Two processors as /proc/cpuinfo lists them: the first one's name and flags are taken.
    xeon = tmp_path / "xeon"
    xeon.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni\n"
    )
    epyc = tmp_path / "epyc"
    epyc.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx fma avx2\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse4_2\n")
    nameless = tmp_path / "nameless"
    nameless.write_text("processor\t: 0\nflags\t\t: avx2\n")
    assert benchmark_lib.cpu_name(str(xeon)) == "Intel(R) Xeon(R) Processor (avx512_vnni, avx512f, avx2)"
    assert benchmark_lib.cpu_name(str(epyc)) == "AMD EPYC (avx2)"
    assert benchmark_lib.cpu_name(str(old)) == "Old CPU (no AVX2)"
    assert benchmark_lib.cpu_name(str(nameless)) == "unknown CPU"
    assert benchmark_lib.cpu_name(str(tmp_path / "missing")) == "unknown CPU"

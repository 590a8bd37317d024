"""The adb driver (android_app/tools) against a fake adb on PATH that behaves like phones (tests/fake_adb.py).

No phone or adb exists on our machines: the fake answers getprop, records pushes and the exact
`am start` command line, and writes the harness app's result JSON (its sample, pinned to the
Kotlin code by android_app/core's SampleResultTest), or fails in each way a phone can.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, assert_one_error_line

from android_app.tools import adb_lib
from dapter_tf import DapterError
from export.tflite.contract import output_contract, read_contract, with_contract

SAMPLE = json.loads((REPO / "android_app/core/src/test/resources/sample_result.json").read_text())
# The command line the app's own test (SampleResultTest) parses back into its arguments.
AM_START = (REPO / "android_app/core/src/test/resources/am_start.txt").read_text().split()
MI9T = {
    "ro.product.manufacturer": "Xiaomi",
    "ro.product.model": "Mi 9T Pro",
    "ro.soc.manufacturer": "QTI",
    "ro.soc.model": "SM8150",
    "ro.hardware": "qcom",
    "ro.board.platform": "msmnile",
    "ro.build.version.release": "11",
    "ro.build.version.sdk": "30",
    "ro.product.cpu.abi": "arm64-v8a",
}
# Android 10 has no ro.soc.*: the SoC is named by ro.hardware and ro.board.platform.
P30 = {
    "ro.product.manufacturer": "HUAWEI",
    "ro.product.model": "ELE-L29",
    "ro.hardware": "kirin980",
    "ro.board.platform": "kirin980",
    "ro.build.version.release": "10",
    "ro.build.version.sdk": "29",
    "ro.product.cpu.abi": "arm64-v8a",
}


@pytest.fixture
def int8_model(int8_export):
    """A real full-int8 converter export without a contract in its metadata (conftest's int8_export)."""
    return int8_export / "converter_int8.tflite"


class FakePhones:
    """The fake adb's state: phones to attach, and what adb was asked."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        adb = self.bin / "adb"
        adb.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "tests/fake_adb.py"}" "$@"\n')
        adb.chmod(0o755)
        self.state_path = tmp_path / "state.json"
        self.log = tmp_path / "adb.log"
        self.root = tmp_path / "phones"
        self.devices = []
        self.out = tmp_path / "out"

    def attach(self, serial, state="device", props=MI9T, installed=True, app="ok"):
        self.devices.append(dict(serial=serial, state=state, props=props, installed=installed, app=app))
        return self

    def write_state(self):
        self.state_path.write_text(json.dumps(dict(devices=self.devices, root=str(self.root), log=str(self.log))))

    def run(self, *flags, path_with_adb=True):
        self.write_state()
        env = {k: v for k, v in os.environ.items() if k not in ("ANDROID_HOME", "ANDROID_SDK_ROOT")}
        env["FAKE_ADB_STATE"] = str(self.state_path)
        env["PATH"] = f"{self.bin}:/usr/bin:/bin" if path_with_adb else str(self.tmp / "empty")
        return subprocess.run(
            # A short default wait: the fake answers at once, so a result not found is a failure, fast.
            [
                sys.executable,
                "-m",
                "android_app.tools.adb_benchmark",
                f"--output_dir={self.out}",
                "--timeout_s=10",
                *flags,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def calls(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def rows(self):
        with open(self.out / "phones.csv", newline="") as f:
            return list(csv.DictReader(f))


@pytest.fixture
def phones(tmp_path):
    return FakePhones(tmp_path)


def _am_start(calls):
    return [c for c in calls if c[2:5] == ["shell", "am", "start"]]


def test_one_phone_end_to_end(phones, int8_model):
    proc = phones.attach("R58M").run(f"--model={int8_model}", "--num_threads=4", "--warmup_runs=2", "--num_runs=5")
    assert proc.returncode == 0, proc.stderr
    calls = phones.calls()
    # The model is pushed byte for byte to /data/local/tmp/dapter.
    assert ["-s", "R58M", "push", str(int8_model), "/data/local/tmp/dapter/converter_int8.tflite"] in calls
    assert (phones.root / "R58M/data/local/tmp/dapter/converter_int8.tflite").read_bytes() == int8_model.read_bytes()
    # The exact command line the app expects: BenchmarkArgsTest pins the same extras, in the same order.
    (start,) = _am_start(calls)
    run_id = start[-1]
    assert start == [
        "-s", "R58M", "shell", "am", "start", "-W", "-S", "-n", "org.dapter.bench/.BenchmarkActivity",
        "--es", "model", "/data/local/tmp/dapter/converter_int8.tflite",
        "--es", "num_threads", "4",
        "--es", "warmup_runs", "2",
        "--es", "num_runs", "5",
        "--es", "delegate", "xnnpack",
        "--es", "run_id", run_id,
    ]  # fmt: skip
    assert run_id.endswith("_R58M_converter_int8")
    # A stale result is removed before the start, then the fresh one is polled for and pulled.
    result_path = f"/sdcard/Android/data/org.dapter.bench/files/{run_id}.json"
    assert calls.index(["-s", "R58M", "shell", "rm", "-f", result_path]) < calls.index(start)
    assert ["-s", "R58M", "pull", result_path, str(phones.out / f"{run_id}.json")] in calls
    assert json.loads((phones.out / f"{run_id}.json").read_text())["run_id"] == run_id

    (row,) = phones.rows()
    # The sample's timings (SampleResultTest derives them by hand) and the phone's getprop values.
    assert (row["manufacturer"], row["device_model"], row["soc"], row["android_release"]) == (
        "Xiaomi", "Mi 9T Pro", "QTI SM8150", "11"
    )  # fmt: skip
    assert row["model_bytes"] == str(int8_model.stat().st_size)
    assert (row["delegate"], row["num_threads"], row["warmup_runs"], row["num_runs"]) == ("xnnpack", "4", "2", "5")
    assert float(row["avg_us"]) == 110100.0 and float(row["p90_us"]) == 113000.0 and float(row["std_us"]) == 2537.7
    assert row["benchmark_model_avg_us"] == ""
    table = (phones.out / "phones.md").read_text()
    assert (
        "| Xiaomi Mi 9T Pro | QTI SM8150 | 11 | converter_int8.tflite | xnnpack | 4 | 25.00 | 160.00 | 110.10 "
        "| 109.00 | 113.00 | 2.54 |  |" in table
    )
    assert "R58M: converter_int8.tflite avg 110.10 ms" in proc.stdout


def test_image_apk_and_benchmark_model_side_by_side(phones, tmp_path, int8_model):
    image = tmp_path / "face 1.png"  # A space: the phone's copy gets a name a shell does not split.
    image.write_bytes(b"\x89PNG fake")
    apk = tmp_path / "app-release.apk"
    apk.write_bytes(b"PK apk")
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF aarch64")
    proc = phones.attach("R58M", installed=False).run(
        f"--model={int8_model}", f"--image={image}", f"--apk={apk}", f"--benchmark_model={binary}",
        "--delegate=gpu", "--num_runs=20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    calls = phones.calls()
    assert ["-s", "R58M", "install", "-r", str(apk)] in calls
    assert ["-s", "R58M", "push", str(image), "/data/local/tmp/dapter/face_1.png"] in calls
    assert ["-s", "R58M", "shell", "chmod", "755", "/data/local/tmp/dapter/benchmark_model"] in calls
    (start,) = _am_start(calls)
    assert start[-6:] == ["--es", "run_id", start[-4], "--es", "image", "/data/local/tmp/dapter/face_1.png"]
    assert ["--es", "delegate", "gpu"] == start[start.index("delegate") - 1 : start.index("delegate") + 2]
    native = [c for c in calls if c[3:4] == ["/data/local/tmp/dapter/benchmark_model"]]
    assert native == [
        [
            "-s", "R58M", "shell", "/data/local/tmp/dapter/benchmark_model",
            "--graph=/data/local/tmp/dapter/converter_int8.tflite", "--num_threads=1", "--warmup_runs=1",
            "--warmup_min_secs=0", "--num_runs=20", "--min_secs=0", "--use_xnnpack=true", "--use_gpu=true",
        ]
    ]  # fmt: skip
    (row,) = phones.rows()
    assert float(row["benchmark_model_avg_us"]) == 107250.0 and float(row["benchmark_model_init_us"]) == 21300.0
    assert float(row["avg_us"]) == 110100.0
    assert "| 110.10 | 109.00 | 113.00 | 2.54 | 107.25 |" in (phones.out / "phones.md").read_text()
    assert "benchmark_model 107.25 ms" in proc.stdout


def test_the_yardstick_is_timed_beside_the_model_and_its_ratio_tabled(phones, tmp_path, int8_model):
    # The fake phone runs nothing: any file stands in for MobileNetV2 1.0 int8 on the wire.
    yardstick = tmp_path / "mobilenet_v2_1.0_int8.tflite"
    yardstick.write_bytes(int8_model.read_bytes())
    proc = phones.attach("R58M").run(f"--model={int8_model}", f"--yardstick={yardstick}", "--num_runs=5")
    assert proc.returncode == 0, proc.stderr
    calls = phones.calls()
    remote = "/data/local/tmp/dapter/mobilenet_v2_1.0_int8.tflite"
    assert ["-s", "R58M", "push", str(yardstick), remote] in calls
    (start,) = _am_start(calls)
    assert start[-3:] == ["--es", "yardstick", remote]  # Last, as BenchmarkArgs.toAmStartExtras puts it.
    (row,) = phones.rows()
    # The sample's yardstick (SampleResultTest): fastest 216000 us against the converter's 108000.
    assert (row["yardstick_file"], float(row["yardstick_min_us"]), float(row["ratio_to_yardstick"])) == (
        "mobilenet_v2_1.0_int8.tflite", 216000.0, 0.5
    )  # fmt: skip
    assert float(row["yardstick_avg_us"]) == 220200.0 and float(row["yardstick_p50_us"]) == 218000.0
    assert "| 2.54 |  | 216.00 | 0.50 |" in (phones.out / "phones.md").read_text()
    assert "MobileNetV2 1.0 int8 min 216.00 ms: 0.50x (fastest runs)" in proc.stdout
    # Without --yardstick the columns stay empty.
    again = phones.run(f"--model={int8_model}")
    assert again.returncode == 0 and phones.rows()[1]["ratio_to_yardstick"] == ""


def test_a_result_that_names_a_yardstick_must_carry_its_timings():
    with pytest.raises(DapterError, match="lacks the timings yardstick_min_us"):
        adb_lib.parse_result(json.dumps(dict(SAMPLE, yardstick_min_us=None)), "x")


def test_every_phone_and_the_table_grows(phones, int8_model):
    phones.attach("R58M").attach("HUAWEI01", props=P30)
    first = phones.run(f"--model={int8_model}", "--all_devices")
    assert first.returncode == 0, first.stderr
    assert [r["soc"] for r in phones.rows()] == ["QTI SM8150", "kirin980 / kirin980"]
    # --serial picks one of several; the second run appends to the same table.
    second = phones.run(f"--model={int8_model}", "--serial=HUAWEI01", "--delegate=nnapi")
    assert second.returncode == 0, second.stderr
    rows = phones.rows()
    assert [(r["serial"], r["delegate"]) for r in rows] == [
        ("R58M", "xnnpack"), ("HUAWEI01", "xnnpack"), ("HUAWEI01", "nnapi")
    ]  # fmt: skip
    table = (phones.out / "phones.md").read_text().splitlines()
    assert len(table) == 2 + 3 and "| HUAWEI ELE-L29 | kirin980 / kirin980 | 10 |" in table[-1]


@pytest.mark.parametrize(
    "attach, flags, message",
    [
        ([], [], "no device attached: connect a phone with USB debugging on"),
        ([("R58M", "unauthorized")], [], "device R58M is unauthorized: unlock it, accept the 'Allow USB debugging?'"),
        ([("R58M", "offline")], [], "device R58M is offline, not ready"),
        ([("A1", "device"), ("B2", "device")], [], "2 devices attached (A1, B2): pass --serial=SERIAL[,SERIAL] or"),
        ([("A1", "device")], ["--serial=Z9"], "device Z9 is not attached (attached: A1)"),
        ([("A1", "device"), ("B2", "unauthorized")], ["--all_devices"], "device B2 is unauthorized"),
    ],
    ids=["none", "unauthorized", "offline", "several_without_serial", "serial_not_attached", "one_of_all_unauthorized"],
)
def test_device_checks_fail_before_anything_is_pushed(phones, attach, flags, message, int8_model):
    for serial, state in attach:
        phones.attach(serial, state=state)
    proc = phones.run(f"--model={int8_model}", *flags)
    assert_one_error_line(proc, message)
    assert [c for c in phones.calls() if c[0] == "-s"] == []  # Only `adb devices` was asked.
    assert not phones.out.exists()


@pytest.mark.parametrize(
    "app, installed, message",
    [
        ("no_result", True, "no result from R58M after 1 s (/sdcard/Android/data/org.dapter.bench/files/"),
        ("malformed", True, "is not valid JSON (Expecting ',' delimiter at line 1 column"),
        ("wrong_format", True, "is not a dapter-bench/1 result (format: 'dapter-bench/0')"),
        ("error", True, "the app failed on R58M:/sdcard/Android/data/org.dapter.bench/files/"),
        ("ok", False, "org.dapter.bench is not installed on R58M: pass --apk="),
    ],
    ids=["result_missing", "result_malformed", "result_of_another_format", "app_reports_failure", "app_not_installed"],
)
def test_phone_failures_name_their_cause(phones, app, installed, message, int8_model):
    proc = phones.attach("R58M", app=app, installed=installed).run(f"--model={int8_model}", "--timeout_s=1")
    assert_one_error_line(proc, message)
    assert not (phones.out / "phones.csv").exists()


def test_app_failure_carries_the_apps_message(phones, int8_model):
    proc = phones.attach("R58M", app="error").run(f"--model={int8_model}")
    assert_one_error_line(proc, ": IllegalArgumentException: Internal error: Cannot create interpreter")


def test_a_failing_phone_keeps_the_others_rows(phones, int8_model):
    phones.attach("R58M").attach("BAD1", app="malformed")
    proc = phones.run(f"--model={int8_model}", "--all_devices")
    assert_one_error_line(proc, "BAD1:/sdcard/Android/data/org.dapter.bench/files/")
    assert [r["serial"] for r in phones.rows()] == ["R58M"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num_threads=0"], "--num_threads must be in 1..64, got 0"),
        (["--num_runs=0"], "--num_runs must be in 1..100000, got 0"),
        (["--warmup_runs=-1"], "--warmup_runs must be in 1..100000, got -1"),
        (["--timeout_s=0"], "--timeout_s must be > 0, got 0.0"),
        (["--remote_dir=tmp/x"], "--remote_dir must be an absolute path"),
        (["--model=missing.tflite"], "--model missing.tflite is not a file"),
        ([f"--model={REPO / 'setup.py'}"], "setup.py is not a .tflite file"),
        (["--image=missing.png"], "--image missing.png is not a file"),
        (["--benchmark_model=missing"], "--benchmark_model missing is not a file"),
        (["--yardstick=missing.tflite"], "--yardstick missing.tflite is not a file"),
        (["--adb=/nonexistent/adb"], "--adb /nonexistent/adb is not an executable file"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_flags_fail_in_one_line(phones, flags, message, int8_model):
    model = [] if any(f.startswith("--model") for f in flags) else [f"--model={int8_model}"]
    proc = phones.attach("R58M").run(*model, *flags)
    assert_one_error_line(proc, message)
    assert phones.calls() == []


def test_no_adb_anywhere(phones, int8_model):
    proc = phones.attach("R58M").run(f"--model={int8_model}", path_with_adb=False)
    assert_one_error_line(proc, "adb not found on PATH nor in $ANDROID_HOME/platform-tools")


def test_an_unknown_delegate_is_refused_by_absl(phones, int8_model):
    proc = phones.attach("R58M").run(f"--model={int8_model}", "--delegate=hexagon")
    assert proc.returncode != 0 and "--delegate" in proc.stderr and phones.calls() == []


def test_an_earlier_table_of_other_columns_is_not_overwritten(phones, int8_model):
    phones.out.mkdir()
    (phones.out / "phones.csv").write_text("a,b\n1,2\n")
    proc = phones.attach("R58M").run(f"--model={int8_model}")
    assert_one_error_line(proc, "has other columns than this driver writes")
    assert (phones.out / "phones.csv").read_text() == "a,b\n1,2\n"


# The library's parsers on their own.


def test_benchmark_model_line_is_parsed():
    # A line as TFLite 2.16's benchmark_model prints it.
    out = (
        "count=50 first=1 ...\n"
        "Inference timings in us: Init: 5685, First inference: 18535, Warmup (avg): 14462.3, Inference (avg): 14575.2\n"
    )
    assert adb_lib.parse_benchmark_model(out) == {
        "init_us": 5685.0,
        "first_inference_us": 18535.0,
        "warmup_avg_us": 14462.3,
        "avg_us": 14575.2,
    }
    with pytest.raises(
        DapterError, match="printed no 'Inference timings in us' line; its last line: Benchmarking failed."
    ):
        adb_lib.parse_benchmark_model("ERROR: File x does not exist.\nBenchmarking failed.\n")
    with pytest.raises(DapterError, match="is not a number"):
        adb_lib.parse_benchmark_model("Inference timings in us: Init: n/a, Inference (avg): 1")


def test_devices_listing_is_parsed(phones, monkeypatch):
    phones.attach("A1").attach("B2", state="unauthorized").write_state()
    monkeypatch.setenv("FAKE_ADB_STATE", str(phones.state_path))
    devices = adb_lib.list_devices(str(phones.bin / "adb"))
    assert devices == [("A1", "device"), ("B2", "unauthorized")]
    assert adb_lib.select_devices(devices, ["A1"], all_devices=False) == ["A1"]
    assert adb_lib.select_devices([("A1", "device")], [], all_devices=False) == ["A1"]


def test_result_json_is_checked():
    assert adb_lib.parse_result(json.dumps(SAMPLE), "x")["avg_us"] == 110100.0
    broken = dict(SAMPLE, p90_us=None)
    with pytest.raises(DapterError, match="x lacks the timings p90_us"):
        adb_lib.parse_result(json.dumps(broken), "x")
    with pytest.raises(DapterError, match="is not a dapter-bench/1 result \\(format: 'list'\\)"):
        adb_lib.parse_result("[]", "x")


def test_am_start_is_the_command_line_the_app_parses():
    config = adb_lib.AdbBenchmarkConfig(num_threads=4, warmup_runs=2, num_runs=5, delegate="gpu")
    command = adb_lib.am_start_command(
        "/data/local/tmp/dapter/converter_int8.tflite",
        config,
        "sample",
        "/data/local/tmp/dapter/face_1.png",
        remote_yardstick="/data/local/tmp/dapter/mobilenet_v2_1.0_int8.tflite",
    )
    assert command == AM_START


def test_names_on_the_phone_are_shell_safe():
    assert adb_lib.remote_name("/a b/c$(rm).tflite") == "c__rm_.tflite"
    import datetime

    when = datetime.datetime(2026, 12, 1, 22, 5, 9)
    assert (
        adb_lib.make_run_id("192.168.1.5:5555", "/x/conv int8.tflite", when)
        == "20261201T220509_192.168.1.5_5555_conv_int8"
    )


def test_the_driver_passes_the_files_own_output_step_to_the_app(tmp_path, int8_model):

    # A file without the contract in its metadata (exported before it): the app decodes it with step 1.
    assert adb_lib.contract_output_step(str(int8_model)) == 1
    model_bytes = int8_model.read_bytes()
    carried = tmp_path / "converter_int8.tflite"
    carried.write_bytes(
        with_contract(model_bytes, output_contract(model_bytes, 16))
    )
    # The driver's TensorFlow-free reading and TensorFlow's flatbuffer tools agree.
    assert adb_lib.contract_output_step(str(carried)) == 16
    assert read_contract(carried.read_bytes())["output_step"] == 16
    config = adb_lib.AdbBenchmarkConfig()
    command = adb_lib.am_start_command("/data/local/tmp/dapter/c.tflite", config, "r1", output_step=16)
    assert command[-3:] == ["--es", "output_step", "16"]  # As BenchmarkArgs.toAmStartExtras puts it.

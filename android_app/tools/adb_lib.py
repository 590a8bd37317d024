"""Benchmarking converter .tflite files on Android phones over adb, with the harness app of android_app/.

``find_adb`` locates adb; ``select_devices`` checks what ``adb devices`` lists (none attached,
unauthorized, offline, several without a serial); ``Device`` runs adb commands on one phone;
``run_app_benchmark`` pushes a model, starts the harness Activity with ``am start -W`` and pulls its
result JSON; ``run_benchmark_model`` runs TFLite's native ``benchmark_model`` the same way and parses
its "Inference timings in us" line; ``append_rows`` keeps one CSV and one Markdown table of every
phone and model measured. No TensorFlow here: the driver runs wherever adb does.
"""

import csv
import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import time

from dapter_tf.errors import DapterError
from export.benchmark.timing import STAT_FIELDS

PACKAGE = "org.dapter.bench"
ACTIVITY = f"{PACKAGE}/.BenchmarkActivity"
# Where the app writes <run_id>.json: its external files dir, which adb (the shell user) can read.
RESULT_DIR = f"/sdcard/Android/data/{PACKAGE}/files"
RESULT_FORMAT = "dapter-bench/1"
DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")
PROGRESS_EVERY_S = 10.0
# getprop keys that describe a phone and its SoC (ro.soc.* exists from Android 12).
DEVICE_PROPS = {
    "manufacturer": "ro.product.manufacturer",
    "model": "ro.product.model",
    "soc_manufacturer": "ro.soc.manufacturer",
    "soc_model": "ro.soc.model",
    "hardware": "ro.hardware",
    "board": "ro.board.platform",
    "android_release": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_BENCHMARK_MODEL_LINE = re.compile(r"Inference timings in us:\s*(.*)")
_BENCHMARK_MODEL_FIELDS = {
    "Init": "init_us",
    "First inference": "first_inference_us",
    "Warmup (avg)": "warmup_avg_us",
    "Inference (avg)": "avg_us",
}
CSV_FIELDS = (
    "date",
    "serial",
    "manufacturer",
    "device_model",
    "soc",
    "android_release",
    "abi",
    "model_file",
    "model_bytes",
    "input_dtype",
    "delegate",
    "num_threads",
    "warmup_runs",
    "num_runs",
    *STAT_FIELDS,
    "benchmark_model_init_us",
    "benchmark_model_first_inference_us",
    "benchmark_model_warmup_avg_us",
    "benchmark_model_avg_us",
    "yardstick_file",
    "yardstick_avg_us",
    "yardstick_min_us",
    "yardstick_p50_us",
    "ratio_to_yardstick",
    "runtime_version",
    "run_id",
)
# The yardstick's timings the app reports beside the model's (``BenchmarkResult``'s ``yardstick_*``).
YARDSTICK_FIELDS = tuple(f"yardstick_{k}" for k in STAT_FIELDS)


@dataclasses.dataclass(frozen=True)
class AdbBenchmarkConfig:
    """One benchmark of every model on every selected phone.

    Attributes:
        num_threads: Interpreter threads (``benchmark_model --num_threads``), 1..64.
        warmup_runs: Runs before the timed ones; the first is reported as the first inference.
        num_runs: Timed runs.
        delegate: cpu (TFLite's own kernels), xnnpack (the default), gpu or nnapi.
        timeout_s: How long to wait for the app's result (or benchmark_model) on one model.
        remote_dir: Where models, the image and benchmark_model are pushed on the phone.
        poll_s: How often to look for the result file while waiting.
    """

    num_threads: int = 1
    warmup_runs: int = 1
    num_runs: int = 50
    delegate: str = "xnnpack"
    timeout_s: float = 300.0
    remote_dir: str = "/data/local/tmp/dapter"
    poll_s: float = 0.5

    def __post_init__(self):
        # The same ranges as the app's BenchmarkArgs, so a bad value fails here, before any push.
        for name, low, high in (("num_threads", 1, 64), ("warmup_runs", 1, 100_000), ("num_runs", 1, 100_000)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise DapterError(f"--{name} must be in {low}..{high}, got {value}")
        if self.delegate not in DELEGATES:
            raise DapterError(f"--delegate must be one of {', '.join(DELEGATES)}, got {self.delegate!r}")
        if not self.timeout_s > 0:
            raise DapterError(f"--timeout_s must be > 0, got {self.timeout_s}")
        if not re.fullmatch(r"/[A-Za-z0-9._/-]+", self.remote_dir):
            raise DapterError(
                "--remote_dir must be an absolute path of letters, digits, '.', '_', '-' and '/', "
                f"got {self.remote_dir!r}"
            )


def find_adb(explicit: str = "") -> str:
    """The adb executable: ``explicit``, else adb on PATH, else the Android SDK's platform-tools.

    Raises:
        DapterError: when none is found, saying where it looked.
    """
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise DapterError(f"--adb {explicit} is not an executable file")
        return explicit
    found = shutil.which("adb")
    if found:
        return found
    for variable in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        sdk = os.environ.get(variable)
        candidate = os.path.join(sdk, "platform-tools", "adb") if sdk else ""
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise DapterError(
        "adb not found on PATH nor in $ANDROID_HOME/platform-tools: install Android's platform-tools or pass --adb"
    )


def _run(command: list, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DapterError(f"'{' '.join(command)}' did not answer within {timeout:g} s") from None
    except OSError as e:
        raise DapterError(f"cannot run {command[0]}: {e.strerror}") from None


def list_devices(adb: str) -> list[tuple[str, str]]:
    """(serial, state) of every device ``adb devices`` lists, e.g. ("R58M12", "unauthorized")."""
    proc = _run([adb, "devices"], timeout=30)
    if proc.returncode != 0:
        raise DapterError(f"'adb devices' failed: {_last_line(proc)}")
    devices = []
    for line in proc.stdout.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*")):
            continue  # The header, and "* daemon started successfully" on a first call.
        serial, _, state = line.partition("\t")
        devices.append((serial.strip(), state.strip() or "unknown"))
    return devices


def select_devices(devices: list[tuple[str, str]], serials: list[str], all_devices: bool) -> list[str]:
    """The serials to benchmark on, after checking that each is attached and ready.

    Args:
        devices: What ``list_devices`` gave.
        serials: The phones the user named (``--serial``); empty: the only one attached.
        all_devices: Take every attached phone (``--all_devices``).

    Raises:
        DapterError: none attached; a named phone not attached; several attached and none named;
            a chosen phone unauthorized, offline or otherwise not ready.
    """
    attached = dict(devices)
    if not attached:
        raise DapterError(
            "no device attached: connect a phone with USB debugging on and check that 'adb devices' lists it"
        )
    if serials:
        missing = [s for s in serials if s not in attached]
        if missing:
            raise DapterError(f"device {', '.join(missing)} is not attached (attached: {', '.join(attached)})")
        chosen = list(serials)
    elif all_devices or len(attached) == 1:
        chosen = list(attached)
    else:
        raise DapterError(
            f"{len(attached)} devices attached ({', '.join(attached)}): pass --serial=SERIAL[,SERIAL] or --all_devices"
        )
    for serial in chosen:
        state = attached[serial]
        if state == "unauthorized":
            raise DapterError(
                f"device {serial} is unauthorized: unlock it, accept the 'Allow USB debugging?' prompt and retry"
            )
        if state != "device":
            raise DapterError(f"device {serial} is {state}, not ready: reconnect it and check 'adb devices'")
    return chosen


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def remote_name(local_path: str) -> str:
    """A file's name on the phone: its base name with anything a shell would split on replaced by '_'."""
    return _SAFE_NAME.sub("_", os.path.basename(local_path))


def remote_path(config: AdbBenchmarkConfig, local_path: str) -> str:
    """Where a pushed file lies on the phone: ``config.remote_dir`` and its ``remote_name``."""
    return f"{config.remote_dir}/{remote_name(local_path)}"


class Device:
    """adb commands on one phone, always addressed by its serial (``adb -s SERIAL ...``)."""

    def __init__(self, adb: str, serial: str):
        self.adb = adb
        self.serial = serial

    def adb_command(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        proc = _run([self.adb, "-s", self.serial, *args], timeout)
        if check and proc.returncode != 0:
            raise DapterError(f"'adb -s {self.serial} {' '.join(args)}' failed: {_last_line(proc)}")
        return proc

    def shell(self, command: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Runs ``command`` in the phone's shell; its words are given as they are (the caller quotes)."""
        return self.adb_command("shell", *command, timeout=timeout, check=check)

    def properties(self) -> dict:
        """Every system property (``adb shell getprop``, one ``[key]: [value]`` line each)."""
        out = self.shell(["getprop"]).stdout
        return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", out, flags=re.M))

    def describe(self) -> dict:
        """The phone and its SoC from getprop (``DEVICE_PROPS``); absent properties are empty."""
        props = self.properties()
        return {name: props.get(key, "") for name, key in DEVICE_PROPS.items()}

    def push(self, local: str, remote: str) -> None:
        self.adb_command("push", local, remote, timeout=600)

    def exists(self, remote: str) -> bool:
        # `ls` prints the path it was given when it exists, and "No such file" on stderr otherwise;
        # its exit status does not reach us through adb before Android 7.
        out = self.shell(["ls", remote], check=False).stdout.strip()
        return out == remote

    def ensure_app(self, apk: str) -> None:
        """Installs ``apk`` (replacing an older install) or checks that the app is already installed."""
        if apk:
            proc = self.adb_command("install", "-r", apk, timeout=600, check=False)
            if "Success" not in proc.stdout:
                raise DapterError(f"installing {apk} on {self.serial} failed: {_last_line(proc)}")
            return
        if not self.shell(["pm", "path", PACKAGE], check=False).stdout.strip().startswith("package:"):
            raise DapterError(
                f"{PACKAGE} is not installed on {self.serial}: pass --apk=android_app/app/build/outputs/apk/"
                "release/app-release.apk (README, 'Android harness')"
            )


# The contract a .tflite file carries (export.tflite.contract.with_contract): a JSON text in a metadata
# buffer, written with sorted keys, so it starts with its format field.
_CONTRACT_START = b'{"format": "dapter-tf io contract 1"'


def contract_output_step(model_path: str) -> int:
    """The output grid step a ``.tflite`` file's own contract states (1 for a file without one).

    The driver runs without TensorFlow (it starts in a fraction of a second), so it finds the
    contract's JSON in the file's bytes instead of parsing the flatbuffer with TensorFlow's tools;
    tests/test_adb_benchmark.py checks that both read the same contract.
    """
    with open(model_path, "rb") as f:
        data = f.read()
    start = data.find(_CONTRACT_START)
    if start < 0:
        return 1
    contract, _ = json.JSONDecoder().raw_decode(data[start:].decode("utf-8", "replace"))
    return int(contract["output_step"])


def am_start_command(
    remote_model: str,
    config: AdbBenchmarkConfig,
    run_id: str,
    remote_image: str = "",
    output_step: int = 1,
    remote_yardstick: str = "",
) -> list[str]:
    """The ``adb shell`` words that start the harness, in the order ``BenchmarkArgs.toAmStartExtras`` gives.

    ``-W`` waits until the Activity is launched; ``-S`` force-stops the app first, so that every run
    starts in a fresh process. Every value travels as a string extra (``--es``). ``remote_yardstick``
    is MobileNetV2 1.0 int8 on the phone, timed by the app in turn with the model.
    """
    command = ["am", "start", "-W", "-S", "-n", ACTIVITY]
    extras = [
        ("model", remote_model),
        ("num_threads", str(config.num_threads)),
        ("warmup_runs", str(config.warmup_runs)),
        ("num_runs", str(config.num_runs)),
        ("delegate", config.delegate),
        ("run_id", run_id),
    ]
    if remote_image:
        extras.append(("image", remote_image))
    if output_step != 1:  # The app decodes its last output with the file's contract (OutputDecoding).
        extras.append(("output_step", str(output_step)))
    if remote_yardstick:
        extras.append(("yardstick", remote_yardstick))
    for key, value in extras:
        command += ["--es", key, shlex.quote(value)]
    return command


def make_run_id(serial: str, model_path: str, now: datetime.datetime | None = None) -> str:
    """A run id that names the result file: time, phone and model, in file-name characters."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stem = os.path.splitext(os.path.basename(model_path))[0]
    return _SAFE_NAME.sub("_", f"{now:%Y%m%dT%H%M%S}_{serial}_{stem}")[:100]


def parse_result(text: str, source: str) -> dict:
    """The app's result JSON, checked; DapterError naming ``source`` when it is malformed or a failure."""
    try:
        result = json.loads(text)
    except json.JSONDecodeError as e:
        raise DapterError(f"{source} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(result, dict) or result.get("format") != RESULT_FORMAT:
        found = result.get("format") if isinstance(result, dict) else type(result).__name__
        raise DapterError(f"{source} is not a {RESULT_FORMAT} result (format: {found!r}): update the app or the driver")
    if result.get("status") != "ok":
        raise DapterError(f"the app failed on {source}: {result.get('error') or 'no message'}")
    fields = STAT_FIELDS + (YARDSTICK_FIELDS if result.get("yardstick_model") else ())
    missing = [k for k in fields if not isinstance(result.get(k), (int, float))]
    if missing:
        raise DapterError(f"{source} lacks the timings {', '.join(missing)}")
    return result


def run_app_benchmark(
    device: Device,
    model_path: str,
    config: AdbBenchmarkConfig,
    output_dir: str,
    image_path: str = "",
    yardstick_path: str = "",
) -> dict:
    """Times one ``.tflite`` in the harness app on ``device`` and returns its result JSON as a dict.

    Pushes the model (and image, and the MobileNetV2 yardstick to time beside it) to
    ``config.remote_dir``, deletes any stale result, starts the Activity, waits up to
    ``config.timeout_s`` for ``<run_id>.json`` and pulls it into ``output_dir``.
    """
    remote_model = remote_path(config, model_path)
    device.push(model_path, remote_model)
    remote_image = remote_path(config, image_path) if image_path else ""
    if image_path:
        device.push(image_path, remote_image)
    remote_yardstick = remote_path(config, yardstick_path) if yardstick_path else ""
    if yardstick_path:
        device.push(yardstick_path, remote_yardstick)
    run_id = make_run_id(device.serial, model_path)
    remote_result = f"{RESULT_DIR}/{run_id}.json"
    device.shell(["rm", "-f", remote_result])

    command = am_start_command(
        remote_model, config, run_id, remote_image, contract_output_step(model_path), remote_yardstick
    )
    proc = device.shell(command, timeout=config.timeout_s)
    # am reports a missing Activity or a bad intent as an "Error: ..." line, with exit status 0.
    if re.search(r"^Error", proc.stdout + "\n" + proc.stderr, flags=re.M):
        raise DapterError(f"'am start' failed on {device.serial}: {_last_line(proc)}")

    started = time.monotonic()
    next_note = started + PROGRESS_EVERY_S
    while not device.exists(remote_result):
        now = time.monotonic()
        if now - started > config.timeout_s:
            raise DapterError(
                f"no result from {device.serial} after {config.timeout_s:g} s ({remote_result}): "
                f"see 'adb -s {device.serial} logcat -s DapterBench'"
            )
        if now >= next_note:
            # A 224x224 float32 file at many runs takes minutes on a slow phone: say it is alive.
            print(
                f"{device.serial}: waiting for the result, {now - started:.0f} s of {config.timeout_s:g} s", flush=True
            )
            next_note += PROGRESS_EVERY_S
        time.sleep(config.poll_s)

    local = os.path.join(output_dir, f"{run_id}.json")
    device.adb_command("pull", remote_result, local)
    with open(local) as f:
        return parse_result(f.read(), f"{device.serial}:{remote_result}")


def benchmark_model_command(binary: str, remote_model: str, config: AdbBenchmarkConfig) -> list[str]:
    """``benchmark_model``'s command line for the same threads, runs and delegate as the app's run.

    ``--warmup_min_secs=0`` and ``--min_secs=0`` make it run exactly the given counts, as the app does.
    """
    command = [
        binary,
        f"--graph={remote_model}",
        f"--num_threads={config.num_threads}",
        f"--warmup_runs={config.warmup_runs}",
        "--warmup_min_secs=0",
        f"--num_runs={config.num_runs}",
        "--min_secs=0",
        f"--use_xnnpack={'false' if config.delegate == 'cpu' else 'true'}",
    ]
    if config.delegate == "gpu":
        command.append("--use_gpu=true")
    if config.delegate == "nnapi":
        command.append("--use_nnapi=true")
    return command


def parse_benchmark_model(output: str) -> dict:
    """The timings of benchmark_model's "Inference timings in us: Init: ..., Inference (avg): ..." line."""
    # The last such line: with --enable_op_profiling it prints more than one.
    match = ([None] + list(_BENCHMARK_MODEL_LINE.finditer(output)))[-1]
    if match is None:
        lines = output.strip().splitlines()
        raise DapterError(
            "benchmark_model printed no 'Inference timings in us' line"
            + (f"; its last line: {lines[-1]}" if lines else "")
        )
    timings = {}
    for part in match.group(1).split(","):
        name, _, value = part.partition(":")
        key = _BENCHMARK_MODEL_FIELDS.get(name.strip())
        if key:
            try:
                timings[key] = float(value)
            except ValueError:
                raise DapterError(f"benchmark_model's {name.strip()!r} is not a number: {value.strip()!r}") from None
    if "avg_us" not in timings:
        raise DapterError(f"benchmark_model's timings lack 'Inference (avg)': {match.group(0)}")
    return timings


def push_benchmark_model(device: Device, binary: str, config: AdbBenchmarkConfig) -> str:
    """Pushes the user's benchmark_model binary and makes it executable; returns its path on the phone."""
    remote = remote_path(config, "benchmark_model")
    device.push(binary, remote)
    device.shell(["chmod", "755", remote])
    return remote


def run_benchmark_model(device: Device, remote_binary: str, model_path: str, config: AdbBenchmarkConfig) -> dict:
    """Runs benchmark_model on a model already pushed by ``run_app_benchmark``; its parsed timings."""
    command = benchmark_model_command(remote_binary, remote_path(config, model_path), config)
    proc = device.shell(command, timeout=config.timeout_s)
    return parse_benchmark_model(proc.stdout + "\n" + proc.stderr)


def make_row(serial: str, info: dict, model_path: str, result: dict, native: dict | None) -> dict:
    """One CSV row: the phone, the model, the app's timings and benchmark_model's beside them."""
    soc = " ".join(v for v in (info["soc_manufacturer"], info["soc_model"]) if v) or " / ".join(
        v for v in (info["hardware"], info["board"]) if v
    )
    row = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "serial": serial,
        "manufacturer": info["manufacturer"],
        "device_model": info["model"],
        "soc": soc,
        "android_release": info["android_release"],
        "abi": info["abi"],
        "model_file": os.path.basename(model_path),
        "model_bytes": result.get("model_bytes", ""),
        "input_dtype": result.get("input_dtype", ""),
        "delegate": result["delegate"],
        "num_threads": result["num_threads"],
        "warmup_runs": result["warmup_runs"],
        "num_runs": result["num_runs"],
        "runtime_version": result.get("runtime_version", ""),
        "run_id": result["run_id"],
    }
    row.update({k: round(float(result[k]), 1) for k in STAT_FIELDS})
    for key in ("init_us", "first_inference_us", "warmup_avg_us", "avg_us"):
        value = (native or {}).get(key)
        row[f"benchmark_model_{key}"] = "" if value is None else round(value, 1)
    yardstick = result.get("yardstick_model")
    row["yardstick_file"] = os.path.basename(yardstick) if yardstick else ""
    for key in ("yardstick_avg_us", "yardstick_min_us", "yardstick_p50_us"):
        row[key] = round(float(result[key]), 1) if yardstick else ""
    # The ratio of the fastest runs, as the host's bench_yardstick and dapter-benchmark-tflite give it.
    row["ratio_to_yardstick"] = round(result["min_us"] / result["yardstick_min_us"], 4) if yardstick else ""
    return row


def read_rows(csv_path: str) -> list[dict]:
    """Rows of an earlier table; DapterError when its columns are not this driver's."""
    if not os.path.exists(csv_path):
        return []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != CSV_FIELDS:
            raise DapterError(f"{csv_path} has other columns than this driver writes: pass another --output_dir")
        return list(reader)


def append_rows(csv_path: str, md_path: str, rows: list[dict]) -> list[dict]:
    """Appends ``rows`` to the CSV and rewrites the Markdown table from all of its rows; returns them all."""
    all_rows = read_rows(csv_path) + rows
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    new = not os.path.exists(csv_path)
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
    partial = md_path + ".partial"
    with open(partial, "w") as f:
        f.write(format_table(all_rows))
    os.replace(partial, md_path)
    return all_rows


def _ms(value) -> str:
    return f"{float(value) / 1000:.2f}" if value not in ("", None) else ""


def _ratio(value) -> str:
    return f"{float(value):.2f}" if value not in ("", None) else ""


def format_table(rows: list[dict]) -> str:
    """A Markdown table of every phone and model, in milliseconds, comparable across phones."""
    lines = [
        "| phone | SoC | Android | model | delegate | threads | init ms | first ms | avg ms | p50 ms | p90 ms "
        "| std ms | benchmark_model avg ms | MobileNetV2 int8 min ms | x MobileNetV2 | date |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        phone = f"{r['manufacturer']} {r['device_model']}".strip()
        lines.append(
            f"| {phone} | {r['soc']} | {r['android_release']} | {r['model_file']} | {r['delegate']} "
            f"| {r['num_threads']} | {_ms(r['init_us'])} | {_ms(r['first_inference_us'])} | {_ms(r['avg_us'])} "
            f"| {_ms(r['p50_us'])} | {_ms(r['p90_us'])} | {_ms(r['std_us'])} | {_ms(r['benchmark_model_avg_us'])} "
            f"| {_ms(r['yardstick_min_us'])} | {_ratio(r['ratio_to_yardstick'])} | {r['date']} |"
        )
    return "\n".join(lines) + "\n"

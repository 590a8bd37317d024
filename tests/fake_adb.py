"""A stand-in for adb and the phones behind it, for the adb driver's tests (no phone exists here).

Tests put an executable named ``adb`` on PATH that runs this file. It reads the phones from the
JSON file named by $FAKE_ADB_STATE:

    {"devices": [{"serial": "R58M", "state": "device", "props": {"ro.product.model": "..."},
                  "installed": true, "app": "ok"}],
     "root": "/tmp/.../phones", "log": "/tmp/.../adb.log"}

and keeps each phone's files under ``root/<serial>/``. Like adb it answers ``devices``,
``-s SERIAL push|pull|install|shell ...``, and in the shell ``getprop``, ``pm path``, ``mkdir -p``,
``rm -f``, ``chmod``, ``ls``, ``am start`` and a pushed ``benchmark_model``. Every command line is
appended to the log as one JSON list.

``am start`` does what the harness app does: it checks the extras, reads the pushed model (and the
yardstick, when the extras name one; without one the yardstick's fields are empty), and
writes ``<run_id>.json`` into the app's files dir, from the app's own sample result
(android_app/core/src/test/resources/sample_result.json, which a Kotlin test pins to the app's
output). A phone's ``app`` says how it behaves: ``ok``; ``no_result`` (writes nothing);
``malformed`` (half a JSON file); ``wrong_format`` (another format's file); ``error`` (the app's
own failure result).
"""

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "android_app/core/src/test/resources/sample_result.json"
PACKAGE = "org.dapter.bench"
RESULT_DIR = f"/sdcard/Android/data/{PACKAGE}/files"
BENCHMARK_MODEL_OUTPUT = """\
STARTING!
Log parameter values verbosely: [0]
Graph: [{graph}]
Num threads: [{threads}]
Loaded model {graph}
The input model file size (MB): 0.140808
Initialized session in 21.3ms.
Running benchmark for at least {warmup} iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count={warmup} first=150123 curr=121000 min=121000 max=150123 avg=135561 std=14561
Running benchmark for at least {runs} iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count={runs} first=107000 curr=106500 min=105000 max=111000 avg=107250 std=1900
Inference timings in us: Init: 21300, First inference: 150123, Warmup (avg): 135561, Inference (avg): 107250
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the \
actual memory footprint of the model at runtime. Take the information at your one's own risk.
Memory footprint delta from the start of the tool (MB): init=6.5 overall=14.2
"""


def main(argv):
    state = json.loads(Path(os.environ["FAKE_ADB_STATE"]).read_text())
    with open(state["log"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    if argv[:1] == ["version"]:
        print("Android Debug Bridge version 1.0.41\nVersion 35.0.2-fake")
        return 0
    if argv[:1] == ["devices"]:
        print("List of devices attached")
        for d in state["devices"]:
            print(f"{d['serial']}\t{d['state']}")
        print()
        return 0
    if argv[:1] != ["-s"] or len(argv) < 3:
        # The driver must always name its phone; real adb fails so too when several are attached.
        print("adb: error: the fake adb requires -s SERIAL", file=sys.stderr)
        return 1
    serial, command, args = argv[1], argv[2], argv[3:]
    device = next((d for d in state["devices"] if d["serial"] == serial), None)
    if device is None:
        print(f"adb: device '{serial}' not found", file=sys.stderr)
        return 1
    if device["state"] != "device":
        print(f"adb: device {device['state']}", file=sys.stderr)
        return 1
    phone = Phone(Path(state["root"]) / serial, device)
    if command == "push":
        return phone.push(*args)
    if command == "pull":
        return phone.pull(*args)
    if command == "install":
        return phone.install(args[-1])
    if command == "shell":
        # adb joins the words into one command line for the phone's shell, which splits it again.
        return phone.shell(shlex.split(" ".join(args)))
    print(f"adb: unknown command {command}", file=sys.stderr)
    return 1


class Phone:
    def __init__(self, root: Path, device: dict):
        self.root = root
        self.device = device

    def path(self, remote: str) -> Path:
        return self.root / remote.lstrip("/")

    def push(self, local, remote):
        if not os.path.exists(local):
            print(f"adb: error: cannot stat '{local}': No such file or directory", file=sys.stderr)
            return 1
        target = self.path(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
        print(f"{local}: 1 file pushed, 0 skipped. 12.3 MB/s ({os.path.getsize(local)} bytes in 0.010s)")
        return 0

    def pull(self, remote, local):
        source = self.path(remote)
        if not source.is_file():
            print(f"adb: error: failed to stat remote object '{remote}': No such file or directory", file=sys.stderr)
            return 1
        shutil.copyfile(source, local)
        print(f"{remote}: 1 file pulled, 0 skipped.")
        return 0

    def install(self, apk):
        if not os.path.isfile(apk):
            print(f"adb: failed to stat {apk}: No such file or directory", file=sys.stderr)
            return 1
        self.path("/data/app/org.dapter.bench/base.apk").parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(apk, self.path("/data/app/org.dapter.bench/base.apk"))
        print("Performing Streamed Install\nSuccess")
        return 0

    def installed(self) -> bool:
        return self.device.get("installed", False) or self.path("/data/app/org.dapter.bench/base.apk").exists()

    def shell(self, words):
        if words == ["getprop"]:
            for key, value in sorted(self.device.get("props", {}).items()):
                print(f"[{key}]: [{value}]")
            return 0
        if words[:2] == ["pm", "path"]:
            if self.installed() and words[2] == PACKAGE:
                print("package:/data/app/org.dapter.bench/base.apk")
                return 0
            return 1
        if words[:2] == ["mkdir", "-p"]:
            self.path(words[2]).mkdir(parents=True, exist_ok=True)
            return 0
        if words[:2] == ["rm", "-f"]:
            self.path(words[2]).unlink(missing_ok=True)
            return 0
        if words[:1] == ["chmod"]:
            target = self.path(words[2])
            if not target.exists():
                print(f"chmod: {words[2]}: No such file or directory", file=sys.stderr)
                return 1
            target.chmod(int(words[1], 8))
            return 0
        if words[:1] == ["ls"]:
            if self.path(words[1]).exists():
                print(words[1])
                return 0
            print(f"ls: {words[1]}: No such file or directory", file=sys.stderr)
            return 1
        if words[:2] == ["am", "start"]:
            return self.am_start(words[2:])
        if words and words[0].endswith("/benchmark_model"):
            return self.benchmark_model(words)
        print(f"/system/bin/sh: {words[0] if words else ''}: not found", file=sys.stderr)
        return 127

    def am_start(self, words):
        component = words[words.index("-n") + 1] if "-n" in words else ""
        if not self.installed() or component != f"{PACKAGE}/.BenchmarkActivity":
            print(f"Starting: Intent {{ cmp={component} }}")
            print(f"Error: Activity class {{{component}}} does not exist.")
            return 0  # am exits 0 here, as on real phones.
        extras = {}
        i = 0
        while i < len(words):
            if words[i] == "--es":
                extras[words[i + 1]] = words[i + 2]
                i += 3
            else:
                i += 1
        print(f"Starting: Intent {{ cmp={component} (has extras) }}")
        print(
            "Status: ok\nLaunchState: COLD\nActivity: org.dapter.bench/.BenchmarkActivity\nTotalTime: 412\n"
            "WaitTime: 415\nComplete"
        )
        self.write_result(extras)
        return 0

    def write_result(self, extras):
        behaviour = self.device.get("app", "ok")
        run_id = extras.get("run_id", "dapter_bench")
        out = self.path(f"{RESULT_DIR}/{run_id}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        if behaviour == "no_result":
            return
        if behaviour == "malformed":
            out.write_text('{"format": "dapter-bench/1", "status": "ok", "avg_us": 1')
            return
        result = json.loads(SAMPLE.read_text())
        if behaviour == "wrong_format":
            result["format"] = "dapter-bench/0"
        model = self.path(extras["model"])
        props = self.device.get("props", {})
        result.update(
            run_id=run_id,
            model=extras["model"],
            delegate=extras.get("delegate", "xnnpack"),
            num_threads=int(extras.get("num_threads", 1)),
            warmup_runs=int(extras.get("warmup_runs", 1)),
            num_runs=int(extras.get("num_runs", 50)),
            input_source=f"image:{extras['image']}" if "image" in extras else "random",
            device_manufacturer=props.get("ro.product.manufacturer", ""),
            device_model=props.get("ro.product.model", ""),
            soc_manufacturer=props.get("ro.soc.manufacturer", ""),
            soc_model=props.get("ro.soc.model", ""),
        )
        yardstick = extras.get("yardstick")
        if yardstick is None:  # The app fills the yardstick's fields only when it timed one.
            for key in [k for k in result if k.startswith("yardstick_")] + ["ratio_to_yardstick"]:
                result[key] = None
        else:
            result.update(yardstick_model=yardstick)
        if not model.is_file():
            behaviour = "error"
            message = f"cannot read {extras['model']}: adb push the .tflite there and make it world-readable"
        elif yardstick is not None and not self.path(yardstick).is_file():
            behaviour = "error"
            message = f"cannot read the yardstick {yardstick}: adb push it there and make it world-readable"
        else:
            result["model_bytes"] = model.stat().st_size
            message = "IllegalArgumentException: Internal error: Cannot create interpreter"
        if behaviour == "error":
            result.update(status="error", error=message)
            for key in [k for k in result if k.endswith("_us")] + ["count", "ratio_to_yardstick"]:
                result[key] = None
        out.write_text(json.dumps(result, separators=(",", ":")) + "\n")

    def benchmark_model(self, words):
        binary = self.path(words[0])
        if not binary.exists() or not os.access(binary, os.X_OK):
            print(f"/system/bin/sh: {words[0]}: can't execute: Permission denied", file=sys.stderr)
            return 126
        flags = dict(w[2:].split("=", 1) for w in words[1:] if w.startswith("--"))
        if not self.path(flags["graph"]).is_file():
            print(f"ERROR: File {flags['graph']} does not exist.", file=sys.stderr)
            print("Benchmarking failed.")
            return 1
        print(
            BENCHMARK_MODEL_OUTPUT.format(
                graph=flags["graph"], threads=flags["num_threads"], warmup=flags["warmup_runs"], runs=flags["num_runs"]
            )
        )
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""File-system faults: each gives one ``error:`` line and exit status 1 before any work, and blocks no rerun.

``runner.run`` checks every output flag (``OUTPUT_FOLDER_FLAGS``, ``OUTPUT_FILE_FLAGS``) of every
binary before its main runs; a few binaries are tried here.
"""

import json
import os

import pytest
from conftest import REPO, assert_one_error_line, run_binary

from cli import runner
from dapter_tf import DapterError

BUNDLE = REPO / "results" / "release" / "cifar2_10_reference"
TFLITE = BUNDLE / "converter_int8.tflite"  # A shipped file; which one does not matter here.

# Root ignores file permissions: the read-only case needs an ordinary user.
needs_non_root = pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "module, flag",
    [
        ("experiments.train_target", "--workdir"),
        ("experiments.train_dapter", "--workdir"),
        ("experiments.attack", "--workdir"),
        ("experiments.lambda_sweep", "--workdir"),
        ("experiments.reproduce", "--report_dir"),
        ("export.convert.convert", "--output_dir"),
        ("android_app.tools.adb_benchmark", "--output_dir"),
    ],
)
def test_an_output_folder_that_is_a_file(module, flag, a_file, tiny_target_path, tmp_path):
    # runner.run checks every output flag of every binary before its main runs.
    extra = {
        "experiments.train_dapter": [f"--target={tiny_target_path}"],
        "experiments.attack": [f"--converter={tmp_path / 'c.keras'}"],
        "experiments.lambda_sweep": [f"--target={tiny_target_path}"],
        "experiments.reproduce": [f"--workdir={tmp_path / 'run'}"],
        "export.convert.convert": [f"--converter={TFLITE}", f"--input={a_file.parent}"],
        "android_app.tools.adb_benchmark": [f"--model={TFLITE}"],
    }.get(module, [])
    proc = run_binary(module, f"{flag}={a_file}", *extra)
    assert_one_error_line(proc, f"{flag} {a_file} is a file, not a folder")
    assert a_file.read_text() == "not a folder"


def test_a_folder_under_a_file(a_file):
    proc = run_binary("experiments.train_target", f"--workdir={a_file / 'run'}")
    assert_one_error_line(proc, f"cannot be created: {a_file} is a file")


def test_benchmark_output_json_in_a_missing_folder_fails_before_the_benchmark(tmp_path):
    proc = run_binary(
        "export.benchmark.benchmark_tflite", f"--graph={TFLITE}", f"--output_json={tmp_path / 'nowhere' / 'bench.json'}"
    )
    assert_one_error_line(proc, f"its folder {tmp_path / 'nowhere'} does not exist")
    assert "avg" not in proc.stdout  # Nothing was timed.


def test_export_into_a_file_and_release_into_a_file(tmp_path, a_file, tiny_target_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps({"target_path": tiny_target_path, "lambda_": 0.9}))
    proc = run_binary("export.tflite.export_tflite", f"--workdir={workdir}", f"--output_dir={a_file}")
    assert_one_error_line(proc, f"--output_dir {a_file} is a file, not a folder")
    proc = run_binary("export.release.release", f"--workdir={workdir}", f"--output_dir={a_file}")
    assert_one_error_line(proc, f"--output_dir {a_file} is a file, not a folder")


def test_a_converter_trained_at_another_size_than_its_target_blocks_no_rerun(tmp_path, tiny_target_path):
    workdir = tmp_path / "run"
    proc = run_binary(
        "experiments.train_dapter", f"--target={tiny_target_path}", f"--workdir={workdir}", "--image_size=64"
    )
    assert_one_error_line(proc, "takes 32x32 images but the data are 64x64: train at the target's size")
    assert not workdir.exists()  # No half-written config.json to refuse the corrected run.


@needs_non_root
def test_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = run_binary("experiments.train_target", f"--workdir={locked / 'run'}")
        assert_one_error_line(proc, "is not writable")
    finally:
        locked.chmod(0o700)


def test_check_output_paths_by_hand(tmp_path, a_file, monkeypatch):
    runner.check_output_folder("--x", str(tmp_path / "new" / "deeper"))  # May be created: passes.
    assert not (tmp_path / "new").exists()  # And nothing was made.
    runner.check_output_file("--y", str(tmp_path / "out.json"))
    with pytest.raises(DapterError, match="is a folder, not a file"):
        runner.check_output_file("--y", str(tmp_path))
    # Read-only, as a non-root user sees it (root's os.access says yes to everything).
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(DapterError, match=r"--x .* cannot be written \(.* is not writable\)"):
        runner.check_output_folder("--x", str(tmp_path / "run"))
    with pytest.raises(DapterError, match="cannot be written \\(permission denied\\)"):
        runner.check_output_file("--y", str(tmp_path / "out.json"))

"""The binaries as a user runs them: one-line errors, SIGKILL and resume, the demo end to end."""

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import assert_one_error_line, kill_at_first_checkpoint, run_binary, save_npz


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "corrupt.npz").write_bytes(b"\x00\x01 not an npz")
    return {
        "missing": str(d / "missing.npz"),
        "corrupt": str(d / "corrupt.npz"),
        "rank3": save_npz(d / "rank3.npz", np.zeros((4, 32, 32), np.uint8)),
        "gray": save_npz(d / "gray.npz", np.zeros((4, 32, 32, 1), np.uint8)),
        "float": save_npz(d / "float.npz", np.zeros((4, 32, 32, 3), np.float32)),
        "empty": save_npz(d / "empty.npz", np.zeros((0, 32, 32, 3), np.uint8)),
    }


@pytest.mark.parametrize(
    "which, message",
    [
        ("missing", "data file not found"),
        ("corrupt", "not a readable .npz file"),
        ("rank3", "must have rank 4"),
        ("gray", "must have 3 (RGB) channels"),
        ("float", "must be uint8"),
        ("empty", "the dataset is empty"),
    ],
)
def test_bad_data_files_get_one_line_and_nothing_written(bad_files, tmp_path, which, message):
    workdir = tmp_path / "run"
    proc = run_binary(
        "experiments.train_target",
        "--source=npz",
        f"--train_npz={bad_files[which]}",
        f"--test_npz={bad_files[which]}",
        f"--workdir={workdir}",
    )
    assert_one_error_line(proc, message)
    assert not workdir.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lambda_=1.5"], "lambda must lie in [0, 1]"),
        (["--lambda_=-0.1"], "lambda must lie in [0, 1]"),
        (["--dataset=imagenet99"], "unknown dataset 'imagenet99'"),
        (["--target=/nonexistent/target.keras"], "target model file not found"),
        (["--source=tfds", "--tfds_data_dir={tmp}"], "tfds dataset 'cifar10' is not prepared"),
    ],
    ids=["lambda_high", "lambda_low", "unknown_dataset", "missing_target", "tfds_offline"],
)
def test_bad_flags_of_train_dapter(tiny_target_path, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path / "tfds")) for a in args]
    workdir = tmp_path / "run"
    proc = run_binary("experiments.train_dapter", f"--target={tiny_target_path}", f"--workdir={workdir}", *args)
    assert_one_error_line(proc, message)
    assert not workdir.exists()


def test_unknown_target_model_name(tmp_path):
    # Started afresh (not forked from a process that has TensorFlow): the binary's own quiet import of
    # TensorFlow keeps its native start-up lines off stderr, so the error is still the only line.
    proc = run_binary("experiments.train_target", "--model=vgg99", f"--workdir={tmp_path / 'run'}", fresh=True)
    assert_one_error_line(proc, "unknown target model 'vgg99'; choose one of: lenet, resnet18, ")
    # The suite's other binaries run forked from a process that has TensorFlow (conftest.run_binary):
    # the same exit status and the same output as this fresh start.
    forked = run_binary("experiments.train_target", "--model=vgg99", f"--workdir={tmp_path / 'run'}")
    assert (forked.returncode, forked.stdout, forked.stderr) == (proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("experiments.lambda_sweep", ["--lambdas=0.5,1.5"], "lambda must lie in [0, 1]"),
        ("experiments.lambda_sweep", ["--lambdas=0.5,half"], "--lambdas must be numbers"),
        ("experiments.lambda_sweep", ["--lambdas=0.5,0.5"], "the lambda grid repeats a value"),
        ("experiments.lambda_sweep", ["--output_step=0"], "output_step must be an integer number of pixel levels"),
        ("experiments.tune_lambda", ["--step=0"], "step must lie in (0, 1)"),
        ("experiments.tune_lambda", ["--start=1.2"], "lambda must lie in [0, 1]"),
        ("experiments.tune_lambda", ["--max_entropy_ratio=0"], "max_entropy_ratio must lie in (0, 1]"),
        ("experiments.tune_lambda", ["--val_images=500"], "--val_images must lie in 1..499"),
        (
            "experiments.tune_lambda",
            ["--dataset=celeba", "--source=folder", "--data_dir={tmp}"],
            "dataset folder not found",
        ),
        ("experiments.train_target", ["--dataset=celeba"], "dataset 'celeba' cannot be read with --source=embedded"),
    ],
    ids=[
        "sweep_range",
        "sweep_text",
        "sweep_repeat",
        "sweep_step",
        "tune_step",
        "tune_start",
        "tune_ratio",
        "tune_val",
        "celeba_missing",
        "celeba_source",
    ],
)
def test_bad_flags_of_the_lambda_study_and_new_datasets(tiny_target_path, tmp_path, module, args, message):
    args = [a.replace("{tmp}", str(tmp_path / "nope")) for a in args]
    if module != "experiments.train_target":
        args.append(f"--target={tiny_target_path}")
    proc = run_binary(module, f"--workdir={tmp_path / 'run'}", *args)
    assert_one_error_line(proc, message)
    assert not (tmp_path / "run").exists()


def test_train_target_trains_a_zoo_model_that_loads_back_safely(tmp_path):
    workdir = tmp_path / "vgg11"
    proc = run_binary(
        "experiments.train_target",
        "--model=vgg11",
        "--width=4",
        "--epochs=1",
        "--batch_size=32",
        "--max_train=64",
        "--max_test=32",
        f"--workdir={workdir}",
    )
    assert proc.returncode == 0, proc.stderr
    from dapter_tf import models

    target = models.load_target(str(workdir / "target.keras"))  # safe_mode=True
    assert target.name == "vgg11" and target.output_shape == (None, 10)
    assert json.loads((workdir / "results.json").read_text())["steps"] == 2


def test_help_explains_every_flag():
    proc = run_binary("experiments.train_dapter", "--helpshort")  # absl exits 1 after help.
    assert "Trains a DAPter converter on L_dap" in proc.stdout
    for flag in (
        "--lambda_",
        "--target",
        "--epochs",
        "--batch_size",
        "--learning_rate",
        "--workdir",
        "--seed",
        "--strategy",
        "--dataset",
        "--source",
    ):
        assert flag in proc.stdout


def test_sigkill_then_rerun_resumes_from_the_last_checkpoint(tiny_target_path, tmp_path):
    workdir = tmp_path / "run"
    args = [
        f"--target={tiny_target_path}",
        f"--workdir={workdir}",
        "--epochs=3",
        "--batch_size=32",
        "--filters=8,16,16",
        "--checkpoint_every_steps=5",
        "--eval_images=50",
    ]
    kill_at_first_checkpoint("experiments.train_dapter", args, workdir)
    assert not (workdir / "results.json").exists()  # Killed mid-run: no results yet.

    rerun = run_binary("experiments.train_dapter", *args, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    results = json.loads((workdir / "results.json").read_text())
    assert results["resumed_from_step"] > 0
    assert f"Resumed from checkpoint at step {results['resumed_from_step']}." in rerun.stdout
    assert results["steps"] == 3 * (3500 // 32)  # It finished the run instead of starting over.


def test_demo_writes_report_grid_and_two_tflite_files(tmp_path):
    from dapter_tf.data.tasks import CIFAR10_CLASS_NAMES

    workdir = tmp_path / "demo"
    proc = run_binary(
        "experiments.run_demo",
        f"--workdir={workdir}",
        "--max_train=256",
        "--max_test=64",
        "--target_model=lenet",
        "--target_epochs=1",
        "--dapter_epochs=1",
        "--calibration_steps=5",
        "--attack_epochs=2",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("report.md", "report.json", "grid.png"):
        assert (workdir / name).is_file(), name
    report = json.loads((workdir / "report.json").read_text())
    # The reconstruction attack on the frozen converter: a decoder trained on the 256 converted training
    # images, measured on the 64 held-out ones, beside the mean training image; the report says what it means.
    attack = report["attack"]
    assert 0 <= attack["ssim"] <= 1 and 0 <= attack["ssim_mean_image"] <= 1, attack
    assert (attack["images_train"], attack["images_test"], attack["epochs"]) == (256, 64, 2)
    assert (workdir / "attack" / "symmetric" / "reconstructor.keras").is_file()
    text = (workdir / "report.md").read_text()
    assert "## Can the converted photos be restored? A reconstruction attack" in text
    assert f"| the attacker's reconstructions | {attack['ssim']:.4f} |" in text
    assert f"{attack['ssim_mean_image']:.4f}" in text and "dapter-protect" in text
    assert f"SSIM {attack['ssim']:.3f}" in proc.stdout
    # grid.png: three named rows (originals, converted, reconstructed) of ten columns, each a CIFAR-10 class;
    # each image is a 1-inch cell at 120 dpi, beside the row labels and under the headline figures.
    grid = report["grid"]
    assert grid["rows"] == ["originals", "converted (what is sent)", "reconstructed by the attacker"]
    assert len(grid["columns"]) == 10 and set(grid["columns"]) <= set(CIFAR10_CLASS_NAMES), grid["columns"]
    width, height = PIL.Image.open(workdir / "grid.png").size
    assert 10 * 120 < width < 12 * 120 and 3 * 120 < height < 5 * 120, (width, height)
    # The files are shipped under their names only if every one passed its gate; otherwise they lie
    # in export/failed/ and the report says so (the tiny models here are seeded: both pass today).
    broken = [mode for mode, entry in report["export"]["files"].items() if entry["failures"]]
    for mode in report["export"]["files"]:
        assert (workdir / "export" / f"converter_{mode}.tflite").is_file() == (not broken), broken
        assert (workdir / "export" / "failed" / f"converter_{mode}.tflite").is_file() == bool(broken)
    assert ("not shipped: it lies in export/failed/" in (workdir / "report.md").read_text()) == bool(broken)
    for key in ("accuracy_original", "accuracy_converted", "entropy_original", "entropy_converted", "bandwidth_ratio"):
        assert key in report["results"]
    assert report["export"]["files"]["int8"]["bytes"] < report["export"]["files"]["float32"]["bytes"]
    assert "| target accuracy |" in text
    # The paper's thresholds, each with a verdict, the noise of the figure and what the terms mean.
    assert "## Against the paper's thresholds (§7.1)" in text and "On 64 images one answer is 1.56 points" in text
    assert text.count("| met") + text.count("| missed") == 2, text
    assert "*Parity gate*" in text
    # Its log, written to a pipe as it would be to a file, is plain lines: no progress bar redrawn with
    # escape codes, carriage returns or backspaces (on a terminal the bars stay).
    for stream in (proc.stdout, proc.stderr):
        assert not any(code in stream for code in ("\x1b[", "\r", "\b")), stream[:2000]


def _console_scripts():
    from importlib.metadata import entry_points

    return sorted(e for e in entry_points(group="console_scripts") if e.name.startswith("dapter-"))


@pytest.mark.parametrize("script", _console_scripts(), ids=lambda e: e.name)
def test_console_scripts_explain_themselves(script):
    # A user types dapter-..., not python -m: --helpshort must show the binary's docstring and flags.
    path = os.path.join(os.path.dirname(sys.executable), script.name)
    if not os.path.exists(path):
        pytest.skip(f"{script.name} is not installed beside {sys.executable} (make install puts it there)")
    proc = subprocess.run([path, "--helpshort"], capture_output=True, text=True, timeout=120)
    # Read, not imported: importing two binaries would define their shared flags twice.
    source = Path(importlib.util.find_spec(script.module).origin).read_text()
    assert ast.get_docstring(ast.parse(source)).splitlines()[0] in proc.stdout
    assert proc.stdout.count("\n  --") >= 2, proc.stdout

"""reproduce: the plan of steps, resuming after a kill, and the claims report with hand-made results."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, SHARED_DATA, assert_one_error_line, run_binary

from dapter_tf import DapterError, pipeline
from dapter_tf.pipeline import reproduction_report
from dapter_tf.pipeline.paper_claims import build_claims, count_conv_layers


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


@pytest.mark.parametrize("scale", sorted(pipeline.SCALES))
def test_every_plan_runs_each_step_after_what_it_needs_and_writes_only_into_its_workdir(scale, tmp_path):
    plan = pipeline.build_plan(pipeline.SCALES[scale], "/data", str(tmp_path / "w"))
    names = [step.name for step in plan]
    assert len(names) == len(set(names))
    for i, step in enumerate(plan):
        assert set(step.after) <= set(names[:i]), step.name
        for arg in step.args:
            if arg.startswith(("--workdir=", "--output_dir=", "--output_json=")):
                assert arg.split("=", 1)[1].startswith(str(tmp_path / "w")), arg


def test_the_cpu_plan_covers_every_experiment_of_the_paper():
    names = {s.name for s in pipeline.build_plan(pipeline.SCALES["cpu"], "/data", "/w")}
    experiments = {
        "cifar10/target",
        "cifar10/dapter",
        "cifar10/sweep",
        "cifar10/tune",
        "cifar10/suite",
        "cifar10/defended",
        "cifar10/defended_suite",
        "cifar10/ssim_sweep",
        "cifar10/gradcam",
        "cifar10/bandwidth",
        "cifar10/export",
        "bench/export",
        "bench/train_step",
        "cifar2_10/attack",
        "cifar2_10/suite",
        "cifar2_10/defended_suite",
        "celeba/dapter",
        "celeba/suite",
        "celeba/defended_suite",
        "celeba/attack",
        "celeba/bandwidth",
        "celeba/table4",
        "lfw/attack",
        "lfw/bandwidth",
    }
    assert experiments <= names


def test_select_steps_adds_what_the_named_steps_need_and_names_an_unknown_one():
    plan = pipeline.build_plan(pipeline.SCALES["cpu"], "/data", "/w")
    assert [s.name for s in pipeline.select_steps(plan, ["cifar2_10/attack"])] == [
        "cifar10/target",
        "cifar2_10/target",
        "cifar2_10/dapter",
        "cifar2_10/attack",
    ]
    assert {s.name for s in pipeline.select_steps(plan, ["lfw"])} == {
        "lfw/target",
        "lfw/dapter",
        "lfw/attack",
        "lfw/bandwidth",
    }
    with pytest.raises(DapterError, match="no step or group 'cifar100'"):
        pipeline.select_steps(plan, ["cifar100"])


def test_a_step_without_its_dataset_or_its_input_is_skipped_with_the_reason_and_a_failure_is_recorded(tmp_path):
    ok = pipeline.Step("a/ok", "json.tool", ("--help",), "prints help", (pipeline.EMBEDDED,))
    no_data = pipeline.Step("b/faces", "json.tool", ("--help",), "needs faces", ("celeba",))
    fails = pipeline.Step("c/fails", "no_such_module_here", (), "fails", (pipeline.EMBEDDED,))
    after_failed = pipeline.Step("c/after", "json.tool", ("--help",), "needs c/fails", (), ("c/fails",))
    lines = []
    status = pipeline.run_plan(
        [ok, no_data, fails, after_failed], str(tmp_path / "w"), str(tmp_path / "none"), cwd=str(REPO), log=lines.append
    )
    assert status["a/ok"]["status"] == "ran"
    assert status["b/faces"] == {
        "status": "skipped",
        "reason": f"no celeba data: {tmp_path / 'none' / 'celeba/attributes.csv'} does not exist",
    }
    assert (
        status["c/fails"]["status"] == "failed" and "No module named no_such_module_here" in status["c/fails"]["reason"]
    )
    assert status["c/after"] == {"status": "skipped", "reason": "needs c/fails, which did not finish"}
    # A second run runs nothing that finished: only the failed step again.
    status = pipeline.run_plan(
        [ok, fails], str(tmp_path / "w"), str(tmp_path / "none"), cwd=str(REPO), log=lines.append
    )
    assert status["a/ok"]["status"] == "done" and status["c/fails"]["status"] == "failed"
    starts = [e["step"] for e in pipeline.read_events(str(tmp_path / "w")) if e["event"] == "start"]
    assert starts == ["a/ok", "c/fails", "c/fails"]
    # A finished step whose command has changed since (a newer plan) runs again.
    changed = dataclasses.replace(ok, args=("--help", "--sort-keys"))
    status = pipeline.run_plan([changed], str(tmp_path / "w"), str(tmp_path / "none"), cwd=str(REPO), log=lines.append)
    assert status["a/ok"]["status"] == "ran" and "finished earlier with another command" in lines[-3]


def test_a_step_that_writes_a_file_into_a_folder_of_its_own_finds_that_folder_made(tmp_path):
    # bench/export and bench/train_step write WORKDIR/bench/*.json, and the binaries refuse a missing folder.
    workdir = tmp_path / "w"
    step = pipeline.Step("bench/x", "json.tool", ("--help", f"--output_json={workdir / 'bench/x.json'}"), "writes", ())
    pipeline.run_plan([step], str(workdir), str(tmp_path), cwd=str(REPO), log=lambda line: None)
    assert (workdir / "bench").is_dir() and not (workdir / "bench/x.json").exists()


def test_a_step_whose_input_was_remade_runs_again_with_its_old_output_moved_aside(tmp_path):
    workdir = tmp_path / "w"
    make = pipeline.Step("g/make", "json.tool", ("--help",), "makes", (), (), str(workdir / "g/make"))
    use = pipeline.Step("g/use", "json.tool", ("--help",), "uses", (), ("g/make",), str(workdir / "g/use"))
    run = lambda plan: pipeline.run_plan(plan, str(workdir), str(tmp_path), cwd=str(REPO), log=lines.append)  # noqa: E731
    lines = []
    run([make, use])
    (workdir / "g/use").mkdir(parents=True)
    (workdir / "g/use/result.json").write_text("{}")
    assert run([make, use])["g/use"]["status"] == "done"
    # A new command for g/make (say, more epochs) makes g/use's result stale.
    status = run([dataclasses.replace(make, args=("--help", "--indent=2")), use])
    assert status["g/make"]["status"] == "ran" and status["g/use"]["status"] == "ran"
    assert "[2/2] g/use: g/make ran again after it finished; running it again" in lines
    (moved,) = os.listdir(workdir / pipeline.SUPERSEDED_DIR)
    assert moved.startswith("g__use-") and os.listdir(workdir / pipeline.SUPERSEDED_DIR / moved) == ["result.json"]
    assert not (workdir / "g/use").exists()


def test_a_workdir_keeps_its_scale_and_seed(tmp_path):
    record = {"scale": "smoke", "data_dir": "d", "seed": 0}
    pipeline.check_plan_matches(str(tmp_path), record)
    pipeline.check_plan_matches(str(tmp_path), dict(record))
    with pytest.raises(DapterError, match="holds a run with seed=0, not 1"):
        pipeline.check_plan_matches(str(tmp_path), dict(record, seed=1))


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(pid))
        except (FileNotFoundError, PermissionError, ProcessLookupError, NotADirectoryError):
            continue
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find orphaned steps")
def test_killing_reproduce_mid_way_and_rerunning_repeats_no_finished_step(tmp_path):
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "experiments.reproduce",
        "--scale=smoke",
        "--steps=cifar10/export",
        f"--workdir={workdir}",
        f"--data_dir={tmp_path / 'no_data'}",
    ]
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    # Kill it (SIGKILL: no chance to clean up) once the target has finished and the converter is training.
    while time.time() < deadline:
        started = [e["step"] for e in pipeline.read_events(str(workdir)) if e["event"] == "start"]
        if "cifar10/dapter" in started:
            break
        assert first.poll() is None, first.stdout.read()
        time.sleep(0.2)
    else:
        pytest.fail("the converter step never started")
    time.sleep(3)  # Into the step: TensorFlow imported, training under way.
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(2)
    assert _processes_mentioning(str(workdir)) == [], "the killed run's step outlived it"
    assert pipeline.read_marker(str(workdir), "cifar10/dapter") is None

    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "[1/3] cifar10/target: finished earlier" in second.stdout
    events = pipeline.read_events(str(workdir))
    starts = [e["step"] for e in events if e["event"] == "start"]
    done = [e["step"] for e in events if e["event"] == "done"]
    assert starts == ["cifar10/target", "cifar10/dapter", "cifar10/dapter", "cifar10/export"]
    assert done == ["cifar10/target", "cifar10/dapter", "cifar10/export"]
    report = (workdir / "report" / "report.md").read_text()
    assert "| cifar10/export | ran |" in report and "| cifar2_10/attack |" not in report


def test_the_binary_names_an_unknown_step_and_a_workdir_of_another_scale_in_one_line(tmp_path):
    assert_one_error_line(
        run_binary("experiments.reproduce", "--scale=smoke", "--steps=cifar100", f"--workdir={tmp_path}"),
        "--steps: no step or group 'cifar100' in this plan",
    )
    _write(str(tmp_path / pipeline.PLAN_FILE), {"scale": "cpu", "data_dir": "../shared/data", "seed": 0})
    assert_one_error_line(
        run_binary("experiments.reproduce", "--scale=smoke", "--report_only", f"--workdir={tmp_path}"),
        "holds a run with scale='cpu', not 'smoke'",
    )
    listed = run_binary("experiments.reproduce", "--scale=cpu", "--list", f"--workdir={tmp_path}")
    assert listed.returncode == 0 and "celeba/table4: §7.2 Table 4" in listed.stdout


def test_report_only_rewrites_the_report_of_the_run_in_the_workdir_with_that_runs_command(tmp_path):
    assert_one_error_line(
        run_binary("experiments.reproduce", "--scale=smoke", "--report_only", f"--workdir={tmp_path / 'empty'}"),
        "holds no dapter-reproduce run (plan.json is missing)",
    )
    _fake_run(tmp_path)
    record = {
        "scale": "smoke",
        "scale_description": "tiny",
        "data_dir": "../shared/data",
        "datasets": {},
        "seed": 0,
        "commit": "c0ffee",
        "commits": ["c0ffee"],
        "command": "dapter-reproduce --scale=smoke --workdir=the_run",
        "machine": "m",
        "not_available": {},
    }
    _write(str(tmp_path / pipeline.PLAN_FILE), record)
    proc = run_binary("experiments.reproduce", "--scale=smoke", "--report_only", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert " 3. reconstruction attack SSIM at λ = 0.9: met" in proc.stdout
    report = (tmp_path / "report" / "report.md").read_text()
    assert "- command: `dapter-reproduce --scale=smoke --workdir=the_run`" in report
    assert "- commit: c0ffee\n" in report and "report rewritten from the workdir by commit" in report
    assert "| cifar10/target | not run: not finished in this workdir |" in report


def _fake_run(workdir, *, drop=2.0, bits=2.5, ssim=0.15, loss_ratio=12.0, png=2.5, gap=0.03, gender=(0.97, 0.98)):
    """A workdir holding the JSON files the steps write, with chosen numbers."""
    w = str(workdir)
    _write(
        f"{w}/cifar10/dapter/results.json",
        {
            "accuracy_original": 0.80,
            "accuracy_converted": 0.80 - drop / 100,
            "accuracy_drop_points": drop,
            "entropy_original": 20.0,
            "entropy_converted": bits,
            "entropy_ratio": bits / 20.0,
            "train_seconds": 120.0,
            "steps": 500,
            "images": 2000,
        },
    )
    _write(
        f"{w}/celeba/dapter/results.json",
        {
            "accuracy_original": gender[0],
            "accuracy_converted": gender[1],
            "accuracy_drop_points": 100 * (gender[0] - gender[1]),
            "entropy_original": 20.0,
            "entropy_converted": 2.0,
            "entropy_ratio": 0.10,
            "images": 2000,
        },
    )
    _write(
        f"{w}/cifar10/suite/suite.json",
        {
            "images_test": 2000,
            "reconstruction": [
                {"attacker": "symmetric", "ssim": ssim - 0.01, "ssim_converted": 0.1, "ssim_mean_image": 0.12},
                {"attacker": "unet", "ssim": ssim, "ssim_converted": 0.1, "ssim_mean_image": 0.12},
            ],
            "entropy_original": 20.0,
            "entropy_converted": 4.0,
            "accuracy_drop_points": 2.5,
            "accuracy_drop_error_points": 0.3,
            "max_label_gap_points": None,
            "verdicts": [{"name": "usability", "holds": True}, {"name": "reconstruction", "holds": ssim <= 0.2}],
        },
    )
    _write(
        f"{w}/cifar2_10/attack/attacks.json",
        {
            "results": [
                {
                    "attack_type": "auto_recognition",
                    "attack_label": "label",
                    "loss_ratio": loss_ratio,
                    "attack_accuracy_original": 0.8,
                    "attack_accuracy_converted": 0.5,
                    "attack_loss_points": 30.0,
                    "target_loss_points": 30.0 / loss_ratio,
                }
            ]
        },
    )
    _write(
        f"{w}/celeba/attack/attacks.json",
        {
            "results": [
                {
                    "attack_type": "auto_recognition",
                    "attack_label": "Smiling",
                    "acc_ideal_hat": 0.70,
                    "attack_accuracy_converted": 0.70 + gap,
                }
            ]
        },
    )
    _write(f"{w}/bandwidth/bandwidth_CIFAR-10.json", {"sizes": [{"png": {"saving": png}, "jpeg": {"saving": 1.1}}]})


def test_each_claim_is_met_or_missed_by_the_hand_checked_amount(tmp_path):
    _fake_run(tmp_path / "met")
    met = {c.claim: c for c in build_claims(str(tmp_path / "met"), {}, "cpu")}
    assert len(met) == 10
    for claim in (
        "target accuracy drop at λ = 0.9",
        "mean entropy of converted images at λ = 0.9",
        "reconstruction attack SSIM at λ = 0.9",
        "auto-recognition, uncorrelated attack task",
        "bandwidth",
    ):
        assert met[claim].verdict.startswith("met"), (claim, met[claim].verdict)
    assert met["correlated attributes (CelebA, gender target)"].verdict.startswith("met")
    assert met["gender target accuracy (CelebA, ResNet18)"].verdict.startswith("met")
    assert met["human labelling of converted images"].verdict.startswith("not run: it needs people")

    _fake_run(
        tmp_path / "missed", drop=4.5, bits=7.0, ssim=0.25, loss_ratio=7.5, png=1.8, gap=0.08, gender=(0.90, 0.89)
    )
    missed = {c.claim: c for c in build_claims(str(tmp_path / "missed"), {}, "cpu")}
    assert missed["target accuracy drop at λ = 0.9"].verdict == "missed on CIFAR-10 by 1.50 points"
    # 7 of 20 bits: a ratio of 35 %, 5 points over 30 %, and 4 bits over the index of 3.
    assert missed["mean entropy of converted images at λ = 0.9"].verdict == (
        "missed on CIFAR-10 (ratio by 5.0 points, index by 4.00 bits)"
    )
    assert missed["reconstruction attack SSIM at λ = 0.9"].verdict == "missed by 0.050 SSIM"
    assert missed["auto-recognition, uncorrelated attack task"].verdict == (
        "missed on Cifar2:10 → 10 classes by 2.5× (7.5× against ≥ 10×)"
    )
    assert missed["bandwidth"].verdict.startswith("missed on CIFAR-10 PNG by 0.30×")
    assert missed["correlated attributes (CelebA, gender target)"].verdict == (
        "missed ('slightly' read as at most 5 points above) on Smiling by 3.0 points"
    )
    assert missed["gender target accuracy (CelebA, ResNet18)"].verdict == (
        "missed: originals missed by 6.5 points; converted missed by 8.9 points; "
        "converted against originals -1.0 points (paper +1.4)"
    )


def test_a_claim_without_its_results_says_which_step_did_not_run_and_why(tmp_path):
    status = {"cifar10/dapter": {"status": "skipped", "reason": "no cifar10 data: x does not exist"}}
    claims = build_claims(str(tmp_path), status, "cpu")
    assert claims[0].verdict == "not run: step cifar10/dapter skipped: no cifar10 data: x does not exist"
    assert claims[2].verdict == "not run: step cifar10/suite is not in this plan"


def test_the_converter_of_fig3_counts_eight_convolutions(tmp_path):
    from dapter_tf.models import build_converter

    path = str(tmp_path / "converter.keras")
    build_converter((32, 32, 3)).save(path)
    assert count_conv_layers(path) == 8


def test_the_report_copies_plots_and_cifar_pictures_but_never_a_face(tmp_path):
    workdir, report_dir = tmp_path / "w", tmp_path / "report"
    _fake_run(workdir)
    for picture in (
        "cifar10/dapter/grid.png",
        "celeba/dapter/grid.png",
        "lfw/dapter/grid.png",
        "celeba/table4/attention_Male.png",
        "celeba/attack/correlated.png",
    ):
        os.makedirs(os.path.dirname(workdir / picture), exist_ok=True)
        (workdir / picture).write_bytes(b"\x89PNG")
    record = {
        "scale": "cpu",
        "scale_description": "d",
        "data_dir": str(tmp_path),
        "datasets": {"cifar10": "present"},
        "seed": 0,
        "commit": "abc",
        "command": "dapter-reproduce",
        "machine": "m",
        "not_available": {"X": "y"},
    }
    plan = pipeline.build_plan(pipeline.SCALES["cpu"], str(tmp_path), str(workdir))
    claims = build_claims(str(workdir), {}, "cpu")
    path = reproduction_report.write_report(str(report_dir), str(workdir), record, plan, {}, claims)
    assert sorted(os.listdir(report_dir)) == ["converted_cifar10.png", "report.json", "report.md"]
    text = open(path).read()
    assert "- Fig. 12: correlated attributes, CelebA gender target: WORKDIR/celeba/attack/correlated.png" in text
    assert "| 3 | reconstruction attack SSIM at λ = 0.9 | < 0.2 |" in text
    assert str(workdir) not in text and "--workdir=WORKDIR/cifar10/target" in text
    assert "--train_npz=DATA/cifar10/train_20k.npz" in text


@pytest.mark.skipif(not (SHARED_DATA / "cifar10").exists(), reason=f"needs {SHARED_DATA}: not in a fresh clone")
def test_the_shared_data_has_every_dataset_the_cpu_plan_reads():
    assert pipeline.available_datasets(str(SHARED_DATA)) == {
        "cifar10": None,
        "celeba": None,
        "lfw": None,
        "embedded": None,
    }


def test_the_reconstruction_claim_takes_the_suites_strongest_attacker_and_names_the_defended_recipe(tmp_path):
    _fake_run(tmp_path, ssim=0.25)
    claim = build_claims(str(tmp_path), {}, "cpu")[2]
    assert claim.verdict == "missed by 0.050 SSIM"  # The U-Net's 0.25, not the generator's 0.24.
    assert "strongest (unet): SSIM 0.250" in claim.ours and "defended" not in claim.ours
    # The converted image as sent is an attacker too; the defended converter's suite is named beside.
    _write(
        f"{tmp_path}/cifar10/defended_suite/suite.json",
        {
            "images_test": 2000,
            "reconstruction": [{"attacker": "unet", "ssim": 0.11, "ssim_converted": 0.13, "ssim_mean_image": 0.12}],
            "entropy_original": 20.0,
            "entropy_converted": 0.5,
            "accuracy_drop_points": 9.0,
            "accuracy_drop_error_points": 0.4,
            "max_label_gap_points": None,
            "verdicts": [{"name": "usability", "holds": False}, {"name": "reconstruction", "holds": True}],
        },
    )
    claim = build_claims(str(tmp_path), {}, "cpu")[2]
    assert "the defended recipe, beyond the paper: SSIM 0.130 (the converted image as sent)" in claim.ours
    section = "\n".join(reproduction_report._protection_section(str(tmp_path)))
    assert (
        "| CIFAR-10 | defended recipe | +9.00 ± 0.40 | 2.5% | 0.130 (the converted image as sent) | 0.120 |" in section
    )
    assert "usability missed, reconstruction holds" in section


def test_every_task_of_the_protection_table_has_a_defended_recipe():
    plan = {s.name: s for s in pipeline.build_plan(pipeline.SCALES["paper"], "/data", "/w")}
    for group, _ in reproduction_report.PROTECTION:
        defended = plan[f"{group}/defended"]
        assert set(pipeline.DEFENDED_RECIPES[group]) <= set(defended.args)
        assert plan[f"{group}/defended_suite"].after[0] == f"{group}/defended"
    assert "--max_ssim_over_mean_image=0.05" in plan["celeba/suite"].args
    assert "--suite_pretrained=label=/w/cifar10/target/target.keras" in plan["cifar2_10/suite"].args


def test_every_step_of_every_plan_gives_only_flags_its_binary_defines():
    plans = [pipeline.build_plan(pipeline.SCALES[scale], "/data", "/w") for scale in pipeline.SCALES]
    assert pipeline.undefined_flags([step for plan in plans for step in plan], str(REPO)) == []
    # A flag its binary lacks (a rename) is named with its step.
    renamed = pipeline.Step("cifar10/target", "experiments.train_target", ("--epoch=3", "--noaugment"), "x")
    assert pipeline.undefined_flags([renamed], str(REPO)) == ["cifar10/target: --epoch"]

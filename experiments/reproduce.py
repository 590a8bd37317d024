r"""Reproduces the paper's evaluation end to end, resumably, and writes the report.

Runs, as one step per binary run, every experiment of the paper on the datasets present in --data_dir:
targets (§6), converters at lambda 0.9 (§4, §7.1), the lambda sweep (Fig. 8) and tuner (§7.1), the
attacks (§5, §7.3: reconstruction, uncorrelated and correlated auto-recognition, the labelling kit),
Grad-CAM and Table 4 (§7.2), bandwidth (§7.4), the .tflite export and host latency, and the training
throughput bench. Steps whose dataset is absent are skipped with the reason. Then it writes
REPORT_DIR/report.md: each headline claim of the paper beside ours with a verdict, the tables, the
figures, and the run's scale, data, seed and commit.

Resuming: a finished step is marked in WORKDIR/steps/ and not run again; rerunning the same command
after an interruption (Ctrl-C, a kill, a reboot) runs what is left, and the interrupted step resumes
from its own checkpoints. A step runs again when its command has changed (a newer dapter-tf) or a step
it reads from ran again after it; its old output is then moved to WORKDIR/superseded/, not deleted.
Every step's output goes to WORKDIR/logs/<step>.log.

Scales:
  smoke  the embedded CIFAR-10 sample, tiny models, a few minutes: checks the wiring, not the paper
  cpu    every experiment on ../shared/data within an hour on 2 CPU cores (the committed report/)
  paper  the settings of the committed results/ runs (all images, the full lambda grid, eight
         correlated attributes, four Table 4 targets): days on 2 CPU cores, hours on one GPU

Example (the committed report):
  dapter-reproduce --scale=cpu --workdir=runs/reproduce_cpu --report_dir=report
"""

import os
import platform
import shlex
import sys
import time

from absl import flags

from cli import runner

_SCALE = flags.DEFINE_enum(
    "scale", "cpu", ["smoke", "cpu", "paper"], "How big every experiment is (see the module docstring)."
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Folder for every step's output, markers and logs (default runs/reproduce_<scale>); "
    "rerunning with the same folder resumes.",
)
_REPORT_DIR = flags.DEFINE_string("report_dir", None, "Where report.md and its figures go (default WORKDIR/report).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    "../shared/data",
    "Folder with ../shared/data's layout: cifar10/, celeba/, lfw/; absent "
    "datasets are skipped, saying so (the smoke scale needs none).",
)
_STEPS = flags.DEFINE_list(
    "steps",
    [],
    "Run only these steps or groups (e.g. cifar10/sweep or celeba) and the steps they need; "
    "empty: all. --list prints them.",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed passed to every binary.")
_LIST = flags.DEFINE_bool("list", False, "Print the plan's steps and their commands, and run nothing.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Rewrite the report from what is in WORKDIR; run nothing.")


def main():
    from dapter_tf import DapterError, pipeline
    from dapter_tf.pipeline import reproduction_report
    from dapter_tf.pipeline.paper_claims import build_claims

    repo_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(repo_dir, "bench")):
        raise DapterError(
            f"{repo_dir} has no bench/: run dapter-reproduce from a clone of dapter-tf (pip install -e .)"
        )
    scale = pipeline.SCALES[_SCALE.value]
    workdir = os.path.abspath(_WORKDIR.value or os.path.join("runs", f"reproduce_{scale.name}"))
    data_dir = os.path.abspath(_DATA_DIR.value)
    if not os.path.isdir(data_dir) and scale.cifar_source != pipeline.EMBEDDED:
        print(f"note: {_DATA_DIR.value} does not exist: every step that reads it is skipped", flush=True)
    plan = pipeline.select_steps(pipeline.build_plan(scale, data_dir, workdir, _SEED.value), _STEPS.value)
    if _LIST.value:
        for step in plan:
            print(f"{step.name}: {step.what}\n  {step.as_dict()['command']}")
        return
    missing = pipeline.available_datasets(data_dir)
    record = {
        "scale": scale.name,
        "scale_description": scale.description,
        "data_dir": _DATA_DIR.value,
        "datasets": {k: ("present" if v is None else "absent") for k, v in missing.items() if k != pipeline.EMBEDDED},
        "seed": _SEED.value,
        "commit": pipeline.git_commit(repo_dir),
        "command": shlex.join(["dapter-reproduce", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, {platform.platform(terse=True)}",
        "not_available": pipeline.NOT_AVAILABLE,
    }
    os.makedirs(workdir, exist_ok=True)
    if _REPORT_ONLY.value:
        # The report describes the run that made the results: its command, commits and machine.
        record = pipeline.read_plan_record(workdir, record)
        status = pipeline.read_status(plan, workdir)
    else:
        pipeline.check_plan_matches(workdir, record)
        undefined = pipeline.undefined_flags(plan, repo_dir)
        if undefined:
            raise DapterError(f"the plan gives flags its binaries do not define: {', '.join(undefined)}")
        print(f"{len(plan)} steps at scale {scale.name} into {workdir}", flush=True)
        start = time.time()
        try:
            status = pipeline.run_plan(plan, workdir, data_dir, cwd=repo_dir, log=lambda line: print(line, flush=True))
        except KeyboardInterrupt:
            raise DapterError("interrupted; rerun the same command to resume (finished steps are kept)") from None
        record = {**record, "wall_seconds": time.time() - start}
    report_dir = os.path.abspath(_REPORT_DIR.value or os.path.join(workdir, "report"))
    claims = build_claims(workdir, status, scale.name)
    path = reproduction_report.write_report(report_dir, workdir, record, plan, status, claims)
    for i, claim in enumerate(claims, 1):
        print(f"{i:2d}. {claim.claim}: {claim.verdict}")
    print(f"report: {path}")
    failed = [name for name, s in status.items() if s["status"] == "failed"]
    if failed:
        raise DapterError(f"{len(failed)} step(s) failed ({', '.join(failed)}); see {workdir}/logs/, fix, and rerun")


def run():
    runner.run(main, tensorflow=False)


if __name__ == "__main__":
    run()

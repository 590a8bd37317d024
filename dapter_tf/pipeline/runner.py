"""Runs a plan's steps in order, one child process each, resumably.

Each finished step is marked in ``WORKDIR/steps/``; a rerun skips marked steps, and a step killed
half-way runs again, resuming from its own checkpoints. Every start, end and skip is logged to
``WORKDIR/events.jsonl``. Nothing here imports TensorFlow.
"""

import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import time

from dapter_tf.errors import DapterError
from dapter_tf.pipeline.datasets import available_datasets
from dapter_tf.pipeline.plan import Step

STEPS_DIR = "steps"
LOGS_DIR = "logs"
EVENTS_FILE = "events.jsonl"
PLAN_FILE = "plan.json"
SUPERSEDED_DIR = "superseded"


def _marker(workdir: str, name: str) -> str:
    return os.path.join(workdir, STEPS_DIR, name.replace("/", "__") + ".json")


def _log_path(workdir: str, name: str) -> str:
    return os.path.join(workdir, LOGS_DIR, name.replace("/", "__") + ".log")


def read_marker(workdir: str, name: str) -> dict | None:
    """Returns a finished step's record (command, seconds, finished), or None if it has not finished."""
    try:
        with open(_marker(workdir, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    # Atomic: a kill between the two lines leaves no half-written marker.
    os.replace(tmp, path)


def _log_event(workdir: str, **event) -> None:
    event["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    event["unix"] = time.time()
    with open(os.path.join(workdir, EVENTS_FILE), "a") as f:
        f.write(json.dumps(event, sort_keys=True) + "\n")


def read_events(workdir: str) -> list[dict]:
    """Every start, done, failed and skipped event of every run in ``workdir``, oldest first."""
    try:
        with open(os.path.join(workdir, EVENTS_FILE)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _check_same_run(workdir: str, old: dict, new: dict, advice: str) -> None:
    for key in ("scale", "data_dir", "seed"):
        if old.get(key) != new[key]:
            raise DapterError(f"{workdir} holds a run with {key}={old.get(key)!r}, not {new[key]!r}; {advice}")


def check_plan_matches(workdir: str, plan_record: dict) -> None:
    """Writes ``workdir/plan.json`` on first use; afterwards requires the same scale, data and seed.

    Adds ``commits`` to ``plan_record``: every commit that ran in this workdir, oldest first.

    Raises:
        DapterError: ``workdir`` holds a run with another scale, data folder or seed: resuming it would
            mix two experiments in one report.
    """
    path = os.path.join(workdir, PLAN_FILE)
    commits = []
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        _check_same_run(workdir, old, plan_record, "use another --workdir or the same flags to resume it")
        commits = old.get("commits", [])
    # A run resumed with other code says so: the report lists every commit that ran a step.
    if plan_record.get("commit") and plan_record["commit"] not in commits:
        commits = commits + [plan_record["commit"]]
    plan_record["commits"] = commits
    _write_json(path, plan_record)


def read_plan_record(workdir: str, plan_record: dict) -> dict:
    """The record of the run in ``workdir`` (``plan.json``), checked against ``plan_record``; adds ``report_commit``.

    Raises:
        DapterError: ``workdir`` holds no run, or one with another scale, data folder or seed.
    """
    path = os.path.join(workdir, PLAN_FILE)
    if not os.path.exists(path):
        raise DapterError(
            f"{workdir} holds no dapter-reproduce run ({PLAN_FILE} is missing): run it without --report_only"
        )
    with open(path) as f:
        old = json.load(f)
    _check_same_run(workdir, old, plan_record, "pass the run's own flags")
    return {**old, "report_commit": plan_record.get("commit")}


def read_status(plan: list[Step], workdir: str) -> dict[str, dict]:
    """Each step's status as ``run_plan`` would start from: "done" where its marker holds its command."""
    status = {}
    for step in plan:
        marker = read_marker(workdir, step.name)
        if marker is not None and marker["command"] == step.as_dict()["command"]:
            status[step.name] = {"status": "done", "seconds": marker["seconds"]}
        else:
            status[step.name] = {"status": "not run", "reason": "not finished in this workdir"}
    return status


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux kills it when reproduce.py dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # Not Linux: SIGINT and SIGTERM are still forwarded by run_plan.


# Flags that name a file a step writes: the binaries refuse one whose folder is missing (cli.runner).
OUTPUT_FILE_FLAGS = ("--output_json", "--output_csv", "--output_npz")


def _make_output_folders(command: list[str], cwd: str) -> None:
    """Creates the folder of each file a step writes: a plan's step owns its output's folder."""
    for arg in command:
        flag, _, value = arg.partition("=")
        if flag in OUTPUT_FILE_FLAGS and value:
            os.makedirs(os.path.dirname(os.path.join(cwd, value)) or cwd, exist_ok=True)


def _run_child(command: list[str], log_path: str, cwd: str) -> int:
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "a") as log:
        log.write(f"\n$ {shlex.join(command)}\n")
        log.flush()
        child = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, preexec_fn=_die_with_parent
        )
        try:
            return child.wait()
        except BaseException:
            # Ctrl-C or SIGTERM: stop the child too, so that no orphan keeps writing into the workdir.
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            raise


def _last_error_line(log_path: str) -> str:
    with open(log_path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1][:300]


def run_plan(plan: list[Step], workdir: str, data_dir: str, cwd: str, log=print) -> dict[str, dict]:
    """Runs every step not yet marked finished, in order, and returns each step's status.

    A step whose dataset is absent, or that needs a step that failed or was skipped, is skipped with
    the reason; a failing step is recorded with its log's last error line and the plan goes on with
    the steps that do not need it.

    Args:
        plan: From ``build_plan`` (or ``select_steps``).
        workdir: The run's folder: ``steps/`` markers, ``logs/``, ``events.jsonl`` and each step's output.
        data_dir: The data folder, to check which datasets exist.
        cwd: The folder the binaries run in (the repository root: ``bench/`` is not installed).
        log: Where progress lines go.

    Returns:
        ``{step name: {"status": "done" | "ran" | "failed" | "skipped", "seconds": ..., "reason": ...}}``;
        "done" means finished by an earlier run.
    """
    os.makedirs(workdir, exist_ok=True)
    missing = available_datasets(data_dir)
    status = {}
    for i, step in enumerate(plan, 1):
        prefix = f"[{i}/{len(plan)}] {step.name}"
        marker = read_marker(workdir, step.name)
        if marker is not None and marker["command"] != step.as_dict()["command"]:
            # The plan changed (another dapter-tf version): the old output does not answer this step.
            log(f"{prefix}: finished earlier with another command; running it again")
            marker = None
        if marker is not None:
            remade = _remade_since(workdir, step, marker.get("finished_unix", 0.0))
            if remade:
                # Its inputs changed after it finished: its output is stale, and the binaries would resume
                # from it rather than redo it, so it moves aside (kept, not deleted) and the step runs anew.
                log(f"{prefix}: {', '.join(remade)} ran again after it finished; running it again")
                _move_aside(workdir, step)
                marker = None
        if marker is not None:
            status[step.name] = {"status": "done", "seconds": marker["seconds"]}
            log(f"{prefix}: finished earlier ({marker['seconds']:.0f} s), not run again")
            continue
        if marker is None and step.output and os.path.exists(step.output):
            # A step interrupted earlier resumes from its partial output, unless an input was remade since.
            remade = _remade_since(workdir, step, _last_start(workdir, step.name))
            if remade:
                log(f"{prefix}: {', '.join(remade)} ran again since it was interrupted; starting it afresh")
                _move_aside(workdir, step)
        reason = next((f"no {d} data: {missing[d]}" for d in step.datasets if missing.get(d)), None)
        if reason is None:
            blocked = [a for a in step.after if status.get(a, {}).get("status") not in ("done", "ran")]
            if blocked:
                reason = f"needs {', '.join(blocked)}, which did not finish"
        if reason:
            status[step.name] = {"status": "skipped", "reason": reason}
            _log_event(workdir, event="skipped", step=step.name, reason=reason)
            log(f"{prefix}: skipped: {reason}")
            continue
        log_path = _log_path(workdir, step.name)
        log(f"{prefix}: {step.what} (log: {log_path})")
        _log_event(workdir, event="start", step=step.name)
        start = time.time()
        _make_output_folders(step.command(), cwd)
        rc = _run_child(step.command(), log_path, cwd)
        seconds = time.time() - start
        if rc != 0:
            reason = f"exit {rc}: {_last_error_line(log_path)}"
            status[step.name] = {"status": "failed", "seconds": seconds, "reason": reason}
            _log_event(workdir, event="failed", step=step.name, seconds=seconds, reason=reason)
            log(f"{prefix}: FAILED after {seconds:.0f} s ({reason})")
            continue
        _write_json(
            _marker(workdir, step.name),
            {
                **step.as_dict(),
                "seconds": seconds,
                "finished": datetime.datetime.now().isoformat(timespec="seconds"),
                "finished_unix": time.time(),
            },
        )
        _log_event(workdir, event="done", step=step.name, seconds=seconds)
        status[step.name] = {"status": "ran", "seconds": seconds}
        log(f"{prefix}: finished in {seconds:.0f} s")
    return status


def _remade_since(workdir: str, step: Step, since: float) -> list[str]:
    """The steps ``step`` reads from that finished after ``since`` (a Unix time; 0 for markers without one)."""
    return [a for a in step.after if (read_marker(workdir, a) or {}).get("finished_unix", 0.0) > since]


def _last_start(workdir: str, name: str) -> float:
    starts = [e.get("unix", 0.0) for e in read_events(workdir) if e["event"] == "start" and e["step"] == name]
    return starts[-1] if starts else 0.0


def _move_aside(workdir: str, step: Step) -> None:
    if os.path.exists(_marker(workdir, step.name)):
        os.remove(_marker(workdir, step.name))
    if step.output and os.path.exists(step.output):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        target = os.path.join(workdir, SUPERSEDED_DIR, f"{step.name.replace('/', '__')}-{stamp}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(step.output, target)


def git_commit(repo_dir: str) -> str:
    """The repository's commit, with ``+local changes`` when the working tree differs; 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" +local changes" if dirty else "")

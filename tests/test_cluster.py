"""Training on several machines: TF_CONFIG, two real worker processes on localhost, chief-only writes, restart.

The workers are the real binary (``experiments.train_dapter``) started twice with the same flags
and ``--workdir``, as a cluster starts them, talking gRPC over localhost ports; each has one CPU
device, so the cluster has two replicas.
"""

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import REPO, tiny_dapter_config

from dapter_tf import DapterError, cluster, cluster_startup, data, models, train
from dapter_tf.data.tasks import get_task
from dapter_tf.records import runs

# Weights of a two-worker run against one process on the same global batches: the all-reduce adds
# the two halves' gradients in another order than one batch's sum, a few float32 ulps per step.
WEIGHT_TOLERANCE = 1e-5

RUN_FLAGS = (
    "--epochs=2",
    "--batch_size=32",
    "--filters=4,8,8",
    "--eval_images=32",
    "--noaugment",
    "--checkpoint_every_steps=4",
    "--max_test=32",
)


def start_workers(target, workdir, configs, tmp, *flags, trace_worker=None):
    """Starts one ``train_dapter`` per ``TF_CONFIG``; ``trace_worker``: a file strace records worker 1's calls in."""
    procs = []
    for i, config in enumerate(configs):
        env = dict(os.environ, TF_CONFIG=config, TMPDIR=str(tmp / f"tmp{i}"))
        os.makedirs(env["TMPDIR"], exist_ok=True)
        args = [sys.executable, "-m", "experiments.train_dapter", f"--target={target}", f"--workdir={workdir}"]
        args += [*RUN_FLAGS, "--strategy=multi_worker", *flags]
        if trace_worker is not None and i == 1:
            # Every call of worker 1 or its threads that could create, change or remove a file.
            calls = ",".join(TRACED)
            strace = ["strace", "-f", "-qq", "-s", "4096", "--seccomp-bpf", "-e", f"trace={calls}"]
            args = [*strace, "-o", str(trace_worker), *args]
        log = open(tmp / f"worker{i}.log", "a")
        procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_all(procs, tmp, timeout=240):
    """Waits for every worker (a worker waits for ever for a peer that never joins: kill all on a timeout)."""
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        raise
    logs = "".join((tmp / f"worker{i}.log").read_text()[-1500:] for i in range(len(procs)))
    assert codes == [0] * len(procs), logs


# The calls that create, change or remove a file (and opens for writing); stat calls are traced too,
# to show the trace sees the worker look into the workdir.
WRITE_CALLS = ("creat", "mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "truncate")
WRITE_CALLS += ("link", "symlink")
TRACED = ("openat", "newfstatat", "statx", "access", "faccessat", "faccessat2", *WRITE_CALLS)


def writes_into(trace: str, workdir: str) -> list[str]:
    """The traced calls that created, changed or removed something under ``workdir``."""
    hits = []
    for line in trace.splitlines():
        call = re.match(r"\d+\s+(\w+)\(", line)
        if workdir not in line or call is None:
            continue
        if call.group(1) in WRITE_CALLS:
            hits.append(line)
        elif call.group(1) == "openat" and any(m in line for m in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")):
            hits.append(line)
    return hits


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see every write a worker makes")
def test_two_workers_train_as_one_process_and_only_the_chief_writes(tiny_target_path, tmp_path):
    workdir = tmp_path / "cluster"
    trace = tmp_path / "worker1.strace"
    configs = cluster.localhost_tf_configs(2)
    procs = start_workers(tiny_target_path, workdir, configs, tmp_path, "--max_train=128", trace_worker=trace)
    wait_all(procs, tmp_path)

    alone = tmp_path / "alone"
    config = tiny_dapter_config(
        tiny_target_path, data=data.DataConfig(max_train=128, max_test=32), epochs=2, checkpoint_every_steps=4
    )
    task, train_set, test_set = data.load_data(config.data, seed=0)
    train.train_dapter(config, task, train_set, test_set, str(alone))

    results = json.loads((workdir / runs.RESULTS_FILE).read_text())
    assert results["replicas"] == 2 and results["steps"] == 8
    cluster_weights = models.load_converter(str(workdir)).get_weights()
    for a, b in zip(models.load_converter(str(alone)).get_weights(), cluster_weights, strict=True):
        np.testing.assert_allclose(b, a, atol=WEIGHT_TOLERANCE, rtol=0)
    # The same records as one process leaves (its report included), all of them the chief's.
    assert sorted(os.listdir(workdir)) == sorted([*os.listdir(alone), "grid.png", "report.json", "report.md"])
    traced = trace.read_text()
    assert f'"{workdir}' in traced  # The trace saw the worker look into the workdir.
    assert writes_into(traced, str(workdir)) == []
    assert os.listdir(tmp_path / "tmp1") == []  # Its scratch checkpoints are deleted at the end.


def test_a_cluster_that_lost_a_worker_resumes_from_the_chiefs_last_checkpoint(tiny_target_path, tmp_path):
    workdir = tmp_path / "cluster"
    configs = cluster.localhost_tf_configs(2)
    flags = ("--max_train=512",)  # 16 steps an epoch, 32 in all: the kill lands mid-run.
    procs = start_workers(tiny_target_path, workdir, configs, tmp_path, *flags)
    index = workdir / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 240
    while not index.exists() and procs[0].poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert procs[1].poll() is None, "the run ended before a worker could be killed"
    os.kill(procs[1].pid, signal.SIGKILL)
    # The chief cannot all-reduce without it: it stops with one line saying what to do.
    assert procs[0].wait(timeout=120) == 1
    procs[1].wait()
    chief_log = (tmp_path / "worker0.log").read_text()
    assert re.search(
        r"error: lost a worker of the cluster at step \d+ \(UnavailableError\); restart every worker with the "
        r"same command: training resumes from the chief's last checkpoint\n",
        chief_log,
    )
    killed_at = int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', index.read_text()).group(1))
    assert 0 < killed_at < 32

    wait_all(start_workers(tiny_target_path, workdir, configs, tmp_path, *flags), tmp_path)  # The same ports.
    results = json.loads((workdir / runs.RESULTS_FILE).read_text())
    assert results["steps"] == 32
    assert results["resumed_from_step"] >= killed_at > 0


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "--strategy=multi_worker needs TF_CONFIG"),
        ("{cluster", "TF_CONFIG is not JSON"),
        ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG has no "cluster" object'),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "worker", "index": 0}}', "only chief and worker jobs, not ps"),
        ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', 'list of "host:port" strings'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}', '"task" must be'),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "lists 2 worker"),
    ],
)
def test_a_missing_or_malformed_tf_config_is_one_line(text, message):
    with pytest.raises(DapterError, match=message) as caught:
        cluster.parse_tf_config(text)
    assert "\n" not in str(caught.value)


def test_the_chief_is_worker_zero_or_the_chief_job():
    two = {"worker": ["a:1", "b:1"]}
    assert cluster.parse_tf_config(json.dumps({"cluster": two, "task": {"type": "worker", "index": 0}})).is_chief
    second = cluster.parse_tf_config(json.dumps({"cluster": two, "task": {"type": "worker", "index": 1}}))
    assert not second.is_chief and second.num_workers == 2 and second.worker_index == 1
    with_chief = {"chief": ["c:1"], **two}
    worker0 = cluster.parse_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert (worker0.is_chief, worker0.worker_index, worker0.num_workers) == (False, 1, 3)
    assert cluster.parse_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}})).is_chief


def test_the_binary_says_a_bad_tf_config_in_one_line_before_writing(tiny_target_path, tmp_path):
    env = dict(os.environ, TF_CONFIG='{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}')
    args = [sys.executable, "-m", "experiments.train_dapter", f"--target={tiny_target_path}"]
    args += [f"--workdir={tmp_path / 'run'}", "--strategy=multi_worker"]
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: TF_CONFIG's task is worker 3 but its cluster lists 1 worker(s)"
    )
    assert not (tmp_path / "run").exists()


def test_a_global_batch_that_does_not_split_over_the_replicas_is_refused_before_writing(
    embedded, tiny_target_path, tmp_path
):
    train_set, test_set = embedded[0].take(128), embedded[1].take(32)
    config = tiny_dapter_config(tiny_target_path, strategy="mirrored", batch_size=33)  # Two replicas here.
    with pytest.raises(DapterError, match="^batch_size 33 does not split over 2 replicas: give a multiple of 2$"):
        train.train_dapter(config, get_task("cifar10"), train_set, test_set, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_the_write_check_sees_writes_and_not_reads():
    trace = "\n".join(
        [
            '7 openat(AT_FDCWD, "/w/run/config.json", O_RDONLY|O_CLOEXEC) = 3',
            '7 newfstatat(AT_FDCWD, "/w/run/checkpoints", 0x7f, 0) = 0',
            '8 openat(AT_FDCWD, "/w/run/tb/events", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 4',
            '8 rename("/w/run/x.tmp", "/w/run/x") = 0',
            '9 mkdir("/tmp/scratch", 0777) = 0',
        ]
    )
    assert [line.split()[0] for line in writes_into(trace, "/w/run")] == ["8", "8"]


def test_the_kubernetes_job_gives_each_pod_its_tf_config(tmp_path):
    manifest = (REPO / "deploy" / "train-dapter-job.yaml").read_text()
    script = manifest.split("            - |\n", 1)[1].split("\n          ports:", 1)[0]
    script = "\n".join(line[14:] for line in script.splitlines())  # The block scalar's own text.
    assert "exec dapter-train-dapter --strategy=multi_worker" in script
    script = script.replace("exec dapter-train-dapter", 'printf "%s" "$TF_CONFIG"; exit 0; #')
    env = dict(os.environ, WORKERS="3", PORT="12345", JOB_COMPLETION_INDEX="2")
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    task = cluster.parse_tf_config(proc.stdout)
    assert (task.worker_index, task.num_workers, task.is_chief) == (2, 3, False)
    assert json.loads(proc.stdout)["cluster"]["worker"][0] == "dapter-train-0.dapter-workers:12345"


def test_a_worker_whose_peer_never_answers_says_so_and_gives_up_in_one_line():
    worker0 = cluster.parse_tf_config(cluster.localhost_tf_configs(2)[0])  # Nobody listens at worker 1's port.
    peer = worker0.peers[0][1]
    out = io.StringIO()
    start = time.monotonic()
    with pytest.raises(DapterError) as caught:
        cluster_startup.wait_for_peers(worker0, timeout_s=2, progress_every_s=1, out=out)
    assert 2 <= time.monotonic() - start < 4
    assert str(caught.value) == (
        f"worker 1 at {peer} never answered in 2 s: start the same command on every worker of TF_CONFIG, "
        "check their addresses and firewalls, or wait longer with --cluster_timeout_s"
    )
    assert out.getvalue().splitlines() == [f"waiting for worker 1 at {peer} ({s} s of 2 s)" for s in (0, 1)]


def test_workers_waiting_for_each_other_see_each_other():
    tasks = [cluster.parse_tf_config(config) for config in cluster.localhost_tf_configs(3)]
    outs = [io.StringIO() for _ in tasks]
    errors, servers = [], []

    def wait(task, out):
        try:
            cluster_startup.wait_for_peers(task, timeout_s=10, out=out)
        except DapterError as e:
            errors.append(e)
        # Then the worker builds its strategy, whose server listens on the same port.
        servers.append(socket.create_server(("", int(task.address.rsplit(":", 1)[1]))))

    # Worker 2 starts a second late: the others wait for it, listening, and it finds them at once.
    threads = [threading.Thread(target=wait, args=(task, out)) for task, out in zip(tasks, outs, strict=True)]
    start = time.monotonic()
    for i, thread in enumerate(threads):
        time.sleep(1.0 if i == 2 else 0.0)
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    for server in servers:
        server.close()
    assert errors == [] and time.monotonic() - start < 5
    assert f"worker 2 at {tasks[2].address} (0 s of 10 s)\n" in outs[0].getvalue()  # Worker 1 may be named too.
    assert outs[2].getvalue() == ""


def test_a_global_batch_the_workers_cannot_share_is_refused_before_waiting_for_them():
    worker0 = cluster.parse_tf_config(cluster.localhost_tf_configs(2)[0])
    with pytest.raises(DapterError) as caught:
        cluster_startup.check_global_batch(worker0, 33)
    assert str(caught.value) == "batch_size 33 does not split over the 2 workers of TF_CONFIG: give a multiple of 2"
    cluster_startup.check_global_batch(worker0, 32)


def test_a_waiting_worker_says_whom_it_waits_for_and_sigterm_ends_it_in_one_line(tmp_path):
    config = cluster.localhost_tf_configs(2)[0]  # Worker 1 never starts.
    peer = json.loads(config)["cluster"]["worker"][1]
    args = [sys.executable, "-m", "experiments.train_target", "--model=lenet", "--max_train=64", "--max_test=32"]
    args += ["--strategy=multi_worker", "--cluster_timeout_s=30", f"--workdir={tmp_path / 'run'}"]
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(args, cwd=REPO, env=dict(os.environ, TF_CONFIG=config), stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while "waiting for" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log.read_text() == f"waiting for worker 1 at {peer} (0 s of 30 s)\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=3) == 1
    finally:
        proc.kill()
        proc.wait()
    assert log.read_text().splitlines()[-1] == "error: stopped by SIGTERM while waiting for the cluster"
    assert not (tmp_path / "run").exists()

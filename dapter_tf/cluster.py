"""Who this process is in a multi-worker cluster (``TF_CONFIG``), and so whether it may write.

A cluster runs one copy of the same command per worker, all with the same ``--workdir`` on a shared
filesystem. Only the chief writes into it (checkpoints, summaries, configs, results, models,
reports); the other workers write their share of a checkpoint (every worker must save, since saving
may read variables through collectives) into a scratch folder of their own that they delete. This
is TensorFlow's pattern for custom loops (the multi-worker guide's ``write_filepath``); Keras 3's
``fit`` callbacks do not implement it, so the project does.

A process that has not joined a cluster (every strategy but ``multi_worker``) is its own chief.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import tempfile

from dapter_tf.errors import DapterError

TASK_TYPES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class ClusterTask:
    """This process's place in the cluster that ``TF_CONFIG`` describes.

    Attributes:
        task_type: ``"chief"`` or ``"worker"``.
        task_index: Its index among the tasks of that type.
        num_workers: Every task that trains (the chief, if there is one, and the workers).
        worker_index: This task's place among them: the chief (or worker 0 without one) is 0.
        address: This task's ``host:port`` in the cluster.
        peers: Every other task that trains, as ``(name, "host:port")``, names such as ``"worker 1"``.
    """

    task_type: str
    task_index: int
    num_workers: int
    worker_index: int
    address: str = ""
    peers: tuple[tuple[str, str], ...] = ()

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0


def parse_tf_config(text: str | None) -> ClusterTask:
    """Reads ``TF_CONFIG``: ``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": ..., "index": ...}}``.

    Args:
        text: The variable's value (``None``: unset).

    Raises:
        DapterError: in one line, when it is unset, not JSON, or does not name this task in its cluster.
    """
    if not text:
        raise DapterError(
            "--strategy=multi_worker needs TF_CONFIG, e.g. "
            '\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\' '
            '(docs/cluster.md)'
        )
    try:
        config = json.loads(text)
    except ValueError as e:
        raise DapterError(f"TF_CONFIG is not JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise DapterError('TF_CONFIG has no "cluster" object')
    cluster = config["cluster"]
    unknown = sorted(set(cluster) - {*TASK_TYPES, "evaluator"})  # An evaluator trains nothing: it may be there.
    if unknown:
        raise DapterError(f"TF_CONFIG's cluster may hold only chief and worker jobs, not {', '.join(unknown)}")
    for job in TASK_TYPES:
        hosts = cluster.get(job, [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and ":" in h for h in hosts):
            raise DapterError(f'TF_CONFIG\'s cluster "{job}" must be a list of "host:port" strings, got {hosts!r}')
    if len(cluster.get("chief", [])) > 1:
        raise DapterError(f"TF_CONFIG names {len(cluster['chief'])} chiefs; a cluster has at most one")
    if not cluster.get("worker") and not cluster.get("chief"):
        raise DapterError("TF_CONFIG's cluster lists no worker")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in TASK_TYPES or not isinstance(task.get("index"), int):
        raise DapterError(f'TF_CONFIG\'s "task" must be {{"type": "chief" or "worker", "index": N}}, got {task!r}')
    jobs = cluster.get(task["type"], [])
    if not 0 <= task["index"] < len(jobs):
        raise DapterError(
            f"TF_CONFIG's task is {task['type']} {task['index']} but its cluster lists {len(jobs)} {task['type']}(s)"
        )
    chiefs = len(cluster.get("chief", []))
    worker_index = task["index"] if task["type"] == "chief" else chiefs + task["index"]
    # Every task that trains, in worker_index order, named as a user names it: "chief", "worker 1".
    tasks = [("chief", host) for host in cluster.get("chief", [])]
    tasks += [(f"worker {i}", host) for i, host in enumerate(cluster.get("worker", []))]
    address = tasks[worker_index][1]
    peers = tuple(t for i, t in enumerate(tasks) if i != worker_index)
    return ClusterTask(task["type"], task["index"], len(tasks), worker_index, address, peers)


_joined: ClusterTask | None = None


def join(task: ClusterTask) -> None:
    """Records that this process trains as ``task`` (``train.strategy`` calls it with the strategy)."""
    global _joined
    _joined = task


def current() -> ClusterTask | None:
    """The cluster task this process joined, or ``None`` when it trains alone."""
    return _joined


def is_chief() -> bool:
    """Whether this process writes a run's files: the chief of its cluster, or a process on its own."""
    return _joined is None or _joined.is_chief


def num_workers() -> int:
    """How many processes train together (1 on its own)."""
    return 1 if _joined is None else _joined.num_workers


def worker_index() -> int:
    """This process's index among them (0, the chief, on its own)."""
    return 0 if _joined is None else _joined.worker_index


def scratch_dir(workdir: str) -> str:
    """Where a non-chief worker writes what the chief writes into ``workdir``: a fresh folder outside it.

    The same path for the same worker and workdir, emptied when asked for, so a killed worker's
    leftovers are removed by its restart; ``remove_scratch`` deletes it at the end of a run.
    """
    key = hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"dapter-worker{worker_index()}-{key}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def remove_scratch(path: str) -> None:
    """Deletes a ``scratch_dir``."""
    shutil.rmtree(path, ignore_errors=True)


def localhost_tf_configs(workers: int) -> list[str]:
    """``TF_CONFIG`` values for a cluster of ``workers`` processes on this host (tests, benchmarks).

    Each worker gets a port the system reports free now; another process could take it before the
    worker binds it, which is harmless where nothing else is starting servers.
    """
    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:
        s.bind(("localhost", 0))
    hosts = [f"localhost:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}) for i in range(workers)]

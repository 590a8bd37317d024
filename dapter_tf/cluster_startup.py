"""Joining a multi-worker cluster without going silent: peers waited for with progress and a timeout, signals obeyed.

TensorFlow's ``MultiWorkerMirroredStrategy`` blocks in C++ until every worker of ``TF_CONFIG`` has
connected, printing nothing and with no end (an hour); meanwhile its preemption notifier takes
SIGTERM for itself, and Python's handlers never run because the main thread does not return to
the interpreter. So a worker first waits here, in Python, until every peer answers on its port
(each worker listens on its own port while it waits, so that the others see it), and only then
builds the strategy, which then returns at once. A daemon thread turns SIGINT and SIGTERM into one
line and an exit, whatever the main thread is blocked in.
"""

import os
import signal
import socket
import sys
import threading
import time

from dapter_tf.cluster import ClusterTask
from dapter_tf.errors import DapterError

PROGRESS_EVERY_S = 5.0  # How often a waiting worker says whom it waits for.
_POLL_S = 0.25  # How often it knocks at the ports of the peers not yet seen.
_CONNECT_TIMEOUT_S = 1.0  # A host that drops packets must not stall the progress lines.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# What a stopped worker was doing, for its last line: ``joined`` and ``note_step`` set them.
_joined = False
_step: int | None = None


def check_global_batch(task: ClusterTask, batch_size: int) -> None:
    """Refuses a global batch that the cluster's workers cannot share evenly, before waiting for them.

    Each worker may hold several replicas (GPUs); their count is known only once the strategy is
    built, where ``train.check_batches`` checks the batch against every replica.
    """
    if batch_size % task.num_workers:
        raise DapterError(
            f"batch_size {batch_size} does not split over the {task.num_workers} workers of TF_CONFIG: "
            f"give a multiple of {task.num_workers}"
        )


def _answers(address: str) -> bool:
    """Whether something accepts a TCP connection at ``host:port`` (a waiting peer, or its TensorFlow server)."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S):
            return True
    except OSError:  # Refused, unreachable, or a name that does not resolve (yet).
        return False


def _listen(address: str) -> socket.socket:
    """Listens on this worker's port, on every interface as TensorFlow's server will, so peers see it waiting."""
    port = int(address.rsplit(":", 1)[1])
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("", port))
    except OSError as e:
        raise DapterError(
            f"cannot listen on port {port}, this worker's address {address} in TF_CONFIG ({e.strerror}): "
            "stop whatever holds the port, or give this worker another one"
        ) from None


def wait_for_peers(
    task: ClusterTask, timeout_s: float, progress_every_s: float = PROGRESS_EVERY_S, out=sys.stderr
) -> None:
    """Returns once every other worker of the cluster answers on its port; says whom it waits for meanwhile.

    A peer answers while it waits here itself, or once its TensorFlow server runs. Each line
    written to ``out`` reads, e.g., ``waiting for worker 1 at localhost:12346 (20 s of 600 s)``.

    Args:
        task: This worker, with its peers (``cluster.parse_tf_config``).
        timeout_s: How long to wait for all of them.
        progress_every_s: How often to write a line while some are missing (the first at once).
        out: Where the lines go.

    Raises:
        DapterError: naming the workers that never answered, once ``timeout_s`` has passed.
    """
    listener = _listen(task.address)
    try:
        start = time.monotonic()
        missing = list(task.peers)
        next_report = start
        while True:
            missing = [(name, address) for name, address in missing if not _answers(address)]
            if not missing:
                return
            now = time.monotonic()
            names = ", ".join(f"{name} at {address}" for name, address in missing)
            if now - start >= timeout_s:
                raise DapterError(
                    f"{names} never answered in {timeout_s:g} s: start the same command on every worker of "
                    "TF_CONFIG, check their addresses and firewalls, or wait longer with --cluster_timeout_s"
                )
            if now >= next_report:
                out.write(f"waiting for {names} ({int(now - start)} s of {timeout_s:g} s)\n")
                out.flush()
                next_report += progress_every_s
            time.sleep(_POLL_S)
    finally:
        listener.close()


def stop_on_signals() -> None:
    """From now on SIGINT and SIGTERM end this process at once with one line naming what it was doing.

    Python runs a signal handler only when the main thread returns to the interpreter, which it
    does not while TensorFlow blocks in C++ (joining a cluster, an all-reduce waiting for a peer).
    But Python's C-level handler, whichever thread the signal lands on, writes the signal's
    number to the wakeup file descriptor at once: a daemon thread waits on it, writes the line
    and exits the process. A checkpoint cannot be saved from that thread (it would need the
    step's collectives), so the rerun resumes from the last periodic checkpoint, as after a kill.
    Call it from the main thread.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    _take_signals()
    threading.Thread(target=_exit_on_signal, args=(read_fd,), name="stop-on-signals", daemon=True).start()


def _take_signals() -> None:
    # The handler does nothing: the wakeup descriptor carries the signal to the watching thread.
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: None)


def _exit_on_signal(read_fd: int) -> None:
    while True:
        signum = os.read(read_fd, 1)[0]
        if signum in STOP_SIGNALS:
            # Straight to the descriptor: the main thread may hold sys.stderr's lock. On a terminal the
            # line starts afresh, not after a half-drawn progress bar.
            fresh = "\n" if _joined and os.isatty(2) else ""
            os.write(2, f"{fresh}error: stopped by {signal.Signals(signum).name} {_doing()}\n".encode())
            os._exit(1)


def _doing() -> str:
    resume = "rerun the same command on every worker: training resumes from the chief's last checkpoint"
    if _step is not None:
        return f"at step {_step}; {resume}"
    if _joined:
        return f"after joining the cluster; {resume}"
    return "while waiting for the cluster"


def joined() -> None:
    """Records that the strategy is built; takes SIGTERM back from TensorFlow's preemption notifier.

    ``MultiWorkerMirroredStrategy`` installs a SIGTERM handler of its own that only logs; the run
    does not use TensorFlow's preemption handling, so a SIGTERM stops it as before joining.
    """
    global _joined
    _joined = True
    _take_signals()


def note_step(step: int) -> None:
    """Records the training step a worker runs, for the line a signal ends it with (cheap: call it every step)."""
    global _step
    _step = step

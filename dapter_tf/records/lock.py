"""One running process per workdir: an exclusive lock on ``<workdir>/.lock``, held for the process's life.

The lock is ``flock``'s, so the OS drops it when its process ends in any way, killed included: a
killed run never leaves a lock that blocks its rerun. The file holds the holder's pid, so that a
refused run can say which process holds the workdir; a process that ends normally empties it, and
a pid found there by the next run is that of a run that was killed, which the next run says in a
``note:`` line as it takes the workdir over.
"""

import atexit
import fcntl
import os
import time

from dapter_tf.errors import DapterError

LOCK_FILE = ".lock"

# The workdirs this process holds (real path -> the lock file's descriptor). A process may take a
# workdir again (a check, then the training, of one run): it holds it already.
_held: dict[str, int] = {}


def lock_workdir(workdir: str) -> None:
    """Takes ``workdir`` (an existing folder) for this process until it ends.

    Raises:
        DapterError: when another process holds it.
    """
    key = os.path.realpath(workdir)
    if key in _held:
        return
    fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _recorded_pid(fd)
        for _ in range(10):  # The holder writes its pid just after it takes the lock.
            if holder:
                break
            time.sleep(0.02)
            holder = _recorded_pid(fd)
        os.close(fd)
        raise DapterError(
            f"{workdir} is in use by another run (pid {holder or 'unknown'}); wait for it or use another --workdir"
        ) from None
    killed = _recorded_pid(fd)
    if killed and killed != os.getpid():
        print(
            f"note: {workdir} was held by pid {killed}, which ended without releasing it (killed?); "
            "this run takes it over",
            flush=True,
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    if not _held:
        atexit.register(_release_all)
    _held[key] = fd


def _recorded_pid(fd: int) -> int | None:
    """The pid written in an open lock file, or None when it holds none."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _release_all() -> None:
    """Empties and unlocks every lock file this process holds (at a normal exit)."""
    for fd in _held.values():
        try:
            os.ftruncate(fd, 0)
            os.close(fd)  # Closing drops the flock.
        except OSError:
            pass  # A workdir removed while running: nothing to release.
    _held.clear()

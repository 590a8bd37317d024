"""Runs a binary as ``python -m module`` does, in a process forked from one that has imported TensorFlow.

Most of a binary's start-up is importing TensorFlow and Keras (about 4 s of CPU here), and the suite
starts about a hundred binaries, most of them to see one ``error:`` line. A ``multiprocessing``
forkserver imports them once per pytest worker (and runs no TensorFlow op, so that forking stays
safe); each binary then runs in a child forked from it: a real, separate process, its module run as
``__main__`` with the given flags from the repository root, its own file descriptors 1 and 2 captured,
the caller's environment, and its exit status as ``python -m`` would give it.

What this cannot show is the binary's own start-up (``cli.runner`` importing TensorFlow with its
native chatter kept off stderr): the tests that check it pass ``fresh=True`` to ``conftest.run_binary``.
"""

import atexit
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import traceback

# What every binary imports first: imported once in the forkserver, shared by every child.
PRELOAD = ["tensorflow", "keras", "numpy", "matplotlib.pyplot", "skimage.metrics", "ai_edge_litert.interpreter"]

_context = None


def _forkserver_context():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _exit_status(code) -> int:
    """The exit status Python gives ``sys.exit(code)``: None is 0, an int itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _run_module(module: str, args: list, cwd: str, env: dict, stdout_path: str, stderr_path: str) -> None:
    """The child: ``python -m module args`` in ``cwd`` with ``env``, its output in the two files."""
    for fd, path in ((1, stdout_path), (2, stderr_path)):
        target = os.open(path, os.O_WRONLY)
        os.dup2(target, fd)
        os.close(target)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, cwd)  # As python -m puts the current folder first.
    sys.argv = [module, *args]  # runpy puts the module's file in argv[0], as python -m does.
    status = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        status = _exit_status(e.code)
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def start(
    module: str, args: list, cwd: str, stdout_path: str = os.devnull, stderr_path: str = os.devnull
) -> multiprocessing.Process:
    """Starts ``module`` with ``args`` in a forked child, output to the two files (default: discarded); returns it."""
    child = _forkserver_context().Process(
        target=_run_module, args=(module, list(args), cwd, dict(os.environ), stdout_path, stderr_path)
    )
    child.start()
    return child


def run(module: str, args: list, cwd: str, timeout: float) -> subprocess.CompletedProcess:
    """Runs ``module`` with ``args`` in a forked child and waits for it, like ``subprocess.run``.

    Raises:
        subprocess.TimeoutExpired: the child ran past ``timeout`` seconds (it is killed first).
    """
    command = [sys.executable, "-m", module, *args]
    with tempfile.TemporaryDirectory() as folder:
        paths = [os.path.join(folder, name) for name in ("stdout", "stderr")]
        for path in paths:
            open(path, "w").close()
        child = start(module, args, cwd, *paths)
        child.join(timeout)
        timed_out = child.exitcode is None
        if timed_out:
            child.kill()
            child.join()
        stdout, stderr = (open(path, errors="replace").read() for path in paths)
    if timed_out:
        raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
    return subprocess.CompletedProcess(command, child.exitcode, stdout, stderr)

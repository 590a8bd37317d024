"""Atomic file writes: a crash never leaves half a file, or half a set of files, where a finished one is expected.

``atomic_file`` and ``write_json`` write one file (a temp file beside it, then a rename);
``staged_folder`` writes a whole set of files (a folder a binary ships as one: an export, a release
bundle) into a staging folder that replaces the final one only once every file is written. A kill
or a full disk then leaves the old set or none, never a half set; the next run clears what a killed
one left behind (``clear_leftovers``). An ``OSError`` raised while writing names the file, so that
``cli.runner`` can say which file a full disk stopped.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil

import numpy as np

from dapter_tf.errors import DapterError


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb"):
    """Opens a temp file beside ``path`` for writing; it becomes ``path`` only once the block ends cleanly.

    A failure inside the block (a full disk, a kill) leaves ``path`` as it was and removes the temp
    file. An ``OSError`` without a file name (a ``write`` that found the disk full) is re-raised
    naming ``path``.

    Args:
        path: The file to write.
        mode: ``"wb"`` or ``"w"``.

    Yields:
        The open temp file.
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and not e.filename:
            raise OSError(e.errno, e.strerror or str(e), path) from None
        raise


def write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path``, atomically (``atomic_file``)."""
    with atomic_file(path, "wb") as f:
        f.write(data)


def copy_file(source: str, path: str) -> None:
    """Copies ``source`` to ``path``, atomically; a failure names ``path`` (``shutil`` names the source)."""
    with open(source, "rb") as src, atomic_file(path, "wb") as f:
        shutil.copyfileobj(src, f)


def write_json(path: str, obj) -> None:
    """Writes ``obj`` as indented JSON, atomically (``atomic_file``)."""
    with atomic_file(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=json_default)
        f.write("\n")


_STAGING, _OLD = "staging", "old"


def _leftover_name(final: str, kind: str) -> str:
    """The hidden name, beside ``final``, of this process's staging or old copy of it."""
    parent, name = os.path.split(os.path.abspath(final))
    return os.path.join(parent, f".{name}.{kind}-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Another user's process: alive.
        return True
    return True


def clear_leftovers(final: str) -> None:
    """Removes what a killed ``staged_folder`` left beside ``final``; restores its old set if none replaced it.

    A run killed between the two renames of a commit leaves the old set under its hidden name and no
    ``final``: it is put back, so the rerun starts from the old set. Leftovers of a process that
    is still running (another run writing the same folder) are not touched.
    """
    parent, name = os.path.split(os.path.abspath(final))
    if not os.path.isdir(parent):
        return
    for entry in sorted(os.listdir(parent)):
        prefix, _, pid = entry.rpartition("-")
        kind = prefix.rpartition(".")[2]
        if prefix not in (f".{name}.{_STAGING}", f".{name}.{_OLD}") or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        path = os.path.join(parent, entry)
        if kind == _OLD and not os.path.exists(final):
            os.rename(path, final)
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(final: str, keep: bool = False):
    """Yields an empty staging folder beside ``final`` that replaces ``final`` as one set when the block ends cleanly.

    The commit is two renames (the old set aside, the new one in) and the old set's removal; a kill
    between them leaves the old set aside, which ``clear_leftovers`` (run here first) puts back.
    On any failure the staging folder is removed and ``final`` is left as it was.

    Args:
        final: The folder the set ships in; it may exist (its whole content is replaced).
        keep: Copy the files of the old ``final`` that the new set does not hold into the staging
            folder before the commit (a folder that also holds files of other runs).

    Yields:
        The staging folder's path.
    """
    clear_leftovers(final)
    staging, old = _leftover_name(final, _STAGING), _leftover_name(final, _OLD)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        yield staging
        if keep and os.path.isdir(final):
            for entry in os.listdir(final):
                source, copy = os.path.join(final, entry), os.path.join(staging, entry)
                if not os.path.lexists(copy):
                    (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, copy)
        if os.path.isdir(final):
            os.rename(final, old)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.isdir(old) and not os.path.exists(final):
            os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def no_space_left(error: BaseException) -> bool:
    """Whether ``error`` (an OSError, or a TensorFlow op error) says that the disk is full."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return "No space left on device" in str(error)


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``, or None when there is no such file."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def json_default(value):
    """``json.dump``'s ``default``: numpy scalars as Python numbers, tuples as lists."""
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def sha256(path: str) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(folder: str) -> str:
    """The SHA-256 of a folder's content (a SavedModel): every file's relative path and hash, sorted by path.

    A copied or moved folder keeps its hash; a file added, removed, renamed or changed changes it.
    """
    digest = hashlib.sha256()
    paths = []
    for parent, _, names in os.walk(folder):
        paths.extend(os.path.relpath(os.path.join(parent, name), folder) for name in names)
    for relative in sorted(p.replace(os.sep, "/") for p in paths):
        digest.update(f"{relative}\0{sha256(os.path.join(folder, relative))}\n".encode())
    return digest.hexdigest()


def path_sha256(path: str) -> str:
    """The SHA-256 of a file (``sha256``) or of a folder's content (``tree_sha256``)."""
    return tree_sha256(path) if os.path.isdir(path) else sha256(path)


def read_record(path: str, what: str, parse):
    """``parse`` of the JSON a record's ``save`` wrote at ``path``.

    Args:
        path: The file.
        what: What it holds ("attack results"), named in errors.
        parse: ``dict -> record``; a missing key or a wrong value (KeyError, TypeError, ValueError)
            means the file is not such a record.

    Raises:
        DapterError: if the file is missing or is not such a record.
    """
    if not os.path.isfile(path):
        raise DapterError(f"{what} not found: {path}")
    try:
        with open(path) as f:
            return parse(json.load(f))
    except (ValueError, KeyError, TypeError) as e:
        raise DapterError(f"{path}: not {what} ({type(e).__name__}: {e})") from None

"""Atomic file writes: a crash never leaves half a file where a finished one is expected."""

import contextlib
import hashlib
import json
import os

import numpy as np

from dapter_tf.errors import DapterError


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically: a temp file in the same folder, then a rename.

    A kill leaves the old file (or none) and at worst a stale ``<path>.tmp`` that the next write
    replaces; a failed write (a full disk) removes its temp file, so no empty or half file is left.

    Raises:
        OSError: the write's error, with ``filename`` set to ``path``, so that the one error line a
            binary prints names the file (``No space left on device: <path>``).
    """
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # A full disk can surface only here (or at close) on some file systems.
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):  # No temp file, or none can be there: the error above is the one.
            os.remove(tmp)
        raise OSError(e.errno, e.strerror or str(e), path) from None


def write_json(path: str, obj) -> None:
    """Writes ``obj`` as indented JSON, atomically (``write_bytes_atomic``)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n"
    write_bytes_atomic(path, text.encode())


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

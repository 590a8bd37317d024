"""The run record: the only reader and writer of a training workdir's ``config.json`` and ``results.json``.

Every training run (a target, a converter, an attacker) locks its workdir, records the config it
was made with in ``config.json`` when it starts and its figures in ``results.json`` when it ends. A
rerun with the same config resumes the run (or, finished, does nothing); another config is refused,
and so is a second run while the first holds the workdir. Export,
release and the reports read the records here, so that none of them needs the training code.
"""

import dataclasses
import json
import os

from dapter_tf import cluster
from dapter_tf.errors import DapterError
from dapter_tf.records import lock
from dapter_tf.records.files import json_default, path_sha256, read_json, write_json

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
TARGET_FILE = "target.keras"
CONVERTER_FILE = "converter.keras"
# The SHA-256 of a run's target, beside its target_path in config.json: a target is known by its content
# (a SavedModel directory by every file in it, ``files.tree_sha256``).
TARGET_HASH = "target_sha256"


def lambda_point_dir(workdir: str, lambda_: float) -> str:
    """The workdir of a λ sweep's point for ``lambda_`` (``analysis.lambda_study``), e.g. ``workdir/lambda_0.900``."""
    return os.path.join(workdir, f"lambda_{lambda_:.3f}")


def config_to_dict(config) -> dict:
    """A config dataclass as plain JSON values (tuples become lists), as ``config.json`` holds it."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=json_default))


def prepare_workdir(workdir: str, config) -> None:
    """Creates and locks ``workdir`` and records ``config`` in it, or checks it against the run it holds.

    A workdir that already holds a run resumes that run, so its config must match, except for
    ``epochs`` (a finished run may be extended). A field the record lacks was added to the config
    after that run was made: it matches if the new config leaves it at its default. A target is
    known by its content (``record_config``): the same file moved or copied matches, another file
    at the same path does not.

    The workdir is this process's until it ends (``lock.lock_workdir``): a second run on it is
    refused. In a cluster only the chief creates, locks and writes; the other workers check the
    record if it is there.

    Raises:
        DapterError: if another process holds the workdir, or it holds a run with another config.
    """
    if cluster.is_chief():
        os.makedirs(workdir, exist_ok=True)
        lock.lock_workdir(workdir)
    path = os.path.join(workdir, CONFIG_FILE)
    new = record_config(config, workdir)
    if os.path.exists(path):
        with open(path) as f:
            old = _fill_defaults(json.load(f), config)
        changed = _differences(old, new, workdir)
        if changed:
            raise DapterError(
                f"{workdir} holds a run with another config (differs in: {', '.join(changed)}); "
                f"use a new --workdir or the same flags to resume it"
            )
    if cluster.is_chief():
        write_json(path, new)


def record_config(config, workdir: str) -> dict:
    """``config`` as ``workdir``'s ``config.json`` records it.

    A target that exists (a ``.keras`` file or a SavedModel directory) is recorded with its SHA-256
    (``target_sha256``; a directory's over every file, ``files.tree_sha256``), and, where it lies in
    the folder that holds the workdir (the workdir's own tree or a sibling's, as the demo's
    ``target/`` beside its ``converter/``), by its path relative to the workdir: a copied or moved
    tree then still names its own target. Other targets are recorded by their absolute path.
    """
    record = config_to_dict(config)
    target = record.get("target_path")
    if target and os.path.exists(target):
        record[TARGET_HASH] = path_sha256(target)
        real_target, real_workdir = os.path.realpath(target), os.path.realpath(workdir)
        tree = os.path.dirname(real_workdir)
        if os.path.commonpath([tree, real_target]) == tree:
            record["target_path"] = os.path.relpath(real_target, real_workdir)
    return record


def _differences(old: dict, new: dict, workdir: str) -> list[str]:
    """The fields in which the records ``old`` and ``new`` of ``workdir`` differ, ``epochs`` aside.

    Two targets with recorded hashes are compared by hash alone; otherwise by where they lie.
    """
    changed = [
        key
        for key in sorted(set(old) | set(new))
        if key not in ("epochs", "target_path", TARGET_HASH) and old.get(key) != new.get(key)
    ]
    if old.get(TARGET_HASH) and new.get(TARGET_HASH):
        if old[TARGET_HASH] != new[TARGET_HASH]:
            changed.append(TARGET_HASH)
    elif _target_location(old, workdir) != _target_location(new, workdir):
        changed.append("target_path")
    return sorted(changed)


def _target_location(record: dict, workdir: str) -> str:
    """The absolute path of the target a record of ``workdir`` names ("" for none)."""
    path = record.get("target_path") or ""
    if not path or os.path.isabs(path):
        return path
    if TARGET_HASH in record:  # Recorded relative to the workdir.
        return os.path.normpath(os.path.join(os.path.abspath(workdir), path))
    return os.path.abspath(path)  # Older runs recorded it as given, relative to where they started.


def _fill_defaults(record: dict, config) -> dict:
    """``record`` (a ``config.json``) with the fields it lacks set to the defaults of ``config``'s type.

    Nested configs (a spec inside a loop config) are filled the same way, from their own types.
    """
    filled = dict(record)
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in filled:
            if dataclasses.is_dataclass(value) and isinstance(filled[field.name], dict):
                filled[field.name] = _fill_defaults(filled[field.name], value)
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            continue
        plain = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else default
        filled[field.name] = json.loads(json.dumps(plain, default=json_default))
    return filled


def start_run(workdir: str, config, train_images: int, model_file: str) -> dict | None:
    """Records ``config`` in ``workdir`` (``prepare_workdir``); returns the results of a run found finished there.

    A finished run (``finished_results``) is said to be so on the terminal and its records are kept:
    the caller returns them without training.
    """
    prepare_workdir(workdir, config)
    finished = finished_results(workdir, config, train_images, model_file)
    if finished is not None:
        print(f"{workdir} holds this run, finished: nothing to do (its results are kept)", flush=True)
    return finished


def finished_results(workdir: str, config, train_images: int, model_file: str) -> dict | None:
    """A finished run's ``results.json``, or None when ``workdir`` holds no finished run of ``config``.

    A run is finished when its results record every step of ``config.epochs`` epochs and its model
    file is there; rerunning it is then a no-op that keeps its records (and the model file's bytes)
    as they are. A longer ``epochs`` resumes it instead.
    """
    path = os.path.join(workdir, "results.json")
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(workdir, model_file))):
        return None
    with open(path) as f:
        results = json.load(f)
    if results.get("steps") != config.epochs * (train_images // config.batch_size):
        return None
    return results


def recorded_target_path(workdir: str, override: str = "") -> str:
    """The target a train_dapter workdir's converter was trained against, as a path that opens from here.

    ``config.json`` records ``target_path`` relative to the workdir, or absolute, with its SHA-256
    (``record_config``); the file found there must still have that hash. Older records hold no
    hash and an absolute path (since issue 17) or one relative to where their run started, tried
    from here, then from the workdir.

    Args:
        workdir: A ``train_dapter`` workdir.
        override: A target given on the command line (``--target``): used as it is.

    Raises:
        DapterError: on a folder that is no workdir, or a recorded target that is not found or
            whose content has changed.
    """
    if override:
        return override
    config_path = os.path.join(workdir, CONFIG_FILE)
    record = read_dapter_config(workdir)
    recorded = record.get("target_path") or ""
    if not recorded:
        raise DapterError(f"{config_path} names no target_path: give --target")
    recorded_hash = record.get(TARGET_HASH)
    if recorded_hash:
        found = os.path.join(workdir, recorded)  # An absolute record stays as it is.
        if not os.path.exists(found):
            raise DapterError(f"{config_path} names target {recorded}, which is not found from {workdir}: give --target")
        if path_sha256(found) != recorded_hash:
            raise DapterError(
                f"{found} is not the target that {workdir}'s converter was trained against (its SHA-256 "
                f"differs from the one {config_path} records): give --target"
            )
        return found
    for candidate in (recorded, os.path.join(workdir, recorded)):
        if os.path.exists(candidate):
            return candidate
    raise DapterError(
        f"{config_path} names target {recorded}, which is not found from here or from {workdir}: give --target"
    )


def converter_lambda(converter_path: str) -> float | None:
    """The lambda recorded in a converter's workdir (``config.json`` beside its file, or in the folder), if any."""
    if os.path.isdir(converter_path):
        converter_path = os.path.join(converter_path, CONVERTER_FILE)
    path = os.path.join(os.path.dirname(converter_path), "config.json")
    try:
        with open(path) as f:
            return float(json.load(f)["lambda_"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_config(workdir: str) -> dict | None:
    """The config a workdir's run was made with (its ``config.json``), or None when there is none."""
    return read_json(os.path.join(workdir, CONFIG_FILE))


def read_results(workdir: str) -> dict | None:
    """A workdir's ``results.json``, or None when the run has not finished."""
    return read_json(os.path.join(workdir, RESULTS_FILE))


def read_dapter_config(workdir: str) -> dict:
    """A train_dapter workdir's ``config.json`` (λ as ``lambda_``, ``target_path``, ...).

    Raises:
        DapterError: on a folder that holds no run.
    """
    config = read_config(workdir)
    if config is None:
        raise DapterError(f"{workdir} is not a train_dapter workdir (no config.json)")
    if "lambda_" not in config and os.path.isfile(os.path.join(workdir, TARGET_FILE)):
        raise DapterError(
            f"{workdir} is a dapter-train-target workdir (it holds a target, not a converter): give the "
            "dapter-train-dapter workdir of the converter"
        )
    return config


def write_results(workdir: str, results: dict) -> None:
    """Writes a finished run's ``results.json``, atomically (the chief alone, in a cluster)."""
    if cluster.is_chief():
        write_json(os.path.join(workdir, RESULTS_FILE), results)

"""The run record: the only reader and writer of a training workdir's ``config.json`` and ``results.json``.

Every training run (a target, a converter, an attacker) records the config it was made with in
``config.json`` when it starts and its figures in ``results.json`` when it ends. A rerun with the
same config resumes the run (or, finished, does nothing); another config is refused. Export,
release and the reports read the records here, so that none of them needs the training code.
"""

import dataclasses
import json
import os

from dapter_tf import cluster
from dapter_tf.errors import DapterError
from dapter_tf.records.files import json_default, read_json, write_json

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
TARGET_FILE = "target.keras"
CONVERTER_FILE = "converter.keras"


def config_to_dict(config) -> dict:
    """A config dataclass as plain JSON values (tuples become lists), as ``config.json`` holds it."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=json_default))


def prepare_workdir(workdir: str, config) -> None:
    """Creates ``workdir`` and records ``config`` in it, or checks it against the run it holds.

    A workdir that already holds a run resumes that run, so its config must match, except for
    ``epochs`` (a finished run may be extended). A field the record lacks was added to the config
    after that run was made: it matches if the new config leaves it at its default.

    In a cluster only the chief creates and writes; the other workers check the record if it is there.

    Raises:
        DapterError: if the workdir holds a run with another config.
    """
    if cluster.is_chief():
        os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    new = config_to_dict(config)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        old = _fill_defaults(old, config)
        if old.get("target_path"):  # Older runs recorded it as given, relative to where they started.
            old["target_path"] = os.path.abspath(old["target_path"])
        changed = sorted(k for k in set(old) | set(new) if k != "epochs" and old.get(k) != new.get(k))
        if changed:
            raise DapterError(
                f"{workdir} holds a run with another config (differs in: {', '.join(changed)}); "
                f"use a new --workdir or the same flags to resume it"
            )
    if cluster.is_chief():
        write_json(path, new)


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

    ``config.json`` records ``target_path`` as the training run was given it (since issue 17: made
    absolute). A relative record from an older run is tried from here, then from the workdir.

    Args:
        workdir: A ``train_dapter`` workdir.
        override: A target given on the command line (``--target``): used as it is.

    Raises:
        DapterError: on a folder that is no workdir, or a recorded target that is not found.
    """
    if override:
        return override
    config_path = os.path.join(workdir, CONFIG_FILE)
    recorded = read_dapter_config(workdir).get("target_path") or ""
    if not recorded:
        raise DapterError(f"{config_path} names no target_path: give --target")
    for candidate in (recorded, os.path.join(workdir, recorded)):
        if os.path.isfile(candidate):
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

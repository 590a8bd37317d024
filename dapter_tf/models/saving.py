"""Model files: saving a model atomically, and loading a target (frozen) or a converter safely."""

import os
import zipfile

import keras
import numpy as np

from dapter_tf.errors import DapterError
from dapter_tf.models import converter as _converter  # noqa: F401  (registers the converter's layers)
from dapter_tf.records.runs import CONVERTER_FILE, TARGET_FILE

# The file that makes a folder a SavedModel (a target as TF Serving serves it: ``models.served``).
SAVED_MODEL_FILE = "saved_model.pb"


def save_model(model: keras.Model, path: str) -> None:
    """Saves ``model`` as a ``.keras`` file, atomically: a failure (a full disk) leaves no partial file.

    Raises:
        OSError: naming ``path``, when the file cannot be written.
    """
    tmp = f"{path[: -len('.keras')]}.tmp.keras"
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and not e.filename:
            raise OSError(e.errno, e.strerror or str(e), path) from None
        raise


def check_finite(model: keras.Model, path: str) -> keras.Model:
    """Returns ``model`` if every weight is finite; refuses a model whose training diverged.

    Raises:
        DapterError: naming the file and the first non-finite weight.
    """
    for variable in model.weights:
        if not np.isfinite(np.asarray(variable)).all():
            raise DapterError(
                f"{path} holds non-finite weights ({variable.path} has NaN or infinite values): its training "
                "diverged; retrain it with a lower learning rate"
            )
    return model


def freeze(model: keras.Model) -> keras.Model:
    """Marks ``model`` untrainable: the provider's target never changes while the converter trains."""
    model.trainable = False
    return model


def check_model_file(path: str, what: str) -> None:
    """Refuses a path that cannot hold a ``.keras`` model, naming it: missing, a folder, or not a zip archive.

    Keras reports a file that is not a zip archive as "File not found", which misleads a user whose
    file is there: a ``.keras`` file is a zip archive, so anything else is corrupt or another kind
    of file.

    Args:
        path: The file.
        what: What it should hold ("target model", "converter"), named in errors.

    Raises:
        DapterError: one line naming ``path``.
    """
    if os.path.isdir(path):
        inside = os.path.join(path, TARGET_FILE)
        if what == "target model" and os.path.isfile(inside):
            tip = f" (the workdir's own is {inside})"
        elif what == "target model":
            tip = f" (a dapter-train-target workdir keeps it as {TARGET_FILE})"
        else:
            raise DapterError(f"{what} {path} is a folder, not a file: give its .keras file")
        raise DapterError(
            f"{what} {path} is a folder but not a SavedModel (it holds no {SAVED_MODEL_FILE}): give a .keras file "
            f"or a SavedModel directory{tip}"
        )
    if not os.path.isfile(path):
        raise DapterError(f"{what} file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise DapterError(
            f"{path} is not a .keras model: it is not a zip archive, as every .keras file is "
            "(it is corrupt, truncated or another kind of file)"
        )


def is_saved_model(path: str) -> bool:
    """Whether ``path`` is a SavedModel directory (it holds ``saved_model.pb``)."""
    return os.path.isfile(os.path.join(path, SAVED_MODEL_FILE))


def check_target_path(path: str) -> None:
    """Refuses a path that holds no target: neither a SavedModel directory nor a ``.keras`` file (``check_model_file``).

    Raises:
        DapterError: one line naming ``path``.
    """
    if not is_saved_model(path):
        check_model_file(path, "target model")


def load_model_file(path: str, what: str) -> keras.Model:
    """Loads a ``.keras`` file safely: ``safe_mode=True`` refuses to deserialise code (Lambda layers).

    Args:
        path: The file.
        what: What it should hold ("target model", "converter"), named in errors.

    Raises:
        DapterError: if the file is missing, a folder, or not a loadable Keras model.
    """
    check_model_file(path, what)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad file; all mean the same to the user.
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise DapterError(f"{path}: not a loadable .keras model ({type(e).__name__}: {first_line})") from None


def load_keras_target(path: str) -> keras.Model:
    """Loads a trained target from a ``.keras`` file, safely (a target may come from elsewhere) and frozen.

    Raises:
        DapterError: if the file is missing or is not a loadable Keras model.
    """
    return freeze(check_finite(load_model_file(path, "target model"), path))


def load_target(path: str, contract=None) -> keras.Model:
    """Loads a frozen target, a ``.keras`` file or a SavedModel directory, behind its input contract.

    The result takes [0, 1] float images and returns logits (``models.served.load_target``).

    Args:
        path: The target.
        contract: Its ``served.TargetContract`` (a workdir's record, or flags); None: the JSON
            beside the model, else our zoo's (``served.resolve_contract``).

    Raises:
        DapterError: if there is no loadable target there, or the contract does not fit it.
    """
    from dapter_tf.models import served  # served builds on this module.

    return served.load_target(path, served.resolve_contract(path, contract))


def load_converter(path: str) -> keras.Model:
    """Loads a trained converter from a ``.keras`` file or from a train_dapter workdir.

    Raises:
        DapterError: if there is no loadable converter there.
    """
    if os.path.isdir(path):
        path = os.path.join(path, CONVERTER_FILE)
    return check_finite(load_model_file(path, "converter"), path)

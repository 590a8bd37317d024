"""Runs a binary's main: flags parsed, output flags checked, TensorFlow imported quietly, one error line.

Every binary ends with ``runner.run(main)``: a ``DapterError`` (bad input) or a file-system fault
becomes one ``error: ...`` line and exit status 1, with nothing written.
"""

import os
import sys
import tempfile

from absl import app, flags, logging

from dapter_tf import DapterError
from dapter_tf.records.files import no_space_left


def _import_tensorflow_quietly():
    """Imports TensorFlow with its native start-up lines (oneDNN, absl::InitializeLog) kept off stderr.

    TF 2.21 prints them whatever TF_CPP_MIN_LOG_LEVEL says, and they would bury the one-line
    errors of our binaries. What the import prints is replayed if the import fails.
    """
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf


def _describe_console_script(module_name: str) -> None:
    """Lets --help describe a binary started as a console script (``dapter-...``), as under ``python -m``.

    absl prints the ``__main__`` module's docstring and the key flags of the module named
    ``sys.argv[0]``; a console script's ``__main__`` is pip's stub, which has neither.
    """
    if module_name == "__main__":
        return
    sys.modules["__main__"].__doc__ = sys.modules[module_name].__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def check_output_folder(flag: str, path: str) -> None:
    """Makes sure ``path`` is, or can become, a writable folder, before any work; one-line errors.

    Nothing is created: a run refused later (bad data) leaves no folder behind.

    Args:
        flag: The flag's name as the user typed it (``--workdir``), named in the error.
        path: The folder.

    Raises:
        DapterError: when it, or the nearest existing folder above it, is a file or not writable.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise DapterError(f"{flag} {path} is a file, not a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise DapterError(f"{flag} {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DapterError(f"{flag} {path} cannot be written ({existing} is not writable)")


def check_output_file(flag: str, path: str) -> None:
    """Makes sure the file ``path`` can be written, before any work: its folder exists and is writable.

    Raises:
        DapterError: when ``path`` is a folder, or its folder is missing or not writable.
    """
    if os.path.isdir(path):
        raise DapterError(f"{flag} {path} is a folder, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DapterError(f"{flag} {path}: its folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise DapterError(f"{flag} {path} cannot be written (permission denied)")


# Flags that name what a binary writes, checked by ``run`` before any work. --workdir is the
# binary's own output everywhere except where it names a finished run the binary reads.
OUTPUT_FOLDER_FLAGS = ("workdir", "output_dir", "report_dir")
OUTPUT_FILE_FLAGS = ("output_json", "output_csv", "output_npz")
READS_WORKDIR = {"export.tflite.export_tflite", "export.release.release"}


def check_output_flags(module: str) -> None:
    """``check_output_folder`` / ``check_output_file`` on every output flag the binary defines and was given."""
    values = flags.FLAGS.flag_values_dict()
    for name in OUTPUT_FOLDER_FLAGS:
        if values.get(name) and not (name == "workdir" and module in READS_WORKDIR):
            check_output_folder(f"--{name}", values[name])
    for name in OUTPUT_FILE_FLAGS:
        if values.get(name):
            check_output_file(f"--{name}", values[name])


def run(main, tensorflow: bool = True):
    """Runs ``main`` under absl; a DapterError becomes one ``error: ...`` line and exit status 1.

    Args:
        main: The binary's main, called without arguments once flags are parsed.
        tensorflow: Import TensorFlow first, quietly, and tame its logging. False for binaries
            that never use it (the adb driver), which then start in a fraction of a second.
    """
    _describe_console_script(main.__module__)

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        if not flags.FLAGS["verbosity"].present:
            # TensorFlow logs INFO lines at every checkpoint and export; a user needs warnings and
            # errors (--verbosity=0 brings the INFO lines back).
            logging.set_verbosity(logging.WARNING)
        if tensorflow:
            tf = _import_tensorflow_quietly()
            tf.get_logger().setLevel(logging.get_absl_logger().level)
            # Runs that measure many models (one per attack label, one per lambda) make Keras trace a
            # predict function for each; TensorFlow calls that "retracing" and warns, needlessly here.
            tf.get_logger().addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())
        try:
            module = main.__module__
            if module == "__main__":  # Run as python -m package.module: its spec names it.
                spec = getattr(sys.modules["__main__"], "__spec__", None)
                module = spec.name if spec else module
            check_output_flags(module)
            main()
        except DapterError as e:
            sys.stderr.write(f"error: {e}\n")
            sys.exit(1)
        except OSError as e:
            # A file-system fault a binary did not check for up front (a disk that filled, a folder
            # removed mid-run): still one line, naming the file, rather than a traceback.
            where = f": {e.filename}" if e.filename else ""
            sys.stderr.write(f"error: {e.strerror or e}{where}\n")
            sys.exit(1)
        except Exception as e:
            # TensorFlow's own writes (a checkpoint, a SavedModel) report a full disk as an op error
            # whose message names the file.
            if not no_space_left(e):
                raise
            sys.stderr.write(f"error: no space left on device ({str(e).strip().splitlines()[0]})\n")
            sys.exit(1)

    app.run(guarded, flags_parser=_parse_flags)


def _parse_flags(argv: list) -> list:
    """absl's flag parsing, with a bad or missing flag as one ``error:`` line (absl prints two, one ``FATAL``)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.stderr.write(f"error: {e} (--helpshort lists the flags)\n")
        sys.exit(1)

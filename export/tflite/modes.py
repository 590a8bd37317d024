"""The export modes: what each file's weights and input/output are, and its file name."""

from dapter_tf import DapterError

MODES = ("float32", "float16", "dynamic_range", "int8", "int8_int8_io", "int8_float_io")


# Modes whose whole body is integer: they need calibration images and end at the sigmoid.
FULL_INTEGER_MODES = ("int8", "int8_int8_io", "int8_float_io")


def check_mode(mode: str) -> str:
    """Returns ``mode`` if known; raises ValueError (a DapterError) naming the known modes otherwise."""
    if mode not in MODES:
        raise DapterError(f"unknown quantization mode {mode!r}; choose from: {', '.join(MODES)}")
    return mode


def file_name(mode: str) -> str:
    """The file a mode is written to, e.g. ``converter_int8.tflite``."""
    return f"converter_{check_mode(mode)}.tflite"


def output_step_after_interpreter(mode: str, output_step: int) -> int:
    """The grid step to apply to the interpreter's bytes: the converter's for full-int8 files, else 1."""
    return output_step if check_mode(mode) in FULL_INTEGER_MODES else 1

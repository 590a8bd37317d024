r"""Exports a trained converter as .tflite files in every quantization mode, each gated on parity with Keras.

For every mode in --modes it writes OUTPUT_DIR/converter_<mode>.tflite, runs it with ai_edge_litert
on real held-out images, and compares it with the Keras converter: max and mean absolute pixel
difference, the target's accuracy on both one's converted images (with the predictions that flipped
and the drop's 95 % interval), and the entropy of both. Files are written under a staging name and
reach their shipping names only when every file of the run has passed: a file that breaks a tolerance
stops the export with one line naming the mode and the figure, leaves the shipped files and
export.json untouched, and puts this run's files and figures in OUTPUT_DIR/failed/ (unless --force).
The accuracy gate fails a file only when the whole 95 % interval of its drop lies above the
tolerance. Full-int8 modes are calibrated on --calibration_steps real training images. Every figure,
with each file's SHA-256 and input shape, goes to OUTPUT_DIR/export.json; dapter-release refuses a
file whose hash does not match it. The data must be at the target's image size.

Modes: float32, float16 (float16 weights), dynamic_range (int8 weights, float activations), int8
(full int8, uint8 pixels in and out: the file a phone ships), int8_int8_io, int8_float_io.

Example:
  dapter-export-tflite --workdir=runs/cifar10_resnet18_dapter --source=npz \
      --train_npz=../shared/data/cifar10/train_20k.npz --test_npz=../shared/data/cifar10/test.npz --max_test=2000
"""

import os

from absl import flags

from cli import flags_lib, runner

_build_data = flags_lib.define_data_flags()
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "A train_dapter workdir: its converter.keras is exported and its config.json names "
    "the target used to measure accuracy.",
    required=True,
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the .tflite files and export.json go (default: WORKDIR/export)."
)
_TARGET = flags.DEFINE_string("target", "", "The target's .keras file (default: the one WORKDIR/config.json records).")
_MODES = flags.DEFINE_list(
    "modes",
    "float32,float16,dynamic_range,int8,int8_int8_io,int8_float_io",
    "Quantization modes to export: float32, float16, dynamic_range, int8 (uint8 pixel I/O), int8_int8_io, "
    "int8_float_io.",
)
_CALIBRATION_STEPS = flags.DEFINE_integer(
    "calibration_steps",
    200,
    "Real training images, drawn at random, that calibrate full-int8 activation ranges (>= 1).",
)
_MAX_PIXEL_DIFF_STEPS = flags.DEFINE_float(
    "max_pixel_diff_steps",
    None,
    "Tolerance for every mode: the largest |TFLite - Keras| pixel difference, in output grid steps "
    "(default per mode: 1 for float files, 2 for integer ones).",
)
_MAX_MEAN_PIXEL_DIFF = flags.DEFINE_float(
    "max_mean_pixel_diff",
    None,
    "Tolerance for every mode: the largest mean |TFLite - Keras| pixel difference in uint8 levels "
    "(default: float32 0.05, float16 0.1, integer modes 1.0).",
)
_MAX_ACCURACY_DROP = flags.DEFINE_float(
    "max_accuracy_drop",
    None,
    "Tolerance for every mode: the largest fall of the target's accuracy on TFLite-converted images below "
    "Keras-converted, in points; a file fails when the whole 95 % interval of its drop lies above it "
    "(default: 0.5 for float files, 1.0 for integer ones).",
)
_MAX_ENTROPY_CHANGE = flags.DEFINE_float(
    "max_entropy_change",
    None,
    "Tolerance for every mode: the largest change of mean image entropy, in bits (default: float32 0.02, "
    "float16 0.05, integer modes 0.15).",
)
_FORCE = flags.DEFINE_bool(
    "force",
    False,
    "Ship files that break a tolerance (the breaches are recorded in export.json, and dapter-release still "
    "refuses them) instead of failing.",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds which images calibrate and which held-out images are checked.")

# The shared flags are this binary's own to its users: list them in --helpshort too.
flags.adopt_module_key_flags(flags_lib)


def _tolerances(modes) -> dict:
    """Per-mode tolerances: each mode's default with the flags that were given put over it."""
    import dataclasses

    from export.tflite.parity import DEFAULT_TOLERANCES

    given = {
        "max_pixel_diff_steps": _MAX_PIXEL_DIFF_STEPS.value,
        "mean_pixel_diff": _MAX_MEAN_PIXEL_DIFF.value,
        "accuracy_drop_points": _MAX_ACCURACY_DROP.value,
        "entropy_change_bits": _MAX_ENTROPY_CHANGE.value,
    }
    given = {name: value for name, value in given.items() if value is not None}
    return {mode: dataclasses.replace(DEFAULT_TOLERANCES[mode], **given).validate() for mode in modes}


def main():
    from dapter_tf import DapterError, data, models
    from dapter_tf.models import served
    from dapter_tf.records import runs
    from export.tflite import export_tflite_lib
    from export.tflite.modes import check_mode

    modes = [check_mode(mode) for mode in _MODES.value]
    if not modes:
        raise DapterError("--modes needs at least one mode")
    tolerances = _tolerances(modes)
    if _CALIBRATION_STEPS.value < 1:
        raise DapterError(f"--calibration_steps must be >= 1, got {_CALIBRATION_STEPS.value}")
    data_config = _build_data()
    target_path = runs.recorded_target_path(_WORKDIR.value, _TARGET.value)
    output_dir = _OUTPUT_DIR.value or os.path.join(_WORKDIR.value, "export")
    runner.check_output_folder("--output_dir", output_dir)
    converter = models.load_converter(_WORKDIR.value)
    # The contract the converter was trained through: the provider's preprocessing sits before the target.
    target = models.load_target(target_path, served.recorded_contract(_WORKDIR.value))
    task, train_set, test_set = data.load_data(data_config, seed=_SEED.value)
    result = export_tflite_lib.export_converter(
        converter,
        target,
        output_dir,
        train_set.images,
        test_set.images,
        test_set.labels[task.target_label],
        _CALIBRATION_STEPS.value,
        modes=modes,
        tolerances=tolerances,
        force=_FORCE.value,
        seed=_SEED.value,
        progress=lambda line: print(line, flush=True),
    )
    if "size_ratio_float32_to_int8" in result:
        print(f"float32 / int8 size: {result['size_ratio_float32_to_int8']:.2f}x")


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

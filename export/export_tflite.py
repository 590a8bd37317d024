r"""Exports a trained converter as float32 and full-int8 `.tflite` files and checks them on real images.

Example:
  dapter-export-tflite --workdir=runs/cifar10_resnet18_dapter --source=npz \
      --train_npz=../shared/data/cifar10/train_20k.npz --test_npz=../shared/data/cifar10/test.npz
"""

import json
import os

from absl import flags

from experiments import flags_lib

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
_CALIBRATION_STEPS = flags.DEFINE_integer(
    "calibration_steps", 200, "Real training images that calibrate int8 activation ranges (>= 1)."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds which images calibrate and which are checked.")

# The shared flags are this binary's own to its users: list them in --helpshort too.
flags.adopt_module_key_flags(flags_lib)


def main():
    from dapter_tf import DapterError, classifier, data, train
    from export import export_tflite_lib

    config_path = os.path.join(_WORKDIR.value, "config.json")
    if not os.path.isfile(config_path):
        raise DapterError(f"{_WORKDIR.value} is not a train_dapter workdir (no config.json)")
    with open(config_path) as f:
        target_path = json.load(f).get("target_path")
    converter = train.load_converter(_WORKDIR.value)
    target = classifier.load_target(target_path)
    task, train_set, test_set = data.load_data(_build_data(), seed=_SEED.value)
    result = export_tflite_lib.export_converter(
        converter,
        target,
        _OUTPUT_DIR.value or os.path.join(_WORKDIR.value, "export"),
        train_set.images,
        test_set.images,
        test_set.labels[task.target_label],
        _CALIBRATION_STEPS.value,
    )
    for mode, e in result["files"].items():
        print(
            f"{mode}: {e['path']} {e['bytes']} bytes, max pixel diff {e['max_pixel_diff']}, "
            f"target accuracy {e['accuracy_tflite']:.4f} vs Keras {e['accuracy_keras']:.4f}"
        )
    print(f"float32 / int8 size: {result['size_ratio_float32_to_int8']:.2f}x")


def run():
    flags_lib.run(main)


if __name__ == "__main__":
    run()

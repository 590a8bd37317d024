"""The main job end to end: train a target, train a converter against it, measure, export, report.

Runs on the embedded CIFAR-10 sample by default, in a few minutes on 2 CPU cores:

  1. trains a target (DLIS) model           -> WORKDIR/target/target.keras
  2. trains a DAPter converter on L_dap      -> WORKDIR/converter/converter.keras
  3. exports float32 and int8 .tflite files  -> WORKDIR/export/
  4. writes WORKDIR/report.md, report.json and grid.png (originals beside converted images).

Rerunning with the same --workdir resumes where it stopped.
"""

import json
import os

from absl import flags

from cli import flags_lib, runner

_build_data = flags_lib.define_data_flags()
_WORKDIR = flags.DEFINE_string("workdir", "demo_out", "Folder for everything the run writes.")
_TARGET_MODEL = flags.DEFINE_string("target_model", "resnet18", "Target architecture: lenet or resnet18.")
_TARGET_WIDTH = flags.DEFINE_integer("target_width", 16, "Width of the target (see dapter-train-target --width).")
_TARGET_EPOCHS = flags.DEFINE_integer("target_epochs", 15, "Epochs of target training.")
_DAPTER_EPOCHS = flags.DEFINE_integer("dapter_epochs", 50, "Epochs of converter training.")
_LAMBDA = flags.DEFINE_float("lambda_", 0.9, "lambda of L_dap, in [0, 1] (the paper's default is 0.9).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Batch size of both trainings.")
_CALIBRATION_STEPS = flags.DEFINE_integer("calibration_steps", 200, "Images that calibrate the int8 export.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds weights, data order and shuffling.")
_STRATEGY = flags.DEFINE_string("strategy", "default", "tf.distribute strategy: 'default' or 'mirrored'.")

# The shared flags are this binary's own to its users: list them in --helpshort too.
flags.adopt_module_key_flags(flags_lib)


def main():
    from dapter_tf import DapterError, data, evaluate, models, train
    from dapter_tf.analysis import report
    from dapter_tf.records import lock, runs
    from export import export_tflite_lib

    if _CALIBRATION_STEPS.value < 1:
        raise DapterError(f"calibration_steps must be >= 1, got {_CALIBRATION_STEPS.value}")
    workdir = _WORKDIR.value
    data_config = _build_data()
    common = dict(data=data_config, batch_size=_BATCH_SIZE.value, seed=_SEED.value, strategy=_STRATEGY.value)
    target_config = train.TargetConfig(
        model=_TARGET_MODEL.value, width=_TARGET_WIDTH.value, epochs=_TARGET_EPOCHS.value, **common
    )
    target_path = os.path.join(workdir, "target", runs.TARGET_FILE)
    dapter_config = train.DapterConfig(
        target_path=target_path, lambda_=_LAMBDA.value, epochs=_DAPTER_EPOCHS.value, **common
    )
    task, train_set, test_set = data.load_data(data_config, seed=_SEED.value)
    # The demo writes its export and report here itself: one demo per workdir (its trainings lock
    # their own target/ and converter/).
    os.makedirs(workdir, exist_ok=True)
    lock.lock_workdir(workdir)

    print(f"[1/4] training the target {target_config.model} on {len(train_set)} images", flush=True)
    target_results = train.train_target(target_config, task, train_set, test_set, os.path.join(workdir, "target"))
    print(f"[2/4] training the converter at lambda={dapter_config.lambda_}", flush=True)
    results = train.train_dapter(dapter_config, task, train_set, test_set, os.path.join(workdir, "converter"))
    print("[3/4] exporting .tflite files and checking them against Keras", flush=True)
    converter = models.load_converter(os.path.join(workdir, "converter"))
    target = models.load_target(target_path, dapter_config.target_contract)
    test_labels = test_set.labels[task.target_label]
    export_dir = os.path.join(workdir, "export")
    try:
        export = export_tflite_lib.export_converter(
            converter, target, export_dir, train_set.images, test_set.images, test_labels, _CALIBRATION_STEPS.value
        )
    except export_tflite_lib.ParityError as e:
        # Nothing that broke its gate is shipped (it lies in export/failed/), but the run's other
        # figures are not lost: the report gives the failed files' figures and says why.
        print(f"warning: {e}", flush=True)
        with open(os.path.join(export_dir, export_tflite_lib.FAILED_DIR, "export.json")) as f:
            export = json.load(f)
    print("[4/4] writing the report", flush=True)
    results["target_test_accuracy_after_training"] = target_results["test_accuracy"]
    grid_images = test_set.images[: report.GRID_IMAGES]
    report.write_report(
        workdir, dapter_config, results, grid_images, evaluate.convert_images(converter, grid_images), export, task=task
    )
    print(report.one_line_summary(results))
    for mode, e in export["files"].items():
        print(f"{e['path']}: {export_tflite_lib.format_parity_line(mode, e)}")
        if e["failures"]:
            print(f"warning: {mode} broke its parity gate ({'; '.join(e['failures'])}); it was not shipped")
    print(f"report: {os.path.join(workdir, 'report.md')}")


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

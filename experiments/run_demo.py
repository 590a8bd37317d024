"""The main job end to end: train a target, a converter against it, export it, attack it, report.

Runs on the embedded CIFAR-10 sample by default, on CPUs (docs/paper.md gives one measured run):

  1. trains a target (DLIS) model           -> WORKDIR/target/target.keras
  2. trains a DAPter converter on L_dap      -> WORKDIR/converter/converter.keras
  3. exports float32 and int8 .tflite files  -> WORKDIR/export/
  4. attacks the frozen converter: a decoder trained on converted images of the converter's own
     training split learns to restore the originals, and is measured on the held-out images by
     SSIM, beside the mean training image's SSIM -> WORKDIR/attack/<attacker>/
  5. writes WORKDIR/report.md, report.json and grid.png: the figures, whether the attacker restores
     the converted photos and what that means, and held-out originals above their converted and
     reconstructed versions, each row and each column (class) named.

Rerunning with the same --workdir resumes where it stopped.
"""

import dataclasses
import json
import os
import shutil
import time

from absl import flags

from cli import flags_lib, runner

_build_data = flags_lib.define_data_flags()
_WORKDIR = flags.DEFINE_string("workdir", "demo_out", "Folder for everything the run writes.")
_TARGET_MODEL = flags.DEFINE_string(
    "target_model",
    "resnet18",
    "Target architecture, any of dapter-train-target's: lenet, vgg11, vgg16, resnet18 or resnet50 (the CIFAR "
    "forms), or vgg11_imagenet, vgg16_imagenet, resnet18_imagenet or resnet50_imagenet (for 224x224 images).",
)
_TARGET_WIDTH = flags.DEFINE_integer("target_width", 16, "Width of the target (see dapter-train-target --width).")
_TARGET_EPOCHS = flags.DEFINE_integer("target_epochs", 15, "Epochs of target training.")
_DAPTER_EPOCHS = flags.DEFINE_integer("dapter_epochs", 50, "Epochs of converter training.")
_LAMBDA = flags.DEFINE_float("lambda_", 0.9, "lambda of L_dap, in [0, 1] (the paper's default is 0.9).")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 64, "Batch size of both trainings and of the reconstruction attacker's."
)
_CALIBRATION_STEPS = flags.DEFINE_integer("calibration_steps", 200, "Images that calibrate the int8 export.")
_ATTACK_MODEL = flags.DEFINE_enum(
    "attack_model",
    "symmetric",
    ["symmetric", "unet"],
    "The reconstruction attacker, trained after the converter froze (dapter_tf/attacks/reconstructors.py): "
    "symmetric, the paper's generator (§5.3), mirroring the converter; or unet, a four-level U-Net about 16x "
    "its size, stronger and about 4x slower per epoch.",
)
_ATTACK_EPOCHS = flags.DEFINE_integer(
    "attack_epochs",
    10,
    "Epochs of the reconstruction attacker over its (converted, original) training pairs. A short attack "
    "that fails proves no protection: dapter-attack-suite and dapter-protect train their attackers longer.",
)
_ATTACK_TRAIN_IMAGES = flags.DEFINE_integer(
    "attack_train_images",
    0,
    "Images of the converter's own training split that the attacker converts and learns to restore "
    "(0: all of them, the paper's strongest setting).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds weights, data order and shuffling (the attacker's too).")
_STRATEGY = flags.DEFINE_string("strategy", "default", "tf.distribute strategy: 'default' or 'mirrored'.")

# The shared flags are this binary's own to its users: list them in --helpshort too.
flags.adopt_module_key_flags(flags_lib)


# The file in the attacker's folder that names the converter it attacks and its settings: a converter
# trained further (a rerun with more --dapter_epochs) gets a new attacker, never one trained against its
# old weights, and so do other attack flags.
_ATTACKED_FILE = "attacked_converter.json"


def _attack_spec(task, train_set):
    """The reconstruction attacker of the flags, checked against the task and its images before anything trains."""
    from dapter_tf import DapterError
    from dapter_tf.attacks import ReconstructionSpec

    spec = ReconstructionSpec(
        architecture=_ATTACK_MODEL.value,
        epochs=_ATTACK_EPOCHS.value,
        batch_size=_BATCH_SIZE.value,
        train_images=_ATTACK_TRAIN_IMAGES.value,
        seed=_SEED.value,
    )
    spec.validate(task)
    pairs = min(spec.train_images or len(train_set), len(train_set))
    if pairs < spec.batch_size:
        raise DapterError(
            f"the attacker's {pairs} training images do not fill one batch of {spec.batch_size} "
            "(--attack_train_images, --batch_size)"
        )
    return spec


def _attack(spec, converter, converter_path: str, train_set, test_set, workdir: str):
    """Stage 4: the reconstruction attack on the frozen converter; resumes a killed or finished attack.

    The attacker trains on the converter's own training images, converted, and is measured on the
    held-out ones (``attacks.reconstruction.reconstruct_images``). A rerun resumes its training from
    its checkpoint, or, finished, measures it again (seconds).

    Returns the ``ReconstructionResult`` and the attacker (the trained decoder).
    """
    from dapter_tf import models
    from dapter_tf.attacks import reconstruction
    from dapter_tf.records import files

    folder = os.path.join(workdir, "attack", spec.architecture)
    # As the JSON file reads back (tuples as lists).
    attacked = {"converter_sha256": files.sha256(converter_path), "spec": dataclasses.asdict(spec)}
    attacked = json.loads(json.dumps(attacked))
    if os.path.isdir(folder) and files.read_json(os.path.join(folder, _ATTACKED_FILE)) != attacked:
        # Cheaper to train again than the trainings before it: a rerun with other attack flags is not refused.
        print(f"   the converter or the attack's flags changed since {folder} was trained: it starts over", flush=True)
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)
    files.write_json(os.path.join(folder, _ATTACKED_FILE), attacked)
    own = train_set if not spec.train_images else train_set.take(spec.train_images)
    result = reconstruction.reconstruct_images(converter, converter_path, own.images, test_set.images, spec, folder)
    attacker = models.load_model_file(
        os.path.join(folder, reconstruction.RECONSTRUCTOR_FILE), "reconstruction attacker"
    )
    return result, attacker


def main():
    from dapter_tf import DapterError, data, evaluate, models, train
    from dapter_tf.analysis import report
    from dapter_tf.records import lock, runs
    from export.tflite import export_tflite_lib
    from export.tflite.parity import ParityError, format_parity_line

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
    attack_spec = _attack_spec(task, train_set)
    # The demo writes its export and report here itself: one demo per workdir (its trainings lock
    # their own target/ and converter/).
    os.makedirs(workdir, exist_ok=True)
    lock.lock_workdir(workdir)

    print(f"[1/5] training the target {target_config.model} on {len(train_set)} images", flush=True)
    target_results = train.train_target(target_config, task, train_set, test_set, os.path.join(workdir, "target"))
    print(f"[2/5] training the converter at lambda={dapter_config.lambda_}", flush=True)
    results = train.train_dapter(dapter_config, task, train_set, test_set, os.path.join(workdir, "converter"))
    print("[3/5] exporting .tflite files and checking them against Keras", flush=True)
    converter = models.load_converter(os.path.join(workdir, "converter"))
    target = models.load_target(target_path, dapter_config.target_contract)
    test_labels = test_set.labels[task.target_label]
    export_dir = os.path.join(workdir, "export")
    try:
        export = export_tflite_lib.export_converter(
            converter, target, export_dir, train_set.images, test_set.images, test_labels, _CALIBRATION_STEPS.value
        )
    except ParityError as e:
        # Nothing that broke its gate is shipped (it lies in export/failed/), but the run's other
        # figures are not lost: the report gives the failed files' figures and says why.
        print(f"warning: {e}", flush=True)
        with open(os.path.join(export_dir, export_tflite_lib.FAILED_DIR, "export.json")) as f:
            export = json.load(f)
    pairs = min(attack_spec.train_images or len(train_set), len(train_set))
    print(
        f"[4/5] attacking the frozen converter: a {attack_spec.architecture} decoder learns to restore the "
        f"originals from {pairs} converted training images ({attack_spec.epochs} epoch(s)), measured on "
        f"{len(test_set)} held-out images",
        flush=True,
    )
    start = time.time()
    converter_path = os.path.join(workdir, "converter", runs.CONVERTER_FILE)
    attack, attacker = _attack(attack_spec, converter, converter_path, train_set, test_set, workdir)
    print(f"   the attack took {time.time() - start:.0f} s", flush=True)
    print("[5/5] writing the report", flush=True)
    results["target_test_accuracy_after_training"] = target_results["test_accuracy"]
    picks = report.grid_picks(test_labels)
    grid_images = test_set.images[picks]
    grid_converted = evaluate.convert_images(converter, grid_images)
    report.write_report(
        workdir,
        dapter_config,
        results,
        grid_images,
        grid_converted,
        export,
        task=task,
        labels=test_labels[picks],
        attack=dataclasses.asdict(attack),
        reconstructed=evaluate.convert_images(attacker, grid_converted),
    )
    print(report.one_line_summary(results))
    print(report.attack_summary(dataclasses.asdict(attack)))
    for mode, e in export["files"].items():
        print(f"{e['path']}: {format_parity_line(mode, e)}")
        if e["failures"]:
            print(f"warning: {mode} broke its parity gate ({'; '.join(e['failures'])}); it was not shipped")
    print(f"report: {os.path.join(workdir, 'report.md')}")


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

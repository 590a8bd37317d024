r"""dapter-protect: from a provider's frozen target and labelled photos to a verified, quantized release.

One resumable command, in six stages, each printed as it starts:

1. target: the target's accuracy on the held-out originals, through its input contract (a
   near-chance figure is refused: the contract flags are likely wrong);
2. search: the recipe ladder of ``dapter_tf.analysis.recipe_search``, most protective and cheapest
   first (the coarse output code from one colour per image to finer blocks, a wider and longer
   training at each, then L_dap alone; the class code only with --allow_model_on_device); each
   candidate is trained (a coarse code then fine-tuned on L_margin, so that its int8 file keeps its
   colours), screened by a short attack, and confirmed by the full attack suite
   (attackers trained after the converter froze, on converted images of its own training split,
   measured on held-out images; the strongest reconstruction beside the mean training image, the
   labellers beside the bound of knowing only the target label); it stops at the first that meets
   --max_accuracy_drop, --max_ssim_over_mean and --max_attack_gap, or when --budget_hours is spent;
3. report: WORKDIR/search.md and search.png (every point tried, on the frontier);
4. export: dapter-export-tflite of the chosen converter (--modes), each file gated on parity;
5. release: dapter-release into WORKDIR/release, the card's claims from the full suite;
6. verify: dapter-verify --attacks on the release (an attacker of its own, against the card).

Exit status: 0 when a recipe met the bars and its release verified; 3 when no recipe met them (the
best point on each side is named); 1 (one error: line) on bad input or a failed stage. Rerunning the
same command resumes: finished candidates and stages are read back, and the time already spent counts
against the budget.

Example (an app team's SavedModel and photos; bench/provider_celeba_male.py makes both):
  dapter-protect --target=runs/provider_celeba_male/served_model \
      --dataset=photos --labels_csv=runs/provider_celeba_male/photos/labels.csv --label_column=Male \
      --attack_columns=Smiling --image_size=64 --workdir=runs/protect_celeba_male
"""

import json
import os
import subprocess
import sys
import time

from absl import flags

from cli import flags_lib, runner, target_flags

# The exit status of a search that found no recipe meeting the bars (1 is a bad input or a failed stage).
NO_RECIPE_EXIT = 3
STAGES = ("target", "search", "report", "export", "release", "verify")

_build_data = flags_lib.define_data_flags()
_TARGET = flags.DEFINE_string(
    "target",
    None,
    "The provider's frozen target: a SavedModel directory (as TF Serving serves it, e.g. from model.export) or a "
    ".keras file, behind its input contract (--target_preprocessing and the flags beside it, or "
    "<target>.contract.json).",
    required=True,
)
_build_contract = target_flags.define_target_contract_flags()
_MAX_DROP = flags.DEFINE_float(
    "max_accuracy_drop", 3.0, "Bar: points of the target's accuracy the converter may cost on held-out photos."
)
_MAX_SSIM_OVER_MEAN = flags.DEFINE_float(
    "max_ssim_over_mean",
    0.05,
    "Bar: how far the strongest reconstruction attacker's SSIM may rise above the mean training image's (what an "
    "attacker who learnt nothing of the photo scores).",
)
_MAX_GAP = flags.DEFINE_float(
    "max_attack_gap",
    5.0,
    "Bar: points by which the best labelling attacker (of each attack label) may beat an attacker who knows only "
    "the target label.",
)
_BUDGET_HOURS = flags.DEFINE_float(
    "budget_hours",
    None,
    "Stop the search when this many hours of candidates are spent, or before a candidate that would not fit in what "
    "is left (estimated from those trained); unset: no budget. A search that meets no bars and measured no "
    "candidate holding the attack bars then screens the one that lost fewest points, even past the budget.",
)
_ALLOW_MODEL = flags.DEFINE_bool(
    "allow_model_on_device",
    False,
    "Also try the class code last: a converter that runs a copy of the target on the phone (model partitioning, "
    "which the paper rejects: every user receives the provider's model). Its card says so first.",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", 10, "Epochs of each candidate's cheap training; the wide variant at the same code trains 3x as long."
)
_WIDE_FILTERS = flags.DEFINE_list(
    "wide_filters",
    "48,96,192",  # recipe_search.WIDE_FILTERS (tests/test_recipe_search.py checks they agree).
    "The block encoder's channels in the wide rungs (b32_wide, b16_wide, ...), the last at the block resolution. "
    "Wider costs the phone more: bench/bench_yardstick.py times the encoder beside MobileNetV2.",
)
_CANDIDATES = flags.DEFINE_list(
    "candidates",
    [],
    "Try only these candidates of the ladder, in its order (names as the report gives them: b32, b32_wide, ..., "
    "ldap_0.9); empty: all. Use a new --workdir when the ladder changes.",
)
_BATCH = flags.DEFINE_integer("batch_size", 64, "Converter training batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Converter training's initial learning rate (cosine decay).")
_AUGMENT = flags.DEFINE_bool(
    "augment",
    False,
    "Train each converter on randomly flipped and shifted photos (4 pixels, black borders: the CIFAR recipe). "
    "Off by default: L_acc learns the target's answer, and a served model answers a shifted photo with black "
    "borders otherwise than the photos it serves (CelebA Male on a MobileNetV2, b = 32, wide, L_head, 10 "
    "epochs: 6.55 points lost with it, 0.05 gained without).",
)
_SUITE_EPOCHS = flags.DEFINE_integer(
    "suite_epochs", 10, "Full suite: epochs of the U-Net and the symmetric decoder, and of the labellers."
)
_SUITE_IMAGES = flags.DEFINE_integer(
    "suite_train_images",
    8000,
    "Full suite: (converted, original) pairs the reconstruction attackers train on, from the converter's own "
    "training split (0: all).",
)
_ATTACK_LABELS = flags.DEFINE_list(
    "suite_attack_labels", [], "Labels the labelling attackers read (empty: every attack label of the task)."
)
_MODES = flags.DEFINE_list("modes", "float32,int8", "The .tflite files to export (each gated on parity).")
_EXPORT_IMAGES = flags.DEFINE_integer(
    "export_test_images", 2000, "Held-out photos the export gates and the release measure (0: all)."
)
_VERIFY_SECONDS = flags.DEFINE_float(
    "verify_attack_seconds", 600, "dapter-verify --attacks: the time its own reconstruction attacker may train."
)
_RELEASE_NAME = flags.DEFINE_string(
    "release_name", "", "The release's name on its model card (default: the workdir's folder name)."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds training, attackers and which photos are measured.")
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Folder for everything the run writes: target.json, search.json, search.md, search.png, one folder per "
    "candidate, export/, release/ and stages/ (one marker per finished stage). Rerun the same command to resume.",
    required=True,
)

flags.adopt_module_key_flags(flags_lib)
flags.adopt_module_key_flags(target_flags)

# The data flags forwarded to the export, release and verify binaries, exactly as given here.
_DATA_FLAGS = (
    "dataset",
    "source",
    "data_dir",
    "train_npz",
    "test_npz",
    "target_label",
    "image_size",
    "labels_csv",
    "label_column",
    "file_column",
    "attack_columns",
    "max_train",
)


def _stage(index: int, name: str, text: str) -> None:
    print(f"[{index}/{len(STAGES)}] {name}: {text}", flush=True)


def _done(workdir: str, stage: str) -> dict | None:
    path = os.path.join(workdir, "stages", f"{stage}.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return None


def _mark(workdir: str, stage: str, record: dict) -> None:
    from dapter_tf.records import files

    os.makedirs(os.path.join(workdir, "stages"), exist_ok=True)
    files.write_json(os.path.join(workdir, "stages", f"{stage}.json"), {**record, "time": time.time()})


def _forwarded() -> list:
    """The data and contract flags given on this command line, for the binaries run as stages."""
    names = [*_DATA_FLAGS, "target_preprocessing", "target_output", "target_signature", "target_output_key"]
    return [flags.FLAGS[name].serialize() for name in names if name in flags.FLAGS and flags.FLAGS[name].present]


def _run_binary(module: str, args: list, what: str) -> None:
    """Runs one of the project's binaries as a stage; its failure is one line naming the stage and its error."""
    from dapter_tf import DapterError

    command = [sys.executable, "-m", module, *args]
    process = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    sys.stderr.write("".join(line for line in process.stderr.splitlines(True) if not line.startswith("error:")))
    if process.returncode != 0:
        errors = [line[len("error: ") :] for line in process.stderr.splitlines() if line.startswith("error: ")]
        reason = errors[-1] if errors else f"exit status {process.returncode}"
        raise DapterError(f"{what} failed: {reason} (rerun this command to resume from this stage)")


def main():
    from dapter_tf import DapterError, attacks, data, train
    from dapter_tf.analysis import recipe_search
    from dapter_tf.models import served
    from dapter_tf.train.converter import check_target_fits

    workdir = os.path.abspath(_WORKDIR.value)
    recipe_search.check_budget(_BUDGET_HOURS.value)
    wide_filters = flags_lib.parse_ints(_WIDE_FILTERS.value, "--wide_filters")
    bars = recipe_search.Bars(_MAX_DROP.value, _MAX_SSIM_OVER_MEAN.value, _MAX_GAP.value)
    criteria = bars.criteria()
    contract = served.resolve_contract(_TARGET.value, _build_contract())
    base = train.DapterConfig(
        data=_build_data(),
        target_path=_TARGET.value,
        target_contract=contract,
        batch_size=_BATCH.value,
        learning_rate=_LEARNING_RATE.value,
        seed=_SEED.value,
        epochs=_EPOCHS.value,
        augment=_AUGMENT.value,
    )
    full_spec = _suite_spec(attacks, criteria)
    task, train_set, test_set = data.load_training_data(base.data, seed=base.seed)
    full_spec.validate(task)
    side = test_set.images.shape[1]
    if test_set.images.shape[1] != test_set.images.shape[2]:
        raise DapterError(f"dapter-protect searches square images; these are {side}x{test_set.images.shape[2]}")
    ladder = recipe_search.build_ladder(
        side,
        _EPOCHS.value,
        _ALLOW_MODEL.value,
        validation_images=recipe_search.validation_images_for(train_set),
        wide_filters=wide_filters,
        candidates=_CANDIDATES.value,
    )

    # 1. The target, measured first: a wrong contract scores near chance.
    _stage(1, "target", f"{_TARGET.value}: {contract.describe()}")
    target_record = _done(workdir, "target")
    if target_record is None:
        target = served.load_target(base.target_path, contract)
        check_target_fits(base, task, train_set, target)
        accuracy = served.check_target_serves(
            target, test_set.images, test_set.labels[task.target_label], base.target_path, contract
        )
        os.makedirs(workdir, exist_ok=True)
        target_record = {"target": base.target_path, "contract": contract.to_dict(), "accuracy": accuracy}
        _mark(workdir, "target", target_record)
    print(f"   accuracy on {len(test_set)} held-out photos: {target_record['accuracy']:.4f}", flush=True)

    # 2. The search.
    plural = "s" if len(ladder) > 1 else ""
    _stage(2, "search", f"at most {len(ladder)} candidate{plural}: {', '.join(r.name for r in ladder)}")
    state = recipe_search.run_search(
        base, ladder, bars, full_spec, task, train_set, test_set, workdir, _BUDGET_HOURS.value
    )
    # 3. The report, rewritten on every run.
    title = f"dapter-protect: {task.description} against {os.path.basename(base.target_path.rstrip('/'))}"
    report = recipe_search.write_report(state, bars, full_spec, workdir, title, base.target_path)
    _stage(3, "report", f"{report} and {os.path.join(workdir, recipe_search.PLOT_FILE)}")
    if not state.chosen:
        print(recipe_search.describe_ending(state, ladder, bars, _BUDGET_HOURS.value), flush=True)
        sys.exit(NO_RECIPE_EXIT)
    chosen = os.path.join(workdir, state.chosen)
    # The candidate's converter: its code-margin fine-tuning for a coarse code (recipe_search, "int8").
    converter_dir = next(p["converter"] for p in state.points if p["name"] == state.chosen)
    print(f"   chosen: {state.chosen} ({converter_dir})", flush=True)

    # 4-6. Export with the parity gate, release with the card's claims, verify with an attacker of its own.
    export_dir = os.path.join(workdir, "export")
    release_dir = os.path.join(workdir, "release")
    common = [*_forwarded(), f"--seed={_SEED.value}"]
    steps = (
        (
            4,
            "export",
            "export.tflite.export_tflite",
            [
                f"--workdir={converter_dir}",
                f"--output_dir={export_dir}",
                f"--modes={','.join(_MODES.value)}",
                f"--max_test={_EXPORT_IMAGES.value}",
            ],
        ),
        (
            5,
            "release",
            "export.release.release",
            [
                f"--workdir={converter_dir}",
                f"--export_dir={export_dir}",
                f"--suite_results={chosen}/suite/suite.json",
                f"--output_dir={release_dir}",
                f"--name={_RELEASE_NAME.value or os.path.basename(os.path.normpath(workdir))}",
                f"--max_test={_EXPORT_IMAGES.value}",
            ],
        ),
        (
            6,
            "verify",
            "export.release.verify",
            [
                f"--bundle={release_dir}",
                f"--target={base.target_path}",
                "--attacks",
                f"--attack_seconds={_VERIFY_SECONDS.value}",
                f"--max_test={_EXPORT_IMAGES.value}",
            ],
        ),
    )
    for index, name, module, args in steps:
        if _done(workdir, name) is not None:
            _stage(index, name, "done before")
            continue
        _stage(index, name, f"{module} {' '.join(args)}")
        args = [a for a in [*common, *args] if not (name == "export" and a.startswith("--target_"))]
        _run_binary(module, args, f"stage {name}")
        _mark(workdir, name, {"module": module, "args": args})
    print(f"protected: {release_dir} (the card: {os.path.join(release_dir, 'model_card.md')})", flush=True)


def _suite_spec(attacks, criteria):
    """The full suite that confirms a candidate: a U-Net and the paper's generator, the lookup, and the labellers."""
    recon = (
        attacks.ReconstructionSpec(architecture="unet", epochs=_SUITE_EPOCHS.value, train_images=_SUITE_IMAGES.value,
                                   filters=(32, 64, 128, 256), seed=_SEED.value),
        attacks.ReconstructionSpec(architecture="symmetric", epochs=_SUITE_EPOCHS.value,
                                   train_images=_SUITE_IMAGES.value, seed=_SEED.value),
        attacks.ReconstructionSpec(architecture="lookup", seed=_SEED.value),
    )
    labelling = attacks.AutoRecognitionSpec(
        attack_labels=tuple(_ATTACK_LABELS.value),
        pretrain_epochs=_SUITE_EPOCHS.value,
        seed=_SEED.value,
        attackers=("scratch",),
    )
    return attacks.SuiteSpec(reconstruction=recon, labelling=labelling, criteria=criteria)


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

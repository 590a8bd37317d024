r"""The provider's lambda tuning strategy of §7.1.

Starts at lambda 0.9 and trains a converter; then, round after round, measures the security index
(mean entropy of converted images) and the usability index (target accuracy drop) on validation
images and fine-tunes the last converter at a new lambda: +0.02 while the entropy is too high,
-0.02 while the drop is too high. It stops when both criteria are met, or says why they cannot
both be met (both missed at once, or lambda would go back to a value already tried), or after
--max_rounds. The converter it ends with is then measured on test images no decision saw.

Security from learned attackers: with --max_ssim, --max_ssim_over_mean_image or
--max_label_gap_points, every round also runs the attack suite (dapter-attack-suite; its attackers
are set by the --suite_* flags) on its converter, logs the strongest reconstruction SSIM and the
labelling gap, and counts the round secure only if those criteria hold too; the final converter's
suite runs on the held-out test images (WORKDIR/final_suite).

Writes WORKDIR/tuner.json (every round and the final test measurement), WORKDIR/tuner.log (the
same rounds as lines) and WORKDIR/frontier.png; round k trains in WORKDIR/round_<k>/ (resumable).

Example:
  python -m experiments.tune_lambda --source=npz --train_npz=../shared/data/cifar10/train_20k.npz \
      --test_npz=../shared/data/cifar10/test.npz --target=runs/cifar10_resnet18/target.keras \
      --workdir=runs/tune_cifar10_resnet18
"""

import json
import os

from absl import flags

from cli import attack_flags, flags_lib, runner, training_flags

_build_data = flags_lib.define_data_flags()
_training = training_flags.define_training_flags(epochs=5, batch_size=64, learning_rate=1e-3)
_build_config = training_flags.define_converter_flags()
_build_suite = attack_flags.define_suite_flags()
_suite_criteria = attack_flags.define_security_flags(max_ssim=None, max_label_gap_points=None)
_START = flags.DEFINE_float("start", 0.9, "The first lambda (§7.1 starts at the paper's 0.9).")
_STEP = flags.DEFINE_float("step", 0.02, "How far lambda moves after a round that misses a criterion (§7.1: 0.02).")
_MAX_DROP = flags.DEFINE_float(
    "max_drop_points", 3.0, "Usability: the target accuracy drop must stay below this many points (§7.1: 3)."
)
_MAX_RATIO = flags.DEFINE_float(
    "max_entropy_ratio", 0.30, "Security: mean converted entropy over mean original entropy must stay below this."
)
_MAX_BITS = flags.DEFINE_float(
    "max_entropy_bits",
    0.0,
    "Security, the paper's absolute form: mean converted entropy below this many bits (§7.1: 3); 0: unused.",
)
_FINETUNE_EPOCHS = flags.DEFINE_integer(
    "finetune_epochs", 2, "Epochs of each round after the first (the first trains --epochs)."
)
_MAX_ROUNDS = flags.DEFINE_integer("max_rounds", 10, "Stop after this many rounds.")
_VAL_IMAGES = flags.DEFINE_integer(
    "val_images",
    2000,
    "Test-split images the rounds decide on; the final measurement uses the other test images, which no decision saw.",
)
_SWEEP_JSON = flags.DEFINE_string(
    "sweep_json",
    None,
    "A lambda_sweep's sweep.json for the same task and target, drawn on frontier.png beside the rounds.",
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for tuner.json, tuner.log, frontier.png and one round_<k>/ per round.", required=True
)

for module in (flags_lib, training_flags, attack_flags):
    flags.adopt_module_key_flags(module)


def main():
    from dapter_tf import DapterError, cluster, data
    from dapter_tf.analysis import lambda_plots, lambda_study

    if _SWEEP_JSON.value and not os.path.isfile(_SWEEP_JSON.value):
        raise DapterError(f"sweep file not found: {_SWEEP_JSON.value}")
    training = _training()
    tuner = lambda_study.TunerConfig(
        start=_START.value,
        step=_STEP.value,
        max_drop_points=_MAX_DROP.value,
        max_entropy_ratio=_MAX_RATIO.value,
        max_entropy_bits=_MAX_BITS.value,
        first_epochs=training["epochs"],
        finetune_epochs=_FINETUNE_EPOCHS.value,
        max_rounds=_MAX_ROUNDS.value,
        **_suite_criteria(),
    )
    config = _build_config(_build_data(), training, lambda_=tuner.start)
    suite = _build_suite(config.seed, tuner.security_criteria()) if tuner.uses_suite else None
    if suite is not None and config.strategy == "multi_worker":
        raise DapterError(
            "--strategy=multi_worker trains converters only: the attack suite's attackers train on one "
            "machine (drop the attack criteria, or use --strategy=mirrored)"
        )
    training_flags.join_cluster(config.strategy)
    # The attack suite converts the training images, so it needs them in memory.
    load = data.load_data if suite is not None else data.load_training_data
    task, train_set, test_set = load(config.data, seed=config.seed)
    n_val = _VAL_IMAGES.value
    if not 0 < n_val < len(test_set):
        raise DapterError(
            f"--val_images must lie in 1..{len(test_set) - 1} (the test split has {len(test_set)}), got {n_val}"
        )
    val_set, held_out = test_set.take(n_val), test_set.skip(n_val)
    workdir = _WORKDIR.value
    log = lambda_study.tune_lambda(config, tuner, task, train_set, val_set, held_out, workdir, suite)
    if not cluster.is_chief():
        return  # The chief writes the log and the plot.
    lines = [
        f"round {r['round']}: lambda {r['lambda']:.3f}: accuracy {r['accuracy_converted']:.4f} "
        f"(drop {r['accuracy_drop_points']:+.2f} points), entropy {r['entropy_converted']:.2f} bits "
        f"({100 * r['entropy_ratio']:.1f} %){_attack_figures(r)} -> {r['decision']}"
        for r in log["rounds"]
    ]
    f = log["final"]
    lines.append(f"stopped: {log['stopped']}")
    lines.append(
        f"final (lambda {log['final_lambda']:.3f}, {f['images']} held-out test images): accuracy "
        f"{f['accuracy_original']:.4f} -> {f['accuracy_converted']:.4f} (drop {f['accuracy_drop_points']:+.2f} "
        f"points), entropy {f['entropy_original']:.2f} -> {f['entropy_converted']:.2f} bits "
        f"({100 * f['entropy_ratio']:.1f} %){_attack_figures(f)}; criteria met: usability {f['usable']}, "
        f"security {f['secure']}"
    )
    with open(os.path.join(workdir, "tuner.log"), "w") as out:
        out.write("\n".join(lines) + "\n")
    title = f"{task.description}\nlambda tuner (§7.1)"
    series = {"tuner rounds (validation images)": log["rounds"]}
    if _SWEEP_JSON.value:
        with open(_SWEEP_JSON.value) as sweep_file:
            series = {"lambda sweep (test images)": json.load(sweep_file)["points"], **series}
    final = {**f, "lambda": log["final_lambda"]}
    series["tuner's converter (held-out test images)"] = [final]
    lambda_plots.plot_frontier(series, os.path.join(workdir, "frontier.png"), title, tuner)
    print("\n".join(lines))
    if not (f["usable"] and f["secure"]):
        print("the criteria are not both met on the held-out test images; see tuner.log")


def _attack_figures(measured: dict) -> str:
    """The attack suite's figures of a round (or of the final measurement), where it ran."""
    if measured.get("max_ssim") is None:
        return ""
    gap = measured.get("max_label_gap_points")
    return f", max reconstruction SSIM {measured['max_ssim']:.3f}" + (
        "" if gap is None else f", labelling gap {gap:+.2f} points"
    )


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

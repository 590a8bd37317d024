r"""Runs the attack suite on a trained converter: the security index, from attackers trained after it froze.

Every attacker trains on converted images of the converter's own training split (the data flags'
training images: the paper's strongest setting) and is measured on the held-out images:

  reconstruction  the paper's symmetric generator, a four-level U-Net and the lookup of each converted
                  training image's mean original (--suite_reconstruction); the strongest one's SSIM
                  and PSNR, beside the training images' mean image.
  labelling       where the task has attack labels: the fine-tuned attacker of §5.1 and one trained
                  from scratch on converted images (--suite_labelling); per attack label the best
                  accuracy, beside the bound of an attacker who knows only the target label.
  usability       with --target: the target's accuracy on original and converted images, and the
                  standard error of the difference on that many images.

Prints each attacker and the verdict of each criterion (--max_drop_points, --max_ssim,
--max_ssim_over_mean_image, --max_label_gap_points) and writes WORKDIR/suite.json (loads back with
dapter_tf.attacks.SuiteResults.load) and WORKDIR/summary.txt. A rerun with the same flags resumes
every attacker's training. With --fail_on_miss it exits with status 2 when a criterion is missed
(1 is for bad input), for use as a gate.

Example (the committed Cifar2:10 reference converter, against the target published beside it):
  dapter-attack-suite --dataset=cifar2_10 --source=npz --train_npz=../shared/data/cifar10/train_20k.npz \
      --test_npz=../shared/data/cifar10/test.npz --converter=results/release/cifar2_10_reference/converter.keras \
      --target=results/release/cifar2_10_reference.target.keras --workdir=runs/cifar2_10_reference_suite
"""

import sys

from absl import flags

from cli import attack_flags, flags_lib, runner, target_flags

_build_data = flags_lib.define_data_flags()
_build_suite = attack_flags.define_suite_flags()
_criteria = attack_flags.define_security_flags(max_ssim=0.2, max_label_gap_points=5.0)
_MAX_DROP = flags.DEFINE_float(
    "max_drop_points", 3.0, "Usability: the target may lose at most this many points on converted images."
)
_CONVERTER = flags.DEFINE_string(
    "converter", None, "The attacked converter's .keras file (or its dapter-train-dapter workdir).", required=True
)
_TARGET = flags.DEFINE_string(
    "target",
    "",
    "The target's .keras file or SavedModel directory: measures usability; the labelling attackers need it. Its "
    "contract: the flags below, else the converter's workdir's, else <target>.contract.json.",
)
_build_contract = target_flags.define_target_contract_flags()
_SEED = flags.DEFINE_integer("seed", 0, "Seeds data order and every attacker's weights.")
_FAIL_ON_MISS = flags.DEFINE_bool(
    "fail_on_miss", False, "Exit with status 2 when a criterion is missed (a gate); off: only report it."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for suite.json, summary.txt and one folder per attacker.", required=True
)

for module in (flags_lib, attack_flags, target_flags):
    flags.adopt_module_key_flags(module)


def main():
    import os

    from dapter_tf import attacks

    criteria = attacks.SecurityCriteria(max_drop_points=_MAX_DROP.value, **_criteria()).validate()
    spec = _build_suite(_SEED.value, criteria)
    input_data = attack_flags.load_attack_input(
        _build_data(), _CONVERTER.value, _TARGET.value, _SEED.value, _build_contract()
    )
    results = attacks.run_attack_suite(input_data, spec, _WORKDIR.value)
    print(f"wrote {os.path.join(_WORKDIR.value, attacks.suite.SUITE_FILE)} and summary.txt")
    if _FAIL_ON_MISS.value and not results.holds:
        missed = [v.name for v in results.verdicts() if v.holds is False]
        sys.stderr.write(f"the converter misses: {', '.join(missed)}\n")
        sys.exit(2)


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

r"""The converters for phones beside the Fig. 3 converter: accuracy and the attack suite, same budget, one run.

Issue 32 asks of each form that is cheaper on phones that it lose at most 1 point more than the Fig. 3
converter trained the same way, and that its strongest attacker's SSIM be no higher. Each --pairs
entry trains two converters with one recipe that differs only in the architecture, each against the
frozen --target on the data flags' training images, and runs the full attack suite on each (attackers
trained after the converter froze, on its converted training images, measured on held-out images):

  patches  the paper's L_dap at --lambda_: Fig. 3 (24/48/96) against its efficient form on 4x4 pixel
           patches (architecture fig3_patches, 48/96/192; --patch=2: on 2x2 patches, fig3_patches2);
  split    the same against the split form (architecture fig3_split: Fig. 3's first and last layers
           at full resolution on 8 channels, the rest on the patches, 48/96/192);
  block    the coarse code of dapter-protect's wide rungs (blocks of --block, λ 0.5, cosine decay,
           L_acc towards the target's answer, learning rate 3e-4, 48/96/192): Fig. 3 with the code's
           output blocks against the block encoder (architecture block_encoder), the form the
           reference releases ship.

Both converters of a pair get the same --epochs, seed, data and suite. --form_lambdas adds the patch
and split forms at other lambdas (fig3_patches_lambda<value>, fig3_split_lambda<value>), each judged
against the same Fig. 3 at --lambda_: whether the form only sits elsewhere on the same entropy-accuracy
frontier. The frontier's files
(WORKDIR/frontier.json, .md, .png, one folder per converter) hold the figures, and
WORKDIR/forms.md the verdict of each pair: the accuracy drop's difference with its standard error
(sqrt(se_a^2 + se_b^2), the two drops' paired errors, so conservative) and the strongest SSIM of
each beside the mean image's. Rerunning the same command resumes (a finished converter and its suite
are read back). For a served model of photos (CelebA Male's MobileNetV2, WORKSPACE.md) add --noaugment:
the CIFAR shifts' black borders change what a served model answers.

  .venv/bin/python bench/bench_efficient_forms.py --dataset=cifar10 --source=npz \
      --train_npz=../shared/data/cifar10/train_20k.npz --test_npz=../shared/data/cifar10/test.npz \
      --target=results/release/cifar10_reference.target.keras --pairs=patches --epochs=10 \
      --workdir=runs/forms_cifar10
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli import attack_flags, flags_lib, runner, training_flags  # noqa: E402

_build_data = flags_lib.define_data_flags()
_training = training_flags.define_training_flags(epochs=10, batch_size=64, learning_rate=1e-3)
_build_config = training_flags.define_converter_flags()
_build_suite = attack_flags.define_suite_flags()
_criteria = attack_flags.define_security_flags(max_ssim=0.2, max_label_gap_points=5.0)
_PAIRS = flags.DEFINE_list("pairs", "patches", "Which pairs to train and attack: any of patches, split and block.")
_BLOCK = flags.DEFINE_integer("block", 32, "The block side of the 'block' pair's coarse code.")
_LAMBDA = flags.DEFINE_float("lambda_", 0.9, "lambda of L_dap for the 'patches' and 'split' pairs, in [0, 1].")
_FORM_LAMBDAS = flags.DEFINE_list(
    "form_lambdas",
    [],
    "Further lambdas for the patch forms, each in [0, 1] and judged against Fig. 3 at --lambda_ "
    "(needs --pairs=patches or split; default: none).",
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for the frontier's files, forms.md and one folder per converter.", required=True
)

for module in (flags_lib, training_flags, attack_flags):
    flags.adopt_module_key_flags(module)


def main():
    from dapter_tf import DapterError, attacks, data
    from dapter_tf.analysis import forms, protection
    from dapter_tf.models.converter import PATCH
    from dapter_tf.records import files

    # --patch is the patch forms': their recipes set it, and the base config keeps the default that Fig. 3 needs.
    base = _build_config(_build_data(), _training(), lambda_=_LAMBDA.value, patch=PATCH)
    side = data.config_task(base.data).image_size[0]
    try:
        form_lambdas = [float(v) for v in _FORM_LAMBDAS.value]
    except ValueError:
        raise DapterError(f"--form_lambdas must be numbers, got {','.join(_FORM_LAMBDAS.value)}") from None
    recipes = forms.pair_recipes(_PAIRS.value, _BLOCK.value, side, form_lambdas, base.lambda_, flags.FLAGS.patch)
    protection.check_recipes(recipes, base)
    criteria = attacks.SecurityCriteria(max_drop_points=3.0, **_criteria()).validate()
    suite = _build_suite(base.seed, criteria)
    task, train_set, test_set = data.load_data(base.data, seed=base.seed)
    title = f"{task.description}: the converters for phones beside Fig. 3, {base.epochs} epochs each"
    frontier = protection.run_frontier(base, recipes, suite, task, train_set, test_set, _WORKDIR.value, title)
    table = forms.forms_table(forms.compare_forms(frontier["points"]))
    with files.atomic_file(os.path.join(_WORKDIR.value, "forms.md"), "w") as f:
        f.write(f"# {title}\n\n{table}")
    print(protection.frontier_table(frontier))
    print(table)


if __name__ == "__main__":
    runner.run(main)

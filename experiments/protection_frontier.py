r"""The protection frontier: converters trained with each recipe, each measured by the attack suite.

Each --recipe is "name: field=value ..." over the converter training flags: lambda_, epochs,
learning_rate, cosine_decay, output_block, output_step, filters (48/96/192), architecture (fig3, or
block_encoder with output_block >= 2), and the adversarial defence's adversary_weight,
adversary_decoders, adversary_restart_every, adversary_steps, adversary_learning_rate,
adversary_filters; a recipe without fields trains with the flags as given.
For every recipe, a converter trains against the frozen --target on the data flags' training images
(WORKDIR/<name>/converter), then the attack suite's attackers train on its converted training images
and are measured on the held-out images (WORKDIR/<name>/suite; the --suite_* flags). Finished recipes
are read back and a killed one resumes, so rerunning the same command continues the frontier.

Writes WORKDIR/frontier.json (one point per recipe: accuracy drop and its standard error, entropy
ratio, the strongest reconstruction SSIM beside the mean image's, the labelling gap, the verdicts),
frontier.md (the same as a table) and frontier.png (accuracy drop against the strongest SSIM, and
against the labelling gap where the task has attack labels, one line per family of recipes: L_dap,
adversarial, coarse code, both).

Example (Cifar2:10: the paper's L_dap at two lambdas, and the defended recipe):
  dapter-protection-frontier --dataset=cifar2_10 --source=npz \
      --train_npz=../shared/data/cifar10/train_20k.npz --test_npz=../shared/data/cifar10/test.npz \
      --target=runs/cifar2_10_target/target.keras --epochs=10 \
      --recipe="ldap_0.9: lambda_=0.9" --recipe="ldap_0.99: lambda_=0.99" \
      --recipe="defended: lambda_=0.5 output_block=32 adversary_weight=1 cosine_decay=true" \
      --suite_pretrained=label=runs/cifar10_target/target.keras --workdir=runs/frontier_cifar2_10
"""

from absl import flags

from cli import attack_flags, flags_lib, runner, training_flags

_build_data = flags_lib.define_data_flags()
_training = training_flags.define_training_flags(epochs=10, batch_size=64, learning_rate=1e-3)
_build_config = training_flags.define_converter_flags()
_build_suite = attack_flags.define_suite_flags()
_criteria = attack_flags.define_security_flags(max_ssim=0.2, max_label_gap_points=5.0)
_MAX_DROP = flags.DEFINE_float(
    "max_drop_points", 3.0, "Usability: the target may lose at most this many points on converted images."
)
_LAMBDA = flags.DEFINE_float("lambda_", 0.9, "lambda of L_dap for recipes that do not set their own, in [0, 1].")
_RECIPES = flags.DEFINE_multi_string(
    "recipe",
    [],
    "A converter recipe, 'name: field=value ...' (see the module help); repeat the flag for each point.",
)
_TITLE = flags.DEFINE_string("title", "", "The plot's and table's title (default: the task's description).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for frontier.json, frontier.md, frontier.png and one folder per recipe.", required=True
)

for module in (flags_lib, training_flags, attack_flags):
    flags.adopt_module_key_flags(module)


def main():
    from dapter_tf import DapterError, attacks, data
    from dapter_tf.analysis import protection

    recipes = [protection.parse_recipe(text) for text in _RECIPES.value]
    base = _build_config(_build_data(), _training(), lambda_=_LAMBDA.value)
    if base.strategy == "multi_worker":
        raise DapterError(
            "--strategy=multi_worker trains converters only: the frontier's attack suites train attackers "
            "on one machine (use --strategy=mirrored)"
        )
    protection.check_recipes(recipes, base)
    criteria = attacks.SecurityCriteria(max_drop_points=_MAX_DROP.value, **_criteria()).validate()
    suite = _build_suite(base.seed, criteria)
    task, train_set, test_set = data.load_data(base.data, seed=base.seed)
    frontier = protection.run_frontier(base, recipes, suite, task, train_set, test_set, _WORKDIR.value, _TITLE.value)
    print(protection.frontier_table(frontier))


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

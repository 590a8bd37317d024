r"""The lambda study of Fig. 8: trains one converter per lambda against a frozen target.

Writes WORKDIR/sweep.json (one point per lambda: accuracy, drop, entropy, ratio, bandwidth),
WORKDIR/summary.txt (the same as a table, and where the drop passes --max_drop_points),
WORKDIR/sweep.png (accuracy and entropy against lambda) and WORKDIR/frontier.png (accuracy drop
against entropy ratio). Every point trains in WORKDIR/lambda_<value>/; a rerun skips finished
points and resumes the one it was killed in.

Example (CIFAR-10, ResNet18 target):
  python -m experiments.lambda_sweep --source=npz --train_npz=../shared/data/cifar10/train_20k.npz \
      --test_npz=../shared/data/cifar10/test.npz --target=runs/cifar10_resnet18/target.keras \
      --epochs=3 --workdir=runs/sweep_cifar10_resnet18
"""

import os

from absl import flags

from cli import flags_lib, runner, training_flags

_build_data = flags_lib.define_data_flags()
_training = training_flags.define_training_flags(epochs=3, batch_size=64, learning_rate=1e-3)
_build_config = training_flags.define_converter_flags()
_LAMBDAS = flags.DEFINE_list(
    "lambdas",
    "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1.0",
    "The lambda grid, each in [0, 1]; Fig. 8 spans 0 to 1.",
)
_MAX_DROP = flags.DEFINE_float(
    "max_drop_points", 3.0, "The accuracy drop (points) the report calls too much: the paper's 3."
)
_TITLE = flags.DEFINE_string("title", "", "Title of the plots (default: the task and target).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for sweep.json, sweep.png, frontier.png and one lambda_<value>/ per point.", required=True
)

for module in (flags_lib, training_flags):
    flags.adopt_module_key_flags(module)


def main():
    from dapter_tf import DapterError, cluster, data
    from dapter_tf.analysis import lambda_plots, lambda_study

    try:
        values = [float(v) for v in _LAMBDAS.value]
    except ValueError:
        raise DapterError(f"--lambdas must be numbers, got {','.join(_LAMBDAS.value)}") from None
    lambdas = lambda_study.check_lambdas(values)
    config = _build_config(_build_data(), _training(), lambda_=lambdas[0])
    training_flags.join_cluster(config.strategy)
    task, train_set, test_set = data.load_training_data(config.data, seed=config.seed)
    workdir = _WORKDIR.value
    sweep = lambda_study.run_sweep(config, lambdas, task, train_set, test_set, workdir)
    if not cluster.is_chief():
        return  # The chief writes the plots.
    title = _TITLE.value or f"{task.description}\ntarget {os.path.basename(os.path.dirname(config.target_path))}"
    lambda_plots.plot_sweep(sweep, os.path.join(workdir, "sweep.png"), title, _MAX_DROP.value)
    corner = lambda_study.TunerConfig(max_drop_points=_MAX_DROP.value)  # The paper's targets, drawn as a corner.
    lambda_plots.plot_frontier({"sweep": sweep["points"]}, os.path.join(workdir, "frontier.png"), title, corner)
    lines = [title.replace("\n", ", "), lambda_study.summarize_sweep(sweep["points"])]
    for what, value in (
        ("first lambda whose accuracy drop exceeds", lambda_study.first_lambda_over(sweep["points"], _MAX_DROP.value)),
        ("lambda from which the drop stays above", lambda_study.lambda_staying_over(sweep["points"], _MAX_DROP.value)),
    ):
        lines.append(f"{what} {_MAX_DROP.value:g} points: " + (f"{value:.3f}" if value is not None else "none"))
    flags_lib.write_summary(workdir, lines)
    print(f"wrote {os.path.join(workdir, 'sweep.json')}, summary.txt, sweep.png and frontier.png")


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

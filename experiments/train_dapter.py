r"""Trains a DAPter converter on L_dap (Eq. 1) against a frozen target, then measures and reports it.

Example:
  dapter-train-dapter --source=npz --train_npz=../shared/data/cifar10/train_20k.npz \
      --test_npz=../shared/data/cifar10/test.npz --target=runs/cifar10_resnet18/target.keras \
      --lambda_=0.9 --epochs=10 --workdir=runs/cifar10_resnet18_dapter
"""

from absl import flags

from cli import flags_lib, runner, target_flags, training_flags

_build_data = flags_lib.define_data_flags()
_training = training_flags.define_training_flags(epochs=5, batch_size=64, learning_rate=1e-3)
_build_config = training_flags.define_converter_flags()
_LAMBDA = flags.DEFINE_float(
    "lambda_",
    0.9,
    "lambda of L_dap = lambda * L_eta + (1 - lambda) * L_acc, in [0, 1]. Larger removes "
    "more entropy at some cost in target accuracy; 0.9 is the paper's default (§7.1).",
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Folder for config.json, checkpoints/, tb/, converter.keras, results.json and "
    "the report (report.md, report.json, grid.png).",
    required=True,
)

# The shared flags are this binary's own to its users: list them in --helpshort too.
for module in (flags_lib, training_flags, target_flags):
    flags.adopt_module_key_flags(module)


def main():
    from dapter_tf import cluster, data, evaluate, models, train
    from dapter_tf.analysis import report

    config = _build_config(_build_data(), _training(), lambda_=_LAMBDA.value)
    training_flags.join_cluster(config.strategy)
    task, train_set, test_set = data.load_training_data(config.data, seed=config.seed)
    results = train.train_dapter(config, task, train_set, test_set, _WORKDIR.value)
    if not cluster.is_chief():
        return  # The chief writes the report.
    converter = models.load_converter(_WORKDIR.value)
    converted = evaluate.convert_images(converter, test_set.images[: report.GRID_IMAGES])
    labels = test_set.labels[task.target_label][: report.GRID_IMAGES]
    report.write_report(
        _WORKDIR.value, config, results, test_set.images[: report.GRID_IMAGES], converted, task=task, labels=labels
    )
    print(report.one_line_summary(results))


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

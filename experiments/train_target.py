r"""Trains a target (DLIS) model: the provider's classifier that DAPter's converter is later fitted to.

Examples:
  dapter-train-target --dataset=celeba --source=folder --data_dir=../shared/data/celeba \
      --target_label=Male --image_size=32 --model=resnet18 --width=16 --epochs=12 \
      --workdir=runs/celeba_male_resnet18
  dapter-train-target --source=npz --train_npz=../shared/data/cifar10/train_20k.npz \
      --test_npz=../shared/data/cifar10/test.npz --model=resnet18 --width=32 --epochs=15 \
      --workdir=runs/cifar10_resnet18
"""

from absl import flags

from cli import flags_lib, runner, training_flags

_build_data = flags_lib.define_data_flags()
_training = training_flags.define_training_flags(epochs=10, batch_size=128, learning_rate=1e-3)
_MODEL = flags.DEFINE_string(
    "model",
    "resnet18",
    "Target architecture (Table 2): lenet, vgg11, vgg16, resnet18, resnet50 (CIFAR forms, for 32x32 "
    "images) or vgg11_imagenet, vgg16_imagenet, resnet18_imagenet, resnet50_imagenet (224x224 forms).",
)
_WIDTH = flags.DEFINE_integer(
    "width",
    None,
    "Width of the target: first-stage filters of VGG and ResNet (64 in the paper; 16 or 32 train on a "
    "CPU), first-convolution filters of LeNet (6). Unset: the architecture's default.",
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for config.json, checkpoints/, tb/, target.keras and results.json.", required=True
)

# The shared flags are this binary's own to its users: list them in --helpshort too.
for module in (flags_lib, training_flags):
    flags.adopt_module_key_flags(module)


def main():
    from dapter_tf import cluster, data, train
    from dapter_tf.records import runs

    config = train.TargetConfig(data=_build_data(), model=_MODEL.value, width=_WIDTH.value, **_training())
    training_flags.join_cluster(config.strategy)
    task, train_set, test_set = data.load_training_data(config.data, seed=config.seed)
    results = train.train_target(config, task, train_set, test_set, _WORKDIR.value)
    if not cluster.is_chief():
        return
    print(
        f"target {config.model}: test accuracy {results['test_accuracy']:.4f}; "
        f"saved {_WORKDIR.value}/{runs.TARGET_FILE}"
    )


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

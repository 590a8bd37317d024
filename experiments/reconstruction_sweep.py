r"""Fig. 9(b): the reconstruction attack (§5.3) on every converter of a lambda sweep, SSIM against lambda.

Reads a dapter-lambda-sweep workdir (--sweep_dir: sweep.json and lambda_<value>/converter.keras) and
trains one reconstructor per point on the converter's own training images (the data flags must name
the images the sweep trained on). Writes WORKDIR/ssim_sweep.json, WORKDIR/summary.txt and
WORKDIR/ssim_lambda.png, and one lambda_<value>/ per point (results.json, grid.png); a rerun skips
finished points. --also draws other sweeps' ssim_sweep.json on the same plot.

Example (CIFAR-10, ResNet18 target):
  dapter-reconstruction-sweep --source=npz --train_npz=../shared/data/cifar10/train_20k.npz \
      --test_npz=../shared/data/cifar10/test.npz --max_train=8000 \
      --sweep_dir=runs/sweep_cifar10_resnet18 --workdir=runs/ssim_cifar10_resnet18
"""

import os

from absl import flags

from cli import attack_flags, flags_lib, runner

_build_data = flags_lib.define_data_flags()
_build_reconstruction = attack_flags.define_reconstruction_flags()
_SWEEP_DIR = flags.DEFINE_string(
    "sweep_dir", None, "A dapter-lambda-sweep workdir: sweep.json and lambda_<value>/converter.keras.", required=True
)
_NAME = flags.DEFINE_string("name", "", "This sweep's name in the plot's legend (default: the sweep folder's name).")
_ALSO = flags.DEFINE_list(
    "also", [], "name=path items: other ssim_sweep.json files to draw on the same plot (other tasks or targets)."
)
_TITLE = flags.DEFINE_string("title", "Reconstruction attack against lambda (Fig. 9(b))", "The plot's title.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seeds data order and weights; use the sweep's seed to get its training images."
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Folder for ssim_sweep.json, summary.txt, ssim_lambda.png and one lambda_<value>/ per point.",
    required=True,
)

for module in (flags_lib, attack_flags):
    flags.adopt_module_key_flags(module)


def main():
    import json

    from dapter_tf import DapterError, attacks, data
    from dapter_tf.attacks import plotting, reconstruction

    spec = _build_reconstruction(_SEED.value)
    others = {}
    for name, path in flags_lib.parse_pairs(_ALSO.value, "--also").items():
        try:
            with open(path) as f:
                others[name] = json.load(f)["points"]
        except (OSError, ValueError, KeyError) as e:
            raise DapterError(f"--also {name}={path}: not an ssim_sweep.json ({type(e).__name__}: {e})") from None
    config = _build_data()
    task, train_set, test_set = data.load_data(config, seed=_SEED.value)
    spec.validate(task)
    sweep_dir = _SWEEP_DIR.value
    # The converter path is filled in per point; validate() runs then.
    input_data = attacks.AttackInputData(task, train_set, test_set, converter_path="", data=config)
    points = reconstruction.reconstruction_sweep(sweep_dir, input_data, spec, _WORKDIR.value)
    name = _NAME.value or os.path.basename(os.path.normpath(sweep_dir))
    plot = os.path.join(_WORKDIR.value, "ssim_lambda.png")
    plotting.plot_ssim_against_lambda({name: points, **others}, plot, _TITLE.value)
    lines = [
        f"{task.description}; converters of {sweep_dir}",
        "lambda    SSIM    PSNR  SSIM(converted)  entropy ratio  drop",
    ]
    for p in points:
        lines.append(
            f"{p['lambda']:6.3f}  {p['ssim']:6.4f}  {p['psnr']:6.2f}  {p['ssim_converted']:15.4f}  "
            f"{p['entropy_ratio']:13.3f}  {p['accuracy_drop_points']:+5.2f}"
        )
    if points and points[0].get("ssim_mean_image") is not None:
        lines.append(
            f"SSIM of the mean training image against the originals (no information): "
            f"{points[0]['ssim_mean_image']:.4f}"
        )
    flags_lib.write_summary(_WORKDIR.value, lines)
    print(f"wrote {os.path.join(_WORKDIR.value, 'ssim_sweep.json')}, summary.txt and ssim_lambda.png")


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

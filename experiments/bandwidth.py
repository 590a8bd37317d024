r"""Bandwidth (§7.4): bytes of converted images against the originals, PNG and JPEG, per dataset and side.

Converts the held-out images (--max_test caps them) at each --sizes side: 0 is the data flags' own
side (the one the converter was trained at); another side reloads the images at that side from the
source files (CelebA and LFW photos are larger than 64x64; CIFAR-10 is enlarged from 32x32) and runs
the same, fully convolutional converter on them, as a phone sending 224x224 inputs would (§7.4's
latency is measured at 224x224). Each image is encoded on its own: PNG at zlib level 9 and JPEG at
--jpeg_quality.

Writes WORKDIR/bandwidth_<name>.json, then redraws WORKDIR/summary.txt (the table of every dataset
measured into WORKDIR) and WORKDIR/bandwidth.png (the per-image savings' distributions). Run it once
per dataset with the same --workdir to build the table.

Example (CIFAR-10 at the tuner's operating point):
  dapter-bandwidth --source=npz --train_npz=../shared/data/cifar10/train_20k.npz \
      --test_npz=../shared/data/cifar10/test.npz --converter=runs/tune_cifar10_resnet18/round_00 \
      --name=CIFAR-10 --max_test=2000 --workdir=runs/bandwidth
"""

import dataclasses

from absl import flags

from cli import flags_lib, runner

_build_data = flags_lib.define_data_flags()
_CONVERTER = flags.DEFINE_string(
    "converter", None, "The converter's .keras file (or its dapter-train-dapter workdir).", required=True
)
_NAME = flags.DEFINE_string(
    "name", "", "This dataset's name in the table and plot (default: --dataset); also names its JSON file."
)
_SIZES = flags.DEFINE_list(
    "sizes",
    ["0", "224"],
    "Square image sides to measure at, multiples of 4; 0 is the data flags' own side (--image_size or the task's).",
)
_JPEG_QUALITY = flags.DEFINE_integer(
    "jpeg_quality", 75, "JPEG quality for originals and converted images alike, 1..95 (75: libjpeg's default)."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds which held-out images --max_test keeps.")
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Folder for bandwidth_<name>.json, summary.txt and bandwidth.png (shared by all datasets).",
    required=True,
)

flags.adopt_module_key_flags(flags_lib)


def main():
    import os

    from dapter_tf import DapterError, data, metrics, models
    from dapter_tf.analysis import bandwidth
    from dapter_tf.records import runs

    metrics.check_jpeg_quality(_JPEG_QUALITY.value)
    sizes = flags_lib.parse_ints(_SIZES.value, "--sizes")
    if not sizes or any(s < 0 for s in sizes) or len(set(sizes)) != len(sizes):
        raise DapterError(f"--sizes takes distinct sides >= 0, got {','.join(_SIZES.value) or 'none'}")
    config = _build_data()
    # Every side is checked (a bad one fails here) before the converter loads or anything is written.
    configs = [dataclasses.replace(config, image_size=s) if s else config for s in sizes]
    converter = models.load_converter(_CONVERTER.value)
    name = _NAME.value or config.dataset
    measured = []
    for i, sized in enumerate(configs):
        task, test_set = data.load_test_data(sized, seed=_SEED.value)
        side = test_set.images.shape[1]
        print(f"== {name} at {side}x{side} ({i + 1}/{len(configs)}): {len(test_set)} held-out images", flush=True)
        measured.append(bandwidth.measure_bandwidth(converter, test_set.images, _JPEG_QUALITY.value))
    result = {
        "name": name,
        "task": task.name,
        "converter": _CONVERTER.value,
        "lambda": runs.converter_lambda(_CONVERTER.value),
        "jpeg_quality": _JPEG_QUALITY.value,
        "data": runs.config_to_dict(config),
        "sizes": measured,
    }
    path = bandwidth.save_result(_WORKDIR.value, result)
    everything = bandwidth.load_results(_WORKDIR.value)
    bandwidth.plot_savings(everything, os.path.join(_WORKDIR.value, "bandwidth.png"))
    flags_lib.write_summary(_WORKDIR.value, [bandwidth.format_table(everything)])
    print(f"wrote {path}, summary.txt and bandwidth.png")


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

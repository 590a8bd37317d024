r"""Grad-CAM analysis of converters (§7.2): attention consistency (Fig. 10) and the cross-converter table (Table 4).

--targets and --converters pair up by name; a name is a label of the task (CelebA: an attribute,
CIFAR-10: label), and its converter is the one trained against that target. Each map explains the
class C of --class_source: by default an attribute's presence, on the held-out images that have it
(a multi-class label: each image's true class). On the held-out images:

  every pair   V = ||Grad-CAM(M, I, C)||_1 on the originals and V_D = ||Grad-CAM(M o Converter, I, C)||_1,
               the target's accuracy on both, and how alike the two saliency maps are (Pearson
               correlation and SSIM, beside their chance level between different images); a
               Fig. 10 grid attention_<name>.png (image, saliency on M, converted, saliency on M o C).
  two or more  Table 4: the mean importance of every converter attached to every target, normalised
               by each target's own converter, each row's margin (own over the best other), and
               each target's accuracy on every converter's images.

Writes WORKDIR/gradcam.json, WORKDIR/summary.txt, attention_<name>.png and cross_converter.png.

Example (Table 4 on CelebA at 32x32, four attributes):
  dapter-gradcam --dataset=celeba --source=folder --data_dir=../shared/data/celeba --image_size=32 \
      --targets=Bangs=runs/target_Bangs/target.keras,Eyeglasses=runs/target_Eyeglasses/target.keras \
      --converters=Bangs=runs/dapter_Bangs,Eyeglasses=runs/dapter_Eyeglasses --workdir=runs/gradcam_celeba
"""

from absl import flags

from cli import flags_lib, runner

_build_data = flags_lib.define_data_flags()
_TARGETS = flags.DEFINE_list(
    "targets",
    None,
    "name=path items: each target's .keras file, named by the task label it serves (e.g. Bangs=runs/t/target.keras).",
    required=True,
)
_CONVERTERS = flags.DEFINE_list(
    "converters",
    None,
    "name=path items, the same names as --targets: the converter (.keras file or dapter-train-dapter workdir) "
    "trained against that target.",
    required=True,
)
_LAYER = flags.DEFINE_string(
    "layer",
    "",
    "The layer Grad-CAM explains in every target; empty: each target's last convolution's feature maps "
    "(after its batch norm, residual add and ReLU).",
)
_CLASS_SOURCE = flags.DEFINE_enum(
    "class_source",
    "auto",
    ["auto", "positive", "label", "predicted"],
    "The class C each map explains. positive: a two-class label's class 1 (the attribute is present), on the "
    "held-out images that have it, §7.2's 'inference task C'; label: each image's true label; predicted: what the "
    "target predicts on the image it is given; auto: positive for two-class labels, label otherwise.",
)
_GRID_IMAGES = flags.DEFINE_integer("grid_images", 8, "Images in each Fig. 10 grid (0: no grid).")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the order of the held-out images (the grid shows the first ones).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for gradcam.json, summary.txt and the grids and table plot.", required=True
)

flags.adopt_module_key_flags(flags_lib)


def load_pairs(task):
    """The named targets, converters and their paths, checked against the task before anything is measured."""
    from dapter_tf import DapterError, models

    target_paths = flags_lib.parse_pairs(_TARGETS.value, "--targets")
    converter_paths = flags_lib.parse_pairs(_CONVERTERS.value, "--converters")
    if set(target_paths) != set(converter_paths):
        raise DapterError(
            f"--targets ({', '.join(target_paths)}) and --converters ({', '.join(converter_paths)}) "
            "must name the same labels"
        )
    unknown = [name for name in target_paths if name not in task.label_classes]
    if unknown:
        raise DapterError(
            f"task {task.name!r} has no label {', '.join(unknown)}; its labels are: {', '.join(task.label_classes)}"
        )
    targets, converters = {}, {}
    for name, path in target_paths.items():
        target = models.load_target(path)
        outputs, classes = target.outputs[0].shape[-1], task.label_classes[name]
        if outputs != classes:
            raise DapterError(f"{path}: has {outputs} outputs but label {name!r} has {classes} classes")
        targets[name] = target
        converters[name] = models.load_converter(converter_paths[name])
    return targets, converters, target_paths, converter_paths


def main():
    import os

    from dapter_tf import DapterError, data
    from dapter_tf.analysis import saliency, table4
    from dapter_tf.records import files, runs

    if _GRID_IMAGES.value < 0:
        raise DapterError(f"--grid_images must be >= 0, got {_GRID_IMAGES.value}")
    config = _build_data()
    task, _, test_set = data.load_data(config, seed=_SEED.value)
    targets, converters, target_paths, converter_paths = load_pairs(task)
    layer = _LAYER.value or None
    workdir = _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    images = test_set.images
    pairs, lines = {}, []
    for i, name in enumerate(targets):
        print(f"== {name} ({i + 1}/{len(targets)}): Grad-CAM on {len(images)} held-out images", flush=True)
        labels = test_set.labels[name]
        measures, arrays = saliency.analyse_pair(
            targets[name], converters[name], images, labels, _CLASS_SOURCE.value, layer
        )
        measures["layer"] = layer or saliency.default_layer(targets[name])
        measures["lambda"] = runs.converter_lambda(converter_paths[name])
        pairs[name] = measures
        if _GRID_IMAGES.value:
            n = _GRID_IMAGES.value
            saliency.save_attention_grid(
                os.path.join(workdir, f"attention_{name}.png"),
                arrays["images"][:n],
                arrays["before"][:n],
                arrays["converted"][:n],
                arrays["after"][:n],
            )
        lines.append(
            f"{name} (C: {measures['class_source']}, {measures['images_explained']} images): "
            f"V {measures['importance_original']:.4g} -> V_D {measures['importance_converted']:.4g} "
            f"(x{measures['importance_ratio']:.3f}); accuracy {measures['accuracy_original']:.4f} -> "
            f"{measures['accuracy_converted']:.4f}; maps before/after: correlation "
            f"{measures['correlation_mean']:.3f} (chance {measures['chance_correlation_mean']:.3f}), "
            f"SSIM {measures['ssim_mean']:.3f} (chance {measures['chance_ssim_mean']:.3f})"
        )
    table = None
    if len(targets) > 1:
        print(f"== Table 4: {len(targets)} targets x {len(converters)} converters", flush=True)
        table = table4.cross_converter_table(targets, converters, images, test_set.labels, _CLASS_SOURCE.value, layer)
        table4.plot_cross_converter(
            table,
            os.path.join(workdir, "cross_converter.png"),
            f"Table 4: importance of each converter for each target ({task.name}, {len(images)} images)",
        )
        lines += [
            "",
            f"Table 4 ({task.name}, {len(images)} held-out images, class C = {_CLASS_SOURCE.value}): mean importance "
            "normalised by each target's own converter",
            "",
            table4.format_cross_converter_table(table),
            "",
            f"own converter over the best other: smallest margin {min(table['margins']):.2f}x (the paper: 2.24x)",
        ]
    files.write_json(
        os.path.join(workdir, "gradcam.json"),
        {
            "task": task.name,
            "data": runs.config_to_dict(config),
            "class_source": _CLASS_SOURCE.value,
            "images": int(len(images)),
            "targets": target_paths,
            "converters": converter_paths,
            "pairs": pairs,
            "cross_converter": table,
        },
    )
    flags_lib.write_summary(workdir, lines)


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

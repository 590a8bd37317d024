"""Flags shared by the binaries, and the wrapper that turns bad input into one error line.

The library takes explicit config objects; only binaries define flags (see STYLE.md).
"""

import os
import sys
import tempfile

from absl import app, flags, logging

from dapter_tf import DapterError


def define_data_flags():
    """Defines the flags that say where images come from; returns a function building a DataConfig."""
    dataset = flags.DEFINE_string(
        "dataset",
        "cifar10",
        "Task (dataset, target label, attack labels) to train for: cifar10; cifar2_10 (vehicle/animal "
        "-> 10 classes, the offline stand-in for Cifar20:100); cifar20_100 (tfds cifar100); celeba "
        "(target: --target_label, default Male); lfw (gender -> identity); imagenet10; imagenet8_32.",
    )
    source = flags.DEFINE_string(
        "source",
        "embedded",
        "Where the images come from: embedded, npz, folder or tfds. 'embedded' is the CIFAR-10 sample "
        "packaged with dapter_tf (3,500 training and 500 test images); 'npz' reads --train_npz and "
        "--test_npz; 'folder' reads a dataset's on-disk layout in --data_dir (CelebA, LFW, ImageNet; "
        "official layouts and those of ../shared/data); 'tfds' reads tensorflow-datasets from --tfds_data_dir.",
    )
    data_dir = flags.DEFINE_string(
        "data_dir",
        None,
        "With --source=folder: the dataset's folder, e.g. ../shared/data/celeba, ../shared/data/lfw/rgb150, "
        "a folder with img_align_celeba/ + list_attr_celeba.txt, or an ImageNet folder with train/ and val/.",
    )
    target_label = flags.DEFINE_string(
        "target_label",
        None,
        "The label the target serves instead of the task's default; every other label becomes an "
        "attack label. CelebA: any of its 40 attributes, e.g. Male, Smiling, Eyeglasses.",
    )
    image_size = flags.DEFINE_integer(
        "image_size",
        0,
        "Square image side (a multiple of 4) to crop and resize every image to; 0: the task's own "
        "(32 for CIFAR, 64 for CelebA and LFW, 224 for ImageNet).",
    )
    tfds_manual_dir = flags.DEFINE_string(
        "tfds_manual_dir", None, "With --source=tfds --download: where tfds finds archives it cannot download itself."
    )
    train_npz = flags.DEFINE_string(
        "train_npz", None, "With --source=npz: .npz with 'x' (uint8 N x H x W x 3) and 'y' (labels) to train on."
    )
    test_npz = flags.DEFINE_string("test_npz", None, "With --source=npz: .npz of held-out images to measure on.")
    tfds_data_dir = flags.DEFINE_string(
        "tfds_data_dir", None, "With --source=tfds: tfds's data directory (tfds's default if unset)."
    )
    download = flags.DEFINE_bool(
        "download",
        False,
        "With --source=tfds: let tfds download the dataset (needs network). Off, a "
        "dataset that is not prepared fails at once.",
    )
    max_train = flags.DEFINE_integer(
        "max_train", 0, "Use at most this many training images, after a seeded shuffle (0: all)."
    )
    max_test = flags.DEFINE_integer(
        "max_test", 0, "Use at most this many test images, after a seeded shuffle (0: all)."
    )

    def build():
        from dapter_tf.data import DataConfig  # Imports TensorFlow: only once flags are parsed.

        return DataConfig(
            dataset=dataset.value,
            source=source.value,
            train_npz=train_npz.value,
            test_npz=test_npz.value,
            data_dir=data_dir.value,
            tfds_data_dir=tfds_data_dir.value,
            tfds_manual_dir=tfds_manual_dir.value,
            download=download.value,
            target_label=target_label.value,
            image_size=image_size.value,
            max_train=max_train.value,
            max_test=max_test.value,
        )

    return build


def define_training_flags(*, epochs: int, batch_size: int, learning_rate: float):
    """Defines the flags every training binary has; returns a function giving their values as a dict."""
    holders = {
        "epochs": flags.DEFINE_integer("epochs", epochs, "Passes over the training images (>= 1)."),
        "batch_size": flags.DEFINE_integer(
            "batch_size",
            batch_size,
            "Global batch size; under --strategy=mirrored it is split evenly "
            "across replicas, so it must be a multiple of their number.",
        ),
        "learning_rate": flags.DEFINE_float(
            "learning_rate",
            learning_rate,
            "Adam's learning rate (> 0). Target training decays it to 0 over the run (cosine); converter "
            "training keeps it constant unless --cosine_decay.",
        ),
        "seed": flags.DEFINE_integer("seed", 0, "Seeds weight initialisation, data order and shuffling."),
        "strategy": flags.DEFINE_string(
            "strategy",
            "default",
            "tf.distribute strategy: 'default' (one device) or 'mirrored' "
            "(synchronous data parallelism over all local GPUs, or all logical CPUs without GPUs).",
        ),
        "augment": flags.DEFINE_bool("augment", True, "Random flips and 4-pixel shifts of training images."),
        "checkpoint_every_steps": flags.DEFINE_integer(
            "checkpoint_every_steps",
            200,
            "Save a checkpoint this often, and at every epoch's end; "
            "a rerun with the same --workdir resumes from the last one.",
        ),
    }
    return lambda: {k: v.value for k, v in holders.items()}


def define_converter_flags():
    """Defines the flags of converter training against a target; returns a function building a DapterConfig.

    The returned function takes the data and training values (``define_data_flags`` and
    ``define_training_flags``) and keyword overrides.
    """
    target = flags.DEFINE_string(
        "target", None, "The trained target's .keras file (from dapter-train-target); it stays frozen.", required=True
    )
    filters = flags.DEFINE_list("filters", "24,48,96", "The converter's channels at full, half and quarter resolution.")
    eval_images = flags.DEFINE_integer(
        "eval_images", 1000, "Test images measured after every epoch (TensorBoard); the final report uses all."
    )
    output_step = flags.DEFINE_integer(
        "output_step",
        16,  # dapter_tf.model.DEFAULT_OUTPUT_STEP; importing it here would import TensorFlow.
        "The converter sends pixels on the grid 128 + k * step (levels of 255), trained with a "
        "straight-through gradient (README, 'Training recipe'): pixels within step/2 of 128 are sent as 128. "
        "1 is the paper's plain sigmoid output. In 1..128.",
    )
    cosine_decay = flags.DEFINE_bool(
        "cosine_decay", False, "Decay the converter's learning rate to 0 over the run (cosine); off: constant."
    )
    init_converter = flags.DEFINE_string(
        "init_converter", "", "Start from this trained converter (.keras file or workdir) instead of random weights."
    )

    def build(data, training: dict, **overrides):
        from dapter_tf import train  # Imports TensorFlow: only once flags are parsed.

        channels = parse_ints(filters.value, "--filters")
        values = dict(
            data=data,
            target_path=target.value,
            filters=channels,
            eval_images=eval_images.value,
            output_step=output_step.value,
            cosine_decay=cosine_decay.value,
            init_converter=init_converter.value,
            **training,
        )
        values.update(overrides)
        return train.DapterConfig(**values)

    return build


def define_reconstruction_flags():
    """Defines the reconstruction attack's flags (§5.3); returns a function building a ReconstructionSpec."""
    epochs = flags.DEFINE_integer(
        "recon_epochs", 10, "Reconstruction attack: epochs over the (converted, original) pairs."
    )
    filters = flags.DEFINE_list(
        "recon_filters",
        [],
        "Reconstruction attack: the generator's channels at full, half and quarter resolution; "
        "empty: the converter's own (the generator mirrors it, §5.3).",
    )
    train_images = flags.DEFINE_integer(
        "recon_train_images",
        0,
        "Reconstruction attack: training pairs to use, from the converter's own training "
        "images, the paper's strongest setting (0: all).",
    )
    batch_size = flags.DEFINE_integer("recon_batch_size", 64, "Reconstruction attack: batch size.")
    learning_rate = flags.DEFINE_float(
        "recon_learning_rate", 1e-3, "Reconstruction attack: Adam's initial learning rate (cosine decay to 0)."
    )
    grid_images = flags.DEFINE_integer(
        "recon_grid_images",
        16,
        "Reconstruction attack: held-out images in grid.png (original, converted, reconstructed).",
    )

    def build(seed: int):
        from dapter_tf import attacks  # Imports TensorFlow: only once flags are parsed.

        return attacks.ReconstructionSpec(
            filters=parse_ints(filters.value, "--recon_filters"),
            epochs=epochs.value,
            batch_size=batch_size.value,
            learning_rate=learning_rate.value,
            train_images=train_images.value,
            grid_images=grid_images.value,
            seed=seed,
        )

    return build


def write_summary(workdir: str, lines) -> None:
    """Writes ``lines`` to ``workdir/summary.txt`` and prints them."""
    text = "\n".join(lines)
    with open(os.path.join(workdir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)


def parse_ints(values, flag: str) -> tuple:
    """A list flag's values as integers; DapterError naming ``flag`` otherwise."""
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise DapterError(f"{flag} must be integers, got {','.join(values)}") from None


def parse_pairs(values, flag: str) -> dict:
    """A list flag of ``name=value`` items as a dict; DapterError naming ``flag`` otherwise."""
    pairs = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise DapterError(f"{flag} takes name=value items, got {item!r}")
        pairs[name] = value
    return pairs


def _import_tensorflow_quietly():
    """Imports TensorFlow with its native start-up lines (oneDNN, absl::InitializeLog) kept off stderr.

    TF 2.21 prints them whatever TF_CPP_MIN_LOG_LEVEL says, and they would bury the one-line
    errors of our binaries. What the import prints is replayed if the import fails.
    """
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf


def _describe_console_script(module_name: str) -> None:
    """Lets --help describe a binary started as a console script (``dapter-...``), as under ``python -m``.

    absl prints the ``__main__`` module's docstring and the key flags of the module named
    ``sys.argv[0]``; a console script's ``__main__`` is pip's stub, which has neither.
    """
    if module_name == "__main__":
        return
    sys.modules["__main__"].__doc__ = sys.modules[module_name].__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run(main, tensorflow: bool = True):
    """Runs ``main`` under absl; a DapterError becomes one ``error: ...`` line and exit status 1.

    Args:
        main: The binary's main, called without arguments once flags are parsed.
        tensorflow: Import TensorFlow first, quietly, and tame its logging. False for binaries
            that never use it (the adb driver), which then start in a fraction of a second.
    """
    _describe_console_script(main.__module__)

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        if not flags.FLAGS["verbosity"].present:
            # TensorFlow logs INFO lines at every checkpoint and export; a user needs warnings and
            # errors (--verbosity=0 brings the INFO lines back).
            logging.set_verbosity(logging.WARNING)
        if tensorflow:
            tf = _import_tensorflow_quietly()
            tf.get_logger().setLevel(logging.get_absl_logger().level)
            # Runs that measure many models (one per attack label, one per lambda) make Keras trace a
            # predict function for each; TensorFlow calls that "retracing" and warns, needlessly here.
            tf.get_logger().addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())
        try:
            main()
        except DapterError as e:
            sys.stderr.write(f"error: {e}\n")
            sys.exit(1)

    app.run(guarded)

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
    build_adversary = define_defence_flags()
    acc_labels = flags.DEFINE_enum(
        "acc_labels",
        "true",
        ["true", "target"],
        "What L_acc compares the target's answer on converted images with: true, the label (Eq. 4), or "
        "target, the target's own softmax on the original image (distillation, beyond the paper: it helps a "
        "converter that must compute the answer itself, as under --output_block).",
    )
    output_block = flags.DEFINE_integer(
        "output_block",
        1,
        "Defence beyond the paper, the coarse output code: the converter sends one colour per "
        "block of this many x this many pixels (a power of two; image sides must be multiples of it), "
        "so its output cannot hold more of the photo than (H/b) x (W/b) colours. 1: the paper's converter.",
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
            output_block=output_block.value,
            adversary=build_adversary(),
            acc_labels=acc_labels.value,
            **training,
        )
        values.update(overrides)
        return train.DapterConfig(**values)

    return build


def define_defence_flags():
    """Defines the adversarial defence's flags (README, "Defences"); returns a function building its config."""
    weight = flags.DEFINE_float(
        "adversary_weight",
        0.0,
        "Defence beyond the paper, adversarial reconstruction: the weight mu of L_adv in "
        "L_dap + mu * L_adv, where L_adv is the strongest online decoder's gain over the mean training "
        "image (0 to 1). 0: off, the paper's L_dap alone.",
    )
    decoders = flags.DEFINE_integer(
        "adversary_decoders", 2, "Adversarial defence: online decoders trained in alternation with the converter."
    )
    filters = flags.DEFINE_list(
        "adversary_filters", "32,64", "Adversarial defence: each decoder's channels at full and half resolution."
    )
    restart_every = flags.DEFINE_integer(
        "adversary_restart_every",
        500,
        "Adversarial defence: re-initialise each decoder every this many steps, staggered across "
        "decoders, so the converter cannot overfit one decoder (0: never).",
    )
    learning_rate = flags.DEFINE_float(
        "adversary_learning_rate", 1e-3, "Adversarial defence: the decoders' Adam learning rate."
    )
    steps = flags.DEFINE_integer("adversary_steps", 1, "Adversarial defence: decoder updates per converter step.")

    def build():
        from dapter_tf.defences.adversarial import AdversaryConfig

        return AdversaryConfig(
            weight=weight.value,
            decoders=decoders.value,
            filters=parse_ints(filters.value, "--adversary_filters"),
            restart_every=restart_every.value,
            learning_rate=learning_rate.value,
            decoder_steps=steps.value,
        )

    return build


def define_suite_flags():
    """Defines the attack suite's attackers (``dapter_tf.attacks.suite``); returns a function building them.

    The returned function takes the seed and the ``SecurityCriteria`` and gives a ``SuiteSpec``.
    """
    reconstruction = flags.DEFINE_list(
        "suite_reconstruction",
        "symmetric,unet",
        "Attack suite: reconstruction attackers, any of symmetric (the paper's generator, mirroring the "
        "converter) and unet (a four-level U-Net with skip connections, about 16x its parameters).",
    )
    symmetric_epochs = flags.DEFINE_integer(
        "suite_symmetric_epochs", 10, "Attack suite: epochs of the symmetric generator."
    )
    unet_epochs = flags.DEFINE_integer("suite_unet_epochs", 20, "Attack suite: epochs of the U-Net decoder.")
    unet_filters = flags.DEFINE_list(
        "suite_unet_filters", "32,64,128,256", "Attack suite: the U-Net's channels per level (full resolution first)."
    )
    recon_images = flags.DEFINE_integer(
        "suite_recon_train_images",
        0,
        "Attack suite: (converted, original) training pairs of the reconstruction attackers, from the "
        "converter's own training images (0: all of them, the paper's strongest setting).",
    )
    labelling = flags.DEFINE_list(
        "suite_labelling",
        "finetuned,scratch",
        "Attack suite: labelling attackers, any of finetuned (§5.1: trained on originals, fine-tuned on "
        "converted images) and scratch (trained on converted images only); empty: none. They run where "
        "the task has attack labels.",
    )
    attack_labels = flags.DEFINE_list(
        "suite_attack_labels", [], "Attack suite: labels the labelling attackers read (empty: all the task's)."
    )
    pretrained = flags.DEFINE_list(
        "suite_pretrained",
        [],
        "Attack suite: label=path items: a classifier of that label trained on original images, which "
        "the finetuned attacker starts from (the others are trained here).",
    )
    pretrain_epochs = flags.DEFINE_integer(
        "suite_pretrain_epochs", 10, "Attack suite: epochs of the labelling classifiers on originals and from scratch."
    )
    finetune_epochs = flags.DEFINE_integer(
        "suite_finetune_epochs", 5, "Attack suite: epochs of fine-tuning on converted images."
    )
    attack_width = flags.DEFINE_integer("suite_attack_width", 16, "Attack suite: width of the ResNet18 labellers.")
    attack_batch = flags.DEFINE_integer("suite_attack_batch_size", 128, "Attack suite: labellers' batch size.")

    def build(seed: int, criteria):
        from dapter_tf import attacks

        unknown = [a for a in reconstruction.value if a not in ("symmetric", "unet")]
        if unknown:
            raise DapterError(f"--suite_reconstruction takes symmetric and unet, got {','.join(reconstruction.value)}")
        epochs = {"symmetric": symmetric_epochs.value, "unet": unet_epochs.value}
        recon = tuple(
            attacks.ReconstructionSpec(
                architecture=name,
                filters=parse_ints(unet_filters.value, "--suite_unet_filters") if name == "unet" else (),
                epochs=epochs[name],
                train_images=recon_images.value,
                seed=seed,
            )
            for name in reconstruction.value
        )
        spec = None
        if labelling.value:
            spec = attacks.AutoRecognitionSpec(
                attack_labels=tuple(attack_labels.value),
                width=attack_width.value,
                pretrained=parse_pairs(pretrained.value, "--suite_pretrained"),
                pretrain_epochs=pretrain_epochs.value,
                finetune_epochs=finetune_epochs.value,
                batch_size=attack_batch.value,
                seed=seed,
                attackers=tuple(labelling.value),
            )
        return attacks.SuiteSpec(reconstruction=recon, labelling=spec, criteria=criteria)

    return build


def define_security_flags(max_ssim: float | None, max_label_gap_points: float | None):
    """Defines the attack suite's criteria; returns a function giving them as keyword arguments.

    Args:
        max_ssim: Default of --max_ssim (``None``: unused unless given).
        max_label_gap_points: Default of --max_label_gap_points (``None``: unused unless given).
    """
    ssim = flags.DEFINE_float(
        "max_ssim",
        max_ssim,
        "Security, from the attack suite: the strongest reconstruction attacker's SSIM on held-out images "
        "must be at most this (the paper's bar: 0.2).",
    )
    over_mean = flags.DEFINE_float(
        "max_ssim_over_mean_image",
        None,
        "Security, from the attack suite: the strongest reconstruction attacker's SSIM may exceed the mean "
        "training image's by at most this (for aligned faces, where the mean image alone scores about 0.3); "
        "given alone, it replaces the absolute --max_ssim bar.",
    )
    gap = flags.DEFINE_float(
        "max_label_gap_points",
        max_label_gap_points,
        "Security, from the attack suite: every labelling attacker may beat an attacker who knows only the "
        "target label by at most this many points.",
    )
    return lambda: {
        # A bar relative to the mean image replaces the absolute one, unless both are asked for.
        "max_ssim": ssim.value if ssim.present or over_mean.value is None else None,
        "max_ssim_over_mean_image": over_mean.value,
        "max_label_gap_points": gap.value,
    }


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


def check_output_folder(flag: str, path: str) -> None:
    """Makes sure ``path`` is, or can become, a writable folder, before any work; one-line errors.

    Nothing is created: a run refused later (bad data) leaves no folder behind.

    Args:
        flag: The flag's name as the user typed it (``--workdir``), named in the error.
        path: The folder.

    Raises:
        DapterError: when it, or the nearest existing folder above it, is a file or not writable.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise DapterError(f"{flag} {path} is a file, not a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise DapterError(f"{flag} {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DapterError(f"{flag} {path} cannot be written ({existing} is not writable)")


def check_output_file(flag: str, path: str) -> None:
    """Makes sure the file ``path`` can be written, before any work: its folder exists and is writable.

    Raises:
        DapterError: when ``path`` is a folder, or its folder is missing or not writable.
    """
    if os.path.isdir(path):
        raise DapterError(f"{flag} {path} is a folder, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DapterError(f"{flag} {path}: its folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise DapterError(f"{flag} {path} cannot be written (permission denied)")


# Flags that name what a binary writes, checked by ``run`` before any work. --workdir is the
# binary's own output everywhere except where it names a finished run the binary reads.
OUTPUT_FOLDER_FLAGS = ("workdir", "output_dir", "report_dir")
OUTPUT_FILE_FLAGS = ("output_json", "output_csv", "output_npz")
READS_WORKDIR = {"export.export_tflite", "export.release"}


def check_output_flags(module: str) -> None:
    """``check_output_folder`` / ``check_output_file`` on every output flag the binary defines and was given."""
    values = flags.FLAGS.flag_values_dict()
    for name in OUTPUT_FOLDER_FLAGS:
        if values.get(name) and not (name == "workdir" and module in READS_WORKDIR):
            check_output_folder(f"--{name}", values[name])
    for name in OUTPUT_FILE_FLAGS:
        if values.get(name):
            check_output_file(f"--{name}", values[name])


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
            module = main.__module__
            if module == "__main__":  # Run as python -m package.module: its spec names it.
                spec = getattr(sys.modules["__main__"], "__spec__", None)
                module = spec.name if spec else module
            check_output_flags(module)
            main()
        except DapterError as e:
            sys.stderr.write(f"error: {e}\n")
            sys.exit(1)
        except OSError as e:
            # A file-system fault a binary did not check for up front (a disk that filled, a folder
            # removed mid-run): still one line, naming the file, rather than a traceback.
            where = f": {e.filename}" if e.filename else ""
            sys.stderr.write(f"error: {e.strerror or e}{where}\n")
            sys.exit(1)

    app.run(guarded)

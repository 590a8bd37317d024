"""Flags of the binaries that attack a converter: the attack suite, its security criteria and the reconstructor."""

import os

from absl import flags

from cli.flags_lib import parse_ints, parse_pairs
from dapter_tf import DapterError


def define_suite_flags():
    """Defines the attack suite's attackers (``dapter_tf.attacks.suite``); returns a function building them.

    The returned function takes the seed and the ``SecurityCriteria`` and gives a ``SuiteSpec``.
    """
    reconstruction = flags.DEFINE_list(
        "suite_reconstruction",
        "symmetric,unet,lookup",
        "Attack suite: reconstruction attackers, any of symmetric (the paper's generator, mirroring the "
        "converter), unet (a four-level U-Net with skip connections, about 16x its parameters) and lookup "
        "(no network: the mean original of each converted training image, or of the nearest one; the "
        "strongest attacker of a converter that sends few distinct images).",
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

        unknown = [a for a in reconstruction.value if a not in ("symmetric", "unet", "lookup")]
        if unknown:
            raise DapterError(
                f"--suite_reconstruction takes symmetric, unet and lookup, got {','.join(reconstruction.value)}"
            )
        # The lookup trains nothing; its spec keeps the default epochs, which it does not use.
        epochs = {"symmetric": symmetric_epochs.value, "unet": unet_epochs.value, "lookup": 10}
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
        from dapter_tf import attacks

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


def load_attack_input(data_config, converter: str, target: str, seed: int, contract=None):
    """What every attack starts from (``attacks.AttackInputData``): the run's images, the converter and target.

    Args:
        data_config: The attacked run's ``DataConfig``.
        converter: A converter's ``.keras`` file, or the train_dapter workdir holding it.
        target: The target's ``.keras`` file or SavedModel directory (empty: none).
        seed: Seeds the images' order (as training did).
        contract: The target's contract the flags state (``cli.target_flags``); None: the one the
            converter's workdir records, else the JSON beside the target, else our zoo's.
    """
    from dapter_tf import attacks, data
    from dapter_tf.models import served
    from dapter_tf.records import runs

    task, train_set, test_set = data.load_data(data_config, seed=seed)
    if os.path.isdir(converter):
        converter = os.path.join(converter, runs.CONVERTER_FILE)
    if target:
        contract = served.resolve_contract(target, contract or served.recorded_contract(os.path.dirname(converter)))
    return attacks.AttackInputData(task, train_set, test_set, converter, target, data_config, contract)

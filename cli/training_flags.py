"""Flags of the binaries that train: the training loop, the converter and the adversarial defence."""

import os

from absl import flags

from cli import target_flags
from cli.flags_lib import parse_ints
from dapter_tf import pixels


def define_training_flags(*, epochs: int, batch_size: int, learning_rate: float):
    """Defines the flags every training binary has; returns a function giving their values as a dict."""
    holders = {
        "epochs": flags.DEFINE_integer("epochs", epochs, "Passes over the training images (>= 1)."),
        "batch_size": flags.DEFINE_integer(
            "batch_size",
            batch_size,
            "Global batch size; under --strategy=mirrored or multi_worker it is split evenly "
            "across replicas, so it must be a multiple of their number.",
        ),
        "learning_rate": flags.DEFINE_float(
            "learning_rate",
            learning_rate,
            "Adam's learning rate (> 0). Target training decays it to 0 over the run (cosine); converter "
            "training keeps it constant unless --cosine_decay.",
        ),
        "seed": flags.DEFINE_integer("seed", 0, "Seeds weight initialisation, data order and shuffling."),
        "strategy": flags.DEFINE_enum(
            "strategy",
            "default",
            ["default", "mirrored", "multi_worker"],
            "tf.distribute strategy: 'default' (one device); 'mirrored' (synchronous data parallelism over "
            "all local GPUs, or all logical CPUs without GPUs); 'multi_worker' (the same over every worker "
            "of the cluster in the TF_CONFIG environment variable: start every worker with the same flags "
            "and --workdir on a shared filesystem; only the chief writes; README, 'Training on several machines').",
        ),
        "mixed_precision": flags.DEFINE_enum(
            "mixed_precision",
            "float32",
            ["float32", "bfloat16"],
            "What the trained model computes in: float32, or bfloat16 (GPUs from Ampere on, TPUs; on CPUs "
            "it runs but is slower). Variables, the converter's output, the losses and the saved model stay "
            "float32. float16 is not offered: it needs loss scaling, which Keras 3 cannot do in a custom loop.",
        ),
        "xla": flags.DEFINE_bool(
            "xla",
            False,
            "Compile each replica's training step with XLA (jit_compile). On CPUs only with --strategy=default.",
        ),
        "augment": flags.DEFINE_bool("augment", True, "Random flips and 4-pixel shifts of training images."),
        "checkpoint_every_steps": flags.DEFINE_integer(
            "checkpoint_every_steps",
            200,
            "Save a checkpoint this often, and at every epoch's end; "
            "a rerun with the same --workdir resumes from the last one.",
        ),
    }
    # Not a training setting (configs do not hold it): join_cluster reads it.
    flags.DEFINE_integer(
        "cluster_timeout_s",
        600,
        "Under --strategy=multi_worker: how long (seconds, >= 1) a worker waits for every other worker of "
        "TF_CONFIG to answer before it gives up with one line naming those that never did; while it waits "
        "it says every few seconds whom it waits for.",
    )
    return lambda: {k: v.value for k, v in holders.items()}


def define_converter_flags():
    """Defines the flags of converter training against a target; returns a function building a DapterConfig.

    The returned function takes the data and training values (``define_data_flags`` and
    ``define_training_flags``) and keyword overrides.
    """
    target = flags.DEFINE_string(
        "target",
        None,
        "The trained target, frozen: a .keras file (from dapter-train-target) or a SavedModel directory (as TF "
        "Serving serves it), behind its input contract (--target_preprocessing and the flags beside it, or "
        "<target>.contract.json).",
        required=True,
    )
    build_contract = target_flags.define_target_contract_flags()
    filters = flags.DEFINE_list("filters", "24,48,96", "The converter's channels at full, half and quarter resolution.")
    eval_images = flags.DEFINE_integer(
        "eval_images", 1000, "Test images measured after every epoch (TensorBoard); the final report uses all."
    )
    output_step = flags.DEFINE_integer(
        "output_step",
        pixels.DEFAULT_OUTPUT_STEP,
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
    code_margin = flags.DEFINE_float(
        "code_margin",
        0.0,
        "Beyond the paper: the weight of L_margin, the squared distance (in grid steps) of each output value "
        "from the middle of its --output_step level, added to L_dap. A short fine-tuning with it (from "
        "--init_converter) lets a full-int8 file round every value to the same level as Keras. 0: off.",
    )
    task_head = flags.DEFINE_float(
        "task_head",
        0.0,
        "Beyond the paper, for --architecture=block_encoder: the weight of L_head, the cross-entropy of a "
        "linear head on the encoder's mean features against the labels L_acc uses; the head trains with the "
        "converter and is dropped when training ends (it makes the encoder read the task from the photo, "
        "which a coarse code's few colours must carry). 0: off.",
    )
    validation_images = flags.DEFINE_integer(
        "validation_images",
        0,
        "Beyond the paper: hold out this many training photos (a seeded draw, never test images), measure "
        "the target's accuracy on them through the converter after every epoch, and save the converter of "
        "the best epoch instead of the last. 0: keep the last epoch.",
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
    class_code = flags.DEFINE_string(
        "class_code",
        "",
        "Defence beyond the paper, the class code: 'target' (a frozen copy of the target decides the class "
        "on the phone) or a classifier's .keras file; the converter then sends one learned image per class "
        "(at most log2(classes) bits of the photo). Use with --acc_labels=target. Empty: the paper's converter.",
    )
    output_block = flags.DEFINE_integer(
        "output_block",
        1,
        "Defence beyond the paper, the coarse output code: the converter sends one colour per "
        "block of this many x this many pixels (a power of two; image sides must be multiples of it), "
        "so its output cannot hold more of the photo than (H/b) x (W/b) colours. 1: the paper's converter.",
    )
    architecture = flags.DEFINE_enum(
        "architecture",
        "fig3",
        ["fig3", "fig3_patches", "fig3_split", "block_encoder"],
        "The converter: fig3, the paper's U-Net at full resolution (1.138 GMAC at 224x224 with 24,48,96; "
        "about 4x that with 48,96,192), whose features --output_block averages away; fig3_patches, its efficient "
        "form for phones: the same eight layers on --patch x --patch pixel patches (space-to-depth in, depth-to-space "
        "out; image sides multiples of 4 --patch), 0.520 GMAC with 4x4 patches and --filters=48,96,192, the channels "
        "at H/4, H/8 and H/16; fig3_split, the form that keeps Fig. 3's first and last layers at full resolution "
        "(8 channels, the same weights for every pixel) and runs the rest on --patch x --patch patches, 0.360 GMAC "
        "with 4x4 patches and --filters=48,96,192; or block_encoder, "
        "log2(b) stride-2 convolutions down to the block resolution and one colour per block, which costs less "
        "the larger the blocks (at 224x224 with 24,48,96: 0.147 GMAC for b=4, 0.033 for b=32; "
        "results/export/converter_cost.txt). block_encoder needs --output_block >= 2; --filters are then the "
        "channels of its last stages, the last at the block resolution.",
    )

    patch = flags.DEFINE_integer(
        "patch",
        4,
        "With --architecture=fig3_patches or fig3_split: the side of its pixel patches (2, 4, 8 or 16). "
        "4: 48 values per patch, its layers at H/4; 2 runs them at H/2 (fig3_patches: 1.252 GMAC at 224x224 "
        "with --filters=48,96,192).",
    )

    def build(data, training: dict, **overrides):
        from dapter_tf import train
        from dapter_tf.models import served

        channels = parse_ints(filters.value, "--filters")
        values = dict(
            data=data,
            target_path=target.value,
            target_contract=served.resolve_contract(target.value, build_contract()),
            filters=channels,
            eval_images=eval_images.value,
            output_step=output_step.value,
            cosine_decay=cosine_decay.value,
            init_converter=init_converter.value,
            output_block=output_block.value,
            adversary=build_adversary(),
            acc_labels=acc_labels.value,
            class_code=class_code.value,
            architecture=architecture.value,
            patch=patch.value,
            code_margin=code_margin.value,
            task_head=task_head.value,
            validation_images=validation_images.value,
            **training,
        )
        values.update(overrides)
        return train.DapterConfig(**values)

    return build


def define_defence_flags():
    """Defines the adversarial defence's flags (docs/protection.md, "Defences"); returns a function building its config."""
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


def join_cluster(strategy: str) -> None:
    """Joins the cluster of ``TF_CONFIG`` first thing under ``--strategy=multi_worker``.

    TensorFlow lets a process set up collective ops only before it runs any other op, so a binary
    calls this right after turning its flags into a config, before it reads any data; the strategy
    built here is the one training uses. Before it waits for the other workers it refuses a
    --batch_size they cannot share; it waits at most --cluster_timeout_s, saying whom it waits
    for; from then on SIGINT and SIGTERM end the worker at once with one line
    (``dapter_tf.cluster_startup``).
    """
    if strategy != "multi_worker":
        return
    from dapter_tf import cluster, cluster_startup, train
    from dapter_tf.errors import DapterError

    task = cluster.parse_tf_config(os.environ.get("TF_CONFIG"))
    cluster_startup.check_global_batch(task, flags.FLAGS.batch_size)
    timeout_s = flags.FLAGS.cluster_timeout_s
    if timeout_s < 1:
        raise DapterError(f"--cluster_timeout_s must be at least 1 (seconds), got {timeout_s}")
    cluster_startup.stop_on_signals()
    cluster_startup.wait_for_peers(task, timeout_s)
    train.build_strategy(strategy)
    cluster_startup.joined()

"""The configs of a training run: a target's (``TargetConfig``) and a converter's (``DapterConfig``).

Frozen dataclasses that check themselves when made, so a binary turns its flags into one valid
config (or one error line) before anything is trained or written.
"""

import dataclasses
import os

from dapter_tf import losses
from dapter_tf.data.loading import DataConfig
from dapter_tf.defences.adversarial import AdversaryConfig
from dapter_tf.errors import DapterError
from dapter_tf.models import targets
from dapter_tf.models.converter import (
    DEFAULT_FILTERS,
    DEFAULT_OUTPUT_STEP,
    PATCH,
    PATCH_SIDES,
    check_output_block,
    check_output_step,
)
from dapter_tf.models.saving import is_saved_model
from dapter_tf.models.served import TargetContract

STRATEGIES = ("default", "mirrored", "multi_worker")
# --mixed_precision: the Keras dtype policy the trained model computes in (its variables stay float32).
# float16 is left out: it needs loss scaling, and Keras 3's LossScaleOptimizer fails inside a custom
# TF loop ("No gradients provided for any variable", raised in its Cond; train.precision says more).
PRECISIONS = ("float32", "bfloat16")
# What L_acc compares the target's answer on converted images with (DapterConfig.acc_labels).
ACC_LABELS = ("true", "target")
# The converter's architecture (DapterConfig.architecture): the U-Net of Fig. 3; two forms of it for
# phones, the same layers on 4x4 pixel patches (models.build_patch_converter) or only its middle on
# them (models.build_split_converter); or the block encoder of the coarse output code, which computes
# nothing finer than its blocks (models.build_block_converter).
ARCHITECTURES = ("fig3", "fig3_patches", "fig3_split", "block_encoder")
# The architectures that cut the image into patches (DapterConfig.patch).
PATCH_ARCHITECTURES = ("fig3_patches", "fig3_split")


def _check_training_fields(config) -> None:
    if config.epochs < 1:
        raise DapterError(f"epochs must be >= 1, got {config.epochs}")
    if config.batch_size < 1:
        raise DapterError(f"batch_size must be >= 1, got {config.batch_size}")
    if not config.learning_rate > 0:
        raise DapterError(f"learning_rate must be > 0, got {config.learning_rate}")
    if config.strategy not in STRATEGIES:
        raise DapterError(f"unknown strategy {config.strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    if config.checkpoint_every_steps < 1:
        raise DapterError(f"checkpoint_every_steps must be >= 1, got {config.checkpoint_every_steps}")
    if config.mixed_precision not in PRECISIONS:
        raise DapterError(f"mixed_precision must be one of {', '.join(PRECISIONS)}, got {config.mixed_precision!r}")


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    """Training of a target (DLIS) model: what the provider already has before DAPter.

    Attributes:
        data: Where the images come from.
        model: A name from ``targets.TARGET_BUILDERS``.
        width: The model's width (``None``: the builder's default).
        epochs: Passes over the training images.
        batch_size: Global batch size, split across replicas.
        learning_rate: Adam's initial learning rate, decayed to 0 over the run (cosine).
        seed: Seeds weights, shuffling and the data order.
        strategy: ``"default"`` (one device), ``"mirrored"`` (every local GPU, or every logical CPU)
            or ``"multi_worker"`` (every worker of the cluster in ``TF_CONFIG``).
        augment: Random flips and 4-pixel shifts.
        checkpoint_every_steps: Save a checkpoint this often (and at every epoch's end).
        init_model: A trained classifier's ``.keras`` file to start from (transfer learning, as the
            auto-recognition attacker of §5.1 fine-tunes one); its architecture replaces ``model``
            and ``width``. Empty: random initialisation.
        l2: Weight of the L2 regulariser, ``l2 * sum(||kernel||^2) / 2`` over the convolution and
            dense kernels, added to the cross-entropy (§5.1's "regularization part"); 0: none.
        mixed_precision: What the model computes in (``train.precision``): ``float32`` or
            ``bfloat16``; variables, logits, the loss and the saved model stay float32.
        xla: Compile each replica's step with XLA.
        class_code: The class-code converter, beyond the paper (``models.build_class_code_converter``):
            ``target`` (a frozen copy of the target decides the class on the phone) or a classifier's
            ``.keras`` file; empty (the default): the paper's converter. ``filters`` is then unused.
    """

    data: DataConfig = DataConfig()
    model: str = "resnet18"
    width: int | None = None
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    strategy: str = "default"
    augment: bool = True
    checkpoint_every_steps: int = 200
    init_model: str = ""
    l2: float = 0.0
    mixed_precision: str = "float32"
    xla: bool = False

    def __post_init__(self):
        targets.check_target_name(self.model)
        if self.width is not None and self.width < 1:
            raise DapterError(f"width must be >= 1, got {self.width}")
        if not self.l2 >= 0:
            raise DapterError(f"l2 must be >= 0, got {self.l2}")
        _check_training_fields(self)


@dataclasses.dataclass(frozen=True)
class DapterConfig:
    """Training of a converter against a frozen target on L_dap (Eq. 1).

    Attributes:
        data: Where the images come from.
        target_path: The trained target: a ``.keras`` file or a SavedModel directory.
        target_contract: How the provider feeds the target and what it returns
            (``models.served``): preprocessing between the converter's pixels and the target,
            logits or probabilities, the SavedModel signature. The default is our zoo's.
        lambda_: lambda of Eq. 1, in [0, 1]; 0.9 is the paper's sweet point (§7.1).
        filters: The converter's channels at full, half and quarter resolution (``fig3``), at a
            quarter, an eighth and a sixteenth of it (``fig3_patches``, ``fig3_split``), or of its last three
            stages, the last at the block resolution (``block_encoder``).
        epochs: Passes over the training images.
        batch_size: Global batch size, split across replicas.
        learning_rate: Adam's learning rate (the initial one with ``cosine_decay``).
        seed: Seeds weights, shuffling and the data order.
        strategy: ``"default"``, ``"mirrored"`` or ``"multi_worker"``.
        augment: Random flips and 4-pixel shifts of the training images.
        checkpoint_every_steps: Save a checkpoint this often (and at every epoch's end).
        eval_images: Test images measured at the end of every epoch (TensorBoard); the final
            measurement uses all of them.
        output_step: The converter sends pixels on the grid 128 + k * ``output_step`` levels
            (``models.OutputLevels``); 1 is the paper's plain sigmoid output.
        init_converter: A trained converter's ``.keras`` file (or workdir) to start from, as the
            fine-tuning rounds of the lambda tuner (§7.1) do; empty: random initialisation.
        cosine_decay: Decay the learning rate to 0 over the run (cosine), as target training does;
            off, it stays constant.
        output_block: The coarse output code (``models.build_converter``): one colour per
            ``output_block`` x ``output_block`` block; 1 is the paper's converter.
        adversary: The adversarial reconstruction defence (``defences.adversarial``); its default
            (weight 0) is the paper's L_dap alone.
        acc_labels: What L_acc compares the target's answer on converted images with: ``true``, the
            label (Eq. 4), or ``target``, the target's own softmax on the original image
            (``losses.distillation_loss``, beyond the paper).
        mixed_precision: What the converter computes in (``train.precision``); its output, the
            losses and the saved converter stay float32.
        xla: Compile each replica's step with XLA.
        architecture: The converter: ``fig3``, the paper's U-Net (with ``output_block``, its output
            averaged over the blocks), ``fig3_patches``, its efficient form for phones on 4x4 pixel
            patches (``models.build_patch_converter``; image sides multiples of 4 ``patch``),
            ``fig3_split``, its form with a thin full-resolution path and the rest on patches
            (``models.build_split_converter``; the same sides), or
            ``block_encoder`` (``models.build_block_converter``), which
            stops at the block resolution and so costs less the larger the blocks; it needs
            ``output_block`` >= 2 (``class_code`` then cannot be set: that is another output code).
        patch: With ``architecture`` ``fig3_patches`` or ``fig3_split``: the side p of its pixel patches, 2, 4, 8 or 16
            (4, the default: 48 values per patch; 2 runs its layers at H/2, with more MACs).
        code_margin: The weight of L_margin (``losses.code_margin_loss``) added to L_dap: pulls every
            output value towards the middle of its grid level, so that a full-int8 file rounds it to
            the same level (a short fine-tuning from ``init_converter``; ``recipe_search``). 0: off.
            Needs ``output_step`` > 1.
        task_head: The weight of L_head, beyond the paper: the cross-entropy of a linear head on the
            block encoder's mean features, trained with it against the labels L_acc uses (the target's
            answer with ``acc_labels="target"``) and dropped when training ends (``losses.task_head_loss``).
            0: off. Needs ``architecture="block_encoder"``.
        validation_images: Beyond the paper: hold out this many of the training photos (a seeded draw,
            never the test split), measure the target's accuracy on them through the converter after
            every epoch, and save the converter of the best epoch instead of the last one. A coarse
            code's few colours can flip the target's answer for many photos at once, so its accuracy
            can swing from epoch to epoch (``recipe_search.VALIDATION_IMAGES``). 0: keep the last epoch.
    """

    data: DataConfig = DataConfig()
    target_path: str = ""
    lambda_: float = 0.9
    filters: tuple = DEFAULT_FILTERS
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    strategy: str = "default"
    augment: bool = True
    checkpoint_every_steps: int = 200
    eval_images: int = 1000
    output_step: int = DEFAULT_OUTPUT_STEP
    init_converter: str = ""
    cosine_decay: bool = False
    output_block: int = 1
    adversary: AdversaryConfig = AdversaryConfig()
    acc_labels: str = "true"
    mixed_precision: str = "float32"
    xla: bool = False
    class_code: str = ""
    target_contract: TargetContract = TargetContract()
    architecture: str = "fig3"
    patch: int = PATCH
    code_margin: float = 0.0
    task_head: float = 0.0
    validation_images: int = 0

    def __post_init__(self):
        losses.check_lambda(self.lambda_)
        check_output_step(self.output_step)
        check_output_block(self.output_block)
        if self.acc_labels not in ACC_LABELS:
            raise DapterError(f"acc_labels must be one of {', '.join(ACC_LABELS)}, got {self.acc_labels!r}")
        if not self.target_path:
            raise DapterError("a target model is needed: give a trained target's .keras file or SavedModel directory")
        # Absolute, so that it opens from any directory; the workdir's record knows it by its hash
        # and, within the workdir's folder, by a path relative to the workdir (records.runs).
        object.__setattr__(self, "target_path", os.path.abspath(self.target_path))
        if len(self.filters) != 3 or min(self.filters) < 1:
            raise DapterError(f"filters must be three positive channel counts, got {self.filters}")
        if self.eval_images < 1:
            raise DapterError(f"eval_images must be >= 1, got {self.eval_images}")
        if self.class_code and self.output_block != 1:
            raise DapterError("class_code and output_block are two output codes: choose one")
        if self.class_code == "target" and is_saved_model(self.target_path):
            raise DapterError(
                f"--class_code=target runs a copy of the target on the phone and needs a .keras target, but "
                f"{self.target_path} is a SavedModel: give a classifier's .keras file as --class_code"
            )
        if self.architecture not in ARCHITECTURES:
            raise DapterError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        if self.architecture == "block_encoder" and self.output_block < 2:
            raise DapterError(
                "architecture block_encoder needs output_block >= 2 (it stops at the block resolution); "
                "with output_block 1 use architecture fig3"
            )
        if self.patch != PATCH and self.architecture not in PATCH_ARCHITECTURES:
            raise DapterError(
                f"patch={self.patch} needs architecture fig3_patches or fig3_split "
                "(only they cut the image into patches)"
            )
        if self.patch not in PATCH_SIDES:
            raise DapterError(
                f"patch must be 2, 4, 8 or 16 pixels (a power of two; for 1 use architecture fig3), got {self.patch}"
            )
        if not self.code_margin >= 0:
            raise DapterError(f"code_margin must be >= 0, got {self.code_margin}")
        if self.code_margin and self.output_step == 1:
            raise DapterError(
                "code_margin needs an output grid (output_step > 1): with step 1 there is no level to keep"
            )
        if not self.task_head >= 0:
            raise DapterError(f"task_head must be >= 0, got {self.task_head}")
        if self.task_head and self.architecture != "block_encoder":
            raise DapterError("task_head needs architecture block_encoder (the head reads its mean features)")
        if self.validation_images < 0:
            raise DapterError(f"validation_images must be >= 0, got {self.validation_images}")
        if self.class_code not in ("", "target"):
            object.__setattr__(self, "class_code", os.path.abspath(self.class_code))
        _check_training_fields(self)

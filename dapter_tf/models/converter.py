"""The DAPter converter of Fig. 3: a lightweight U-Net that removes what the target does not need."""

import keras
import numpy as np
import tensorflow as tf

from dapter_tf.errors import DapterError
from dapter_tf.pixels import DEFAULT_OUTPUT_STEP, grid_levels

DEFAULT_FILTERS = (24, 48, 96)
# The largest output block (``output_block``): a 64x64 image is then a single block.
MAX_OUTPUT_BLOCK = 64


@keras.saving.register_keras_serializable(package="dapter_tf")
class OutputLevels(keras.layers.Layer):
    """Rounds output pixels to the grid 128 + k * ``step`` (in levels of 255): an output parameterisation.

    L_eta pulls pixels towards I_128, but a pixel at 127.6 or 129.3 still rounds to another uint8
    level than 128, and the entropy of §4.1 counts every level a channel uses. On this grid every
    pixel within ``step / 2`` of 128 is sent as exactly 128, and the others take one of at most
    ``256 / step`` levels. The backward pass is the identity (a straight-through estimator, as in
    quantisation-aware training), so the target's gradient still reaches every pixel and can pull
    one off 128 when the task needs it. ``step=1`` leaves the paper's plain sigmoid output (the
    phone rounds it to uint8 anyway).
    """

    def __init__(self, step: int = DEFAULT_OUTPUT_STEP, **kwargs):
        super().__init__(**kwargs)
        check_output_step(step)
        self.step = int(step)

    def call(self, images, training=None):
        if self.step == 1:
            return images
        levels = grid_levels(images, self.step)
        if not training:
            return levels  # Inference (and TFLite export) needs no gradient trick.
        return images + tf.stop_gradient(levels - images)

    def get_config(self):
        return {**super().get_config(), "step": self.step}


@keras.saving.register_keras_serializable(package="dapter_tf")
class RepeatBlocks(keras.layers.Layer):
    """Repeats every pixel over a ``block`` x ``block`` block: H/b x W/b colours become an H x W image.

    The repeat is the channels concatenated ``block ** 2`` times and a depth-to-space: TFLite's
    RESIZE_NEAREST_NEIGHBOR (Keras' UpSampling2D) fails in XNNPACK once the batch is resized, while
    CONCATENATION and DEPTH_TO_SPACE run on every delegate, in float and int8 alike. The gradient
    of a block's colour is the sum of its pixels' gradients.
    """

    def __init__(self, block: int, **kwargs):
        super().__init__(**kwargs)
        self.block = check_output_block(block)

    def call(self, colours):
        return tf.nn.depth_to_space(tf.concat([colours] * self.block**2, axis=-1), self.block)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, *(None if s is None else s * self.block for s in (height, width)), channels)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@keras.saving.register_keras_serializable(package="dapter_tf")
class OutputBlocks(keras.layers.Layer):
    """The coarse output code: each ``block`` x ``block`` block of the image sent as its mean colour.

    Average-pools the sigmoid's output, then repeats every pooled pixel over its block
    (``RepeatBlocks``). The gradient of a block's colour is the sum of its pixels' gradients,
    divided by the block's size.
    """

    def __init__(self, block: int, **kwargs):
        super().__init__(**kwargs)
        self.block = check_output_block(block)
        self.repeat = RepeatBlocks(self.block, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.repeat.build(input_shape)  # It has no weights: this only marks it built.

    def call(self, images):
        return self.repeat(tf.nn.avg_pool2d(images, self.block, self.block, "VALID"))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@keras.saving.register_keras_serializable(package="dapter_tf")
class ClassCode(keras.layers.Layer):
    """The class code: a classifier's logits sent as the one-hot vector of their largest entry.

    Nothing but the decision passes this layer, so whatever follows it can draw at most one image
    per class (``build_class_code_converter``). It has no gradient: the classifier before it is frozen.
    """

    def __init__(self, classes: int, **kwargs):
        super().__init__(**kwargs)
        self.classes = int(classes)

    def call(self, logits):
        return tf.one_hot(tf.argmax(logits, axis=-1), self.classes, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.classes)

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


def check_output_step(step) -> int:
    """Returns ``step`` if it is an integer in 1..128; raises DapterError otherwise."""
    if int(step) != step or not 1 <= step <= 128:
        raise DapterError(f"output_step must be an integer number of pixel levels in 1..128, got {step}")
    return int(step)


def check_output_block(block) -> int:
    """Returns ``block`` if it is a power of two in 1..MAX_OUTPUT_BLOCK; raises DapterError otherwise."""
    if int(block) != block or not 1 <= block <= MAX_OUTPUT_BLOCK or int(block) & (int(block) - 1):
        raise DapterError(f"output_block must be a power of two in 1..{MAX_OUTPUT_BLOCK} pixels, got {block}")
    return int(block)


def _fig3_layers(x, filters):
    """Layers 1-7 of Fig. 3 on ``x`` and the copy connection: what layer 8 reads (``build_converter``'s table)."""
    f_full, f_half, f_quarter = (int(f) for f in filters)
    conv = dict(kernel_size=3, padding="same", activation="relu")
    x = keras.layers.Conv2D(f_full, name="conv1", **conv)(x)
    x = keras.layers.Conv2D(f_full, name="conv2", **conv)(x)
    copy = keras.layers.Conv2D(f_full, name="conv3", **conv)(x)
    x = keras.layers.Conv2D(f_half, strides=2, name="conv4_down", **conv)(copy)
    x = keras.layers.Conv2D(f_quarter, strides=2, name="conv5_down", **conv)(x)
    x = keras.layers.Conv2DTranspose(f_half, strides=2, name="conv6_up", **conv)(x)
    x = keras.layers.Conv2DTranspose(f_full, strides=2, name="conv7_up", **conv)(x)
    return keras.layers.Concatenate(name="copy_connection")([copy, x])


def _output_code(converted, output_block: int, output_step: int, out: dict):
    """The coarse output code and the output grid after a Fig. 3 form's sigmoid (``build_converter``'s args)."""
    if check_output_block(output_block) != 1:
        converted = OutputBlocks(output_block, name="output_blocks", **out)(converted)
    if output_step != 1:
        converted = OutputLevels(output_step, name="output_levels", **out)(converted)
    return converted


def build_converter(
    filters=DEFAULT_FILTERS,
    input_shape=(None, None, 3),
    name="converter",
    output_step: int = DEFAULT_OUTPUT_STEP,
    output_block: int = 1,
) -> keras.Model:
    """Builds the converter of Fig. 3.

    Eight convolution layers in all (§3.2.1), symmetric around the bottleneck:

    ====  =====================  ==========  ===========
    L     layer                  resolution  channels
    ====  =====================  ==========  ===========
    1-3   conv 3x3               H           filters[0]
    4     conv 3x3, stride 2     H/2         filters[1]
    5     conv 3x3, stride 2     H/4         filters[2]
    6     transposed conv, x2    H/2         filters[1]
    7     transposed conv, x2    H           filters[0]
    8     conv 3x3, sigmoid      H           3
    ====  =====================  ==========  ===========

    The copy connection concatenates the output of layer 3 with the input of layer 8 (the output of
    layer 7), so low-level spatial information reaches the output while layers 4-7 decide, from
    high-level context, what to keep. The sigmoid keeps the output in [0, 1], the input's pixel
    range, so the target model takes converted images unchanged (U2).

    Args:
        filters: Channels at full, half and quarter resolution.
        input_shape: (H, W, 3); H and W may be ``None`` so one model serves every image size whose
            sides are multiples of 4 (32x32 to 224x224 in the paper).
        name: The model's name.
        output_step: Output pixels are rounded to the grid 128 + k * ``output_step`` levels
            (``OutputLevels``); 1 gives the paper's plain sigmoid output.
        output_block: A coarse output code, beyond the paper (docs/protection.md, "Defences"): the sigmoid's
            output is averaged over ``output_block`` x ``output_block`` blocks and each block sent
            as one colour, so an H x W image carries at most (H / b) (W / b) colours, each on the
            output grid, whatever the converter learns. 1 (the default) is the paper's converter.
            Image sides must then be multiples of it too.

    Returns:
        A functional ``keras.Model`` mapping float32 images in [0, 1] to images of the same shape.
    """
    images = keras.Input(shape=input_shape, name="images")
    x = _fig3_layers(images, filters)
    # Under a mixed precision policy the output is still float32: its pixels are what L_eta's
    # histogram counts and the frozen (float32) target reads.
    out = {"dtype": "float32"} if keras.config.dtype_policy().name != "float32" else {}
    converted = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="conv8_out", **out)(x)
    return keras.Model(images, _output_code(converted, output_block, output_step, out), name=name)


@keras.saving.register_keras_serializable(package="dapter_tf")
class ToPatches(keras.layers.Layer):
    """An H x W x C image as H/p x W/p x (p * p * C) patches (TFLite's SPACE_TO_DEPTH, exact in int8)."""

    def __init__(self, patch: int, **kwargs):
        super().__init__(**kwargs)
        self.patch = int(patch)

    def call(self, images):
        return tf.nn.space_to_depth(images, self.patch)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, *(None if s is None else s // self.patch for s in (height, width)), channels * self.patch**2)

    def get_config(self):
        return {**super().get_config(), "patch": self.patch}


@keras.saving.register_keras_serializable(package="dapter_tf")
class FromPatches(ToPatches):
    """H/p x W/p x (p * p * C) patches as the H x W x C image (TFLite's DEPTH_TO_SPACE): ``ToPatches`` undone."""

    def call(self, patches):
        return tf.nn.depth_to_space(patches, self.patch)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, *(None if s is None else s * self.patch for s in (height, width)), channels // self.patch**2)


# The efficient form's pixel patches: 4x4, so its full-resolution layers run at a quarter of the sides.
PATCH = 4
# The patch sides the efficient form takes (DapterConfig.patch, --patch).
PATCH_SIDES = (2, 4, 8, 16)
# Its channels at H/4, H/8 and H/16: the Fig. 3 converter's doubled (the patches carry 48 values each).
PATCH_FILTERS = (48, 96, 192)


def build_patch_converter(
    filters=PATCH_FILTERS,
    input_shape=(None, None, 3),
    name: str = "converter",
    output_step: int = DEFAULT_OUTPUT_STEP,
    output_block: int = 1,
    patch: int = PATCH,
) -> keras.Model:
    """Builds the efficient form of the Fig. 3 converter, for phones: the same U-Net on pixel patches.

    The Fig. 3 converter spends most of its time in three full-resolution 3x3 convolutions of 24
    channels, which int8 kernels run far below a CPU's peak. Here the image is first cut into
    ``patch`` x ``patch`` patches (space-to-depth: 4x4 patches of 3 colours are 48 channels), the eight
    layers of Fig. 3 with their copy connection run at H/p, H/2p and H/4p on ``filters`` channels,
    and the last layer gives each patch's 3 p^2 pixel values, put back in place by depth-to-space
    before the sigmoid. Beyond Fig. 3, layer 8 also reads the patches themselves and starts by passing
    them through (``PASS_GAIN``), so that the target can read the first converted images. No
    convolution runs at full resolution, and every one has at least 48 channels. At 224x224 with
    (48, 96, 192): 0.520 GMAC, against Fig. 3's 1.138 (its layers 1-3 each cost 65 M MACs, 8 195 M;
    4-7 each 32.5 M).

    Args:
        filters: Channels at H/p, H/2p and H/4p.
        input_shape: (H, W, 3); H and W may be ``None`` (multiples of 4 ``patch``).
        name: The model's name.
        output_step: The output grid (``OutputLevels``); 1 leaves the plain sigmoid.
        output_block: The coarse output code, as in ``build_converter``.
        patch: The side p of the patches (a power of two >= 2).

    Returns:
        A functional ``keras.Model`` mapping float32 images in [0, 1] to images of the same shape.
    """
    if patch == 1:
        raise DapterError("the patch converter needs patches of at least 2x2 pixels; for 1 use the Fig. 3 converter")
    if patch not in PATCH_SIDES:
        raise DapterError(f"the patch converter needs patches of 2, 4, 8 or 16 pixels, got {patch}")
    images = keras.Input(shape=input_shape, name="images")
    patches = ToPatches(patch, name="to_patches")(images)
    x = _fig3_layers(patches, filters)
    # Layer 8 also reads the patches themselves, and starts by passing them through: a new patch
    # converter otherwise gives each pixel a random mix of the patches around it, which the target
    # cannot read, and learns a readable image far slower than Fig. 3 (CIFAR-10, after one epoch:
    # 33.0 % against Fig. 3's 65.1 %, at λ 0.9 and 0.5 alike; passing through: 75.8 %). Ten epochs
    # later it still keeps more of the photo than Fig. 3 (results/export/README.md, issue 32).
    x = keras.layers.Concatenate(name="patch_connection")([patches, x])
    # As in build_converter: the output stays float32 under a mixed precision policy.
    out = {"dtype": "float32"} if keras.config.dtype_policy().name != "float32" else {}
    layer8 = keras.layers.Conv2D(3 * patch**2, 3, padding="same", name="conv8_out", **out)
    x = layer8(x)
    _start_passing_through(layer8, 3 * patch**2)
    # Depth-to-space commutes with the element-wise sigmoid; applying it last keeps the file's
    # output the sigmoid, as the int8 export and its output contract expect of every converter.
    x = FromPatches(patch, name="from_patches", **out)(x)
    converted = keras.layers.Activation("sigmoid", name="sigmoid", **out)(x)
    return keras.Model(images, _output_code(converted, output_block, output_step, out), name=name)


# The split form's full-resolution path (its layer 1 and the copy connection) and the channels of the
# context that layer 8 reads at full resolution: few, since every full-resolution channel costs memory.
SPLIT_FULL_FILTERS = 8
SPLIT_CONTEXT_FILTERS = 8


def build_split_converter(
    filters=PATCH_FILTERS,
    input_shape=(None, None, 3),
    name: str = "converter",
    output_step: int = DEFAULT_OUTPUT_STEP,
    output_block: int = 1,
    patch: int = PATCH,
) -> keras.Model:
    """Builds the split form of the Fig. 3 converter, for phones: a thin full-resolution path, the rest on patches.

    The Fig. 3 converter's cost is in its full-resolution layers; the patch form
    (``build_patch_converter``) moves every layer onto pixel patches, and then learns each of a
    patch's p^2 pixel positions separately, so it either starts by passing the patches through
    (and keeps too much of the photo) or learns a readable image slowly. Here only the middle of
    the U-Net runs on ``patch`` x ``patch`` patches; the first and last layers stay at full
    resolution with the same weights for every pixel, as in Fig. 3:

    ====  ==============================================  ==========  ===========================
    L     layer                                           resolution  channels
    ====  ==============================================  ==========  ===========================
    1     conv 3x3 (the copy connection)                  H           SPLIT_FULL_FILTERS (8)
    1'-7  Fig. 3's layers 1-7 on the image's patches      H/p .. H/4p ``filters``
    7'    conv 1x1 of layers 3 and 7 (Fig. 3's copy       H/p -> H    SPLIT_CONTEXT_FILTERS (8)
          connection), repeated over each patch
    8     conv 3x3, sigmoid, of the copy and the context  H           3
    ====  ==============================================  ==========  ===========================

    The context is each patch's features repeated over its pixels (``RepeatBlocks``), the same for
    every pixel of the patch, so layer 8 reads it as Fig. 3's layer 8 reads layers 1-7: one 3x3
    convolution shared by every pixel. Like Fig. 3 it starts from a random output and reads almost
    like it after the first epoch (CIFAR-10, λ 0.9: 62.2 % of 1,000 held-out images against Fig. 3's
    63.4 %; a context of p^2 values per patch put in place by depth-to-space instead reads 38.2 %,
    one value per patch added to layer 8's output 55.6 %). Ten epochs on, though, it loses 1.80
    points more than Fig. 3 and keeps 6.30 bits against 5.74: its entropy stalls where Fig. 3's
    falls (results/export/README.md, "The split form"; issue 32). At 224x224 with (48, 96, 192) and
    4x4 patches: 0.360 GMAC, against Fig. 3's 1.138 and the patch form's 0.520.

    Args:
        filters: Channels at H/p, H/2p and H/4p.
        input_shape: (H, W, 3); H and W may be ``None`` (multiples of 4 ``patch``).
        name: The model's name.
        output_step: The output grid (``OutputLevels``); 1 leaves the plain sigmoid.
        output_block: The coarse output code, as in ``build_converter``.
        patch: The side p of the patches, one of ``PATCH_SIDES``.

    Returns:
        A functional ``keras.Model`` mapping float32 images in [0, 1] to images of the same shape.
    """
    if patch not in PATCH_SIDES:
        raise DapterError(f"the split converter needs patches of 2, 4, 8 or 16 pixels, got {patch}")
    images = keras.Input(shape=input_shape, name="images")
    copy = keras.layers.Conv2D(SPLIT_FULL_FILTERS, 3, padding="same", activation="relu", name="conv1_full")(images)
    patches = ToPatches(patch, name="to_patches")(images)
    x = _fig3_layers(patches, filters)
    x = keras.layers.Conv2D(SPLIT_CONTEXT_FILTERS, 1, activation="relu", name="conv7_context")(x)
    x = RepeatBlocks(patch, name="context_repeat")(x)
    x = keras.layers.Concatenate(name="full_connection")([copy, x])
    # As in build_converter: the output stays float32 under a mixed precision policy.
    out = {"dtype": "float32"} if keras.config.dtype_policy().name != "float32" else {}
    converted = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="conv8_out", **out)(x)
    return keras.Model(images, _output_code(converted, output_block, output_step, out), name=name)


# Layer 8's start in the patch converter: sigmoid(PASS_GAIN * (x - 1/2)) for each pixel value x, so
# that 0 and 1 come out as 0.05 and 0.95, and the features of layers 1-7 a tenth of their usual scale.
PASS_GAIN = 6.0
_FEATURE_SCALE = 0.1


def _start_passing_through(layer8: keras.layers.Conv2D, values: int) -> None:
    """Sets ``layer8``'s weights so that its first ``values`` inputs pass to its outputs, through the sigmoid.

    Set on the built layer rather than by an initializer, so the saved model needs nothing new to load.
    """
    kernel, bias = layer8.get_weights()
    kernel[:, :, values:, :] *= _FEATURE_SCALE
    kernel[:, :, :values, :] = 0.0
    centre = kernel.shape[0] // 2
    kernel[centre, centre, np.arange(values), np.arange(values)] = PASS_GAIN
    layer8.set_weights([kernel, np.full_like(bias, -PASS_GAIN / 2)])


def build_block_converter(
    filters,
    block: int,
    output_step: int = DEFAULT_OUTPUT_STEP,
    input_shape=(None, None, 3),
    name: str = "converter",
) -> keras.Model:
    """Builds the block encoder, beyond the paper: a converter for the coarse output code whose cost falls with b.

    The coarse code (``OutputBlocks``) sends one colour per ``block`` x ``block`` block, so the Fig. 3
    converter's full-resolution features are averaged away. This converter computes only what the
    code sends, and no convolution runs at full resolution: the image is cut into p x p pixel
    patches (``ToPatches``, p = min(``PATCH``, ``block``): 4x4 patches of 3 colours are 48 channels),
    two 3x3 convolutions (ReLU) run at H/p, then each halving down to the block resolution H/b x W/b
    is a 3x3 stride-2 and a 3x3 convolution; the image's mean features there (a 1x1 convolution of
    their global average) are added to every block, a 1x1 convolution with a sigmoid gives each
    block's colour, and ``RepeatBlocks`` spreads it over its block. The widest channels sit at the
    block resolution: the resolutions H/p .. H/b take ``filters`` in order, the last one at H/b, and
    those before them ``filters[0]`` (b = 32 with (24, 48, 96): 24, 24, 48, 96 at H/4 .. H/32). So
    the larger the block, the coarser the resolution of the costly layers: at 224x224 with
    (24, 48, 96), b = 4 costs 0.391 GMAC and b = 32 0.069 GMAC, against the Fig. 3 converter's
    1.138; with (48, 96, 192) b = 32 costs 0.211 (Conv2D MACs, tests/test_block_encoder.py).
    An earlier form began with stride-2 convolutions on the full-resolution image (0.488 GMAC for
    b = 32 with (48, 96, 192), half of it one convolution of 48 channels at H/2): int8 kernels run it
    at 0.88x MobileNetV2 1.0 int8's latency on this host, against 0.5x wanted (results/export).

    Args:
        filters: Channels of the last resolutions, the last at the block resolution (any length >= 1).
        block: The side b of the blocks, a power of two in 2..MAX_OUTPUT_BLOCK; image sides must be
            multiples of it. 1 is refused: at full resolution the Fig. 3 converter is the one to use.
        output_step: The output grid (``OutputLevels``); 1 leaves the plain sigmoid.
        input_shape: (H, W, 3); H and W may be ``None``.
        name: The model's name.

    Returns:
        A functional ``keras.Model`` mapping float32 images in [0, 1] to images of the same shape,
        constant over every block, as every converter's.

    Raises:
        DapterError: on a block of 1 or not a power of two, or channel counts that are not positive.
    """
    if check_output_block(block) == 1:
        raise DapterError("the block encoder needs blocks of at least 2x2 pixels; for blocks of 1 use the Fig. 3 converter")
    filters = tuple(int(f) for f in filters)
    if not filters or min(filters) < 1:
        raise DapterError(f"the block encoder needs positive channel counts, got {filters}")
    patch = min(PATCH, block)
    # Resolutions H/p, H/2p, ..., H/b.
    levels = (block // patch).bit_length()
    channels = ([filters[0]] * levels + list(filters))[-levels:]
    conv = dict(kernel_size=3, padding="same", activation="relu")
    images = keras.Input(shape=input_shape, name="images")
    x = ToPatches(patch, name="to_patches")(images)
    for k, width in enumerate(channels, start=1):
        # The patches are the first resolution; every later one is reached by a stride-2 convolution.
        first = dict(name="patches1") if k == 1 else dict(strides=2, name=f"down{k}")
        x = keras.layers.Conv2D(width, **first, **conv)(x)
        # A second convolution at each resolution: one plain convolution per halving was too shallow
        # to tell a face's attribute (CelebA Male on a MobileNetV2 SavedModel, b = 32, 10 epochs:
        # 31.50 points lost without this and the context below, 19.05 with them; results/export/README.md).
        x = keras.layers.Conv2D(width, name=f"conv{k}", **conv)(x)
    # The whole photo's context, added to every block: a block's colour may carry what the target
    # reads from the whole face (its mean features through a 1x1 convolution, broadcast over blocks).
    context = keras.layers.GlobalAveragePooling2D(keepdims=True, name="context_pool")(x)
    context = keras.layers.Conv2D(channels[-1], 1, activation="relu", name="context")(context)
    x = keras.layers.Add(name="add_context")([x, context])
    # As in build_converter: the output stays float32 under a mixed precision policy.
    out = {"dtype": "float32"} if keras.config.dtype_policy().name != "float32" else {}
    colours = keras.layers.Conv2D(3, 1, activation="sigmoid", name="block_colours", **out)(x)
    converted = RepeatBlocks(block, name="repeat_blocks", **out)(colours)
    if output_step != 1:
        converted = OutputLevels(output_step, name="output_levels", **out)(converted)
    return keras.Model(images, converted, name=name)


def build_class_code_converter(
    classifier: keras.Model, image_shape, output_step: int = DEFAULT_OUTPUT_STEP, name: str = "converter"
) -> keras.Model:
    """Builds the class-code converter, beyond the paper (docs/protection.md, "Defences"): the narrowest code.

    The converter runs a frozen ``classifier`` on the photo and sends one of K learned images, the
    codebook's row of the class it decided (``ClassCode``), on the output grid. Whatever the
    training, a converted image then carries at most log2(K) bits of the photo, so an attacker can
    at best draw the mean image of each decision. The price: the phone computes the decision, with
    a classifier as good as the target's accuracy is to stay (a copy of the target: ``--class_code``).

    Args:
        classifier: Maps images of ``image_shape`` to K logits; frozen here, and owned by the
            converter from now on (pass a copy of the target, not the target itself).
        image_shape: (H, W, 3): the codebook holds one image of that size per class.
        output_step: The output grid (``OutputLevels``); 1 leaves the plain sigmoid.
        name: The model's name.

    Returns:
        A functional ``keras.Model``: float32 images in [0, 1] to images of the same shape, each one
        of the K codebook images. The codebook starts at 0 (every pixel at the sigmoid's 0.5, I_128).
    """
    height, width, channels = image_shape
    if None in (height, width) or len(classifier.output_shape) != 2:
        raise DapterError(
            "a class code needs a fixed image size and a classifier with one logit per class, got "
            f"images {image_shape} and outputs {classifier.output_shape}"
        )
    classifier.trainable = False
    images = keras.Input(shape=(height, width, channels), name="images")
    code = ClassCode(classifier.output_shape[-1], name="class_code")(classifier(images, training=False))
    pixels = keras.layers.Dense(height * width * channels, use_bias=False, kernel_initializer="zeros", name="codebook")(
        code
    )
    pixels = keras.layers.Reshape((height, width, channels), name="codebook_image")(pixels)
    converted = keras.layers.Activation("sigmoid", name="codebook_sigmoid")(pixels)
    if output_step != 1:
        converted = OutputLevels(output_step, name="output_levels")(converted)
    return keras.Model(images, converted, name=name)


def output_step_of(converter: keras.Model) -> int:
    """The grid step of a converter's ``OutputLevels`` layer (1 if it has none: the plain output)."""
    steps = [layer.step for layer in converter.layers if isinstance(layer, OutputLevels)]
    return steps[0] if steps else 1


def output_block_of(converter: keras.Model) -> int:
    """The side of a converter's output blocks (1 if it sends every pixel on its own, as the paper's).

    A Fig. 3 converter with ``OutputBlocks`` or a block encoder (``RepeatBlocks``) alike.
    """
    blocks = [layer.block for layer in converter.layers if isinstance(layer, (OutputBlocks, RepeatBlocks))]
    return blocks[0] if blocks else 1


def strip_output_levels(converter: keras.Model) -> keras.Model:
    """The converter without ``OutputLevels``, ending at the sigmoid (or its output blocks).

    For int8 export, see ``snap_to_levels``.
    """
    levels = [layer for layer in converter.layers if isinstance(layer, OutputLevels)]
    if not levels:
        return converter
    return keras.Model(converter.inputs, levels[0].input, name=f"{converter.name}_sigmoid")


def snap_to_levels(pixels: np.ndarray, step: int) -> np.ndarray:
    """``OutputLevels`` on uint8 pixels: rounds each to the grid 128 + k * ``step`` (0..255).

    Full-int8 TFLite quantises every intermediate tensor with its own scale, which moves a
    rounding off the grid, so int8 files end at the sigmoid and the phone (and ``run_tflite``)
    applies this integer step to the uint8 bytes it gets. A byte exactly halfway between two
    levels (136 for step 16) goes to the one farther from 128; the float layer sees the unrounded
    sigmoid there, so the two agree except on such bytes.
    """
    if step == 1:
        return pixels
    offset = pixels.astype(np.int32) - 128
    levels = 128 + step * np.sign(offset) * ((np.abs(offset) + step // 2) // step)
    return np.clip(levels, 0, 255).astype(np.uint8)

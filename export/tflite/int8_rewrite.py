"""Rewrites of a converter that let full-int8 TFLite hold its output code: same function, other ops.

A full-int8 file gives every tensor one scale, calibrated from its range on real images, and some
TFLite int8 kernels force one scale onto several tensors. On a coarse-code converter (``OutputBlocks``,
one colour per block) two such ties moved the block colours by several grid steps: the first
``cifar2_10_reference`` converter (a wide Fig. 3 converter, one colour per 32x32 image; issue 31
rebuilt that release with the block encoder) lost 11.45 points of target accuracy
through its int8 file, with a mean pixel difference of 9.9 levels. Each rewrite below removes one
tie; the first two compute the same function in float, the last two nearly so:

- ``CONCATENATION`` quantizes all its inputs on one scale, the widest. The copy connection of Fig. 3
  concatenates layer 3 (activations up to about 1) with layer 7 (up to about 50), so layer 3 went
  to int8 in steps of 0.23: three levels. A convolution over a concatenation is the sum of one
  convolution per part (its kernel split along the input channels), and each part keeps its scale.
- ``AVERAGE_POOL_2D`` needs its input on its output's scale. ``OutputBlocks`` averages a sigmoid,
  whose pixels reach 1, into block means calibrated at most about 0.73, so every bright pixel was
  clipped at the brightest calibrated mean before averaging. A depthwise convolution with weights
  1 / b**2 (exact in int8: one weight per channel, stored as 127 times its scale) computes the same
  mean and reads the sigmoid at its own scale.
- Every tensor's range is its largest value on the calibration images, and the converter's ReLU
  activations are heavy-tailed: layer 7's reached 49 while 99.9 % of its values lay below 6.4, so
  its int8 step (0.19) was larger than most of its values, and calibrating on more images made it
  worse. Each ReLU is capped at its ``ACTIVATION_PERCENTILE`` percentile on the calibration images
  (``activation_caps``), as percentile calibration does; the capped values are the rare outliers.
- The sigmoid's input (the logits) is calibrated over its whole range, up to +-50 here, so its
  int8 step (0.43) moved pixels in the sigmoid's steep middle by up to 14 levels. The logits are
  clipped to +-``LOGIT_CLIP`` first: the sigmoid then differs by at most 255 * sigmoid(-8) = 0.09
  levels, and the step is 7 times finer.

With all four, that converter's int8 file passes its gate unchanged (figures in
``convert_to_tflite``'s docstring). Only the full-int8 files are rewritten (float files need none of
it, and stay bit-identical to earlier exports); the parity gate still compares every file with the
unchanged Keras converter, so a cap that changed what the converter sends would fail it.
"""

import keras
import numpy as np
import tensorflow as tf

from dapter_tf.models import OutputBlocks, RepeatBlocks

# Where the logits are clipped before the sigmoid: 255 * sigmoid(-8) = 0.085 levels at most.
LOGIT_CLIP = 8.0
# The percentile of each ReLU layer's activations (zeros included) on the calibration images where
# it is capped: on the first cifar2_10_reference (a Fig. 3 converter) 99.9 gave the int8 file a mean pixel diff of 0.76 levels on
# 2,000 held-out images (200 calibration images), 99.99 gave 0.91 and no cap 1.20.
ACTIVATION_PERCENTILE = 99.9


@keras.saving.register_keras_serializable(package="dapter_tf_export")
class ClipLogits(keras.layers.Layer):
    """Clips logits to +-``limit`` (TFLite's MAXIMUM and MINIMUM), so int8 calibrates them on that range."""

    def __init__(self, limit: float = LOGIT_CLIP, **kwargs):
        super().__init__(**kwargs)
        self.limit = float(limit)

    def call(self, logits):
        return tf.clip_by_value(logits, -self.limit, self.limit)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "limit": self.limit}


def _activation_name(layer) -> str:
    return keras.activations.serialize(layer.activation) if not isinstance(layer.activation, str) else layer.activation


def _block_mean(layer: OutputBlocks, images):
    """``OutputBlocks`` as a depthwise mean (reading the sigmoid at its own int8 scale) and its repeat."""
    block = layer.block
    mean = keras.layers.DepthwiseConv2D(block, strides=block, use_bias=False, name=f"{layer.name}_mean")
    colours = mean(images)
    mean.set_weights([np.full((block, block, images.shape[-1], 1), 1.0 / block**2, np.float32)])
    return RepeatBlocks(block, name=f"{layer.name}_repeat")(colours)


def _convolution(layer: keras.layers.Conv2D, parts: list):
    """``layer`` over the concatenation of ``parts``, as one convolution per part summed, then its activation.

    A sigmoid's logits are clipped first (``ClipLogits``). ``parts`` may be one tensor (no concatenation).
    """
    weights = layer.get_weights()
    kernel, bias = weights[0], (weights[1] if layer.use_bias else None)
    linear = {**layer.get_config(), "activation": "linear"}
    outputs, start = [], 0
    for index, part in enumerate(parts):
        channels = part.shape[-1]
        # Names follow the layer replaced: they end up in the .tflite file (see export.tflite.subpixel).
        name = layer.name if len(parts) == 1 else f"{layer.name}_part{index}"
        with_bias = bias is not None and index == 0
        conv = keras.layers.Conv2D.from_config({**linear, "name": name, "use_bias": with_bias})
        outputs.append(conv(part))
        conv.set_weights([kernel[:, :, start : start + channels]] + ([bias] if with_bias else []))
        start += channels
    logits = outputs[0] if len(outputs) == 1 else keras.layers.Add(name=f"{layer.name}_sum")(outputs)
    activation = _activation_name(layer)
    if activation == "sigmoid":
        logits = ClipLogits(name=f"{layer.name}_clip")(logits)
    if activation == "linear":
        return logits
    return keras.layers.Activation(activation, name=f"{layer.name}_{activation}")(logits)


def _rewritten_convolution(layer, concatenated: dict, args) -> bool:
    """Whether ``layer`` called on ``args`` is a plain Conv2D over a concatenation or ending in a sigmoid."""
    if type(layer) is not keras.layers.Conv2D or len(args) != 1:
        return False
    return id(args[0]) in concatenated or _activation_name(layer) == "sigmoid"


def benefits_from_rewrite(converter: keras.Model) -> bool:
    """Whether a converter's int8 file is rewritten: a Fig. 3 converter with a coarse code (``OutputBlocks``).

    The rewrite was measured where it is applied. A fine code (blocks of 1) passed its gate
    without it and measured no better with it (a spread Fig. 3 converter: 11.1 % of pixels off
    Keras' grid level against 8.9 %); the block encoder (``build_block_converter``) has neither
    tie (no copy connection, no average pool: its repeat is exact in int8) and, untrained and
    spread, measured no better either (mean pixel diff 0.92 against 0.89 at b = 8); trained
    (CelebA Male's b32_wide, 1,000 held-out photos) it measured worse, 1.188 against 0.572. Their
    files stay as they were; a coarse code's int8 file holds its colours through the code margin
    instead (``recipe_search.MARGIN_WEIGHT``, results/export/README.md).
    """
    return any(isinstance(layer, OutputBlocks) for layer in converter.layers)


def _relu_layers(converter: keras.Model) -> list:
    """The converter's convolutions that end in a ReLU (plain, transposed or depthwise)."""
    kinds = (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.DepthwiseConv2D)
    return [layer for layer in converter.layers if isinstance(layer, kinds) and _activation_name(layer) == "relu"]


def activation_caps(
    converter: keras.Model, images: np.ndarray, percentile: float = ACTIVATION_PERCENTILE, batch_size: int = 50
) -> dict:
    """Each ReLU layer's ``percentile`` percentile on ``images``: where ``rewrite_for_int8`` caps it.

    Computed exactly, batch by batch, keeping only each layer's largest values, so that calibration
    sets of any size and image size fit in memory.

    Args:
        converter: The converter (its ``OutputLevels`` may be stripped or not).
        images: uint8 N x H x W x 3 calibration images.
        percentile: In (0, 100]; 100 caps at the largest value, which changes nothing.
        batch_size: Images per forward pass.

    Returns:
        ``{layer name: cap}``.
    """
    layers = _relu_layers(converter)
    if not layers:
        return {}
    probe = keras.Model(converter.inputs[0], [layer.output for layer in layers])
    largest = [np.empty(0, np.float32) for _ in layers]  # Each layer's largest values so far.
    counts = [0] * len(layers)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32) / 255.0
        outputs = probe(batch, training=False)
        for index, values in enumerate(outputs if isinstance(outputs, (list, tuple)) else [outputs]):
            values = np.asarray(values, np.float32).ravel()
            counts[index] += values.size
            # The cap over all images is among the largest (100 - percentile) % of all values, a
            # count known from this batch's size: keep that many (and one more), drop the rest.
            keep = int(len(images) * (values.size // len(batch)) * (100.0 - percentile) / 100.0) + 1
            largest[index] = np.concatenate([largest[index], values])
            if largest[index].size > keep:
                largest[index] = np.partition(largest[index], -keep)[-keep:]
    caps = {}
    for layer, values, count in zip(layers, largest, counts):
        above = int(count * (100.0 - percentile) / 100.0)  # How many values may lie above the cap.
        caps[layer.name] = float(np.sort(values)[::-1][min(above, values.size - 1)])
    return caps


def rewrite_for_int8(converter: keras.Model, caps: dict | None = None) -> keras.Model:
    """``converter`` with the rewrites of this module's docstring: int8-friendly ops, nearly the same function.

    Convolutions over a channel concatenation become one convolution per part, summed; a sigmoid's
    logits are clipped to +-``LOGIT_CLIP``; ``OutputBlocks`` becomes a depthwise mean and its
    repeat; each ReLU layer named in ``caps`` is followed by a cap (``keras.layers.ReLU(max_value)``,
    TFLite's MINIMUM). Every other layer is shared with ``converter``, not copied. A converter
    without any of these comes back unchanged.

    Args:
        converter: A functional converter (``build_converter``, ``build_block_converter``) without
            ``OutputLevels`` (``models.strip_output_levels``).
        caps: ``{layer name: cap}`` (``activation_caps``); None caps nothing.

    Returns:
        A functional model computing the same images, but for capped outliers and at most 0.09
        levels from the logit clip.
    """
    caps = caps or {}
    concatenated = {}  # id(concatenation output) -> its inputs, for the convolution that reads it.

    def call(layer, *args, **kwargs):
        if isinstance(layer, OutputBlocks):
            return _block_mean(layer, args[0])
        if _rewritten_convolution(layer, concatenated, args):
            outputs = _convolution(layer, concatenated.get(id(args[0]), [args[0]]))
        else:
            outputs = layer(*args, **kwargs)
        if isinstance(layer, keras.layers.Concatenate) and layer.axis in (-1, 3):
            concatenated[id(outputs)] = list(args[0])
        if layer.name in caps:
            outputs = keras.layers.ReLU(max_value=caps[layer.name], name=f"{layer.name}_cap")(outputs)
        return outputs

    if not any(isinstance(layer, (OutputBlocks, keras.layers.Concatenate, keras.layers.Conv2D)) for layer in converter.layers):
        return converter
    return keras.models.clone_model(converter, clone_function=lambda layer: layer, call_function=call)

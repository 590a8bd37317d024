"""The reconstruction attackers: generators that map converted images back to the originals.

Registered by name, as SIMBA registers its attacks; ``ReconstructionSpec.architecture`` picks one.

* ``symmetric``: the paper's generator (§5.3), the converter's own eight-layer U-Net with a plain
  sigmoid output, so that it mirrors the converter.
* ``unet``: a much stronger decoder: a four-level U-Net (two 3x3 convolutions with batch norm per
  level, a skip connection at every level), about 16 times the paper generator's parameters at its
  default width.
* ``lookup``: no network: the mean original of each converted training image, or of the nearest one
  (``attacks.lookup``). For a converter that sends few distinct images it is the strongest attacker
  there is; it trains nothing.
"""

import keras

from dapter_tf.errors import DapterError
from dapter_tf.models import build_converter

DEFAULT_UNET_FILTERS = (32, 64, 128, 256)


def build_symmetric_generator(filters, name: str = "reconstructor") -> keras.Model:
    """Builds the generator of §5.3: the converter's architecture, mapping converted images to originals.

    Args:
        filters: Channels at full, half and quarter resolution (the converter's, to mirror it).
        name: The model's name.
    """
    if len(filters) != 3:
        raise DapterError(f"the symmetric generator takes three channel counts, got {filters}")
    return build_converter(filters, name=name, output_step=1)


def _conv_block(x, channels: int, name: str):
    for i in (1, 2):
        x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def build_unet(filters=DEFAULT_UNET_FILTERS, name: str = "unet_decoder") -> keras.Model:
    """Builds a U-Net decoder (Ronneberger et al.) from converted images to originals.

    One level per entry of ``filters``: two 3x3 convolutions (batch norm, ReLU), then 2x2
    max-pooling down to the next level; back up, a 2x2 stride-2 transposed convolution, the
    concatenated skip connection of that level and two more convolutions; a 1x1 sigmoid to RGB.

    Args:
        filters: Channels per level, full resolution first; image sides must be multiples of
            2 ** (len(filters) - 1).
        name: The model's name.
    """
    if len(filters) < 2 or min(filters) < 1:
        raise DapterError(f"a U-Net needs two or more positive channel counts, got {filters}")
    images = keras.Input(shape=(None, None, 3), name="converted")
    x, skips = images, []
    for level, channels in enumerate(filters):
        if level:
            x = keras.layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
        x = _conv_block(x, channels, f"down{level}")
        skips.append(x)
    for level in range(len(filters) - 2, -1, -1):
        x = keras.layers.Conv2DTranspose(filters[level], 2, strides=2, name=f"up{level}_transpose")(x)
        x = keras.layers.Concatenate(name=f"up{level}_skip")([skips[level], x])
        x = _conv_block(x, filters[level], f"up{level}")
    restored = keras.layers.Conv2D(3, 1, activation="sigmoid", name="restored")(x)
    return keras.Model(images, restored, name=name)


# name -> (builder, side multiple the images need given the filters).
RECONSTRUCTORS = {
    "symmetric": (build_symmetric_generator, lambda filters: 4),
    "unet": (build_unet, lambda filters: 2 ** (len(filters) - 1)),
}


# Attackers that are not trained networks (``attacks.lookup``): nothing to build, any image side.
LOOKUP = "lookup"
ATTACKERS = (*RECONSTRUCTORS, LOOKUP)


def check_reconstructor(name: str) -> str:
    """Returns ``name`` if a reconstruction attacker is registered under it; DapterError otherwise."""
    if name not in ATTACKERS:
        raise DapterError(f"unknown reconstruction attacker {name!r}; choose one of: {', '.join(ATTACKERS)}")
    return name


def build_reconstructor(architecture: str, filters, name: str | None = None) -> keras.Model:
    """Builds the registered reconstruction attacker ``architecture`` with ``filters``."""
    builder, _ = RECONSTRUCTORS[check_reconstructor(architecture)]
    return builder(filters, name=name or f"{architecture}_reconstructor")


def side_multiple(architecture: str, filters) -> int:
    """The multiple of which image sides must be for ``architecture`` with ``filters``."""
    if check_reconstructor(architecture) == LOOKUP:
        return 1
    return RECONSTRUCTORS[architecture][1](filters)

"""The image conventions every part of the data flow shares: the reference pixel, the output grid, the sides.

A leaf module (it imports nothing of the project but ``errors``), so that losses, data and models
can all read these conventions without importing one another.
"""

from dapter_tf.errors import DapterError

# I_128 (§4.1) in the [0, 1] pixel range the converter outputs: every pixel (128, 128, 128).
REFERENCE_PIXEL = 128.0 / 255.0
# The converter sends pixels on the grid 128 + k * 16 (OutputLevels). On CIFAR-10 against a ResNet18,
# 4 epochs at lambda 0.95 gave 72.4 % accuracy at 54 % of the originals' entropy where the plain
# sigmoid (step 1) gave 67.5 % at 76 %; docs/design.md, "Training recipe", has the figures.
DEFAULT_OUTPUT_STEP = 16


def grid_levels(images, step: int):
    """The level of the grid 128 + k * ``step`` that each pixel in [0, 1] rounds to, in [0, 1] (``OutputLevels``)."""
    # Imported here: binaries read this module's constants before TensorFlow is imported quietly (cli.runner).
    import tensorflow as tf

    size = step / 255.0
    return tf.clip_by_value(REFERENCE_PIXEL + size * tf.round((images - REFERENCE_PIXEL) / size), 0.0, 1.0)


# The converter's two stride-2 down-samplings, mirrored by two stride-2 up-samplings.
SIDE_MULTIPLE = 4


def check_image_size(height: int, width: int, output_block: int = 1) -> None:
    """Raises DapterError unless both sides are positive multiples of 4 (the converter's down-sampling).

    With output blocks, the sides must be multiples of the block side too.
    """
    if height <= 0 or width <= 0 or height % SIDE_MULTIPLE or width % SIDE_MULTIPLE:
        raise DapterError(
            f"the converter needs image sides that are multiples of {SIDE_MULTIPLE}, got {height}x{width}"
        )
    if height % output_block or width % output_block:
        raise DapterError(f"output blocks of {output_block}x{output_block} pixels do not tile {height}x{width} images")

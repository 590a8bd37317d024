"""The DAPter converter of Fig. 3: a lightweight U-Net that removes what the target does not need."""

import keras

from dapter_tf.errors import DapterError

DEFAULT_FILTERS = (24, 48, 96)
# Two stride-2 down-samplings, mirrored by two stride-2 up-samplings.
SIDE_MULTIPLE = 4


def build_converter(filters=DEFAULT_FILTERS, input_shape=(None, None, 3), name="converter") -> keras.Model:
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

    Returns:
        A functional ``keras.Model`` mapping float32 images in [0, 1] to images of the same shape.
    """
    f_full, f_half, f_quarter = filters
    conv = dict(kernel_size=3, padding="same", activation="relu")
    images = keras.Input(shape=input_shape, name="images")
    x = keras.layers.Conv2D(f_full, name="conv1", **conv)(images)
    x = keras.layers.Conv2D(f_full, name="conv2", **conv)(x)
    copy = keras.layers.Conv2D(f_full, name="conv3", **conv)(x)
    x = keras.layers.Conv2D(f_half, strides=2, name="conv4_down", **conv)(copy)
    x = keras.layers.Conv2D(f_quarter, strides=2, name="conv5_down", **conv)(x)
    x = keras.layers.Conv2DTranspose(f_half, strides=2, name="conv6_up", **conv)(x)
    x = keras.layers.Conv2DTranspose(f_full, strides=2, name="conv7_up", **conv)(x)
    x = keras.layers.Concatenate(name="copy_connection")([copy, x])
    converted = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="conv8_out")(x)
    return keras.Model(images, converted, name=name)


def check_image_size(height: int, width: int) -> None:
    """Raises DapterError unless both sides are positive multiples of 4 (the converter's down-sampling)."""
    if height <= 0 or width <= 0 or height % SIDE_MULTIPLE or width % SIDE_MULTIPLE:
        raise DapterError(
            f"the converter needs image sides that are multiples of {SIDE_MULTIPLE}, got {height}x{width}"
        )

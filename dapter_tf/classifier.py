"""Target (DLIS) models: builders registered by name, and loading a trained target frozen."""

import os

import keras

from dapter_tf.errors import DapterError


def _rescale(images):
    # Targets take [0, 1] pixels, the converter's output range, and centre them themselves, so a
    # target serves converted and original images alike (U2: no change at the backend).
    return keras.layers.Rescaling(2.0, offset=-1.0, name="centre_pixels")(images)


def build_lenet(input_shape, num_classes: int, width: int = 6) -> keras.Model:
    """LeNet as in Table 2: two convolution layers and two fully connected layers.

    Args:
        input_shape: (H, W, 3).
        num_classes: Number of output logits.
        width: Filters of the first convolution (the second has ``width * 8 // 3``, LeNet's 6 and 16).
    """
    images = keras.Input(shape=input_shape, name="images")
    x = _rescale(images)
    x = keras.layers.Conv2D(width, 5, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(width * 8 // 3, 5, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(120, activation="relu", name="fc1")(x)
    logits = keras.layers.Dense(num_classes, name="fc2_logits")(x)
    return keras.Model(images, logits, name="lenet")


def _residual_block(x, filters: int, strides: int, name: str):
    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    if strides != 1 or shortcut.shape[-1] != filters:
        # 1x1 projection where the residual changes size, as in He et al.'s option B.
        shortcut = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def build_resnet18(input_shape, num_classes: int, width: int = 64) -> keras.Model:
    """ResNet18, CIFAR variant: a 3x3 stem without max-pooling, four stages of two basic blocks.

    Args:
        input_shape: (H, W, 3).
        num_classes: Number of output logits.
        width: Filters of the first stage (64 in He et al.; 16 or 32 trains on a CPU).
    """
    images = keras.Input(shape=input_shape, name="images")
    x = _rescale(images)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    for stage, multiplier in enumerate((1, 2, 4, 8)):
        for block in range(2):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, width * multiplier, strides, name=f"stage{stage + 1}_block{block + 1}")
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(images, logits, name="resnet18")


TARGET_BUILDERS = {
    "lenet": (build_lenet, 6),
    "resnet18": (build_resnet18, 64),
}


def check_target_name(name: str) -> str:
    """Returns ``name`` if a target builder is registered under it; raises DapterError otherwise."""
    if name not in TARGET_BUILDERS:
        raise DapterError(f"unknown target model {name!r}; choose one of: {', '.join(sorted(TARGET_BUILDERS))}")
    return name


def build_target(name: str, input_shape, num_classes: int, width: int | None = None) -> keras.Model:
    """Builds the registered target model ``name``.

    Args:
        name: A key of ``TARGET_BUILDERS``.
        input_shape: (H, W, 3).
        num_classes: Number of output logits.
        width: The model's width; its builder's default when ``None``.

    Raises:
        DapterError: if ``name`` is not registered or ``width`` is not positive.
    """
    builder, default_width = TARGET_BUILDERS[check_target_name(name)]
    width = default_width if width is None else width
    if width <= 0:
        raise DapterError(f"target width must be positive, got {width}")
    return builder(input_shape, num_classes, width=width)


def freeze(model: keras.Model) -> keras.Model:
    """Marks ``model`` untrainable: the provider's target never changes while the converter trains."""
    model.trainable = False
    return model


def load_model_file(path: str, what: str) -> keras.Model:
    """Loads a ``.keras`` file safely: ``safe_mode=True`` refuses to deserialise code (Lambda layers).

    Args:
        path: The file.
        what: What it should hold ("target model", "converter"), named in errors.

    Raises:
        DapterError: if the file is missing or is not a loadable Keras model.
    """
    if not os.path.isfile(path):
        raise DapterError(f"{what} file not found: {path}")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad file; all mean the same to the user.
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise DapterError(f"{path}: not a loadable .keras model ({type(e).__name__}: {first_line})") from None


def load_target(path: str) -> keras.Model:
    """Loads a trained target from a ``.keras`` file, safely (a target may come from elsewhere) and frozen.

    Raises:
        DapterError: if the file is missing or is not a loadable Keras model.
    """
    return freeze(load_model_file(path, "target model"))

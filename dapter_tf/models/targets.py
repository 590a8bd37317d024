"""Target (DLIS) models: builders registered by name, and loading a trained target frozen."""

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


def _resnet_stem(x, width: int, imagenet: bool):
    if imagenet:
        # He et al.'s stem for 224x224 inputs: 7x7 stride 2, then 3x3 max-pooling stride 2.
        x = keras.layers.Conv2D(width, 7, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
        x = keras.layers.BatchNormalization(name="stem_bn")(x)
        x = keras.layers.ReLU()(x)
        return keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    # The CIFAR variant: 32x32 inputs keep their resolution through a 3x3 stem.
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    return keras.layers.ReLU()(x)


def _bottleneck_block(x, filters: int, strides: int, name: str):
    # ResNet50's block: 1x1 reduce, 3x3, 1x1 expand to 4x the filters (He et al., Table 1).
    shortcut = x
    y = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_conv1")(x)
    y = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"{name}_bn1")(y))
    y = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"{name}_bn2")(y))
    y = keras.layers.Conv2D(4 * filters, 1, use_bias=False, name=f"{name}_conv3")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn3")(y)
    if strides != 1 or shortcut.shape[-1] != 4 * filters:
        shortcut = keras.layers.Conv2D(4 * filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def _build_resnet(input_shape, num_classes, width, blocks, block_fn, imagenet, name):
    images = keras.Input(shape=input_shape, name="images")
    x = _resnet_stem(_rescale(images), width, imagenet)
    for stage, count in enumerate(blocks):
        for block in range(count):
            strides = 2 if stage > 0 and block == 0 else 1
            x = block_fn(x, width * 2**stage, strides, name=f"stage{stage + 1}_block{block + 1}")
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(images, logits, name=name)


def build_resnet18(input_shape, num_classes: int, width: int = 64, imagenet: bool = False) -> keras.Model:
    """ResNet18: a stem, then four stages of two basic blocks (18 weighted layers).

    Args:
        input_shape: (H, W, 3).
        num_classes: Number of output logits.
        width: Filters of the first stage (64 in He et al.; 16 or 32 trains on a CPU).
        imagenet: He et al.'s 224x224 stem (7x7 stride 2 + max-pooling) instead of the CIFAR
            variant's 3x3 stem without pooling.
    """
    name = "resnet18_imagenet" if imagenet else "resnet18"
    return _build_resnet(input_shape, num_classes, width, (2, 2, 2, 2), _residual_block, imagenet, name)


def build_resnet50(input_shape, num_classes: int, width: int = 64, imagenet: bool = False) -> keras.Model:
    """ResNet50: a stem, then stages of 3, 4, 6 and 3 bottleneck blocks (50 weighted layers).

    Args: as ``build_resnet18``; the last stage outputs ``32 * width`` channels.
    """
    name = "resnet50_imagenet" if imagenet else "resnet50"
    return _build_resnet(input_shape, num_classes, width, (3, 4, 6, 3), _bottleneck_block, imagenet, name)


# Simonyan & Zisserman's configurations A (VGG11) and D (VGG16): filters in units of the first
# stage's width, "M" a 2x2 max-pooling.
VGG_LAYERS = {
    "vgg11": (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"),
    "vgg16": (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"),
}


def _build_vgg(input_shape, num_classes, width, config: str, imagenet: bool):
    images = keras.Input(shape=input_shape, name="images")
    x = _rescale(images)
    conv, pool = 0, 0
    for item in VGG_LAYERS[config]:
        if item == "M":
            pool += 1
            x = keras.layers.MaxPooling2D(2, name=f"pool{pool}")(x)
            continue
        conv += 1
        x = keras.layers.Conv2D(width * item, 3, padding="same", use_bias=False, name=f"conv{conv}")(x)
        # Batch norm after each convolution (the "_bn" variants of torchvision): plain VGG does not
        # train from scratch in a few epochs.
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"conv{conv}_bn")(x))
    x = keras.layers.Flatten()(x)
    # Three fully connected layers: 4096-4096-classes at 224x224; the CIFAR form's 1x1x512 maps
    # need only 512-wide ones. Both scale with ``width`` (64 is the paper's size).
    hidden = (4096 if imagenet else 512) * width // 64
    for i in (1, 2):
        x = keras.layers.Dense(max(hidden, 8), activation="relu", name=f"fc{i}")(x)
        x = keras.layers.Dropout(0.5)(x)
    logits = keras.layers.Dense(num_classes, name="fc3_logits")(x)
    return keras.Model(images, logits, name=f"{config}_imagenet" if imagenet else config)


def build_vgg11(input_shape, num_classes: int, width: int = 64, imagenet: bool = False) -> keras.Model:
    """VGG11 (configuration A): 8 convolution layers and 3 fully connected layers (Table 2).

    Args:
        input_shape: (H, W, 3); sides must survive five 2x2 poolings (32 or more).
        num_classes: Number of output logits.
        width: Filters of the first convolution (64 in the original).
        imagenet: 4096-wide fully connected layers for 224x224 inputs (7x7x512 maps), instead of
            the CIFAR form's 512-wide ones.
    """
    return _build_vgg(input_shape, num_classes, width, "vgg11", imagenet)


def build_vgg16(input_shape, num_classes: int, width: int = 64, imagenet: bool = False) -> keras.Model:
    """VGG16 (configuration D): 13 convolution layers and 3 fully connected layers. Args: as ``build_vgg11``."""
    return _build_vgg(input_shape, num_classes, width, "vgg16", imagenet)


# Registry: name -> (builder, default width, builder keyword arguments, image side it is made for).
# The paper uses LeNet and the CIFAR forms on 32x32 Cifar images and the ImageNet forms on 224x224.
TARGET_BUILDERS = {
    "lenet": (build_lenet, 6, {}, 32),
    "vgg11": (build_vgg11, 64, {}, 32),
    "vgg16": (build_vgg16, 64, {}, 32),
    "resnet18": (build_resnet18, 64, {}, 32),
    "resnet50": (build_resnet50, 64, {}, 32),
    "vgg11_imagenet": (build_vgg11, 64, {"imagenet": True}, 224),
    "vgg16_imagenet": (build_vgg16, 64, {"imagenet": True}, 224),
    "resnet18_imagenet": (build_resnet18, 64, {"imagenet": True}, 224),
    "resnet50_imagenet": (build_resnet50, 64, {"imagenet": True}, 224),
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
    builder, default_width, kwargs, _ = TARGET_BUILDERS[check_target_name(name)]
    width = default_width if width is None else width
    if width <= 0:
        raise DapterError(f"target width must be positive, got {width}")
    smallest = 32 if name.startswith("vgg") or name.endswith("_imagenet") else 8
    if min(input_shape[:2]) < smallest:
        raise DapterError(
            f"{name} needs images of at least {smallest}x{smallest}, got {input_shape[0]}x{input_shape[1]}"
        )
    return builder(input_shape, num_classes, width=width, **kwargs)

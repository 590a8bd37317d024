"""MobileNetV2 1.0 int8: the model every converter's latency is set beside.

App teams judge a model's cost by one they already know runs on their phones, and the one every
Android team knows is MobileNetV2. ``export_yardstick`` builds ``keras.applications.MobileNetV2``
(alpha 1.0, ``weights=None``: seeded random weights, since latency does not depend on what a model
learned) at a converter's input size and converts it to full int8 with uint8 pixels in and out, the
form of a converter's int8 file. ``benchmark_lib.benchmark_interleaved`` times it beside the
converters, one run of each in turn, so that a shared machine's load falls on all of them alike.

A converter's latency divided by the yardstick's, measured on one machine, carries over to another
better than either latency alone. ``implied_phone_ms`` turns the ratio into an *estimate* on phones
whose MobileNetV2 latency is published (``PUBLISHED_LATENCIES``, each with its source).
"""

import dataclasses

import keras
import numpy as np

from dapter_tf import DapterError

# The yardstick's name in every table and result file.
YARDSTICK_NAME = "MobileNetV2 1.0 int8"
# The file name the Android harness and the adb driver give the yardstick on the phone.
YARDSTICK_FILE = "mobilenet_v2_1.0_int8.tflite"
# Random images calibrate its activation ranges: its weights are random too, and only its cost matters.
CALIBRATION_IMAGES = 8


@dataclasses.dataclass(frozen=True)
class PublishedLatency:
    """A phone's published MobileNetV2 1.0 224x224 int8 latency.

    Attributes:
        device: The phone.
        threads: CPU threads it ran on.
        ms: Its latency in milliseconds.
        source: Where the figure is published.
    """

    device: str
    threads: int
    ms: float
    source: str


PUBLISHED_LATENCIES = (
    PublishedLatency(
        device="Pixel 3",
        threads=4,
        ms=12.0,
        source="TensorFlow Lite hosted models page (Mobilenet_V2_1.0_224_quant)",
    ),
)


def build_yardstick(image_size, seed: int = 0) -> keras.Model:
    """MobileNetV2 1.0 with seeded random weights, taking H x W x 3 pixels in [0, 1] as a converter does.

    Args:
        image_size: (height, width), each >= 32 (MobileNetV2 halves the image five times).
        seed: Seeds the weights.

    Returns:
        A batch-1 Keras model from [0, 1] pixels (mapped to MobileNetV2's [-1, 1] inside) to 1,000
        class probabilities.
    """
    height, width = (int(s) for s in image_size)
    if min(height, width) < 32:
        raise DapterError(f"the MobileNetV2 yardstick needs images of at least 32x32, got {height}x{width}")
    keras.utils.set_random_seed(seed)
    images = keras.Input(shape=(height, width, 3), batch_size=1, name="images")
    # weights=None: nothing is downloaded; the architecture alone sets the cost.
    mobilenet = keras.applications.MobileNetV2(input_shape=(height, width, 3), alpha=1.0, weights=None)
    return keras.Model(images, mobilenet(keras.layers.Rescaling(2.0, offset=-1.0)(images)), name="yardstick")


def export_yardstick(image_size, seed: int = 0) -> bytes:
    """The yardstick as a full-int8 ``.tflite`` file with uint8 pixels in and out (see ``build_yardstick``)."""
    from export.tflite import export_tflite_lib

    model = build_yardstick(image_size, seed)
    height, width = model.input_shape[1:3]
    rng = np.random.default_rng(seed)
    calibration = rng.random((CALIBRATION_IMAGES, 1, height, width, 3), dtype=np.float32)

    def representative():
        for image in calibration:
            yield [image]

    return export_tflite_lib.convert_keras_model(model, "int8", representative)


def implied_phone_ms(ratio: float) -> list[dict]:
    """An estimate, per published phone, of a converter's latency from its ratio to the yardstick.

    Args:
        ratio: The converter's latency over the yardstick's, both measured on one machine at the
            published size (224x224).

    Returns:
        One dict per ``PUBLISHED_LATENCIES`` entry with its fields and ``estimate_ms``.
    """
    if not ratio > 0:
        raise DapterError(f"a latency ratio must be > 0, got {ratio}")
    return [{**dataclasses.asdict(p), "estimate_ms": ratio * p.ms} for p in PUBLISHED_LATENCIES]


# The size at which phones' MobileNetV2 latencies are published, and so the size a card's estimate is made at.
PHONE_SIZE = 224
# Timed runs of each file when a release measures its converter's cost (interleaved; the fastest counts).
COST_RUNS = 20


def measure_converter_cost(converter: keras.Model, images: np.ndarray, num_runs: int = COST_RUNS) -> dict:
    """A converter's cost at ``PHONE_SIZE`` beside the yardstick, on this host, as a card states it.

    Both are exported as full-int8 files with uint8 pixels in and out and timed interleaved at 1
    thread with XNNPACK (``benchmark_lib.benchmark_interleaved``).

    Args:
        converter: The trained converter (fully convolutional: it runs at any size its code divides;
            the smallest such size >= ``PHONE_SIZE`` is used, 256 for blocks of 64).
        images: uint8 N x H x W x 3 real images of the task; resized to that size, the first
            calibrate the converter's int8 file and the first one is timed.
        num_runs: Timed runs of each file.

    Returns:
        ``gmac`` (counted on the converter's int8 file), ``ratio`` (its fastest run over the
        yardstick's), ``image_size``, ``num_threads``, ``num_runs``, ``cpu`` and ``phones``
        (``implied_phone_ms`` of the ratio).
    """
    import tensorflow as tf

    from dapter_tf.models import output_block_of
    from export.benchmark import benchmark_lib
    from export.tflite import export_tflite_lib

    # The nearest size at or above PHONE_SIZE that Fig. 3's two halvings and the code's blocks divide
    # (both powers of two); the yardstick is timed at the same size, so the ratio still holds.
    multiple = max(4, output_block_of(converter))
    side = -(-PHONE_SIZE // multiple) * multiple
    size = (side, side)
    resized = tf.image.resize(images[:200], size).numpy().round().clip(0, 255).astype(np.uint8)
    files = {
        "converter": export_tflite_lib.convert_to_tflite(converter, "int8", size, resized),
        YARDSTICK_NAME: export_yardstick(size),
    }
    config = benchmark_lib.BenchmarkConfig(num_threads=1, warmup_runs=2, num_runs=num_runs)
    stats = benchmark_lib.benchmark_interleaved(files, config, {"converter": benchmark_lib.image_input(resized[0])})
    ratio = stats["converter"]["min_us"] / stats[YARDSTICK_NAME]["min_us"]
    return {
        "gmac": sum(benchmark_lib.tflite_macs(files["converter"]).values()) / 1e9,
        "ratio": ratio,
        "image_size": side,
        "num_threads": 1,
        "num_runs": num_runs,
        "cpu": benchmark_lib.cpu_name(),
        "phones": implied_phone_ms(ratio),
    }

"""Shared fixtures: real data from ../shared/data, tiny models, and a runner for the binaries."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import preloaded_binaries  # noqa: E402  (tests/ is on the path, as for this file)
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DAPTER_SHARED_DATA", REPO.parent / "shared" / "data"))
CIFAR10_TEST = SHARED_DATA / "cifar10" / "test.npz"
CIFAR10_TRAIN = SHARED_DATA / "cifar10" / "train_20k.npz"
# The files of every release bundle (export.release): both test_release files check them.
BUNDLE_FILES = {
    "converter.keras",
    "converter_float32.tflite",
    "converter_int8.tflite",
    "model_card.md",
    "manifest.json",
}


def pytest_configure(config):
    # Split the CPU into two logical devices before TensorFlow starts its runtime, so that a
    # MirroredStrategy test runs two real replicas on a machine without GPUs.
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def require_shared(path: Path) -> Path:
    """Skips the calling test, saying why, when ``path`` (under ../shared/data) is absent."""
    if not path.exists():
        pytest.skip(f"needs {path}: the shared real data sits beside the repository in CI, not in a fresh clone")
    return path


@pytest.fixture(scope="session")
def cifar10_test_npz() -> Path:
    return require_shared(CIFAR10_TEST)


@pytest.fixture(scope="session")
def embedded():
    """The embedded real CIFAR-10 sample: (train, test) ImageSets."""
    from dapter_tf import data

    return data.load_embedded("train"), data.load_embedded("test")


@pytest.fixture(scope="session")
def tiny_target_path(tmp_path_factory) -> str:
    """An untrained width-4 ResNet18 (with batch norm) saved as .keras, for 32x32 CIFAR-10."""
    from dapter_tf.models import targets

    keras_path = str(tmp_path_factory.mktemp("target") / "target.keras")
    tf.keras.utils.set_random_seed(0)
    targets.build_target("resnet18", (32, 32, 3), 10, width=4).save(keras_path)
    return keras_path


@pytest.fixture(scope="session")
def int8_export(tmp_path_factory, embedded) -> Path:
    """A folder as ``dapter-export-tflite`` writes one: a full-int8 ``converter_int8.tflite`` and its export.json.

    The converter is Fig. 3's, untrained and spread over the grid of step 16 (``spread_converter``),
    calibrated on the embedded real sample. The file carries no contract in its metadata, as files
    exported before the contract did, so its grid is known only from the folder's export.json.
    (The committed reference releases ship no full-int8 file: both broke its parity gate.)
    """
    import json

    from export.tflite import export_tflite_lib

    train_set, _ = embedded
    folder = tmp_path_factory.mktemp("int8_export")
    converter = spread_converter(10.0, seed=1, output_step=16)
    model_bytes = export_tflite_lib.convert_to_tflite(converter, "int8", (32, 32), train_set.images, 16)
    (folder / "converter_int8.tflite").write_bytes(model_bytes)
    (folder / "export.json").write_text(json.dumps({"image_size": [32, 32], "output_step": 16}))
    return folder


def save_npz(path: Path, x, y=None) -> str:
    """Writes an .npz with ``x`` and ``y`` (labels 0..9 cycling when ``y`` is None)."""
    x = np.asarray(x)
    if y is None:
        y = np.arange(len(x)) % 10
    np.savez(path, x=x, y=np.asarray(y))
    return str(path)


def run_binary(module: str, *args: str, timeout: float = 300, fresh: bool = False) -> subprocess.CompletedProcess:
    """Runs ``python -m module args`` from the repository root, the way a user runs a binary.

    The binary runs in its own process, forked from one that has already imported TensorFlow
    (``preloaded_binaries``), which saves the suite about 4 s a binary. ``fresh=True`` starts a new
    Python instead, for the tests of a binary's own start-up (its quiet TensorFlow import).
    """
    if not fresh:
        return preloaded_binaries.run(module, list(args), str(REPO), timeout)
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def assert_one_error_line(proc: subprocess.CompletedProcess, message: str) -> None:
    """Checks that a binary failed with exactly one ``error: ...`` line on stderr containing ``message``."""
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # One clear line: no traceback, no TensorFlow chatter.
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


def assert_float_tflite_matches_keras(converter, images) -> np.ndarray:
    """Checks that ``converter``'s float32 ``.tflite`` at 32x32 sends what Keras sends for uint8 ``images``.

    Every pixel within one output grid step (16 levels: a value on a midpoint may round either way)
    and fewer than 1 % of them different. Returns Keras' pixels (0..255, on the grid).
    """
    from ai_edge_litert.interpreter import Interpreter

    from export.tflite import export_tflite_lib

    keras_pixels = np.round(converter(images.astype(np.float32) / 255.0).numpy() * 255.0)
    assert (((keras_pixels - 128) % 16 == 0) | (keras_pixels == 255)).all()  # On the grid, as every converter's output.
    interpreter = Interpreter(model_content=export_tflite_lib.convert_to_tflite(converter, "float32", (32, 32)))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for image, expected in zip(images, keras_pixels):
        interpreter.set_tensor(inp["index"], image[None].astype(np.float32) / 255.0)
        interpreter.invoke()
        got = np.round(interpreter.get_tensor(out["index"])[0] * 255.0)
        assert np.abs(got - expected).max() <= 16
        assert np.mean(got != expected) < 0.01
    return keras_pixels


def tiny_dapter_config(target_path=None, **overrides):
    """A DapterConfig for seconds-long runs on the embedded sample: a (4, 8, 8) converter, 1 epoch."""
    from dapter_tf import train
    from dapter_tf.data import DataConfig

    values = dict(
        data=DataConfig(),
        target_path=target_path,
        filters=(4, 8, 8),
        epochs=1,
        batch_size=32,
        eval_images=32,
        augment=False,
        checkpoint_every_steps=2,
    )
    values.update(overrides)
    return train.DapterConfig(**values)


def spread_converter(scale: float, seed: int = 0, **build_kwargs):
    """An untrained converter whose last convolution is scaled by ``scale``.

    An untrained converter sends near-flat grey; scaling its output layer spreads the pixels over
    the grid, so tests of the grid and of export parity have something to compare.
    """
    import keras

    from dapter_tf.models import build_converter

    keras.utils.set_random_seed(seed)
    converter = build_converter(**build_kwargs)
    out = converter.get_layer("conv8_out")
    kernel, bias = out.get_weights()
    out.set_weights([kernel * scale, bias])
    return converter


def kill_at_first_checkpoint(module: str, args: list, workdir: Path) -> None:
    """Starts the binary ``module`` with ``args`` and SIGKILLs it once it has saved a checkpoint in ``workdir``."""
    import signal
    import time

    child = preloaded_binaries.start(module, args, str(REPO))
    index = workdir / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 240
    while not index.exists() and child.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.exitcode is None, "the run ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL

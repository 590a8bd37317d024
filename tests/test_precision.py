"""--mixed_precision and --xla on CPU: they run, and they agree with plain float32 within stated tolerances."""

import numpy as np
import pytest
from conftest import tiny_dapter_config

from dapter_tf import DapterError, models, train
from dapter_tf.data.tasks import get_task
from dapter_tf.models.converter import build_converter
from dapter_tf.train.precision import computing_in

TASK = get_task("cifar10")
# bfloat16 keeps 8 bits of mantissa (a relative step of 2**-8 = 0.4 %): after 8 Adam steps of 1e-3
# the weights differ by a few thousandths (2.7e-3 measured) and the mean loss by far less.
BF16_WEIGHTS = 1e-2
BF16_LOSS = 1e-3
# XLA fuses the same float32 arithmetic in another order: a few ulps.
XLA_WEIGHTS = 1e-6


@pytest.fixture(scope="module")
def float32_run(embedded, tiny_target_path, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("float32"))
    return _train(embedded, tiny_target_path, workdir), workdir


def _train(embedded, target_path, workdir, **overrides):
    train_set, test_set = embedded[0].take(128), embedded[1].take(32)
    config = tiny_dapter_config(target_path, epochs=2, **overrides)
    return train.train_dapter(config, TASK, train_set, test_set, workdir)


def _max_weight_difference(a: str, b: str) -> float:
    pairs = zip(models.load_converter(a).get_weights(), models.load_converter(b).get_weights(), strict=True)
    return max(float(np.max(np.abs(x - y))) for x, y in pairs)


def test_a_bfloat16_converter_computes_in_bfloat16_but_sends_float32_pixels():
    with computing_in("bfloat16"):
        converter = build_converter((4, 8, 8))
    assert converter.get_layer("conv1").compute_dtype == "bfloat16"
    assert converter.get_layer("conv8_out").compute_dtype == "float32"
    assert converter.get_layer("output_levels").compute_dtype == "float32"
    assert all(w.dtype == "float32" for w in converter.weights)
    assert build_converter((4, 8, 8)).get_layer("conv1").compute_dtype == "float32"  # The policy is restored.


def test_bfloat16_training_agrees_with_float32(embedded, tiny_target_path, float32_run, tmp_path):
    reference, reference_dir = float32_run
    results = _train(embedded, tiny_target_path, str(tmp_path), mixed_precision="bfloat16")
    assert results["steps"] == reference["steps"] == 8
    assert results["train/L_dap"] == pytest.approx(reference["train/L_dap"], rel=BF16_LOSS)
    assert 0 < _max_weight_difference(str(tmp_path), reference_dir) < BF16_WEIGHTS  # Not float32 in disguise.
    assert models.load_converter(str(tmp_path)).dtype_policy.name == "float32"  # What export reads.


def test_xla_training_agrees_with_float32(embedded, tiny_target_path, float32_run, tmp_path):
    reference, reference_dir = float32_run
    results = _train(embedded, tiny_target_path, str(tmp_path), xla=True)
    assert results["train/L_dap"] == pytest.approx(reference["train/L_dap"], rel=1e-6)
    assert _max_weight_difference(str(tmp_path), reference_dir) < XLA_WEIGHTS


def test_bfloat16_target_training_saves_a_float32_target(embedded, tmp_path):
    train_set, test_set = embedded[0].take(64), embedded[1].take(16)
    config = train.TargetConfig(model="resnet18", width=4, epochs=1, batch_size=32, mixed_precision="bfloat16")
    results = train.train_target(config, TASK, train_set, test_set, str(tmp_path))
    assert results["steps"] == 2 and np.isfinite(results["train/loss"])
    assert models.load_target(str(tmp_path / "target.keras")).dtype_policy.name == "float32"


def test_xla_over_several_cpu_replicas_is_refused_before_writing(embedded, tiny_target_path, tmp_path):
    with pytest.raises(DapterError, match="--xla cannot compile the all-reduce of several CPU replicas") as caught:
        _train(embedded, tiny_target_path, str(tmp_path / "run"), xla=True, strategy="mirrored")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_float16_is_refused_in_one_line():
    with pytest.raises(DapterError, match="mixed_precision must be one of float32, bfloat16, got 'float16'"):
        tiny_dapter_config("target.keras", mixed_precision="float16")

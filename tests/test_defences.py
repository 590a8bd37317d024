"""The defences beyond the paper: the online decoders of the adversarial defence, and the coarse output code."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import kill_at_first_checkpoint, run_binary, tiny_dapter_config

from dapter_tf import DapterError, models, train
from dapter_tf.data.tasks import get_task
from dapter_tf.defences import adversarial
from dapter_tf.defences.adversarial import AdversarialDecoders, AdversaryConfig
from dapter_tf.models import build_converter, check_image_size, output_block_of, strip_output_levels
from dapter_tf.records import runs
from export.tflite import export_tflite_lib
from export.tflite.interpreter import run_tflite

TASK = get_task("cifar10")


def _constant_decoder(value: float) -> keras.Model:
    """A decoder that sends back ``value`` in every pixel, whatever it is given."""
    images = keras.Input(shape=(None, None, 3))
    layer = keras.layers.Conv2D(3, 1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(value))
    return keras.Model(images, layer(images))


def _decoders(*values) -> AdversarialDecoders:
    adversary = AdversarialDecoders(
        AdversaryConfig(weight=1.0, decoders=len(values)), np.full((2, 2, 3), 0.5, np.float32), global_batch_size=1
    )
    adversary.decoders = [_constant_decoder(v) for v in values]
    return adversary


def test_penalty_is_the_strongest_decoders_gain_over_the_mean_image_by_hand():
    # One 2x2 white image; the mean image is grey 0.5, so e0 = (1 - 0.5)^2 = 0.25, and E0 = 0.25.
    white = tf.ones((1, 2, 2, 3))
    converted = tf.zeros((1, 2, 2, 3))  # The constant decoders ignore it.
    # A decoder sending the image back exactly: error 0, gain relu(0.25 - 0) / 0.25 = 1.
    assert float(_decoders(1.0).penalty(converted, white, 0.25)[0]) == pytest.approx(1.0)
    # Sending 0.75 everywhere: error 0.0625, gain (0.25 - 0.0625) / 0.25 = 0.75.
    assert float(_decoders(0.75).penalty(converted, white, 0.25)[0]) == pytest.approx(0.75)
    # The mean image itself gains nothing; worse than the mean image (black: error 1) is clipped to
    # 0, so the converter earns nothing by making a decoder worse than knowing nothing.
    assert float(_decoders(0.5).penalty(converted, white, 0.25)[0]) == pytest.approx(0.0)
    assert float(_decoders(0.0).penalty(converted, white, 0.25)[0]) == pytest.approx(0.0)
    # The strongest of several decoders counts; E0 is the unit.
    assert float(_decoders(0.0, 0.75, 0.5).penalty(converted, white, 0.25)[0]) == pytest.approx(0.75)
    assert float(_decoders(0.75).penalty(converted, white, 0.5)[0]) == pytest.approx(0.375)


def test_penalty_gradient_reaches_the_converter_and_a_decoder_step_lowers_its_error(embedded):
    keras.utils.set_random_seed(0)
    converter = build_converter((4, 8, 8), output_block=2)
    images = tf.constant(embedded[0].images[:8], tf.float32) / 255.0
    adversary = AdversarialDecoders(
        AdversaryConfig(weight=1.0, filters=(4, 8)), np.full((32, 32, 3), 0.45, np.float32), global_batch_size=8
    )
    with tf.GradientTape() as tape:
        penalty = tf.reduce_mean(adversary.penalty(converter(images, training=True), images, 0.06))
    grads = tape.gradient(penalty, converter.trainable_variables)
    assert all(g is not None for g in grads)
    converted = converter(images)
    first = [float(adversary.train_step(converted, images)[f"adversary_{k}_mse"]) for k in range(2)]
    for _ in range(20):
        last = adversary.train_step(converted, images)
    assert float(last["adversary_0_mse"]) < first[0] and float(last["adversary_1_mse"]) < first[1]


def test_restarts_are_staggered_and_reproduce_the_seeded_weights():
    adversary = AdversarialDecoders(
        AdversaryConfig(weight=1.0, decoders=2, filters=(4, 8), restart_every=10),
        np.zeros((8, 8, 3), np.float32),
        global_batch_size=4,
        seed=3,
    )
    due = {step: adversary.restart_due(step) for step in range(1, 21)}
    assert {step: d for step, d in due.items() if d} == {5: [1], 10: [0], 15: [1], 20: [0]}
    assert (
        AdversarialDecoders(
            AdversaryConfig(weight=1.0, restart_every=0), np.zeros((8, 8, 3), np.float32), 4
        ).restart_due(500)
        == []
    )
    # Decoder 0 starts from seed (3 * 64 + 0) * 4096 + 0; its first restart (step 10) from ... + 1.
    initial = adversarial.build_training_decoder((4, 8), (3 * 64) * 4096)
    for a, b in zip(initial.get_weights(), adversary.decoders[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    images = tf.random.uniform((4, 8, 8, 3), seed=1)
    adversary.train_step(images, images)
    optimizer = adversary.optimizers[0]
    rate = float(optimizer.learning_rate)
    adversary.restart(0, 10)
    fresh = adversarial.build_training_decoder((4, 8), (3 * 64) * 4096 + 1)
    for a, b in zip(fresh.get_weights(), adversary.decoders[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(a != b) for a, b in zip(fresh.get_weights(), initial.get_weights()))
    assert int(optimizer.iterations) == 0 and float(optimizer.learning_rate) == rate
    moments = [v for v in optimizer.variables if v.name.endswith(("_momentum", "_velocity"))]
    assert moments and all(not np.any(v.numpy()) for v in moments)
    assert int(adversary.optimizers[1].iterations) == 1  # The other decoder keeps its state.


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"weight": -1.0}, "adversary weight must be >= 0"),
        ({"decoders": 0}, "adversary decoders must be >= 1"),
        ({"filters": (8,)}, "two positive channel counts"),
        ({"restart_every": -5}, "restart_every must be >= 0"),
        ({"decoders": 3, "restart_every": 2}, "restart_every (2) must be at least decoders (3)"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"decoder_steps": 0}, "decoder_steps must be >= 1"),
    ],
)
def test_adversary_config_validates(fields, message):
    with pytest.raises(DapterError, match=message.replace("(", "\\(").replace(")", "\\)")):
        AdversaryConfig(**fields)


def test_output_blocks_send_one_colour_per_block_on_the_grid(embedded):
    keras.utils.set_random_seed(0)
    converter = build_converter((4, 8, 8), output_block=8)
    out = converter.get_layer("conv8_out")
    kernel, bias = out.get_weights()
    out.set_weights([kernel * 30.0, bias])  # Spread the output over the grid.
    sent = np.round(converter.predict(embedded[1].images[:4].astype(np.float32) / 255.0, verbose=0) * 255)
    blocks = sent.reshape(4, 4, 8, 4, 8, 3)
    assert np.all(blocks == blocks[:, :, :1, :, :1, :])  # Constant within every 8x8 block.
    assert len(np.unique(sent)) > 2 and np.all((sent - 128) % 16 == 0)
    assert output_block_of(converter) == 8 and output_block_of(build_converter((4, 8, 8))) == 1
    # Int8 export ends before the grid but keeps the blocks.
    stripped = strip_output_levels(converter)
    assert stripped.output.shape[1:] == converter.output.shape[1:]
    assert "output_blocks" in {layer.name for layer in stripped.layers}


def test_output_blocks_must_tile_the_image_and_be_a_power_of_two():
    with pytest.raises(DapterError, match="output_block must be a power of two in 1..64"):
        build_converter((4, 8, 8), output_block=6)
    with pytest.raises(DapterError, match="output blocks of 16x16 pixels do not tile 40x40 images"):
        check_image_size(40, 40, 16)
    check_image_size(32, 32, 16)


def test_a_block_converter_exports_to_tflite_and_matches_keras(embedded):
    keras.utils.set_random_seed(1)
    converter = build_converter((4, 8, 8), output_block=4)
    out = converter.get_layer("conv8_out")
    kernel, bias = out.get_weights()
    out.set_weights([kernel * 20.0, bias])
    images = embedded[1].images[:20]
    keras_pixels = np.round(converter.predict(images.astype(np.float32) / 255.0, verbose=0) * 255).astype(np.uint8)
    lite = export_tflite_lib.convert_to_tflite(converter, "float32", (32, 32))
    tflite_pixels = run_tflite(lite, images)
    assert np.mean(tflite_pixels != keras_pixels) < 0.01  # Only ties at a grid midpoint may differ.


def test_workdir_record_without_the_new_fields_resumes_with_their_defaults(tmp_path):
    config = tiny_dapter_config("t.keras")
    record = runs.config_to_dict(config)
    for new in ("output_block", "adversary"):
        del record[new]
    os.makedirs(tmp_path / "old")
    (tmp_path / "old" / "config.json").write_text(json.dumps(record))
    runs.prepare_workdir(str(tmp_path / "old"), config)  # A run made before the defences existed.
    (tmp_path / "old" / "config.json").write_text(json.dumps(record))
    with pytest.raises(DapterError, match="differs in: adversary"):
        runs.prepare_workdir(str(tmp_path / "old"), tiny_dapter_config("t.keras", adversary=AdversaryConfig(1.0)))


def test_defended_training_logs_both_players_and_leaves_the_target_alone(embedded, tiny_target_path, tmp_path):
    train_set, test_set = embedded[0].take(128), embedded[1].take(32)
    before = models.load_target(tiny_target_path).get_weights()
    config = tiny_dapter_config(
        tiny_target_path, output_block=4, adversary=AdversaryConfig(weight=2.0, filters=(4, 8), restart_every=2)
    )
    results = train.train_dapter(config, TASK, train_set, test_set, str(tmp_path))
    for key in ("train/L_adv", "train/L_total", "train/adversary_0_mse", "train/adversary_1_mse"):
        assert np.isfinite(results[key]), key
    assert results["train/L_total"] == pytest.approx(results["train/L_dap"] + 2.0 * results["train/L_adv"])
    assert results["output_block"] == 4 and results["adversary_weight"] == 2.0
    for b, a in zip(before, models.load_target(tiny_target_path).get_weights()):
        np.testing.assert_array_equal(b, a)
    assert output_block_of(models.load_converter(str(tmp_path))) == 4


def _checkpointed(workdir) -> dict:
    """Every variable of the latest checkpoint in ``workdir``: converter, decoders, optimizers.

    Not the checkpoint's own bookkeeping: how many saves it took differs between the two runs.
    """
    reader = tf.train.load_checkpoint(str(workdir / "checkpoints"))
    names = [n for n in reader.get_variable_to_shape_map() if "save_counter" not in n and "OBJECT_GRAPH" not in n]
    return {name: reader.get_tensor(name) for name in names}


def test_adversarial_training_resumes_after_sigkill_to_the_weights_of_an_uninterrupted_run(tiny_target_path, tmp_path):
    def args(workdir):
        return [
            f"--target={tiny_target_path}",
            f"--workdir={workdir}",
            "--epochs=2",
            "--batch_size=32",
            "--max_train=384",
            "--max_test=32",
            "--eval_images=32",
            "--filters=4,8,8",
            "--output_block=4",
            "--adversary_weight=1",
            "--adversary_filters=4,8",
            "--adversary_restart_every=6",
            "--checkpoint_every_steps=4",
            "--noaugment",
        ]

    straight = run_binary("experiments.train_dapter", *args(tmp_path / "straight"), timeout=600)
    assert straight.returncode == 0, straight.stderr

    workdir = tmp_path / "killed"
    kill_at_first_checkpoint("experiments.train_dapter", args(workdir), workdir)
    assert not (workdir / "results.json").exists()
    rerun = run_binary("experiments.train_dapter", *args(workdir), timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    results = json.loads((workdir / "results.json").read_text())
    assert 0 < results["resumed_from_step"] < results["steps"] == 24

    a, b = _checkpointed(tmp_path / "straight"), _checkpointed(workdir)
    assert a.keys() == b.keys()
    assert any("adversary_1" in name for name in a)  # The decoders were checkpointed too.
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)

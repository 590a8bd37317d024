"""Training loops: the frozen target, distribution over two replicas, checkpoint resume."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_dapter_config

from dapter_tf import DapterError, evaluate, losses, models, train
from dapter_tf.data import ImageSet
from dapter_tf.data.tasks import get_task
from dapter_tf.models import build_converter, targets
from dapter_tf.records import runs

TASK = get_task("cifar10")


def _small(embedded, n_train=128, n_test=32):
    train_set, test_set = embedded
    return train_set.take(n_train), test_set.take(n_test)


def test_dapter_step_moves_the_converter_and_never_the_target(embedded):
    keras.utils.set_random_seed(0)
    target = models.freeze(targets.build_target("resnet18", (32, 32, 3), 10, width=4))
    converter = build_converter((4, 8, 8))
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(converter.trainable_variables)
    target_before = [w.numpy().copy() for w in target.weights]  # Includes batch-norm moving statistics.
    converter_before = [w.numpy().copy() for w in converter.weights]
    step = tf.function(train.build_dapter_step(converter, target, optimizer, 0.5, 16))
    images = tf.constant(embedded[0].images[:16], tf.float32) / 255.0
    labels = tf.constant(embedded[0].labels["label"][:16])
    for _ in range(3):
        out = step(images, labels)
    assert np.isfinite(float(out["L_dap"]))
    for before, after in zip(target_before, target.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert any(not np.array_equal(b, a.numpy()) for b, a in zip(converter_before, converter.weights))


def test_train_dapter_end_to_end_leaves_the_target_file_alone(embedded, tiny_target_path, tmp_path):
    train_set, test_set = _small(embedded)
    before = models.load_target(tiny_target_path).get_weights()
    results = train.train_dapter(tiny_dapter_config(tiny_target_path), TASK, train_set, test_set, str(tmp_path))
    for k in ("accuracy_original", "accuracy_converted", "entropy_original", "entropy_converted", "bandwidth_ratio"):
        assert np.isfinite(results[k])
    assert results["steps"] == 4 and results["resumed_from_step"] == 0
    for b, a in zip(before, models.load_target(tiny_target_path).get_weights()):
        np.testing.assert_array_equal(b, a)
    assert {"config.json", "results.json", "converter.keras", "checkpoints", "tb"} <= set(os.listdir(tmp_path))
    assert os.listdir(tmp_path / "tb")  # TensorBoard event file.
    assert json.loads((tmp_path / "config.json").read_text())["lambda_"] == 0.9


def test_mirrored_strategy_runs_two_replicas(embedded, tiny_target_path, tmp_path):
    train_set, test_set = _small(embedded)
    results = train.train_dapter(
        tiny_dapter_config(tiny_target_path, strategy="mirrored"), TASK, train_set, test_set, str(tmp_path)
    )
    assert results["replicas"] == 2
    assert np.isfinite(results["train/L_dap"])


def test_mirrored_target_training_runs_two_replicas(embedded, tmp_path):
    train_set, test_set = _small(embedded, 64, 16)
    config = train.TargetConfig(model="lenet", epochs=1, batch_size=32, strategy="mirrored")
    results = train.train_target(config, TASK, train_set, test_set, str(tmp_path))
    assert results["replicas"] == 2 and results["steps"] == 2
    assert models.load_target(str(tmp_path / runs.TARGET_FILE)).output_shape == (None, 10)


def test_resumed_run_equals_an_uninterrupted_one(embedded, tiny_target_path, tmp_path):
    train_set, test_set = _small(embedded)
    straight = train.train_dapter(
        tiny_dapter_config(tiny_target_path, epochs=2), TASK, train_set, test_set, str(tmp_path / "straight")
    )
    train.train_dapter(
        tiny_dapter_config(tiny_target_path, epochs=1), TASK, train_set, test_set, str(tmp_path / "split")
    )
    resumed = train.train_dapter(
        tiny_dapter_config(tiny_target_path, epochs=2), TASK, train_set, test_set, str(tmp_path / "split")
    )
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 8 == straight["steps"]
    a = models.load_converter(str(tmp_path / "straight")).get_weights()
    b = models.load_converter(str(tmp_path / "split")).get_weights()
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_a_workdir_refuses_a_run_with_another_config(embedded, tiny_target_path, tmp_path):
    train_set, test_set = _small(embedded)
    train.train_dapter(tiny_dapter_config(tiny_target_path), TASK, train_set, test_set, str(tmp_path))
    with pytest.raises(DapterError, match="holds a run with another config \\(differs in: lambda_\\)"):
        train.train_dapter(tiny_dapter_config(tiny_target_path, lambda_=0.5), TASK, train_set, test_set, str(tmp_path))


def test_too_few_images_for_one_batch(embedded, tiny_target_path, tmp_path):
    train_set, test_set = _small(embedded, 16)
    with pytest.raises(DapterError, match="16 training images do not fill one batch of 32"):
        train.train_dapter(tiny_dapter_config(tiny_target_path), TASK, train_set, test_set, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


def test_target_with_the_wrong_number_of_classes(embedded, tmp_path):
    path = str(tmp_path / "five.keras")
    targets.build_target("lenet", (32, 32, 3), 5).save(path)
    train_set, test_set = _small(embedded)
    with pytest.raises(DapterError, match="has 5 outputs but task 'cifar10' has 10 classes"):
        train.train_dapter(tiny_dapter_config(path), TASK, train_set, test_set, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")  # Nothing written for a run that cannot start.


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, "epochs must be >= 1"),
        ("batch_size", 0, "batch_size must be >= 1"),
        ("learning_rate", 0.0, "learning_rate must be > 0"),
        ("strategy", "tpu_pod", "unknown strategy 'tpu_pod'"),
        ("lambda_", 1.5, "lambda must lie in \\[0, 1\\]"),
        ("target_path", "", "a target model is needed"),
    ],
)
def test_dapter_config_validates(field, value, message):
    with pytest.raises(DapterError, match=message):
        tiny_dapter_config(**{"target_path": "t.keras", field: value})


def test_imageset_helpers_keep_labels_aligned(embedded):
    subset = embedded[1].take(20).shuffled(0)
    assert isinstance(subset, ImageSet) and len(subset) == 20
    # Shuffling moves images and labels together: each image still sits with its own label.
    originals = {embedded[1].images[i].tobytes(): embedded[1].labels["label"][i] for i in range(20)}
    for image, label in zip(subset.images, subset.labels["label"]):
        assert originals[image.tobytes()] == label


def test_rerunning_a_finished_run_is_a_no_op_that_keeps_its_records(embedded, tiny_target_path, tmp_path):
    train_set, test_set = _small(embedded)
    config = tiny_dapter_config(tiny_target_path)
    first = train.train_dapter(config, TASK, train_set, test_set, str(tmp_path))
    kept = ("results.json", "config.json", runs.CONVERTER_FILE)
    before = {name: (tmp_path / name).read_bytes() for name in kept}
    again = train.train_dapter(config, TASK, train_set, test_set, str(tmp_path))
    assert {name: (tmp_path / name).read_bytes() for name in kept} == before
    assert again == json.loads(before["results.json"]) and again["train_seconds"] == first["train_seconds"]


def test_the_recorded_target_opens_from_any_directory(tiny_target_path, tmp_path, monkeypatch):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "target.keras").write_bytes(open(tiny_target_path, "rb").read())
    monkeypatch.chdir(tmp_path)
    config = tiny_dapter_config("t/target.keras")
    assert config.target_path == str(tmp_path / "t" / "target.keras")  # Recorded absolute.
    # An older record, relative to where its run started, opens from the workdir too.
    workdir = tmp_path / "runs" / "converter"
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps({"target_path": "../../t/target.keras"}))
    monkeypatch.chdir(workdir.parent)
    assert runs.recorded_target_path(str(workdir)) == os.path.join(str(workdir), "../../t/target.keras")
    assert runs.recorded_target_path(str(workdir), "given.keras") == "given.keras"
    (workdir / "config.json").write_text(json.dumps({"target_path": "gone.keras"}))
    with pytest.raises(
        DapterError, match="names target gone.keras, which is not found from here or from .*: give --target"
    ):
        runs.recorded_target_path(str(workdir))
    with pytest.raises(DapterError, match="is not a train_dapter workdir"):
        runs.recorded_target_path(str(tmp_path))


def test_a_checkpoint_from_before_the_loop_counted_its_steps_resumes_from_the_optimizers_count(
    embedded, tiny_target_path, tmp_path
):
    train_set, test_set = _small(embedded)  # 4 steps an epoch.
    train.train_dapter(tiny_dapter_config(tiny_target_path), TASK, train_set, test_set, str(tmp_path / "new"))
    # The same weights and optimizer saved as the loop saved them before it added loop_step.
    converter = build_converter((4, 8, 8))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(converter.trainable_variables)
    new = tf.train.Checkpoint(converter=converter, optimizer=optimizer, loop_step=tf.Variable(0, dtype=tf.int64))
    new.restore(tf.train.latest_checkpoint(str(tmp_path / "new" / "checkpoints"))).assert_consumed()
    old = tmp_path / "old"
    tf.train.CheckpointManager(
        tf.train.Checkpoint(converter=converter, optimizer=optimizer), str(old / "checkpoints"), 2
    ).save(4)
    (old / "config.json").write_text((tmp_path / "new" / "config.json").read_text())
    results = train.train_dapter(tiny_dapter_config(tiny_target_path, epochs=2), TASK, train_set, test_set, str(old))
    assert (results["resumed_from_step"], results["steps"]) == (4, 8)


def test_the_code_margin_is_added_on_the_output_before_its_grid(embedded):
    keras.utils.set_random_seed(0)
    target = models.freeze(targets.build_target("resnet18", (32, 32, 3), 10, width=4))
    converter = models.build_block_converter((4, 4, 4), 8)
    images = tf.constant(embedded[0].images[:16], tf.float32) / 255.0
    labels = tf.constant(embedded[0].labels["label"][:16])
    before_grid = keras.Model(converter.inputs, converter.get_layer("output_levels").input)(images)
    expected = float(np.mean(losses.code_margin_loss(before_grid, 16)))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(converter.trainable_variables)
    step = train.build_dapter_step(converter, target, optimizer, 0.5, 16, code_margin=2.0)
    out = step(images, labels)
    np.testing.assert_allclose(float(out["L_margin"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(out["L_total"]), float(out["L_dap"]) + 2.0 * expected, rtol=1e-5)


def test_the_task_head_reads_the_encoders_mean_features_and_trains_with_the_converter(embedded):
    keras.utils.set_random_seed(0)
    target = models.freeze(targets.build_target("resnet18", (32, 32, 3), 10, width=4))
    converter = models.build_block_converter((4, 4, 4), 8)
    images = tf.constant(embedded[0].images[:16], tf.float32) / 255.0
    labels = tf.constant(embedded[0].labels["label"][:16])
    head = train.build_task_head(10, 4)
    # L_head by hand: the head's cross-entropy on the encoder's mean features (4 channels at b = 8).
    features = tf.reshape(keras.Model(converter.inputs, converter.get_layer("context_pool").output)(images), [16, 4])
    expected = float(np.mean(losses.accuracy_loss(labels, head(features))))
    kernel = head.kernel.numpy().copy()
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(converter.trainable_variables + head.trainable_variables)
    step = train.build_dapter_step(converter, target, optimizer, 0.5, 16, task_head=head, task_head_weight=3.0)
    out = step(images, labels)
    np.testing.assert_allclose(float(out["L_head"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(out["L_total"]), float(out["L_dap"]) + 3.0 * expected, rtol=1e-5)
    assert not np.allclose(head.kernel.numpy(), kernel)  # The head trained too.
    # With the target's answer as labels (acc_labels="target"), L_head distils it as L_acc does.
    soft = tf.nn.softmax(target(images))
    np.testing.assert_allclose(
        losses.task_head_loss(labels, head(features), soft).numpy(),
        losses.distillation_loss(soft, head(features)).numpy(),
        rtol=1e-6,
    )


def test_a_run_with_a_task_head_saves_a_converter_without_it(tiny_target_path, embedded, tmp_path):
    train_set, test_set = embedded[0].take(64), embedded[1].take(32)
    config = tiny_dapter_config(
        tiny_target_path, architecture="block_encoder", output_block=8, task_head=1.0, acc_labels="target"
    )
    results = train.train_dapter(config, TASK, train_set, test_set, str(tmp_path / "w"))
    assert results["train/L_head"] > 0
    saved = keras.models.load_model(str(tmp_path / "w" / "converter.keras"))
    assert "task_head" not in [layer.name for layer in saved.layers]
    assert saved.count_params() == models.build_block_converter((4, 8, 8), 8).count_params()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"code_margin": -1.0}, "code_margin must be >= 0, got -1.0"),
        ({"code_margin": 1.0, "output_step": 1}, "code_margin needs an output grid (output_step > 1)"),
        ({"task_head": -1.0}, "task_head must be >= 0, got -1.0"),
        ({"task_head": 1.0}, "task_head needs architecture block_encoder"),
    ],
)
def test_a_bad_code_margin_or_task_head_is_refused(tiny_target_path, overrides, message):
    with pytest.raises(DapterError, match=re.escape(message)):
        tiny_dapter_config(tiny_target_path, **overrides)


def _indexed(embedded, n):
    """``n`` training photos labelled with their own index, to see where each one went."""
    photos = embedded[0].take(n)
    return ImageSet(photos.images, {**photos.labels, "index": np.arange(n)}, photos.source)


def test_the_validation_split_is_a_seeded_draw_held_out_of_the_training_photos(embedded, tiny_target_path):
    photos = _indexed(embedded, 128)
    kept, held = train.split_validation(photos, tiny_dapter_config(tiny_target_path, validation_images=32))
    assert (len(kept), len(held)) == (96, 32)
    assert sorted([*kept.labels["index"], *held.labels["index"]]) == list(range(128))  # Disjoint, nothing lost.
    assert not np.array_equal(held.labels["index"], np.arange(96, 128))  # A draw, not the last photos.
    again = train.split_validation(photos, tiny_dapter_config(tiny_target_path, validation_images=32))[1]
    other = train.split_validation(photos, tiny_dapter_config(tiny_target_path, validation_images=32, seed=1))[1]
    np.testing.assert_array_equal(again.labels["index"], held.labels["index"])
    assert set(other.labels["index"]) != set(held.labels["index"])
    assert train.split_validation(photos, tiny_dapter_config(tiny_target_path))[1] is None
    with pytest.raises(DapterError, match=re.escape("validation_images=100 leaves 28 of 128 training photos")):
        train.split_validation(photos, tiny_dapter_config(tiny_target_path, validation_images=100))
    with pytest.raises(DapterError, match="validation_images needs the training photos in memory"):
        train.split_validation(object(), tiny_dapter_config(tiny_target_path, validation_images=32))
    with pytest.raises(DapterError, match="validation_images must be >= 0, got -1"):
        tiny_dapter_config(tiny_target_path, validation_images=-1)


def test_a_run_with_a_validation_split_saves_its_best_epoch(embedded, tiny_target_path, tmp_path):
    photos, test_set = embedded[0].take(160), embedded[1].take(32)
    config = tiny_dapter_config(
        tiny_target_path, architecture="block_encoder", output_block=8, epochs=3, validation_images=32,
        learning_rate=3e-2,
    )  # fmt: skip
    results = train.train_dapter(config, TASK, photos, test_set, str(tmp_path / "w"))
    record = json.loads((tmp_path / "w" / train.BestEpoch.RECORD).read_text())
    assert results["validation_accuracy"] == record["validation_accuracy"]
    assert results["selected_step"] == record["step"] and record["step"] in (4, 8, 12)  # 128 photos, batches of 32.
    # The saved converter is the best epoch's: it scores exactly the recorded accuracy on the same split,
    # and the results measure it on the test photos.
    saved, target = models.load_converter(str(tmp_path / "w")), models.load_target(tiny_target_path)
    held = train.split_validation(photos, config)[1]
    again = evaluate.evaluate_converter(saved, target, held.images, held.labels["label"], False)
    assert again["accuracy_converted"] == record["validation_accuracy"]
    tested = evaluate.evaluate_converter(saved, target, test_set.images, test_set.labels["label"], False)
    assert results["accuracy_converted"] == tested["accuracy_converted"]


def test_the_best_epoch_keeps_the_best_and_a_later_tie(tmp_path):
    converter = models.build_block_converter((4, 8, 8), 8)
    best = train.BestEpoch(str(tmp_path))
    best.offer(0.50, 4, converter)
    first = [w.copy() for w in converter.get_weights()]
    converter.set_weights([w + 1.0 for w in first])
    best.offer(0.40, 8, converter)  # Worse: kept out.
    assert json.loads((tmp_path / train.BestEpoch.RECORD).read_text()) == {"step": 4, "validation_accuracy": 0.5}
    best.offer(0.50, 12, converter)  # A tie: the later epoch is kept.
    # A kill after the weights were written but before the readable record: the weights file carries
    # its own figures, so the stale record cannot pair epoch 12's weights with epoch 4's step.
    (tmp_path / train.BestEpoch.RECORD).write_text(json.dumps({"step": 4, "validation_accuracy": 0.5}))
    resumed = train.BestEpoch(str(tmp_path))  # A resumed run knows the best so far.
    assert resumed.accuracy == 0.5
    converter.set_weights(first)
    assert resumed.restore(converter) == {"selected_step": 12, "validation_accuracy": 0.5}
    for w, kept in zip(converter.get_weights(), first):
        np.testing.assert_array_equal(w, kept + 1.0)

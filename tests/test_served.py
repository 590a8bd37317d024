"""The target as the provider serves it (models.served): SavedModel targets and their input contracts."""

import re
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_one_error_line, run_binary, tiny_dapter_config
from keras.initializers import RandomNormal

from dapter_tf.errors import DapterError
from dapter_tf.models import build_converter, load_target, served
from dapter_tf.records import files, runs

MINUS_ONE_ONE = served.TargetContract(preprocessing="minus_one_one", output="probabilities")


@pytest.fixture(scope="module")
def provider_model(tmp_path_factory):
    """A provider's model the project did not build: 8x8 inputs in [-1, 1], softmax over 10 classes.

    Returns (the Keras model, its .keras file, its SavedModel directory written by ``model.export``).
    """
    folder = tmp_path_factory.mktemp("provider")
    keras.utils.set_random_seed(0)
    images = keras.Input((8, 8, 3))
    # Initialised wide, so that its answers on solid colours spread over several classes.
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=RandomNormal(stddev=1))(images)
    x = keras.layers.GlobalAveragePooling2D()(x)
    scores = keras.layers.Dense(10, activation="softmax", kernel_initializer=RandomNormal(stddev=3.0))(x)
    model = keras.Model(images, scores)
    model.save(folder / "model.keras")
    model.export(str(folder / "served"), verbose=False)  # As TF Serving serves it.
    return model, str(folder / "model.keras"), str(folder / "served")


def test_each_preprocessing_by_hand_on_a_2x2_image():
    # Pixels A = (255, 0, 51) and B = (0, 255, 102), as uint8 / 255, the converter's output.
    a, b = (255, 0, 51), (0, 255, 102)
    pixels = np.array([[[a, b], [b, a]]], np.float32) / 255.0
    expected = {  # (A, B) worked out by hand; caffe's A is BGR (51, 0, 255) minus (103.939, 116.779, 123.68).
        "zero_one": ((1, 0, 0.2), (0, 1, 0.4)),
        "minus_one_one": ((1, -1, -0.6), (-1, 1, -0.2)),
        "raw_0_255": ((255, 0, 51), (0, 255, 102)),
        "caffe": ((-52.939, -116.779, 131.32), (-1.939, 138.221, -123.68)),
        # ((1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225), and B's alike.
        "torch": ((2.248908, -2.035714, -0.915556), (-2.117904, 2.428571, -0.026667)),
    }
    assert set(expected) == set(served.PREPROCESSINGS)
    keras_mode = {"minus_one_one": "tf", "caffe": "caffe", "torch": "torch"}
    for mode, (pa, pb) in expected.items():
        got = served.preprocess(pixels, mode).numpy()
        np.testing.assert_allclose(got, np.array([[[pa, pb], [pb, pa]]]), atol=1e-4, err_msg=mode)
        if mode in keras_mode:  # The same as keras.applications' own.
            theirs = keras.applications.imagenet_utils.preprocess_input(pixels * 255.0, mode=keras_mode[mode])
            np.testing.assert_allclose(got, theirs, atol=1e-4, err_msg=mode)


def test_gradients_reach_the_converter_through_a_saved_model_target(provider_model):
    _, _, saved = provider_model
    target = load_target(saved, MINUS_ONE_ONE)
    assert target.input_shape == (None, 8, 8, 3) and target.output_shape == (None, 10)
    assert not target.trainable_weights  # Frozen.
    keras.utils.set_random_seed(1)
    converter = build_converter((4, 8, 8), output_step=1)
    images = tf.constant(np.random.default_rng(0).random((4, 8, 8, 3)), tf.float32)
    with tf.GradientTape() as tape:
        logits = target(converter(images, training=True), training=False)
        labels = tf.constant([0, 1, 2, 3])
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    grads = tape.gradient(loss, converter.trainable_variables)
    assert all(g is not None for g in grads)
    first_kernel = next(g for g, v in zip(grads, converter.trainable_variables) if "kernel" in v.path)
    assert float(tf.reduce_sum(tf.abs(first_kernel))) > 0


def test_keras_file_and_its_saved_model_give_the_same_logits(provider_model):
    model, keras_file, saved = provider_model
    pixels = np.random.default_rng(2).random((5, 8, 8, 3)).astype(np.float32)
    # [-1, 1] in; probabilities -> log, clipped at 1e-7 (log 1e-7 = -16.118) so that a 0 stays finite.
    by_hand = np.log(np.clip(model(pixels * 2 - 1).numpy(), 1e-7, 1))
    assert by_hand.min() == pytest.approx(-16.118, abs=1e-3)  # The clip is used.
    for path in (keras_file, saved):
        np.testing.assert_allclose(load_target(path, MINUS_ONE_ONE)(pixels).numpy(), by_hand, atol=1e-5)
    # Our zoo's .keras targets, the default contract, are returned as they are.
    assert load_target(keras_file).name == model.name


def test_a_saved_model_with_no_such_signature_is_one_line(provider_model):
    _, _, saved = provider_model
    with pytest.raises(DapterError) as refused:
        load_target(saved, served.TargetContract(signature="predict"))
    assert str(refused.value) == (
        f"SavedModel {saved} has no signature 'predict' (it has: serve, serving_default); "
        "name one with --target_signature"
    )


def test_a_wrong_input_size_is_one_line(provider_model, embedded):
    from dapter_tf.data import tasks
    from dapter_tf.train import converter

    _, _, saved = provider_model
    train_set, _ = embedded
    config = tiny_dapter_config(saved, target_contract=MINUS_ONE_ONE)
    with pytest.raises(DapterError) as refused:
        converter.check_target_fits(config, tasks.get_task("cifar10"), train_set, load_target(saved, MINUS_ONE_ONE))
    assert str(refused.value) == (
        f"{saved} takes 8x8 images but the data are 32x32: train at the target's size (--image_size)"
    )


def test_near_chance_on_hand_numbers(provider_model):
    # 60 of class 0, 40 of class 1: majority 0.6, 3 standard errors 3 * sqrt(0.6 * 0.4 / 100) = 0.147.
    labels = np.array([0] * 60 + [1] * 40)
    assert served.near_chance(0.746, labels) and not served.near_chance(0.748, labels)
    # 10,000 balanced: 3 standard errors are 0.021, so the 0.05 floor rules: the bar is 0.55.
    balanced = np.arange(10_000) % 2
    assert served.near_chance(0.549, balanced) and not served.near_chance(0.551, balanced)
    # A target refused on labels it never gives; measured, on its own answers.
    _, _, saved = provider_model
    target = load_target(saved, MINUS_ONE_ONE)
    colours = np.random.default_rng(3).integers(0, 256, (40, 1, 1, 3), dtype=np.uint8)
    images = np.broadcast_to(colours, (40, 8, 8, 3))
    answers = np.argmax(target(images.astype(np.float32) / 255.0).numpy(), axis=-1)
    assert np.bincount(answers).max() < 25  # Spread: the commonest answer is under 0.625 of them.
    assert served.check_target_serves(target, images, answers, saved, MINUS_ONE_ONE) == 1.0
    wrong = (answers + 1) % 10
    majority = np.bincount(wrong).max() / 40
    with pytest.raises(DapterError) as refused:
        served.check_target_serves(target, images, wrong, saved, MINUS_ONE_ONE)
    assert str(refused.value) == (
        f"target {saved} scores 0.0000 on 40 labelled originals, near chance (the commonest class alone scores "
        f"{majority:.4f}): its input contract is likely wrong or the model broken; check --target_preprocessing "
        f"(now minus_one_one) and --target_output (now probabilities), or {saved}.contract.json"
    )


def test_contract_json_round_trip_and_a_disagreement_with_the_flags(tmp_path):
    target = str(tmp_path / "model")
    assert served.contract_file(target + "/") == str(tmp_path / "model.contract.json")
    assert served.contract_file(str(tmp_path / "m.keras")) == str(tmp_path / "m.contract.json")
    assert served.read_contract(target) is None
    assert served.resolve_contract(target, None) == served.TargetContract()  # Our zoo's.
    contract = served.TargetContract(preprocessing="caffe", output_key="scores", image_size=64)
    served.write_contract(target, contract)
    assert served.read_contract(target) == contract
    assert served.TargetContract.from_dict(contract.to_dict()) == contract
    assert served.resolve_contract(target, None) == contract
    assert served.resolve_contract(target, contract) == contract
    with pytest.raises(DapterError) as refused:
        served.resolve_contract(target, served.TargetContract(preprocessing="torch"))
    assert str(refused.value) == (
        f"the target contract flags and {tmp_path / 'model.contract.json'} disagree (in preprocessing, "
        "output_key, image_size): state the contract once, by the flags or by the JSON beside the model"
    )
    with pytest.raises(DapterError, match=re.escape("--target_preprocessing must be one of zero_one, minus_one_one")):
        served.TargetContract(preprocessing="bgr")
    assert MINUS_ONE_ONE.describe() == (
        "the target takes uint8 RGB pixels mapped to [-1, 1] (minus_one_one) and returns probabilities"
    )


def test_a_saved_model_target_is_recorded_by_the_hash_of_every_file(provider_model, tmp_path):
    _, _, saved = provider_model
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    assert files.tree_sha256(str(copy)) == files.tree_sha256(saved)
    record = runs.record_config(tiny_dapter_config(str(copy)), str(tmp_path / "workdir"))
    assert record[runs.TARGET_HASH] == files.tree_sha256(saved)
    assert record["target_contract"] == served.TargetContract().to_dict()
    (copy / "assets" / "extra.txt").write_text("x")
    assert files.tree_sha256(str(copy)) != files.tree_sha256(saved)


def test_train_dapter_against_a_saved_model_with_a_wrong_signature_is_one_line(provider_model, tmp_path):
    _, _, saved = provider_model
    workdir = tmp_path / "workdir"
    proc = run_binary(
        "experiments.train_dapter",
        f"--target={saved}",
        "--target_preprocessing=minus_one_one",
        "--target_signature=predict",
        f"--workdir={workdir}",
    )
    assert proc.returncode == 1
    assert_one_error_line(proc, f"SavedModel {saved} has no signature 'predict' (it has: serve, serving_default)")
    assert not workdir.exists()


def test_a_published_saved_model_target_is_copied_whole_with_its_contract(provider_model, tmp_path):
    from export.release import release_lib

    _, _, saved = provider_model
    published = str(tmp_path / "bundle.target")
    release_lib.publish_target(saved, published, MINUS_ONE_ONE.to_dict())
    assert release_lib.target_sha256(published) == files.tree_sha256(saved)
    assert served.read_contract(published) == MINUS_ONE_ONE  # bundle.target.contract.json
    assert served.load_target(published, MINUS_ONE_ONE).output_shape == (None, 10)

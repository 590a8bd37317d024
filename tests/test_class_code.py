"""The class-code converter (``models.build_class_code_converter``): the decision, drawn from a codebook."""

import dataclasses
import os

import keras
import numpy as np
import pytest
from conftest import tiny_dapter_config

from dapter_tf import DapterError, models


def _classifier(classes=3):
    """A 2x2 classifier whose logit k is the mean of channel k: the decision is hand-checkable."""
    images = keras.Input((2, 2, 3))
    logits = keras.layers.GlobalAveragePooling2D()(images)
    return keras.Model(images, logits[:, :classes])


def test_class_code_is_the_one_hot_vector_of_the_largest_logit():
    code = models.ClassCode(3)(np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]], np.float32))
    np.testing.assert_array_equal(np.asarray(code), [[0, 1, 0], [1, 0, 0]])


def test_converter_sends_the_codebook_image_of_the_decision_and_round_trips(tmp_path):
    converter = models.build_class_code_converter(_classifier(), (2, 2, 3), output_step=1)
    book = np.zeros((3, 12), np.float32)
    book[1] = 2.0  # class 1's image: sigmoid(2) = 0.8808 everywhere.
    converter.get_layer("codebook").set_weights([book])
    images = np.zeros((2, 2, 2, 3), np.float32)
    images[0, ..., 1] = 0.9  # decided as class 1
    images[1, ..., 0] = 0.4  # decided as class 0
    out = np.asarray(converter(images))
    np.testing.assert_allclose(out[0], np.full((2, 2, 3), 1 / (1 + np.exp(-2.0))), atol=1e-6)
    np.testing.assert_allclose(out[1], np.full((2, 2, 3), 0.5), atol=1e-6)
    path = os.path.join(tmp_path, "converter.keras")
    models.save_model(converter, path)
    np.testing.assert_array_equal(np.asarray(models.load_converter(path)(images)), out)
    # Only the codebook trains: the classifier is frozen.
    assert [w.name for w in converter.trainable_weights] == ["kernel"]


def test_class_code_refuses_a_free_image_size():
    with pytest.raises(DapterError, match="fixed image size"):
        models.build_class_code_converter(_classifier(), (None, None, 3))


def test_class_code_and_output_blocks_are_refused_together(tmp_path):
    with pytest.raises(DapterError, match="class_code and output_block"):
        tiny_dapter_config(tmp_path, class_code="target", output_block=2)


def test_the_symmetric_attacker_of_a_class_code_mirrors_the_papers_converter():
    # No conv layers to mirror: the suite's symmetric generator is the default converter's.
    from dapter_tf.attacks import reconstruction

    converter = models.build_class_code_converter(_classifier(), (2, 2, 3), output_step=1)
    assert reconstruction.converter_filters(converter) == models.DEFAULT_FILTERS == (24, 48, 96)
    plain = models.build_converter(filters=(4, 8, 16))
    assert reconstruction.converter_filters(plain) == (4, 8, 16)


def test_a_class_code_card_says_the_target_ships_inside_the_converter():
    from export.release import card

    info = card.ReleaseInfo("cc", "cifar10", "label", "resnet18", 0.9, "cifar10", (32, 32), class_code="target")
    measured = {"output_step": 16, "entropy_converted": 3.3, "entropy_ratio": 0.157, "bandwidth_saving": 2.8}
    text = card.render_card(info, measured, [], {"files": {}}, 100)
    assert "A copy of the target is inside this converter" in text and "not part of this release" not in text
    assert "the provider's model ships inside `converter.keras`" in text
    plain = card.render_card(dataclasses.replace(info, class_code=""), measured, [], {"files": {}}, 100)
    assert "class-code" not in plain and "The target model is not part of this release." in plain


def test_the_tflite_class_code_runs_image_by_image_and_matches_keras():
    # Its codebook row's reshape is fixed at batch 1 in the file, so the host runs it as a phone does.
    from export.tflite import export_tflite_lib
    from export.tflite.interpreter import run_tflite

    converter = models.build_class_code_converter(_classifier(), (2, 2, 3), output_step=16)
    book = np.zeros((3, 12), np.float32)
    book[1], book[2] = 2.0, -2.0
    converter.get_layer("codebook").set_weights([book])
    model_bytes = export_tflite_lib.convert_keras_model(export_tflite_lib.fix_input_shape(converter, 2, 2), "float32")
    images = np.random.default_rng(0).integers(0, 256, (7, 2, 2, 3), dtype=np.uint8)
    expected = np.round(np.asarray(converter(images.astype(np.float32) / 255)) * 255).astype(np.uint8)
    assert len({e.tobytes() for e in expected}) > 1  # More than one class was decided.
    np.testing.assert_array_equal(run_tflite(model_bytes, images, batch_size=3), expected)

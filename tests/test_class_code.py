"""The class-code converter (``models.build_class_code_converter``): the decision, drawn from a codebook."""

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

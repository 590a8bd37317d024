"""Target (DLIS) models: builders by name, safe loading, freezing."""

import numpy as np
import pytest

from dapter_tf import DapterError, classifier


@pytest.mark.parametrize("name, width", [("lenet", 6), ("resnet18", 4)], ids=["lenet", "resnet18"])
def test_targets_give_one_logit_per_class(name, width):
    model = classifier.build_target(name, (32, 32, 3), 10, width=width)
    assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 10)


def test_resnet18_has_eighteen_weight_layers_on_its_main_path():
    model = classifier.build_target("resnet18", (32, 32, 3), 10, width=4)
    convs = [c for c in model.layers if c.__class__.__name__ == "Conv2D" and not c.name.endswith("_proj")]
    dense = [d for d in model.layers if d.__class__.__name__ == "Dense"]
    assert len(convs) + len(dense) == 18


def test_unknown_target_names_the_known_ones():
    with pytest.raises(DapterError, match="unknown target model 'vgg99'; choose one of: lenet, resnet18"):
        classifier.build_target("vgg99", (32, 32, 3), 10)


def test_load_target_is_frozen_and_gives_the_saved_outputs(tiny_target_path):
    import keras

    original = keras.models.load_model(tiny_target_path)
    target = classifier.load_target(tiny_target_path)
    assert not target.trainable and not target.trainable_weights
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(target(images, training=False), original(images, training=False), atol=1e-6)


def test_load_target_missing_file(tmp_path):
    with pytest.raises(DapterError, match="target model file not found"):
        classifier.load_target(str(tmp_path / "nope.keras"))


def test_load_target_corrupt_file(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"this is not a keras archive")
    with pytest.raises(DapterError, match="not a loadable .keras model"):
        classifier.load_target(str(path))

"""Target (DLIS) models: the zoo of Table 2 by name, a training step, safe save/load, freezing."""

import re
import shutil
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from dapter_tf import DapterError, models
from dapter_tf.models import targets

# (name, side, width): tiny widths keep the 224x224 forms affordable on 2 CPU cores. Some tiny
# widths of the ImageNet ResNets corrupt the heap in TF 2.21's oneDNN backward pass on these CPUs
# ("free(): invalid size": resnet50_imagenet at width 2, resnet18_imagenet at 4 and 8), and train
# with TF_ENABLE_ONEDNN_OPTS=0; the widths below (and the paper's 64) train with oneDNN on.
ZOO = [
    ("lenet", 32, 6),
    ("vgg11", 32, 4),
    ("vgg16", 32, 4),
    ("resnet18", 32, 4),
    ("resnet50", 32, 2),
    ("vgg11_imagenet", 224, 2),
    ("vgg16_imagenet", 224, 2),
    ("resnet18_imagenet", 224, 16),
    ("resnet50_imagenet", 224, 4),
]


def test_the_zoo_is_the_papers_five_networks_in_both_sizes():
    assert sorted(targets.TARGET_BUILDERS) == sorted(name for name, _, _ in ZOO)


@pytest.mark.parametrize("name, side, width", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_model_builds_trains_a_step_saves_and_loads_back(name, side, width, tmp_path):
    keras.utils.set_random_seed(0)
    model = targets.build_target(name, (side, side, 3), 7, width=width)
    images = np.random.default_rng(0).random((2, side, side, 3), dtype=np.float32)
    labels = np.array([1, 5])
    assert model(images).shape == (2, 7)
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=model(images, training=True))
        )
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    before = [w.numpy().copy() for w in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_variables))
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = models.load_target(path)  # safe_mode=True
    np.testing.assert_allclose(loaded(images, training=False), model(images, training=False), atol=1e-5)


def _weight_layers(model):
    kinds = ("Conv2D", "Dense")
    return [x for x in model.layers if x.__class__.__name__ in kinds and not x.name.endswith("_proj")]


@pytest.mark.parametrize(
    "name, side, layers",
    [
        ("resnet18", 32, 18),
        ("resnet50", 32, 50),
        ("vgg11", 32, 11),
        ("vgg16", 32, 16),
        ("resnet18_imagenet", 224, 18),
        ("resnet50_imagenet", 224, 50),
    ],
)
def test_networks_have_their_names_worth_of_weight_layers(name, side, layers):
    # He et al. and Simonyan & Zisserman count the weighted layers on the main path.
    model = targets.build_target(name, (side, side, 3), 10, width=2)
    assert len(_weight_layers(model)) == layers


def test_imagenet_forms_shrink_224_to_7x7_before_pooling():
    model = targets.build_target("resnet18_imagenet", (224, 224, 3), 10, width=2)
    pool = next(x for x in model.layers if x.__class__.__name__ == "GlobalAveragePooling2D")
    assert pool.input.shape[1:3] == (7, 7)
    vgg = targets.build_target("vgg16_imagenet", (224, 224, 3), 10, width=2)
    assert vgg.get_layer("pool5").output.shape[1:3] == (7, 7)
    assert vgg.get_layer("fc1").units == 4096 * 2 // 64


def test_unknown_target_names_the_known_ones():
    with pytest.raises(DapterError, match="unknown target model 'vgg99'; choose one of: lenet, resnet18, "):
        targets.build_target("vgg99", (32, 32, 3), 10)


def test_imagenet_form_refuses_tiny_images():
    with pytest.raises(DapterError, match="resnet50_imagenet needs images of at least 32x32, got 16x16"):
        targets.build_target("resnet50_imagenet", (16, 16, 3), 10, width=1)


def test_load_target_is_frozen_and_gives_the_saved_outputs(tiny_target_path):
    original = keras.models.load_model(tiny_target_path)
    target = models.load_target(tiny_target_path)
    assert not target.trainable and not target.trainable_weights
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(target(images, training=False), original(images, training=False), atol=1e-6)


def test_load_target_missing_file(tmp_path):
    with pytest.raises(DapterError, match="target model file not found"):
        models.load_target(str(tmp_path / "nope.keras"))


def test_load_target_corrupt_file(tmp_path):
    # Issue 30: Keras calls a file that is there but not a zip archive "File not found".
    path = tmp_path / "broken.keras"
    path.write_bytes(b"this is not a keras archive")
    with pytest.raises(DapterError) as refused:
        models.load_target(str(path))
    assert str(refused.value) == (
        f"{path} is not a .keras model: it is not a zip archive, as every .keras file is "
        "(it is corrupt, truncated or another kind of file)"
    )
    # A zip archive that is no model is still refused with Keras's reason.
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "x")
    with pytest.raises(DapterError, match="other.keras: not a loadable .keras model"):
        models.load_converter(str(tmp_path / "other.keras"))


def test_load_target_folder_says_it_is_a_folder(tmp_path, tiny_target_path):
    # Issue 30: a folder given as --target was "target model file not found".
    with pytest.raises(DapterError) as refused:
        models.load_target(str(tmp_path))
    assert str(refused.value) == (
        f"target model {tmp_path} is a folder but not a SavedModel (it holds no saved_model.pb): give a .keras "
        "file or a SavedModel directory (a dapter-train-target workdir keeps it as target.keras)"
    )
    shutil.copyfile(tiny_target_path, tmp_path / "target.keras")
    with pytest.raises(DapterError, match=re.escape(f"(the workdir's own is {tmp_path / 'target.keras'})")):
        models.load_target(str(tmp_path))

"""Grad-CAM (§7.2): known answers on hand-built models, every zoo model, Table 4's arithmetic, the binary."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_one_error_line, run_binary

from dapter_tf import DapterError, data, models
from dapter_tf.analysis import saliency, table4
from dapter_tf.data import tasks
from dapter_tf.models import targets


def red_green_model(strides: int = 1) -> keras.Model:
    """A model whose class 1 is "more red than green": 1x1 convolution to (red, green), then a linear head.

    logit_0 = 0 and logit_1 = mean(red) - mean(green), so Grad-CAM for class 1 weights the red map
    by +1/(h*w) and the green map by -1/(h*w): it lights up red pixels and nothing else.
    """
    images = keras.Input((4, 4, 3))
    features = keras.layers.Conv2D(2, 1, strides=strides, use_bias=False, activation="relu", name="colours")(images)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(2, use_bias=False, name="head")(pooled)
    m = keras.Model(images, logits)
    m.get_layer("colours").set_weights([np.array([[[[1, 0], [0, 1], [0, 0]]]], np.float32)])
    m.get_layer("head").set_weights([np.array([[0, 1], [0, -1]], np.float32)])
    return m


def patches(red=False, green=False) -> np.ndarray:
    """A black 4x4 image with a red top-left 2x2 patch and/or a green bottom-right one."""
    image = np.zeros((1, 4, 4, 3), np.uint8)
    if red:
        image[0, :2, :2, 0] = 255
    if green:
        image[0, 2:, 2:, 1] = 255
    return image


def test_grad_cam_lights_the_only_region_that_can_matter():
    m = red_green_model()
    assert saliency.default_layer(m) == "colours"
    both = patches(red=True, green=True)
    maps = saliency.grad_cam(m, both, [1])
    expected = np.zeros((1, 4, 4), np.float32)
    expected[0, :2, :2] = 1 / 16  # alpha_red = 1/16 times red = 1; the green patch is pushed below 0.
    np.testing.assert_allclose(maps, expected, atol=1e-7)
    np.testing.assert_allclose(saliency.importance(maps), [4 / 16])
    # A frozen target (as load_target gives) has the same maps.
    np.testing.assert_allclose(saliency.grad_cam(models.freeze(red_green_model()), both, [1]), expected, atol=1e-7)
    # Class 0's logit is constant: no pixel supports it. Nor does a green patch support class 1.
    np.testing.assert_array_equal(saliency.grad_cam(m, both, [0]), np.zeros((1, 4, 4)))
    np.testing.assert_array_equal(saliency.grad_cam(m, patches(green=True), [1]), np.zeros((1, 4, 4)))


def test_grad_cam_resizes_coarse_maps_to_the_input():
    m = red_green_model(strides=2)  # 2x2 feature maps for 4x4 images.
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 255
    maps = saliency.grad_cam(m, red, [1])
    # alpha_red = mean of 1/4 over the 2x2 map; bilinear resizing keeps a constant map constant.
    np.testing.assert_allclose(maps, np.full((1, 4, 4), 1 / 4), atol=1e-7)
    np.testing.assert_allclose(saliency.importance(maps), [4.0], atol=1e-6)


@pytest.mark.parametrize("name", sorted(targets.TARGET_BUILDERS))
def test_every_zoo_model_has_a_default_layer_and_maps(name):
    side = targets.TARGET_BUILDERS[name][3]
    tf.keras.utils.set_random_seed(0)
    m = targets.build_target(name, (side, side, 3), 2, width=6 if name == "lenet" else 4)
    layer_name = saliency.default_layer(m)
    names = [layer.name for layer in m.layers]
    chosen = names.index(layer_name)
    last_conv = max(i for i, layer in enumerate(m.layers) if isinstance(layer, keras.layers.Conv2D))
    assert chosen >= last_conv
    shape = m.get_layer(layer_name).output.shape
    after = m.layers[chosen + 1].output.shape
    assert len(shape) == 4 and (len(after) != 4 or after[1:3] != shape[1:3])  # The next layer pools or flattens.
    if name.startswith("resnet"):
        # The last block's output: the ReLU after the residual add, not the block's inner convolution.
        assert isinstance(m.get_layer(layer_name), keras.layers.ReLU)
        assert isinstance(m.layers[chosen - 1], keras.layers.Add)
    images = np.random.default_rng(0).integers(0, 256, (3, side, side, 3), dtype=np.uint8)
    maps = saliency.grad_cam(m, images, [0, 1, 1], batch_size=2)
    assert maps.shape == (3, side, side) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps >= 0).all()


def test_lenet_default_layer_is_conv2_and_another_can_be_chosen():
    m = targets.build_target("lenet", (32, 32, 3), 2)
    assert saliency.default_layer(m) == "conv2"
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    default = saliency.grad_cam(m, images, [1, 1])
    conv1 = saliency.grad_cam(m, images, [1, 1], layer_name="conv1")
    assert conv1.shape == default.shape and not np.allclose(conv1, default)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer_name="nope"), "has no layer 'nope'"),
        (dict(layer_name="fc1"), "needs a layer with feature maps"),
        (dict(classes=[0, 2]), "classes must lie in 0..1"),
        (dict(classes=[0]), "one integer class per image (2)"),
        (dict(images=np.zeros((2, 32, 32, 3), np.float32)), "must be uint8"),
    ],
)
def test_grad_cam_refuses_bad_input(kwargs, message):
    m = targets.build_target("lenet", (32, 32, 3), 2)
    args = dict(images=np.zeros((2, 32, 32, 3), np.uint8), classes=[0, 1])
    args.update(kwargs)
    with pytest.raises(DapterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        saliency.grad_cam(m, args.pop("images"), args.pop("classes"), **args)


def test_no_convolution_no_grad_cam():
    images = keras.Input((4, 4, 3))
    m = keras.Model(images, keras.layers.Dense(2)(keras.layers.Flatten()(images)))
    with pytest.raises(DapterError, match="has no Conv2D layer"):
        saliency.default_layer(m)


def test_importance_and_table_normalisation_by_hand():
    np.testing.assert_allclose(saliency.importance(np.array([[[0, 1], [2, -3]]])), [6.0])
    table = [[2.0, 1.0], [4.0, 8.0]]
    np.testing.assert_allclose(table4.normalize_rows(table), [[1.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(table4.row_margins(table), [2.0, 2.0])
    # The paper's Table 4: its smallest margin is row A's 1 / 0.446, the "at least 2.24x" of §7.2.
    paper = [
        [1, 7.21e-3, 5.02e-4, 4.46e-1],
        [1.47e-2, 1, 7.36e-5, 1.22e-1],
        [9.61e-2, 7.52e-2, 1, 2.83e-1],
        [5.02e-10, 1.11e-10, 0.0, 1],
    ]
    margins = table4.row_margins(paper)
    assert margins.min() == pytest.approx(2.24, abs=0.005) and margins.argmin() == 0
    np.testing.assert_allclose(margins[:3], [1 / 0.446, 1 / 0.122, 1 / 0.283])
    np.testing.assert_allclose(table4.row_margins([[1, 0.5], [0, 1]]), [2.0, np.inf])
    zero_diagonal = table4.normalize_rows([[0.0, 1.0], [1.0, 1.0]])
    assert np.isnan(zero_diagonal[0]).all() and np.allclose(zero_diagonal[1], [1.0, 1.0])
    assert table4.row_margins([[1.0, 3.0], [1.0, 2.0]])[0] == pytest.approx(1 / 3)  # Own converter not leading.
    with pytest.raises(DapterError, match="at least two"):
        table4.row_margins([[1.0]])


def test_which_images_and_classes_are_explained():
    binary = targets.build_target("lenet", (32, 32, 3), 2)
    ten = targets.build_target("lenet", (32, 32, 3), 10)
    images = np.zeros((4, 32, 32, 3), np.uint8)
    index, classes = saliency.select_explained(binary, images, [0, 1, 1, 0], "auto")
    np.testing.assert_array_equal(index, [1, 2])  # An attribute's presence, where it is present.
    np.testing.assert_array_equal(classes, [1, 1])
    index, classes = saliency.select_explained(ten, images, [3, 1, 4, 1], "auto")
    np.testing.assert_array_equal(index, [0, 1, 2, 3])
    np.testing.assert_array_equal(classes, [3, 1, 4, 1])
    index, classes = saliency.select_explained(binary, images, [0, 1, 1, 0], "predicted")
    assert len(index) == 4 and (classes == classes[0]).all()  # Four equal images, one prediction.
    with pytest.raises(DapterError, match="needs a two-class label"):
        saliency.select_explained(ten, images, [3, 1, 4, 1], "positive")
    with pytest.raises(DapterError, match="no image has the attribute"):
        saliency.select_explained(binary, images, [0, 0, 0, 0], "positive")
    with pytest.raises(DapterError, match="class_source must be one of"):
        saliency.select_explained(binary, images, [0, 0, 0, 0], "mine")


def test_attention_consistency_by_hand():
    ramp = np.arange(16, dtype=np.float32).reshape(4, 4)
    before = np.stack([ramp, ramp[::-1, ::-1]])
    same = saliency.attention_consistency(before, before)
    assert same["correlation_mean"] == pytest.approx(1.0) and same["ssim_mean"] == pytest.approx(1.0)
    # Two images: each one's chance partner is the other, the same ramp reversed.
    assert same["chance_correlation_mean"] == pytest.approx(-1.0)
    weaker = saliency.attention_consistency(before, before / 2)
    assert weaker["correlation_mean"] == pytest.approx(1.0)  # Same shape ...
    assert weaker["ssim_mean"] < 0.9  # ... half the strength: SSIM puts both maps on one scale.
    flat = saliency.attention_consistency(before, np.stack([ramp, np.ones((4, 4), np.float32)]))
    assert flat["correlation_undefined"] == 1 and flat["correlation_mean"] == pytest.approx(1.0)
    with pytest.raises(DapterError, match="two equal stacks"):
        saliency.attention_consistency(before, before[:1])


@pytest.fixture(scope="module")
def two_pairs(tmp_path_factory):
    """Cifar2:10's two labels, an untrained LeNet and a (4, 8, 8) converter for each, saved."""
    folder = tmp_path_factory.mktemp("pairs")
    tf.keras.utils.set_random_seed(0)
    paths = {}
    for label, classes in (("superclass", 2), ("label", 10)):
        targets.build_target("lenet", (32, 32, 3), classes).save(folder / f"{label}.keras")
        models.build_converter((4, 8, 8)).save(folder / f"{label}_converter.keras")
        paths[label] = (str(folder / f"{label}.keras"), str(folder / f"{label}_converter.keras"))
    return paths


def test_cross_converter_table_on_the_embedded_sample(two_pairs):
    from dapter_tf import evaluate

    test_set = data.load_split(tasks.get_task("cifar2_10"), "embedded", "test").take(24)
    targets = {k: models.load_target(t) for k, (t, _) in two_pairs.items()}
    converters = {k: models.load_converter(c) for k, (_, c) in two_pairs.items()}
    table = table4.cross_converter_table(targets, converters, test_set.images, test_set.labels)
    assert table["names"] == ["superclass", "label"] and table["images"] == 24
    raw = np.array(table["importance"])
    np.testing.assert_allclose(np.diag(table["normalized"]), [1.0, 1.0])
    with np.errstate(divide="ignore"):  # An untrained converter can leave a target nothing to explain.
        np.testing.assert_allclose(table["margins"], [raw[0, 0] / raw[0, 1], raw[1, 1] / raw[1, 0]])
    # Each cell is Grad-CAM of that target on that converter's images. The two-class superclass
    # explains "animal" (class 1) on the animal images only; the ten classes explain the true label.
    seen = evaluate.convert_images(converters["label"], test_set.images)
    animals = test_set.labels["superclass"] == 1
    direct = saliency.importance(saliency.grad_cam(targets["superclass"], seen[animals], np.ones(animals.sum(), int)))
    assert raw[0, 1] == pytest.approx(direct.mean(), rel=1e-5)
    assert table["images_explained"] == [int(animals.sum()), 24]
    plain = saliency.grad_cam(targets["label"], test_set.images, test_set.labels["label"])
    assert table["importance_original"][1] == pytest.approx(saliency.importance(plain).mean(), rel=1e-5)
    accuracy = evaluate.target_accuracy(targets["label"], seen, test_set.labels["label"])
    assert table["accuracy"][1][1] == pytest.approx(accuracy)
    with pytest.raises(DapterError, match="must pair up by name"):
        table4.cross_converter_table(targets, {"label": converters["label"]}, test_set.images, test_set.labels)


def test_gradcam_binary_writes_table_and_grids(two_pairs, tmp_path):
    workdir = tmp_path / "wd"
    proc = run_binary(
        "experiments.gradcam",
        "--dataset=cifar2_10",
        "--max_train=32",
        "--max_test=40",
        "--grid_images=4",
        "--targets=" + ",".join(f"{k}={t}" for k, (t, _) in two_pairs.items()),
        "--converters=" + ",".join(f"{k}={c}" for k, (_, c) in two_pairs.items()),
        f"--workdir={workdir}",
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads((workdir / "gradcam.json").read_text())
    assert found["images"] == 40 and set(found["pairs"]) == {"superclass", "label"}
    assert found["pairs"]["label"]["layer"] == "conv2"
    assert found["cross_converter"]["names"] == ["superclass", "label"]
    summary = (workdir / "summary.txt").read_text()
    assert "Table 4" in summary and "smallest margin" in summary
    for name in ("attention_superclass.png", "attention_label.png", "cross_converter.png"):
        assert (workdir / name).stat().st_size > 0


@pytest.mark.parametrize(
    "targets, converters, message",
    [
        ("label=T", "superclass=C", "must name the same labels"),
        ("wings=T", "wings=C", "has no label wings"),
        ("label=S", "label=C", "has 2 outputs but label 'label' has 10 classes"),
        ("label", "label=C", "takes name=value items"),
    ],
)
def test_gradcam_binary_bad_flags(two_pairs, tmp_path, targets, converters, message):
    paths = {"T": two_pairs["label"][0], "S": two_pairs["superclass"][0], "C": two_pairs["label"][1]}
    for key, path in paths.items():
        targets, converters = targets.replace(f"={key}", f"={path}"), converters.replace(f"={key}", f"={path}")
    workdir = tmp_path / "wd"
    proc = run_binary(
        "experiments.gradcam",
        "--dataset=cifar2_10",
        "--max_train=32",
        "--max_test=8",
        f"--targets={targets}",
        f"--converters={converters}",
        f"--workdir={workdir}",
    )
    assert_one_error_line(proc, message)
    assert not workdir.exists()


def test_analysis_binaries_explain_their_flags():
    for module, names in (
        ("experiments.gradcam", ["--targets", "--converters", "--layer", "--class_source", "--grid_images"]),
        ("experiments.bandwidth", ["--converter", "--name", "--sizes", "--jpeg_quality", "--workdir"]),
    ):
        proc = run_binary(module, "--helpshort")
        for flag in names:
            assert f"  {flag}:" in proc.stdout, (module, flag)

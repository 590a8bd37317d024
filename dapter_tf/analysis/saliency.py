"""Grad-CAM (§7.2): what a target attends to before and after protection, and the cross-converter table.

Grad-CAM (Selvaraju et al., the paper's [26]) weights each channel k of a convolutional feature map A
by the mean gradient of the class score y^C over the map, alpha_k = mean_ij dy^C / dA^k_ij, keeps the
positive part of sum_k alpha_k A^k and resizes it to the input's size. §7.2 reads its L1 norm as how
much the input matters to the task:

    V   = ||Grad-CAM(M, I, C)||_1      the target M on the original image I
    V_D = ||Grad-CAM(M_D, I, C)||_1    M_D = M o Converter, the DAPter-enabled service

M_D's last convolutional layer is M's own, so Grad-CAM(M_D, I, C) equals Grad-CAM(M, Converter(I), C):
the gradient of y^C with respect to that layer never passes through the converter. M is fed the uint8
images a phone would send (rounded, as every measure here is), so V_D is the importance of what the
provider actually receives.

Table 4 (``analysis.table4``) attaches every converter to every target; if a converter keeps only what its own target
needs, a target reads little from another target's converter and its row peaks on the diagonal.
"""

import keras
import numpy as np
import tensorflow as tf
from skimage.metrics import structural_similarity

from dapter_tf import evaluate, metrics
from dapter_tf.data import validate_images
from dapter_tf.errors import DapterError
from dapter_tf.figures import save_grid

# Which class C each map explains, on which images (``select_explained``):
#   positive   a two-class label's class 1 (the attribute is present), on the images that have it;
#   label      every image's true label;
#   predicted  what the target predicts on the image it is given (original or converted);
#   auto       positive for two-class labels, label otherwise.
# §7.2 computes V "for the inference task C": for an attribute, what supports deciding that it is
# there. The "absent" class is supported by erasing the image, which every converter does to what
# its own target does not need, so it cannot tell a converter that keeps an attribute from one that
# removes it (results/gradcam/README.md measures all three readings).
CLASS_SOURCES = ("auto", "positive", "label", "predicted")
BATCH_SIZE = 100


def default_layer(model: keras.Model) -> str:
    """The layer whose feature maps Grad-CAM explains unless told otherwise: the last convolution's.

    That is the output of the model's last ``Conv2D``, carried through the layers after it that keep
    its resolution (batch norm, the residual add, the ReLU), up to the first that pools or
    flattens. In the zoo: the last block's output in the ResNets, the ReLU after the last
    convolution in the VGGs (before pool5), ``conv2`` in LeNet.

    Raises:
        DapterError: if the model has no ``Conv2D`` layer.
    """
    layers = model.layers
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise DapterError(f"model {model.name!r} has no Conv2D layer for Grad-CAM to explain")
    chosen = layers[convs[-1]]
    spatial = tuple(chosen.output.shape[1:3])
    for layer in layers[convs[-1] + 1 :]:
        shape = tuple(layer.output.shape)
        if len(shape) != 4 or shape[1:3] != spatial:
            break
        chosen = layer
    return chosen.name


def _explainer(model: keras.Model, layer_name: str | None) -> keras.Model:
    name = layer_name or default_layer(model)
    try:
        layer = model.get_layer(name)
    except ValueError:
        raise DapterError(f"model {model.name!r} has no layer {name!r} for Grad-CAM") from None
    if len(layer.output.shape) != 4:
        raise DapterError(
            f"layer {name!r} of {model.name!r} outputs shape {tuple(layer.output.shape)}: "
            "Grad-CAM needs a layer with feature maps (N x H x W x C)"
        )
    return keras.Model(model.inputs, [layer.output, model.outputs[0]])


def _check_classes(classes, n: int, num_classes: int) -> np.ndarray:
    classes = np.asarray(classes)
    if classes.shape != (n,) or not np.issubdtype(classes.dtype, np.integer):
        raise DapterError(f"Grad-CAM needs one integer class per image ({n}), got {classes.dtype} {classes.shape}")
    if n and (classes.min() < 0 or classes.max() >= num_classes):
        raise DapterError(f"classes must lie in 0..{num_classes - 1}, got {classes.min()}..{classes.max()}")
    return classes.astype(np.int64)


def grad_cam(
    model: keras.Model, images: np.ndarray, classes, layer_name: str | None = None, batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """Grad-CAM saliency maps of ``model`` for ``classes``, at the images' size.

    Args:
        model: A target: float [0, 1] images in, logits out.
        images: uint8 N x H x W x 3 images, as a phone sends them.
        classes: N integer classes, the C of each image's map.
        layer_name: The layer to explain; ``default_layer(model)`` when ``None`` or empty.
        batch_size: Images per gradient computation.

    Returns:
        float32 N x H x W maps, non-negative and not normalised (their L1 norm is V), resized from the
        layer's resolution bilinearly.

    Raises:
        DapterError: on bad images, classes outside the model's outputs, or a layer without
            feature maps.
    """
    images = validate_images(images, "Grad-CAM")
    classes = _check_classes(classes, len(images), model.outputs[0].shape[-1])
    explainer = _explainer(model, layer_name)
    size = images.shape[1:3]

    # A tf.function, not eager code: in TF 2.21 the eager gradient through the ResNets of width 2 to
    # 12 corrupts the heap under oneDNN (tests/test_saliency.py runs them), the traced one does not.
    @tf.function(reduce_retracing=True)
    def explain(x, c):
        with tf.GradientTape() as tape:
            # Watching the input, not the weights: a frozen target's weights are not watched, and the
            # feature maps must be recorded either way.
            tape.watch(x)
            features, logits = explainer(x, training=False)
            scores = tf.gather(logits, c, batch_dims=1)
        # Summing the batch's scores is safe: in inference mode each image's score depends on its
        # own feature maps only, so the gradient for each image is that of its own score.
        grads = tape.gradient(scores, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
        if tuple(cam.shape[1:3]) != size:
            cam = tf.image.resize(cam, size, method="bilinear")
        return cam[..., 0]

    maps = []
    for start in range(0, len(images), batch_size):
        x = tf.constant(images[start : start + batch_size], tf.float32) / 255.0
        maps.append(explain(x, tf.constant(classes[start : start + batch_size])).numpy())
    return np.concatenate(maps).astype(np.float32)


def importance(maps: np.ndarray) -> np.ndarray:
    """§7.2's importance of each image: the L1 norm of its saliency map (float64, one per map)."""
    return np.abs(np.asarray(maps, np.float64)).sum(axis=(1, 2))


def resolve_class_source(class_source: str, num_classes: int) -> str:
    """``class_source`` with ``auto`` resolved for a label of ``num_classes`` classes."""
    if class_source not in CLASS_SOURCES:
        raise DapterError(f"class_source must be one of {', '.join(CLASS_SOURCES)}, got {class_source!r}")
    if class_source == "auto":
        return "positive" if num_classes == 2 else "label"
    if class_source == "positive" and num_classes != 2:
        raise DapterError(f"class_source 'positive' needs a two-class label (an attribute), not {num_classes} classes")
    return class_source


def select_explained(
    target: keras.Model, images: np.ndarray, labels: np.ndarray, class_source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``images`` get a saliency map, and the class C each map explains (see ``CLASS_SOURCES``).

    Returns:
        (index into ``images``, classes for those images).

    Raises:
        DapterError: on an unknown source, ``positive`` for a label that is not two-class, or no
            image with the attribute.
    """
    source = resolve_class_source(class_source, target.outputs[0].shape[-1])
    labels = np.asarray(labels)
    if source == "positive":
        index = np.flatnonzero(labels == 1)
        if not len(index):
            raise DapterError("no image has the attribute (label 1), so its class has nothing to explain")
        return index, np.ones(len(index), np.int64)
    index = np.arange(len(images))
    if source == "label":
        return index, labels
    return index, np.argmax(evaluate.target_logits(target, images), axis=-1)


def mean_importance(target, images, labels, class_source, layer_name) -> tuple[float, int]:
    index, classes = select_explained(target, images, labels, class_source)
    return float(importance(grad_cam(target, images[index], classes, layer_name)).mean()), len(index)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else float("nan")


def _map_ssim(a: np.ndarray, b: np.ndarray) -> float:
    # One scale for both maps (their joint maximum): a map that keeps its shape but loses its
    # strength should not look identical. Correlation is the scale-free measure beside it.
    top = max(float(a.max()), float(b.max()))
    if top == 0:
        return 1.0
    side = min(a.shape)
    window = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(a / top, b / top, data_range=1.0, win_size=window))


def attention_consistency(before: np.ndarray, after: np.ndarray, seed: int = 0) -> dict:
    """How alike the saliency maps before and after protection are (§7.2, "Attention Consistency").

    Args:
        before: N maps of the target on the original images.
        after: The N maps of the target on the same images converted.
        seed: Seeds the pairing of each image with another for the chance level.

    Returns:
        ``correlation_mean`` / ``_median`` (Pearson, per image; a constant map has none and is
        counted in ``correlation_undefined``), ``ssim_mean`` / ``_median`` (the two maps on one
        scale), and ``chance_correlation_mean`` / ``chance_ssim_mean``: the same measures between an
        image's map and another image's protected map. Aligned faces share where a target looks, so
        "high similarity" means above that chance level.
    """
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape or before.ndim != 3 or not len(before):
        raise DapterError(f"need two equal stacks of N x H x W maps, got {before.shape} and {after.shape}")
    n = len(before)
    order = np.random.default_rng(seed).permutation(n)
    partner = np.empty(n, np.int64)
    partner[order] = np.roll(order, 1)  # Each image meets another one (itself only when n == 1).
    correlation = np.array([_pearson(a, b) for a, b in zip(before, after)])
    ssim = np.array([_map_ssim(a, b) for a, b in zip(before, after)])
    chance_correlation = np.array([_pearson(before[i], after[partner[i]]) for i in range(n)])
    chance_ssim = np.array([_map_ssim(before[i], after[partner[i]]) for i in range(n)])
    return {
        "images": n,
        "correlation_mean": _over_defined(np.mean, correlation),
        "correlation_median": _over_defined(np.median, correlation),
        "correlation_undefined": int(np.isnan(correlation).sum()),
        "ssim_mean": float(np.mean(ssim)),
        "ssim_median": float(np.median(ssim)),
        "chance_correlation_mean": _over_defined(np.mean, chance_correlation),
        "chance_ssim_mean": float(np.mean(chance_ssim)),
    }


def _over_defined(reduce, values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(reduce(values)) if len(values) else float("nan")


def analyse_pair(
    target: keras.Model,
    converter: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    class_source: str = "auto",
    layer_name: str | None = None,
) -> tuple[dict, dict]:
    """Grad-CAM of a target before and after its converter: importance and attention consistency.

    Returns:
        (measures, arrays). ``measures``: ``importance_original`` (mean V), ``importance_converted``
        (mean V_D), their ratio, ``class_source`` (resolved) and ``images_explained``, the target's
        accuracy on all the images before and after, and ``attention_consistency``'s keys.
        ``arrays``: the explained ``images``, their ``converted`` versions and the ``before`` /
        ``after`` maps, for the grid.
    """
    converted = evaluate.convert_images(converter, images)
    index, classes_before = select_explained(target, images, labels, class_source)
    _, classes_after = select_explained(target, converted, labels, class_source)
    before = grad_cam(target, images[index], classes_before, layer_name)
    after = grad_cam(target, converted[index], classes_after, layer_name)
    v, v_d = float(importance(before).mean()), float(importance(after).mean())
    measures = {
        "class_source": resolve_class_source(class_source, target.outputs[0].shape[-1]),
        "images_explained": int(len(index)),
        "importance_original": v,
        "importance_converted": v_d,
        "importance_ratio": v_d / v if v else float("nan"),
        "accuracy_original": evaluate.target_accuracy(target, images, labels),
        "accuracy_converted": evaluate.target_accuracy(target, converted, labels),
        **attention_consistency(before, after),
    }
    arrays = {"images": images[index], "converted": converted[index], "before": before, "after": after}
    return measures, arrays


def _gray(maps: np.ndarray, top: np.ndarray) -> np.ndarray:
    scaled = np.where(top > 0, maps / np.where(top > 0, top, 1.0), 0.0)
    return np.repeat(metrics.to_uint8(scaled)[..., None], 3, axis=-1)


def save_attention_grid(path: str, images, before, converted, after) -> None:
    """Fig. 10: each image above its saliency on M, its converted image and its saliency on M o C.

    Saliency is white where it is high, as in the paper; each image's two maps share one scale (their
    joint maximum), so a map that weakens after protection looks darker.
    """
    top = np.maximum(before.max(axis=(1, 2)), after.max(axis=(1, 2)))[:, None, None]
    save_grid(path, images, _gray(before, top), converted, _gray(after, top))

"""The target as the provider serves it: a ``.keras`` file or a SavedModel, behind its input contract.

A provider's deployed classifier is usually a SavedModel served by TF Serving, taking its own input
(0..255 floats, [-1, 1], caffe's BGR means, ImageNet's mean and std) and returning logits or
probabilities. The converter always sends uint8 RGB pixels (as floats in [0, 1], uint8 / 255), so
the provider's preprocessing sits between converter and target, exactly as its server applies it.
``load_target`` hides the contract: whatever the model, it returns a frozen Keras model taking
[0, 1] float images and returning logits, through which gradients reach the converter.

The contract is stated once: by flags (``cli.target_flags``) or by a small JSON file beside the
model (``contract_file``); a workdir records it in its ``config.json``.
"""

import dataclasses
import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

from dapter_tf.errors import DapterError
from dapter_tf.models import saving
from dapter_tf.models.saving import is_saved_model
from dapter_tf.records import runs
from dapter_tf.records.files import write_json

PREPROCESSINGS = ("zero_one", "minus_one_one", "raw_0_255", "caffe", "torch")
OUTPUTS = ("logits", "probabilities")
# What each preprocessing does to uint8 RGB pixels p (0..255), as keras.applications' modes do.
_WHAT_IT_TAKES = {
    "zero_one": "mapped to [0, 1]",
    "minus_one_one": "mapped to [-1, 1]",
    "raw_0_255": "as 0..255 floats",
    "caffe": "in BGR order as 0..255 floats minus the ImageNet means",
    "torch": "mapped to [0, 1] and normalised by the ImageNet mean and std",
}
# keras.applications.imagenet_utils: caffe's means are in BGR order; torch's mean and std in RGB.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
# Probabilities become logits as log(p), p clipped here so that a 0 gives a finite logit.
_MIN_PROBABILITY = 1e-7


@dataclasses.dataclass(frozen=True)
class TargetContract:
    """How the provider's server feeds its model and what the model returns.

    Attributes:
        preprocessing: How uint8 RGB pixels become the model's input, one of ``PREPROCESSINGS``.
        output: ``logits`` or ``probabilities`` (a softmax already applied).
        signature: The SavedModel signature to call (a ``.keras`` file has none: unused there).
        output_key: Which output of the signature's dict is the class scores; empty: its only one.
        image_size: The side the model takes when its signature leaves it open; 0: the model's own.
    """

    preprocessing: str = "zero_one"
    output: str = "logits"
    signature: str = "serving_default"
    output_key: str = ""
    image_size: int = 0

    def __post_init__(self):
        if self.preprocessing not in PREPROCESSINGS:
            raise DapterError(
                f"--target_preprocessing must be one of {', '.join(PREPROCESSINGS)}, got {self.preprocessing!r}"
            )
        if self.output not in OUTPUTS:
            raise DapterError(f"--target_output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if not self.signature:
            raise DapterError("--target_signature must name a signature of the SavedModel (serving_default)")
        if self.image_size < 0:
            raise DapterError(
                f"the target contract's image_size must be >= 0 (0: the model's own), got {self.image_size}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str = "the target contract") -> "TargetContract":
        """The contract ``values`` hold (a contract JSON, or a ``config.json``'s ``target_contract``).

        Raises:
            DapterError: naming ``where``, on a key that is no field or a value of the wrong type.
        """
        if not isinstance(values, dict):
            raise DapterError(f"{where} must be a JSON object with the fields of a target contract")
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise DapterError(f"{where} has unknown fields {', '.join(unknown)}; it may hold {', '.join(fields)}")
        for name, value in values.items():
            wanted = int if name == "image_size" else str
            if type(value) is not wanted:
                raise DapterError(f"{where}: {name} must be a {wanted.__name__}, got {value!r}")
        return cls(**values)

    def describe(self) -> str:
        """One sentence for the model card, e.g. "the target takes uint8 RGB pixels mapped to [-1, 1] ..."."""
        takes = f"{_WHAT_IT_TAKES[self.preprocessing]} ({self.preprocessing})"
        served = f" through signature {self.signature}" if self.signature != "serving_default" else ""
        key = f" (output {self.output_key})" if self.output_key else ""
        return f"the target takes uint8 RGB pixels {takes}{served} and returns {self.output}{key}"


DEFAULT_CONTRACT = TargetContract()


def preprocess(pixels, preprocessing: str):
    """The model's input from the converter's pixels, as the provider's server computes it.

    Args:
        pixels: Float RGB images in [0, 1] (uint8 / 255), shape (..., 3).
        preprocessing: One of ``PREPROCESSINGS``; with p the 0..255 values: ``zero_one`` p / 255,
            ``minus_one_one`` p / 127.5 - 1, ``raw_0_255`` p, ``caffe`` BGR p minus the means
            (103.939, 116.779, 123.68), ``torch`` (p / 255 - mean) / std.

    Returns:
        A float32 tensor of the same shape.
    """
    pixels = tf.cast(pixels, tf.float32)
    p = pixels * 255.0
    if preprocessing == "zero_one":
        return pixels
    if preprocessing == "minus_one_one":
        return p / 127.5 - 1.0
    if preprocessing == "raw_0_255":
        return p
    if preprocessing == "caffe":
        return p[..., ::-1] - tf.constant(_CAFFE_MEAN_BGR)
    if preprocessing == "torch":
        return (p / 255.0 - tf.constant(_TORCH_MEAN)) / tf.constant(_TORCH_STD)
    raise DapterError(f"--target_preprocessing must be one of {', '.join(PREPROCESSINGS)}, got {preprocessing!r}")


def contract_file(target_path: str) -> str:
    """The contract JSON beside a target: ``<path without trailing slash and .keras>.contract.json``."""
    stem = os.path.normpath(target_path)
    if stem.endswith(".keras"):
        stem = stem[: -len(".keras")]
    return f"{stem}.contract.json"


def read_contract(target_path: str) -> TargetContract | None:
    """The contract in the JSON beside ``target_path``, or None when there is none.

    Raises:
        DapterError: naming the file, when it is not a valid contract.
    """
    path = contract_file(target_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, ValueError) as e:
        raise DapterError(f"{path} is not a readable contract JSON ({type(e).__name__}: {e})") from None
    return TargetContract.from_dict(values, path)


def write_contract(target_path: str, contract: TargetContract) -> str:
    """Writes ``contract`` as the JSON beside ``target_path``; returns its path."""
    path = contract_file(target_path)
    write_json(path, contract.to_dict())
    return path


def resolve_contract(target_path: str, from_flags: TargetContract | None) -> TargetContract:
    """The target's contract, stated once: by flags, by the JSON beside it, or (neither) our zoo's default.

    Raises:
        DapterError: in one line naming both, when flags and the JSON are both given and disagree.
    """
    beside = read_contract(target_path)
    if from_flags is not None and beside is not None and from_flags != beside:
        fields = [f.name for f in dataclasses.fields(TargetContract)]
        differ = [name for name in fields if getattr(from_flags, name) != getattr(beside, name)]
        raise DapterError(
            f"the target contract flags and {contract_file(target_path)} disagree (in {', '.join(differ)}): "
            "state the contract once, by the flags or by the JSON beside the model"
        )
    return from_flags or beside or DEFAULT_CONTRACT


def recorded_contract(workdir: str) -> TargetContract | None:
    """The contract a train_dapter workdir's ``config.json`` records, or None (no record, or one made before it)."""
    record = runs.read_config(workdir)
    if not record or not isinstance(record.get("target_contract"), dict):
        return None
    where = f"{os.path.join(workdir, runs.CONFIG_FILE)}'s target_contract"
    return TargetContract.from_dict(record["target_contract"], where)


class Preprocess(keras.layers.Layer):
    """The provider's preprocessing (``preprocess``) as a layer in front of its model."""

    def __init__(self, preprocessing: str, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.preprocessing = preprocessing

    def call(self, pixels):
        return preprocess(pixels, self.preprocessing)

    def compute_output_shape(self, input_shape):
        return input_shape


class ToLogits(keras.layers.Layer):
    """Logits from a served model's probabilities: log(p), p clipped away from 0."""

    def call(self, probabilities):
        return tf.math.log(tf.clip_by_value(tf.cast(probabilities, tf.float32), _MIN_PROBABILITY, 1.0))

    def compute_output_shape(self, input_shape):
        return input_shape


class ServedSignature(keras.layers.Layer):
    """One signature of a loaded SavedModel, called as the server calls it; never saved.

    It holds the ``tf.saved_model.load`` result: a signature whose loaded object was dropped
    fails ("Called a function referencing variables which have been deleted").
    """

    def __init__(self, loaded, signature: str, input_name: str, input_dtype, output_key: str, classes, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._loaded = loaded
        self._signature = signature
        self._input_name = input_name
        self._input_dtype = input_dtype
        self._output_key = output_key
        self._classes = classes

    def call(self, images):
        # The signature takes tensors as keyword inputs; cast to the dtype it was exported with.
        function = self._loaded.signatures[self._signature]
        outputs = function(**{self._input_name: tf.cast(images, self._input_dtype)})
        return tf.cast(outputs[self._output_key], tf.float32)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._classes)


def load_target(path: str, contract: TargetContract = DEFAULT_CONTRACT) -> keras.Model:
    """The frozen target behind its contract: takes [0, 1] float images (N, H, W, 3), returns logits.

    A ``.keras`` file is loaded safely (``saving``); with the default contract it is returned as it
    is, so the zoo's targets are untouched. A SavedModel directory is loaded with
    ``tf.saved_model.load`` and its ``contract.signature`` called with its one input; gradients
    reach the converter through it. Its input size comes from the signature, else from
    ``contract.image_size``.

    Raises:
        DapterError: one line, on a missing file, a folder that is not a SavedModel, no such
            signature, a signature with several or non-float inputs, or several outputs and no
            ``output_key``.
    """
    if is_saved_model(path):
        served, input_shape = _load_saved_model(path, contract)
        name = os.path.basename(os.path.normpath(path))
    else:
        model = saving.load_keras_target(path)  # A folder that is no SavedModel is refused there.
        if contract == DEFAULT_CONTRACT:
            return model
        served, input_shape = model, tuple(model.input_shape[1:])
        name = model.name
    images = keras.Input(input_shape, name="pixels")
    scores = served(Preprocess(contract.preprocessing, name="preprocess")(images), training=False)
    if contract.output == "probabilities":
        scores = ToLogits(name="to_logits")(scores)
    return saving.freeze(keras.Model(images, scores, name=_keras_name(name)))


def _keras_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "served_target"


def _load_saved_model(path: str, contract: TargetContract):
    """A SavedModel's signature as a ``ServedSignature`` layer, and the image shape it takes."""
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:  # TF raises many types for a broken SavedModel; all mean the same to the user.
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise DapterError(f"{path}: not a loadable SavedModel ({type(e).__name__}: {first_line})") from None
    signatures = sorted(loaded.signatures.keys())
    if contract.signature not in loaded.signatures:
        raise DapterError(
            f"SavedModel {path} has no signature {contract.signature!r} (it has: {', '.join(signatures) or 'none'}); "
            "name one with --target_signature"
        )
    function = loaded.signatures[contract.signature]
    inputs = function.structured_input_signature[1]
    if len(inputs) != 1 or function.structured_input_signature[0]:
        raise DapterError(
            f"signature {contract.signature!r} of {path} takes {len(inputs)} inputs ({', '.join(sorted(inputs))}); "
            "a target takes one image batch"
        )
    (input_name, spec), = inputs.items()
    if not spec.dtype.is_floating:
        raise DapterError(
            f"signature {contract.signature!r} of {path} takes {spec.dtype.name} input {input_name!r}: no gradient "
            "can reach the converter through it; export the model with a float input"
        )
    shape = spec.shape
    if shape.rank != 4 or shape[-1] != 3:
        raise DapterError(
            f"signature {contract.signature!r} of {path} takes input {input_name!r} of shape {shape}, not RGB "
            "images (N, H, W, 3)"
        )
    outputs = function.structured_outputs
    key = contract.output_key
    if not key and len(outputs) != 1:
        raise DapterError(
            f"signature {contract.signature!r} of {path} has {len(outputs)} outputs ({', '.join(sorted(outputs))}): "
            "name the class scores with --target_output_key"
        )
    key = key or next(iter(outputs))
    if key not in outputs:
        raise DapterError(
            f"signature {contract.signature!r} of {path} has no output {key!r} (it has: "
            f"{', '.join(sorted(outputs))}); fix --target_output_key"
        )
    if outputs[key].shape.rank != 2 or outputs[key].shape[-1] is None:
        raise DapterError(
            f"output {key!r} of signature {contract.signature!r} of {path} has shape {outputs[key].shape}, "
            "not class scores (N, classes)"
        )
    height, width = shape[1], shape[2]
    if height is None and width is None and contract.image_size:
        height = width = contract.image_size
    layer = ServedSignature(
        loaded, contract.signature, input_name, spec.dtype, key, int(outputs[key].shape[-1]), name="served_signature"
    )
    return layer, (height, width, 3)


def target_accuracy(target: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """The target's accuracy on original images (uint8, or floats in [0, 1])."""
    labels = np.asarray(labels).reshape(-1)
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size])
        if batch.dtype == np.uint8:
            batch = batch.astype(np.float32) / 255.0
        logits = target(tf.constant(batch, tf.float32), training=False)
        correct += int(np.sum(np.argmax(np.asarray(logits), axis=-1) == labels[start : start + batch_size]))
    return correct / max(len(labels), 1)


def near_chance(accuracy: float, labels) -> bool:
    """Whether ``accuracy`` on ``labels`` is near chance: below the majority class's rate plus a margin.

    The margin is max(0.05, 3 standard errors of the majority rate over ``len(labels)`` images): a
    target that barely beats always answering the commonest class is not serving its task.
    """
    labels = np.asarray(labels).reshape(-1)
    majority = np.bincount(labels).max() / len(labels)
    margin = max(0.05, 3 * math.sqrt(majority * (1 - majority) / len(labels)))
    return accuracy < majority + margin


def check_target_serves(target: keras.Model, images, labels, target_path: str, contract: TargetContract) -> float:
    """Measures the target on the user's labelled originals; refuses a near-chance figure.

    A wrong contract (inputs in the wrong range or channel order, probabilities read as logits)
    or a broken model shows as a target that scores about chance on its own task's photos.

    Returns:
        The accuracy.

    Raises:
        DapterError: in one line naming the contract flags, when the accuracy is near chance.
    """
    accuracy = target_accuracy(target, images, labels)
    if near_chance(accuracy, labels):
        labels = np.asarray(labels).reshape(-1)
        majority = np.bincount(labels).max() / len(labels)
        raise DapterError(
            f"target {target_path} scores {accuracy:.4f} on {len(labels)} labelled originals, near chance (the "
            f"commonest class alone scores {majority:.4f}): its input contract is likely wrong or the model broken; "
            f"check --target_preprocessing (now {contract.preprocessing}) and --target_output (now {contract.output}), "
            f"or {contract_file(target_path)}"
        )
    return accuracy

"""Mixed precision (``--mixed_precision=bfloat16``): the trained model computes in bfloat16.

Keras's mixed policies keep every variable in float32 and cast to the compute dtype inside each
layer. What this project keeps in float32 whatever the policy: the converter's output layer (its
pixels feed L_eta's histogram and the frozen target), every loss, and the saved model, which is
rebuilt in float32 with the trained weights so export and release see the same file as ever.

bfloat16 has float32's exponent range, so its gradients need no loss scaling. float16 does need
it, and is not offered: Keras 3's ``LossScaleOptimizer`` (the one dynamic loss scaler of Keras 3)
raises "No gradients provided for any variable" from its ``Cond`` when ``apply`` runs inside a
``tf.function``, as every custom training loop runs it (TF 2.21, Keras 3; a ten-line dense model
shows it). GPUs from Ampere (A100, H100, H200) on and TPUs compute bfloat16 natively.
"""

import contextlib

import keras

from dapter_tf.train.config import PRECISIONS

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


@contextlib.contextmanager
def computing_in(precision: str):
    """Models built inside compute in ``precision`` (one of ``PRECISIONS``); the policy is restored after."""
    assert precision in PRECISIONS, precision
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def float32_copy(model: keras.Model, build) -> keras.Model:
    """The trained ``model`` rebuilt by ``build()`` under the float32 policy, with its weights."""
    if model.dtype_policy.name == "float32":
        return model
    with computing_in("float32"):
        copy = build()
    copy.set_weights(model.get_weights())
    return copy

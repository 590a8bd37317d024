"""Mixed precision (``--mixed_precision``): the trained model computes in bfloat16 or float16.

Keras's mixed policies keep every variable in float32 and cast to the compute dtype inside each
layer. What this project keeps in float32 whatever the policy: the converter's output layer (its
pixels feed L_eta's histogram and the frozen target), every loss, and the saved model, which is
rebuilt in float32 with the trained weights so export and release see the same file as ever.
float16 needs loss scaling (its gradients underflow); bfloat16 has float32's range and does not.
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


def build_optimizer(optimizer, precision: str):
    """``optimizer``, wrapped in Keras's dynamic loss scaling under float16.

    A step then computes gradients of ``optimizer.scale_loss(loss)`` (every Keras optimizer has
    it; only this one scales) and ``apply`` unscales them, skipping a step whose gradients overflowed.
    """
    if precision == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def float32_copy(model: keras.Model, build) -> keras.Model:
    """The trained ``model`` rebuilt by ``build()`` under the float32 policy, with its weights."""
    if model.dtype_policy.name == "float32":
        return model
    with computing_in("float32"):
        copy = build()
    copy.set_weights(model.get_weights())
    return copy

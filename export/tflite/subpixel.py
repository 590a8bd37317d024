"""The sub-pixel rewrite of the converter's transposed convolutions, for TFLite's int8 kernels."""

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="dapter_tf_export")
class DepthToSpace(keras.layers.Layer):
    """``tf.nn.depth_to_space`` as a layer (TFLite's DEPTH_TO_SPACE, which XNNPACK runs)."""

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block_size)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale = self.block_size
        return (batch, height and height * scale, width and width * scale, channels // scale**2)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


def _is_rewritable(layer) -> bool:
    return (
        isinstance(layer, keras.layers.Conv2DTranspose)
        and tuple(layer.kernel_size) == (3, 3)
        and tuple(layer.strides) == (2, 2)
        and layer.padding == "same"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.data_format == "channels_last"
    )


# For a 3x3 stride-2 "same" transposed convolution, TensorFlow writes input pixel m through kernel
# tap k to output pixel 2m + k. Output 2m + phase thus reads: phase 0, tap 2 from m - 1 and tap 0
# from m; phase 1, tap 1 from m. Each phase's window rows (oldest first) and the kernel row each uses:
_PHASE_TAPS = {0: (2, 0), 1: (1,)}


def phase_kernels(kernel: np.ndarray) -> dict:
    """Splits a 3x3 stride-2 "same" transposed-convolution kernel into its four output phases.

    Output pixel (2m + a, 2n + b) depends only on inputs m - 1..m and n - 1..n (``_PHASE_TAPS``),
    so phase (a, b) is an ordinary stride-1 convolution at the input's resolution with a 2x2,
    2x1, 1x2 or 1x1 kernel: 9 taps in all, the transposed kernel's own weights and no zeros.

    Args:
        kernel: Keras ``Conv2DTranspose`` kernel, shape (3, 3, C_out, C_in).

    Returns:
        ``{(a, b): Conv2D kernel of shape (rows, cols, C_in, C_out)}``.
    """
    kernels = {}
    for a, rows in _PHASE_TAPS.items():
        for b, cols in _PHASE_TAPS.items():
            kernels[a, b] = np.stack([np.stack([kernel[k_h, k_w].T for k_w in cols]) for k_h in rows])
    return kernels


def _subpixel_block(layer) -> keras.Model:
    """The exact stride-1 equivalent of one transposed convolution: four phase convolutions + depth-to-space."""
    kernel = layer.get_weights()[0]
    bias = layer.get_weights()[1] if layer.use_bias else np.zeros(kernel.shape[2], kernel.dtype)
    # Every layer is named after the one it replaces: the names end up in the .tflite file, and
    # Keras's automatic ones (conv2d_12) count up through the process, so the same converter would
    # give other bytes depending on what was exported before it.
    images = keras.Input(shape=(None, None, kernel.shape[3]), name=f"{layer.name}_in")
    phases = []
    for (a, b), phase_kernel in phase_kernels(kernel).items():
        # A two-tap direction reads m - 1 and m: pad one row (column) before, none after.
        x = images
        if (a, b) != (1, 1):
            x = keras.layers.ZeroPadding2D(((1 - a, 0), (1 - b, 0)), name=f"{layer.name}_pad{a}{b}")(images)
        # The activation is element-wise, so it commutes with the interleaving: each phase applies it.
        conv = keras.layers.Conv2D(
            kernel.shape[2], phase_kernel.shape[:2], activation=layer.activation, name=f"{layer.name}_phase{a}{b}"
        )
        phases.append(conv(x))
        conv.set_weights([phase_kernel, bias])
    # Depth-to-space wants channel group 2a + b for phase (a, b): the order of phase_kernels.
    concatenated = keras.layers.Concatenate(name=f"{layer.name}_phases")(phases)
    interleaved = DepthToSpace(2, name=f"{layer.name}_depth_to_space")(concatenated)
    return keras.Model(images, interleaved, name=layer.name)


def subpixel_upsampling(converter: keras.Model) -> keras.Model:
    """The converter with every 3x3 stride-2 transposed convolution replaced by its exact sub-pixel form.

    TFLite's TRANSPOSE_CONV runs outside XNNPACK's fast paths: at 224x224 the converter's two
    up-sampling layers cost more than its six convolutions together (bench/bench_export.py prints
    the per-layer cost). Four phase convolutions at the input's resolution, interleaved by
    depth-to-space (``phase_kernels``), compute the same function with the same weights and MACs,
    on ops XNNPACK runs at full speed. Other layers are shared with ``converter``, not copied.
    """
    if not any(_is_rewritable(layer) for layer in converter.layers):
        return converter
    return keras.models.clone_model(
        converter, clone_function=lambda layer: _subpixel_block(layer) if _is_rewritable(layer) else layer
    )

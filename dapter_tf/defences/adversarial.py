"""The adversarial reconstruction defence: online decoders that try to invert the converter while it trains.

A min-max in the converter's own training loop (DeepObfuscator; Wu et al., ECCV'18). Each step,

1. every decoder D_k takes ``decoder_steps`` Adam steps on L_recover = mean (D_k(C(x)) - x)^2, the
   converter fixed (its output enters with ``stop_gradient``);
2. the converter then takes one step on

       L = L_dap + weight * L_adv,   L_adv = mean_i max_k relu(e0_i - e_k,i) / E0,

   where e_k,i is decoder k's mean squared error on image i, e0_i that of the training images' mean
   image (what a decoder that learnt nothing of the image sends back), and E0 the mean of e0 over
   the training images. L_adv is the strongest decoder's gain over the mean image, in units of the
   mean image's error: 0 when no decoder beats the mean image, 1 when one restores every image
   exactly. The relu matters: maximising the decoders' error without it rewards a converter for
   making its own decoders worse than the mean image, a code they happen to misread but that a
   fresh decoder inverts (the issue's probe: its decoder's MSE up from 0.038 to 0.057, a fresh
   decoder's SSIM unchanged).

One decoder can be fooled; so there are ``decoders`` of them, and decoder k is re-initialised
(weights and optimizer) every ``restart_every`` steps, the restarts staggered so that young and
trained decoders always coexist (Wu et al. restart or ensemble the adversary for the same reason).
Restart times and initial weights follow from the step and the seed, so a resumed run restarts the
same decoders at the same steps with the same weights.

The decoders here are a small two-level U-Net of their own (``build_training_decoder``), never an
architecture or an instance that the attack suite measures the converter with.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from dapter_tf.errors import DapterError

DEFAULT_DECODER_FILTERS = (32, 64)


@dataclasses.dataclass(frozen=True)
class AdversaryConfig:
    """The online decoders of the adversarial defence.

    Attributes:
        weight: The weight of L_adv in the converter's loss; 0 turns the defence off (the paper's L_dap).
        decoders: How many decoders train at once.
        filters: Each decoder's channels at full and half resolution.
        restart_every: Re-initialise each decoder every this many steps, staggered across decoders
            (0: never).
        learning_rate: The decoders' Adam learning rate.
        decoder_steps: Decoder updates per converter step (more: closer to a best response).
    """

    weight: float = 0.0
    decoders: int = 2
    filters: tuple = DEFAULT_DECODER_FILTERS
    restart_every: int = 500
    learning_rate: float = 1e-3
    decoder_steps: int = 1

    def __post_init__(self):
        if not self.weight >= 0:
            raise DapterError(f"adversary weight must be >= 0 (0: no adversarial defence), got {self.weight}")
        if self.decoders < 1:
            raise DapterError(f"adversary decoders must be >= 1, got {self.decoders}")
        if len(self.filters) != 2 or min(self.filters) < 1:
            raise DapterError(f"adversary filters must be two positive channel counts, got {self.filters}")
        if self.restart_every < 0:
            raise DapterError(f"adversary restart_every must be >= 0 (0: never), got {self.restart_every}")
        if self.decoders > 1 and 0 < self.restart_every < self.decoders:
            raise DapterError(f"restart_every ({self.restart_every}) must be at least decoders ({self.decoders})")
        if not self.learning_rate > 0:
            raise DapterError(f"adversary learning_rate must be > 0, got {self.learning_rate}")
        if self.decoder_steps < 1:
            raise DapterError(f"adversary decoder_steps must be >= 1, got {self.decoder_steps}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0


def build_training_decoder(filters=DEFAULT_DECODER_FILTERS, seed: int = 0, name: str = "adversary") -> keras.Model:
    """Builds one online decoder: a two-level U-Net from converted images to originals.

    conv 3x3 (f0) x 2 at full resolution; a stride-2 conv and a conv (f1) at half; a stride-2
    transposed conv back to full resolution, concatenated with the full-resolution features; a conv
    (f0) and a 3x3 sigmoid conv to RGB. No batch norm, so calling it inside the converter's tape
    changes nothing. Every initialiser is seeded, so ``seed`` alone fixes the initial weights.

    Args:
        filters: Channels at full and half resolution.
        seed: Seeds every layer's initial weights.
        name: The model's name.
    """
    f_full, f_half = filters
    layer_seed = iter(range(seed * 16, seed * 16 + 16))

    def conv(channels, **kwargs):
        kwargs.setdefault("activation", "relu")
        return keras.layers.Conv2D(
            channels, 3, padding="same", kernel_initializer=keras.initializers.GlorotUniform(next(layer_seed)), **kwargs
        )

    images = keras.Input(shape=(None, None, 3))
    full = conv(f_full)(conv(f_full)(images))
    half = conv(f_half)(conv(f_half, strides=2)(full))
    up = keras.layers.Conv2DTranspose(
        f_full,
        3,
        strides=2,
        padding="same",
        activation="relu",
        kernel_initializer=keras.initializers.GlorotUniform(next(layer_seed)),
    )(half)
    x = conv(f_full)(keras.layers.Concatenate()([full, up]))
    restored = conv(3, activation="sigmoid")(x)
    return keras.Model(images, restored, name=name)


def _decoder_seed(seed: int, decoder: int, restart: int) -> int:
    # Distinct for every (run seed, decoder, restart) of any realistic run.
    return (seed * 64 + decoder) * 4096 + restart


class AdversarialDecoders:
    """The online decoders of one converter's training: their models, optimizers, loss and restarts.

    Build it under the training strategy's scope; ``penalty`` and ``train_step`` run inside the
    replicated training step, ``restart_due`` between steps.
    """

    def __init__(self, config: AdversaryConfig, mean_image: np.ndarray, global_batch_size: int, seed: int = 0):
        """Creates the decoders and their optimizers.

        Args:
            config: The defence's settings (``config.enabled`` must be true).
            mean_image: float32 H x W x 3 in [0, 1], the mean of the converter's training images.
            global_batch_size: Examples per step over all replicas; losses are averaged over it.
            seed: The run's seed: it fixes every decoder's initial weights at every restart.
        """
        if not config.enabled:
            raise DapterError("the adversarial defence needs a weight > 0")
        self.config = config
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.mean_image = tf.constant(mean_image, tf.float32)
        self.decoders = [
            build_training_decoder(config.filters, _decoder_seed(seed, k, 0), name=f"adversary_{k}")
            for k in range(config.decoders)
        ]
        self.optimizers = []
        for decoder in self.decoders:
            optimizer = keras.optimizers.Adam(config.learning_rate)
            optimizer.build(decoder.trainable_variables)
            self.optimizers.append(optimizer)

    def trackables(self) -> dict:
        """What a ``tf.train.Checkpoint`` must hold so that a resumed run continues the min-max exactly."""
        items = {}
        for k, (decoder, optimizer) in enumerate(zip(self.decoders, self.optimizers)):
            items[f"adversary_{k}"] = decoder
            items[f"adversary_{k}_optimizer"] = optimizer
        return items

    def _errors(self, decoder, converted, images):
        """Per-example mean squared error of ``decoder`` restoring ``images`` from ``converted``."""
        return tf.reduce_mean(tf.square(decoder(converted) - images), axis=[1, 2, 3])

    def train_step(self, converted, images) -> dict:
        """Trains every decoder on one batch, the converter fixed; returns each decoder's L_recover.

        Args:
            converted: The converter's output on ``images`` (gradients are stopped here).
            images: float32 originals in [0, 1].

        Returns:
            ``{"adversary_<k>_mse": the replica's share of the batch mean}`` from the last update.
        """
        converted = tf.stop_gradient(converted)
        out = {}
        for k, (decoder, optimizer) in enumerate(zip(self.decoders, self.optimizers)):
            for _ in range(self.config.decoder_steps):
                with tf.GradientTape() as tape:
                    loss = tf.nn.compute_average_loss(
                        self._errors(decoder, converted, images), global_batch_size=self.global_batch_size
                    )
                grads = tape.gradient(loss, decoder.trainable_variables)
                optimizer.apply(grads, decoder.trainable_variables)
            out[f"adversary_{k}_mse"] = loss
        return out

    def penalty(self, converted, images, trivial_error: float):
        """L_adv per example: the strongest decoder's gain over the mean image, in units of E0.

        Args:
            converted: The converter's output on ``images`` (gradients flow to the converter).
            images: float32 originals in [0, 1].
            trivial_error: E0, the mean image's mean squared error over the training images.

        Returns:
            float32 (N,), each in [0, e0_i / E0].
        """
        e0 = tf.reduce_mean(tf.square(self.mean_image - images), axis=[1, 2, 3])
        gains = [tf.nn.relu(e0 - self._errors(decoder, converted, images)) for decoder in self.decoders]
        return tf.reduce_max(tf.stack(gains), axis=0) / trivial_error

    def restart_due(self, step: int) -> list[int]:
        """The decoders to re-initialise after ``step`` finished steps (staggered over ``restart_every``)."""
        every = self.config.restart_every
        if not every or step <= 0:
            return []
        count = len(self.decoders)
        return [k for k in range(count) if (step + k * every // count) % every == 0]

    def restart(self, decoder: int, step: int) -> None:
        """Re-initialises one decoder's weights and its optimizer's state, as at its restart after ``step``."""
        every = self.config.restart_every
        restart = (step + decoder * every // len(self.decoders)) // every
        fresh = build_training_decoder(self.config.filters, _decoder_seed(self.seed, decoder, restart))
        self.decoders[decoder].set_weights(fresh.get_weights())
        for variable in self.optimizers[decoder].variables:
            if variable.name != "learning_rate":  # Moments and the step count; the rate is a setting.
                variable.assign(tf.zeros_like(variable))

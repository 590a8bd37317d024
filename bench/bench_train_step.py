r"""Training-step benchmark: DAPter's custom loop against keras.Model.fit, side by side in one run.

Both train the same converter (Fig. 3, the same initial weights) on L_dap = lambda L_eta +
(1 - lambda) L_acc against the same frozen target, on the same batches of real images:
  * the custom loop: ``train.build_dapter_step`` (a GradientTape over converter and target, gradients
    for the converter only) run under the default ``tf.distribute`` strategy in a ``tf.function``,
    with the per-step read-back of the losses that ``train.run_training_loop`` does for its
    progress bar;
  * ``keras.Model.fit`` on an equivalent composite model, images -> converter -> frozen target, with
    the two outputs' losses L_eta and L_acc weighted lambda and 1 - lambda; timed as Keras compiles it
    by default (``jit_compile="auto"``: XLA where it can) and without XLA, as the custom loop runs.

It prints images per second of each, over --steps timed steps after --warmup_steps (tracing and
first-call costs excluded), the custom loop's ratio to each fit, and every loop's loss on the first
batch (they agree: the models are the same function, fed the same batches). The images are the
embedded CIFAR-10 sample (3,500 training images), or --train_npz.

  .venv/bin/python bench/bench_train_step.py [--batch_size=64] [--steps=30] [--output_json=train_step.json]
"""

import json
import os
import sys
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli import runner  # noqa: E402  (the repository root is on the path only now)

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per step, for both loops (>= 1).")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps of each loop (>= 1).")
_WARMUP_STEPS = flags.DEFINE_integer("warmup_steps", 3, "Untimed steps first (>= 1): tracing, first calls.")
_LAMBDA = flags.DEFINE_float("lambda_", 0.9, "lambda of Eq. 1, in [0, 1].")
_TARGET = flags.DEFINE_string(
    "target", "resnet18", "The frozen target: a zoo model name (seeded random weights) or a trained .keras file."
)
_WIDTH = flags.DEFINE_integer("width", 16, "With a zoo --target: its width (16: the width our CPU runs train).")
_TRAIN_NPZ = flags.DEFINE_string(
    "train_npz", "", "An .npz with 'x' (uint8 N x H x W x 3) and 'y' to train on; empty: the embedded sample."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the weights and the data order.")
_OUTPUT_JSON = flags.DEFINE_string("output_json", "", "Also write every figure to this JSON file.")


def main():
    import keras
    import numpy as np

    from dapter_tf import DapterError, data, losses, models
    from dapter_tf.models import build_converter, targets

    for name, holder in (("batch_size", _BATCH_SIZE), ("steps", _STEPS), ("warmup_steps", _WARMUP_STEPS)):
        if holder.value < 1:
            raise DapterError(f"--{name} must be >= 1, got {holder.value}")
    lambda_ = losses.check_lambda(_LAMBDA.value)
    sample = data.load_npz(_TRAIN_NPZ.value) if _TRAIN_NPZ.value else data.load_embedded("train")
    images, labels = sample.images, sample.labels["label"]
    total = _BATCH_SIZE.value * (_WARMUP_STEPS.value + _STEPS.value)
    if len(images) < total:
        raise DapterError(f"{total} images are needed for the steps asked, the data has {len(images)}")

    keras.utils.set_random_seed(_SEED.value)
    if _TARGET.value.endswith(".keras"):
        target = models.load_target(_TARGET.value)
    else:
        target = models.freeze(
            targets.build_target(_TARGET.value, images.shape[1:], int(labels.max()) + 1, width=_WIDTH.value)
        )
    initial_weights = build_converter().get_weights()

    def batches():
        # The training loop's own pipeline (a seeded shuffle, whole batches), without its random
        # flips and shifts: every loop then sees the very same batches, and they agree on the first loss.
        return data.build_dataset(
            images[:total], labels[:total], _BATCH_SIZE.value, shuffle_seed=_SEED.value, drop_remainder=True
        )

    loops = {
        "DAPter custom loop (GradientTape)": _time_custom_loop(target, initial_weights, batches, lambda_),
        # Keras 3 compiles fit's step with XLA where it can (jit_compile="auto"); the custom loop's
        # tf.function does not, so fit is timed both ways to tell the loop from the compiler.
        "keras.Model.fit (jit_compile auto)": _time_fit(target, initial_weights, batches, lambda_, "auto"),
        "keras.Model.fit (jit_compile False)": _time_fit(target, initial_weights, batches, lambda_, False),
    }
    warmup = _WARMUP_STEPS.value
    rows = {}
    for name, (times, first_loss) in loops.items():
        timed = times[warmup:]
        rows[name] = {
            "images_per_s": _BATCH_SIZE.value * len(timed) / sum(timed),
            "median_step_ms": 1e3 * float(np.median(timed)),
            "first_batch_L_dap": first_loss,
        }
    custom, fit_auto, fit_plain = (rows[name]["images_per_s"] for name in loops)
    out = {
        "batch_size": _BATCH_SIZE.value,
        "steps": _STEPS.value,
        "warmup_steps": warmup,
        "lambda": lambda_,
        "target": _TARGET.value if _TARGET.value.endswith(".keras") else f"{_TARGET.value} width {_WIDTH.value}",
        "image_size": list(images.shape[1:3]),
        "cpu_threads": os.cpu_count(),
        "loops": rows,
        "ratio_custom_over_fit": custom / fit_auto,
        "ratio_custom_over_fit_without_xla": custom / fit_plain,
    }
    print(
        f"converter: Fig. 3 (24, 48, 96); target: {out['target']}, frozen; batch {out['batch_size']}, "
        f"{images.shape[1]}x{images.shape[2]} images, lambda {lambda_}; {warmup} warm-up + {_STEPS.value} timed steps"
    )
    print(f"{'loop':37} {'images/s':>10} {'median step ms':>15} {'L_dap, first batch':>19}")
    for name, row in rows.items():
        print(f"{name:37} {row['images_per_s']:10.1f} {row['median_step_ms']:15.2f} {row['first_batch_L_dap']:19.6f}")
    print(f"custom loop / fit, images per second: {out['ratio_custom_over_fit']:.3f}")
    print(f"custom loop / fit without XLA:        {out['ratio_custom_over_fit_without_xla']:.3f}")
    if _OUTPUT_JSON.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT_JSON.value)), exist_ok=True)
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {_OUTPUT_JSON.value}")


def _time_custom_loop(target, initial_weights, batches, lambda_):
    """Step times of the step train_dapter runs, under the same strategy machinery; and the first L_dap."""
    import keras

    from dapter_tf import train
    from dapter_tf.models import build_converter

    converter = build_converter()
    converter.set_weights(initial_weights)
    strategy = train.build_strategy("default")
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(converter.trainable_variables)
    step_fn = train.build_dapter_step(converter, target, optimizer, lambda_, _BATCH_SIZE.value)
    distributed_step = train.distribute_step(strategy, step_fn)

    times, first_loss = [], None
    for x, y in strategy.experimental_distribute_dataset(batches()):
        start = time.perf_counter()
        out = {k: float(v) for k, v in distributed_step(x, y).items()}  # run_training_loop reads them back too.
        times.append(time.perf_counter() - start)
        first_loss = out["L_dap"] if first_loss is None else first_loss
    return times, first_loss


def _time_fit(target, initial_weights, batches, lambda_, jit_compile):
    """Step times of keras.Model.fit on images -> converter -> frozen target; and the first batch's loss."""
    import keras
    import tensorflow as tf

    from dapter_tf import losses
    from dapter_tf.models import build_converter

    converter = build_converter()
    converter.set_weights(initial_weights)
    inputs = keras.Input(batches().element_spec[0].shape[1:])
    converted = converter(inputs)
    composite = keras.Model(inputs, {"converted": converted, "logits": target(converted, training=False)})

    def eta_loss(_, y_pred):
        return losses.entropy_reduction_loss(y_pred)

    def acc_loss(y_true, y_pred):
        return losses.accuracy_loss(tf.reshape(y_true, [-1]), y_pred)

    composite.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={"converted": eta_loss, "logits": acc_loss},
        loss_weights={"converted": lambda_, "logits": 1.0 - lambda_},
        jit_compile=jit_compile,
    )

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.first_loss = [], None

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)
            if batch == 0:
                self.first_loss = float(logs["loss"])  # The first batch's loss, before any update.

    timer = StepTimes()
    fit_data = batches().map(lambda x, y: (x, {"converted": tf.zeros([tf.shape(x)[0]]), "logits": y}))
    composite.fit(fit_data, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    return timer.times, timer.first_loss


if __name__ == "__main__":
    runner.run(main)

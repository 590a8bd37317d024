"""Training of the target (DLIS) model: what the provider already has before DAPter."""

import os
import time

import keras
import tensorflow as tf

from dapter_tf import evaluate, losses
from dapter_tf.data.images import ImageSet
from dapter_tf.data.tasks import Task
from dapter_tf.errors import DapterError
from dapter_tf.models import saving, targets
from dapter_tf.records import runs
from dapter_tf.train.config import TargetConfig
from dapter_tf.train.loop import Trainable, run_training_loop
from dapter_tf.train.strategy import build_strategy, check_batches


def train_target(config: TargetConfig, task: Task, train_set: ImageSet, test_set: ImageSet, workdir: str) -> dict:
    """Trains a target model and saves it as ``workdir/target.keras``.

    Returns:
        Results: test accuracy, steps, and whether the run resumed.
    """
    strategy = build_strategy(config.strategy)
    check_batches(config, len(train_set), strategy)
    if config.init_model:
        initial = _load_initial_model(config.init_model, train_set.images.shape[1:], task)  # Fails fast.
    finished = runs.start_run(workdir, config, len(train_set), runs.TARGET_FILE)
    if finished is not None:
        return finished
    keras.utils.set_random_seed(config.seed)
    labels = train_set.labels[task.target_label]
    with strategy.scope():
        if config.init_model:
            # Cloned under the strategy's scope so its variables are mirrored like a new model's.
            model = keras.models.clone_model(initial)
            model.set_weights(initial.get_weights())
        else:
            model = targets.build_target(config.model, train_set.images.shape[1:], task.num_classes, config.width)
        kernels = [w for w in model.trainable_variables if w.path.endswith("kernel")]
        # Cosine decay to 0 over the run: a constant rate leaves batch-norm targets trained on a few
        # thousand images swinging by 5-10 points of test accuracy from one epoch to the next.
        schedule = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * (len(train_set) // config.batch_size)
        )
        optimizer = keras.optimizers.Adam(schedule)
        optimizer.build(model.trainable_variables)

    def step_fn(images, batch_labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = losses.accuracy_loss(batch_labels, logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
            if config.l2:
                # Added once per step in all: each replica adds its 1/replicas share.
                loss += tf.nn.scale_regularization_loss(config.l2 * tf.add_n([tf.nn.l2_loss(k) for k in kernels]))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(batch_labels, tf.int64)), tf.float32)
        return {"loss": loss, "accuracy": tf.reduce_sum(correct) / config.batch_size}

    test_labels = test_set.labels[task.target_label]

    def eval_fn():
        return {"accuracy": evaluate.target_accuracy(model, test_set.images, test_labels)}

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    start = time.time()
    trainable = Trainable(checkpoint, optimizer, step_fn, eval_fn)
    loop = run_training_loop(workdir, strategy, trainable, train_set, labels, config)
    saving.save_model(model, os.path.join(workdir, runs.TARGET_FILE))
    results = {
        "model": model.name,
        "replicas": int(strategy.num_replicas_in_sync),
        "parameters": int(model.count_params()),
        # The last epoch's evaluation already measured the final model on the whole test set; a
        # rerun of a finished run trains no epoch and so measures it here.
        "test_accuracy": (
            loop["eval/accuracy"]
            if "eval/accuracy" in loop
            else evaluate.target_accuracy(model, test_set.images, test_labels)
        ),
        "train_seconds": time.time() - start,
        **loop,
    }
    runs.write_results(workdir, results)
    return results


def _load_initial_model(path: str, input_shape, task: Task) -> keras.Model:
    """Loads the classifier a fine-tuning run starts from, and checks that it fits the images and task."""
    model = saving.load_model_file(path, "initial model")
    if tuple(model.input_shape[1:3]) not in ((None, None), tuple(input_shape[:2])):
        raise DapterError(
            f"{path} takes {model.input_shape[1]}x{model.input_shape[2]} images, not {input_shape[0]}x{input_shape[1]}"
        )
    if model.output_shape[-1] != task.num_classes:
        raise DapterError(
            f"{path} has {model.output_shape[-1]} outputs but label {task.target_label!r} "
            f"has {task.num_classes} classes"
        )
    return model

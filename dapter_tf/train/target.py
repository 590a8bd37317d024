"""Training of the target (DLIS) model: what the provider already has before DAPter."""

import os
import time

import keras
import tensorflow as tf

from dapter_tf import cluster, evaluate, losses
from dapter_tf.data.pipeline import training_labels
from dapter_tf.data.tasks import Task
from dapter_tf.errors import DapterError
from dapter_tf.models import saving, targets
from dapter_tf.records import runs
from dapter_tf.train.config import TargetConfig
from dapter_tf.train.loop import Trainable, run_training_loop
from dapter_tf.train.precision import computing_in, float32_copy
from dapter_tf.train.strategy import barrier, build_strategy, check_batches


def train_target(config: TargetConfig, task: Task, train_set, test_set, workdir: str) -> dict:
    """Trains a target model and saves it as ``workdir/target.keras``.

    Args:
        config: The run's config.
        task: Its task.
        train_set: An ``ImageSet``, or a ``tfrecords.RecordSet`` streamed from its shards.
        test_set: The held-out ``ImageSet``.
        workdir: Where the run's files go (the chief's alone, in a cluster).

    Returns:
        Results: test accuracy, steps, and whether the run resumed.
    """
    strategy = build_strategy(config.strategy)
    check_batches(config, len(train_set), strategy)
    if config.init_model:
        initial = _load_initial_model(config.init_model, train_set.image_shape, task)  # Fails fast.
    finished = runs.start_run(workdir, config, len(train_set), runs.TARGET_FILE)
    if finished is not None:
        return finished
    keras.utils.set_random_seed(config.seed)
    labels = training_labels(train_set, task.target_label)

    def build():
        return targets.build_target(config.model, train_set.image_shape, task.num_classes, config.width)

    with strategy.scope(), computing_in(config.mixed_precision):
        if config.init_model:
            # Cloned under the strategy's scope so its variables are mirrored like a new model's
            # (it keeps the dtypes it was saved with).
            model = keras.models.clone_model(initial)
            model.set_weights(initial.get_weights())
        else:
            model = build()
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
            logits = tf.cast(model(images, training=True), tf.float32)
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
    trainable = Trainable(checkpoint, optimizer, step_fn, eval_fn, variables=tuple(model.variables))
    loop = run_training_loop(workdir, strategy, trainable, train_set, labels, config)
    if cluster.is_chief():
        saving.save_model(float32_copy(model, build), os.path.join(workdir, runs.TARGET_FILE))
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
    barrier(strategy)  # The other workers return once the chief's files are there.
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

r"""A provider's model that the project did not build: MobileNetV2 on CelebA Male, served as a SavedModel.

Stands in for what an app team brings to dapter-protect (issue 31, acceptance 1): a classifier trained
by someone else, in their own way, and deployed as TF Serving serves it. This script

  1. reads the CelebA folder through the project's folder reader, so the train / test split is the
     project's fixed one (data/folders.py: SPLIT_SEED, TEST_FRACTION), and trains only on the
     training split;
  2. trains keras.applications.MobileNetV2 (alpha 0.35, weights=None, softmax over 2 classes) on
     Male at --image_size, taking [-1, 1] floats (keras.applications.mobilenet_v2.preprocess_input:
     p / 127.5 - 1), with random flips, Adam and cosine decay; a checkpoint per epoch lets the same
     command resume a killed run;
  3. saves it with model.export (a SavedModel with serving_default), writes its input contract beside
     it (served_model.contract.json), reloads it with tf.saved_model.load and measures held-out
     accuracy through the signature, beside the majority rate (provider.json);
  4. writes the photos as the provider holds them: the original CelebA files in photos/ and
     photos/labels.csv (file, split, Male, Smiling and the other 38 attributes; split is the
     project's fixed split, so a protect run's test split is the provider's held-out split).

  nice .venv/bin/python bench/provider_celeba_male.py [--output_dir=runs/provider_celeba_male] [--epochs=30]

Writes under --output_dir: config.json, backup/ (while training), train_log.csv, provider.keras,
served_model/, served_model.contract.json, photos/ (with labels.csv) and, last, provider.json.
Never commit that folder: everything in it is CelebA or trained on it.
"""

import csv
import io
import os
import sys
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli import runner  # noqa: E402  (the repository root is on the path only now)

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "runs/provider_celeba_male", "Folder for the model, its SavedModel, the photos and provider.json."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "../shared/data/celeba", "The CelebA folder (attributes.csv + images/, or the official layout)."
)
_EPOCHS = flags.DEFINE_integer("epochs", 30, "Training epochs over the training split (>= 1).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per training step (>= 1).")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 2e-3, "Adam's initial learning rate, decayed to 0 by a cosine.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Side of the square images the served model takes.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the weights, the data order and the flips.")

TARGET_LABEL = "Male"
# The contract a protect run is given: how uint8 RGB pixels become the model's input, and what it returns.
PREPROCESSING = "minus_one_one"
OUTPUT = "probabilities"
SIGNATURE = "serving_default"
EVAL_BATCH = 250


def _check_flags():
    from dapter_tf import DapterError

    for name, holder in (("epochs", _EPOCHS), ("batch_size", _BATCH_SIZE)):
        if holder.value < 1:
            raise DapterError(f"--{name} must be >= 1, got {holder.value}")
    if not _LEARNING_RATE.value > 0:
        raise DapterError(f"--learning_rate must be > 0, got {_LEARNING_RATE.value}")
    if not os.path.isdir(_DATA_DIR.value):
        raise DapterError(
            f"--data_dir {_DATA_DIR.value} is not a folder: give the CelebA folder (attributes.csv + images/)"
        )


def _run_config() -> dict:
    """What a rerun must repeat to resume: every flag that changes the model it trains."""
    return {
        "data_dir": os.path.abspath(_DATA_DIR.value),
        "epochs": _EPOCHS.value,
        "batch_size": _BATCH_SIZE.value,
        "learning_rate": _LEARNING_RATE.value,
        "image_size": _IMAGE_SIZE.value,
        "seed": _SEED.value,
    }


def _check_resumable(out_dir: str, config: dict) -> None:
    """Refuses an --output_dir that holds a run started with other flags (it would resume the wrong run)."""
    from dapter_tf import DapterError
    from dapter_tf.records import files

    old = files.read_json(os.path.join(out_dir, "config.json"))
    if old is None or old == config:
        return
    changed = ", ".join(f"--{k} {old.get(k)} there, {v} here" for k, v in config.items() if old.get(k) != v)
    raise DapterError(
        f"--output_dir {out_dir} holds a run started with other flags ({changed}): rerun with its flags "
        f"to resume it, or give a fresh --output_dir"
    )


def _source_image_folder(data_dir: str) -> str:
    """Where the reader found the original files: images/ (the shared layout) or img_align_celeba/ (official)."""
    if os.path.isfile(os.path.join(data_dir, "list_attr_celeba.txt")):
        return os.path.join(data_dir, "img_align_celeba")
    return os.path.join(data_dir, "images")


def _build_model(image_size: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3), alpha=0.35, weights=None, classes=2)
    # keras.applications builds its BatchNormalization layers with momentum 0.999: their moving
    # statistics, which the served model uses, move by 0.1 % a step and had not caught up after
    # 8 epochs on 8,000 faces (a MobileNetV3Small answered at exactly the majority rate through its
    # SavedModel, DESIGN.md). 0.9 lets them follow the weights within a few dozen steps.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def _to_model_input(pixels):
    """uint8 RGB -> the [-1, 1] floats MobileNetV2 takes (p / 127.5 - 1), as the provider's server maps them."""
    import keras
    import tensorflow as tf

    return keras.applications.mobilenet_v2.preprocess_input(tf.cast(pixels, tf.float32))


def _training_dataset(images, labels, batch_size: int, seed: int):
    import tensorflow as tf

    def augment(pixels, label):
        return _to_model_input(tf.image.random_flip_left_right(pixels)), label

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _train(model, train, test, out_dir: str, config: dict) -> None:
    """Fits ``model`` on the training split; a per-epoch backup makes a rerun resume where a kill stopped it."""
    import keras
    import tensorflow as tf

    labels = train.labels[TARGET_LABEL]
    steps_per_epoch = -(-len(labels) // config["batch_size"])
    schedule = keras.optimizers.schedules.CosineDecay(
        config["learning_rate"], decay_steps=config["epochs"] * steps_per_epoch
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    # Watched per epoch, never trained on nor used to pick an epoch: the last epoch is the model served.
    validation = (
        tf.data.Dataset.from_tensor_slices((test.images, test.labels[TARGET_LABEL]))
        .batch(EVAL_BATCH)
        .map(lambda x, y: (_to_model_input(x), y))
    )

    class EpochSeconds(keras.callbacks.Callback):
        """Adds each epoch's wall time to its logs, so that train_log.csv holds it."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["seconds"] = time.perf_counter() - self.start

    model.fit(
        _training_dataset(train.images, labels, config["batch_size"], config["seed"]),
        epochs=config["epochs"],
        validation_data=validation,
        callbacks=[
            EpochSeconds(),
            keras.callbacks.CSVLogger(os.path.join(out_dir, "train_log.csv"), append=True),
            # Saves weights, optimizer state (so the cosine schedule's step) and the epoch after each
            # epoch; deleted once fit ends.
            keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup")),
        ],
        shuffle=False,  # The dataset shuffles itself, seeded.
        verbose=2,
    )


def _epoch_seconds(out_dir: str) -> list:
    """Each epoch's seconds from train_log.csv; an epoch logged twice (killed before its backup) counts once."""
    with open(os.path.join(out_dir, "train_log.csv"), newline="") as f:
        return list({row["epoch"]: float(row["seconds"]) for row in csv.DictReader(f)}.values())


def _export(model, out_dir: str, image_size: int) -> str:
    """Writes the SavedModel (as one set: a kill leaves the old one or none) and its contract beside it."""
    from dapter_tf.records import files

    served = os.path.join(out_dir, "served_model")
    with files.staged_folder(served) as staging:
        model.export(staging, verbose=False)
    files.write_json(
        served + ".contract.json",
        {"preprocessing": PREPROCESSING, "output": OUTPUT, "signature": SIGNATURE, "image_size": image_size},
    )
    return served


def _served_accuracy(served: str, test) -> float:
    """Held-out accuracy as TF Serving would answer: the reloaded SavedModel's signature on [-1, 1] pixels."""
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(served)  # Kept alive while its signature runs.
    signature = loaded.signatures[SIGNATURE]
    (input_name,) = signature.structured_input_signature[1]
    correct = 0
    for start in range(0, len(test), EVAL_BATCH):
        outputs = signature(**{input_name: _to_model_input(test.images[start : start + EVAL_BATCH])})
        (probabilities,) = outputs.values()
        answers = np.argmax(probabilities.numpy(), axis=1)
        correct += int(np.sum(answers == test.labels[TARGET_LABEL][start : start + EVAL_BATCH]))
    return correct / len(test)


def _write_photos(out_dir: str, data_dir: str, train, test) -> int:
    """Copies the original files into photos/ with labels.csv (file, split, Male, Smiling, the other attributes)."""
    from dapter_tf.data.tasks import CELEBA_ATTRIBUTES
    from dapter_tf.records import files

    source = _source_image_folder(data_dir)
    columns = ["Male", "Smiling"] + [a for a in CELEBA_ATTRIBUTES if a not in ("Male", "Smiling")]
    rows = []
    for split, images in (("train", train), ("test", test)):
        for i, name in enumerate(images.names):
            rows.append([str(name), split] + [int(images.labels[a][i]) for a in columns])
    rows.sort()
    with files.staged_folder(os.path.join(out_dir, "photos")) as staging:
        for row in rows:
            files.copy_file(os.path.join(source, row[0]), os.path.join(staging, row[0]))
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["file", "split"] + columns)
        writer.writerows(rows)
        files.write_bytes(os.path.join(staging, "labels.csv"), text.getvalue().encode())
    return len(rows)


def main():
    import keras
    import numpy as np

    from dapter_tf import data
    from dapter_tf.records import files

    out_dir = _OUTPUT_DIR.value
    _check_flags()
    config = _run_config()
    _check_resumable(out_dir, config)
    data_config = data.DataConfig(
        dataset="celeba",
        source="folder",
        data_dir=_DATA_DIR.value,
        target_label=TARGET_LABEL,
        image_size=_IMAGE_SIZE.value,
    )
    # The project's fixed split, whatever --seed: the provider never trains on a held-out face.
    _, train, test = data.load_data(data_config, seed=config["seed"])
    size = _IMAGE_SIZE.value
    print(f"CelebA {TARGET_LABEL} at {size}x{size}: {len(train)} training, {len(test)} held-out faces")

    os.makedirs(out_dir, exist_ok=True)
    files.write_json(os.path.join(out_dir, "config.json"), config)
    keras_file = os.path.join(out_dir, "provider.keras")
    if os.path.isfile(keras_file):
        print(f"trained already: {keras_file}")
        model = keras.models.load_model(keras_file)
    else:
        model = _build_model(size, config["seed"])
        _train(model, train, test, out_dir, config)
        # Saved under a temp name first: the file's presence means training finished.
        staging = keras_file + f".tmp-{os.getpid()}.keras"
        model.save(staging)
        os.replace(staging, keras_file)

    served = _export(model, out_dir, size)
    accuracy = _served_accuracy(served, test)
    male = test.labels[TARGET_LABEL]
    majority = float(max(np.mean(male), 1 - np.mean(male)))
    seconds = _epoch_seconds(out_dir)
    photos = _write_photos(out_dir, _DATA_DIR.value, train, test)
    files.write_json(
        os.path.join(out_dir, "provider.json"),
        {
            "model": "keras.applications.MobileNetV2(alpha=0.35, weights=None, classes=2), "
            "BatchNormalization momentum 0.9",
            "task": f"CelebA {TARGET_LABEL}",
            "train_images": len(train),
            "test_images": len(test),
            "held_out_accuracy": accuracy,
            "majority_rate": majority,
            "epochs": config["epochs"],
            "seconds_per_epoch": float(np.mean(seconds)),
            "train_seconds": float(np.sum(seconds)),
            "photos": photos,
            "contract": {"image_size": size, "preprocessing": PREPROCESSING, "output": OUTPUT, "signature": SIGNATURE},
            "config": config,
        },
    )
    print(
        f"served model {served}: held-out accuracy {accuracy:.4f} through {SIGNATURE} "
        f"(majority rate {majority:.4f}); {config['epochs']} epochs, {np.mean(seconds):.1f} s each"
    )
    print(f"photos: {photos} files and labels.csv in {os.path.join(out_dir, 'photos')}")


if __name__ == "__main__":
    runner.run(main)

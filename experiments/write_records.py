r"""Writes a task's images (from any source) into sharded TFRecord files, once, for streamed training.

The trainers read the folder with --source=tfrecord --data_dir=FOLDER and stream it, so memory is
bounded by the pipeline (a shuffle buffer of encoded images), not by the dataset. Images are
stored resized to the task's size, shuffled with --seed and labelled as the task derives them.

Example:
  dapter-write-records --dataset=celeba --source=folder --data_dir=../shared/data/celeba \
      --out_dir=runs/celeba_records --train_shards=16 --test_shards=2
  dapter-train-target --dataset=celeba --source=tfrecord --data_dir=runs/celeba_records ...
"""

from absl import flags

from cli import flags_lib, runner

_build_data = flags_lib.define_data_flags()
_OUT_DIR = flags.DEFINE_string(
    "out_dir",
    None,
    "A new (or empty) folder for the shards and manifest.json. They are written into a staging folder "
    "beside it (.NAME.staging-PID) and renamed into place when all are written; a killed run leaves "
    "no records, and the next run removes its staging folder.",
    required=True,
)
_TRAIN_SHARDS = flags.DEFINE_integer(
    "train_shards",
    8,
    "Files the training split is cut into (>= 1): at least the number of workers that will train on it "
    "(each worker reads its own shards); a few hundred MB each suits a cluster.",
)
_TEST_SHARDS = flags.DEFINE_integer("test_shards", 1, "Files the test split is cut into (>= 1).")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the shuffle of both splits before they are written.")

flags.adopt_module_key_flags(flags_lib)


def main():
    import keras

    from dapter_tf import DapterError, data
    from dapter_tf.data import tfrecords

    config = _build_data()
    if config.source == "tfrecord":
        raise DapterError("--source=tfrecord reads records; write them from another source")
    tfrecords.check_out_dir(_OUT_DIR.value)  # Before the images load: a refusal comes at once.
    task, train_set, test_set = data.load_data(config, seed=_SEED.value)
    bars = {}

    def progress(split, written, total):
        if split not in bars:
            print(f"Writing {total} {split} images ...", flush=True)
            bars[split] = keras.utils.Progbar(total, unit_name="image")
        if written % 256 == 0 or written == total:
            bars[split].update(written)

    manifest = tfrecords.write_records(
        task.name,
        {"train": train_set, "test": test_set},
        _OUT_DIR.value,
        {"train": _TRAIN_SHARDS.value, "test": _TEST_SHARDS.value},
        progress,
    )
    counts = {split: sum(entry["counts"]) for split, entry in manifest["splits"].items()}
    print(
        f"wrote {counts['train']} training images in {_TRAIN_SHARDS.value} shards and {counts['test']} test images "
        f"in {_TEST_SHARDS.value} to {_OUT_DIR.value} (task {task.name}, {manifest['image_shape'][0]}x"
        f"{manifest['image_shape'][1]}); train with --source=tfrecord --data_dir={_OUT_DIR.value}"
    )


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

"""TFRecord shards: written from the real CIFAR-10 sample, read back exactly, streamed as the in-memory set is."""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, assert_one_error_line, run_binary

from dapter_tf import DapterError, data, models, train
from dapter_tf.data import pipeline, tfrecords
from dapter_tf.data.tasks import get_task

TASK = get_task("cifar10")


@pytest.fixture(scope="module")
def written(embedded, tmp_path_factory):
    """512 real training and 64 test images of the embedded sample, in 4 + 1 shards."""
    train_set, test_set = embedded[0].shuffled(3).take(512), embedded[1].take(64)
    folder = str(tmp_path_factory.mktemp("records") / "cifar10")
    tfrecords.write_records("cifar10", {"train": train_set, "test": test_set}, folder, {"train": 4, "test": 1})
    return folder, train_set, test_set


def batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_records_read_back_exactly_in_their_order(written):
    folder, train_set, _ = written
    records = tfrecords.record_set(folder, "train", "cifar10", (32, 32))
    assert len(records) == 512 and records.counts == (128, 128, 128, 128)
    back = tfrecords.read_split(records)
    np.testing.assert_array_equal(back.images, train_set.images)
    np.testing.assert_array_equal(back.labels["label"], train_set.labels["label"])
    assert set(back.labels) == set(train_set.labels)  # Derived labels (superclass) too.


@pytest.mark.parametrize("shuffle_buffer", [0, 64])
def test_records_give_the_same_batches_as_the_in_memory_set(written, shuffle_buffer):
    folder, train_set, _ = written
    records = tfrecords.record_set(folder, "train", "cifar10", (32, 32))
    # 0: each source's default buffer, the whole set for both here (512 < RECORD_SHUFFLE_BUFFER).
    common = dict(seed=7, augment=False, skip_batches=2, shuffle_buffer=shuffle_buffer)
    streamed = batches(pipeline.build_training_dataset(records, "label", 32, **common))
    in_memory = batches(pipeline.build_training_dataset(train_set, train_set.labels["label"], 32, **common))
    assert len(streamed) == len(in_memory) == 512 // 32 - 2
    for (xs, ys), (xm, ym) in zip(streamed, in_memory):
        np.testing.assert_array_equal(xs, xm)
        np.testing.assert_array_equal(ys, ym)
    other_seed = batches(pipeline.build_training_dataset(records, "label", 32, **{**common, "seed": 8}))
    assert not np.array_equal(other_seed[0][1], streamed[0][1])


def test_training_from_records_equals_training_in_memory(written, tmp_path):
    folder, train_set, test_set = written
    config = data.DataConfig(source="tfrecord", data_dir=folder)
    task, streamed, test_back = data.load_training_data(config)
    assert isinstance(streamed, data.RecordSet) and len(test_back) == 64
    weights = []
    for name, images in (("records", streamed), ("memory", train_set)):
        run = train.TargetConfig(data=config, model="lenet", width=4, epochs=1, batch_size=64, augment=False)
        results = train.train_target(run, task, images, test_set, str(tmp_path / name))
        assert results["steps"] == 8
        weights.append(models.load_target(str(tmp_path / name / "target.keras")).get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_each_worker_reads_its_own_shards_and_all_take_the_same_steps(written):
    folder, _, _ = written
    records = tfrecords.record_set(folder, "train", "cifar10", (32, 32))
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        ds = pipeline.build_training_dataset(records, "label", 32, seed=0, augment=False, input_context=context)
        got = batches(ds)
        assert len(got) == pipeline.steps_per_epoch(records, 32, 2) == 16 and got[0][0].shape == (16, 32, 32, 3)
        seen.append(np.concatenate([x for x, _ in got]))
    everything = tfrecords.read_split(records).images.astype(np.float32) / 255.0
    # Worker 0 read shards 0 and 2, worker 1 shards 1 and 3.
    for worker, shards in ((0, (0, 2)), (1, (1, 3))):
        mine = np.concatenate([everything[s * 128 : (s + 1) * 128] for s in shards])
        assert sorted(map(bytes, seen[worker])) == sorted(map(bytes, mine))


def test_in_memory_workers_split_each_global_batch(embedded):
    images = embedded[0].take(128)
    whole = batches(pipeline.build_training_dataset(images, images.labels["label"], 32, seed=1, augment=False))
    halves = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        ds = pipeline.build_training_dataset(
            images, images.labels["label"], 32, seed=1, augment=False, input_context=context
        )
        halves.append(batches(ds))
    for step, (x, y) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([halves[0][step][0], halves[1][step][0]]), x)
        np.testing.assert_array_equal(np.concatenate([halves[0][step][1], halves[1][step][1]]), y)


def test_streamed_statistics_equal_the_in_memory_ones(written):
    folder, train_set, _ = written
    records = tfrecords.record_set(folder, "train", "cifar10", (32, 32))
    (mean_s, error_s), (mean_m, error_m) = pipeline.image_statistics(records), pipeline.image_statistics(train_set)
    np.testing.assert_allclose(mean_s, mean_m, atol=1e-6)
    assert error_s == pytest.approx(error_m, rel=1e-6)


def test_bad_records_are_one_line_errors(written, tmp_path):
    folder, train_set, _ = written
    records = tfrecords.record_set(folder, "train", "cifar10", (32, 32))
    context = tf.distribute.InputContext(num_input_pipelines=5, input_pipeline_id=0, num_replicas_in_sync=5)
    cases = [
        (lambda: tfrecords.record_set(str(tmp_path / "no"), "train", "cifar10", (32, 32)), "records folder not found"),
        (lambda: tfrecords.record_set(folder, "train", "cifar2_10", (32, 32)), "holds records of task 'cifar10'"),
        (lambda: tfrecords.record_set(folder, "train", "cifar10", (64, 64)), "32x32 images but the task wants 64x64"),
        (lambda: pipeline.build_training_dataset(records, "label", 40, seed=0, augment=False, input_context=context),
         "4 training shards cannot be split over 5 workers"),
        (lambda: data.load_training_data(data.DataConfig(source="tfrecord", data_dir=folder, max_train=10)),
         "--max_train cuts in-memory sets"),
        (lambda: tfrecords.write_records("cifar10", {"train": train_set}, folder, {"train": 2}), "is not empty"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(DapterError, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_the_writer_binary_writes_records_the_trainers_read(tmp_path):
    out = tmp_path / "records"
    proc = run_binary("experiments.write_records", f"--out_dir={out}", "--max_train=300", "--max_test=50",
                      "--train_shards=3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote 300 training images in 3 shards and 50 test images in 1" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["counts"] == [100, 100, 100] and manifest["task"] == "cifar10"
    task, records, test_set = data.load_training_data(data.DataConfig(source="tfrecord", data_dir=str(out)))
    assert len(records) == 300 and len(test_set) == 50
    # What the binary checks first, before it loads any images (a second binary run costs seconds).
    with pytest.raises(DapterError, match=f"^{out} is not empty: write records into a new folder$"):
        tfrecords.check_out_dir(str(out))


def copy_records(written, tmp_path, old_manifest=False):
    """A copy of the written records folder to damage; ``old_manifest``: as written before shard sizes were kept."""
    folder = tmp_path / "copy"
    shutil.copytree(written[0], folder)
    if old_manifest:
        manifest = json.loads((folder / "manifest.json").read_text())
        for entry in manifest["splits"].values():
            entry.pop("sizes", None)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def edit_manifest(folder, edit):
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


SHARD1 = "train-00001-of-00004.tfrecord"


@pytest.mark.parametrize(
    "old_manifest, damage, message",
    [
        # A zero-byte shard: its 128 images were silently left out before.
        (False, lambda f: (f / SHARD1).write_bytes(b""), f"train shard {SHARD1} is 0 bytes but was written as "),
        (True, lambda f: (f / SHARD1).write_bytes(b""),
         f"train shard {SHARD1} holds 0 images but manifest.json says 128"),
        # Counts ten times too large: each shard holds 128.
        (False, lambda f: edit_manifest(f, lambda m: m["splits"]["train"].update(counts=[1280] * 4)),
         "train shard train-00000-of-00004.tfrecord holds 128 images but manifest.json says 1280"),
        # One bit flipped inside an image (the record's CRC no longer matches).
        (False, lambda f: flip_byte(f / SHARD1, 5000),
         f"train shard {SHARD1} is damaged (corrupted record at <n>): write the records again with"),
        (True, lambda f: (f / SHARD1).write_bytes((f / SHARD1).read_bytes()[:-100]),
         f"train shard {SHARD1} is damaged (truncated record at <n>): write the records again with"),
        (False, lambda f: (f / SHARD1).write_bytes((f / SHARD1).read_bytes()[:-100]),
         f"train shard {SHARD1} is {{}} bytes but was written as {{}} (truncated or changed since)"),
        (False, lambda f: (f / "manifest.json").write_text("{'task': 'cifar10'}"),
         "manifest.json is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        (False, lambda f: edit_manifest(f, lambda m: m.pop("task")),
         "manifest.json is not a records manifest ('task' is missing or not a string)"),
        (False, lambda f: edit_manifest(f, lambda m: m["splits"]["train"].update(counts="128")),
         "manifest.json is not a records manifest (split 'train' has no 'counts' list of one number per file)"),
        (False, lambda f: edit_manifest(f, lambda m: m["splits"]["test"].update(files=["../test.tfrecord"])),
         "manifest.json is not a records manifest (split 'test' has no 'files' list of shard names)"),
    ],
)  # fmt: skip
def test_damaged_records_are_refused_in_one_line_naming_the_file(written, tmp_path, old_manifest, damage, message):
    folder = copy_records(written, tmp_path, old_manifest)
    damage(folder)
    size = (folder / SHARD1).stat().st_size
    pattern = re.escape(message.format(size, size + 100)).replace("<n>", r"\d+")  # <n>: where the damage was found.
    with pytest.raises(DapterError) as caught:
        tfrecords.record_set(str(folder), "train", "cifar10", (32, 32))
    assert str(caught.value).startswith(f"{folder}") and re.search(pattern, str(caught.value)), str(caught.value)
    assert "\n" not in str(caught.value)


def test_records_written_before_shard_sizes_were_kept_are_still_read(written, tmp_path):
    folder = copy_records(written, tmp_path, old_manifest=True)
    records = tfrecords.record_set(str(folder), "train", "cifar10", (32, 32))
    np.testing.assert_array_equal(tfrecords.read_split(records).images, written[1].images)
    sizes = json.loads((Path(written[0]) / "manifest.json").read_text())["splits"]["train"]["sizes"]
    assert sizes == [(folder / tfrecords.shard_name("train", i, 4)).stat().st_size for i in range(4)]


def test_a_damaged_test_shard_stops_the_trainer_before_its_workdir_exists(written, tmp_path):
    folder = copy_records(written, tmp_path)
    flip_byte(folder / "test-00000-of-00001.tfrecord", 3000)
    workdir = tmp_path / "run"
    proc = run_binary("experiments.train_target", "--model=lenet", "--source=tfrecord", f"--data_dir={folder}",
                      "--epochs=1", f"--workdir={workdir}")  # fmt: skip
    assert_one_error_line(proc, f"{folder}: test shard test-00000-of-00001.tfrecord is damaged (corrupted record at ")
    assert re.search(r"record at \d+\): write the records again with dapter-write-records$", proc.stderr.strip())
    assert not workdir.exists()


def test_a_killed_writer_leaves_no_records_and_its_rerun_proceeds(embedded, tmp_path):
    out = tmp_path / "records"
    args = [sys.executable, "-m", "experiments.write_records", f"--out_dir={out}", "--train_shards=35"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = tmp_path / f".records.staging-{proc.pid}"
    deadline = time.monotonic() + 120
    while not (staging / "train-00001-of-00035.tfrecord").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert proc.poll() is None, "the writer ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and staging.is_dir()  # Nothing that looks like records.
    train_set, test_set = embedded[0].take(64), embedded[1].take(16)
    tfrecords.write_records("cifar10", {"train": train_set, "test": test_set}, str(out), {"train": 2, "test": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records"]  # The killed run's staging folder is gone.
    assert len(tfrecords.record_set(str(out), "train", "cifar10", (32, 32))) == 64


def test_a_folder_an_older_killed_writer_left_is_written_over(embedded, tmp_path):
    out = tmp_path / "records"
    out.mkdir()
    (out / "train-00000-of-00004.tfrecord").write_bytes(b"finished shard")
    (out / ".train-00001-of-00004.tfrecord.tmp").write_bytes(b"half a sha")
    tfrecords.write_records("cifar10", {"train": embedded[0].take(8)}, str(out), {"train": 2})
    names = ["manifest.json", "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert len(tfrecords.record_set(str(out), "train", "cifar10", (32, 32))) == 8


def test_a_full_disk_is_one_line_and_leaves_nothing(embedded, tmp_path):
    out = tmp_path / "records"
    # A stand-in for a full disk that needs no mount: files may not grow past 100 kB (EFBIG instead
    # of ENOSPC; both are the same failed write to TensorFlow's file system).
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, limits[1]))
    try:
        with pytest.raises(DapterError) as caught:
            tfrecords.write_records("cifar10", {"train": embedded[0].take(256)}, str(out), {"train": 2})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert str(caught.value) == (
        f"cannot write records to {out}: File too large while writing train-00000-of-00002.tfrecord; nothing was "
        "left behind (free some space, or choose another --out_dir, and run again)"
    )
    assert list(tmp_path.iterdir()) == []

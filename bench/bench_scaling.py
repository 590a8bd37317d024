r"""Scaling benchmark: the converter's training step on 1 process against 2 workers, and streamed input against memory.

Three measurements, side by side in one run:
  * training: images per second of ``train.build_dapter_step`` (the step ``train_dapter`` runs) on
    one process (``--strategy=default``) and on a cluster of ``--workers`` worker processes on this
    host (``MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` over localhost ports), at the same global
    batch; each process is started fresh and times --steps steps after --warmup_steps;
  * input: images per second of the training pipeline (``data.build_training_dataset``: shuffle,
    decode, batch) from TFRecord shards against the in-memory set they were written from;
  * memory: the resident set size while one pass streams records of a set ``--memory_factor`` times
    larger than the pipeline's shuffle buffer: it stays flat where an in-memory set would grow with
    the data.

The images are the embedded CIFAR-10 sample (3,500 real training images), repeated for the memory pass.

  .venv/bin/python bench/bench_scaling.py [--batch_size=64] [--steps=30] [--output_json=scaling.json]
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli import runner  # noqa: E402  (the repository root is on the path only now)

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Global images per step, split over the workers (>= 1).")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed training steps of each run (>= 1).")
_WARMUP_STEPS = flags.DEFINE_integer("warmup_steps", 3, "Untimed steps first (>= 1): tracing, first calls.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Worker processes of the cluster run (>= 2).")
_WIDTH = flags.DEFINE_integer("width", 16, "The frozen ResNet18 target's width (seeded random weights).")
_INPUT_EPOCHS = flags.DEFINE_integer("input_epochs", 3, "Passes over the sample for the input figures (>= 1).")
_MEMORY_FACTOR = flags.DEFINE_integer(
    "memory_factor", 10, "The memory pass streams a set this many times its shuffle buffer (>= 2)."
)
_SHUFFLE_BUFFER = flags.DEFINE_integer("shuffle_buffer", 2000, "The memory pass's shuffle buffer, in images.")
_OUTPUT_JSON = flags.DEFINE_string("output_json", "", "Also write every figure to this JSON file.")
# Internal: set when this script starts itself as one process of a training run.
_ROLE = flags.DEFINE_enum("role", "bench", ["bench", "train"], "Internal: 'train' times one training process.")


def main():
    from dapter_tf import DapterError

    for name, holder, least in (
        ("batch_size", _BATCH_SIZE, 1),
        ("steps", _STEPS, 1),
        ("warmup_steps", _WARMUP_STEPS, 1),
        ("workers", _WORKERS, 2),
        ("input_epochs", _INPUT_EPOCHS, 1),
        ("memory_factor", _MEMORY_FACTOR, 2),
        ("shuffle_buffer", _SHUFFLE_BUFFER, 1),
    ):
        if holder.value < least:
            raise DapterError(f"--{name} must be >= {least}, got {holder.value}")
    if _ROLE.value == "train":
        _train_process()
        return
    if _BATCH_SIZE.value % _WORKERS.value:
        raise DapterError(f"--batch_size {_BATCH_SIZE.value} does not split over {_WORKERS.value} workers")

    out = {"cpus": os.cpu_count(), "batch_size": _BATCH_SIZE.value, "steps": _STEPS.value}
    print(f"Training: 1 process, then {_WORKERS.value} workers, global batch {_BATCH_SIZE.value} ...", flush=True)
    out["one_process"] = _run_training(1)
    out["cluster"] = _run_training(_WORKERS.value)
    with tempfile.TemporaryDirectory() as folder:
        print("Input: TFRecord shards against memory ...", flush=True)
        out["input"] = _time_input(folder)
        print("Memory: one streamed pass ...", flush=True)
        out["memory"] = _stream_memory(folder)

    one, many = out["one_process"]["images_per_second"], out["cluster"]["images_per_second"]
    records, memory = out["input"]["records_images_per_second"], out["input"]["memory_images_per_second"]
    rss = out["memory"]["rss_mb"]
    lines = [
        f"host: {out['cpus']} CPU cores; converter training step, global batch {_BATCH_SIZE.value}, "
        f"{_STEPS.value} timed steps",
        f"  1 process:            {one:8.1f} images/s",
        f"  {_WORKERS.value} worker processes:   {many:8.1f} images/s  ({many / one:.2f}x of 1 process)",
        f"input pipeline, {out['input']['images']} images x {_INPUT_EPOCHS.value} passes",
        f"  in memory:            {memory:8.1f} images/s",
        f"  TFRecord shards:      {records:8.1f} images/s  ({records / memory:.2f}x of in memory)",
        f"memory of one streamed pass over {out['memory']['images']} images "
        f"({out['memory']['images'] // _SHUFFLE_BUFFER.value}x the {_SHUFFLE_BUFFER.value}-image shuffle buffer; "
        f"{out['memory']['set_mb']:.0f} MB of pixels)",
        f"  RSS at 10 % / 50 % / 100 % of the pass: {rss[0]:.0f} / {rss[1]:.0f} / {rss[2]:.0f} MB "
        f"(growth {rss[2] - rss[0]:+.0f} MB)",
    ]
    print("\n".join(lines))
    if _OUTPUT_JSON.value:
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {_OUTPUT_JSON.value}")


def _run_training(workers: int) -> dict:
    """Starts ``workers`` fresh processes (a cluster when more than one) and returns the chief's timing."""
    from dapter_tf import cluster

    configs = cluster.localhost_tf_configs(workers)
    args = [sys.executable, os.path.abspath(__file__), "--role=train"]
    args += [f"--{k}={v}" for k, v in (("batch_size", _BATCH_SIZE.value), ("steps", _STEPS.value))]
    args += [f"--warmup_steps={_WARMUP_STEPS.value}", f"--width={_WIDTH.value}"]
    procs = []
    for index in range(workers):
        env = dict(os.environ)
        if workers > 1:
            env["TF_CONFIG"] = configs[index]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        if p.returncode:
            raise RuntimeError(f"a training process failed:\n{err[-3000:]}")
    timing = json.loads(outputs[0][0].strip().splitlines()[-1])
    print(f"  {workers} process(es): {timing['images_per_second']:.1f} images/s", flush=True)
    return timing


def _train_process():
    """One process of a training run: times the converter's step under its strategy, prints JSON."""
    import keras

    from dapter_tf import data, train
    from dapter_tf.models import build_converter, targets

    strategy = train.build_strategy("multi_worker" if "TF_CONFIG" in os.environ else "default")
    sample = data.load_embedded("train")
    keras.utils.set_random_seed(0)
    with strategy.scope():
        target = targets.build_target("resnet18", (32, 32, 3), 10, _WIDTH.value)
        target.trainable = False
        converter = build_converter()
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(converter.trainable_variables)
    step_fn = train.build_dapter_step(converter, target, optimizer, 0.9, _BATCH_SIZE.value)
    distributed_step = train.distribute_step(strategy, step_fn)
    needed = _WARMUP_STEPS.value + _STEPS.value

    def dataset_fn(context):
        ds = data.build_training_dataset(
            sample, sample.labels["label"], _BATCH_SIZE.value, seed=0, augment=False, input_context=context
        )
        return ds.repeat()

    times = []
    for i, (x, y) in enumerate(strategy.distribute_datasets_from_function(dataset_fn)):
        if i == needed:
            break
        start = time.perf_counter()
        {k: float(v) for k, v in distributed_step(x, y).items()}  # As run_training_loop reads them back.
        times.append(time.perf_counter() - start)
    timed = times[_WARMUP_STEPS.value :]
    replicas = int(strategy.num_replicas_in_sync)
    print(
        json.dumps(
            {
                "processes": max(1, replicas),
                "replicas": replicas,
                "seconds_per_step": sum(timed) / len(timed),
                "images_per_second": _BATCH_SIZE.value * len(timed) / sum(timed),
            }
        )
    )


def _time_input(folder: str) -> dict:
    """Images per second of the training pipeline from records against memory, the same images."""
    from dapter_tf import data
    from dapter_tf.data import tfrecords

    sample = data.load_embedded("train")
    records_dir = os.path.join(folder, "sample")
    tfrecords.write_records("cifar10", {"train": sample}, records_dir, {"train": 8})
    records = tfrecords.record_set(records_dir, "train", "cifar10", (32, 32))
    rates = {}
    for name, train_set, labels in (("memory", sample, sample.labels["label"]), ("records", records, "label")):
        _pass(train_set, labels, 0)  # Warm: file cache, tracing.
        start = time.perf_counter()
        images = sum(_pass(train_set, labels, epoch) for epoch in range(_INPUT_EPOCHS.value))
        rates[f"{name}_images_per_second"] = images / (time.perf_counter() - start)
    return {"images": len(sample), **rates}


def _pass(train_set, labels, epoch: int, shuffle_buffer: int = 0, on_batch=None) -> int:
    from dapter_tf import data

    ds = data.build_training_dataset(
        train_set, labels, _BATCH_SIZE.value, seed=epoch, augment=True, shuffle_buffer=shuffle_buffer
    )
    n = 0
    for i, (x, _) in enumerate(ds):
        n += int(x.shape[0])
        if on_batch is not None:
            on_batch(i)
    return n


def _stream_memory(folder: str) -> dict:
    """RSS while one pass streams a records set ``--memory_factor`` times its shuffle buffer."""
    import numpy as np

    from dapter_tf import data
    from dapter_tf.data import tfrecords

    sample = data.load_embedded("train")
    wanted = _MEMORY_FACTOR.value * _SHUFFLE_BUFFER.value
    copies = -(-wanted // len(sample))
    big = data.ImageSet(
        np.concatenate([sample.images] * copies), {"label": np.tile(sample.labels["label"], copies)}, "sample, tiled"
    )
    records_dir = os.path.join(folder, "big")
    tfrecords.write_records("cifar10", {"train": big}, records_dir, {"train": 16})
    records = tfrecords.record_set(records_dir, "train", "cifar10", (32, 32))
    steps = len(records) // _BATCH_SIZE.value
    marks = {max(0, steps // 10 - 1): 0, steps // 2 - 1: 1, steps - 1: 2}
    rss = [0.0, 0.0, 0.0]
    del big

    def sample_rss(i):
        if i in marks:
            rss[marks[i]] = _rss_mb()

    _pass(records, "label", 0, _SHUFFLE_BUFFER.value, sample_rss)
    return {"images": len(records), "set_mb": len(records) * 32 * 32 * 3 / 2**20, "rss_mb": rss}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    runner.run(main)

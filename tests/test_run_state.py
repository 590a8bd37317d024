"""A run's state: seeded augmentation, one process per workdir, and records that survive a copied tree."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, tiny_dapter_config

from dapter_tf import DapterError, models, train
from dapter_tf.data import pipeline
from dapter_tf.data.tasks import get_task
from dapter_tf.records import lock, runs

TASK = get_task("cifar10")


def test_two_augmented_runs_with_one_seed_are_bit_identical(embedded, tiny_target_path, tmp_path):
    train_set, test_set = embedded[0].take(64), embedded[1].take(32)
    config = tiny_dapter_config(tiny_target_path, augment=True)
    for name in ("a", "b"):
        train.train_dapter(config, TASK, train_set, test_set, str(tmp_path / name))
    a = models.load_converter(str(tmp_path / "a")).get_weights()
    b = models.load_converter(str(tmp_path / "b")).get_weights()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_resumed_pass_augments_its_remaining_batches_as_an_uninterrupted_one(embedded):
    train_set = embedded[0].take(128)
    labels = train_set.labels["label"]

    def images(**kwargs):
        ds = pipeline.build_training_dataset(train_set, labels, 32, seed=1000, augment=True, **kwargs)
        return [x.numpy() for x, _ in ds]

    whole, resumed = images(), images(skip_batches=2)
    assert len(whole) == 4 and len(resumed) == 2
    for x, y in zip(whole[2:], resumed, strict=True):
        np.testing.assert_array_equal(x, y)
    plain = pipeline.build_training_dataset(train_set, labels, 32, seed=1000, augment=False)
    assert np.mean(next(iter(plain))[0].numpy() != whole[0]) > 0.5  # Augmented: flipped or shifted.


def _hold(workdir) -> subprocess.Popen:
    """Another process that takes ``workdir``'s lock and keeps it until it is killed."""
    code = f"import sys; from dapter_tf.records import lock; lock.lock_workdir({str(workdir)!r}); print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_workdir_held_by_another_run_is_refused_and_a_killed_holder_is_taken_over(tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = _hold(workdir)
    config = tiny_dapter_config("t.keras")
    try:
        with pytest.raises(DapterError) as refused:
            runs.prepare_workdir(str(workdir), config)
        assert str(refused.value) == (
            f"{workdir} is in use by another run (pid {holder.pid}); wait for it or use another --workdir"
        )
        assert not (workdir / runs.CONFIG_FILE).exists()  # Refused before it wrote anything.
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # As a killed run ends: its lock file still names it.
        holder.wait()
    runs.prepare_workdir(str(workdir), config)
    assert f"note: {workdir} was held by pid {holder.pid}, which ended without releasing it" in capsys.readouterr().out
    assert (workdir / lock.LOCK_FILE).read_text() == f"{os.getpid()}\n"
    runs.prepare_workdir(str(workdir), config)  # This process holds it already: a second take is no refusal.


def test_a_copied_tree_resumes_with_the_same_config_and_knows_its_target_by_content(
    embedded, tiny_target_path, tmp_path
):
    # As the demo lays out its workdir: target/ beside converter/, whose config names the target in target/.
    original, copy = tmp_path / "demo", tmp_path / "copy"
    (original / "target").mkdir(parents=True)
    shutil.copyfile(tiny_target_path, original / "target" / runs.TARGET_FILE)
    train_set, test_set = embedded[0].take(64), embedded[1].take(32)

    def run(tree):
        config = tiny_dapter_config(str(tree / "target" / runs.TARGET_FILE))
        return train.train_dapter(config, TASK, train_set, test_set, str(tree / "converter"))

    first = run(original)
    shutil.copytree(original, copy)
    shutil.rmtree(original)  # Moved, not only copied: nothing may point back into it.
    assert run(copy) == first  # Finished: nothing more to do.
    record = json.loads((copy / "converter" / runs.CONFIG_FILE).read_text())
    assert record["target_path"] == os.path.join("..", "target", runs.TARGET_FILE)
    assert runs.recorded_target_path(str(copy / "converter")) == str(copy / "converter" / record["target_path"])

    # Another file at the same path is another target.
    models.build_converter((4, 8, 8)).save(str(copy / "target" / runs.TARGET_FILE))
    with pytest.raises(DapterError, match=r"holds a run with another config \(differs in: target_sha256\)"):
        runs.prepare_workdir(str(copy / "converter"), tiny_dapter_config(str(copy / "target" / runs.TARGET_FILE)))
    with pytest.raises(DapterError, match="is not the target that .* was trained against .*: give --target"):
        runs.recorded_target_path(str(copy / "converter"))


def test_an_older_record_of_an_absolute_target_without_a_hash_still_resumes_and_opens(tiny_target_path, tmp_path):
    workdir = tmp_path / "old"
    workdir.mkdir()
    config = tiny_dapter_config(tiny_target_path)
    (workdir / runs.CONFIG_FILE).write_text(json.dumps(runs.config_to_dict(config)))  # As issue 17 wrote it.
    assert runs.recorded_target_path(str(workdir)) == tiny_target_path
    runs.prepare_workdir(str(workdir), config)
    assert json.loads((workdir / runs.CONFIG_FILE).read_text())[runs.TARGET_HASH]  # Rewritten with its hash.

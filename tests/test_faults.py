"""Nothing lost, nothing silent (issue 30): the divergence guard, sets of files that commit as one, full disks.

Real trainings of tiny models on the embedded sample, real files, a real tmpfs for a full disk
(mounting needs root: those tests skip, saying so, elsewhere) and real SIGKILLs.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, assert_one_error_line, run_binary, spread_converter, tiny_dapter_config

from dapter_tf import DapterError, evaluate, models, train
from dapter_tf.data import DataConfig
from dapter_tf.data.tasks import get_task
from dapter_tf.records import files, runs
from export.release import release_lib
from export.release.card import ReleaseInfo
from export.tflite import export_tflite_lib


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB tmpfs (a disk that fills), unmounted afterwards; skips where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder, leave: int = 0) -> None:
    """Fills the file system of ``folder`` up to ``leave`` free bytes."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(os.path.join(folder, "filler"), "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
        except OSError:
            pass


# --- The divergence guard -----------------------------------------------------------------------


def test_a_target_trained_at_an_infinite_rate_stops_naming_the_step_and_writes_no_model(tmp_path, embedded):
    train_set, test_set = embedded
    config = train.TargetConfig(
        data=DataConfig(), model="lenet", epochs=1, batch_size=32, learning_rate=float("inf"), augment=False,
        checkpoint_every_steps=1,
    )
    with pytest.raises(train.DivergedError) as raised:
        train.train_target(config, get_task("cifar10"), train_set.take(128), test_set.take(32), str(tmp_path))
    message = str(raised.value)
    # Step 1's update makes every weight infinite: its checkpoint is refused, step 2's loss is NaN.
    assert message.startswith("training diverged at step 1 of 4: a weight is no longer finite"), message
    assert "the learning rate inf is likely too high: lower --learning_rate" in message
    assert message.endswith("no checkpoint had been saved; no model was written")
    assert not (tmp_path / runs.TARGET_FILE).exists() and not (tmp_path / runs.RESULTS_FILE).exists()


def test_a_converter_trained_at_an_infinite_rate_writes_no_model(tmp_path, tiny_target_path):
    config = tiny_dapter_config(tiny_target_path, learning_rate=float("inf"), data=DataConfig(max_train=256))
    task, train_set, test_set = _embedded_task(config)
    with pytest.raises(train.DivergedError, match=r"^training diverged at step [12] of 8: "):
        train.train_dapter(config, task, train_set, test_set, str(tmp_path))
    assert not (tmp_path / runs.CONVERTER_FILE).exists() and not (tmp_path / runs.RESULTS_FILE).exists()


class _BlowsUpAtStep3(keras.optimizers.schedules.LearningRateSchedule):
    """0.01 for two steps, then infinite: a run that trains, then diverges."""

    def __call__(self, step):
        return tf.where(step >= 2, float("inf"), 0.01)


def _dense_trainable(learning_rate=0.01, after_step=None):
    """A tiny dense classifier of 32x32 images, trained by SGD: seconds-long loop tests."""
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    optimizer = keras.optimizers.SGD(learning_rate)
    optimizer.build(model.trainable_variables)

    def step_fn(images, labels):
        with tf.GradientTape() as tape:
            logits = model(tf.cast(images, tf.float32) / 255.0)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return {"loss": loss}

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    return train.Trainable(checkpoint, optimizer, step_fn, after_step=after_step, variables=tuple(model.variables))


def _run_loop(workdir, trainable, train_set):
    config = train.TargetConfig(epochs=1, batch_size=16, augment=False, checkpoint_every_steps=1)
    strategy = train.build_strategy("default")
    return train.run_training_loop(str(workdir), strategy, trainable, train_set, train_set.labels["label"], config)


def test_a_run_that_diverges_keeps_its_last_finite_checkpoint(tmp_path, embedded):
    with pytest.raises(train.DivergedError) as raised:
        _run_loop(tmp_path, _dense_trainable(_BlowsUpAtStep3()), embedded[0].take(64))
    assert str(raised.value) == (
        "training diverged at step 3 of 4: a weight is no longer finite (the learning rate 0.001 is likely too "
        f"high: lower --learning_rate, in a new --workdir); the last finite checkpoint (step 2) is kept in "
        f"{tmp_path / 'checkpoints'}; no model was written"
    )
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "checkpoints")))
    weights = [np.asarray(reader.get_tensor(n)) for n in reader.get_variable_to_shape_map()]
    weights = [w for w in weights if w.dtype.kind == "f"]
    assert len(weights) == 2 and all(np.isfinite(w).all() for w in weights)  # The kernel and the bias.


def _embedded_task(config):
    from dapter_tf import data

    return data.load_training_data(config.data, seed=0)


def test_loaders_refuse_a_model_with_non_finite_weights(tmp_path):
    converter = spread_converter(1.0)
    kernel, bias = converter.get_layer("conv8_out").get_weights()
    converter.get_layer("conv8_out").set_weights([kernel, bias * np.nan])
    path = str(tmp_path / "converter.keras")
    converter.save(path)
    with pytest.raises(DapterError, match=r"converter.keras holds non-finite weights \(.*conv8_out.* has NaN"):
        models.load_converter(path)
    with pytest.raises(DapterError, match="its training diverged; retrain it with a lower learning rate"):
        models.load_target(path)


def test_release_refuses_a_converter_that_sends_one_image_for_every_photo(embedded):
    converter = spread_converter(0.0)  # A zero output kernel: every photo becomes the same image.
    images = embedded[1].images[:20]
    measured = {"entropy_converted": 0.0, "accuracy_converted": 0.1}
    with pytest.raises(DapterError, match="sends one and the same image for all 20 held-out photos"):
        release_lib.check_serves_task(evaluate.convert_images(converter, images), measured)
    # Images differ: no refusal.
    release_lib.check_serves_task(evaluate.convert_images(spread_converter(10.0), images), measured)


# --- Sets of files that commit as one -----------------------------------------------------------


def test_staged_folder_replaces_a_set_whole_and_a_failure_leaves_the_old_set(tmp_path):
    final = tmp_path / "set"
    with files.staged_folder(str(final)) as staging:
        for name in ("a", "b"):
            (tmp_path / staging / name).write_text("old")
    with pytest.raises(OSError):
        with files.staged_folder(str(final)) as staging:
            (tmp_path / staging / "a").write_text("new")
            raise OSError(28, "No space left on device")
    assert {p.name: p.read_text() for p in final.iterdir()} == {"a": "old", "b": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # No staging folder left.


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_kill_inside_a_staged_write_leaves_the_old_set_and_the_next_run_clears_it(tmp_path):
    final = tmp_path / "set"
    final.mkdir()
    (final / "a").write_text("old")
    script = textwrap.dedent(
        f"""
        import os, signal
        from dapter_tf.records import files
        with files.staged_folder({str(final)!r}) as staging:
            open(os.path.join(staging, "a"), "w").write("new")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO)
    assert proc.returncode == -signal.SIGKILL
    assert (final / "a").read_text() == "old"
    assert len(list(tmp_path.iterdir())) == 2  # The killed run's staging folder, beside the set.
    # A kill between the commit's two renames: the old set aside, no set in place.
    os.rename(final, tmp_path / f".set.old-{_dead_pid()}")
    with files.staged_folder(str(final)) as staging:
        assert (final / "a").read_text() == "old"  # Put back before this run writes anything.
        (tmp_path / staging / "a").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert (final / "a").read_text() == "new"


def test_an_export_that_fails_at_its_last_file_leaves_the_shipped_set_and_no_staging(
    tmp_path, tiny_target_path, embedded, monkeypatch
):
    train_set, test_set = embedded
    target = models.load_target(tiny_target_path)
    out = tmp_path / "export"

    def export(converter):
        return export_tflite_lib.export_converter(
            converter, target, str(out), train_set.images, test_set.images[:16], test_set.labels["label"][:16],
            calibration_steps=4, modes=("float32",),
        )

    export(spread_converter(10.0, seed=1))
    (out / ".export-abc123").mkdir()  # A killed export of an earlier version left its staging.
    shipped = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def disk_full(path, obj):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(export_tflite_lib, "write_json", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        export(spread_converter(10.0, seed=2))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == shipped  # Old set; staging gone.
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_a_release_onto_a_full_disk_leaves_no_half_bundle_and_the_rerun_proceeds(
    full_disk, tmp_path, tiny_target_path, embedded
):
    converter = spread_converter(10.0, seed=1)
    converter.save(tmp_path / "converter.keras")
    train_set, test_set = embedded
    images, labels = test_set.images[:32], test_set.labels["label"][:32]
    target = models.load_target(tiny_target_path)
    export_tflite_lib.export_converter(
        converter, target, str(tmp_path / "export"), train_set.images, images, labels,
        calibration_steps=4, modes=("float32",),
    )
    info = ReleaseInfo(
        name="full", task="cifar10", target_label="label", target_name="t", lambda_=0.9, data="embedded",
        image_size=(32, 32),
    )
    args = (str(tmp_path / "converter.keras"), str(tmp_path / "export"))
    rest = (info, images, labels, target, tiny_target_path)
    bundle = full_disk / "bundle"
    # Room for the converter, not for the float32 file beside it: the bundle fails half way.
    _fill(full_disk, leave=os.path.getsize(tmp_path / "converter.keras") + 8192)
    with pytest.raises(OSError) as raised:
        release_lib.build_bundle(*args, str(bundle), *rest)
    assert raised.value.filename and raised.value.filename.startswith(str(full_disk))
    assert sorted(os.listdir(full_disk)) == ["filler"]  # No half bundle, no staging.
    os.remove(full_disk / "filler")
    manifest = release_lib.build_bundle(*args, str(bundle), *rest)
    assert sorted(manifest["files"]) == ["converter.keras", "converter_float32.tflite", "model_card.md"]


def test_training_onto_a_full_disk_is_one_line_naming_the_workdir_and_resumes(full_disk, embedded):
    workdir = full_disk / "run"

    def fill_after_the_first_checkpoint(step):
        if step == 2:
            _fill(full_disk)

    train_set = embedded[0].take(64)
    with pytest.raises(DapterError) as raised:
        _run_loop(workdir, _dense_trainable(after_step=fill_after_the_first_checkpoint), train_set)
    assert str(raised.value).startswith(f"no space left on device while writing {workdir} at step 2: ")
    assert str(raised.value).endswith(f"(training resumes from {workdir / 'checkpoints' / 'ckpt-1'})")
    os.remove(full_disk / "filler")
    result = _run_loop(workdir, _dense_trainable(), train_set)
    assert (result["resumed_from_step"], result["steps"]) == (1, 4)


def test_a_target_workdir_given_for_a_converter_is_named_so(tmp_path):
    (tmp_path / runs.CONFIG_FILE).write_text(json.dumps({"model": "lenet", "epochs": 1}))
    (tmp_path / runs.TARGET_FILE).write_bytes(b"")
    with pytest.raises(DapterError, match="is a dapter-train-target workdir \\(it holds a target, not a converter\\)"):
        runs.read_dapter_config(str(tmp_path))


def test_a_bad_or_missing_flag_is_one_error_line():
    proc = run_binary("export.release.verify", "--bundle=x", "--max_test=abc")
    assert_one_error_line(proc, "flag --max_test=abc: invalid literal for int() with base 10: 'abc' (--helpshort")

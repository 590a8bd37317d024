"""The lambda study of §7.1: the tuner's rule by hand, a resumable sweep, and tuning rounds for real."""

import json

import numpy as np
import pytest
from conftest import tiny_dapter_config
from PIL import Image

from dapter_tf import DapterError, models, train
from dapter_tf.analysis import lambda_plots, lambda_study
from dapter_tf.data.tasks import get_task

TASK = get_task("cifar10")
TUNER = lambda_study.TunerConfig()


def _measured(drop, ratio, bits=5.0):
    return {"accuracy_drop_points": drop, "entropy_ratio": ratio, "entropy_converted": bits}


@pytest.mark.parametrize(
    "drop, ratio, secure, usable",
    [(1.0, 0.2, True, True), (1.0, 0.3, False, True), (3.0, 0.2, True, False), (-2.0, 0.5, False, True)],
)
def test_judge_uses_the_papers_two_thresholds(drop, ratio, secure, usable):
    assert lambda_study.judge(_measured(drop, ratio), TUNER) == (secure, usable)


def test_judge_with_the_absolute_entropy_index():
    tuner = lambda_study.TunerConfig(max_entropy_bits=3.0)
    assert lambda_study.judge(_measured(1.0, 0.1, bits=2.9), tuner) == (True, True)
    assert lambda_study.judge(_measured(1.0, 0.1, bits=3.0), tuner) == (False, True)


def test_next_lambda_follows_section_7_1():
    assert lambda_study.next_lambda(0.9, False, True, TUNER, [0.9]) == (0.92, "entropy too high: raise lambda")
    assert lambda_study.next_lambda(0.9, True, False, TUNER, [0.9]) == (0.88, "accuracy drop too high: lower lambda")
    assert lambda_study.next_lambda(0.9, True, True, TUNER, [0.9]) == (None, "both criteria met")


def test_next_lambda_says_when_the_criteria_cannot_both_be_met():
    new, why = lambda_study.next_lambda(0.94, False, False, TUNER, [0.9, 0.92, 0.94])
    assert new is None and "cannot both be met" in why and "both criteria missed at lambda 0.940" in why
    # Up from 0.92 (entropy too high), then the drop is too high at 0.94: going down revisits 0.92
    # once (the converter has trained more since), but not a third time.
    assert lambda_study.next_lambda(0.94, True, False, TUNER, [0.9, 0.92, 0.94])[0] == 0.92
    new, why = lambda_study.next_lambda(0.94, True, False, TUNER, [0.9, 0.92, 0.94, 0.92, 0.94])
    assert new is None and "return to 0.920 a third time" in why
    new, why = lambda_study.next_lambda(0.99, False, True, TUNER, [0.99])
    assert new is None and "leave [0, 1]" in why


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"step": 0}, "step must lie in \\(0, 1\\)"),
        ({"start": 1.5}, "lambda must lie in \\[0, 1\\]"),
        ({"max_drop_points": 0}, "max_drop_points must be > 0"),
        ({"max_entropy_ratio": 1.5}, "max_entropy_ratio must lie in \\(0, 1\\]"),
        ({"max_rounds": 0}, "max_rounds must be >= 1"),
    ],
)
def test_tuner_config_rejects_bad_values(kwargs, message):
    with pytest.raises(DapterError, match=message):
        lambda_study.TunerConfig(**kwargs)


def test_lambda_grid_is_checked_and_sorted():
    assert lambda_study.check_lambdas([0.9, 0.0, 1.0]) == (0.0, 0.9, 1.0)
    with pytest.raises(DapterError, match="repeats"):
        lambda_study.check_lambdas([0.5, 0.5])
    with pytest.raises(DapterError, match="empty"):
        lambda_study.check_lambdas([])


def _config(target_path, **overrides):
    # The plain output (step 1): an untrained tiny converter on the grid would send all-128 images.
    return tiny_dapter_config(target_path, output_step=1, **overrides)


def test_sweep_trains_each_point_once_and_plots(embedded, tiny_target_path, tmp_path, capsys):
    train_set, test_set = embedded[0].take(64), embedded[1].take(32)
    config = _config(tiny_target_path)
    sweep = lambda_study.run_sweep(config, [1.0, 0.0], TASK, train_set, test_set, str(tmp_path))
    assert [p["lambda"] for p in sweep["points"]] == [0.0, 1.0]
    on_disk = json.loads((tmp_path / "sweep.json").read_text())
    assert on_disk["points"] == sweep["points"]
    assert json.loads((tmp_path / "lambda_1.000" / "config.json").read_text())["lambda_"] == 1.0
    # lambda = 1 trains on L_eta alone: the converter moves towards I_128, entropy towards 0.
    assert sweep["points"][1]["entropy_converted"] < sweep["points"][0]["entropy_converted"]
    capsys.readouterr()
    again = lambda_study.run_sweep(config, [0.0, 1.0], TASK, train_set, test_set, str(tmp_path))
    assert again["points"] == sweep["points"]
    assert capsys.readouterr().out.count("done before") == 2
    for name, plot in (("sweep.png", lambda_plots.plot_sweep), ("frontier.png", lambda_plots.plot_frontier)):
        path = str(tmp_path / name)
        plot(sweep if name == "sweep.png" else {"sweep": sweep["points"]}, path, "test")
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300


def test_first_lambda_over_the_drop():
    points = [{"lambda": 0.5, "accuracy_drop_points": 1.0}, {"lambda": 0.9, "accuracy_drop_points": 3.5}]
    assert lambda_study.first_lambda_over(points, 3.0) == 0.9
    assert lambda_study.first_lambda_over(points, 5.0) is None
    wandering = [{"lambda": v, "accuracy_drop_points": d} for v, d in [(0, 1), (0.2, 3.5), (0.5, 2), (0.8, 4), (1, 9)]]
    assert lambda_study.first_lambda_over(wandering, 3.0) == 0.2
    assert lambda_study.lambda_staying_over(wandering, 3.0) == 0.8
    assert lambda_study.lambda_staying_over(wandering, 10.0) is None


def test_tuner_raises_lambda_and_fine_tunes_the_last_converter(embedded, tiny_target_path, tmp_path):
    train_set, test_set = embedded[0].take(64), embedded[1].take(64)
    val_set, held_out = test_set.take(32), test_set.skip(32)
    # An entropy bar no converter can pass and a drop bar every one passes: lambda must rise.
    tuner = lambda_study.TunerConfig(max_entropy_ratio=1e-9, max_drop_points=100.0, first_epochs=1, max_rounds=2)
    log = lambda_study.tune_lambda(_config(tiny_target_path), tuner, TASK, train_set, val_set, held_out, str(tmp_path))
    assert [r["lambda"] for r in log["rounds"]] == [0.9, 0.92]
    assert log["rounds"][0]["decision"] == "entropy too high: raise lambda"
    assert log["stopped"] == "stopped after max_rounds=2 rounds" and not log["met"]
    second = json.loads((tmp_path / "round_01" / "config.json").read_text())
    assert second["init_converter"] == str(tmp_path / "round_00" / "converter.keras")
    assert log["final"]["images"] == 32 and log["final_lambda"] == 0.92
    assert json.loads((tmp_path / "tuner.json").read_text())["final"] == log["final"]


def test_init_converter_starts_from_the_given_weights(embedded, tiny_target_path, tmp_path):
    train_set, test_set = embedded[0].take(32), embedded[1].take(32)
    first = train.train_dapter(_config(tiny_target_path), TASK, train_set, test_set, str(tmp_path / "a"))
    assert first["steps"] == 1
    source = models.load_converter(str(tmp_path / "a"))
    # A learning rate too small to move the weights visibly: the copy is what remains.
    config = _config(tiny_target_path, init_converter=str(tmp_path / "a"), learning_rate=1e-12)
    train.train_dapter(config, TASK, train_set, test_set, str(tmp_path / "b"))
    started = models.load_converter(str(tmp_path / "b"))
    for a, b in zip(source.get_weights(), started.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(DapterError, match="other layer shapes than --filters asks for"):
        train.train_dapter(
            _config(tiny_target_path, init_converter=str(tmp_path / "a"), filters=(4, 8, 16)),
            TASK,
            train_set,
            test_set,
            str(tmp_path / "c"),
        )

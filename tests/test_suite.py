"""The attack suite: hand-checked statistics and verdicts, the attackers, and known answers on built converters."""

import dataclasses
import json

import keras
import numpy as np
import pytest
from conftest import assert_one_error_line, run_binary

from dapter_tf import DapterError, attacks, data, models
from dapter_tf.analysis import lambda_study
from dapter_tf.attacks import (
    AttackInputData,
    ReconstructionSpec,
    SecurityCriteria,
    SuiteResults,
    SuiteSpec,
    lookup,
    reconstructors,
)
from dapter_tf.data import tasks
from dapter_tf.models import targets
from dapter_tf.records import suite as suite_lib
from dapter_tf.records.attacks import AutoRecognitionResult, ReconstructionResult


def _reconstruction(attacker, ssim, mean_image=0.12):
    return ReconstructionResult(
        ssim, 15.0, 0.1, 12.0, 100, 50, 2, "grid.png", 0.9, mean_image, 12.1, attacker=attacker, parameters=10
    )


def _labelling(attacker, accuracy, bound=0.2):
    return AutoRecognitionResult(
        "label", 0.9, 0.88, 2.0, 0.8, 0.15, accuracy, 80 * 0.8 - accuracy, None, 0.1, 100, 50,
        acc_best_given_target=bound, attacker=attacker,
    )  # fmt: skip


def _results(reconstruction, labelling=(), criteria=SecurityCriteria(), drop=2.0):
    return SuiteResults(
        task="cifar2_10",
        converter_path="c.keras",
        target_path="t.keras",
        images_train=100,
        images_test=50,
        target_accuracy_original=0.9,
        target_accuracy_converted=0.9 - drop / 100,
        accuracy_drop_points=drop,
        accuracy_drop_error_points=1.0,
        entropy_original=21.0,
        entropy_converted=3.0,
        reconstruction=tuple(reconstruction),
        labelling=tuple(labelling),
        criteria=criteria,
    )


def test_verdicts_take_the_strongest_attacker_of_each_kind(tmp_path):
    results = _results(
        [_reconstruction("symmetric", 0.15), _reconstruction("unet", 0.26)],
        [_labelling("finetuned", 0.31), _labelling("scratch", 0.24)],
    )
    assert results.max_ssim == 0.26 and results.strongest_reconstruction.attacker == "unet"
    # The converted image as sent is an attacker too, one that trains nothing.
    as_sent = _results([dataclasses.replace(_reconstruction("unet", 0.26), ssim_converted=0.5)])
    assert as_sent.max_ssim == 0.5 and as_sent.strongest_reconstruction.attacker == suite_lib.AS_SENT
    assert results.max_label_gap_points == pytest.approx(11.0)  # 0.31 - 0.20 knowing only the target.
    usability, recon, label = results.verdicts()
    assert usability.holds and "+2.00 ± 1.00 points on 50 images" in usability.detail
    assert recon.holds is False and "missed by 0.060 above 0.2" in recon.detail
    assert label.holds is False and "finetuned attacker 0.3100" in label.detail and "(+11.00 points)" in label.detail
    assert not results.holds
    results.save(str(tmp_path / "suite.json"))
    assert SuiteResults.load(str(tmp_path / "suite.json")) == results
    record = json.loads((tmp_path / "suite.json").read_text())
    assert record["max_ssim"] == 0.26 and [v["holds"] for v in record["verdicts"]] == [True, False, False]


def test_verdicts_against_the_mean_image_and_without_bars():
    faces = SecurityCriteria(max_ssim=None, max_ssim_over_mean_image=0.05, max_label_gap_points=None)
    # 0.33 <= 0.29 + 0.05 holds; 0.35 misses by 0.010.
    assert _results([_reconstruction("unet", 0.33, 0.29)], criteria=faces).verdicts()[1].holds
    missed = _results([_reconstruction("unet", 0.35, 0.29)], criteria=faces).verdicts()[1]
    assert missed.holds is False and "missed by 0.010 above the mean image + 0.05" in missed.detail
    unbarred = _results([_reconstruction("unet", 0.1)], [_labelling("scratch", 0.9)], criteria=faces)
    assert unbarred.verdicts()[2].holds and "bar: none" in unbarred.verdicts()[2].detail
    # Nothing measured is reported as such and does not count against the converter.
    cifar10 = _results([_reconstruction("unet", 0.1)], drop=5.0)
    assert [v.holds for v in cifar10.verdicts()] == [False, True, None]


def test_the_cards_suite_section_speaks_of_labellers_only_when_they_ran():
    from export.release import card

    with_labellers = "\n".join(
        card._suite_section(_results([_reconstruction("unet", 0.1)], [_labelling("scratch", 0.3)]))
    )
    assert "(the labellers on all 100; each reconstruction row says how many)" in with_labellers
    assert (
        "| labelling label, scratch | accuracy on converted images | 0.3000 (originals 0.8000) "
        "| knowing only the target label 0.2000 |" in with_labellers
    )
    without = "\n".join(card._suite_section(_results([_reconstruction("unet", 0.1)])))
    assert "labellers" not in without and "(each reconstruction row says how many)" in without


@pytest.mark.parametrize(
    "criteria, message",
    [
        (SecurityCriteria(max_drop_points=0), "max_drop_points must be > 0"),
        (SecurityCriteria(max_ssim=1.5), "max_ssim must lie in \\[-1, 1\\]"),
        (SecurityCriteria(max_ssim_over_mean_image=-0.1), "max_ssim_over_mean_image must lie in \\[0, 2\\]"),
        (SecurityCriteria(max_label_gap_points=120), "max_label_gap_points must lie in \\[0, 100\\]"),
    ],
)
def test_criteria_validate(criteria, message):
    with pytest.raises(DapterError, match=message):
        criteria.validate()


def test_the_unet_attacker_is_much_larger_and_needs_its_image_sides():
    unet = reconstructors.build_reconstructor("unet", reconstructors.DEFAULT_UNET_FILTERS)
    symmetric = reconstructors.build_reconstructor("symmetric", models.DEFAULT_FILTERS)
    assert unet.count_params() > 10 * symmetric.count_params()
    assert unet(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 32, 32, 3)
    task = tasks.get_task("celeba", image_size=36)
    with pytest.raises(DapterError, match="the unet attacker needs image sides that are multiples of 8"):
        ReconstructionSpec(architecture="unet").validate(task)
    with pytest.raises(DapterError, match="unknown reconstruction attacker 'gan'"):
        ReconstructionSpec(architecture="gan").validate(task)
    with pytest.raises(DapterError, match="each reconstruction attacker may appear once"):
        SuiteSpec(reconstruction=(ReconstructionSpec(), ReconstructionSpec())).validate(tasks.get_task("cifar10"))


def test_the_lookup_attacker_by_hand():
    # Four 2x2 training pairs, each image one value: codes 0, 0, 16, 0 sent for originals 10, 20, 40, 30.
    def flat(*values):
        return np.stack([np.full((2, 2, 3), v, np.uint8) for v in values])

    table = lookup.fit_lookup(flat(0, 0, 16, 0), flat(10, 20, 40, 30))
    np.testing.assert_array_equal(table.codes[:, 0, 0, 0], [0, 16])
    np.testing.assert_array_equal(table.means[:, 0, 0, 0], [20, 40])  # (10 + 20 + 30) / 3 and 40.
    np.testing.assert_array_equal(table.counts, [3, 1])
    assert table.stored_values == 2 * 12
    # Seen codes get their mean; unseen 4 is nearer code 0 (distance 4 per pixel) and 12 nearer 16.
    restored = lookup.reconstruct(table, flat(16, 0, 4, 12))
    np.testing.assert_array_equal(restored[:, 0, 0, 0], [40, 20, 20, 40])
    with pytest.raises(DapterError, match="the lookup attacker is not a network and takes no filters"):
        ReconstructionSpec(architecture="lookup", filters=(8,)).validate(tasks.get_task("cifar10"))
    ReconstructionSpec(architecture="lookup").validate(tasks.get_task("celeba", image_size=36))  # Any side.


def _save_converter(path, layer) -> str:
    """A converter-shaped model (32x32 RGB in and out) made of one layer, saved as .keras."""
    images = keras.Input(shape=(None, None, 3))
    keras.Model(images, layer(images)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def cifar2_10(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    task = tasks.get_task("cifar2_10")
    keras.utils.set_random_seed(0)
    targets.build_target("resnet18", (32, 32, 3), 2, width=4).save(folder / "target.keras")
    identity = _save_converter(folder / "identity.keras", keras.layers.Activation("linear"))
    constant = _save_converter(
        folder / "constant.keras",
        keras.layers.Conv2D(3, 1, activation="sigmoid", kernel_initializer="zeros"),  # Grey 128 everywhere.
    )
    train_set = data.load_split(task, "embedded", "train").take(2000)
    test_set = data.load_split(task, "embedded", "test").take(200)
    return task, train_set, test_set, folder, identity, constant


FAST_RECONSTRUCTION = (
    ReconstructionSpec(architecture="symmetric", filters=(8, 16, 16), epochs=3, batch_size=32),
    ReconstructionSpec(architecture="unet", filters=(8, 16, 32), epochs=3, batch_size=32),
    ReconstructionSpec(architecture="lookup"),
)


def test_identity_converter_reconstructs_near_ssim_1_and_the_suite_says_so(cifar2_10, tmp_path):
    task, train_set, test_set, folder, identity, _ = cifar2_10
    input_data = AttackInputData(task, train_set, test_set, identity, str(folder / "target.keras"))
    found = attacks.run_attack_suite(input_data, SuiteSpec(FAST_RECONSTRUCTION, labelling=None), str(tmp_path))
    assert {r.attacker for r in found.reconstruction} == {"symmetric", "unet", "lookup"}
    # Three epochs on 2,000 pairs already restore most of the image; sent as is, it is the image.
    assert max(r.ssim for r in found.reconstruction) > 0.75
    assert found.max_ssim == pytest.approx(1.0) and found.strongest_reconstruction.attacker == suite_lib.AS_SENT
    assert found.accuracy_drop_points == 0.0 and found.accuracy_drop_error_points == 0.0
    assert found.verdicts()[1].holds is False
    assert SuiteResults.load(str(tmp_path / "suite.json")) == found
    assert "reconstruction: MISSED" in (tmp_path / "summary.txt").read_text()


def test_constant_converter_scores_the_mean_image_baseline(cifar2_10, tmp_path):
    task, train_set, test_set, folder, _, constant = cifar2_10
    input_data = AttackInputData(task, train_set, test_set, constant, str(folder / "target.keras"))
    found = attacks.run_attack_suite(input_data, SuiteSpec(FAST_RECONSTRUCTION, labelling=None), str(tmp_path))
    # A decoder that sees the same grey image every time can only learn the mean image; the lookup,
    # whose one code is that grey image, returns exactly the mean image.
    for result in found.reconstruction:
        assert result.ssim == pytest.approx(result.ssim_mean_image, abs=0.02), result
    (lookup_result,) = [r for r in found.reconstruction if r.attacker == "lookup"]
    assert lookup_result.ssim == lookup_result.ssim_mean_image and lookup_result.epochs == 0
    assert lookup_result.parameters == 32 * 32 * 3  # One stored mean image.
    assert found.entropy_converted == 0.0 and found.verdicts()[1].holds


def test_labelling_attackers_fine_tuned_and_from_scratch(cifar2_10, tmp_path):
    task, train_set, test_set, folder, _, constant = cifar2_10
    labelling = attacks.AutoRecognitionSpec(
        width=4, pretrain_epochs=1, finetune_epochs=1, batch_size=64, augment=False, attackers=("finetuned", "scratch")
    )
    input_data = AttackInputData(task, train_set.take(256), test_set, constant, str(folder / "target.keras"))
    found = attacks.run_attack_suite(input_data, SuiteSpec((), labelling), str(tmp_path))
    assert [(r.attack_label, r.attacker) for r in found.labelling] == [("label", "finetuned"), ("label", "scratch")]
    # The fine-tuned attacker starts from the classifier of original images, the other from random weights.
    finetune = json.loads((tmp_path / "labelling" / "label" / "finetune" / "config.json").read_text())
    scratch = json.loads((tmp_path / "labelling" / "label" / "scratch" / "config.json").read_text())
    assert finetune["init_model"].endswith("pretrain/target.keras") and scratch["init_model"] == ""
    assert scratch["epochs"] == 1 and scratch["learning_rate"] == labelling.pretrain_learning_rate
    bound = found.labelling[0].acc_best_given_target
    assert found.max_label_gap_points == pytest.approx(
        100 * (max(r.attack_accuracy_converted for r in found.labelling) - bound)
    )


def test_the_labelling_attackers_need_a_target_and_known_names(cifar2_10, tmp_path):
    task, train_set, test_set, _, _, constant = cifar2_10
    input_data = AttackInputData(task, train_set, test_set, constant)
    with pytest.raises(DapterError, match="the labelling attackers need the target model"):
        attacks.run_attack_suite(input_data, SuiteSpec(FAST_RECONSTRUCTION), str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()
    with pytest.raises(DapterError, match="auto-recognition attackers must be some of finetuned, scratch"):
        attacks.AutoRecognitionSpec(attackers=("oracle",)).validate(task)


def test_tuner_judges_by_the_suite_when_asked():
    tuner = lambda_study.TunerConfig(max_ssim=0.2)
    measured = {"entropy_ratio": 0.1, "entropy_converted": 2.0, "accuracy_drop_points": 1.0}
    assert tuner.uses_suite and not lambda_study.TunerConfig().uses_suite
    assert lambda_study.judge(measured, tuner, _results([_reconstruction("unet", 0.15)])) == (True, True)
    assert lambda_study.judge(measured, tuner, _results([_reconstruction("unet", 0.25)])) == (False, True)
    # The suite's own usability verdict is not the tuner's: the tuner judges the drop on its rounds' images.
    assert lambda_study.judge(measured, tuner, _results([_reconstruction("unet", 0.15)], drop=9.0)) == (True, True)
    with pytest.raises(DapterError, match="max_ssim must lie in"):
        lambda_study.TunerConfig(max_ssim=3.0)


def test_tuner_rounds_log_the_suite(embedded, tiny_target_path, tmp_path):
    from conftest import tiny_dapter_config

    train_set, test_set = embedded[0].take(128), embedded[1].take(64)
    tuner = lambda_study.TunerConfig(max_ssim=0.99, max_drop_points=100.0, first_epochs=1, max_rounds=1)
    suite = SuiteSpec((dataclasses.replace(FAST_RECONSTRUCTION[0], epochs=1),), labelling=None)
    task = tasks.get_task("cifar10")
    log = lambda_study.tune_lambda(
        tiny_dapter_config(tiny_target_path), tuner, task, train_set, test_set.take(32), test_set.skip(32),
        str(tmp_path), suite,
    )  # fmt: skip
    assert log["rounds"][0]["max_ssim"] is not None and log["final"]["max_ssim"] is not None
    assert (tmp_path / "round_00" / "suite" / "suite.json").is_file()
    assert (tmp_path / "final_suite" / "suite.json").is_file()
    assert log["suite"]["criteria"]["max_ssim"] == 0.99


def test_attack_suite_binary_end_to_end_and_its_errors(tiny_target_path, tmp_path):
    proc = run_binary(
        "experiments.attack_suite",
        f"--converter={tmp_path / 'none.keras'}",
        "--suite_reconstruction=symmetric,gan",
        f"--workdir={tmp_path / 'w'}",
    )
    assert_one_error_line(proc, "--suite_reconstruction takes symmetric, unet and lookup")
    proc = run_binary(
        "experiments.attack_suite", f"--converter={tmp_path / 'none.keras'}", "--max_ssim=2", f"--workdir={tmp_path}/w"
    )
    assert_one_error_line(proc, "max_ssim must lie in [-1, 1]")
    assert not (tmp_path / "w").exists()

    keras.utils.set_random_seed(0)
    models.build_converter((4, 8, 8), output_block=8).save(tmp_path / "converter.keras")
    args = [
        f"--converter={tmp_path / 'converter.keras'}",
        f"--target={tiny_target_path}",
        "--max_train=256",
        "--max_test=64",
        "--suite_reconstruction=symmetric",
        "--suite_symmetric_epochs=1",
        f"--workdir={tmp_path / 'suite'}",
    ]
    proc = run_binary("experiments.attack_suite", *args)
    assert proc.returncode == 0, proc.stderr
    assert "reconstruction: holds" in proc.stdout and "labelling: not measured" in proc.stdout
    found = SuiteResults.load(str(tmp_path / "suite" / "suite.json"))
    assert found.images_train == 256 and found.images_test == 64
    # As a gate: a bar no converter meets exits 2, after the same report.
    gate = run_binary("experiments.attack_suite", *args, "--max_ssim=-1", "--fail_on_miss")
    assert gate.returncode == 2 and "the converter misses: reconstruction" in gate.stderr

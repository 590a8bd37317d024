"""The attacks of §5: specs, results round trips, hand-checkable measures, and runs on real samples."""

import csv
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import SHARED_DATA, assert_one_error_line, require_shared, run_binary

from dapter_tf import DapterError, attacks, data, models, train
from dapter_tf.attacks import auto_recognition, labelling, reconstruction, reconstructors
from dapter_tf.data import tasks
from dapter_tf.models import targets
from dapter_tf.records import runs


@pytest.fixture(scope="module")
def cifar_input(tmp_path_factory):
    """Cifar2:10 with the 10 classes as target and vehicle/animal as attack, on the embedded sample.

    Untrained tiny models: these tests check the plumbing; the committed results check the attacks.
    """
    folder = tmp_path_factory.mktemp("models")
    task = tasks.get_task("cifar2_10", target_label="label")
    train_set = data.load_split(task, "embedded", "train").take(256)
    test_set = data.load_split(task, "embedded", "test").take(128)
    tf.keras.utils.set_random_seed(0)
    targets.build_target("resnet18", (32, 32, 3), 10, width=4).save(folder / "target.keras")
    models.build_converter((4, 8, 8)).save(folder / "converter.keras")
    return attacks.AttackInputData(
        task, train_set, test_set, str(folder / "converter.keras"), str(folder / "target.keras")
    )


def tiny_auto(**overrides):
    values = dict(width=4, pretrain_epochs=1, finetune_epochs=1, batch_size=64, augment=False)
    values.update(overrides)
    return attacks.AutoRecognitionSpec(**values)


def test_correlation_bounds_by_hand():
    # Labels agree on 3 of 4 images: P_co 0.75, Acc_ideal 0.75; the majority within each target
    # class is right on 1 of 2 and 2 of 2 images: 3/4.
    b = auto_recognition.correlation_bounds([0, 0, 1, 1], [0, 1, 1, 1])
    assert b == {"p_co": 0.75, "acc_ideal": 0.75, "acc_best_given_target": 0.75}
    # An attribute nobody has: the attacker is always right by saying "no", whatever P_co says.
    b = auto_recognition.correlation_bounds([0, 0, 1, 1], [0, 0, 0, 0])
    assert b == {"p_co": 0.5, "acc_ideal": 0.5, "acc_best_given_target": 1.0}


def test_ssim_and_psnr_by_hand():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    assert reconstruction.mean_ssim(images, images) == pytest.approx(1.0)
    # Every pixel off by one level: MSE 1, PSNR = 10 log10(255^2) = 48.13 dB.
    assert reconstruction.psnr(images, images + 1) == pytest.approx(10 * np.log10(255.0**2))
    assert reconstruction.psnr(images, images) == float("inf")
    # A flat grey image keeps none of the structure: SSIM near 0.
    assert abs(reconstruction.mean_ssim(images, np.full_like(images, 128))) < 0.05


def test_reconstructor_mirrors_the_converter():
    converter = models.build_converter((5, 6, 7))
    assert reconstruction.converter_filters(converter) == (5, 6, 7)
    reconstructor = reconstructors.build_symmetric_generator((5, 6, 7))
    assert [w.shape for w in reconstructor.weights] == [
        w.shape for w in models.build_converter((5, 6, 7), output_step=1).weights
    ]
    assert models.output_step_of(reconstructor) == 1  # A plain sigmoid: it may send any level.


@pytest.mark.parametrize(
    "spec, message",
    [
        (attacks.AutoRecognitionSpec(attack_labels=("nope",)), "has no label 'nope'"),
        (attacks.AutoRecognitionSpec(attack_labels=("label",)), "is the target label"),
        (attacks.AutoRecognitionSpec(finetune_epochs=0), "finetune_epochs must be >= 1"),
        (attacks.AutoRecognitionSpec(pretrained={"superclass": "/no/such.keras"}), "not found: /no/such.keras"),
        (attacks.AutoRecognitionSpec(model="alexnet"), "alexnet"),
        (attacks.ReconstructionSpec(filters=(4, 8)), "three positive channel counts"),
        (attacks.ReconstructionSpec(epochs=0), "epochs must be >= 1"),
        (attacks.VisualSpec(per_class=0), "per_class must be >= 1"),
    ],
)
def test_specs_validate(cifar_input, spec, message):
    with pytest.raises(DapterError, match=message):
        spec.validate(cifar_input.task)


def test_visual_attack_needs_binary_labels():
    task = tasks.get_task("cifar2_10")  # Target vehicle/animal, attack the 10 classes.
    with pytest.raises(DapterError, match="asks yes/no questions: 'label' has 10 classes"):
        attacks.VisualSpec().validate(task)
    assert attacks.VisualSpec().labels_for(tasks.get_task("celeba")) == attacks.PAPER_VISUAL_ATTRIBUTES


def test_run_attacks_checks_everything_before_writing(cifar_input, tmp_path):
    workdir = tmp_path / "wd"
    bad = dataclasses.replace(cifar_input, converter_path=str(tmp_path / "missing.keras"))
    with pytest.raises(DapterError, match="converter file not found"):
        attacks.run_attacks(bad, [tiny_auto()], str(workdir))
    with pytest.raises(DapterError, match="needs the target model"):
        attacks.run_attacks(dataclasses.replace(cifar_input, target_path=""), [tiny_auto()], str(workdir))
    with pytest.raises(DapterError, match="at most one spec of each"):
        attacks.run_attacks(cifar_input, [tiny_auto(), tiny_auto()], str(workdir))
    with pytest.raises(DapterError, match="has 10 outputs but the target label 'superclass'"):
        other_task = dataclasses.replace(cifar_input, task=tasks.get_task("cifar2_10"))
        attacks.run_attacks(other_task, [tiny_auto(attack_labels=("label",))], str(workdir))
    with pytest.raises(DapterError, match="has no label 'x'"):
        attacks.run_attacks(cifar_input, [attacks.ReconstructionSpec(), tiny_auto(attack_labels=("x",))], str(workdir))
    assert not workdir.exists()


def test_run_attacks_runs_all_three_and_results_round_trip(cifar_input, tmp_path):
    workdir = str(tmp_path / "wd")
    specs = [
        tiny_auto(),
        attacks.ReconstructionSpec(epochs=1, batch_size=64, grid_images=4),
        attacks.VisualSpec(per_class=3),
    ]
    found = attacks.run_attacks(cifar_input, specs, workdir)
    kinds = [r.attack_type for r in found.results]
    assert kinds == ["auto_recognition", "reconstruction", "visual_recognition"]
    auto, recon, visual = found.results
    test = cifar_input.test
    # The figures are the models' real accuracies on the held-out images.
    target = models.load_target(cifar_input.target_path)
    assert auto.target_accuracy_original == pytest.approx(
        float(np.mean(target.predict(test.images / 255.0, verbose=0).argmax(-1) == test.labels["label"]))
    )
    assert auto.attack_label == "superclass" and auto.images_train == 256 and auto.images_test == 128
    assert auto.attack_loss_points == pytest.approx(
        100 * (auto.attack_accuracy_original - auto.attack_accuracy_converted)
    )
    assert auto.acc_ideal is None  # The target has 10 classes: Eq. 5 needs two binary labels.
    assert auto.acc_best_given_target == 1.0  # The class tells vehicle from animal.
    assert 0 <= recon.ssim <= 1 and recon.images_test == 128 and os.path.isfile(recon.grid)
    assert visual.items == 6 and os.path.isfile(visual.page)
    assert os.path.isfile(os.path.join(workdir, "uncorrelated.png"))
    assert attacks.AttackResults.load(os.path.join(workdir, attacks.RESULTS_FILE)) == found
    assert "auto-recognition of superclass" in found.summary()
    # A rerun resumes every finished training run: same models, same figures.
    again = attacks.run_attacks(cifar_input, specs[:2], workdir)
    assert again.results == found.results[:2]


def test_results_load_refuses_other_files(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"results": [{"attack_type": "mind_reading"}]}))
    with pytest.raises(DapterError, match="not attack results"):
        attacks.AttackResults.load(str(path))
    with pytest.raises(DapterError, match="attack results not found"):
        attacks.AttackResults.load(str(tmp_path / "none.json"))


def test_pretrained_attacker_with_the_wrong_head_fails_fast(cifar_input, tmp_path):
    wrong = tmp_path / "wrong.keras"
    targets.build_target("lenet", (32, 32, 3), 5).save(wrong)
    spec = tiny_auto(pretrained={"superclass": str(wrong)})
    with pytest.raises(DapterError, match="has 5 outputs but label 'superclass' has 2 classes"):
        attacks.run_attacks(cifar_input, [spec], str(tmp_path / "wd"))
    assert not (tmp_path / "wd" / "auto_recognition" / "superclass" / "finetune").exists()


def test_fine_tuning_starts_from_the_pretrained_weights(cifar_input, tmp_path):
    # With a learning rate too small to move anything, the fine-tuned classifier is the given one.
    vanilla = tmp_path / "vanilla.keras"
    tf.keras.utils.set_random_seed(1)
    targets.build_target("lenet", (32, 32, 3), 2).save(vanilla)
    spec = tiny_auto(pretrained={"superclass": str(vanilla)}, finetune_learning_rate=1e-12, l2=0.0)
    (result,) = attacks.run_attacks(cifar_input, [spec], str(tmp_path / "wd")).results
    assert result.attack_accuracy_converted == pytest.approx(result.attack_accuracy_converted_no_finetune)
    folder = tmp_path / "wd" / "auto_recognition" / "superclass"
    finetuned = models.load_target(str(folder / "finetune" / runs.TARGET_FILE))
    for before, after in zip(models.load_target(str(vanilla)).get_weights(), finetuned.get_weights()):
        np.testing.assert_allclose(after, before, atol=1e-6)
    assert not (folder / "pretrain").exists()


def test_l2_regulariser_shrinks_kernels(embedded, tmp_path):
    # A huge L2 weight pulls every kernel towards 0 within an epoch; without it they stay put.
    train_set, test_set = embedded
    task = tasks.get_task("cifar10")
    base = dict(model="lenet", epochs=1, batch_size=64, augment=False, learning_rate=1e-2)
    norms = {}
    for l2 in (0.0, 10.0):
        train.train_target(
            train.TargetConfig(l2=l2, **base), task, train_set.take(256), test_set.take(64), str(tmp_path / f"l2_{l2}")
        )
        trained = models.load_target(str(tmp_path / f"l2_{l2}" / runs.TARGET_FILE))
        norms[l2] = sum(float(np.sum(w.numpy() ** 2)) for w in trained.weights if w.path.endswith("kernel"))
    assert norms[10.0] < 0.5 * norms[0.0]


def test_correlated_attack_on_real_celeba(tmp_path):
    celeba = require_shared(SHARED_DATA / "celeba")
    config = data.DataConfig(
        dataset="celeba", source="folder", data_dir=str(celeba), image_size=32, max_train=256, max_test=128
    )
    task, train_set, test_set = data.load_data(config)
    tf.keras.utils.set_random_seed(0)
    targets.build_target("resnet18", (32, 32, 3), 2, width=4).save(tmp_path / "target.keras")
    models.build_converter((4, 8, 8)).save(tmp_path / "converter.keras")
    inputs = attacks.AttackInputData(
        task, train_set, test_set, str(tmp_path / "converter.keras"), str(tmp_path / "target.keras"), config
    )
    found = attacks.run_attacks(inputs, [tiny_auto(attack_labels=("Eyeglasses",))], str(tmp_path / "wd"))
    (r,) = found.results
    male, glasses = test_set.labels["Male"], test_set.labels["Eyeglasses"]
    p_co = float(np.mean(male == glasses))
    assert r.p_co == pytest.approx(p_co)
    assert r.acc_ideal == pytest.approx(abs(p_co - 0.5) + 0.5)
    assert r.acc_ideal_hat == pytest.approx(r.acc_ideal * r.attack_accuracy_original)
    assert r.acc_best_given_target >= r.acc_ideal
    assert os.path.isfile(tmp_path / "wd" / "correlated.png")


def test_reconstruction_sweep_runs_every_point_and_resumes(cifar_input, tmp_path):
    sweep_dir = tmp_path / "sweep"
    points = []
    for lambda_ in (0.0, 0.9):
        point = runs.lambda_point_dir(str(sweep_dir), lambda_)
        os.makedirs(point)
        models.build_converter((4, 8, 8)).save(os.path.join(point, runs.CONVERTER_FILE))
        with open(os.path.join(point, "config.json"), "w") as f:
            json.dump({"lambda_": lambda_}, f)
        points.append({"lambda": lambda_, "entropy_ratio": 0.5, "accuracy_drop_points": 1.0})
    (sweep_dir / "sweep.json").write_text(json.dumps({"points": points}))
    spec = attacks.ReconstructionSpec(epochs=1, batch_size=64, grid_images=2)
    inputs = dataclasses.replace(cifar_input, converter_path="")
    out = reconstruction.reconstruction_sweep(str(sweep_dir), inputs, spec, str(tmp_path / "ssim"))
    assert [p["lambda"] for p in out] == [0.0, 0.9]
    written = json.loads((tmp_path / "ssim" / "ssim_sweep.json").read_text())["points"]
    assert written == out
    with open(tmp_path / "ssim" / "lambda_0.900" / "results.json") as f:
        assert json.load(f)["lambda_"] == 0.9
    # A rerun reads finished points back instead of training again.
    assert reconstruction.reconstruction_sweep(str(sweep_dir), inputs, spec, str(tmp_path / "ssim")) == out
    with pytest.raises(DapterError, match="sweep.json not found"):
        reconstruction.reconstruction_sweep(str(tmp_path), inputs, spec, str(tmp_path / "x"))


# --- The labelling kit and its scorer -----------------------------------------------------------


def test_pick_items_balances_and_never_reuses_an_image():
    labels = {"A": np.array([1, 0] * 10), "B": np.array([1, 1, 0, 0] * 5)}
    items = labelling.pick_items(labels, ["A", "B"], per_class=3, seed=0)
    assert len(items) == 12 and len({i["index"] for i in items}) == 12
    for attribute in ("A", "B"):
        mine = [i for i in items if i["attribute"] == attribute]
        assert sorted(i["truth"] for i in mine) == ["no"] * 3 + ["yes"] * 3
        assert all(labels[attribute][i["index"]] == (i["truth"] == "yes") for i in mine)
    assert items[0]["item"] == "item_01"
    with pytest.raises(DapterError, match="A: only 10 unused positive images, 11 needed"):
        labelling.pick_items(labels, ["A"], per_class=11, seed=0)


def test_the_page_carries_no_answers():
    images = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    items = [{"item": f"item_{k}", "attribute": "Bangs", "truth": "yes", "index": k} for k in range(4)]
    flipped = [{**i, "truth": "no"} for i in items]
    assert labelling.render_page(items, images, "t") == labelling.render_page(flipped, images, "t")


def _write_rows(path, columns, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return str(path)


@pytest.fixture
def key_file(tmp_path):
    rows = [
        ("item_1", "Bangs", "yes", 0, ""),
        ("item_2", "Bangs", "no", 1, ""),
        ("item_3", "Bangs", "yes", 2, ""),
        ("item_4", "Eyeglasses", "no", 3, ""),
        ("item_5", "Eyeglasses", "yes", 4, ""),
    ]
    return _write_rows(tmp_path / "key.csv", labelling.KEY_COLUMNS, rows)


def test_scorer_is_exact_on_a_known_answer_file(key_file, tmp_path):
    alice = _write_rows(
        tmp_path / "alice.csv",
        labelling.ANSWER_COLUMNS,
        [
            ("item_1", "Bangs", "yes", "alice"),  # right
            ("item_2", "Bangs", "yes", "alice"),  # wrong
            ("item_3", "Bangs", "unsure", "alice"),
            ("item_4", "Eyeglasses", "no", "alice"),  # right
            ("item_5", "Eyeglasses", "", "alice"),  # blank
        ],
    )
    bob = _write_rows(tmp_path / "bob.csv", labelling.ANSWER_COLUMNS, [("item_5", "Eyeglasses", "yes", "bob")])
    scores = labelling.score_answers([alice], key_file)
    bangs, glasses = scores["attributes"]["Bangs"], scores["attributes"]["Eyeglasses"]
    assert bangs == {
        "items": 3,
        "correct": 1,
        "yes_or_no": 2,
        "unsure": 1,
        "blank": 0,
        "accuracy": 1 / 3,
        "accuracy_of_yes_or_no": 0.5,
    }
    assert glasses["accuracy"] == 0.5 and glasses["blank"] == 1 and glasses["accuracy_of_yes_or_no"] == 1.0
    assert scores["overall"]["accuracy"] == 2 / 5
    # Two labellers pool: 10 answers to score, 3 right (bob answered one item, rightly).
    pooled = labelling.score_answers([alice, bob], key_file)
    assert pooled["overall"]["items"] == 10 and pooled["overall"]["correct"] == 3
    assert pooled["labellers"]["bob"]["Eyeglasses"]["accuracy"] == 0.5
    assert "Bangs" in labelling.format_scores(pooled)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("item_9", "Bangs", "yes", "x")], "'item_9' is not an item"),
        ([("item_1", "Eyeglasses", "yes", "x")], "item_1 asks about Bangs"),
        ([("item_1", "Bangs", "maybe", "x")], "answer 'maybe'"),
        ([("item_1", "Bangs", "yes", "x"), ("item_1", "Bangs", "no", "x")], "item_1 is answered twice"),
    ],
)
def test_scorer_refuses_bad_answer_files(key_file, tmp_path, rows, message):
    path = _write_rows(tmp_path / "a.csv", labelling.ANSWER_COLUMNS, rows)
    with pytest.raises(DapterError, match=message):
        labelling.score_answers([path], key_file)
    wrong = _write_rows(tmp_path / "b.csv", ("item", "answer"), [("item_1", "yes")])
    with pytest.raises(DapterError, match="no column\\(s\\) attribute, labeller"):
        labelling.score_answers([wrong], key_file)


# --- Binaries ---------------------------------------------------------------------------------------


def test_score_labelling_binary(key_file, tmp_path):
    answers = _write_rows(tmp_path / "a.csv", labelling.ANSWER_COLUMNS, [("item_1", "Bangs", "yes", "ann")])
    out = tmp_path / "scores.json"
    proc = run_binary("experiments.score_labelling", f"--key={key_file}", f"--answers={answers}", f"--output={out}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["overall"]["correct"] == 1
    assert "Bangs" in proc.stdout
    proc = run_binary("experiments.score_labelling", f"--key={tmp_path / 'none.csv'}", f"--answers={answers}")
    assert_one_error_line(proc, "an answer key not found")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attacks=mind_reading"], "--attacks takes some of"),
        (["--pretrained=label"], "--pretrained takes name=value items"),
        (["--attacks=visual_recognition"], "asks yes/no questions: 'label' has 10 classes"),
        (["--recon_filters=a,b,c"], "--recon_filters must be integers"),
        (["--attack_labels=nope"], "has no label 'nope'"),
    ],
)
def test_attack_binary_bad_flags(cifar_input, tmp_path, args, message):
    workdir = tmp_path / "wd"
    proc = run_binary(
        "experiments.attack",
        "--dataset=cifar2_10",
        f"--converter={cifar_input.converter_path}",
        f"--target={cifar_input.target_path}",
        f"--workdir={workdir}",
        *args,
    )
    assert_one_error_line(proc, message)
    assert not workdir.exists()


def test_attack_binary_runs_on_the_embedded_sample(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    tf.keras.utils.set_random_seed(0)
    targets.build_target("lenet", (32, 32, 3), 2).save(folder / "target.keras")
    models.build_converter((4, 8, 8)).save(folder / "converter.keras")
    workdir = tmp_path / "wd"
    proc = run_binary(
        "experiments.attack",
        "--dataset=cifar2_10",
        "--max_train=128",
        "--max_test=64",
        f"--converter={folder / 'converter.keras'}",
        f"--target={folder / 'target.keras'}",
        "--attack_model=lenet",
        "--pretrain_epochs=1",
        "--finetune_epochs=1",
        "--attack_batch_size=64",
        "--recon_epochs=1",
        f"--workdir={workdir}",
    )
    assert proc.returncode == 0, proc.stderr
    found = attacks.AttackResults.load(str(workdir / attacks.RESULTS_FILE))
    assert [r.attack_type for r in found.results] == ["auto_recognition", "reconstruction"]
    assert found.results[0].images_train == 128 and found.results[1].images_test == 64
    assert "reconstruction: SSIM" in (workdir / "summary.txt").read_text()


@pytest.mark.parametrize(
    "module, flags",
    [
        (
            "experiments.attack",
            [
                "--attacks",
                "--converter",
                "--target",
                "--attack_labels",
                "--pretrained",
                "--pretrain_epochs",
                "--finetune_epochs",
                "--l2",
                "--attack_images",
                "--recon_epochs",
                "--recon_train_images",
                "--visual_labels",
                "--per_class",
                "--workdir",
                "--dataset",
                "--source",
            ],
        ),
        ("experiments.reconstruction_sweep", ["--sweep_dir", "--also", "--name", "--recon_epochs", "--workdir"]),
        ("experiments.score_labelling", ["--key", "--answers", "--output"]),
    ],
)
def test_attack_binaries_explain_their_flags(module, flags):
    proc = run_binary(module, "--helpshort")  # absl exits 1 after help.
    for flag in flags:
        assert f"  {flag}:" in proc.stdout, flag

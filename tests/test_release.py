"""The release bundle: files and hashes, the model card's claims, and verify failing on any change."""

import json
import re
import shutil

import keras
import numpy as np
import pytest
from conftest import (
    BUNDLE_FILES,
    assert_one_error_line,
    run_binary,
    spread_converter,
)

from dapter_tf import DapterError, evaluate, metrics, models
from dapter_tf.models import build_converter
from dapter_tf.records.files import sha256
from export.release import release_lib
from export.release.card import ReleaseInfo, parse_card_task
from export.release.claims import Claim, accuracy_confidence, format_value, images_needed, parse_claims
from export.tflite import export_tflite_lib


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_target_path, embedded):
    """A train_dapter-like workdir (converter.keras, config.json) with an export/ of two gated files."""
    root = tmp_path_factory.mktemp("workdir")
    converter = spread_converter(10.0, seed=1)  # Outputs spread over the grid, like a trained converter's.
    converter.save(root / "converter.keras")
    (root / "config.json").write_text(json.dumps({"lambda_": 0.9, "target_path": tiny_target_path}))
    train_set, test_set = embedded
    export_tflite_lib.export_converter(
        converter,
        models.load_target(tiny_target_path),
        str(root / "export"),
        train_set.images,
        test_set.images[:200],
        test_set.labels["label"][:200],
        calibration_steps=8,
        modes=("float32", "int8"),
    )
    return root


def _info():
    return ReleaseInfo(
        name="test-release",
        task="cifar10",
        target_label="label",
        target_name="resnet18 w4",
        lambda_=0.9,
        data="cifar10 (embedded)",
        image_size=(32, 32),
        attacks="attacks on x: ratio 13.4x",
    )


@pytest.fixture(scope="module")
def bundle(workdir, tmp_path_factory, tiny_target_path, embedded):
    path = tmp_path_factory.mktemp("release") / "bundle"
    test_set = embedded[1]
    release_lib.build_bundle(
        str(workdir / "converter.keras"),
        str(workdir / "export"),
        str(path),
        _info(),
        test_set.images[:200],
        test_set.labels["label"][:200],
        models.load_target(tiny_target_path),
        tiny_target_path,
    )
    return path


@pytest.fixture(scope="module")
def verifier_images(embedded):
    """The verifier's own held-out images: others than the release measured on."""
    return embedded[1].images[200:400], embedded[1].labels["label"][200:400]


def _failed(findings):
    return sorted(f.subject for f in findings if not f.ok)


def test_fresh_bundle_verifies(bundle, verifier_images, embedded, tiny_target_path):
    images, labels = verifier_images
    # With the target, the float32 file's 0.5-point claim needs 400 images (200 / 0.5): the 400
    # after the first 100 of the embedded sample's 500 (100 of them the release's too).
    findings = release_lib.verify_bundle(
        str(bundle), embedded[1].images[100:], embedded[1].labels["label"][100:], models.load_target(tiny_target_path)
    )
    assert _failed(findings) == [], [f for f in findings if not f.ok]
    checked = {f.subject for f in findings}
    assert BUNDLE_FILES - {"manifest.json"} <= checked
    assert {
        "entropy_converted",
        "bandwidth_saving",
        "accuracy_drop_points",
        "converter_int8.tflite:mean_pixel_diff",
    } <= checked
    # Each accuracy claim states its noise: the drop's paired standard error and 95 % interval.
    for f in findings:
        if f.subject.endswith(("accuracy_drop_points", "accuracy_drop_vs_keras")):
            assert re.search(r"the drop is -?\d+\.\d\d ± \d+\.\d\d points on 400 images \(95 % interval", f.detail), f
            assert "at 95 % confidence" in f.detail, f
    # Without a target the accuracy claims are skipped, said so, and the rest still hold.
    without = release_lib.verify_bundle(str(bundle), images)
    skipped = [f for f in without if "skipped" in f.detail]
    assert {f.subject for f in skipped} == {
        "accuracy_drop_points",
        "converter_float32.tflite:accuracy_drop_vs_keras",
        "converter_int8.tflite:accuracy_drop_vs_keras",
    }
    assert _failed(without) == []


def test_bundle_holds_exactly_its_files_and_never_the_target(bundle, tiny_target_path):
    assert {p.name for p in bundle.iterdir()} == BUNDLE_FILES
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["files"]) == BUNDLE_FILES - {"manifest.json"}
    assert sha256(tiny_target_path) not in {e["sha256"] for e in manifest["files"].values()}
    # The bundled .keras is the converter alone: no weight of it is a weight of the target.
    converter = keras.models.load_model(bundle / "converter.keras", compile=False)
    target = models.load_target(tiny_target_path)
    target_weights = [w.tobytes() for w in target.get_weights()]
    assert converter.count_params() == build_converter().count_params()
    assert not any(w.tobytes() in target_weights for w in converter.get_weights() if w.size > 8)
    card = (bundle / "model_card.md").read_text()
    assert "kept by the provider, not released" in card and "ratio 13.4x" in card


@pytest.mark.parametrize("name", sorted(BUNDLE_FILES - {"manifest.json"}))
def test_one_flipped_byte_in_any_file_fails_naming_it(bundle, verifier_images, tmp_path, name):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    findings = release_lib.verify_bundle(str(copy), *verifier_images)
    assert name in _failed(findings)
    assert "is not the manifest's" in next(f.detail for f in findings if f.subject == name)


def test_a_changed_manifest_or_an_extra_file_fails(bundle, verifier_images, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    digest = manifest["files"]["converter_int8.tflite"]["sha256"]
    manifest["files"]["converter_int8.tflite"]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "extra.tflite").write_bytes(b"x")
    assert _failed(release_lib.verify_bundle(str(copy), *verifier_images)) == ["converter_int8.tflite", "extra.tflite"]


@pytest.mark.parametrize(
    "claim, false_value",
    [
        ("entropy_converted", "1.5"),
        ("bandwidth_saving", "9.0"),
        ("converter_int8.tflite:mean_pixel_diff", "0.01"),
        ("converter_parameters", "116284"),
        ("output_step", "8"),
    ],
)
def test_a_false_claim_fails_naming_it_even_with_the_manifest_rehashed(
    bundle, verifier_images, tmp_path, claim, false_value
):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    card = (copy / "model_card.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith(f"| `{claim}` |"))
    cells = row.split(" | ")
    cells[2] = false_value
    (copy / "model_card.md").write_text(card.replace(row, " | ".join(cells)))
    # The card no longer matches its hash ...
    assert _failed(release_lib.verify_bundle(str(copy), *verifier_images)) == sorted(["model_card.md", claim])
    # ... and a forger who rewrites the manifest is still caught by the re-measurement.
    release_lib.write_manifest(str(copy))
    findings = release_lib.verify_bundle(str(copy), *verifier_images)
    assert _failed(findings) == [claim]
    assert "does not hold" in next(f.detail for f in findings if f.subject == claim)


def test_a_bundle_whose_converter_diverged_fails_verification_even_rehashed(bundle, verifier_images, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    converter = keras.models.load_model(copy / "converter.keras", compile=False)
    kernel, bias = converter.get_layer("conv8_out").get_weights()
    converter.get_layer("conv8_out").set_weights([kernel * np.nan, bias])
    converter.save(copy / "converter.keras")
    release_lib.write_manifest(str(copy))
    findings = release_lib.verify_bundle(str(copy), *verifier_images)
    assert _failed(findings) == ["converter.keras"]
    assert "holds non-finite weights (its training diverged)" in findings[-1].detail


def test_claims_round_trip_through_the_card(bundle):
    claims = parse_claims((bundle / "model_card.md").read_text())
    names = [c.name for c in claims]
    assert names[:6] == [
        "converter_parameters",
        "output_step",
        "pixels_off_grid",
        "entropy_converted",
        "entropy_ratio",
        "bandwidth_saving",
    ]
    by_name = {c.name: c for c in claims}
    assert by_name["converter_int8.tflite:max_pixel_diff"] == Claim(
        "converter_int8.tflite:max_pixel_diff", "largest abs(TFLite - Keras) pixel difference, levels", 32, "at_most"
    )
    assert by_name["bandwidth_saving"].relation == "within%" and by_name["bandwidth_saving"].tolerance == 10


def test_the_card_gives_each_accuracy_change_with_its_noise(bundle, embedded, tiny_target_path):
    # The release measured 200 images: the accuracy lost, and each file's drop against Keras, come
    # with their paired standard errors, as metrics.paired_drop_interval computes them.
    card = (bundle / "model_card.md").read_text()
    target = models.load_target(tiny_target_path)
    images, labels = embedded[1].images[:200], embedded[1].labels["label"][:200]
    converter = keras.models.load_model(bundle / "converter.keras", safe_mode=True)
    right = np.argmax(evaluate.target_logits(target, images), -1) == labels
    sent = evaluate.convert_images(converter, images)
    converted = np.argmax(evaluate.target_logits(target, sent), -1) == labels
    drop = metrics.paired_drop_interval(right, converted)
    assert (
        "| target accuracy lost by converting (points, ± paired standard error) | "
        f"{drop['drop_points']:.2f} ± {drop['error_points']:.2f} |"
    ) in card
    assert re.search(r"^\| `converter_int8.tflite` \|.* \| [+-]\d+\.\d\d ± \d+\.\d\d \|$", card, re.M), card


def test_claim_relations_by_hand():
    within = Claim("e", "", 6.4, "within", 0.25)
    assert within.holds(6.6) and within.holds(6.15) and not within.holds(6.7) and within.holds_if() == "within ±0.25"
    relative = Claim("b", "", 2.0, "within%", 10)
    assert relative.holds(2.19) and not relative.holds(2.21) and relative.holds_if() == "within ±10%"
    at_most = Claim("a", "", 6.1, "at_most", 2)
    assert at_most.holds(8.1) and not at_most.holds(8.2) and at_most.holds(-3) and at_most.holds_if() == "at most +2"
    exactly = Claim("p", "", 16, "exactly")
    assert exactly.holds(16) and not exactly.holds(16.5)
    # A count over a million is written whole, so that it reads back as itself (it once read 1.23789e+06).
    params = Claim("converter_parameters", "parameters", 1_237_891, "exactly")
    row = f"| `{params.name}` | parameters | {format_value(params.value)} | {params.holds_if()} |"
    assert row == "| `converter_parameters` | parameters | 1237891 | exactly |"
    assert parse_claims(f"## Claims\n{row}\n") == [params]
    assert (format_value(0.1274), format_value(2.5)) == ("0.1274", "2.5")
    line = "| `e` | mean entropy | 6.4 | within ±0.25 |"
    assert parse_claims(
        f"## Claims\n\n| claim | what | value | holds if |\n|---|---|---|---|\n{line}\n"
    ) == [Claim("e", "mean entropy", 6.4, "within", 0.25)]
    with pytest.raises(DapterError, match="claim e has an unknown relation 'roughly'"):
        parse_claims("## Claims\n| `e` | x | 6.4 | roughly |\n")
    with pytest.raises(DapterError, match="claim e has no number as its value: 'high'"):
        parse_claims("## Claims\n| `e` | x | high | exactly |\n")
    with pytest.raises(DapterError, match="has no '## Claims' section"):
        parse_claims("# card\n")


def test_verify_refuses_too_few_images_saying_how_many_the_claims_need(bundle, verifier_images, tiny_target_path):
    # Issue 30 (4): one held-out image "verified" 24 checks. The bundle's claims need 100 images
    # without a target (MIN_IMAGES) and 400 with it: the float32 file's drop bound is 0.5 points,
    # and two standard errors of one flipped prediction, 2 x 100 / n points, fit within it from n = 400.
    claims = parse_claims((bundle / "model_card.md").read_text())
    assert images_needed(claims, with_target=False)[0] == 100
    assert images_needed(claims, with_target=True) == (
        400,
        "converter_float32.tflite:accuracy_drop_vs_keras allows 0.5 points, and two standard errors of one "
        "flipped prediction, 2 x 100 / n points, must fit within it",
    )
    images, labels = verifier_images
    with pytest.raises(DapterError) as refused:
        release_lib.verify_bundle(str(bundle), images[:1])
    assert str(refused.value) == (
        "verifying this card's claims needs at least 100 held-out images, got 1 (the card's means of entropy, "
        "PNG bytes and pixel differences are not measured on fewer): give more test images (--max_test=0 takes all)"
    )
    target = models.load_target(tiny_target_path)
    with pytest.raises(DapterError, match=r"needs at least 400 held-out images, got 200 \(converter_float32"):
        release_lib.verify_bundle(str(bundle), images, labels, target)
    with pytest.raises(DapterError, match=r"got 399 .* \(--max_test=0 takes all\) or leave out --target$"):
        release_lib.check_verifier_images(str(bundle), 399, with_target=True)
    release_lib.check_verifier_images(str(bundle), 400, with_target=True)  # Enough: passes.


def test_accuracy_confidence_by_hand():
    # Limit 2.3 points (a card's 0.3 + its 2-point tolerance); the interval is drop ± 1.96 errors.
    assert accuracy_confidence(2.3, 1.0, 0.5, 400) == (
        "the drop is 1.00 ± 0.50 points on 400 images (95 % interval 0.02 to 1.98): at most 2.3 at 95 % confidence"
    )
    assert accuracy_confidence(2.3, 3.0, 0.3, 400).endswith(
        "(95 % interval 2.41 to 3.59): more than 2.3 at 95 % confidence"
    )
    # [-0.96, 2.96] spans 2.3; the error falls as 1 / sqrt(n): 400 * (1.96 * 1.0 / 1.3)^2 = 909.2 images.
    assert accuracy_confidence(2.3, 1.0, 1.0, 400).endswith(
        "(95 % interval -0.96 to 2.96): undecided against 2.3 at 95 % confidence; about 910 images would decide it"
    )


def test_release_refuses_broken_files_a_used_folder_and_the_target(workdir, tmp_path, tiny_target_path, embedded):
    images, labels = embedded[1].images[:50], embedded[1].labels["label"][:50]
    target = models.load_target(tiny_target_path)
    args = (_info(), images, labels, target, tiny_target_path)
    broken = tmp_path / "broken_export"
    shutil.copytree(workdir / "export", broken)
    recorded = json.loads((broken / "export.json").read_text())
    recorded["files"]["int8"]["failures"] = ["mean pixel diff 3.000 > 1"]
    (broken / "export.json").write_text(json.dumps(recorded))
    with pytest.raises(DapterError, match="refusing to release files that broke their parity gate: int8"):
        release_lib.build_bundle(str(workdir / "converter.keras"), str(broken), str(tmp_path / "a"), *args)
    # A file that is not the one its gate passed (replaced after export) is refused.
    swapped = tmp_path / "swapped_export"
    shutil.copytree(workdir / "export", swapped)
    (swapped / "converter_int8.tflite").write_bytes((swapped / "converter_float32.tflite").read_bytes())
    with pytest.raises(
        DapterError, match=r"converter_int8.tflite is not the file its parity gate passed \(its SHA-256"
    ):
        release_lib.build_bundle(str(workdir / "converter.keras"), str(swapped), str(tmp_path / "c"), *args)
    assert not (tmp_path / "c").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.txt").write_text("x")
    with pytest.raises(DapterError, match="is not empty"):
        release_lib.build_bundle(
            str(workdir / "converter.keras"), str(workdir / "export"), str(tmp_path / "used"), *args
        )
    # A "converter" that is the target itself never gets out.
    with pytest.raises(DapterError, match="the bundle would hold the target model"):
        release_lib.build_bundle(tiny_target_path, str(workdir / "export"), str(tmp_path / "b"), *args)
    assert not (tmp_path / "b").exists()


def test_a_failed_export_at_another_size_leaves_the_shipped_files_byte_identical(workdir):
    # Issue 17's first case: --image_size=224 on a 32x32 converter and target. Refused in one line,
    # before any file is written; release still bundles the files the gate passed.
    export_dir = workdir / "export"
    before = {p.name: p.read_bytes() for p in export_dir.iterdir() if p.is_file()}
    proc = run_binary(
        "export.tflite.export_tflite", f"--workdir={workdir}", "--image_size=224", "--max_train=8", "--max_test=8"
    )
    assert_one_error_line(proc, "takes 32x32 images and the export data are 224x224: export at 32x32")
    assert {p.name: p.read_bytes() for p in export_dir.iterdir() if p.is_file()} == before


def test_release_and_verify_binaries(workdir, tmp_path, tiny_target_path):
    out = tmp_path / "bundle"
    proc = run_binary(
        "export.release.release", f"--workdir={workdir}", f"--output_dir={out}", "--max_test=100", "--name=demo-release"
    )
    assert proc.returncode == 0, proc.stderr
    assert "converter_int8.tflite" in proc.stdout and (out / "manifest.json").is_file()
    assert "# Model card: demo-release" in (out / "model_card.md").read_text()
    assert "**On phones, ship `converter_int8.tflite`**" in (out / "model_card.md").read_text()
    # This workdir's config.json records no training: the card states none rather than a wrong one.
    assert "- Converter:" not in (out / "model_card.md").read_text()
    # Its cost at 224x224 beside MobileNetV2 1.0 int8, and the Pixel 3 latency that implies, as an estimate.
    card = (out / "model_card.md").read_text()
    cost = card.split("## Cost on phones (an estimate, not a claim)\n\n")[1].split("\n")[0]
    ratio = float(re.search(r"took \*\*([0-9.]+)x\*\* MobileNetV2", cost).group(1))
    estimate = float(re.search(r"Pixel 3 .* about \*\*([0-9.]+) ms\*\*", cost).group(1))
    assert estimate == pytest.approx(12.0 * ratio, abs=0.12)  # The card rounds both.
    # The fixture's converter is the Fig. 3 converter: 1.138 GMAC at 224x224 (results/export).
    assert cost.startswith("At 224x224 the converter computes 1.138 GMAC") and "hosted models page" in cost
    verify = run_binary(
        "export.release.verify", f"--bundle={out}", "--max_test=400", "--seed=1", f"--target={tiny_target_path}"
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verified:" in verify.stdout and "FAIL" not in verify.stdout
    data = bytearray((out / "converter_float32.tflite").read_bytes())
    data[100] ^= 0xFF
    (out / "converter_float32.tflite").write_bytes(bytes(data))
    failed = run_binary("export.release.verify", f"--bundle={out}", "--max_test=100")
    assert failed.returncode == 1
    assert "FAIL converter_float32.tflite: SHA-256" in failed.stdout
    assert (
        failed.stderr.strip().splitlines()[-1].startswith("error: the bundle does not hold: converter_float32.tflite")
    )


def test_verify_binary_refuses_three_images_in_one_line(bundle, tiny_target_path):
    proc = run_binary("export.release.verify", f"--bundle={bundle}", "--max_test=3", f"--target={tiny_target_path}")
    assert_one_error_line(
        proc,
        "verifying this card's claims needs at least 400 held-out images, got 3 (converter_float32.tflite:"
        "accuracy_drop_vs_keras allows 0.5 points",
    )
    assert "ok " not in proc.stdout  # Nothing was checked.


def test_check_verifier_data_by_hand(bundle):
    release_lib.check_verifier_data(str(bundle), "cifar10", "label", (32, 32))  # The bundle's own: passes.
    with pytest.raises(DapterError, match="target label gender, the bundle's is label"):
        release_lib.check_verifier_data(str(bundle), "cifar10", "gender", (32, 32))
    with pytest.raises(DapterError, match="images 224x224, the bundle's are 32x32"):
        release_lib.check_verifier_data(str(bundle), "cifar10", "label", (224, 224))
    assert parse_card_task((bundle / "model_card.md").read_text()) == ("cifar10", "label", (32, 32))
    with pytest.raises(DapterError, match="states no task and image size"):
        parse_card_task("# card\n")


def _identity_like_converter():
    """A converter of Fig. 3 wired to pass the image through: conv1-3 copy RGB, conv8 sends sigmoid(6x - 3).

    What a provider might ship by mistake (or on purpose): every pixel survives, contrast-stretched
    and snapped to the output grid, so any decoder (or a look at the image) restores the photo.
    """
    converter = build_converter()
    for name in ("conv1", "conv2", "conv3", "conv4_down", "conv5_down", "conv6_up", "conv7_up", "conv8_out"):
        layer = converter.get_layer(name)
        kernel, bias = (np.zeros_like(w) for w in layer.get_weights())
        if name in ("conv1", "conv2", "conv3"):
            for c in range(3):
                kernel[1, 1, c, c] = 1.0
        if name == "conv8_out":
            for c in range(3):
                kernel[1, 1, c, c] = 6.0  # From the copy connection's first three channels.
            bias[:] = -3.0
        layer.set_weights([kernel, bias])
    return converter


def _suite_claiming(ssim: float):
    """An attack suite's results, built by hand, that claim a reconstruction SSIM of ``ssim``."""
    from dapter_tf.attacks import ReconstructionResult, SecurityCriteria, SuiteResults

    result = ReconstructionResult(ssim, 13.0, ssim - 0.01, 12.5, 1000, 500, 20, "grid.png", 0.9, 0.12, 12.1, "unet", 1)
    return SuiteResults(
        "cifar10", "c.keras", "t.keras", 1000, 500, 0.5, 0.49, 1.0, 0.5, 21.0, 3.0, (result,), (), SecurityCriteria()
    )


@pytest.fixture(scope="module")
def identity_bundle(tmp_path_factory, tiny_target_path, embedded):
    """A release of an identity-like converter whose card claims a reconstruction SSIM of 0.15: a false claim."""
    root = tmp_path_factory.mktemp("identity")
    converter = _identity_like_converter()
    converter.save(root / "converter.keras")
    train_set, test_set = embedded
    target = models.load_target(tiny_target_path)
    images, labels = test_set.images[:100], test_set.labels["label"][:100]
    export_tflite_lib.export_converter(converter, target, str(root / "export"), train_set.images, images, labels,
                                       modes=("float32",))  # fmt: skip
    bundle = root / "bundle"
    release_lib.build_bundle(
        str(root / "converter.keras"), str(root / "export"), str(bundle), _info(), images, labels, target,
        tiny_target_path, suite=_suite_claiming(0.15),
    )  # fmt: skip
    return bundle


def test_card_states_the_suites_figures_as_claims(identity_bundle):
    card = (identity_bundle / "model_card.md").read_text()
    assert "## Attack suite (the security index)" in card
    claims = {c.name: c for c in parse_claims(card)}
    assert claims["attack_max_ssim"].value == 0.15 and claims["attack_max_ssim"].holds_if() == "at most +0.05"


def test_verify_attacks_fails_an_identity_like_converter_naming_the_claim(identity_bundle):
    # Without --attacks the claim cannot be re-measured: skipped, said so, not counted as checked.
    plain = run_binary("export.release.verify", f"--bundle={identity_bundle}", "--max_test=100")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "skip attack_max_ssim: skipped: needs a reconstruction attack (--attacks)" in plain.stdout
    attacked = run_binary(
        "export.release.verify",
        f"--bundle={identity_bundle}",
        "--attacks",
        "--attack_seconds=20",
        "--attack_architecture=symmetric",
        "--max_train=500",
        "--max_test=100",
    )
    assert attacked.returncode == 1
    line = next(x for x in attacked.stdout.splitlines() if x.startswith("FAIL attack_max_ssim"))
    assert "card 0.15 (at most +0.05)" in line and "does not hold" in line
    assert attacked.stderr.strip().splitlines()[-1] == "error: the bundle does not hold: attack_max_ssim"


def test_verify_attacks_needs_an_attack_claim_and_a_positive_time(bundle):
    proc = run_binary("export.release.verify", f"--bundle={bundle}", "--attacks", "--max_train=100", "--max_test=100")
    assert proc.returncode == 1 and "error: --attacks: the card makes no attack_max_ssim claim" in proc.stderr
    proc = run_binary("export.release.verify", f"--bundle={bundle}", "--attacks", "--attack_seconds=0")
    assert proc.returncode == 1 and "--attack_seconds must be > 0" in proc.stderr


def test_the_card_describes_a_coarse_code_its_task_head_and_its_code_margin():
    from export.release.release import _describe_converter

    assert _describe_converter({"filters": [24, 48, 96], "epochs": 1}) == "the Fig. 3 converter (24/48/96 channels); 1 epoch"
    config = {"architecture": "block_encoder", "filters": [48, 96, 192], "output_block": 32, "epochs": 3, "code_margin": 0.3}
    assert _describe_converter(config) == (
        "the block encoder (48/96/192 channels), one colour per 32x32 block; 3 epochs of fine-tuning on "
        "L_dap + 0.3 L_margin from an earlier training, so that its int8 file rounds each colour as the Keras converter does"
    )
    config = {"architecture": "block_encoder", "filters": [16, 32, 64], "output_block": 8, "epochs": 10, "task_head": 10.0}
    assert _describe_converter(config) == (
        "the block encoder (16/32/64 channels), one colour per 8x8 block; 10 epochs with L_head at weight 10 "
        "(a linear head on its mean features, dropped after training)"
    )
    split = {"architecture": "fig3_split", "filters": [48, 96, 192], "epochs": 10}
    assert _describe_converter(split) == (
        "the Fig. 3 converter split between full resolution and 4x4 pixel patches (48/96/192 channels); 10 epochs"
    )
    assert _describe_converter({"architecture": "fig3_patches", "filters": [48, 96, 192], "epochs": 1, "patch": 2}) == (
        "the Fig. 3 converter on 2x2 pixel patches (48/96/192 channels); 1 epoch"
    )
    config = {**config, "validation_images": 1000}
    assert _describe_converter(config).endswith(
        "dropped after training); the best epoch kept, on 1,000 training photos held out of its training"
    )

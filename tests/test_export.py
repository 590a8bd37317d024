"""TFLite export: every quantization mode run by ai_edge_litert and gated on parity with Keras."""

import hashlib
import json

import keras
import numpy as np
import pytest
from conftest import spread_converter

from dapter_tf import DapterError, evaluate, metrics, models
from dapter_tf.models import build_converter, snap_to_levels, strip_output_levels
from export.tflite import export_tflite_lib
from export.tflite.contract import CONTRACT_FORMAT, decode_output, output_contract, read_contract, with_contract
from export.tflite.interpreter import run_tflite
from export.tflite.modes import FULL_INTEGER_MODES, MODES
from export.tflite.parity import DEFAULT_TOLERANCES, ParityError, Tolerance, parity_failures
from export.tflite.subpixel import phase_kernels, subpixel_upsampling


@pytest.fixture(scope="module")
def converter():
    keras.utils.set_random_seed(0)
    # Default width: the size ratio below is about the shipped model. The plain sigmoid output
    # (step 1) makes every pixel level count in the parity checks; the stepped output is tested below.
    return build_converter(output_step=1)


def _on_grid(pixels, step):
    return ((pixels.astype(int) - 128) % step == 0) | (pixels == 255)


def test_stepped_output_survives_export_on_its_grid(embedded):
    stepped = spread_converter(60.0, output_step=16)  # Outputs over the whole range.
    images = embedded[1].images[:20]
    keras_pixels = evaluate.convert_images(stepped, images)
    assert _on_grid(keras_pixels, 16).all() and len(np.unique(keras_pixels)) >= 10
    lite = run_tflite(export_tflite_lib.convert_to_tflite(stepped, "float32", (32, 32)), images)
    assert _on_grid(lite, 16).all()
    assert (lite != keras_pixels).mean() < 0.001  # Only pixels on a rounding boundary may differ.
    # int8 files end at the sigmoid and the grid is applied to their bytes.
    int8 = export_tflite_lib.convert_to_tflite(stepped, "int8", (32, 32), embedded[0].images[:50])
    lite8 = run_tflite(int8, images, output_step=16)
    assert _on_grid(lite8, 16).all()
    assert (lite8 != keras_pixels).mean() < 0.1  # Quantisation error moves a few pixels across a boundary.


def test_snap_to_levels_by_hand():
    # Ties (120, 136: half a step from a level) go away from 128.
    pixels = np.array([0, 7, 119, 120, 127, 128, 135, 136, 137, 250, 255], np.uint8)
    np.testing.assert_array_equal(snap_to_levels(pixels, 16), [0, 0, 112, 112, 128, 128, 128, 144, 144, 255, 255])
    np.testing.assert_array_equal(snap_to_levels(pixels, 1), pixels)


@pytest.fixture(scope="module")
def exported(converter, embedded, tiny_target_path, tmp_path_factory):
    train_set, test_set = embedded
    target = models.load_target(tiny_target_path)
    out = tmp_path_factory.mktemp("export")
    result = export_tflite_lib.export_converter(
        converter,
        target,
        str(out),
        train_set.images,
        test_set.images[:100],
        test_set.labels["label"][:100],
        calibration_steps=5,
        # Step 1 makes every level count: int8 noise moves this untrained converter's near-flat
        # outputs' entropy past the default gate (set for the default grid); the figures are tested here.
        force=True,
    )
    return result


def test_float32_file_matches_keras_to_one_pixel_level(exported):
    f = exported["files"]["float32"]
    # Float TFLite and Keras differ by rounding only: at most one uint8 level after to_uint8.
    assert f["max_pixel_diff"] <= 1 and f["mean_pixel_diff"] < 0.01
    assert f["accuracy_tflite"] == pytest.approx(f["accuracy_keras"], abs=0.011)
    assert f["failures"] == [] and f["tolerance"]["mean_pixel_diff"] == DEFAULT_TOLERANCES["float32"].mean_pixel_diff


def test_int8_file_matches_keras_within_quantization_error(exported):
    f = exported["files"]["int8"]
    assert f["mean_pixel_diff"] < 2.0 and f["max_pixel_diff"] <= 16


def test_files_keep_their_weights_and_int8_is_over_three_times_smaller(exported, converter):
    weight_bytes = 4 * converter.count_params()
    float_size, int8_size = exported["files"]["float32"]["bytes"], exported["files"]["int8"]["bytes"]
    # A file that dropped its weights would be a few KB (../shared/DESIGN.md).
    assert weight_bytes <= float_size < weight_bytes + 50_000
    assert exported["size_ratio_float32_to_int8"] >= 3.0
    assert int8_size < weight_bytes / 4 + 50_000


def test_int8_file_takes_and_gives_uint8_pixels(exported):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=exported["files"]["int8"]["path"])
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    assert list(inp["shape"]) == [1, 32, 32, 3]
    scale, zero_point = inp["quantization"]
    assert scale == pytest.approx(1 / 255) and zero_point == 0  # Pixel bytes go in unchanged.


def test_export_at_another_image_size(converter, embedded):
    images = np.repeat(np.repeat(embedded[1].images[:4], 2, axis=1), 2, axis=2)  # 64x64 real images.
    model_bytes = export_tflite_lib.convert_to_tflite(converter, "float32", (64, 64))
    lite = run_tflite(model_bytes, images)
    diff = np.abs(lite.astype(int) - evaluate.convert_images(converter, images).astype(int))
    assert lite.shape == (4, 64, 64, 3) and diff.max() <= 1


def test_unknown_mode_and_missing_calibration(converter):
    with pytest.raises(ValueError, match="unknown quantization mode 'int4'; choose from: float32, float16, "):
        export_tflite_lib.convert_to_tflite(converter, "int4", (32, 32))
    for mode in FULL_INTEGER_MODES:
        with pytest.raises(ValueError, match="full-int8 quantization needs real calibration images"):
            export_tflite_lib.convert_to_tflite(converter, mode, (32, 32))
    with pytest.raises(
        ValueError, match=r"calibration images must be uint8 N x 32 x 32 x 3, got float32 \(2, 32, 32, 3\)"
    ):
        export_tflite_lib.convert_to_tflite(converter, "int8", (32, 32), np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="unknown quantization mode 'fp8'"):
        export_tflite_lib.convert_keras_model(converter, "fp8")


@pytest.fixture(scope="module", name="spread_converter")
def spread_converter_fixture():
    """A Fig. 3 converter whose untrained outputs spread over the grid, so parity is not trivial.

    Scaled so its converted images carry about 5 bits of entropy on 12 grid levels and its int8
    file differs from Keras by 0.44 levels on average, like a trained converter (6.4 bits, 0.39).
    """
    return spread_converter(10.0, seed=1)


@pytest.fixture(scope="module")
def every_mode(spread_converter, embedded, tiny_target_path, tmp_path_factory):
    train_set, test_set = embedded
    out = tmp_path_factory.mktemp("every_mode")
    return export_tflite_lib.export_converter(
        spread_converter,
        models.load_target(tiny_target_path),
        str(out),
        train_set.images,
        test_set.images[:200],
        test_set.labels["label"][:200],
        calibration_steps=8,
        modes=MODES,
    )


# (input dtype, output dtype, bytes per weight) of each mode's file.
_EXPECTED = {
    "float32": (np.float32, np.float32, 4),
    "float16": (np.float32, np.float32, 2),
    "dynamic_range": (np.float32, np.float32, 1),
    "int8": (np.uint8, np.uint8, 1),
    "int8_int8_io": (np.int8, np.int8, 1),
    "int8_float_io": (np.float32, np.float32, 1),
}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_the_expected_size_runs_and_matches_keras(mode, every_mode, spread_converter, embedded):
    from ai_edge_litert.interpreter import Interpreter

    entry = every_mode["files"][mode]
    in_dtype, out_dtype, weight_bytes = _EXPECTED[mode]
    # The weights are all there, at the mode's width (a file that dropped them is a few KB), plus
    # per-channel scales and the graph (under 40 KB).
    weights = spread_converter.count_params() * weight_bytes
    assert weights <= entry["bytes"] < weights + 40_000, (entry["bytes"], weights)
    interpreter = Interpreter(model_path=entry["path"])
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == in_dtype
    assert interpreter.get_output_details()[0]["dtype"] == out_dtype
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "TRANSPOSE_CONV" not in ops and "DEPTH_TO_SPACE" in ops  # Exported in the sub-pixel form.
    # It matches the Keras converter on real held-out images within the mode's tolerances.
    assert entry["failures"] == [], entry["failures"]
    assert entry["max_pixel_diff"] <= 16 and entry["mean_pixel_diff"] <= DEFAULT_TOLERANCES[mode].mean_pixel_diff
    assert entry["images"] == 200 and entry["differing_pixels"] < 0.2
    # And the gate is not vacuous: the outputs spread over the range, and a stray byte would show.
    with open(entry["path"], "rb") as f:
        model_bytes = f.read()
    images = embedded[1].images[:20]
    lite = run_tflite(model_bytes, images, output_step=entry["output_step_after_interpreter"])
    assert len(np.unique(lite)) >= 8
    assert entry["output_step_after_interpreter"] == (16 if mode in FULL_INTEGER_MODES else 1)


def test_full_int8_modes_compute_in_integers_and_dynamic_range_does_not(every_mode):
    from ai_edge_litert.interpreter import Interpreter

    def conv_input_dtypes(mode):
        interpreter = Interpreter(model_path=every_mode["files"][mode]["path"])
        interpreter.allocate_tensors()
        details = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
        return {details[op["inputs"][0]] for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"}

    for mode in FULL_INTEGER_MODES:
        assert conv_input_dtypes(mode) == {np.int8}, mode
    assert conv_input_dtypes("dynamic_range") == {np.float32}
    assert conv_input_dtypes("float32") == {np.float32}


def test_phase_kernels_by_hand():
    # One channel in and out, taps numbered 1..9 row by row: kernel[k_h, k_w] = 3 k_h + k_w + 1.
    kernel = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1, 1)
    phases = {key: value[:, :, 0, 0].tolist() for key, value in phase_kernels(kernel).items()}
    # Output (2m + a, 2n + b): phase 0 reads tap 2 from m - 1 and tap 0 from m; phase 1 tap 1 from m.
    assert phases == {(0, 0): [[9, 7], [3, 1]], (0, 1): [[8], [2]], (1, 0): [[6, 4]], (1, 1): [[5]]}


def test_subpixel_upsampling_is_the_same_function(spread_converter, embedded):
    rewritten = subpixel_upsampling(spread_converter)
    assert isinstance(spread_converter.get_layer("conv6_up"), keras.layers.Conv2DTranspose)
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in rewritten.layers)
    assert rewritten.get_layer("conv1") is spread_converter.get_layer("conv1")  # Shared, not copied.
    x = embedded[1].images[:16].astype(np.float32) / 255.0
    before = strip_output_levels(spread_converter).predict(x, verbose=0)
    after = subpixel_upsampling(strip_output_levels(spread_converter)).predict(x, verbose=0)
    assert before.std() > 0.05 and np.abs(before - after).max() < 1e-5
    # At an odd size too (the phases' padding is one-sided): 44 = 4 x 11.
    x44 = np.random.default_rng(0).random((2, 44, 44, 3), dtype=np.float32)
    np.testing.assert_allclose(
        strip_output_levels(spread_converter).predict(x44, verbose=0),
        subpixel_upsampling(strip_output_levels(spread_converter)).predict(x44, verbose=0),
        atol=1e-5,
    )


def test_representative_dataset_draws_distinct_real_images_by_seed():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, axis=3)
    drawn = [int(x[0][0, 0, 0, 0] * 255) for x in export_tflite_lib.representative_dataset(images, 4, seed=0)()]
    again = [int(x[0][0, 0, 0, 0] * 255) for x in export_tflite_lib.representative_dataset(images, 4, seed=0)()]
    other = [int(x[0][0, 0, 0, 0] * 255) for x in export_tflite_lib.representative_dataset(images, 4, seed=1)()]
    assert len(set(drawn)) == 4 and drawn == again and drawn != other
    assert len(list(export_tflite_lib.representative_dataset(images, 50)())) == 10  # All, if fewer.


def _parity_with_flips(images, flipped_to_wrong, flipped_to_right=0, **figures):
    keras_right = np.zeros(images, bool)
    keras_right[:flipped_to_wrong] = True
    lite_right = keras_right.copy()
    lite_right[:flipped_to_wrong] = False
    lite_right[flipped_to_wrong : flipped_to_wrong + flipped_to_right] = True
    interval = metrics.paired_drop_interval(keras_right, lite_right)
    return {
        "images": images,
        "accuracy_drop_points": interval["drop_points"],
        "accuracy_drop_error_points": interval["error_points"],
        "accuracy_drop_low_points": interval["low_points"],
        "accuracy_drop_high_points": interval["high_points"],
        "flipped_to_wrong": interval["flipped_to_wrong"],
        "flipped_to_right": interval["flipped_to_right"],
        **figures,
    }


def test_parity_failures_by_hand():
    tolerance = Tolerance(
        max_pixel_diff_steps=1, mean_pixel_diff=0.5, accuracy_drop_points=1.0, entropy_change_bits=0.1
    )
    # One prediction of 64 flipped to wrong: 1.56 points, over a one-point bar, but its 95 % interval
    # [-1.48, 4.60] (tests/test_metrics.py) is not wholly above it, so it is noise and passes.
    parity = _parity_with_flips(64, 1, max_pixel_diff=16, mean_pixel_diff=0.5, entropy_keras=6.0, entropy_tflite=6.1)
    assert parity["accuracy_drop_points"] == pytest.approx(1.5625)
    assert parity_failures(parity, tolerance, output_step=16) == []  # Every figure at its limit.
    # 40 of 1,000 flipped to wrong, none back: 4 points, standard error sqrt(0.04 - 0.0016) / sqrt(1000)
    # = 0.620 points, interval [2.79, 5.21]: wholly above one point, evidence of a loss.
    parity = _parity_with_flips(
        1000, 40, max_pixel_diff=17, mean_pixel_diff=0.51, entropy_keras=6.0, entropy_tflite=5.8
    )
    assert parity_failures(parity, tolerance, output_step=16) == [
        "max pixel diff 17 > 1 step(s) of 16 level(s)",
        "mean pixel diff 0.510 > 0.5",
        "target accuracy drop 4.00 points, 95 % interval [2.79, 5.21] wholly above 1 "
        "(40 of 1000 predictions flipped to wrong, 0 to right)",
        "entropy change 0.200 bits > 0.1",
    ]
    # The same 40 lost with 30 regained: 1 point, interval [-0.64, 2.64]: passes.
    balanced = _parity_with_flips(
        1000, 40, 30, max_pixel_diff=0, mean_pixel_diff=0.0, entropy_keras=6.0, entropy_tflite=6.0
    )
    assert balanced["accuracy_drop_points"] == pytest.approx(1.0)
    assert parity_failures(balanced, tolerance, output_step=16) == []
    with pytest.raises(DapterError, match="tolerance mean_pixel_diff must be >= 0, got -1"):
        Tolerance(1, -1, 1, 1).validate()


def test_parity_gate_fails_naming_mode_and_figure_unless_forced(spread_converter, embedded, tiny_target_path, tmp_path):
    train_set, test_set = embedded
    target = models.load_target(tiny_target_path)
    strict = {
        "int8": Tolerance(max_pixel_diff_steps=0, mean_pixel_diff=0.0, accuracy_drop_points=100, entropy_change_bits=10)
    }
    args = (
        spread_converter,
        target,
        str(tmp_path),
        train_set.images,
        test_set.images[:50],
        test_set.labels["label"][:50],
    )
    shipped = export_tflite_lib.export_converter(*args, calibration_steps=4)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert set(before) == {"converter_float32.tflite", "converter_int8.tflite", "export.json"}
    with pytest.raises(
        ParityError, match=r"int8: max pixel diff 16 > 0 step\(s\) of 16 level\(s\); mean pixel diff"
    ):
        export_tflite_lib.export_converter(*args, calibration_steps=4, tolerances=strict)
    # The shipped files and export.json are byte-identical; the failed run's files and figures are
    # under failed/, with the breach recorded, where no release looks.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    failed = tmp_path / export_tflite_lib.FAILED_DIR
    recorded = json.loads((failed / "export.json").read_text())
    assert (failed / "converter_int8.tflite").is_file() and recorded["files"]["float32"]["failures"] == []
    assert recorded["files"]["int8"]["failures"][0].startswith("max pixel diff 16 > 0")
    assert recorded["files"]["int8"]["path"] == str(failed / "converter_int8.tflite")
    # The same converter and calibration give the same bytes: the failed int8 file is the shipped one.
    assert recorded["files"]["int8"]["sha256"] == shipped["files"]["int8"]["sha256"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]  # No staging left behind.
    forced = export_tflite_lib.export_converter(*args, calibration_steps=4, tolerances=strict, force=True)
    assert forced["files"]["int8"]["failures"] == recorded["files"]["int8"]["failures"]
    assert not failed.exists()  # A later run clears the failed one's files.


def test_export_records_each_files_hash_size_and_mode(exported_record):
    record, output_dir = exported_record
    for mode, entry in record["files"].items():
        data = (output_dir / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
        assert (entry["mode"], entry["input_shape"]) == (mode, [32, 32, 3])


def test_int8_bytes_are_the_same_whatever_was_exported_before(exported_record, converter, embedded):
    # The record's int8 file was converted after float32 and after the other tests' conversions;
    # converted alone, with the same calibration, it must be the same file (release hashes are
    # reproducible only so).
    record, _ = exported_record
    alone = export_tflite_lib.convert_to_tflite(converter, "int8", (32, 32), embedded[0].images, 4)
    alone = with_contract(alone, output_contract(alone, 1))  # As export ships it.
    assert hashlib.sha256(alone).hexdigest() == record["files"]["int8"]["sha256"]


def test_export_at_a_size_the_target_does_not_take_is_refused_leaving_shipped_files(
    exported_record, converter, embedded, tiny_target_path
):
    record, output_dir = exported_record
    before = {p.name: p.read_bytes() for p in output_dir.iterdir()}
    images = np.repeat(np.repeat(embedded[1].images[:8], 2, axis=1), 2, axis=2)  # 64x64 real images.
    with pytest.raises(
        DapterError, match=r"the target takes 32x32 images and the export data are 64x64: export at 32x32"
    ):
        export_tflite_lib.export_converter(
            converter,
            models.load_target(tiny_target_path),
            str(output_dir),
            images,
            images,
            embedded[1].labels["label"][:8],
            calibration_steps=4,
        )
    assert {p.name: p.read_bytes() for p in output_dir.iterdir()} == before


@pytest.fixture(scope="module")
def exported_record(converter, embedded, tiny_target_path, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("exported_record")
    train_set, test_set = embedded
    record = export_tflite_lib.export_converter(
        converter,
        models.load_target(tiny_target_path),
        str(output_dir),
        train_set.images,
        test_set.images[:32],
        test_set.labels["label"][:32],
        calibration_steps=4,
        modes=("float32", "int8"),
        force=True,  # The untrained step-1 converter's int8 entropy moves; these tests are about the records.
    )
    return record, output_dir


def test_exported_files_carry_their_contract_and_run_as_before(exported_record):
    record, output_dir = exported_record
    for mode, entry in record["files"].items():
        model_bytes = (output_dir / entry["file"]).read_bytes()
        contract = read_contract(model_bytes)
        assert contract == entry["contract"] and contract["format"] == CONTRACT_FORMAT
        assert contract["input"]["shape"] == [1, 32, 32, 3]
        assert contract["output_step"] == entry["output_step_after_interpreter"]
    int8 = read_contract((output_dir / "converter_int8.tflite").read_bytes())
    assert (int8["input"]["dtype"], int8["input"]["zero_point"]) == ("uint8", 0)
    assert int8["input"]["scale"] == float(np.float32(1 / 255))  # float32, as the file stores it.
    assert int8["output"]["dtype"] == "uint8"
    # Rewriting the entry replaces it rather than adding a second one, and a file without one says so.
    plain = export_tflite_lib.convert_keras_model(
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), "float32"
    )
    assert read_contract(plain) is None
    twice = with_contract(with_contract(plain, {"a": 1}), {"a": 2})
    assert read_contract(twice) == {"a": 2}


def test_the_cards_contract_is_what_the_gate_and_verify_measure_on_real_images(embedded, spread_converter):
    # A Fig. 3 converter spread over the grid of step 16, exported to full int8 here. (The committed
    # reference converters ship no int8 file: a class code is not a Fig. 3 converter, and Cifar2:10's
    # one-colour code broke the int8 gate.)
    converter = spread_converter
    train_set, test_set = embedded
    images = test_set.images[:200]
    model_bytes = export_tflite_lib.convert_to_tflite(converter, "int8", (32, 32), train_set.images, 16)
    contract = output_contract(model_bytes, 16)
    # The contract as the card and the file's metadata write it, computed from the raw bytes by hand.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    raw = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None])  # uint8 pixels go in as they are (scale 1/255).
        interpreter.invoke()
        raw.append(interpreter.get_tensor(out["index"])[0])
    q = np.stack(raw)
    x = (q.astype(np.float32) - np.float32(contract["output"]["zero_point"])) * np.float32(contract["output"]["scale"])
    p = np.round(np.clip(x, 0, 1) * np.float32(255)).astype(np.int32)
    step = contract["output_step"]
    by_hand = np.clip(128 + step * np.sign(p - 128) * ((np.abs(p - 128) + step // 2) // step), 0, 255)
    # What the parity gate and dapter-verify measure (check_parity -> run_tflite): zero pixels differ.
    gate = run_tflite(model_bytes, images, output_step=step)
    assert int((gate != by_hand).sum()) == 0
    # The old card's wording, "snap the uint8 output to the grid", was another contract: it moves
    # whole 16-level steps on a few per cent of these real pixels, which is why the card now says more.
    naive = snap_to_levels(q, step)
    assert 0.005 < float((naive != gate).mean()) < 0.1


def test_the_output_vectors_shared_with_the_android_app_are_what_decode_output_gives():
    # android_app/core's OutputDecodingTest decodes the same raw outputs on the JVM.
    import output_vectors

    assert json.loads(output_vectors.PATH.read_text()) == output_vectors.output_vectors()
    by_hand = decode_output(np.array([128, 137, 255], np.uint8), 1 / 256, 0, 16)
    np.testing.assert_array_equal(by_hand, [128, 144, 255])  # 137/256*255 = 136.46 -> 136, a tie -> 144.

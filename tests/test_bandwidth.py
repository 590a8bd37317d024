"""Bandwidth (§7.4): savings by hand, real encoders on hand-built images, and the binary."""

import io
import json

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
from conftest import assert_one_error_line, run_binary

from dapter_tf import DapterError, data, metrics, models
from dapter_tf.analysis import bandwidth


def test_savings_by_hand():
    found = bandwidth.compare_sizes([100, 300], [50, 30])
    assert found["bytes_original"] == 400 and found["bytes_converted"] == 80
    assert found["saving"] == pytest.approx(5.0)  # What the network carries: 400 / 80.
    assert found["saving_mean"] == pytest.approx(6.0)  # Image by image: 2x and 10x.
    assert found["saving_median"] == pytest.approx(6.0)
    assert found["saving_percentiles"][0] == pytest.approx(2.0)
    assert found["saving_percentiles"][-1] == pytest.approx(10.0)
    with pytest.raises(DapterError, match="equal, non-empty"):
        bandwidth.compare_sizes([1, 2], [1])
    with pytest.raises(DapterError, match="positive size"):
        bandwidth.compare_sizes([1], [0])


def test_two_hand_built_images():
    # A fully flattened converted image (every pixel 128) against incompressible noise.
    flat = np.full((1, 32, 32, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    flat_png, noise_png = metrics.encoded_sizes(flat, "png")[0], metrics.encoded_sizes(noise, "png")[0]
    # Noise cannot be compressed: the PNG holds at least its 32 rows of 1 + 96 bytes. The flat image
    # is signature, IHDR, IEND and a few dozen bytes of zlib.
    assert noise_png > 32 * 97 and flat_png < 120
    assert metrics.bandwidth_ratio(flat, noise) == pytest.approx(flat_png / noise_png)
    assert bandwidth.compare_sizes([noise_png], [flat_png])["saving"] > 25
    # The JPEG sizes are those of Pillow at the stated quality.
    buffer = io.BytesIO()
    PIL.Image.fromarray(noise[0]).save(buffer, format="JPEG", quality=40, subsampling=2)
    assert metrics.encoded_sizes(noise, "jpeg", jpeg_quality=40)[0] == buffer.tell()
    assert metrics.png_bytes(np.concatenate([flat, noise])) == flat_png + noise_png


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: metrics.encoded_sizes(x, "gif"), "png, jpeg"),
        (lambda x: metrics.encoded_sizes(x, "jpeg", jpeg_quality=0), "1..95"),
        (lambda x: metrics.encoded_sizes(x, "jpeg", jpeg_quality=100), "1..95"),
    ],
)
def test_bad_encoder_settings(call, message):
    with pytest.raises(DapterError, match=message):
        call(np.zeros((1, 8, 8, 3), np.uint8))


def flat_converter():
    """A converter whose last convolution is all zeros: sigmoid(0) = 0.5, every pixel sent as 128."""
    converter = models.build_converter((4, 8, 8))
    layer = converter.get_layer("conv8_out")
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    return converter


def test_measure_bandwidth_against_a_flat_converter(embedded):
    images = embedded[1].images[:12]
    found = bandwidth.measure_bandwidth(flat_converter(), images, jpeg_quality=75)
    assert found["images"] == 12 and found["side"] == 32 and found["entropy_converted"] == 0.0
    flat = np.full_like(images, 128)
    for image_format in ("png", "jpeg"):
        original = metrics.encoded_sizes(images, image_format, 75)
        converted = metrics.encoded_sizes(flat, image_format, 75)
        assert found[image_format]["bytes_original"] == original.sum()
        assert found[image_format]["bytes_converted"] == converted.sum()
        assert found[image_format]["saving"] == pytest.approx(original.sum() / converted.sum())
    with pytest.raises(DapterError, match="must be uint8"):
        bandwidth.measure_bandwidth(flat_converter(), images.astype(np.float32))


def test_load_test_data_gives_load_data_s_test_split():
    config = data.DataConfig(max_test=50)
    _, test_only = data.load_test_data(config, seed=3)
    _, _, test_set = data.load_data(config, seed=3)
    np.testing.assert_array_equal(test_only.images, test_set.images)


@pytest.fixture(scope="module")
def converter_path(tmp_path_factory):
    tf.keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("converter") / "converter.keras"
    models.build_converter((4, 8, 8)).save(path)
    return str(path)


def test_bandwidth_binary_builds_one_table_from_runs(converter_path, tmp_path):
    workdir = tmp_path / "wd"
    common = [f"--converter={converter_path}", "--max_test=16", f"--workdir={workdir}"]
    first = run_binary("experiments.bandwidth", "--sizes=0,64", "--name=CIFAR-10", *common)
    assert first.returncode == 0, first.stderr
    second = run_binary("experiments.bandwidth", "--sizes=0", "--jpeg_quality=90", "--name=again", *common)
    assert second.returncode == 0, second.stderr
    result = json.loads((workdir / "bandwidth_CIFAR-10.json").read_text())
    assert [s["side"] for s in result["sizes"]] == [32, 64] and result["jpeg_quality"] == 75
    assert result["sizes"][0]["images"] == 16 and len(result["sizes"][1]["png"]["saving_percentiles"]) == 21
    summary = (workdir / "summary.txt").read_text()
    assert "| CIFAR-10 | ? | 32x32 | 16 |" in summary and "| CIFAR-10 | ? | 64x64 |" in summary
    assert "| again | ? | 32x32 |" in summary and "quality 75, 90" in summary
    assert (workdir / "bandwidth.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes=30"], "multiples of 4"),
        (["--sizes=-4"], "distinct sides >= 0"),
        (["--sizes=0,0"], "distinct sides >= 0"),
        (["--sizes=big"], "--sizes must be integers"),
        (["--jpeg_quality=0"], "1..95"),
        (["--converter=/nope/converter.keras"], "converter file not found"),
    ],
)
def test_bandwidth_binary_bad_flags(converter_path, tmp_path, args, message):
    workdir = tmp_path / "wd"
    proc = run_binary("experiments.bandwidth", f"--converter={converter_path}", f"--workdir={workdir}", *args)
    assert_one_error_line(proc, message)
    assert not workdir.exists()

"""dapter-convert: one's own images through a released converter, with one line per file it refuses."""

import json

import numpy as np
import PIL.Image
import pytest
from conftest import REPO, assert_one_error_line, run_binary

from dapter_tf import DapterError, data, evaluate, metrics
from export import convert_lib, export_tflite_lib

BUNDLE = REPO / "results" / "release" / "cifar10_reference"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of real CIFAR-10 test images as PNG and JPEG files, plus four that no converter takes."""
    folder = tmp_path_factory.mktemp("photos")
    images = data.load_embedded("test").images[:6]
    for i, image in enumerate(images[:4]):
        PIL.Image.fromarray(image).save(folder / f"photo_{i}.png")
    PIL.Image.fromarray(images[4]).save(folder / "holiday.jpg", quality=90)
    PIL.Image.fromarray(np.repeat(np.repeat(images[5], 2, 0), 2, 1)).save(folder / "big.png")  # 64x64.
    PIL.Image.fromarray(images[5][..., 0]).save(folder / "grey.png")
    PIL.Image.fromarray(np.dstack([images[5], np.full((32, 32), 255, np.uint8)])).save(folder / "alpha.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image, and not named like one: ignored")
    return folder


def _pixels(path):
    return np.asarray(PIL.Image.open(path))


def test_convert_a_folder_with_an_export_folders_int8_file(photos, int8_export, tmp_path):
    out = tmp_path / "out"
    proc = run_binary(
        "export.convert",
        f"--converter={int8_export / 'converter_int8.tflite'}",
        f"--input={photos}",
        f"--output_dir={out}",
        f"--output_npz={tmp_path / 'converted.npz'}",
    )
    # Four refused, one line each, the batch goes on; the run says so in one error line at the end.
    assert_one_error_line(proc, "4 of 9 image(s) refused (each named above); the others were converted")
    for line in (
        "refused alpha.png: is RGBA, the converter takes RGB",
        "refused big.png: is 64x64, the converter takes 32x32",
        "refused broken.png: cannot be read as an image",
        "refused grey.png: is L, the converter takes RGB",
    ):
        assert line in proc.stdout, proc.stdout
    written = sorted(p.name for p in out.iterdir())
    assert written == ["convert.json", "holiday.png", "photo_0.png", "photo_1.png", "photo_2.png", "photo_3.png"]
    # What was written is exactly what the file sends, with the grid its export.json states (16).
    originals = np.stack([_pixels(photos / "holiday.jpg")] + [_pixels(photos / f"photo_{i}.png") for i in range(4)])
    expected = export_tflite_lib.run_tflite(
        (int8_export / "converter_int8.tflite").read_bytes(), originals, output_step=16
    )
    got = np.stack([_pixels(out / n) for n in ["holiday.png"] + [f"photo_{i}.png" for i in range(4)]])
    np.testing.assert_array_equal(got, expected)
    assert (((got.astype(int) - 128) % 16 == 0) | (got == 255)).all()  # On the grid.
    summary = json.loads((out / "convert.json").read_text())
    assert summary["converted"] == 5 and len(summary["refused"]) == 4
    first = summary["images"][0]
    assert first["entropy_converted"] == pytest.approx(float(metrics.image_entropy(got[0])))
    assert first["png_bytes_converted"] == metrics.png_bytes(got[:1])
    assert "holiday.jpg -> holiday.png: entropy" in proc.stdout
    with np.load(tmp_path / "converted.npz") as f:
        np.testing.assert_array_equal(f["x"], got)


def test_convert_an_npz_with_the_keras_converter_matches_keras(tmp_path):
    images = data.load_embedded("test").images[:3]
    np.savez(tmp_path / "in.npz", x=images)
    converter = convert_lib.load_converter(str(BUNDLE / "converter.keras"))
    assert converter.image_size == (32, 32)  # From the bundle's card.
    summary = convert_lib.convert_inputs(
        converter, convert_lib.read_inputs(str(tmp_path / "in.npz"), (32, 32)), str(tmp_path)
    )
    assert summary["converted"] == 3 and summary["refused"] == []
    np.testing.assert_array_equal(
        np.stack([_pixels(tmp_path / f"image_{i}.png") for i in range(3)]),
        evaluate.convert_images(converter.model, images),
    )


def test_convert_refuses_what_cannot_be_known_or_written(int8_export, tmp_path):
    int8 = tmp_path / "converter_int8.tflite"
    int8.write_bytes((int8_export / "converter_int8.tflite").read_bytes())  # Out of its folder, without a contract.
    with pytest.raises(DapterError, match="full-int8 file .* keep it in its bundle or give --output_step"):
        convert_lib.load_converter(str(int8))
    assert convert_lib.load_converter(str(int8), output_step=16).output_step == 16
    with pytest.raises(DapterError, match="takes 32x32 images; --image_size=64 cannot change that"):
        convert_lib.load_converter(str(BUNDLE / "converter_float32.tflite"), image_size=64)
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(DapterError, match="is not a readable .tflite file"):
        convert_lib.load_converter(str(tmp_path / "junk.tflite"))
    with pytest.raises(DapterError, match="is not a file"):
        convert_lib.load_converter(str(tmp_path / "missing.keras"))
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DapterError, match="holds no image"):
        convert_lib.read_inputs(str(tmp_path / "empty"), (32, 32))
    with pytest.raises(DapterError, match="neither a folder of images nor an existing .npz"):
        convert_lib.read_inputs(str(tmp_path / "nowhere"), (32, 32))
    proc = run_binary(
        "export.convert",
        f"--converter={BUNDLE / 'converter.keras'}",
        f"--input={tmp_path}",
        f"--output_dir={tmp_path / 'a_file'}",
    )
    assert_one_error_line(proc, "is a file, not a folder")

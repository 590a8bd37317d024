"""dapter-convert: one's own images through a released converter, with one line per file it refuses."""

import errno
import json
import os
import struct
import subprocess
import zlib

import numpy as np
import PIL.Image
import pytest
from conftest import REPO, assert_one_error_line, run_binary

from dapter_tf import DapterError, data, evaluate, metrics, models
from dapter_tf.resize import RESIZE_POLICY, fit_image
from export.convert import convert_lib
from export.tflite.interpreter import run_tflite

BUNDLE = REPO / "results" / "release" / "cifar2_10_reference"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of real CIFAR-10 test images as PNG and JPEG files, plus four that no converter takes."""
    folder = tmp_path_factory.mktemp("photos")
    images = data.load_embedded("test").images[:6]
    for i, image in enumerate(images[:4]):
        PIL.Image.fromarray(image).save(folder / f"photo_{i}.png")
    PIL.Image.fromarray(images[4]).save(folder / "holiday.jpg", quality=90)
    PIL.Image.fromarray(np.repeat(images[5], 2, 1)).save(folder / "big.png")  # 64 wide, 32 tall.
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
        "export.convert.convert",
        f"--converter={int8_export / 'converter_int8.tflite'}",
        f"--input={photos}",
        f"--output_dir={out}",
        f"--output_npz={tmp_path / 'converted.npz'}",
    )
    # Three refused, one line each, the batch goes on; the run says so in one error line at the end.
    # big.png (64x32) is resized by the policy training used, and the run says so once.
    assert_one_error_line(proc, "3 of 9 image(s) refused (each named above); the others were converted")
    assert proc.stdout.count("resized 1 photo(s) to 32x32 by the policy: centre-crop") == 1, proc.stdout
    assert "big.png (resized from 64x32) -> big.png: entropy" in proc.stdout
    for line in (
        "refused alpha.png: is RGBA, the converter takes RGB",
        "refused broken.png: cannot be read as an image",
        "refused grey.png: is L, the converter takes RGB",
    ):
        assert line in proc.stdout, proc.stdout
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "big.png",
        "convert.json",
        "holiday.png",
        "photo_0.png",
        "photo_1.png",
        "photo_2.png",
        "photo_3.png",
    ]
    # What was written is exactly what the file sends, with the grid its export.json states (16).
    originals = np.stack([_pixels(photos / "holiday.jpg")] + [_pixels(photos / f"photo_{i}.png") for i in range(4)])
    expected = run_tflite(
        (int8_export / "converter_int8.tflite").read_bytes(), originals, output_step=16
    )
    got = np.stack([_pixels(out / n) for n in ["holiday.png"] + [f"photo_{i}.png" for i in range(4)]])
    np.testing.assert_array_equal(got, expected)
    assert (((got.astype(int) - 128) % 16 == 0) | (got == 255)).all()  # On the grid.
    summary = json.loads((out / "convert.json").read_text())
    assert summary["converted"] == 6 and len(summary["refused"]) == 3 and summary["resized"] == 1
    assert summary["images"][0]["resized_from"] == [32, 64] and summary["images"][1]["resized_from"] is None
    first = summary["images"][1]
    assert first["entropy_converted"] == pytest.approx(float(metrics.image_entropy(got[0])))
    assert first["png_bytes_converted"] == metrics.png_bytes(got[:1])
    assert "holiday.jpg -> holiday.png: entropy" in proc.stdout
    with np.load(tmp_path / "converted.npz") as f:
        np.testing.assert_array_equal(f["x"][1:], got)


def test_convert_an_npz_with_the_keras_converter_matches_keras(tmp_path):
    images = data.load_embedded("test").images[:3]
    np.savez(tmp_path / "in.npz", x=images)
    converter = convert_lib.load_converter(str(BUNDLE / "converter.keras"))
    assert converter.image_size == (32, 32)  # From the bundle's card.
    summary = convert_lib.convert_inputs(
        converter, convert_lib.read_inputs(str(tmp_path / "in.npz"), (32, 32)), str(tmp_path)
    )
    assert summary["converted"] == 3 and summary["refused"] == []
    written = np.stack([_pixels(tmp_path / f"image_{i}.png") for i in range(3)])
    np.testing.assert_array_equal(written, evaluate.convert_images(converter.model, images))
    # The bundle's code (--output_block=16): one colour per 16x16 block, 4 per image, on the grid 128 + k * 16.
    assert models.output_block_of(converter.model) == 16
    blocks = written.reshape(3, 2, 16, 2, 16, 3)
    assert (blocks == blocks[:, :, :1, :, :1]).all()
    assert (((written.astype(int) - 128) % 16 == 0) | (written == 255)).all()


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
        "export.convert.convert",
        f"--converter={BUNDLE / 'converter.keras'}",
        f"--input={tmp_path}",
        f"--output_dir={tmp_path / 'a_file'}",
    )
    assert_one_error_line(proc, "is a file, not a folder")


def _png_header(width: int, height: int, bit_depth: int = 8, pixels: bytes = b"") -> bytes:
    """A PNG file of an RGB image (colour type 2) with ``pixels`` as its deflated rows: Pillow cannot write 16 bits."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


def _folder(tmp_path, names) -> str:
    """A folder of the first real test images, saved under ``names`` (the suffix picks the format)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, image in zip(names, data.load_embedded("test").images):
        PIL.Image.fromarray(image).save(folder / name)
    return str(folder)


def test_convert_never_writes_into_its_input_folder(tmp_path):
    folder = _folder(tmp_path, ["photo.png"])
    original = (tmp_path / "in" / "photo.png").read_bytes()
    proc = run_binary(
        "export.convert.convert",
        f"--converter={BUNDLE / 'converter_float32.tflite'}",
        f"--input={folder}",
        f"--output_dir={folder}",
    )
    assert_one_error_line(
        proc,
        f"--output_dir {folder} is inside the input folder {folder}, where it could overwrite the images it reads: "
        "pick a folder outside the input",
    )
    assert sorted(os.listdir(folder)) == ["photo.png"] and (tmp_path / "in" / "photo.png").read_bytes() == original
    # A folder inside, the input spelt another way, or reached through a symlink: all the same folder.
    os.symlink(folder, tmp_path / "link")
    for output_dir in (f"{folder}/converted", f"{tmp_path}/in/./sub/..", f"{tmp_path}/link/converted"):
        with pytest.raises(DapterError, match="is inside the input folder"):
            convert_lib.check_outputs_outside_input(folder, output_dir)
    with pytest.raises(DapterError, match="--output_npz .* is inside the input folder"):
        convert_lib.check_outputs_outside_input(folder, str(tmp_path / "out"), f"{folder}/converted.npz")
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(DapterError, match="--output_npz .* is the --input file"):
        convert_lib.check_outputs_outside_input(str(tmp_path / "in.npz"), str(tmp_path), str(tmp_path / "in.npz"))
    # A sibling whose name starts like the input's is outside it; so is the folder above.
    convert_lib.check_outputs_outside_input(folder, f"{folder}_converted", f"{folder}_converted.npz")
    convert_lib.check_outputs_outside_input(folder, str(tmp_path))


def test_convert_refuses_two_inputs_with_one_output_name_before_writing(tmp_path):
    folder = _folder(tmp_path, ["photo.jpg", "photo.png", "photo_jpg.png"])
    inputs = convert_lib.read_inputs(folder, (32, 32))
    converter = convert_lib.load_converter(str(BUNDLE / "converter_float32.tflite"))
    out = tmp_path / "out"
    with pytest.raises(
        DapterError, match="^photo.jpg and photo_jpg.png would both be written as photo_jpg.png: rename one"
    ):
        convert_lib.convert_inputs(converter, inputs, str(out))
    assert not out.exists()  # Refused before anything was written.
    # Two with one stem keep their suffixes apart; names that differ only in case collide too.
    assert convert_lib.output_names(inputs[:2]) == ["photo_jpg.png", "photo_png.png"]
    cased = [convert_lib.Input("Cat.png", None), convert_lib.Input("cat.png", None)]
    with pytest.raises(DapterError, match="Cat.png and cat.png would both be written as cat.png"):
        convert_lib.output_names(cased)


def test_convert_reads_sizes_from_the_header_and_refuses_huge_and_16_bit_files(tmp_path):
    folder = _folder(tmp_path, ["photo.png"])
    # Headers only, no pixel data: a refusal that names the size proves nothing was decoded. The
    # first is past Pillow's decompression-bomb limit (an exception at open), the second past its warning.
    (tmp_path / "in" / "bomb.png").write_bytes(_png_header(15000, 15000))
    (tmp_path / "in" / "wide.png").write_bytes(_png_header(10000, 9000))
    rows = b"".join(b"\x00" + bytes(range(192)) for _ in range(32))  # 32 rows of 32 16-bit RGB pixels.
    (tmp_path / "in" / "deep.png").write_bytes(_png_header(32, 32, bit_depth=16, pixels=rows))
    inputs = convert_lib.read_inputs(folder, (32, 32))
    too_many = "a photo to resize may have (Pillow's decompression-bomb limit); shrink it first"
    assert [(i.name, i.refused) for i in inputs] == [
        ("bomb.png", f"is 15000x15000 (width x height), 225,000,000 pixels: more than the 89,478,485 {too_many}"),
        ("deep.png", "has 16 bits per channel, the converter takes 8-bit RGB"),
        ("photo.png", ""),
        ("wide.png", f"is 10000x9000 (width x height), 90,000,000 pixels: more than the 89,478,485 {too_many}"),
    ]
    refusing = convert_lib.read_inputs(folder, (32, 32), refuse_other_sizes=True)
    assert refusing[0].refused == "is 15000x15000 (width x height), the converter takes 32x32"
    np.testing.assert_array_equal(inputs[2].image, data.load_embedded("test").images[0])
    summary = {"converted": 1, "refused": [{}] * 3}
    assert convert_lib.refusals_line(summary) == "3 of 4 image(s) refused (each named above); the others were converted"
    summary = {"converted": 0, "refused": [{}] * 3}
    assert convert_lib.refusals_line(summary) == "3 of 3 image(s) refused (each named above); none was converted"


def test_convert_gives_an_npzs_real_fault_and_refuses_an_empty_one(tmp_path):
    np.savez(tmp_path / "images.npz", images=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(DapterError, match=r"images.npz has no array named x \(it holds images\): save the images as x"):
        convert_lib.read_inputs(str(tmp_path / "images.npz"), (32, 32))
    np.savez(tmp_path / "zero.npz", x=np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(DapterError, match=r"zero.npz holds no image: its x has shape \(0, 32, 32, 3\)"):
        convert_lib.read_inputs(str(tmp_path / "zero.npz"), (32, 32))
    np.savez(tmp_path / "objects.npz", x=np.array([None, 1], dtype=object))
    with pytest.raises(DapterError, match=r"cannot be read as an npz \(Object arrays cannot be loaded"):
        convert_lib.read_inputs(str(tmp_path / "objects.npz"), (32, 32))


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MB tmpfs filled to the last byte (by ``filler``), mounted for the test and unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(
            f"a full disk needs a tmpfs, and mounting one failed (not root?): {mounted.stderr.decode().strip()}"
        )
    try:
        (disk / "out").mkdir()
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, bytes(4096))
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_convert_on_a_full_disk_names_the_file_and_leaves_no_part_of_it(tmp_path, full_disk):
    folder = _folder(tmp_path, ["photo_0.png", "photo_1.png"])
    converter = convert_lib.load_converter(str(BUNDLE / "converter_float32.tflite"))
    inputs = convert_lib.read_inputs(folder, (32, 32))
    out = full_disk / "out"
    with pytest.raises(OSError) as raised:
        convert_lib.convert_inputs(converter, inputs, str(out), str(full_disk / "converted.npz"))
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(out / "photo_0.png"))
    assert os.listdir(out) == []  # No empty PNG, no temp file.
    # Room again: the same run simply proceeds.
    (full_disk / "filler").unlink()
    summary = convert_lib.convert_inputs(converter, inputs, str(out), str(full_disk / "converted.npz"))
    assert summary["converted"] == 2
    assert sorted(os.listdir(out)) == ["convert.json", "photo_0.png", "photo_1.png"]


def test_convert_resizes_a_300x451_photo_by_the_policy_or_refuses_it_under_the_flag(tmp_path):
    # A real photo's proportions (300 wide, 451 tall): cut to its centre 300x300, then box-resized to 32x32.
    tile = data.load_embedded("test").images[7]
    photo = np.tile(tile, (15, 10, 1))[:451, :300]
    folder = tmp_path / "in"
    folder.mkdir()
    PIL.Image.fromarray(photo).save(folder / "chelsea.png")
    converter = convert_lib.load_converter(str(BUNDLE / "converter_float32.tflite"))
    inputs = convert_lib.read_inputs(str(folder), converter.image_size)
    assert [(i.name, i.refused, i.resized_from) for i in inputs] == [("chelsea.png", "", (451, 300))]
    fitted = fit_image(PIL.Image.fromarray(photo), 32, 32)
    middle = PIL.Image.fromarray(photo[75:375]).resize((32, 32), PIL.Image.Resampling.BOX)
    np.testing.assert_array_equal(fitted, np.asarray(middle))
    np.testing.assert_array_equal(inputs[0].image, fitted)
    summary = convert_lib.convert_inputs(converter, inputs, str(tmp_path / "out"))
    assert summary["resized"] == 1 and summary["resize_policy"] == RESIZE_POLICY
    np.testing.assert_array_equal(_pixels(tmp_path / "out" / "chelsea.png"), converter.convert(fitted[None])[0])
    # Under --refuse_other_sizes it is refused as before, and nothing is converted.
    refused = convert_lib.read_inputs(str(folder), converter.image_size, refuse_other_sizes=True)
    assert [(i.name, i.refused) for i in refused] == [
        ("chelsea.png", "is 300x451 (width x height), the converter takes 32x32")
    ]

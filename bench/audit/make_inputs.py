"""Builds the audit's static bad inputs under $AUDIT: in/, out/, fakebin/, w/badconv text files, w/nonempty.

Usage: python make_inputs.py AUDIT REPO   (python: one with numpy and Pillow, e.g. the repo's .venv)

Nothing here needs a trained model: the fixtures that do (bundle copies, records copies, a truncated
.tflite) are made by audit.py once the base cases have produced them. Real CIFAR-10 pixels come from the
repo's embedded sample (dapter_tf/assets/cifar10_sample.npz) so entropies look like the original audit's.
"""

import io
import os
import shutil
import struct
import sys
import zlib

import numpy as np
import PIL.Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_raw(path: str, width: int, height: int, bit_depth: int, color_type: int, row_bytes, rows=None):
    """Writes a PNG by hand (Pillow writes neither 16-bit RGB nor a 15000x15000 image cheaply).

    ``row_bytes``: bytes of one unfiltered row (used for every row) unless ``rows`` (a list) is given.
    """
    comp = zlib.compressobj(9)
    parts = []
    for y in range(height):
        row = rows[y] if rows is not None else row_bytes
        parts.append(comp.compress(b"\x00" + row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", ihdr))
        f.write(_png_chunk(b"IDAT", b"".join(parts)))
        f.write(_png_chunk(b"IEND", b""))


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def main(audit: str, repo: str) -> None:
    sample = np.load(os.path.join(repo, "dapter_tf/assets/cifar10_sample.npz"))
    x, y = sample["x_test"], sample["y_test"]
    rng = np.random.default_rng(0)
    inp = os.path.join(audit, "in")
    os.makedirs(inp, exist_ok=True)

    def folder(name):
        path = os.path.join(inp, name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def save(path, array, **kw):
        PIL.Image.fromarray(array).save(path, **kw)

    # Three valid 32x32 RGB photos; good2 and good3 are copies the outinside / outsame cases write into.
    for name in ("good", "good2", "good3"):
        d = folder(name)
        for i in range(3):
            save(os.path.join(d, f"img_{i}.png"), x[i])
    folder("empty")
    d = folder("noimg")
    open(os.path.join(d, "notes.txt"), "w").write("no image here\n")
    open(os.path.join(d, "labels.csv"), "w").write("name,label\n")

    # Output-name collisions: photo.png + photo.jpg (-> photo.png twice?) and + photo_jpg.png.
    d = folder("collide")
    save(os.path.join(d, "photo.png"), x[3])
    save(os.path.join(d, "photo.jpg"), x[4], quality=95)
    d = folder("collide3")
    save(os.path.join(d, "photo.png"), x[3])
    save(os.path.join(d, "photo.jpg"), x[4], quality=95)
    save(os.path.join(d, "photo_jpg.png"), x[5])

    # The single_* folders, one bad (or odd) file each; mixed holds all of them plus good ones.
    good_png = png_bytes(x[6])
    singles = {}

    def rgb16(path):  # 16-bit RGB: Pillow opens it as 8-bit RGB (the "silently reduced" defect).
        px = (x[7].astype(np.uint16) * 257).astype(">u2")
        write_png_raw(path, 32, 32, 16, 2, None, rows=[px[r].tobytes() for r in range(32)])

    singles["b_wrongsize.png"] = lambda p: save(p, rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    singles["c2_16bit_rgb.png"] = rgb16
    singles["d_gray.png"] = lambda p: save(p, x[8].mean(axis=2).astype(np.uint8))
    singles["e_rgba.png"] = lambda p: save(
        p, np.concatenate([x[9], np.full((32, 32, 1), 255, np.uint8)], axis=2)
    )
    singles["f_zero.png"] = lambda p: open(p, "wb").close()
    singles["g_trunc.png"] = lambda p: open(p, "wb").write(good_png[: len(good_png) // 2])
    singles["h_text.png"] = lambda p: open(p, "w").write("this is a text file named .png\n")
    for name, make in singles.items():
        stem = os.path.splitext(name)[0]
        make(os.path.join(folder(f"single_{stem}"), name))
    d = folder("mixed")
    for name, make in singles.items():
        make(os.path.join(d, name))
    save(os.path.join(d, "a_ok.png"), x[10])
    save(os.path.join(d, "a_ok2.jpg"), x[11], quality=95)
    PIL.Image.fromarray((x[12].mean(axis=2) * 257).astype(np.uint16)).save(os.path.join(d, "c_16bit_gray.png"))
    PIL.Image.fromarray(x[13]).convert("P").save(os.path.join(d, "i_palette.png"))
    PIL.Image.fromarray(x[14]).convert("CMYK").save(os.path.join(d, "j_cmyk.jpg"))
    # 12 files: accepted a_ok.png, a_ok2.jpg, c2_16bit_rgb.png; refused the 9 others.

    # A decompression bomb (15000x15000 RGB, all black: ~1 MB of PNG) beside one valid image.
    d = folder("bomb")
    write_png_raw(os.path.join(d, "huge.png"), 15000, 15000, 8, 2, bytes(15000 * 3))
    save(os.path.join(d, "ok.png"), x[15])
    # A big but legal photo: 4000 wide, 3000 high (the "is 3000x4000" wording case).
    d = folder("huge")
    gy, gx = np.mgrid[0:3000, 0:4000]
    photo = np.stack([(gx * 255 // 3999), (gy * 255 // 2999), ((gx + gy) % 256)], axis=2).astype(np.uint8)
    save(os.path.join(d, "photo.jpg"), photo, quality=90)

    # npz inputs for dapter-convert (x only) and dapter-train-target (x and y).
    def npz(name, **arrays):
        np.savez(os.path.join(inp, name), **arrays)

    npz("ok.npz", x=x[:4])
    npz("int16.npz", x=x[:4].astype(np.int16))
    npz("nox.npz", images=x[:4])
    npz("objarr.npz", x=np.array([x[0], "not an image", None, 3], dtype=object))
    npz("rgba.npz", x=np.concatenate([x[:3], np.full((3, 32, 32, 1), 255, np.uint8)], axis=3))
    npz("wrongdtype.npz", x=x[:4].astype(np.float32))
    npz("wrongshape.npz", x=x[:4, :, :, 0])
    npz("wrongsize.npz", x=rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
    npz("zero.npz", x=np.zeros((0, 32, 32, 3), np.uint8))
    npz("train_badlabel.npz", x=x[:64], y=np.arange(64) % 50)
    npz("train_f32.npz", x=x[:64].astype(np.float32), y=y[:64])
    npz("train_mismatch.npz", x=x[:64], y=y[:60])
    with open(os.path.join(inp, "notanpz.npz"), "w") as f:  # also release's garbage --attack_results
        f.write("this is not an npz file, nor JSON\n")

    # Outputs that are in the way.
    out = os.path.join(audit, "out")
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "afile"), "w").write("a file where a folder is expected\n")
    os.makedirs(os.path.join(out, "npzdir"), exist_ok=True)

    # Converters that are not: text named .keras / .tflite (the truncated .tflite and the loose .keras
    # come from the bundle, in audit.py).
    badconv = os.path.join(audit, "w", "badconv")
    os.makedirs(badconv, exist_ok=True)
    open(os.path.join(badconv, "text.keras"), "w").write("this is not a keras model\n")
    open(os.path.join(badconv, "text.tflite"), "w").write("this is not a tflite model\n")
    nonempty = os.path.join(audit, "w", "nonempty")
    os.makedirs(nonempty, exist_ok=True)
    open(os.path.join(nonempty, "keep.txt"), "w").write("someone's file\n")

    # adb stand-ins.
    fakebin = os.path.join(audit, "fakebin")
    os.makedirs(fakebin, exist_ok=True)
    scripts = {
        "adb_crash": '#!/bin/sh\necho "adb: cannot connect to daemon" >&2\nexit 1\n',
        # Bounded sleep, so that an orphan left by a killed driver ends on its own.
        "adb_hang": "#!/bin/sh\nexec sleep 300\n",
        "adb_nodev": (
            "#!/bin/sh\ncase \"$1\" in\n"
            "  devices) printf 'List of devices attached\\n\\n' ;;\n"
            "  version) echo 'Android Debug Bridge version 1.0.41' ;;\n"
            "  start-server|kill-server) ;;\n"
            "  *) echo 'adb: no devices/emulators found' >&2; exit 1 ;;\n"
            "esac\n"
        ),
    }
    for name, text in scripts.items():
        path = os.path.join(fakebin, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))

"""Running a released converter on one's own images: what ``dapter-convert`` does.

An app team's first try with a bundle is to push a folder of its own photos through the converter
and look at what would be sent. ``load_converter`` opens a bundle's ``converter.keras`` or any of
its ``.tflite`` files (run by ai_edge_litert, with the output grid that the file's bundle states for
full-int8 files); ``read_inputs`` reads a folder of images or an ``.npz``, refusing each file the
converter cannot take with one line and going on with the rest; ``convert_inputs`` writes the
converted PNGs and measures each image's entropy (§4.1) and PNG bytes (§7.4).

A photo of another size is brought to the converter's by ``resize.RESIZE_POLICY`` (``fit_image``),
the policy training used on the task's images and the Android harness applies: the pixels a
converter is given here are those it was trained on. ``refuse_other_sizes`` refuses such a photo instead.

Nothing the user gave is ever overwritten: ``check_outputs_outside_input`` refuses an output among
the inputs, ``output_names`` refuses two inputs that would be written under one name, and every
file is written atomically (``files.write_bytes``), so a full disk leaves no empty PNG.
Sizes are printed width x height, as image viewers print them.
"""

import contextlib
import dataclasses
import io
import json
import os

import numpy as np
import PIL.Image

from dapter_tf import DapterError, evaluate, metrics, models
from dapter_tf.records.files import write_bytes, write_json
from dapter_tf.resize import RESIZE_POLICY, fit_image
from export.release.card import parse_card_task
from export.release.claims import MODEL_CARD, parse_claims
from export.tflite.contract import read_contract
from export.tflite.interpreter import run_tflite

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SUMMARY_FILE = "convert.json"
# The most pixels a photo to resize may have: Pillow's own decompression-bomb warning limit. Its
# pixels are decoded whole before the resize, so a larger file is refused from its header.
MAX_PHOTO_PIXELS = 89_478_485


@dataclasses.dataclass(frozen=True)
class LoadedConverter:
    """A converter ready to run on uint8 images.

    Attributes:
        path: The file.
        kind: ``"keras"`` or ``"tflite"``.
        image_size: (height, width) it takes.
        output_step: The grid step applied to a full-int8 file's bytes (1: none; float files and the
            ``.keras`` converter have the grid inside).
        model: The Keras model (``kind == "keras"``) or the file's bytes.
    """

    path: str
    kind: str
    image_size: tuple
    output_step: int
    model: object

    def convert(self, images: np.ndarray) -> np.ndarray:
        """The uint8 images a phone would send for uint8 N x H x W x 3 ``images``."""
        if self.kind == "keras":
            return evaluate.convert_images(self.model, images)
        return run_tflite(self.model, images, output_step=self.output_step)


def _bundle_facts(folder: str) -> dict:
    """What the converter's folder states about it: ``output_step`` and ``image_size``, where known.

    A release bundle's model card states both (its "Images" line and its ``output_step`` claim); a
    ``dapter-export-tflite`` folder's export.json states them too.
    """
    facts = {}
    card = os.path.join(folder, MODEL_CARD)
    export_json = os.path.join(folder, "export.json")
    if os.path.isfile(card):
        with open(card) as f:
            text = f.read()
        _, _, facts["image_size"] = parse_card_task(text)
        steps = [c.value for c in parse_claims(text) if c.name == "output_step"]
        if steps:
            facts["output_step"] = int(steps[0])
    elif os.path.isfile(export_json):
        with open(export_json) as f:
            record = json.load(f)
        facts = {"image_size": tuple(record["image_size"]), "output_step": int(record["output_step"])}
    return facts


def load_converter(path: str, image_size: int = 0, output_step: int = 0) -> LoadedConverter:
    """Opens a converter ``.keras`` or ``.tflite`` file.

    Args:
        path: The file; a ``.tflite`` file is best kept in its bundle (or export folder), whose
            card states the output grid a full-int8 file's bytes are snapped to.
        image_size: Square side to convert at (0: the file's own: a ``.tflite`` file's input, or
            the size its bundle states; a ``.keras`` file outside a bundle needs it).
        output_step: The grid step for a full-int8 file's bytes (0: the one its bundle states).

    Raises:
        DapterError: one line, on a missing or unreadable file, or a size or grid that cannot be known.
    """
    if not os.path.isfile(path):
        raise DapterError(f"--converter {path} is not a file")
    if image_size < 0 or output_step < 0:
        raise DapterError(f"image size and output step must be >= 0, got {image_size} and {output_step}")
    facts = _bundle_facts(os.path.dirname(os.path.abspath(path)))
    if path.endswith(".keras"):
        model = models.load_converter(path)  # Refuses non-finite weights too.
        if tuple(model.output_shape[1:]) != tuple(model.input_shape[1:]):
            raise DapterError(f"{path} is not a converter: it maps {model.input_shape[1:]} to {model.output_shape[1:]}")
        size = (image_size, image_size) if image_size else facts.get("image_size")
        if size is None:
            raise DapterError(f"{path} is outside a bundle, so its image size is unknown: give --image_size")
        return LoadedConverter(path, "keras", tuple(size), 1, model)
    if not path.endswith(".tflite"):
        raise DapterError(f"--converter {path} is neither a .keras nor a .tflite file")
    with open(path, "rb") as f:
        model_bytes = f.read()
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=model_bytes)
    except (ValueError, RuntimeError) as e:
        raise DapterError(f"{path} is not a readable .tflite file ({str(e).splitlines()[0]})") from None
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    shape = tuple(int(s) for s in inp["shape"][1:3])
    if len(inp["shape"]) != 4 or inp["shape"][3] != 3:
        raise DapterError(f"{path} takes {tuple(inp['shape'])}, not images: is it a converter?")
    if image_size and (image_size, image_size) != shape:
        raise DapterError(f"{path} takes {wxh(shape)} images; --image_size={image_size} cannot change that")
    step = 1
    contract = read_contract(model_bytes)
    if out["dtype"] != np.float32:  # A full-int8 file ends at the sigmoid (export_tflite_lib).
        # The file's own contract first, then what was given, then what its bundle states.
        step = (contract or {}).get("output_step") or output_step or facts.get("output_step")
        if not step:
            raise DapterError(
                f"{path} is a full-int8 file whose bytes are snapped to the converter's output grid, which only its "
                "bundle states: keep it in its bundle or give --output_step"
            )
    return LoadedConverter(path, "tflite", shape, int(step), model_bytes)


def wxh(size) -> str:
    """``"4000x3000"`` for a (height, width) ``size`` of 3000 rows: width first, as image viewers print it."""
    return f"{size[1]}x{size[0]}"


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, after symlinks and ``./x`` spellings are resolved."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def check_outputs_outside_input(input_path: str, output_dir: str, npz_path: str = "") -> None:
    """Refuses outputs that would land among the inputs, before anything is written.

    A converted PNG has its original's name (``photo.png``), so converting a folder into itself
    would overwrite the user's photos; a folder inside it would be read as input on the next run.

    Raises:
        DapterError: one line, when ``output_dir`` or ``npz_path`` is, or lies inside, the input
            folder, or ``npz_path`` is the input npz itself.
    """
    if os.path.isdir(input_path):
        for flag, path in (("--output_dir", output_dir), ("--output_npz", npz_path)):
            if path and _inside(path, input_path):
                raise DapterError(
                    f"{flag} {path} is inside the input folder {input_path}, where it could overwrite the images "
                    "it reads: pick a folder outside the input"
                )
    elif npz_path and os.path.realpath(npz_path) == os.path.realpath(input_path):
        raise DapterError(f"--output_npz {npz_path} is the --input file: pick another file, outside the input")


@dataclasses.dataclass(frozen=True)
class Input:
    """One image to convert, or why it cannot be (``image`` None and ``refused`` saying why).

    ``resized_from`` is the (height, width) of a photo brought to the converter's size by
    ``RESIZE_POLICY``; ``None`` for one that already had it.
    """

    name: str
    image: np.ndarray | None
    refused: str = ""
    resized_from: tuple | None = None


def _size_refusal(image_size, size, refuse_other_sizes: bool) -> str:
    """Why a (height, width) ``size`` cannot be converted ("": it can, resized if it differs)."""
    if tuple(size) == tuple(image_size):
        return ""
    if refuse_other_sizes:
        return f"is {wxh(size)} (width x height), the converter takes {wxh(image_size)}"
    if size[0] * size[1] > MAX_PHOTO_PIXELS:
        return (
            f"is {wxh(size)} (width x height), {size[0] * size[1]:,} pixels: more than the "
            f"{MAX_PHOTO_PIXELS:,} a photo to resize may have (Pillow's decompression-bomb limit); shrink it first"
        )
    return ""


def _fitted(name: str, image: np.ndarray, image_size) -> Input:
    """``image`` as an ``Input`` at the converter's size: resized by ``RESIZE_POLICY`` if it differs."""
    if tuple(image.shape[:2]) == tuple(image_size):
        return Input(name, image)
    return Input(name, fit_image(PIL.Image.fromarray(image), *image_size), resized_from=tuple(image.shape[:2]))


def _check_image(name: str, image: np.ndarray, image_size, refuse_other_sizes: bool = False) -> Input:
    if image.dtype != np.uint8:
        return Input(name, None, f"is {image.dtype}, the converter takes uint8 pixels")
    channels = 1 if image.ndim == 2 else image.shape[-1]
    if image.ndim not in (2, 3) or channels != 3:
        return Input(name, None, f"has {channels} channel(s) (shape {image.shape}), the converter takes RGB")
    refusal = _size_refusal(image_size, image.shape[:2], refuse_other_sizes)
    if refusal:
        return Input(name, None, refusal)
    return _fitted(name, image, image_size)


def _header_refusal(image: PIL.Image.Image, image_size, refuse_other_sizes: bool = False) -> str:
    """Why the converter cannot take a lazily opened image, from its header alone ("": it can)."""
    if image.mode != "RGB":
        return f"is {image.mode}, the converter takes RGB"
    # Pillow opens a 16-bit RGB file as 8-bit RGB (its tile's raw mode says RGB;16B): refused, as
    # other pixels the converter does not take are, rather than silently losing 8 bits per channel.
    raw_modes = [tile.args if isinstance(tile.args, str) else (tile.args or ("",))[0] for tile in image.tile]
    if any(";16" in str(mode) for mode in raw_modes):
        return "has 16 bits per channel, the converter takes 8-bit RGB"
    width, height = image.size
    return _size_refusal(image_size, (height, width), refuse_other_sizes)


@contextlib.contextmanager
def _no_decompression_bomb_guard():
    """Pillow's decompression-bomb guard off, inside: ``_read_image_file``'s size check is far tighter.

    The guard raises (above 179 M pixels) or warns on stderr (above 89 M) at ``open``, before the
    header can be checked; the header check refuses every size above ``MAX_PHOTO_PIXELS`` (or,
    with ``refuse_other_sizes``, every size but the converter's) before decoding.
    """
    saved = PIL.Image.MAX_IMAGE_PIXELS
    PIL.Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = saved


def _read_image_file(folder: str, name: str, image_size, refuse_other_sizes: bool = False) -> Input:
    """One image file, checked from its header before its pixels are decoded (a huge file costs no memory)."""
    try:
        with _no_decompression_bomb_guard(), PIL.Image.open(os.path.join(folder, name)) as image:
            refusal = _header_refusal(image, image_size, refuse_other_sizes)
            if refusal:
                return Input(name, None, refusal)
            image.load()
            pixels = np.asarray(image)
    except (OSError, ValueError, PIL.UnidentifiedImageError) as e:
        return Input(name, None, f"cannot be read as an image ({type(e).__name__})")
    return _check_image(name, pixels, image_size, refuse_other_sizes)


def read_inputs(path: str, image_size, refuse_other_sizes: bool = False) -> list[Input]:
    """The images of a folder (by name, sorted) or of an ``.npz`` (its ``x``), each checked.

    An image of another size is brought to ``image_size`` by ``RESIZE_POLICY`` (``resized_from``
    says from what). A file that is no image, has other channels than the converter takes, is too
    large to decode (``MAX_PHOTO_PIXELS``) or, with ``refuse_other_sizes``, has another size, is an
    ``Input`` with ``refused`` set: the rest still convert.

    Raises:
        DapterError: one line, when ``path`` holds no image at all or is neither a folder nor an npz.
    """
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise DapterError(f"--input {path} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        return [_read_image_file(path, name, image_size, refuse_other_sizes) for name in names]
    if path.endswith(".npz") and os.path.isfile(path):
        try:
            with np.load(path) as f:
                arrays = f.files
                images = f["x"] if "x" in arrays else None
        except (OSError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DapterError(f"--input {path} cannot be read as an npz ({reason})") from None
        if images is None:
            raise DapterError(
                f"--input {path} has no array named x (it holds {', '.join(arrays) or 'no array'}): "
                "save the images as x, uint8 N x H x W x 3"
            )
        if images.ndim != 4:
            raise DapterError(f"--input {path}: x must be N x H x W x 3, got shape {images.shape}")
        if not len(images):
            raise DapterError(f"--input {path} holds no image: its x has shape {images.shape}")
        width = len(str(len(images) - 1))
        names = [f"image_{i:0{width}d}" for i in range(len(images))]
        return [_check_image(name, image, image_size, refuse_other_sizes) for name, image in zip(names, images)]
    raise DapterError(f"--input {path} is neither a folder of images nor an existing .npz file")


def output_names(inputs: list[Input]) -> list[str]:
    """Each input's output name: ``cat.jpg`` -> ``cat.png``; two with one stem keep their suffixes (``cat_jpg.png``).

    Raises:
        DapterError: one line, when two inputs would still be written under one name
            (``photo.jpg`` and ``photo_jpg.png`` beside ``photo.png``), compared regardless of
            case, since the output folder may lie on a file system that ignores it.
    """
    stems = [os.path.splitext(i.name)[0] for i in inputs]
    names = [
        f"{stem}.png" if stems.count(stem) == 1 else f"{stem}_{os.path.splitext(i.name)[1].lstrip('.')}.png"
        for stem, i in zip(stems, inputs)
    ]
    first_by_name = {}
    for item, name in zip(inputs, names):
        other = first_by_name.setdefault(name.casefold(), item)
        if other is not item:
            raise DapterError(
                f"{other.name} and {item.name} would both be written as {name}: rename one of them and rerun"
            )
    return names


def convert_inputs(
    converter: LoadedConverter, inputs: list[Input], output_dir: str, npz_path: str = "", progress=None
) -> dict:
    """Converts every accepted input, writes ``output_dir/<name>.png`` (and ``npz_path``), and measures them.

    Args:
        converter: From ``load_converter``.
        inputs: From ``read_inputs``.
        output_dir: The folder for the PNGs and ``convert.json``, created if missing; see
            ``check_outputs_outside_input``.
        npz_path: Also write the converted images as an npz (``x``, and ``names``) there; empty: not.
        progress: Optional callable taking one line per image (and per refusal).

    Returns:
        ``convert.json``'s content: per image its entropy and PNG bytes before and after (before:
        at the converter's size, after any resize) and the size it was resized from, the
        refusals, the resize policy, and the means.

    Raises:
        DapterError: before anything is written, when two inputs would share an output name.
        OSError: naming the file, when one cannot be written (a full disk); each file written is
            whole or absent.
    """
    accepted = [i for i in inputs if i.image is not None]
    names = dict(zip((id(i) for i in inputs), output_names(inputs)))
    os.makedirs(output_dir, exist_ok=True)
    records, refused = [], []
    for item in inputs:
        if item.image is None:
            refused.append({"input": item.name, "reason": item.refused})
            if progress:
                progress(f"refused {item.name}: {item.refused}")
    converted = (
        converter.convert(np.stack([i.image for i in accepted])) if accepted else np.zeros((0, 1, 1, 3), np.uint8)
    )
    for item, image in zip(accepted, converted):
        out_name = names[id(item)]
        write_bytes(os.path.join(output_dir, out_name), _png(image))
        record = {
            "input": item.name,
            "output": out_name,
            "entropy_original": float(metrics.image_entropy(item.image)),
            "entropy_converted": float(metrics.image_entropy(image)),
            "png_bytes_original": metrics.png_bytes(item.image[None]),
            "png_bytes_converted": metrics.png_bytes(image[None]),
            "resized_from": None if item.resized_from is None else list(item.resized_from),
        }
        records.append(record)
        if progress:
            resized = "" if item.resized_from is None else f" (resized from {wxh(item.resized_from)})"
            progress(
                f"{item.name}{resized} -> {out_name}: entropy {record['entropy_original']:.2f} -> "
                f"{record['entropy_converted']:.2f} bits, PNG {record['png_bytes_original']:,} -> "
                f"{record['png_bytes_converted']:,} bytes"
            )
    if npz_path and accepted:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, x=converted, names=np.array([names[id(i)] for i in accepted]))
        write_bytes(npz_path, buffer.getvalue())
    summary = {
        "converter": converter.path,
        "kind": converter.kind,
        "image_size": list(converter.image_size),
        "output_step_after_interpreter": converter.output_step,
        "converted": len(records),
        "resized": sum(i.resized_from is not None for i in accepted),
        "resize_policy": RESIZE_POLICY,
        "refused": refused,
        "images": records,
    }
    if records:
        summary["mean_entropy_original"] = float(np.mean([r["entropy_original"] for r in records]))
        summary["mean_entropy_converted"] = float(np.mean([r["entropy_converted"] for r in records]))
        summary["png_bytes_ratio"] = sum(r["png_bytes_original"] for r in records) / sum(
            r["png_bytes_converted"] for r in records
        )
    write_json(os.path.join(output_dir, SUMMARY_FILE), summary)
    return summary


def refusals_line(summary: dict) -> str:
    """The run's closing error line for ``convert_inputs``'s ``summary`` when it refused images."""
    total = summary["converted"] + len(summary["refused"])
    outcome = "the others were converted" if summary["converted"] else "none was converted"
    return f"{len(summary['refused'])} of {total} image(s) refused (each named above); {outcome}"


def _png(image: np.ndarray) -> bytes:
    """A uint8 H x W x 3 image as PNG bytes."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()

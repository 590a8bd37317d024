r"""Converts one's own images with a released converter: a folder of images or an npz in, PNGs out.

--converter is a bundle's converter.keras or any of its .tflite files. A full-int8 file ends at the
sigmoid and its bytes are snapped to the converter's output grid, which the bundle's model card
states (its output_step claim): keep the file in its bundle (or its dapter-export-tflite folder),
or give --output_step. --input is a folder of images (png, jpg, bmp, webp, tif; sorted by name) or
an .npz whose x is uint8 N x H x W x 3. A photo of another size than the converter's is brought to
it by the one resize policy that training used too (dapter_tf.resize.RESIZE_POLICY: a centre crop to
the converter's aspect ratio, then a box-filter resize), and the run says so once; with
--refuse_other_sizes it is refused instead. An image the converter cannot take (grey or RGBA, 16 bits
per channel, corrupt, or above 89,478,485 pixels) is refused with one line and the rest still
convert; the run then ends with exit status 1 after writing what it could. A file's size is read from
its header before its pixels are decoded, so a huge file is refused without filling memory. Sizes
are printed width x height.

Nothing given is overwritten: --output_dir (and --output_npz) must lie outside the input folder, and
two inputs that would be written under one name (photo.jpg and photo_jpg.png beside photo.png) are
refused before anything is written. Every file is written whole or not at all.

Writes OUTPUT_DIR/<name>.png for every converted image and OUTPUT_DIR/convert.json (per image: the
entropy of §4.1 and the PNG bytes before and after; the refusals), and prints one line per image.

Example:
  dapter-convert --converter=results/release/cifar2_10_reference/converter_int8.tflite \
      --input=my_photos/ --output_dir=converted/
"""

from absl import flags

from cli import runner

_CONVERTER = flags.DEFINE_string(
    "converter", None, "A bundle's converter.keras or one of its converter_<mode>.tflite files.", required=True
)
_INPUT = flags.DEFINE_string(
    "input", None, "A folder of images, or an .npz whose x is uint8 N x H x W x 3.", required=True
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the converted PNGs and convert.json go (created if missing).", required=True
)
_OUTPUT_NPZ = flags.DEFINE_string(
    "output_npz", "", "Also write the converted images (x) and their file names (names) to this .npz."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size",
    0,
    "Square side the converter takes (0: the file's own, or the size its bundle states; a .keras file outside a "
    "bundle needs it).",
)
_REFUSE_OTHER_SIZES = flags.DEFINE_bool(
    "refuse_other_sizes",
    False,
    "Refuse every image that is not exactly the converter's size, instead of bringing it to that size by "
    "the resize policy training used (a centre crop to the converter's aspect ratio, then a box-filter resize).",
)
_OUTPUT_STEP = flags.DEFINE_integer(
    "output_step",
    0,
    "Output grid step for a full-int8 .tflite file's bytes (0: the one its bundle states).",
)


def main():
    from dapter_tf import DapterError
    from export.convert import convert_lib

    convert_lib.check_outputs_outside_input(_INPUT.value, _OUTPUT_DIR.value, _OUTPUT_NPZ.value)
    converter = convert_lib.load_converter(_CONVERTER.value, _IMAGE_SIZE.value, _OUTPUT_STEP.value)
    inputs = convert_lib.read_inputs(_INPUT.value, converter.image_size, _REFUSE_OTHER_SIZES.value)
    print(
        f"converting {sum(i.image is not None for i in inputs)} of {len(inputs)} image(s) with {converter.path} "
        f"({converter.kind}, {convert_lib.wxh(converter.image_size)})",
        flush=True,
    )
    resized = sum(i.resized_from is not None for i in inputs)
    if resized:
        print(
            f"resized {resized} photo(s) to {convert_lib.wxh(converter.image_size)} by the policy: "
            f"{convert_lib.RESIZE_POLICY}",
            flush=True,
        )
    summary = convert_lib.convert_inputs(
        converter, inputs, _OUTPUT_DIR.value, _OUTPUT_NPZ.value, progress=lambda line: print(line, flush=True)
    )
    if summary["converted"]:
        print(
            f"mean entropy {summary['mean_entropy_original']:.2f} -> {summary['mean_entropy_converted']:.2f} bits; "
            f"PNG bytes {summary['png_bytes_ratio']:.2f}x fewer; written to {_OUTPUT_DIR.value}"
        )
    if summary["refused"]:
        raise DapterError(convert_lib.refusals_line(summary))


def run():
    runner.run(main)


if __name__ == "__main__":
    run()

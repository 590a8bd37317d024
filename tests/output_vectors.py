"""The output-contract vectors shared with the Android harness: run this file to rewrite them.

``android_app/core/src/test/resources/output_decoding.json`` holds raw converter outputs (every
uint8 and int8 value at the int8 export's scale, another scale and zero point, and float32 values
with ties) and the pixels ``decode_output`` makes of them. tests/test_export.py
checks that the file is what this module writes; android_app's ``OutputDecodingTest`` checks that
the phone's decoder gives the same pixels.

  .venv/bin/python tests/output_vectors.py
"""

import json
import pathlib

import numpy as np

from export.tflite.contract import decode_output

PATH = pathlib.Path(__file__).resolve().parent.parent / "android_app/core/src/test/resources/output_decoding.json"
# Float32 outputs on and between levels: exact halves of a level (ties of round-half-even), the
# grid's 128, and values outside [0, 1] that the decoder clips.
FLOATS = [0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 127.5 / 255, 0.25, 0.5, 128 / 255, 0.53, 0.999, 1.0, -0.1, 1.2]


def _case(name, dtype, scale, zero_point, step, raw) -> dict:
    raw = np.asarray(raw, dtype)
    return {
        "name": name,
        "dtype": dtype,
        "scale": float(np.float32(scale)),
        "zero_point": zero_point,
        "output_step": step,
        "raw": [float(v) if dtype == "float32" else int(v) for v in raw],
        "expected": [int(v) for v in decode_output(raw, scale, zero_point, step)],
    }


def output_vectors() -> dict:
    """The vectors, as the JSON file holds them."""
    return {
        "about": "Raw converter outputs and the uint8 pixels they stand for by the output contract "
        "(export.tflite.contract.decode_output): x = float32(q - zero_point) * float32(scale) (float32 output: "
        "x = q); p = round_half_even(255 * clip(x, 0, 1)) in float32; pixel = 128 + step * sign(p - 128) * "
        "floor((abs(p - 128) + step // 2) / step), clipped to 0..255. Written by tests/output_vectors.py; "
        "tests/test_export.py and android_app's OutputDecodingTest both check it.",
        "cases": [
            _case("uint8 output (the int8 export), grid 16", "uint8", 1 / 256, 0, 16, range(256)),
            _case("int8 output (int8_int8_io), grid 16", "int8", 1 / 256, -128, 16, range(-128, 128)),
            _case("uint8 output, no grid", "uint8", 1 / 256, 0, 1, range(256)),
            _case("int8 output, another scale and zero point, grid 8", "int8", 0.0041, -100, 8, range(-128, 128)),
            _case("float32 output (the grid inside the file)", "float32", 0.0, 0, 1, FLOATS),
        ],
    }


if __name__ == "__main__":
    PATH.write_text(json.dumps(output_vectors(), indent=1) + "\n")
    print(f"wrote {PATH}")

"""The output contract of an exported file: how its output bytes decode to pixels, carried in its metadata."""

import numpy as np

from dapter_tf import metrics
from dapter_tf.models import snap_to_levels
from dapter_tf.resize import RESIZE_POLICY
from export.tflite.native_output import native_output_captured


def decode_output(raw: np.ndarray, scale: float, zero_point: int, output_step: int = 1) -> np.ndarray:
    """The output contract: a converter file's raw output tensor -> the uint8 pixels sent.

    The one implementation of the step the model card states and the ``.tflite`` file carries in
    its metadata (``output_contract``); the parity gate, ``dapter-verify`` and ``dapter-convert``
    all go through it, and android_app's ``OutputDecoding`` computes the same on the shared vectors
    of ``android_app/core/src/test/resources/output_decoding.json``:

      x = float32(q - zero_point) * float32(scale)  (a float32 output: x = q)
      p = round_half_even(255 * clip(x, 0, 1))       (in float32)
      pixel = 128 + step * sign(p - 128) * floor((|p - 128| + step // 2) / step), clipped to 0..255
              (``models.snap_to_levels``; step 1: pixel = p)

    Args:
        raw: The interpreter's output: float32, uint8 or int8.
        scale: Its quantization scale (ignored for float32).
        zero_point: Its zero point (ignored for float32).
        output_step: The grid step (``output_step_after_interpreter``).
    """
    y = np.asarray(raw)
    if y.dtype != np.float32:
        y = (y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return snap_to_levels(metrics.to_uint8(y), output_step)


def output_decoding_text(step="step", quantized_only: bool = False) -> str:
    """``decode_output``'s formula in words: for the file's contract (the symbol ``step``, float
    outputs too) and for a card's int8 paragraph (its number, quantized outputs only)."""
    half = "step // 2" if step == "step" else step // 2
    dequantize = "x = float32(q - zero_point) * float32(scale)"
    return (
        f"{dequantize if quantized_only else 'x = q (float32 output), else ' + dequantize}; "
        f"p = round_half_even(255 * clip(x, 0, 1)) in float32; pixel = 128 + {step} * sign(p - 128) * "
        f"floor((abs(p - 128) + {half}) / {step}), clipped to 0..255"
    )


# The name of the .tflite metadata entry that describes the file's input and output (a JSON text).
CONTRACT_METADATA = "dapter_io_contract"


CONTRACT_FORMAT = "dapter-tf io contract 1"


def output_contract(model_bytes: bytes, output_step: int) -> dict:
    """What a converter file takes and gives, from its own tensors: the JSON its metadata carries."""
    from ai_edge_litert.interpreter import Interpreter

    with native_output_captured():
        interpreter = Interpreter(model_content=model_bytes)
    described = {}
    for side, details in (
        ("input", interpreter.get_input_details()[0]),
        ("output", interpreter.get_output_details()[0]),
    ):
        scale, zero_point = details["quantization"]
        described[side] = {
            "shape": [int(s) for s in details["shape"]],
            "dtype": np.dtype(details["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero_point),
        }
    return {
        "format": CONTRACT_FORMAT,
        **described,
        "input_resize": f"a photo of another size first: {RESIZE_POLICY}",
        "input_encoding": "x = pixel / 255 (float32 input), else q = clip(round_half_even(float32(pixel / 255) / "
        "float32(scale) + zero_point)) to the type's range",
        "output_step": int(output_step),
        "output_decoding": output_decoding_text() + " (step 1: pixel = p)",
    }


def with_contract(model_bytes: bytes, contract: dict) -> bytes:
    """``model_bytes`` with ``contract`` as the metadata entry ``CONTRACT_METADATA`` (replacing one there).

    Written with TensorFlow's own flatbuffer tools; the interpreter ignores metadata it does not
    know, so the file runs, and runs as fast, as before.
    """
    import json

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    model.metadata = [m for m in (model.metadata or []) if m.name != CONTRACT_METADATA.encode()]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(contract, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = CONTRACT_METADATA.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_contract(model_bytes: bytes) -> dict | None:
    """The contract a ``.tflite`` file carries (``with_contract``), or None for a file without one."""
    import json

    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    for entry in model.metadata or []:
        if entry.name == CONTRACT_METADATA.encode():
            return json.loads(bytes(np.asarray(model.buffers[entry.buffer].data, np.uint8)).decode())
    return None

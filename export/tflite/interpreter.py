"""Running an exported .tflite file on the host with LiteRT's interpreter."""

import numpy as np

from export.tflite.contract import decode_output
from export.tflite.native_output import native_output_captured


def run_tflite(model_bytes: bytes, images: np.ndarray, batch_size: int = 100, output_step: int = 1) -> np.ndarray:
    """Runs a converter ``.tflite`` on uint8 images with ai_edge_litert; returns the uint8 images sent.

    Handles float and quantized input/output from the tensors' own quantization parameters.
    ``output_step`` > 1 applies the converter's output grid to the bytes (full-int8 files end at the
    sigmoid; see ``convert_to_tflite``).
    """
    from ai_edge_litert.interpreter import Interpreter

    # The first interpreter of a process prints "INFO: Created TensorFlow Lite XNNPACK delegate".
    with native_output_captured():
        interpreter = Interpreter(model_content=model_bytes)
        interpreter.allocate_tensors()  # The delegate is created here.
    inp = interpreter.get_input_details()[0]
    if len(images) > 1 and not _runs_in_batches(model_bytes, images.shape[1:], min(batch_size, len(images))):
        batch_size = 1
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if batch.shape != tuple(inp["shape"]):
            interpreter.resize_tensor_input(inp["index"], batch.shape)
            interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        output = interpreter.get_output_details()[0]
        x = batch.astype(np.float32) / 255.0
        if inp["dtype"] != np.float32:
            scale, zero_point = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        scale, zero_point = output["quantization"]
        out.append(decode_output(interpreter.get_tensor(output["index"]), scale, zero_point, output_step))
    return np.concatenate(out)


def _runs_in_batches(model_bytes: bytes, image_shape: tuple, batch_size: int) -> bool:
    """Whether the file's batch-1 input can be resized to ``batch_size`` images.

    A file whose shapes the converter fixed at batch 1 (the class code's reshape of one codebook row,
    ``models.build_class_code_converter``) fails to prepare at any other batch; it runs image by
    image, as a phone runs every converter.
    """
    from ai_edge_litert.interpreter import Interpreter

    with native_output_captured():
        probe = Interpreter(model_content=model_bytes)
        probe.resize_tensor_input(probe.get_input_details()[0]["index"], (batch_size, *image_shape))
        try:
            probe.allocate_tensors()
        except RuntimeError:
            return False
    return True

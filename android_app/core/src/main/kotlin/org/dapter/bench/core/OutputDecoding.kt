package org.dapter.bench.core

import java.nio.ByteBuffer
import kotlin.math.abs
import kotlin.math.sign

/**
 * Turns a converter's output tensor into the uint8 pixels the phone sends: the output contract.
 *
 * Full-int8 files end at the sigmoid, so the converter's output grid (128 + k * step) is applied
 * to their output here; float files have the grid inside and use step 1. The same arithmetic as
 * `decode_output` in `export/tflite/contract.py`, which the parity gate and `dapter-verify`
 * measure with; the model card and the file's own metadata (`dapter_io_contract`) state it:
 *
 *   x = float32(q - zero point) * float32(scale)   (a float32 output: x = q)
 *   p = round_half_even(255 * clip(x, 0, 1))        (in float32)
 *   pixel = 128 + step * sign(p - 128) * ((|p - 128| + step / 2) / step), clipped to 0..255
 *
 * src/test/resources/output_decoding.json holds the vectors both sides check.
 */
object OutputDecoding {
    /**
     * Decodes [output] (read from its start) for [tensor].
     *
     * @param output The interpreter's output buffer, in native byte order.
     * @param tensor The model's output: float32, uint8 or int8, with its scale and zero point.
     * @param outputStep The grid step applied after the interpreter (1: none).
     * @return One pixel value in 0..255 per element.
     * @throws ArgumentException on an output type a converter does not have, or a step < 1.
     */
    fun decode(output: ByteBuffer, tensor: TensorInfo, outputStep: Int): IntArray {
        if (outputStep < 1) throw ArgumentException("the output step must be >= 1, got $outputStep")
        val elements = tensor.shape.fold(1) { a, b -> a * b }
        val buffer = output.duplicate().order(output.order())
        buffer.rewind()
        return IntArray(elements) {
            val x = when (tensor.dtype) {
                "float32" -> buffer.getFloat()
                "uint8" -> dequantize(buffer.get().toInt() and 0xff, tensor)
                "int8" -> dequantize(buffer.get().toInt(), tensor)
                else -> throw ArgumentException("the model's output is ${tensor.dtype}; a converter gives float32, uint8 or int8")
            }
            snap(toPixel(x), outputStep)
        }
    }

    /** x = float32(q - zero point) * float32(scale), as numpy computes it. */
    fun dequantize(q: Int, tensor: TensorInfo): Float {
        if (tensor.scale <= 0.0) throw ArgumentException("a ${tensor.dtype} output needs a positive scale, got ${tensor.scale}")
        return (q - tensor.zeroPoint).toFloat() * tensor.scale.toFloat()
    }

    /** round_half_even(255 * clip(x, 0, 1)) in float32 (`metrics.to_uint8`). */
    fun toPixel(x: Float): Int = Math.rint((x.coerceIn(0f, 1f) * 255f).toDouble()).toInt()

    /** The grid 128 + k * [step] (`model.snap_to_levels`): a tie goes to the level farther from 128. */
    fun snap(pixel: Int, step: Int): Int {
        if (step == 1) return pixel
        val offset = pixel - 128
        return (128 + step * offset.sign * ((abs(offset) + step / 2) / step)).coerceIn(0, 255)
    }
}

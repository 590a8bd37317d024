package org.dapter.bench.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Turns pixels into a converter's input tensor, quantized with the tensor's own parameters.
 *
 * A converter takes an H x W x 3 image in [0, 1]: as float32, or as uint8 / int8 with a scale and
 * zero point (the `int8` export takes uint8 pixels with scale 1/255 and zero point 0). This is
 * the same arithmetic as `input_for` in `export/benchmark/benchmark_lib.py`, so the phone and the host time
 * the same tensor.
 */
object InputEncoding {
    /** Bytes per element of each input type a converter can have. */
    private val BYTES = mapOf("float32" to 4, "uint8" to 1, "int8" to 1)

    /**
     * Encodes RGB pixels for [tensor].
     *
     * @param rgb H * W * 3 values in 0..255, row-major, channels last (what [argbToRgb] gives).
     * @param tensor The model's input: shape 1 x H x W x 3 and one of float32, uint8, int8.
     * @return A direct buffer in native byte order, ready for `Interpreter.run`.
     * @throws ArgumentException when the shape or type is not a converter's.
     */
    fun encode(rgb: IntArray, tensor: TensorInfo): ByteBuffer {
        checkConverterInput(tensor)
        val elements = tensor.shape.fold(1) { a, b -> a * b }
        if (rgb.size != elements) {
            throw ArgumentException("the input needs $elements pixel values (${tensor.shape}), got ${rgb.size}")
        }
        val buffer = ByteBuffer.allocateDirect(elements * BYTES.getValue(tensor.dtype)).order(ByteOrder.nativeOrder())
        when (tensor.dtype) {
            "float32" -> rgb.forEach { buffer.putFloat(it / 255f) }
            "uint8" -> rgb.forEach { buffer.put(quantize(it, tensor, 0, 255).toByte()) }
            "int8" -> rgb.forEach { buffer.put(quantize(it, tensor, -128, 127).toByte()) }
        }
        buffer.rewind()
        return buffer
    }

    /**
     * A value in 0..255, as a real number x = value / 255 in [0, 1], quantized to
     * q = round(x / scale + zero point) and clamped to [min, max].
     *
     * In float32 and rounding half to even, as numpy computes it in `input_for`: the two agree on
     * every value, ties included (src/test/resources/input_encoding.json holds the shared cases).
     */
    fun quantize(value: Int, tensor: TensorInfo, min: Int, max: Int): Int {
        if (tensor.scale <= 0.0) throw ArgumentException("a ${tensor.dtype} input needs a positive scale, got ${tensor.scale}")
        val real: Float = value / 255f / tensor.scale.toFloat() + tensor.zeroPoint
        return Math.rint(real.toDouble()).toInt().coerceIn(min, max)
    }

    /** Android's packed ARGB colours (`Bitmap.getPixels`) as R, G, B values, alpha dropped. */
    fun argbToRgb(argb: IntArray): IntArray {
        val rgb = IntArray(argb.size * 3)
        argb.forEachIndexed { i, c ->
            rgb[3 * i] = (c shr 16) and 0xff
            rgb[3 * i + 1] = (c shr 8) and 0xff
            rgb[3 * i + 2] = c and 0xff
        }
        return rgb
    }

    /** Seeded random pixels for [tensor] (`benchmark_model` feeds random data too). */
    fun randomPixels(tensor: TensorInfo, seed: Long = 0): IntArray {
        val random = java.util.Random(seed)
        return IntArray(tensor.shape.fold(1) { a, b -> a * b }) { random.nextInt(256) }
    }

    /** Checks that [tensor] is 1 x H x W x 3 of a type a converter takes. */
    fun checkConverterInput(tensor: TensorInfo) {
        if (tensor.shape.size != 4 || tensor.shape[0] != 1 || tensor.shape[3] != 3) {
            throw ArgumentException("the model is not a converter: its input has shape ${tensor.shape}, not 1 x H x W x 3")
        }
        if (tensor.dtype !in BYTES) {
            throw ArgumentException("the model's input is ${tensor.dtype}; a converter takes ${BYTES.keys.joinToString(", ")}")
        }
    }
}

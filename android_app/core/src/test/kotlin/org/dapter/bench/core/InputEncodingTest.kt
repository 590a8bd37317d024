package org.dapter.bench.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

class InputEncodingTest {
    // A 1 x 1 x 2 x 3 "image": two pixels, (0, 128, 255) and (255, 64, 1).
    private val rgb = intArrayOf(0, 128, 255, 255, 64, 1)
    private val shape = listOf(1, 1, 2, 3)

    @Test
    fun float32IsPixelsOver255() {
        val buffer = InputEncoding.encode(rgb, TensorInfo(shape, "float32"))
        assertEquals(24, buffer.capacity())
        val values = FloatArray(6) { buffer.getFloat() }
        assertArrayEquals(floatArrayOf(0f, 128 / 255f, 1f, 1f, 64 / 255f, 1 / 255f), values)
    }

    @Test
    fun uint8WithTheInt8ExportsParametersIsThePixelsThemselves() {
        // converter_int8.tflite takes uint8 pixels with scale 1/255 and zero point 0: q = x.
        val buffer = InputEncoding.encode(rgb, TensorInfo(shape, "uint8", 1 / 255.0, 0))
        val bytes = ByteArray(6).also { buffer.get(it) }
        assertArrayEquals(rgb, bytes.map { it.toInt() and 0xff }.toIntArray())
    }

    @Test
    fun int8QuantizesAndClamps() {
        // scale 1/127, zero point -1: q = round(x / 255 * 127) - 1 -> 0 -> -1, 128 -> 63, 255 -> 126,
        // 64 -> 31, 1 -> 0 (round(0.498) = 0, then -1).
        val buffer = InputEncoding.encode(rgb, TensorInfo(shape, "int8", 1 / 127.0, -1))
        val bytes = ByteArray(6).also { buffer.get(it) }
        assertArrayEquals(byteArrayOf(-1, 63, 126, 126, 31, -1), bytes)
        // A zero point that pushes past the type's range is clamped: 255 / 255 / (1/255) + 100 -> 127.
        assertEquals(127, InputEncoding.quantize(255, TensorInfo(shape, "int8", 1 / 255.0, 100), -128, 127))
    }

    @Test
    fun sharedVectorsEncodeAsTheHostBenchmarkDoes() {
        // The same cases tests/test_benchmark.py runs through export/benchmark/benchmark_lib.input_for,
        // ties of round-half-to-even included ("int8, half steps").
        val vectors = JSONObject(javaClass.getResource("/input_encoding.json")!!.readText())
        val shape = vectors.getJSONArray("shape").let { a -> List(a.length()) { a.getInt(it) } }
        val pixels = vectors.getJSONArray("pixels").let { a -> IntArray(a.length()) { a.getInt(it) } }
        val cases = vectors.getJSONArray("cases")
        assertEquals(5, cases.length())
        for (i in 0 until cases.length()) {
            val case = cases.getJSONObject(i)
            val tensor = TensorInfo(shape, case.getString("dtype"), case.getDouble("scale"), case.getInt("zero_point"))
            val expected = case.getJSONArray("expected")
            val buffer = InputEncoding.encode(pixels, tensor)
            for (j in pixels.indices) {
                val name = "${case.getString("name")}, pixel ${pixels[j]}"
                when (tensor.dtype) {
                    "float32" -> assertEquals(expected.getDouble(j).toFloat(), buffer.getFloat(), name)
                    "uint8" -> assertEquals(expected.getInt(j), buffer.get().toInt() and 0xff, name)
                    else -> assertEquals(expected.getInt(j), buffer.get().toInt(), name)
                }
            }
        }
    }

    @Test
    fun argbDropsAlpha() {
        assertArrayEquals(intArrayOf(0x12, 0x34, 0x56, 0xff, 0, 1), InputEncoding.argbToRgb(intArrayOf(0x7f123456, 0xffff0001.toInt())))
    }

    @Test
    fun randomPixelsAreSeededAndInRange() {
        val tensor = TensorInfo(listOf(1, 8, 8, 3), "float32")
        val a = InputEncoding.randomPixels(tensor, 3)
        assertEquals(192, a.size)
        assertArrayEquals(a, InputEncoding.randomPixels(tensor, 3))
        assert(a.all { it in 0..255 })
    }

    @Test
    fun nonConvertersAreRefused() {
        val e1 = assertThrows<ArgumentException> { InputEncoding.encode(IntArray(10), TensorInfo(listOf(1, 10), "float32")) }
        assertEquals("the model is not a converter: its input has shape [1, 10], not 1 x H x W x 3", e1.message)
        val e2 = assertThrows<ArgumentException> { InputEncoding.encode(rgb, TensorInfo(shape, "int16", 1.0, 0)) }
        assertEquals("the model's input is int16; a converter takes float32, uint8, int8", e2.message)
        val e3 = assertThrows<ArgumentException> { InputEncoding.encode(IntArray(3), TensorInfo(shape, "float32")) }
        assertEquals("the input needs 6 pixel values ([1, 1, 2, 3]), got 3", e3.message)
        val e4 = assertThrows<ArgumentException> { InputEncoding.encode(rgb, TensorInfo(shape, "uint8")) }
        assertEquals("a uint8 input needs a positive scale, got 0.0", e4.message)
    }
}

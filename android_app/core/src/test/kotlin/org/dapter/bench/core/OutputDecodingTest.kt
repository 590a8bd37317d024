package org.dapter.bench.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import java.nio.ByteBuffer
import java.nio.ByteOrder

class OutputDecodingTest {
    private fun buffer(dtype: String, raw: List<Number>): ByteBuffer {
        val size = if (dtype == "float32") 4 else 1
        val buffer = ByteBuffer.allocateDirect(raw.size * size).order(ByteOrder.nativeOrder())
        raw.forEach { if (dtype == "float32") buffer.putFloat(it.toFloat()) else buffer.put(it.toInt().toByte()) }
        buffer.rewind()
        return buffer
    }

    @Test
    fun theInt8ExportsBytesByHand() {
        // Scale 1/256, zero point 0, grid 16: q = 128 -> x = 0.5 -> p = round(127.5) = 128 (ties to
        // even) -> 128. q = 137 -> x = 0.53516 -> p = round(136.46) = 136: halfway between the levels
        // 128 and 144, it goes to the one farther from 128 -> 144. q = 255 -> p = 254 -> 256 -> 255.
        val tensor = TensorInfo(listOf(1, 1, 1, 3), "uint8", 1 / 256.0, 0)
        assertArrayEquals(intArrayOf(128, 144, 255), OutputDecoding.decode(buffer("uint8", listOf(128, 137, 255)), tensor, 16))
        assertArrayEquals(intArrayOf(128, 136, 254), OutputDecoding.decode(buffer("uint8", listOf(128, 137, 255)), tensor, 1))
    }

    @Test
    fun sharedVectorsDecodeAsTheParityGateDoes() {
        // The cases tests/output_vectors.py writes with export.tflite.contract.decode_output.
        val vectors = JSONObject(javaClass.getResource("/output_decoding.json")!!.readText())
        val cases = vectors.getJSONArray("cases")
        assertEquals(5, cases.length())
        for (i in 0 until cases.length()) {
            val case = cases.getJSONObject(i)
            val dtype = case.getString("dtype")
            val raw = case.getJSONArray("raw").let { a -> List<Number>(a.length()) { if (dtype == "float32") a.getDouble(it) else a.getInt(it) } }
            val expected = case.getJSONArray("expected").let { a -> IntArray(a.length()) { a.getInt(it) } }
            val tensor = TensorInfo(listOf(1, 1, raw.size, 1), dtype, case.getDouble("scale"), case.getInt("zero_point"))
            assertArrayEquals(expected, OutputDecoding.decode(buffer(dtype, raw), tensor, case.getInt("output_step")), case.getString("name"))
        }
    }

    @Test
    fun badOutputsAreRefused() {
        val e1 = assertThrows<ArgumentException> { OutputDecoding.decode(buffer("uint8", listOf(1)), TensorInfo(listOf(1), "int16", 1.0, 0), 1) }
        assertEquals("the model's output is int16; a converter gives float32, uint8 or int8", e1.message)
        val e2 = assertThrows<ArgumentException> { OutputDecoding.decode(buffer("uint8", listOf(1)), TensorInfo(listOf(1), "uint8"), 1) }
        assertEquals("a uint8 output needs a positive scale, got 0.0", e2.message)
        val e3 = assertThrows<ArgumentException> { OutputDecoding.decode(buffer("uint8", listOf(1)), TensorInfo(listOf(1), "uint8", 1.0, 0), 0) }
        assertEquals("the output step must be >= 1, got 0", e3.message)
    }
}

class OutputContractArgsTest {
    @Test
    fun theOutputStepTravelsAsAnExtraAndNamesTheDecodedPixelsInTheResult() {
        val args = BenchmarkArgs.parse(mapOf("model" to "/data/local/tmp/c.tflite", "output_step" to "16"))
        assertEquals(16, args.outputStep)
        assertEquals(listOf("--es", "output_step", "16"), args.toAmStartExtras().takeLast(3))
        assertEquals(1, BenchmarkArgs.parse(mapOf("model" to "m")).outputStep)
        val e = assertThrows<ArgumentException> { BenchmarkArgs.parse(mapOf("model" to "m", "output_step" to "0")) }
        assertEquals("output_step must be in 1..255, got 0", e.message)
        // What the host computes: hashlib.sha256(bytes([0, 128, 255])).hexdigest().
        assertEquals(
            "5240672d7b51756b829ad0ef8d9468b7a078afa2f410484fd3892dab47becb72",
            BenchmarkResult.pixelsSha256(intArrayOf(0, 128, 255)),
        )
    }
}

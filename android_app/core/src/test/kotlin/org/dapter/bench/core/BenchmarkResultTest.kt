package org.dapter.bench.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

class BenchmarkResultTest {
    private val device = DeviceInfo("Xiaomi", "Mi 9T Pro", "QTI", "SM8150", "qcom", "msmnile", "11", 30, "arm64-v8a")
    private val args = BenchmarkArgs("/data/local/tmp/dapter/c.tflite", numRuns = 5, runId = "r1")

    @Test
    fun jsonHasTheHostBenchmarksKeysInOrder() {
        val stats = Statistics.summarize(1500.0, listOf(30.0), listOf(10.0, 1.0, 4.0, 2.0, 3.0))
        val result = BenchmarkResult(
            args, device, "2.16.1", 140_808,
            TensorInfo(listOf(1, 224, 224, 3), "uint8", 1 / 255.0, 0), TensorInfo(listOf(1, 224, 224, 3), "uint8"),
            stats,
        )
        val json = result.toJson()
        assertTrue(json.endsWith("}\n"))
        assertFalse(json.trimEnd().contains('\n'))
        assertTrue(json.startsWith("{\"format\":\"dapter-bench/1\",\"status\":\"ok\",\"error\":null,\"run_id\":\"r1\","))
        assertTrue(json.contains("\"input_shape\":[1,224,224,3],\"input_dtype\":\"uint8\""))
        assertTrue(json.contains("\"soc_model\":\"SM8150\""))
        assertTrue(json.contains("\"init_us\":1500.0,\"first_inference_us\":30.0,\"warmup_avg_us\":30.0,\"avg_us\":4.0,"))
        assertTrue(json.contains("\"p90_us\":7.6"), json)
        // Without a yardstick its fields are there, empty, after the converter's.
        assertTrue(json.contains("\"count\":5,\"yardstick_model\":null,"))
        assertTrue(json.trimEnd().endsWith("\"yardstick_p90_us\":null,\"ratio_to_yardstick\":null}"))
        assertEquals(BenchmarkResult.LOG_PREFIX + json.trimEnd(), result.logcatLine())
    }

    @Test
    fun failureCarriesItsMessageAndNoTimings() {
        val result = BenchmarkResult(args, device, error = "cannot read /data/local/tmp/dapter/c.tflite")
        val map = result.toMap()
        assertEquals("error", map["status"])
        assertEquals("cannot read /data/local/tmp/dapter/c.tflite", map["error"])
        assertEquals(null, map["avg_us"])
        assertTrue(result.toJson().contains("\"avg_us\":null"))
    }

    @Test
    fun aResultHasTimingsOrAnError() {
        assertThrows<IllegalArgumentException> { BenchmarkResult(args, device) }
    }

    @Test
    fun jsonEscapesAndRefusesWhatItCannotWrite() {
        assertEquals("\"a\\\"b\\\\c\\nd\\u0001\"", Json.write("a\"b\\c\nd\u0001"))
        assertEquals("{\"x\":[1,2.5,true,null],\"nan\":null}", Json.write(linkedMapOf("x" to listOf(1, 2.5, true, null), "nan" to Double.NaN)))
        assertThrows<IllegalArgumentException> { Json.write(Any()) }
    }

    @Test
    fun fileNameFollowsTheRunId() {
        assertEquals("r1.json", BenchmarkResult.fileName("r1"))
    }
}

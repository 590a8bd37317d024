package org.dapter.bench.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test

/**
 * Pins the result file's exact text to `src/test/resources/sample_result.json`.
 *
 * The adb driver's tests (`tests/test_adb_benchmark.py`) have their fake device write that same
 * file, so a change of the app's JSON breaks this test until the sample, and with it what the
 * driver is tested on, is updated too.
 */
class SampleResultTest {
    @Test
    fun resultFileMatchesTheSampleTheDriverIsTestedOn() {
        val args = BenchmarkArgs(
            model = "/data/local/tmp/dapter/converter_int8.tflite",
            numThreads = 4,
            warmupRuns = 2,
            numRuns = 5,
            delegate = Delegate.XNNPACK,
            runId = "sample",
        )
        val device = DeviceInfo("Xiaomi", "Mi 9T Pro", "QTI", "SM8150", "qcom", "msmnile", "11", 30, "arm64-v8a")
        // Timings in microseconds: mean (110000 + 108000 + 109000 + 115000 + 108500) / 5 = 110100;
        // sorted 108000, 108500, 109000, 110000, 115000 -> p50 109000, p90 110000 + 0.6 * 5000 = 113000.
        val stats = Statistics.summarize(
            initUs = 25000.0,
            warmupUs = listOf(160000.0, 120000.0),
            runsUs = listOf(110000.0, 108000.0, 109000.0, 115000.0, 108500.0),
        )
        val pixels = TensorInfo(listOf(1, 224, 224, 3), "uint8", 0.00392156862745098, 0)
        val result = BenchmarkResult(args, device, "2.16.1", 140_808, pixels, pixels, stats)
        val sample = javaClass.getResource("/sample_result.json")!!.readText()
        assertEquals(sample, result.toJson())
        assertEquals(110100.0, stats.avgUs, 1e-9)
        assertEquals(113000.0, stats.p90Us, 1e-9)
    }
}

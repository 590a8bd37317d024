package org.dapter.bench.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test

/**
 * Pins the app's two contracts with the adb driver to files the driver's tests read too:
 * `src/test/resources/am_start.txt`, the `adb shell` command line that starts the Activity, and
 * `src/test/resources/sample_result.json`, the result file's exact text.
 *
 * The adb driver's tests (`tests/test_adb_benchmark.py`) build the same command line and have their
 * fake device write that same result, so a change on either side breaks a test until both agree.
 */
class SampleResultTest {
    @Test
    fun theDriversCommandLineParsesToTheArgumentsItMeans() {
        val words = javaClass.getResource("/am_start.txt")!!.readText().trim().split(" ")
        assertEquals(listOf("am", "start", "-W", "-S", "-n", "org.dapter.bench/.BenchmarkActivity"), words.take(6))
        val extras = words.drop(6)
        val args = BenchmarkArgs(
            model = "/data/local/tmp/dapter/converter_int8.tflite",
            numThreads = 4,
            warmupRuns = 2,
            numRuns = 5,
            delegate = Delegate.GPU,
            image = "/data/local/tmp/dapter/face_1.png",
            runId = "sample",
            yardstick = "/data/local/tmp/dapter/mobilenet_v2_1.0_int8.tflite",
        )
        assertEquals(args.toAmStartExtras(), extras)
        // As the Activity reads them: every --es key value, parsed back.
        assertEquals(args, BenchmarkArgs.parse(extras.chunked(3).associate { (_, key, value) -> key to value }))
    }

    @Test
    fun resultFileMatchesTheSampleTheDriverIsTestedOn() {
        val args = BenchmarkArgs(
            model = "/data/local/tmp/dapter/converter_int8.tflite",
            numThreads = 4,
            warmupRuns = 2,
            numRuns = 5,
            delegate = Delegate.XNNPACK,
            runId = "sample",
            outputStep = 16,
            yardstick = "/data/local/tmp/dapter/mobilenet_v2_1.0_int8.tflite",
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
        val sigmoid = TensorInfo(listOf(1, 224, 224, 3), "uint8", 0.00390625, 0)
        // The decoded output named by its hash: here the three pixels 0, 128, 255.
        // The yardstick, timed in the same rounds: min 216000, twice the converter's 108000, so the ratio is 0.5;
        // mean 220200, sorted 216000, 217000, 218000, 220000, 230000 -> p50 218000, p90 220000 + 0.6 * 10000 = 226000.
        val mobilenet = Statistics.summarize(
            initUs = 90000.0,
            warmupUs = listOf(260000.0, 230000.0),
            runsUs = listOf(216000.0, 220000.0, 218000.0, 230000.0, 217000.0),
        )
        val result = BenchmarkResult(
            args, device, "2.16.1", 140_808, pixels, sigmoid, stats,
            outputPixels = intArrayOf(0, 128, 255), yardstick = YardstickRun(3_944_928, mobilenet),
        )
        val sample = javaClass.getResource("/sample_result.json")!!.readText()
        assertEquals(sample, result.toJson())
        assertEquals(110100.0, stats.avgUs, 1e-9)
        assertEquals(113000.0, stats.p90Us, 1e-9)
        assertEquals(0.5, result.toMap()["ratio_to_yardstick"])
        assertEquals(226000.0, mobilenet.p90Us, 1e-9)
    }
}

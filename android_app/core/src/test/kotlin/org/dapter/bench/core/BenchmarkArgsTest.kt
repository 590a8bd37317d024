package org.dapter.bench.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

class BenchmarkArgsTest {
    private val model = "/data/local/tmp/dapter/converter_int8.tflite"

    @Test
    fun defaultsAreBenchmarkModels() {
        val args = BenchmarkArgs.parse(mapOf("model" to model))
        assertEquals(BenchmarkArgs(model, 1, 1, 50, Delegate.XNNPACK, null, "dapter_bench"), args)
    }

    @Test
    fun everyExtraIsRead() {
        val args = BenchmarkArgs.parse(
            mapOf(
                "model" to model, "num_threads" to "4", "warmup_runs" to " 5", "num_runs" to "200",
                "delegate" to "NNAPI", "image" to "/data/local/tmp/dapter/face.png", "run_id" to "r-1.x",
            ),
        )
        assertEquals(BenchmarkArgs(model, 4, 5, 200, Delegate.NNAPI, "/data/local/tmp/dapter/face.png", "r-1.x"), args)
    }

    @Test
    fun extrasRoundTripThroughAmStartSyntax() {
        val args = BenchmarkArgs(model, 2, 3, 7, Delegate.GPU, "/sdcard/x.png", "run7")
        val extras = args.toAmStartExtras()
        assertEquals(
            listOf(
                "--es", "model", model, "--es", "num_threads", "2", "--es", "warmup_runs", "3",
                "--es", "num_runs", "7", "--es", "delegate", "gpu", "--es", "run_id", "run7",
                "--es", "image", "/sdcard/x.png",
            ),
            extras,
        )
        // Read back the way the Activity reads them: key, value pairs after each --es.
        val map = extras.chunked(3).associate { (flag, key, value) -> assertEquals("--es", flag); key to value }
        assertEquals(args, BenchmarkArgs.parse(map))
    }

    @Test
    fun badExtrasNameThemselves() {
        fun message(extras: Map<String, String?>) = assertThrows<ArgumentException> { BenchmarkArgs.parse(extras) }.message!!
        assertEquals("the extra 'model' (the .tflite file on the device) is required", message(emptyMap()))
        assertEquals("num_threads must be an integer, got 'four'", message(mapOf("model" to model, "num_threads" to "four")))
        assertEquals("num_threads must be in 1..64, got 0", message(mapOf("model" to model, "num_threads" to "0")))
        assertEquals("num_runs must be in 1..100000, got -3", message(mapOf("model" to model, "num_runs" to "-3")))
        assertEquals("warmup_runs must be in 1..100000, got 0", message(mapOf("model" to model, "warmup_runs" to "0")))
        assertEquals(
            "delegate must be one of cpu, xnnpack, gpu, nnapi, got 'hexagon'",
            message(mapOf("model" to model, "delegate" to "hexagon")),
        )
        assertTrue(message(mapOf("model" to model, "threads" to "2")).startsWith("unknown extra 'threads'; the extras are model,"))
        assertEquals(
            "run_id must be letters, digits, '.', '_' or '-' (a file name), got '../x'",
            message(mapOf("model" to model, "run_id" to "../x")),
        )
    }

    @Test
    fun theYardstickTravelsAsItsOwnExtra() {
        val yardstick = "/data/local/tmp/dapter/mobilenet_v2_1.0_int8.tflite"
        val args = BenchmarkArgs(model, yardstick = yardstick)
        assertEquals(listOf("--es", "yardstick", yardstick), args.toAmStartExtras().takeLast(3))
        assertEquals(args, BenchmarkArgs.parse(mapOf("model" to model, "yardstick" to yardstick)))
        assertEquals(null, BenchmarkArgs.parse(mapOf("model" to model)).yardstick)
        fun message(extras: Map<String, String?>) = assertThrows<ArgumentException> { BenchmarkArgs.parse(extras) }.message!!
        assertEquals(
            "yardstick must be another file than model, got '$model' for both",
            message(mapOf("model" to model, "yardstick" to model)),
        )
        assertEquals("yardstick must name a .tflite file on the device", assertThrows<ArgumentException> {
            BenchmarkArgs(model, yardstick = " ")
        }.message)
    }

    @Test
    fun delegateIdsAreTheExtrasSpelling() {
        assertEquals(listOf("cpu", "xnnpack", "gpu", "nnapi"), Delegate.entries.map { it.id })
        assertEquals(Delegate.CPU, Delegate.fromId(" Cpu "))
    }
}

class ArgumentsForFailureTest {
    @Test
    fun keepsWhatCanNameTheResultFile() {
        assertEquals(
            BenchmarkArgs("/data/local/tmp/m.tflite", runId = "r2"),
            argumentsForFailure(mapOf("model" to "/data/local/tmp/m.tflite", "run_id" to "r2", "num_threads" to "x")),
        )
        // A run id that is no file name, and no model: the defaults, so the failure is still written.
        assertEquals(BenchmarkArgs("(none)", runId = "dapter_bench"), argumentsForFailure(mapOf("run_id" to "a/b")))
    }
}

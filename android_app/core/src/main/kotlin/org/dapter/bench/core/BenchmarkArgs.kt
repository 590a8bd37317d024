package org.dapter.bench.core

/** Where TFLite runs the model: its delegate choices, named as the intent extra spells them. */
enum class Delegate(val id: String) {
    /** TFLite's built-in CPU kernels, XNNPACK off (`benchmark_model --use_xnnpack=false`). */
    CPU("cpu"),

    /** The CPU through the XNNPACK delegate, TFLite's default. */
    XNNPACK("xnnpack"),

    /** The GPU delegate (OpenCL or OpenGL ES), where the device supports it. */
    GPU("gpu"),

    /** Android's Neural Networks API (a DSP or NPU where the SoC's driver offers one). */
    NNAPI("nnapi");

    companion object {
        /** The delegate called [id]; [ArgumentException] naming the choices otherwise. */
        fun fromId(id: String): Delegate =
            entries.firstOrNull { it.id == id.trim().lowercase() }
                ?: throw ArgumentException(
                    "delegate must be one of ${entries.joinToString(", ") { it.id }}, got '$id'",
                )
    }
}

/** Bad benchmark arguments; its message is one sentence naming the argument. */
class ArgumentException(message: String) : IllegalArgumentException(message)

/**
 * One benchmark's arguments, as the adb driver passes them in intent extras.
 *
 * The names and defaults follow TFLite's `benchmark_model` (`--num_threads`, `--warmup_runs`,
 * `--num_runs`), so the same numbers mean the same thing on the host and on a phone.
 *
 * @property model The `.tflite` file on the device, e.g. under `/data/local/tmp`.
 * @property numThreads Interpreter threads (CPU and XNNPACK).
 * @property warmupRuns Runs before the timed ones; the first is reported as the first inference.
 * @property numRuns Timed runs.
 * @property delegate Where the model runs.
 * @property image An optional PNG or JPEG on the device, brought to the model's input by [ResizePolicy]
 *   (the policy the converter was trained with); without
 *   one the input is seeded random pixels (int8 latency depends on the data: prefer an image).
 * @property runId Names the result file (`<runId>.json` in the app's files dir) and the logcat line.
 * @property outputStep The output grid step of the file's contract (`dapter_io_contract` in its
 *   metadata; the adb driver reads it): the last output is decoded with it ([OutputDecoding]) into
 *   the pixels the phone would send. 1 for float files, whose grid is inside.
 * @property yardstick An optional second `.tflite` on the device, MobileNetV2 1.0 as a full-int8 file
 *   (the host's `export/benchmark/yardstick.py` writes it): timed beside [model] with the same threads, delegate,
 *   warm-up and runs, one run of each in turn, so that the phone gives the converter's latency as a
 *   ratio of the model every Android team knows, set beside the host's ratio.
 */
data class BenchmarkArgs(
    val model: String,
    val numThreads: Int = DEFAULT_NUM_THREADS,
    val warmupRuns: Int = DEFAULT_WARMUP_RUNS,
    val numRuns: Int = DEFAULT_NUM_RUNS,
    val delegate: Delegate = Delegate.XNNPACK,
    val image: String? = null,
    val runId: String = DEFAULT_RUN_ID,
    val outputStep: Int = 1,
    val yardstick: String? = null,
) {
    init {
        if (model.isBlank()) throw ArgumentException("$MODEL must name a .tflite file on the device")
        checkRange(NUM_THREADS, numThreads, 1, MAX_THREADS)
        checkRange(WARMUP_RUNS, warmupRuns, 1, MAX_RUNS)
        checkRange(NUM_RUNS, numRuns, 1, MAX_RUNS)
        checkRange(OUTPUT_STEP, outputStep, 1, 255)
        if (yardstick != null && yardstick.isBlank()) throw ArgumentException("$YARDSTICK must name a .tflite file on the device")
        if (yardstick == model) throw ArgumentException("$YARDSTICK must be another file than $MODEL, got '$model' for both")
        if (!RUN_ID_PATTERN.matches(runId)) {
            throw ArgumentException("$RUN_ID must be letters, digits, '.', '_' or '-' (a file name), got '$runId'")
        }
    }

    /**
     * The intent extras that carry these arguments, in `am start` syntax (`--es key value` each).
     *
     * Every value travels as a string extra so that one parser reads them all; the adb driver
     * (`tools/adb_benchmark.py`) builds the same list and its tests assert it.
     */
    fun toAmStartExtras(): List<String> {
        val extras = mutableListOf(
            "--es", MODEL, model,
            "--es", NUM_THREADS, numThreads.toString(),
            "--es", WARMUP_RUNS, warmupRuns.toString(),
            "--es", NUM_RUNS, numRuns.toString(),
            "--es", DELEGATE, delegate.id,
            "--es", RUN_ID, runId,
        )
        if (image != null) extras += listOf("--es", IMAGE, image)
        if (outputStep != 1) extras += listOf("--es", OUTPUT_STEP, outputStep.toString())
        if (yardstick != null) extras += listOf("--es", YARDSTICK, yardstick)
        return extras
    }

    companion object {
        const val MODEL = "model"
        const val NUM_THREADS = "num_threads"
        const val WARMUP_RUNS = "warmup_runs"
        const val NUM_RUNS = "num_runs"
        const val DELEGATE = "delegate"
        const val IMAGE = "image"
        const val RUN_ID = "run_id"
        const val OUTPUT_STEP = "output_step"
        const val YARDSTICK = "yardstick"

        /** Every extra the Activity reads; any other is refused, so a misspelt one is not ignored. */
        val KEYS = listOf(MODEL, NUM_THREADS, WARMUP_RUNS, NUM_RUNS, DELEGATE, IMAGE, RUN_ID, OUTPUT_STEP, YARDSTICK)

        const val DEFAULT_NUM_THREADS = 1
        const val DEFAULT_WARMUP_RUNS = 1
        const val DEFAULT_NUM_RUNS = 50
        const val DEFAULT_RUN_ID = "dapter_bench"
        const val MAX_THREADS = 64
        const val MAX_RUNS = 100_000
        /** A run id names a file: letters, digits, '.', '_' and '-'. */
        val RUN_ID_PATTERN = Regex("[A-Za-z0-9._-]{1,100}")

        /**
         * Parses intent extras, each given as its string form (an `--ei` integer extra arrives as
         * its decimal text), into validated arguments.
         *
         * @throws ArgumentException naming the first bad or unknown extra.
         */
        fun parse(extras: Map<String, String?>): BenchmarkArgs {
            val unknown = extras.keys.filter { it !in KEYS }.sorted()
            if (unknown.isNotEmpty()) {
                throw ArgumentException(
                    "unknown extra ${unknown.joinToString(", ") { "'$it'" }}; the extras are ${KEYS.joinToString(", ")}",
                )
            }
            val model = extras[MODEL]?.takeIf { it.isNotBlank() }
                ?: throw ArgumentException("the extra '$MODEL' (the .tflite file on the device) is required")
            return BenchmarkArgs(
                model = model,
                numThreads = intExtra(extras, NUM_THREADS, DEFAULT_NUM_THREADS),
                warmupRuns = intExtra(extras, WARMUP_RUNS, DEFAULT_WARMUP_RUNS),
                numRuns = intExtra(extras, NUM_RUNS, DEFAULT_NUM_RUNS),
                delegate = extras[DELEGATE]?.let { Delegate.fromId(it) } ?: Delegate.XNNPACK,
                image = extras[IMAGE]?.takeIf { it.isNotBlank() },
                runId = extras[RUN_ID]?.takeIf { it.isNotBlank() } ?: DEFAULT_RUN_ID,
                outputStep = intExtra(extras, OUTPUT_STEP, 1),
                yardstick = extras[YARDSTICK]?.takeIf { it.isNotBlank() },
            )
        }

        private fun intExtra(extras: Map<String, String?>, key: String, default: Int): Int {
            val text = extras[key] ?: return default
            return text.trim().toIntOrNull() ?: throw ArgumentException("$key must be an integer, got '$text'")
        }

        private fun checkRange(key: String, value: Int, min: Int, max: Int) {
            if (value !in min..max) throw ArgumentException("$key must be in $min..$max, got $value")
        }
    }
}

/**
 * Arguments to label a failure with when the extras themselves were bad: the model and run id as
 * given where they can name a file, defaults otherwise. The result then still reaches the adb
 * driver, at the path it waits on, with the parser's message.
 */
fun argumentsForFailure(extras: Map<String, String?>): BenchmarkArgs {
    val runId = extras[BenchmarkArgs.RUN_ID]?.takeIf { BenchmarkArgs.RUN_ID_PATTERN.matches(it) }
        ?: BenchmarkArgs.DEFAULT_RUN_ID
    val model = extras[BenchmarkArgs.MODEL]?.takeIf { it.isNotBlank() } ?: "(none)"
    return BenchmarkArgs(model = model, runId = runId)
}

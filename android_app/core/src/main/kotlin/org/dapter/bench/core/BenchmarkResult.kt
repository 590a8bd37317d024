package org.dapter.bench.core

/**
 * A model tensor as the interpreter describes it.
 *
 * @property dtype TFLite's type name in lower case: float32, uint8, int8, ...
 * @property scale Quantization scale (0 for a float tensor).
 * @property zeroPoint Quantization zero point.
 */
data class TensorInfo(val shape: List<Int>, val dtype: String, val scale: Double = 0.0, val zeroPoint: Int = 0)

/**
 * The phone the benchmark ran on, from `android.os.Build` (the adb driver reads the same values
 * with `getprop`).
 *
 * @property socManufacturer `Build.SOC_MANUFACTURER`, empty before Android 12 (API 31).
 * @property socModel `Build.SOC_MODEL`, e.g. SM8150 for a Snapdragon 855; empty before API 31.
 * @property hardware `Build.HARDWARE` (e.g. qcom, kirin980, mt6785): the SoC family on older phones.
 */
data class DeviceInfo(
    val manufacturer: String,
    val model: String,
    val socManufacturer: String,
    val socModel: String,
    val hardware: String,
    val board: String,
    val androidRelease: String,
    val sdkInt: Int,
    val abi: String,
)

/**
 * The yardstick's run beside the converter ([BenchmarkArgs.yardstick]): its file and timings.
 *
 * @property modelBytes The yardstick file's size.
 * @property stats Its timings, from the same rounds as the converter's.
 */
data class YardstickRun(val modelBytes: Long, val stats: TimingStats)

/**
 * One benchmark's outcome: what was run, where, and its timings or why it failed.
 *
 * The keys of [toMap] are those of the host benchmark's JSON rows (`init_us`, `avg_us`, ...),
 * plus the device's, so that the adb driver can put phone and host rows in one table.
 */
data class BenchmarkResult(
    val args: BenchmarkArgs,
    val device: DeviceInfo,
    val runtimeVersion: String = "",
    val modelBytes: Long = 0,
    val input: TensorInfo? = null,
    val output: TensorInfo? = null,
    val stats: TimingStats? = null,
    val error: String? = null,
    val outputPixels: IntArray? = null,
    val yardstick: YardstickRun? = null,
) {
    init {
        require((stats == null) != (error == null)) { "a result has either timings or an error, not both" }
    }

    val ok: Boolean get() = error == null

    /** The result as an ordered map of JSON values. */
    fun toMap(): Map<String, Any?> {
        val map = linkedMapOf<String, Any?>(
            "format" to FORMAT,
            "status" to if (ok) "ok" else "error",
            "error" to error,
            "run_id" to args.runId,
            "model" to args.model,
            "model_bytes" to modelBytes,
            "delegate" to args.delegate.id,
            "num_threads" to args.numThreads,
            "warmup_runs" to args.warmupRuns,
            "num_runs" to args.numRuns,
            "input_source" to (args.image?.let { "image:$it" } ?: "random"),
            "input_shape" to input?.shape,
            "input_dtype" to input?.dtype,
            "input_scale" to input?.scale,
            "input_zero_point" to input?.zeroPoint,
            "output_shape" to output?.shape,
            "output_dtype" to output?.dtype,
            "output_scale" to output?.scale,
            "output_zero_point" to output?.zeroPoint,
            "output_step" to args.outputStep,
            "output_pixels_sha256" to outputPixels?.let { pixelsSha256(it) },
            "runtime_version" to runtimeVersion,
            "device_manufacturer" to device.manufacturer,
            "device_model" to device.model,
            "soc_manufacturer" to device.socManufacturer,
            "soc_model" to device.socModel,
            "hardware" to device.hardware,
            "board" to device.board,
            "android_release" to device.androidRelease,
            "sdk_int" to device.sdkInt,
            "abi" to device.abi,
        )
        map += listOf(
            "init_us" to stats?.initUs,
            "first_inference_us" to stats?.firstInferenceUs,
            "warmup_avg_us" to stats?.warmupAvgUs,
            "avg_us" to stats?.avgUs,
            "min_us" to stats?.minUs,
            "max_us" to stats?.maxUs,
            "std_us" to stats?.stdUs,
            "p50_us" to stats?.p50Us,
            "p90_us" to stats?.p90Us,
            "count" to stats?.count,
        )
        // The yardstick beside it, and the ratio of the fastest runs, as the host's `ratio_to_yardstick`.
        val y = yardstick?.stats
        map += listOf(
            "yardstick_model" to args.yardstick,
            "yardstick_model_bytes" to yardstick?.modelBytes,
            "yardstick_init_us" to y?.initUs,
            "yardstick_first_inference_us" to y?.firstInferenceUs,
            "yardstick_warmup_avg_us" to y?.warmupAvgUs,
            "yardstick_avg_us" to y?.avgUs,
            "yardstick_min_us" to y?.minUs,
            "yardstick_max_us" to y?.maxUs,
            "yardstick_std_us" to y?.stdUs,
            "yardstick_p50_us" to y?.p50Us,
            "yardstick_p90_us" to y?.p90Us,
            "ratio_to_yardstick" to if (stats != null && y != null) stats.minUs / y.minUs else null,
        )
        return map
    }

    /** The result file's text: compact JSON and a newline. */
    fun toJson(): String = Json.write(toMap()) + "\n"

    /** The one logcat line (tag [LOG_TAG]) a script can grep for: [LOG_PREFIX] and the JSON. */
    fun logcatLine(): String = LOG_PREFIX + Json.write(toMap())

    companion object {
        /** Names the result layout; the adb driver refuses files of another. */
        const val FORMAT = "dapter-bench/1"
        const val LOG_TAG = "DapterBench"
        const val LOG_PREFIX = "DAPTER_BENCH_RESULT "

        /**
         * SHA-256 (hex) of decoded pixels as bytes, in tensor order: the host's
         * `hashlib.sha256(pixels.astype(np.uint8).tobytes())` of the same image gives the same text.
         */
        fun pixelsSha256(pixels: IntArray): String {
            val digest = java.security.MessageDigest.getInstance("SHA-256")
            return digest.digest(ByteArray(pixels.size) { pixels[it].toByte() }).joinToString("") { "%02x".format(it) }
        }

        /** The result file's name in the app's files dir. */
        fun fileName(runId: String): String = "$runId.json"
    }
}

package org.dapter.bench

import android.app.Activity
import android.os.Bundle
import android.util.Log
import android.widget.TextView
import org.dapter.bench.core.ArgumentException
import org.dapter.bench.core.BenchmarkArgs
import org.dapter.bench.core.BenchmarkResult
import org.dapter.bench.core.argumentsForFailure
import java.io.File

/**
 * The harness's one Activity: started by the adb driver with intent extras, it benchmarks one
 * `.tflite` file, writes `<run_id>.json` to the app's external files dir
 * (`/sdcard/Android/data/org.dapter.bench/files/`, which `adb pull` can read), logs one
 * `DAPTER_BENCH_RESULT {json}` line under the tag `DapterBench`, and finishes.
 *
 *     adb shell am start -W -S -n org.dapter.bench/.BenchmarkActivity \
 *         --es model /data/local/tmp/dapter/converter_int8.tflite --es num_threads 4 \
 *         --es warmup_runs 5 --es num_runs 50 --es delegate xnnpack --es run_id r1
 *
 * Like TFLite's `BenchmarkModelActivity`, it holds no state and no UI beyond a line of text.
 */
class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(TextView(this).apply { text = "dapter benchmark running…" })
        val extras = readExtras(intent.extras)
        // Off the main thread: a 224x224 converter at 50 runs takes seconds, which would freeze
        // the Activity and could have Android report it as not responding.
        Thread({
            val result = benchmark(extras)
            publish(result)
            runOnUiThread { finish() }
        }, "dapter-benchmark").start()
    }

    private fun benchmark(extras: Map<String, String?>): BenchmarkResult {
        val args = try {
            BenchmarkArgs.parse(extras)
        } catch (e: ArgumentException) {
            return BenchmarkResult(argumentsForFailure(extras), ConverterBenchmark.describeDevice(), error = e.message)
        }
        return ConverterBenchmark(args).use { it.run() }
    }

    /** Writes the result file atomically (the driver polls for it) and logs its one line. */
    private fun publish(result: BenchmarkResult) {
        val dir = getExternalFilesDir(null) ?: filesDir
        val file = File(dir, BenchmarkResult.fileName(result.args.runId))
        val partial = File(dir, file.name + ".partial")
        partial.writeText(result.toJson())
        if (!partial.renameTo(file)) Log.e(BenchmarkResult.LOG_TAG, "could not write $file")
        if (result.ok) Log.i(BenchmarkResult.LOG_TAG, result.logcatLine()) else Log.e(BenchmarkResult.LOG_TAG, result.logcatLine())
    }

    companion object {
        /** Every extra as its string form: `--es` strings as they are, `--ei` integers as decimal text. */
        @Suppress("DEPRECATION") // Bundle.get(String): the one getter that takes any extra's type.
        fun readExtras(bundle: Bundle?): Map<String, String?> =
            bundle?.keySet()?.associateWith { bundle.get(it)?.toString() } ?: emptyMap()
    }
}

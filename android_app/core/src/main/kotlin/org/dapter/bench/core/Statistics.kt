package org.dapter.bench.core

import kotlin.math.ceil
import kotlin.math.floor
import kotlin.math.sqrt

/**
 * What TFLite's `benchmark_model` prints for one model, in microseconds, with the same fields as
 * the host benchmark (`export/benchmark/benchmark_lib.py`), so phone and host rows can be compared.
 *
 * @property initUs Building the interpreter (delegates included) and allocating its tensors.
 * @property firstInferenceUs The first warm-up run.
 * @property warmupAvgUs The mean of all warm-up runs, the first included.
 * @property count How many timed runs the remaining fields summarise.
 */
data class TimingStats(
    val initUs: Double,
    val firstInferenceUs: Double,
    val warmupAvgUs: Double,
    val avgUs: Double,
    val minUs: Double,
    val maxUs: Double,
    val stdUs: Double,
    val p50Us: Double,
    val p90Us: Double,
    val count: Int,
)

/** Summary statistics of timed runs. */
object Statistics {
    /** Arithmetic mean; an empty sample is an error. */
    fun mean(samples: List<Double>): Double {
        require(samples.isNotEmpty()) { "the mean of no samples is undefined" }
        return samples.sum() / samples.size
    }

    /**
     * Population standard deviation (divides by n, not n - 1), as numpy's `std()` and
     * `benchmark_model`'s `Stat` do: a run of 50 timings describes itself, it is not a sample
     * of a larger population we estimate.
     */
    fun std(samples: List<Double>): Double {
        val m = mean(samples)
        return sqrt(samples.sumOf { (it - m) * (it - m) } / samples.size)
    }

    /**
     * The [q]-th percentile (0..100) with linear interpolation between closest ranks: numpy's
     * default `np.percentile`, which the host benchmark uses.
     */
    fun percentile(samples: List<Double>, q: Double): Double {
        require(samples.isNotEmpty()) { "the percentile of no samples is undefined" }
        require(q in 0.0..100.0) { "a percentile must be in 0..100, got $q" }
        val sorted = samples.sorted()
        val rank = q / 100.0 * (sorted.size - 1)
        val lo = floor(rank).toInt()
        val hi = ceil(rank).toInt()
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo)
    }

    /**
     * Summarises one benchmark as `benchmark_model` reports it.
     *
     * @param initUs Time to build the interpreter and allocate tensors.
     * @param warmupUs Every warm-up run in order; the first is reported as the first inference.
     * @param runsUs The timed runs.
     */
    fun summarize(initUs: Double, warmupUs: List<Double>, runsUs: List<Double>): TimingStats {
        require(warmupUs.isNotEmpty()) { "at least one warm-up run is needed (the first inference)" }
        require(runsUs.isNotEmpty()) { "at least one timed run is needed" }
        return TimingStats(
            initUs = initUs,
            firstInferenceUs = warmupUs.first(),
            warmupAvgUs = mean(warmupUs),
            avgUs = mean(runsUs),
            minUs = runsUs.min(),
            maxUs = runsUs.max(),
            stdUs = std(runsUs),
            p50Us = percentile(runsUs, 50.0),
            p90Us = percentile(runsUs, 90.0),
            count = runsUs.size,
        )
    }

    /**
     * Times [n] rounds of [calls], one run of each in turn, so that a passing load on the phone (a
     * thermal step, a background job) falls on every model alike and their ratio holds.
     *
     * @param clock Nanoseconds, `System.nanoTime` on a phone; a test passes its own.
     * @return Per call, its [n] durations in microseconds, in the order they ran.
     */
    fun interleave(n: Int, calls: List<() -> Unit>, clock: () -> Long = System::nanoTime): List<List<Double>> {
        val times = List(calls.size) { mutableListOf<Double>() }
        repeat(n) {
            calls.forEachIndexed { i, call ->
                val start = clock()
                call()
                times[i] += nanosToMicros(clock() - start)
            }
        }
        return times
    }

    /** Nanoseconds (from `System.nanoTime` differences) as microseconds. */
    fun nanosToMicros(nanos: Long): Double = nanos / 1000.0
}

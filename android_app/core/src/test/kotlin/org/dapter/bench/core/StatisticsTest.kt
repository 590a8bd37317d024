package org.dapter.bench.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

class StatisticsTest {
    // Five timings whose figures can be checked by hand:
    //   mean = (1 + 2 + 3 + 4 + 10) / 5 = 4
    //   population variance = (9 + 4 + 1 + 0 + 36) / 5 = 10, std = sqrt(10)
    //   p50: rank 0.5 * 4 = 2 -> sorted[2] = 3
    //   p90: rank 0.9 * 4 = 3.6 -> 4 + 0.6 * (10 - 4) = 7.6
    private val runs = listOf(10.0, 1.0, 4.0, 2.0, 3.0)

    @Test
    fun meanAndPopulationStd() {
        assertEquals(4.0, Statistics.mean(runs), 1e-12)
        assertEquals(Math.sqrt(10.0), Statistics.std(runs), 1e-12)
    }

    @Test
    fun percentilesInterpolateLikeNumpy() {
        assertEquals(3.0, Statistics.percentile(runs, 50.0), 1e-12)
        assertEquals(7.6, Statistics.percentile(runs, 90.0), 1e-12)
        assertEquals(1.0, Statistics.percentile(runs, 0.0), 1e-12)
        assertEquals(10.0, Statistics.percentile(runs, 100.0), 1e-12)
        // An even count: the median halves the two middle values, np.percentile([1, 2, 3, 4], 50) = 2.5.
        assertEquals(2.5, Statistics.percentile(listOf(4.0, 1.0, 3.0, 2.0), 50.0), 1e-12)
        // np.percentile([1, 2, 3, 4], 90) = 3 + 0.7 * 1 = 3.7.
        assertEquals(3.7, Statistics.percentile(listOf(1.0, 2.0, 3.0, 4.0), 90.0), 1e-12)
    }

    @Test
    fun oneSampleIsItsOwnSummary() {
        val s = Statistics.summarize(5.0, listOf(7.0), listOf(3.0))
        assertEquals(TimingStats(5.0, 7.0, 7.0, 3.0, 3.0, 3.0, 0.0, 3.0, 3.0, 1), s)
    }

    @Test
    fun summarizeReportsWhatBenchmarkModelPrints() {
        val s = Statistics.summarize(initUs = 1500.0, warmupUs = listOf(30.0, 12.0, 9.0), runsUs = runs)
        assertEquals(1500.0, s.initUs)
        assertEquals(30.0, s.firstInferenceUs) // the first warm-up run
        assertEquals(17.0, s.warmupAvgUs, 1e-12) // (30 + 12 + 9) / 3, the first included
        assertEquals(4.0, s.avgUs, 1e-12)
        assertEquals(1.0, s.minUs)
        assertEquals(10.0, s.maxUs)
        assertEquals(Math.sqrt(10.0), s.stdUs, 1e-12)
        assertEquals(3.0, s.p50Us, 1e-12)
        assertEquals(7.6, s.p90Us, 1e-12)
        assertEquals(5, s.count)
    }

    @Test
    fun interleaveRunsEachCallInTurnAndTimesEachOnItsOwn() {
        // A fake clock that the calls themselves move: the converter takes 2 us, the yardstick 5 us.
        var now = 0L
        val order = mutableListOf<String>()
        val calls = listOf({ order += "converter"; now += 2_000L }, { order += "yardstick"; now += 5_000L })
        val times = Statistics.interleave(3, calls) { now }
        assertEquals(listOf("converter", "yardstick", "converter", "yardstick", "converter", "yardstick"), order)
        assertEquals(listOf(listOf(2.0, 2.0, 2.0), listOf(5.0, 5.0, 5.0)), times)
    }

    @Test
    fun nanosBecomeMicros() {
        assertEquals(1234.567, Statistics.nanosToMicros(1_234_567L), 1e-12)
    }

    @Test
    fun emptySamplesAreRefused() {
        assertThrows<IllegalArgumentException> { Statistics.mean(emptyList()) }
        assertThrows<IllegalArgumentException> { Statistics.percentile(emptyList(), 50.0) }
        assertThrows<IllegalArgumentException> { Statistics.percentile(runs, 101.0) }
        assertThrows<IllegalArgumentException> { Statistics.summarize(1.0, emptyList(), runs) }
        assertThrows<IllegalArgumentException> { Statistics.summarize(1.0, runs, emptyList()) }
    }
}

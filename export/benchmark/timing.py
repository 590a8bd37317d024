"""The fields every latency figure is reported in: TFLite ``benchmark_model``'s, in microseconds.

Shared by the host benchmark (``benchmark_lib``), the phone driver (``android_app/tools/adb_lib``)
and the Android app's result JSON (``BenchmarkResult`` in ``android_app/core``), so a row of each
can sit in one table. Kept apart from ``benchmark_lib`` so that the driver imports no TensorFlow.
"""

STAT_FIELDS = (
    "init_us",
    "first_inference_us",
    "warmup_avg_us",
    "avg_us",
    "min_us",
    "max_us",
    "std_us",
    "p50_us",
    "p90_us",
)

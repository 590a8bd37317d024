"""The TFLite export: every quantization mode of a converter, each file gated on parity with Keras.

``export_tflite`` is the binary (``dapter-export-tflite``); ``contract`` is the output contract every
reader of a ``.tflite`` file shares (the release, convert, the benchmarks and the Android harness).
"""

"""Timing ``.tflite`` files as TFLite's ``benchmark_model`` does, beside MobileNetV2 1.0 int8 (the yardstick).

``benchmark_tflite`` is the binary (``dapter-benchmark-tflite``); ``timing`` holds the fields the phone
driver shares, without TensorFlow.
"""

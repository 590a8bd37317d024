package org.dapter.bench

import android.graphics.BitmapFactory
import android.os.Build
import org.dapter.bench.core.ArgumentException
import org.dapter.bench.core.BenchmarkArgs
import org.dapter.bench.core.BenchmarkResult
import org.dapter.bench.core.Delegate
import org.dapter.bench.core.DeviceInfo
import org.dapter.bench.core.InputEncoding
import org.dapter.bench.core.OutputDecoding
import org.dapter.bench.core.ResizePolicy
import org.dapter.bench.core.Statistics
import org.dapter.bench.core.TensorInfo
import org.dapter.bench.core.YardstickRun
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor
import org.tensorflow.lite.TensorFlowLite
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.io.Closeable
import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/**
 * Owns one TFLite [Interpreter] and its delegate, and times a converter the way TFLite's
 * `benchmark_model` does: init (interpreter, delegate and tensor allocation), the warm-up runs
 * (the first reported on its own), then the timed runs.
 *
 * Only `Interpreter.run` (after two buffer rewinds) is timed, with `System.nanoTime`: the input is
 * encoded once, before the first run, as a phone app would keep its buffers. Tensor shapes, types
 * and quantization come from the model, never from constants, so the same APK times any converter
 * export (float32, float16, dynamic range, int8 with uint8 or float I/O). With a yardstick
 * ([BenchmarkArgs.yardstick]) a second interpreter, with the same options, runs it in turn with the
 * converter ([Statistics.interleave]).
 */
class ConverterBenchmark(private val args: BenchmarkArgs) : Closeable {
    // The converter's interpreter first, then the yardstick's; each owns its delegate (a GPU
    // delegate serves one interpreter).
    private val interpreters = mutableListOf<Interpreter>()
    private val delegates = mutableListOf<org.tensorflow.lite.Delegate>()

    /** Runs the benchmark; any failure becomes a result with its message rather than a crash. */
    fun run(): BenchmarkResult {
        val device = describeDevice()
        return try {
            measure(device)
        } catch (e: ArgumentException) {
            BenchmarkResult(args, device, error = e.message)
        } catch (e: Exception) {
            // TFLite reports a bad model or an unsupported delegate as IllegalArgumentException or
            // IllegalStateException; their messages say which op or delegate failed.
            BenchmarkResult(args, device, error = "${e.javaClass.simpleName}: ${e.message}")
        }
    }

    private fun measure(device: DeviceInfo): BenchmarkResult {
        val modelFile = File(args.model)
        if (!modelFile.isFile || !modelFile.canRead()) {
            throw ArgumentException("cannot read ${args.model}: adb push the .tflite there and make it world-readable")
        }
        val yardstickFile = args.yardstick?.let { File(it) }
        if (yardstickFile != null && (!yardstickFile.isFile || !yardstickFile.canRead())) {
            throw ArgumentException("cannot read the yardstick ${args.yardstick}: adb push it there and make it world-readable")
        }
        val (interpreter, initUs) = open(modelFile)

        val input = describe(interpreter.getInputTensor(0))
        val output = describe(interpreter.getOutputTensor(0))
        InputEncoding.checkConverterInput(input)
        val pixels = args.image?.let { readImage(it, width = input.shape[2], height = input.shape[1]) }
            ?: InputEncoding.randomPixels(input)
        val inputBuffer = InputEncoding.encode(pixels, input)
        val outputBuffer = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder())

        val calls = mutableListOf({ runOnce(interpreter, inputBuffer, outputBuffer) })
        var yardstickInitUs = 0.0
        if (yardstickFile != null) {
            // MobileNetV2 on seeded random pixels: its cost does not depend on them (nor on its weights).
            val (yardstick, initYardstick) = open(yardstickFile)
            yardstickInitUs = initYardstick
            val yardstickInput = InputEncoding.encode(
                InputEncoding.randomPixels(describe(yardstick.getInputTensor(0))), describe(yardstick.getInputTensor(0)),
            )
            val yardstickOutput = ByteBuffer.allocateDirect(yardstick.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder())
            calls += { runOnce(yardstick, yardstickInput, yardstickOutput) }
        }
        // One run of each model in turn (Statistics.interleave), warm-up and timed runs alike.
        val warmupUs = Statistics.interleave(args.warmupRuns, calls)
        val runsUs = Statistics.interleave(args.numRuns, calls)
        // The output contract: the last run's output as the pixels the phone would send.
        val sent = OutputDecoding.decode(outputBuffer, output, args.outputStep)
        return BenchmarkResult(
            args = args,
            device = device,
            runtimeVersion = TensorFlowLite.runtimeVersion(),
            modelBytes = modelFile.length(),
            input = input,
            output = output,
            stats = Statistics.summarize(initUs, warmupUs[0], runsUs[0]),
            outputPixels = sent,
            yardstick = yardstickFile?.let {
                YardstickRun(it.length(), Statistics.summarize(yardstickInitUs, warmupUs[1], runsUs[1]))
            },
        )
    }

    /** Builds an interpreter for [file] with this benchmark's threads and delegate; returns it and its init time. */
    private fun open(file: File): Pair<Interpreter, Double> {
        val model = mapModel(file)
        val initStart = System.nanoTime()
        val interpreter = Interpreter(model, buildOptions()).also { interpreters += it }
        interpreter.allocateTensors()
        return interpreter to Statistics.nanosToMicros(System.nanoTime() - initStart)
    }

    private fun buildOptions(): Interpreter.Options {
        val options = Interpreter.Options().setNumThreads(args.numThreads)
        when (args.delegate) {
            Delegate.CPU -> options.setUseXNNPACK(false)
            Delegate.XNNPACK -> options.setUseXNNPACK(true)
            Delegate.GPU -> {
                val supported = CompatibilityList().use { it.isDelegateSupportedOnThisDevice }
                if (!supported) throw ArgumentException("the GPU delegate is not supported on this device (${Build.MODEL})")
                options.addDelegate(GpuDelegate().also { delegates += it })
            }
            Delegate.NNAPI -> options.addDelegate(NnApiDelegate().also { delegates += it })
        }
        return options
    }

    /** One run; only `Interpreter.run` falls between the clock readings of [Statistics.interleave]. */
    private fun runOnce(interpreter: Interpreter, input: ByteBuffer, output: ByteBuffer) {
        input.rewind()
        output.rewind()
        interpreter.run(input, output)
    }

    override fun close() {
        interpreters.forEach { it.close() }
        interpreters.clear()
        delegates.forEach { it.close() }
        delegates.clear()
    }

    companion object {
        /** Memory-maps the model, as TFLite's sample apps do with their assets. */
        fun mapModel(file: File): MappedByteBuffer =
            FileInputStream(file).use { it.channel.map(FileChannel.MapMode.READ_ONLY, 0, file.length()) }

        /** A tensor's shape, type and quantization as the core describes them. */
        fun describe(tensor: Tensor): TensorInfo {
            val q = tensor.quantizationParams()
            return TensorInfo(tensor.shape().toList(), tensor.dataType().name.lowercase(), q.scale.toDouble(), q.zeroPoint)
        }

        /**
         * The photo at [path] brought to the model's input by the resize policy the converter was
         * trained with ([ResizePolicy]: a centre crop to the input's aspect, then Pillow's box
         * filter), as R, G, B values: the pixels `dapter-convert` would give the converter.
         */
        fun readImage(path: String, width: Int, height: Int): IntArray {
            val decoded = BitmapFactory.decodeFile(path)
                ?: throw ArgumentException("cannot decode $path as an image: push a PNG or JPEG the app can read")
            val argb = IntArray(decoded.width * decoded.height)
            decoded.getPixels(argb, 0, decoded.width, 0, 0, decoded.width, decoded.height)
            return ResizePolicy.fit(InputEncoding.argbToRgb(argb), decoded.width, decoded.height, width, height)
        }

        /** The phone and its SoC, from `android.os.Build`. */
        fun describeDevice(): DeviceInfo = DeviceInfo(
            manufacturer = Build.MANUFACTURER,
            model = Build.MODEL,
            socManufacturer = buildString("SOC_MANUFACTURER"),
            socModel = buildString("SOC_MODEL"),
            hardware = Build.HARDWARE,
            board = Build.BOARD,
            androidRelease = Build.VERSION.RELEASE,
            sdkInt = Build.VERSION.SDK_INT,
            abi = primaryAbi(),
        )

        /**
         * A `Build` field that newer Android versions have (SOC_MODEL and SOC_MANUFACTURER from API
         * 31), read by reflection so the class also compiles against the API-16 stub jar that our
         * Maven compile check uses; empty where the phone's Android lacks it.
         */
        private fun buildString(field: String): String =
            try {
                Build::class.java.getField(field).get(null) as? String ?: ""
            } catch (e: NoSuchFieldException) {
                ""
            }

        /** The first of `Build.SUPPORTED_ABIS` (API 21), else the older `Build.CPU_ABI`. */
        @Suppress("DEPRECATION")
        private fun primaryAbi(): String =
            try {
                (Build::class.java.getField("SUPPORTED_ABIS").get(null) as? Array<*>)?.firstOrNull()?.toString() ?: Build.CPU_ABI
            } catch (e: NoSuchFieldException) {
                Build.CPU_ABI
            }
    }
}

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
 * Only `Interpreter.run` is timed, with `System.nanoTime`: the input is encoded once, before the
 * first run, as a phone app would keep its buffers. Tensor shapes, types and quantization come from
 * the model, never from constants, so the same APK times any converter export (float32, float16,
 * dynamic range, int8 with uint8 or float I/O).
 */
class ConverterBenchmark(private val args: BenchmarkArgs) : Closeable {
    private var interpreter: Interpreter? = null
    private var delegate: org.tensorflow.lite.Delegate? = null

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
        val model = mapModel(modelFile)

        val initStart = System.nanoTime()
        val interpreter = Interpreter(model, buildOptions()).also { this.interpreter = it }
        interpreter.allocateTensors()
        val initUs = Statistics.nanosToMicros(System.nanoTime() - initStart)

        val input = describe(interpreter.getInputTensor(0))
        val output = describe(interpreter.getOutputTensor(0))
        InputEncoding.checkConverterInput(input)
        val pixels = args.image?.let { readImage(it, width = input.shape[2], height = input.shape[1]) }
            ?: InputEncoding.randomPixels(input)
        val inputBuffer = InputEncoding.encode(pixels, input)
        val outputBuffer = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder())

        val warmupUs = timeRuns(interpreter, inputBuffer, outputBuffer, args.warmupRuns)
        val runsUs = timeRuns(interpreter, inputBuffer, outputBuffer, args.numRuns)
        // The output contract: the last run's output as the pixels the phone would send.
        val sent = OutputDecoding.decode(outputBuffer, output, args.outputStep)
        return BenchmarkResult(
            args = args,
            device = device,
            runtimeVersion = TensorFlowLite.runtimeVersion(),
            modelBytes = modelFile.length(),
            input = input,
            output = output,
            stats = Statistics.summarize(initUs, warmupUs, runsUs),
            outputPixels = sent,
        )
    }

    private fun buildOptions(): Interpreter.Options {
        val options = Interpreter.Options().setNumThreads(args.numThreads)
        when (args.delegate) {
            Delegate.CPU -> options.setUseXNNPACK(false)
            Delegate.XNNPACK -> options.setUseXNNPACK(true)
            Delegate.GPU -> {
                val supported = CompatibilityList().use { it.isDelegateSupportedOnThisDevice }
                if (!supported) throw ArgumentException("the GPU delegate is not supported on this device (${Build.MODEL})")
                options.addDelegate(GpuDelegate().also { delegate = it })
            }
            Delegate.NNAPI -> options.addDelegate(NnApiDelegate().also { delegate = it })
        }
        return options
    }

    private fun timeRuns(interpreter: Interpreter, input: ByteBuffer, output: ByteBuffer, n: Int): List<Double> =
        List(n) {
            input.rewind()
            output.rewind()
            val start = System.nanoTime()
            interpreter.run(input, output)
            Statistics.nanosToMicros(System.nanoTime() - start)
        }

    override fun close() {
        interpreter?.close()
        interpreter = null
        delegate?.close()
        delegate = null
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

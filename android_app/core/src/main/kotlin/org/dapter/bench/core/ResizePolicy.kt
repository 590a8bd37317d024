package org.dapter.bench.core

/**
 * The one resize policy that brings a photo of any size to the converter's input, as the
 * converter was trained: `dapter_tf/resize.py` (`RESIZE_POLICY`, `fit_image`), which training,
 * the attacks and `dapter-convert` share.
 *
 * 1. Centre-crop to the converter's aspect ratio: the largest centred window of that ratio, its
 *    free side rounded down to whole pixels (at least 1), an odd margin leaving its extra pixel on
 *    the right or at the bottom.
 * 2. Resize with Pillow's BOX filter, ported line for line from Pillow's `Resample.c`: each output
 *    pixel is the mean of the input pixels whose centres lie in its footprint, in 22-bit fixed
 *    point; the width first (on the rows the height pass reads), then the height, each pass
 *    rounded to 8 bits.
 *
 * Android's `Bitmap.createScaledBitmap` (bilinear, no crop) would hand the converter other pixels
 * than those it was trained on. A pure function of the bytes, so the JVM tests check it against
 * numbers Pillow computed.
 */
object ResizePolicy {
    /** Pillow's fixed-point precision for 8-bit images: 32 bits less 8 for the value, 2 for overflow. */
    private const val PRECISION_BITS = 32 - 8 - 2

    /**
     * The crop window of a [width] x [height] image for a [targetWidth] x [targetHeight] input.
     *
     * @return left, top, right, bottom (right and bottom exclusive).
     */
    fun centreCropBox(width: Int, height: Int, targetWidth: Int, targetHeight: Int): IntArray {
        val cropWidth: Int
        val cropHeight: Int
        if (width.toLong() * targetHeight > height.toLong() * targetWidth) { // Wider: cut left and right.
            cropWidth = maxOf(1, (height.toLong() * targetWidth / targetHeight).toInt())
            cropHeight = height
        } else { // Taller, or the same aspect: cut top and bottom.
            cropWidth = width
            cropHeight = maxOf(1, (width.toLong() * targetHeight / targetWidth).toInt())
        }
        val left = (width - cropWidth) / 2
        val top = (height - cropHeight) / 2
        return intArrayOf(left, top, left + cropWidth, top + cropHeight)
    }

    /**
     * Brings an RGB image to [targetWidth] x [targetHeight] by the policy.
     *
     * @param rgb [height] * [width] * 3 values in 0..255, row-major, channels last
     *   (what [InputEncoding.argbToRgb] gives).
     * @return [targetHeight] * [targetWidth] * 3 values, laid out the same way; [rgb] itself when
     *   the image already has the target's size.
     * @throws ArgumentException on sizes below 1 or a pixel array of another length.
     */
    fun fit(rgb: IntArray, width: Int, height: Int, targetWidth: Int, targetHeight: Int): IntArray {
        if (width < 1 || height < 1 || targetWidth < 1 || targetHeight < 1) {
            throw ArgumentException("cannot resize ${width}x$height to ${targetWidth}x$targetHeight: sizes must be >= 1")
        }
        if (rgb.size != width * height * 3) {
            throw ArgumentException("a ${width}x$height RGB image has ${width * height * 3} values, got ${rgb.size}")
        }
        if (width == targetWidth && height == targetHeight) return rgb
        val (left, top, right, bottom) = centreCropBox(width, height, targetWidth, targetHeight).toList()
        val horizontal = coefficients(width, left.toDouble(), right.toDouble(), targetWidth)
        val vertical = coefficients(height, top.toDouble(), bottom.toDouble(), targetHeight)
        var image = rgb
        var rows = height
        var firstRow = 0
        // Pillow skips a pass that would copy its axis unchanged; the port does the same.
        if (targetWidth != width || left != 0 || right != targetWidth) {
            // Only the rows the height pass reads: vertical.bounds are then relative to firstRow.
            firstRow = vertical.start[0]
            rows = vertical.start[targetHeight - 1] + vertical.count[targetHeight - 1] - firstRow
            image = horizontalPass(image, width, firstRow, rows, horizontal)
        }
        val imageWidth = if (image === rgb) width else targetWidth
        if (targetHeight != height || top != 0 || bottom != targetHeight) {
            image = verticalPass(image, imageWidth, firstRow, vertical)
        }
        return image
    }

    /** Each output pixel's first input pixel, number of input pixels and fixed-point weights. */
    private class Coefficients(val start: IntArray, val count: IntArray, val weights: Array<IntArray>)

    /** Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for the box filter (support 0.5). */
    private fun coefficients(inSize: Int, in0: Double, in1: Double, outSize: Int): Coefficients {
        val scale = (in1 - in0) / outSize
        val filterScale = maxOf(scale, 1.0)
        val support = 0.5 * filterScale
        val start = IntArray(outSize)
        val count = IntArray(outSize)
        val weights = Array(outSize) { IntArray(0) }
        for (xx in 0 until outSize) {
            val center = in0 + (xx + 0.5) * scale
            val ss = 1.0 / filterScale
            val xmin = maxOf((center - support + 0.5).toInt(), 0)
            val xmax = minOf((center + support + 0.5).toInt(), inSize) - xmin
            val k = DoubleArray(xmax) { x -> box((x + xmin - center + 0.5) * ss) }
            val ww = k.sum()
            start[xx] = xmin
            count[xx] = xmax
            weights[xx] = IntArray(xmax) { x ->
                val w = if (ww != 0.0) k[x] / ww else k[x]
                if (w < 0) (-0.5 + w * (1 shl PRECISION_BITS)).toInt() else (0.5 + w * (1 shl PRECISION_BITS)).toInt()
            }
        }
        return Coefficients(start, count, weights)
    }

    private fun box(x: Double): Double = if (x > -0.5 && x <= 0.5) 1.0 else 0.0

    private fun clip8(sum: Int): Int = when {
        sum >= (1 shl PRECISION_BITS shl 8) -> 255
        sum <= 0 -> 0
        else -> sum shr PRECISION_BITS
    }

    private fun horizontalPass(rgb: IntArray, width: Int, firstRow: Int, rows: Int, c: Coefficients): IntArray {
        val outWidth = c.start.size
        val out = IntArray(rows * outWidth * 3)
        for (y in 0 until rows) {
            for (xx in 0 until outWidth) {
                for (channel in 0 until 3) {
                    var sum = 1 shl (PRECISION_BITS - 1)
                    for (x in 0 until c.count[xx]) {
                        sum += rgb[((y + firstRow) * width + c.start[xx] + x) * 3 + channel] * c.weights[xx][x]
                    }
                    out[(y * outWidth + xx) * 3 + channel] = clip8(sum)
                }
            }
        }
        return out
    }

    private fun verticalPass(rgb: IntArray, width: Int, firstRow: Int, c: Coefficients): IntArray {
        val outHeight = c.start.size
        val out = IntArray(outHeight * width * 3)
        for (yy in 0 until outHeight) {
            for (x in 0 until width) {
                for (channel in 0 until 3) {
                    var sum = 1 shl (PRECISION_BITS - 1)
                    for (y in 0 until c.count[yy]) {
                        sum += rgb[((c.start[yy] - firstRow + y) * width + x) * 3 + channel] * c.weights[yy][y]
                    }
                    out[(yy * width + x) * 3 + channel] = clip8(sum)
                }
            }
        }
        return out
    }
}

package org.dapter.bench.core

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertSame
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

class ResizePolicyTest {
    /** The test image: pixel (x, y), channel c is (37 x + 91 y + 53 c) mod 256. */
    private fun image(width: Int, height: Int): IntArray =
        IntArray(width * height * 3) { i -> (37 * (i / 3 % width) + 91 * (i / 3 / width) + 53 * (i % 3)) % 256 }

    // The expected bytes were made with the Python side, Pillow 13.0.0:
    //   a = np.array([[[(37*x + 91*y + 53*c) % 256 for c in range(3)] for x in range(w)] for y in range(h)], np.uint8)
    //   dapter_tf.resize.fit_image(PIL.Image.fromarray(a), H, W).reshape(-1).tolist()

    @Test
    fun sixByFourToTwoByTwoAveragesTheCentreSquaresBlocks() {
        // Crop (1, 0, 5, 4): the middle 4 x 4; then each output pixel is a 2 x 2 block's mean.
        assertArrayEquals(intArrayOf(1, 0, 5, 4), ResizePolicy.centreCropBox(6, 4, 2, 2))
        val expected = intArrayOf(102, 155, 144, 176, 165, 154, 92, 81, 134, 102, 155, 144)
        assertArrayEquals(expected, ResizePolicy.fit(image(6, 4), 6, 4, 2, 2))
    }

    @Test
    fun sevenByFiveToThreeByTwoCropsTheBottomRowAndResizesByAFraction() {
        // Aspect 3:2 of a 7-wide image is 7 x 4 (4.67 rounded down), its odd margin at the bottom.
        assertArrayEquals(intArrayOf(0, 0, 7, 4), ResizePolicy.centreCropBox(7, 5, 3, 2))
        val expected = intArrayOf(65, 118, 171, 157, 167, 135, 122, 111, 100, 119, 108, 97, 83, 136, 146, 176, 165, 154)
        assertArrayEquals(expected, ResizePolicy.fit(image(7, 5), 7, 5, 3, 2))
    }

    @Test
    fun fiveByNineToTwoByThreeRoundsTheWidthPassFirst() {
        // Here the order of the passes changes bytes (height first would give others): Pillow's, width first.
        assertArrayEquals(intArrayOf(0, 1, 5, 8), ResizePolicy.centreCropBox(5, 9, 2, 3))
        val expected = intArrayOf(131, 141, 109, 139, 128, 117, 117, 141, 137, 110, 120, 131, 117, 170, 137, 146, 135, 124)
        assertArrayEquals(expected, ResizePolicy.fit(image(5, 9), 5, 9, 2, 3))
    }

    @Test
    fun anImageOfTheTargetsSizeIsLeftAsItIs() {
        val rgb = image(4, 4)
        assertSame(rgb, ResizePolicy.fit(rgb, 4, 4, 4, 4))
    }

    @Test
    fun badSizesAreRefused() {
        assertThrows<ArgumentException> { ResizePolicy.fit(image(2, 2), 2, 2, 0, 2) }
        assertThrows<ArgumentException> { ResizePolicy.fit(IntArray(5), 2, 2, 1, 1) }
    }
}

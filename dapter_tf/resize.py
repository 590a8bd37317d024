"""The one resize policy: how a photo of any size becomes the converter's H x W pixels.

Training (``data.tasks.Task.prepare_images``), the attacks, ``dapter-convert`` and the Android
harness (``android_app/core``'s ``ResizePolicy``, a line-for-line port) all use ``fit_image``, so
the pixels a converter was trained on are the pixels it is given on the phone. A leaf module
(numpy, Pillow and ``errors`` only), so ``export/`` can use it without the data package.
"""

import numpy as np
from PIL import Image

from dapter_tf.errors import DapterError

RESIZE_POLICY = (
    "centre-crop to the converter's aspect ratio (the largest centred window of that ratio, its sides "
    "rounded down to whole pixels, odd margins leaving the extra pixel on the right or bottom), then "
    "resize with Pillow's BOX filter (each output pixel the mean of the input pixels whose centres lie "
    "in its footprint; width first, then height, each pass rounded to 8 bits); EXIF orientation is not applied"
)


def centre_crop_box(width: int, height: int, target_height: int, target_width: int) -> tuple[int, int, int, int]:
    """The largest centred (left, top, right, bottom) window of ``width`` x ``height`` with the target's aspect.

    The window's free side is rounded down to whole pixels (at least 1); an odd margin puts its
    extra pixel after the window (right or bottom), as ``(width - side) // 2`` always did for squares.
    """
    if width * target_height > height * target_width:  # Wider than the target: cut left and right.
        crop_width, crop_height = max(1, height * target_width // target_height), height
    else:  # Taller (or the same aspect): cut top and bottom.
        crop_width, crop_height = width, max(1, width * target_height // target_width)
    left, top = (width - crop_width) // 2, (height - crop_height) // 2
    return left, top, left + crop_width, top + crop_height


def fit_image(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Brings one photo to ``height`` x ``width`` RGB by ``RESIZE_POLICY``.

    Args:
        image: Any Pillow image; grey, palette and RGBA images are converted to RGB first (alpha dropped).
        height: Rows of the result.
        width: Columns of the result.

    Returns:
        uint8 ``height`` x ``width`` x 3. An image already of that size comes back unchanged.

    Raises:
        DapterError: on a target size below 1 x 1.
    """
    if height < 1 or width < 1:
        raise DapterError(f"cannot resize a photo to {width}x{height} (width x height): both must be >= 1")
    image = image.convert("RGB")
    if image.size != (width, height):
        box = centre_crop_box(image.width, image.height, height, width)
        image = image.resize((width, height), Image.Resampling.BOX, box=box)
    return np.asarray(image)

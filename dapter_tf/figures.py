"""What every figure of the project shares: matplotlib without a display, saving a PNG atomically, image grids.

A leaf module (numpy and Pillow only): training, the attacks and the analyses all draw with it.
"""

import os

import numpy as np
import PIL.Image

_GRID_COLUMNS = 8
_GAP = 2


def pyplot():
    """matplotlib.pyplot on the Agg backend: files only, no display on servers and CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str) -> None:
    """Saves ``fig`` as a PNG at ``path`` and closes it.

    The file is written beside ``path`` first and then renamed, so a killed run leaves no half file.
    """
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    pyplot().close(fig)


def save_grid(path: str, *image_sets: np.ndarray) -> None:
    """Saves a PNG with a row of each set's images per group: originals, then converted, and so on.

    Fig. 13's layout: ``save_grid(path, originals, converted, reconstructed)`` shows each original
    above its converted and reconstructed versions. Small images are enlarged (nearest neighbour, 4x
    for 32x32) so their pixels stay visible.
    """
    n = min(len(images) for images in image_sets)
    k_sets = len(image_sets)
    first = image_sets[0]
    scale = max(1, 128 // first.shape[1])
    h, w = first.shape[1] * scale, first.shape[2] * scale
    groups = -(-n // _GRID_COLUMNS)
    canvas = np.full((k_sets * groups * (h + _GAP) + _GAP, _GRID_COLUMNS * (w + _GAP) + _GAP, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, _GRID_COLUMNS)
        for k, images in enumerate(image_sets):
            top = (k_sets * r + k) * (h + _GAP) + _GAP
            left = c * (w + _GAP) + _GAP
            canvas[top : top + h, left : left + w] = images[i].repeat(scale, 0).repeat(scale, 1)
    tmp = f"{path}.tmp"
    PIL.Image.fromarray(canvas).save(tmp, format="PNG")
    os.replace(tmp, path)

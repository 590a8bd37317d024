"""What every figure of the project shares: matplotlib without a display, saving a PNG atomically, image grids.

A leaf module (numpy and Pillow only; matplotlib imported when a figure is drawn): training, the attacks
and the analyses all draw with it.
"""

import os
import textwrap

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


FIGURE_DPI = 120


def save_figure(fig, path: str, tight: bool = True) -> None:
    """Saves ``fig`` as a PNG at ``path`` and closes it.

    The file is written beside ``path`` first and then renamed, so a killed run leaves no half file.
    ``tight``: trim the margins to what is drawn; ``False`` keeps the figure's own size, so the PNG
    is its size in inches times ``FIGURE_DPI`` pixels.
    """
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=FIGURE_DPI, bbox_inches="tight" if tight else None)
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


# The labelled grid's layout, in inches: each image's square cell, the row labels' column on the left, a
# line of the title or the caption, the column labels' line above the images, and the outer margins.
_CELL = 1.0
_ROW_LABELS = 1.5
_LINE = 0.25
_COLUMN_LABELS = 0.3
_MARGIN = 0.1


def labelled_grid(image_rows, row_labels, column_labels=(), title: str = "", caption: str = ""):
    """A matplotlib figure of images in named rows and columns, with a title above and a caption below.

    Each row is one set of images (e.g. originals, converted, reconstructed), each column one item
    (e.g. one photo, named by its class). Images are drawn pixel for pixel (nearest neighbour) in
    square cells of about the same size, so the figure is ``_ROW_LABELS + columns x _CELL + _MARGIN``
    inches wide and ``rows x _CELL`` inches high plus the lines of text; save it with
    ``save_figure(fig, path, tight=False)`` to keep that size.

    Args:
        image_rows: One sequence of uint8 (H, W, 3) images per row; the shortest sets the columns.
        row_labels: One name per row, shown left of it (``\\n`` breaks a line).
        column_labels: One name per column, shown above it (empty: none).
        title: Lines above the grid (``\\n`` separates them), each wrapped to its width.
        caption: A paragraph below the grid, wrapped to its width.

    Returns:
        The figure, not yet saved: its axes (``fig.axes``, row by row) carry the row labels as the
        first column's y labels and the column labels as the top row's titles.
    """
    rows = len(image_rows)
    columns = min(len(images) for images in image_rows)
    if len(row_labels) != rows:
        raise ValueError(f"{rows} rows of images but {len(row_labels)} row labels")
    column_labels = list(column_labels)
    if column_labels and len(column_labels) < columns:
        raise ValueError(f"{columns} columns of images but {len(column_labels)} column labels")
    width = _ROW_LABELS + columns * _CELL + _MARGIN
    # About 11 characters of the caption's size per inch, 10 of the title's; a command's name stays whole.
    caption_width, title_width = (max(20, int(k * (width - 2 * _MARGIN))) for k in (11, 10))
    caption_lines = textwrap.wrap(caption, width=caption_width, break_on_hyphens=False) if caption else []
    title_lines = [
        wrapped
        for line in (title.split("\n") if title else [])
        for wrapped in textwrap.wrap(line, width=title_width, break_on_hyphens=False) or [""]
    ]
    top = _MARGIN + _LINE * len(title_lines) + (_COLUMN_LABELS if column_labels else 0)
    bottom = _MARGIN + _LINE * len(caption_lines)
    height = top + rows * _CELL + bottom
    plt = pyplot()
    fig = plt.figure(figsize=(width, height))
    axes = fig.subplots(
        rows,
        columns,
        squeeze=False,
        gridspec_kw=dict(
            left=_ROW_LABELS / width,
            right=1 - _MARGIN / width,
            top=1 - top / height,
            bottom=bottom / height,
            wspace=0.04,
            hspace=0.04,
        ),
    )
    for r, images in enumerate(image_rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.imshow(images[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=10, labelpad=8)
    for c, name in enumerate(column_labels[:columns]):
        axes[0][c].set_title(str(name), fontsize=9)
    if title_lines:
        fig.suptitle("\n".join(title_lines), y=1 - _MARGIN / height, va="top", fontsize=10)
    if caption_lines:
        fig.text(0.5, _MARGIN / height, "\n".join(caption_lines), ha="center", va="bottom", fontsize=9)
    return fig

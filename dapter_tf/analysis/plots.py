"""What every plot of the project shares: matplotlib without a display, and saving a PNG atomically."""

import os


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

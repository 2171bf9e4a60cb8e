"""What the Learner draws: figures made without pyplot (the user's matplotlib backend is never
switched), shown inline when running in IPython."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def image_grid(images: np.ndarray, captions: list[str], title: str):
    """A Figure (made without pyplot) of images 0..255 with their captions."""
    import math

    from matplotlib.figure import Figure

    cols = min(len(images), 5) or 1
    rows = max(1, math.ceil(len(images) / cols))
    fig = Figure(figsize=(2.0 * cols, 2.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        image = np.clip(np.asarray(image, np.float32), 0, 255).astype(np.uint8)
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None)
        ax.set_title(caption, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def display_figure(fig) -> None:
    """Show a Figure inline when running in IPython (as a PNG: no pyplot, whatever the backend)."""
    if not in_ipython():
        return
    import io as _io

    from IPython.display import Image, display

    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    display(Image(data=buffer.getvalue()))


def display_files(paths: list[Path]) -> None:
    """Show PNGs inline when running in IPython; nothing otherwise."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    for path in paths:
        display(Image(str(path)))

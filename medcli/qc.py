"""What every medcli QC picture shares: volumes in RAS, display windows, planes, panels, PNG bytes.

The pictures of ``segment --qc``, ``register --qc``, ``landmarks --qc``,
``detect --qc`` and the report's mosaics differ in what they draw on a plane,
not in how a plane is cut and shown. That part lives here, so that every
picture shows the subject the same way: RAS orientation, the plane's first axis
horizontal, superior (or anterior) up, the subject's right on the right of the
axial and coronal panels (marked "R", since radiological viewers show it on the
left), panels scaled by millimetres rather than voxels.

Pillow is imported inside the functions that draw, so that importing this
module stays cheap.

Example:
    >>> from medcli.qc import ras_volume, window, plane, PLANES
    >>> vol = ras_volume(image)                       # doctest: +SKIP
    >>> lo, hi = window(vol.data[::4, ::4, ::4])      # doctest: +SKIP
    >>> axial = plane(vol.data, 2, vol.shape[2] // 2) # doctest: +SKIP
"""

from __future__ import annotations

import io as _io
import textwrap
from typing import Sequence

import numpy as np

from medcli.image import Image

#: The three planes, each with the array axis (of a RAS volume) it is normal to.
PLANES = (("axial", 2), ("coronal", 1), ("sagittal", 0))
#: Soft-tissue CT window (HU): fat, muscle and bone edges all visible.
CT_WINDOW = (-160.0, 240.0)
BACKGROUND = (20, 20, 20)
TEXT = (230, 230, 230)
YELLOW = (255, 255, 0)


def font(size: int):
    """Pillow's default font at ``size`` pixels (the bitmap font on Pillow < 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def ras_volume(image: Image) -> Image:
    """The image as float32 in RAS orientation; a 4D series shows its first volume."""
    data = np.asarray(image.data, np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    return Image(data, image.affine).reorient("RAS")


def window(values: np.ndarray, ct: bool = False) -> tuple[float, float]:
    """Display range: the CT soft-tissue window, or robust percentiles (0.5, 99.5) of the foreground.

    The foreground is every finite value above the minimum (the background of
    a skull-stripped or padded image would otherwise pull the window down).
    The range is never empty.
    """
    if ct:
        return CT_WINDOW
    v = np.asarray(values).ravel()
    v = v[np.isfinite(v)]
    if v.size:
        v = v[v > v.min()] if (v > v.min()).any() else v
    if not v.size:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def grey(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values mapped to [0, 1] through the window ``(lo, hi)``."""
    return np.clip((np.asarray(values, np.float32) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The plane of a RAS array normal to ``axis`` at ``index``, in array order (first in-plane axis first)."""
    return np.take(volume, int(np.clip(index, 0, volume.shape[axis] - 1)), axis=axis)


def display(plane_array: np.ndarray) -> np.ndarray:
    """A plane (2D, or 2D x RGB) turned for display: first axis horizontal, superior/anterior up."""
    return np.flipud(np.swapaxes(plane_array, 0, 1))


def outline(labels: np.ndarray) -> np.ndarray:
    """The labelled pixels of a 2D label map that touch another label (4-neighbourhood)."""
    p = np.pad(labels, 1, mode="edge")
    same = np.ones(labels.shape, bool)
    for dx, dy in ((0, 1), (2, 1), (1, 0), (1, 2)):
        same &= p[dx : dx + labels.shape[0], dy : dy + labels.shape[1]] == labels
    return (labels > 0) & ~same


def panel_width(shape: Sequence[int], spacing: Sequence[float], axis: int, height: int) -> int:
    """Width in pixels of the panel normal to ``axis`` shown ``height`` pixels high, true to millimetres."""
    u, v = [a for a in range(3) if a != axis]
    return max(16, int(round(height * shape[u] * spacing[u] / max(shape[v] * spacing[v], 1e-6))))


def to_pil(rgb_or_grey: np.ndarray):
    """A Pillow RGB image of a display-ready array (values 0-255; grey or RGB)."""
    from PIL import Image as PILImage

    a = np.asarray(rgb_or_grey)
    pic = PILImage.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return pic.convert("RGB")


def strip(panels: Sequence[tuple[str, object]], *, pad: int = 8, header: int = 24, title: str = "",
          extra_width: int = 0, text_size: int | None = None, background: tuple[int, int, int] = BACKGROUND):
    """A canvas with the named panels side by side, each with its name above and "R" on its right edge.

    Args:
        panels: ``(plane name, Pillow image)`` pairs, all of one height.
        pad: pixels between and around the panels.
        header: pixels above the panels for their names.
        title: written after the first panel's name.
        extra_width: room kept on the right (e.g. for a legend); it starts at the returned x.
        text_size: font size, or None for Pillow's small default font.
        background: canvas colour.

    Returns:
        The Pillow canvas and the x where the room on the right begins.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    height = max((p.height for _, p in panels), default=0)
    width = sum(p.width for _, p in panels) + pad * (len(panels) + 1) + extra_width
    canvas = PILImage.new("RGB", (width, height + 2 * pad + header), background)
    draw = ImageDraw.Draw(canvas)
    big = font(text_size) if text_size else None
    small = font(text_size - 2) if text_size else None
    x = pad
    for i, (name, pic) in enumerate(panels):
        canvas.paste(pic, (x, pad + header))
        draw.text((x, pad), f"{name}  {title}" if i == 0 and title else name, fill=TEXT, font=big)
        if name != "sagittal":
            draw.text((x + pic.width - 12, pad + header + 4), "R", fill=YELLOW, font=small)
        x += pic.width + pad
    return canvas, x


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters (at least one line)."""
    return textwrap.wrap(text, width) or [text]


def png(canvas) -> bytes:
    """A Pillow image as PNG bytes."""
    buf = _io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()

"""QC picture of a registration: checkerboard of fixed and warped, fixed edges on top, three planes."""

from __future__ import annotations

import io as _io

import numpy as np

from medcli.image import Image


def _window(values: np.ndarray) -> tuple[float, float]:
    v = values[values > values.min()] if (values > values.min()).any() else values
    lo, hi = np.percentile(v, [1, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def _edges(g: np.ndarray) -> np.ndarray:
    """Strong gradient magnitude of a 2D slice (the fixed image's outlines)."""
    gx, gy = np.gradient(g)
    mag = np.hypot(gx, gy)
    return mag > max(np.percentile(mag, 92), 1e-6)


def qc_png(fixed: Image, warped: Image, title: str = "", tiles: int = 8) -> bytes:
    """PNG bytes: axial, coronal and sagittal slices through the fixed image's centre.

    Each panel alternates fixed and warped moving in a checkerboard of
    ``tiles`` squares per side (misalignment shows as broken contours at the
    tile borders), with the fixed image's edges drawn in yellow.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    f = Image(np.asarray(fixed.data, np.float32), fixed.affine).reorient("RAS")
    w = Image(np.asarray(warped.data, np.float32), warped.affine).reorient("RAS")
    centre = [s // 2 for s in f.shape]
    flo, fhi = _window(np.concatenate([np.take(f.data, centre[a], axis=a).ravel() for a in range(3)]))
    wlo, whi = _window(np.concatenate([np.take(w.data, centre[a], axis=a).ravel() for a in range(3)]))
    sp = f.spacing
    height = 256
    panels = []
    for name, axis in (("axial", 2), ("coronal", 1), ("sagittal", 0)):
        a = np.clip((np.take(f.data, centre[axis], axis=axis) - flo) / (fhi - flo), 0, 1)
        b = np.clip((np.take(w.data, centre[axis], axis=axis) - wlo) / (whi - wlo), 0, 1)
        ii, jj = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]), indexing="ij")
        board = ((ii * tiles // a.shape[0]) + (jj * tiles // a.shape[1])) % 2 == 0
        g = np.where(board, a, b)
        rgb = np.repeat(g[..., None] * 255.0, 3, axis=-1)
        rgb[_edges(a)] = (255, 220, 0)
        pic = np.flipud(np.transpose(rgb, (1, 0, 2))).astype(np.uint8)  # superior/anterior up
        axes = [x for x in range(3) if x != axis]
        w_mm, h_mm = a.shape[0] * sp[axes[0]], a.shape[1] * sp[axes[1]]
        width = max(16, int(round(w_mm * height / max(h_mm, 1e-6))))
        panels.append((name, PILImage.fromarray(pic).resize((width, height), PILImage.BILINEAR)))
    pad = 8
    canvas = PILImage.new("RGB", (sum(p.width for _, p in panels) + pad * (len(panels) + 1), height + 2 * pad + 24), (20, 20, 20))
    draw = ImageDraw.Draw(canvas)
    x = pad
    for name, tile in panels:
        canvas.paste(tile, (x, pad + 24))
        draw.text((x, pad), name if x > pad or not title else f"{name}  {title}", fill=(230, 230, 230))
        if name in ("axial", "coronal"):
            draw.text((x + tile.width - 12, pad + 28), "R", fill=(255, 255, 0))
        x += tile.width + pad
    buf = _io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()

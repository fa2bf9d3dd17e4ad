"""QC picture of a registration: checkerboard of fixed and warped, fixed edges on top, three planes."""

from __future__ import annotations

import numpy as np

from medcli import qc
from medcli.image import Image


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

    f, w = qc.ras_volume(fixed), qc.ras_volume(warped)
    centre = [s // 2 for s in f.shape]
    flo, fhi = qc.window(np.concatenate([qc.plane(f.data, a, centre[a]).ravel() for a in range(3)]))
    wlo, whi = qc.window(np.concatenate([qc.plane(w.data, a, centre[a]).ravel() for a in range(3)]))
    height = 256
    panels = []
    for name, axis in qc.PLANES:
        a = qc.grey(qc.plane(f.data, axis, centre[axis]), flo, fhi)
        b = qc.grey(qc.plane(w.data, axis, centre[axis]), wlo, whi)
        ii, jj = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]), indexing="ij")
        board = ((ii * tiles // a.shape[0]) + (jj * tiles // a.shape[1])) % 2 == 0
        rgb = np.repeat(np.where(board, a, b)[..., None] * 255.0, 3, axis=-1)
        rgb[_edges(a)] = (255, 220, 0)
        width = qc.panel_width(f.shape, f.spacing, axis, height)
        panels.append((name, qc.to_pil(qc.display(rgb)).resize((width, height), PILImage.BILINEAR)))
    canvas, _ = qc.strip(panels, title=title)
    return qc.png(canvas)

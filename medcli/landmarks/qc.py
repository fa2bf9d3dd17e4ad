"""QC picture of detected landmarks: each landmark on the axial, coronal and sagittal planes through it.

One row per landmark (label and description on the left), the three planes
shown in RAS orientation (anterior/superior up, the subject's right on the
right of the axial and coronal panels, as the segment QC says), a cross-hair on
the point. Missing landmarks get a row saying so.
"""

from __future__ import annotations

import numpy as np

from medcli import qc
from medcli.image import Image
from medcli.io.points import Points

TILE = 96  # pixels per panel (the field shown is TILE_MM)
TILE_MM = 60.0


def _panel(vol: Image, ras: np.ndarray, axis: int, lo: float, hi: float) -> np.ndarray:
    """A TILE x TILE grey panel of the plane through ``ras`` normal to ``axis`` (RAS volume), centred on the point."""
    axes = [a for a in range(3) if a != axis]
    half = TILE_MM / 2
    u = np.linspace(-half, half, TILE)
    grid = np.zeros((TILE, TILE, 3))
    grid[..., axes[0]] = ras[axes[0]] + u[None, :]        # horizontal: R or A to the right
    grid[..., axes[1]] = ras[axes[1]] - u[:, None]        # vertical: superior/anterior up
    grid[..., axis] = ras[axis]
    vox = vol.world_to_voxel(grid.reshape(-1, 3))
    idx = np.rint(vox).astype(int)
    ok = ((idx >= 0) & (idx < np.array(vol.shape[:3]))).all(1)
    vals = np.zeros(len(idx), np.float32)
    d = np.asarray(vol.data)
    vals[ok] = d[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
    return (qc.grey(vals.reshape(TILE, TILE), lo, hi) * 255).astype(np.uint8)


def qc_png(image: Image, points: Points, title: str = "") -> bytes:
    """PNG bytes: one row per landmark with its three planes and a labelled cross-hair."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = image if image.ndim == 3 else image.with_data(np.asarray(image.data)[..., 0])
    d = np.asarray(img.data, np.float32).ravel()
    lo, hi = qc.window(d[:: max(1, d.size // 100000)])
    label_w, pad, head = 210, 4, 24
    n = len(points)
    canvas = PILImage.new("RGB", (label_w + 3 * (TILE + pad) + pad, head + n * (TILE + pad) + pad), qc.BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font, small = qc.font(14), qc.font(12)
    draw.text((pad, 4), title or "landmarks", fill=(230, 230, 230), font=font)
    for j, name in enumerate(("axial", "coronal", "sagittal")):
        draw.text((label_w + pad + j * (TILE + pad), 4), name, fill=(200, 200, 200), font=small)
    c = TILE // 2
    for i in range(n):
        y = head + i * (TILE + pad)
        conf = points.confidences[i] if points.confidences is not None else np.nan
        text = f"{points.labels[i]} {points.descriptions[i]}"[:30]
        draw.text((pad, y + 4), text, fill=(255, 220, 0), font=small)
        if points.missing[i]:
            draw.text((pad, y + 22), "missing (outside the field of view)", fill=(255, 90, 90), font=small)
            continue
        if np.isfinite(conf):
            draw.text((pad, y + 22), f"confidence {conf:.2f}", fill=(200, 200, 200), font=small)
        for j, axis in enumerate((2, 1, 0)):
            pic = PILImage.fromarray(_panel(img, points.ras[i], axis, lo, hi)).convert("RGB")
            x = label_w + pad + j * (TILE + pad)
            canvas.paste(pic, (x, y))
            draw.line([(x + c - 8, y + c), (x + c - 3, y + c)], fill=(255, 60, 60))
            draw.line([(x + c + 3, y + c), (x + c + 8, y + c)], fill=(255, 60, 60))
            draw.line([(x + c, y + c - 8), (x + c, y + c - 3)], fill=(255, 60, 60))
            draw.line([(x + c, y + c + 3), (x + c, y + c + 8)], fill=(255, 60, 60))
    return qc.png(canvas)

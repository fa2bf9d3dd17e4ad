"""QC contact sheet: each finding's axial, coronal and sagittal planes with its box, score and size."""

from __future__ import annotations

import numpy as np

from medcli import qc
from medcli.detect.findings import Findings
from medcli.image import Image

TILE = 128
MAX_ROWS = 24


def contact_sheet(image: Image, findings: Findings, *, ct: bool = False, title: str = "") -> bytes:
    """PNG bytes: one row per finding (best first, at most :data:`MAX_ROWS`), three planes each.

    Planes are shown in RAS orientation (superior/anterior up, R on the right of axial
    and coronal views, as the label says); the box is drawn in yellow.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    ras = qc.ras_volume(image)
    vol = ras.data
    sp = np.array(ras.spacing)
    items = findings.items[:MAX_ROWS]
    font, small = qc.font(14), qc.font(12)
    head = 44  # title line, then the plane names
    rows = max(len(items), 1)
    width = 3 * TILE + 4 * 6 + 190
    canvas = PILImage.new("RGB", (width, head + rows * (TILE + 6) + 6), qc.BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 6), title or f"{len(findings)} findings", fill=(230, 230, 230), font=font)
    if not items:
        draw.text((6, head + 10), "no findings", fill=(200, 200, 200), font=font)
    lo, hi = qc.window(vol[:: max(1, vol.shape[0] // 64), :: max(1, vol.shape[1] // 64), :: max(1, vol.shape[2] // 64)], ct)
    for r, f in enumerate(items):
        c = ras.world_to_voxel(f.center_ras)[0]
        corners = np.array([[f.box_ras[i if a else i + 3] for i, a in zip(range(3), bits)]
                            for bits in np.ndindex(2, 2, 2)], float)
        bv = ras.world_to_voxel(corners)
        bmin, bmax = bv.min(0), bv.max(0)
        half_mm = max(20.0, 1.5 * float(np.max(f.size_mm)))
        y = head + r * (TILE + 6)
        x = 6
        for name, axis in qc.PLANES:
            plane = qc.plane(vol, axis, int(round(c[axis])))
            axes = [a for a in range(3) if a != axis]
            half = [int(np.ceil(half_mm / sp[a])) for a in axes]
            ci = [int(round(c[a])) for a in axes]
            sl = tuple(slice(ci[i] - half[i], ci[i] + half[i] + 1) for i in range(2))
            pad = [(max(0, -s.start), max(0, s.stop - plane.shape[i])) for i, s in enumerate(sl)]
            crop = np.pad(plane, pad, mode="constant", constant_values=lo)[
                tuple(slice(s.start + pad[i][0], s.stop + pad[i][0]) for i, s in enumerate(sl))]
            tile = qc.to_pil(qc.display(qc.grey(crop, lo, hi) * 255)).resize((TILE, TILE), PILImage.BILINEAR)
            d = ImageDraw.Draw(tile)
            # Box corners in tile pixels: horizontal = first in-plane axis, vertical flipped.
            sx, sy = TILE / crop.shape[0], TILE / crop.shape[1]
            x0 = (bmin[axes[0]] - (ci[0] - half[0]) - 0.0) * sx
            x1 = (bmax[axes[0]] - (ci[0] - half[0]) + 1.0) * sx
            y0 = TILE - (bmax[axes[1]] - (ci[1] - half[1]) + 1.0) * sy
            y1 = TILE - (bmin[axes[1]] - (ci[1] - half[1])) * sy
            d.rectangle([x0, y0, x1, y1], outline=(255, 220, 0))
            canvas.paste(tile, (x, y))
            if r == 0:
                draw.text((x, head - 16), name, fill=(200, 200, 200), font=small)
            x += TILE + 6
        lines = [f"#{r + 1} {f.label}", f"score {f.score:.3f}", f"diam {f.diameter_mm:.1f} mm",
                 "box " + "x".join(f"{v:.0f}" for v in f.size_mm) + " mm",
                 "RAS " + ", ".join(f"{v:.1f}" for v in f.center_ras)]
        for i, line in enumerate(lines):
            draw.text((x, y + 4 + 17 * i), line, fill=(230, 230, 230), font=small)
    return qc.png(canvas)

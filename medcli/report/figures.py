"""Pictures for reports: QC mosaics (three planes, label outlines, finding boxes, landmark crosses),
finding crops, and SVG histograms for cohorts.

Bitmaps are WebP (lossy, quality 80: a 3-plane mosaic is ~20-40 kB, where PNG
of the same is 5-10x larger) returned as ``data:`` URIs, so that a report is
one file that makes no request. Views are in RAS (the panels say which side is
R), as in ``segment --qc``.
"""

from __future__ import annotations

import base64
import html
import io as _io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from medcli import qc
from medcli.image import Image

HEIGHT = 220


@dataclass
class Figure:
    """One picture of a report: a data URI, its alt text, size in pixels, caption."""

    uri: str
    alt: str
    width: int
    height: int
    caption: str = ""


def encode(pic, fmt: str = "WEBP") -> str:
    """A Pillow image as a ``data:`` URI (WebP quality 80, or PNG)."""
    buf = _io.BytesIO()
    if fmt == "WEBP":
        pic.save(buf, format="WEBP", quality=80, method=4)
    else:
        pic.save(buf, format="PNG", optimize=True)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


class Views:
    """An image in RAS with helpers to cut planes and map world points onto them."""

    def __init__(self, image: Image, ct: bool = False):
        self.image = qc.ras_volume(image)
        self.ct = ct

    def centre_of(self, mask: np.ndarray | None) -> list[int]:
        if mask is not None and mask.any():
            where = np.argwhere(mask)
            c = [int(round(x)) for x in where.mean(axis=0)]
            c[0] = int(round(np.percentile(where[:, 0], 30)))  # one hemisphere, not the fissure
            return c
        return [s // 2 for s in self.image.shape[:3]]

    def mosaic(
        self,
        centre: Sequence[int],
        labels: np.ndarray | None = None,
        colours: dict[int, tuple[int, int, int]] | None = None,
        points: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        alpha: float = 0.25,
    ):
        """A Pillow RGB image: the three planes through ``centre`` (RAS voxel), overlays drawn."""
        from PIL import Image as PILImage
        from PIL import ImageDraw

        vol = self.image.data
        sp = self.image.spacing
        lo, hi = qc.window(np.concatenate([qc.plane(vol, a, centre[a]).ravel() for _, a in qc.PLANES]), self.ct)
        lut = np.zeros((max(colours or {0: 0}) + 1, 3), np.float32)
        for v, c in (colours or {}).items():
            lut[v] = c
        tiles = []
        for name, axis in qc.PLANES:
            u, v = [a for a in range(3) if a != axis]
            rgb = np.repeat(qc.grey(qc.plane(vol, axis, centre[axis]), lo, hi)[..., None] * 255.0, 3, axis=-1)
            if labels is not None:
                lab = qc.plane(labels, axis, centre[axis])
                lab = np.where(lab < lut.shape[0], lab, 0)
                on = lab > 0
                rgb[on] = (1 - alpha) * rgb[on] + alpha * lut[lab[on]]
                e = qc.outline(lab)
                rgb[e] = lut[lab[e]]
            nu, nv = vol.shape[u], vol.shape[v]
            w = qc.panel_width(vol.shape, sp, axis, HEIGHT)
            pic = qc.to_pil(qc.display(rgb)).resize((w, HEIGHT), PILImage.BILINEAR)
            draw = ImageDraw.Draw(pic)
            sx, sy = w / nu, HEIGHT / nv

            def xy(ijk):
                return (ijk[u] + 0.5) * sx, (nv - 0.5 - ijk[v]) * sy

            if boxes is not None:
                for b in boxes:
                    a0, a1 = self.image.world_to_voxel(np.array([b[:3], b[3:]]))
                    lo_b, hi_b = np.minimum(a0, a1), np.maximum(a0, a1)
                    if lo_b[axis] - 1 <= centre[axis] <= hi_b[axis] + 1:
                        (x0, y0), (x1, y1) = xy(lo_b), xy(hi_b)
                        draw.rectangle([min(x0, x1) - 2, min(y0, y1) - 2, max(x0, x1) + 2, max(y0, y1) + 2], outline=(255, 60, 60), width=2)
            if points is not None:
                for p in self.image.world_to_voxel(points):
                    if not np.all(np.isfinite(p)):
                        continue
                    x, y = xy(p)
                    near = abs(p[axis] - centre[axis]) * sp[axis] <= 3.0
                    r = 5 if near else 3
                    col = (255, 255, 0) if near else (160, 160, 60)
                    draw.line([x - r, y, x + r, y], fill=col, width=2 if near else 1)
                    draw.line([x, y - r, x, y + r], fill=col, width=2 if near else 1)
            tiles.append((name, pic))
        canvas, _ = qc.strip(tiles, pad=6, header=16)
        return canvas

    def crop(self, center_ras: Sequence[float], box_ras: Sequence[float], size_px: int = 128):
        """An axial crop around a finding (3x its size, at least 30 mm), its box drawn."""
        from PIL import Image as PILImage
        from PIL import ImageDraw

        vol = self.image.data
        sp = self.image.spacing
        c = self.image.world_to_voxel(np.asarray(center_ras, float)[None])[0]
        ext = np.nan_to_num(np.abs(np.asarray(box_ras[3:], float) - np.asarray(box_ras[:3], float)), nan=10.0)
        half_mm = max(15.0, 1.5 * float(ext[:2].max()))
        k = int(np.clip(round(c[2]), 0, vol.shape[2] - 1))
        hx, hy = [max(2, int(round(half_mm / sp[a]))) for a in (0, 1)]
        i0, i1 = int(round(c[0])) - hx, int(round(c[0])) + hx
        j0, j1 = int(round(c[1])) - hy, int(round(c[1])) + hy
        sl = np.zeros((i1 - i0, j1 - j0), np.float32) + float(vol.min())
        si0, si1, sj0, sj1 = max(i0, 0), min(i1, vol.shape[0]), max(j0, 0), min(j1, vol.shape[1])
        if si1 > si0 and sj1 > sj0:
            sl[si0 - i0 : si1 - i0, sj0 - j0 : sj1 - j0] = vol[si0:si1, sj0:sj1, k]
        lo, hi = qc.window(qc.plane(vol, 2, k), self.ct)
        pic = qc.to_pil(qc.display(qc.grey(sl, lo, hi) * 255)).resize((size_px, size_px), PILImage.BILINEAR)
        draw = ImageDraw.Draw(pic)
        b0, b1 = self.image.world_to_voxel(np.array([box_ras[:3], box_ras[3:]], float))
        if np.all(np.isfinite(b0)) and np.all(np.isfinite(b1)):
            sx, sy = size_px / (i1 - i0), size_px / (j1 - j0)
            xs = sorted([(b0[0] - i0 + 0.5) * sx, (b1[0] - i0 + 0.5) * sx])
            ys = sorted([(j1 - j0 - 0.5 - (b0[1] - j0)) * sy, (j1 - j0 - 0.5 - (b1[1] - j0)) * sy])
            draw.rectangle([xs[0] - 2, ys[0] - 2, xs[1] + 2, ys[1] + 2], outline=(255, 60, 60), width=2)
        return pic


def histogram_svg(values: Sequence[float], title: str, unit: str = "", flagged: Sequence[float] = (), bins: int = 30) -> str:
    """A small inline SVG histogram (accessible: role=img, <title>), outliers marked in red ticks."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    w, h, pad = 320, 140, 24
    esc = html.escape
    head = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>'
    if not v.size:
        return head + f'<text x="{pad}" y="{h / 2}" font-size="12">no values</text></svg>'
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    top = max(int(counts.max()), 1)
    bw = (w - 2 * pad) / bins
    parts = [head, f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>']
    for i, c in enumerate(counts):
        bh = (h - 2 * pad) * c / top
        parts.append(f'<rect x="{pad + i * bw:.1f}" y="{h - pad - bh:.1f}" width="{max(bw - 1, 0.5):.1f}" height="{bh:.1f}" fill="#3a6ea5"/>')
    for f in flagged:
        if np.isfinite(f):
            x = pad + (f - lo) / (hi - lo) * (w - 2 * pad)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{h - pad}" y2="{h - pad + 8}" stroke="#c00" stroke-width="2"/>')
    parts.append(f'<line x1="{pad}" x2="{w - pad}" y1="{h - pad}" y2="{h - pad}" stroke="#222"/>')
    parts.append(f'<text x="{pad}" y="{h - 4}" font-size="11" fill="#222">{lo:.4g}{esc(unit)}</text>')
    parts.append(f'<text x="{w - pad}" y="{h - 4}" font-size="11" fill="#222" text-anchor="end">{hi:.4g}{esc(unit)}</text>')
    parts.append(f'<text x="{pad}" y="14" font-size="12" fill="#222">{esc(title)} (n={v.size})</text></svg>')
    return "".join(parts)

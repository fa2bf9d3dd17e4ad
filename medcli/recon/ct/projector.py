"""Matched forward and back projectors in torch (parallel and flat-detector fan beam).

Pixel-driven with linear interpolation on the detector: each pixel centre is
projected onto the detector and its value shared between the two nearest
bins. The back-projector gathers with exactly the same indices and weights, so
``<A x, y> == <x, A^T y>`` to rounding (tested) and every iterative method
solves the problem the forward model poses. The work is done in chunks of
views (memory ~ ``chunk x pixels``) and runs unchanged on CUDA.

The forward weights make ``A x`` a line integral in mm x (units of x): a pixel
of area ``dx dy`` spreads over a detector width ``du / M`` at its own depth
(``M`` the fan magnification at the pixel), and an off-centre fan ray is
``1 / cos(gamma)`` longer per unit of detector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medcli.recon.ct.geometry import CTGeometry

if TYPE_CHECKING:  # pragma: no cover
    import torch


#: How a view of a group sees the first view's grid: its image is the first view's accumulation turned back.
#: ``+90``: view ``theta + 90`` at pixel (i, j) is view ``theta`` at (j, n - 1 - i); ``mirror``: ``180 - theta``
#: at (i, j) is ``theta`` at (i, n - 1 - j); ``90-``: ``90 - theta`` at (i, j) is ``theta`` at (n - 1 - j, n - 1 - i).
_TURNS = {
    "same": lambda a: a,
    "+90": lambda a: a.flip(2).transpose(1, 2),
    "mirror": lambda a: a.flip(2),
    "90-": lambda a: a.flip((1, 2)).transpose(1, 2),
}
_OFFSETS = {"+90": (1.0, 90.0), "mirror": (-1.0, 180.0), "90-": (-1.0, 90.0)}


def _symmetric_groups(angles: np.ndarray, square: bool) -> tuple[np.ndarray, tuple[str, ...]]:
    """Views (indices into ``angles``, degrees) in groups that share the first one's interpolation, and each slot's turn.

    A slot without a partner view holds -1. The mirror (``180 - theta``, the grid flipped along y) needs only the
    centred grid; the quarter turns need a square one. When fewer than 60 % of the slots would hold a view (angles
    without these symmetries), each view is its own group: the empty slots would cost more than they save.
    """
    turns = ("same", "+90", "mirror", "90-") if square else ("same", "mirror")
    # free views by angle to a micro-degree (a partner missed at a rounding boundary only costs its sharing)
    free: dict[int, list[int]] = {}
    for k, a in enumerate(angles):
        free.setdefault(round(float(a) * 1e6), []).append(k)
    used = np.zeros(len(angles), bool)
    groups = []
    for k, a in enumerate(angles):
        if used[k]:
            continue
        free[round(float(a) * 1e6)].remove(k)
        used[k] = True
        row = [k]
        for t in turns[1:]:
            sign, add = _OFFSETS[t]
            same = free.get(round((sign * float(a) + add) * 1e6))
            row.append(same.pop(0) if same else -1)
            if row[-1] >= 0:
                used[row[-1]] = True
        groups.append(row)
    out = np.asarray(groups, np.int64)
    if len(angles) < 0.6 * out.size:
        return np.arange(len(angles))[:, None], ("same",)
    return out, turns


class Projector:
    """``A`` (image -> sinogram) and ``A^T`` for one geometry, on one device.

    Images are tensors ``(B, nx, ny)``, sinograms ``(B, views, detectors)``.
    """

    def __init__(self, geo: CTGeometry, device: "str | torch.device" = "cpu", chunk: int | None = None):
        import torch

        self.geo = geo
        self.device = torch.device(device)
        nx, ny = geo.image_size
        dx, dy = geo.pixel_spacing
        self.npix = nx * ny
        x = (torch.arange(nx, dtype=torch.float64) - (nx - 1) / 2) * dx
        y = (torch.arange(ny, dtype=torch.float64) - (ny - 1) / 2) * dy
        xx, yy = torch.meshgrid(x, y, indexing="ij")
        self._x = xx.reshape(-1).float().to(self.device)
        self._y = yy.reshape(-1).float().to(self.device)
        th = torch.deg2rad(torch.as_tensor(np.asarray(geo.angles, np.float64)))
        self._cos = torch.cos(th).float().to(self.device)
        self._sin = torch.sin(th).float().to(self.device)
        self.area = dx * dy
        # ~64 M gathered values per chunk keeps memory near 1.5 GB at any size.
        self.chunk = chunk or max(1, min(geo.views, int(1e6 // self.npix) or 1))
        # Pixels can fall off a parallel-beam detector only when it is narrower than the grid's diagonal.
        half = 0.5 * (geo.detectors + 1) * geo.detector_width
        self._may_miss = bool(np.hypot(nx * dx, ny * dy) / 2 > half)
        self._norms: dict[str, torch.Tensor] = {}

    # -- geometry of one chunk ------------------------------------------------------------------
    def _coords(self, lo: int, hi: int, fbp_weight: bool = False, offset: tuple[float, float] = (0.0, 0.0), share: float = 1.0):
        """Flat index of the left bin in the padded sinogram ``(views, detectors + 2)``, its share and the ray weight.

        The weight is a scalar for a parallel beam (the same for every pixel and view), else a tensor.
        """
        import torch

        g = self.geo
        c, s = self._cos[lo:hi, None], self._sin[lo:hi, None]
        px, py = (self._x + offset[0], self._y + offset[1]) if offset != (0.0, 0.0) else (self._x, self._y)
        t = torch.addcmul(-px[None] * s, py[None], c)
        weight: "torch.Tensor | float" = share * self.area / g.detector_width
        if g.beam == "fan":
            depth = torch.addcmul(px[None] * c, py[None], s)  # along the ray, source at -source_origin
            sdd = g.source_origin + g.origin_detector
            mag = sdd / (g.source_origin + depth)
            t = t * mag
            if fbp_weight:
                weight = (g.source_origin / (g.source_origin + depth)) ** 2
            else:
                # footprint of the pixel on the detector, per unit of detector, along an oblique ray
                weight = (share * self.area / g.detector_width) * mag * torch.sqrt(1 + (t / sdd) ** 2)
        elif fbp_weight:
            weight = 1.0
        f = t.mul_(1.0 / g.detector_width).add_((g.detectors - 1) / 2 + 1)  # +1: padding bin
        if g.beam == "fan" or self._may_miss:
            inside = (f >= 0) & (f <= g.detectors + 1)
            weight = weight * inside
        f.clamp_(0, g.detectors + 1)
        i0 = f.to(torch.int32).clamp_(max=g.detectors)
        f -= i0
        row = torch.arange(lo, hi, device=f.device, dtype=torch.int64)[:, None] * (g.detectors + 2) - lo * (g.detectors + 2)
        return i0.long().add_(row), f, weight

    # -- operators ------------------------------------------------------------------------------
    def forward(self, img: "torch.Tensor") -> "torch.Tensor":
        """Sinogram of line integrals ``(B, views, detectors)`` of ``img`` ``(B, nx, ny)``."""
        import torch

        g = self.geo
        b = img.shape[0]
        flat = img.reshape(b, 1, self.npix).float()
        width = g.detectors + 2
        out = torch.zeros(b, g.views * width, dtype=torch.float32, device=img.device)
        for lo in range(0, g.views, self.chunk):
            hi = min(lo + self.chunk, g.views)
            idx, w1, wt = self._coords(lo, hi)
            idx = idx.reshape(-1)
            seg = out[:, lo * width : hi * width]
            for k in range(b):
                v = (flat[k].expand(hi - lo, -1) * wt).reshape(-1)
                w = w1.reshape(-1)
                seg[k].index_add_(0, idx, v - v * w)
                seg[k].index_add_(0, idx + 1, v * w)
        return out.reshape(b, g.views, width)[:, :, 1:-1].contiguous()

    def backward(self, sino: "torch.Tensor", fbp_weight: bool = False) -> "torch.Tensor":
        """``A^T sino`` ``(B, nx, ny)``; with ``fbp_weight`` the FBP back-projection (fan beam: 1/U^2 weight)."""
        import torch

        g = self.geo
        b = sino.shape[0]
        if fbp_weight and g.beam == "parallel":
            return self._backproject_fast(sino)
        width = g.detectors + 2
        pad = torch.nn.functional.pad(sino.float(), (1, 1)).reshape(b, -1)
        out = torch.zeros(b, self.npix, dtype=torch.float32, device=sino.device)
        for lo in range(0, g.views, self.chunk):
            hi = min(lo + self.chunk, g.views)
            idx, w1, wt = self._coords(lo, hi, fbp_weight)
            seg = pad[:, lo * width : hi * width]
            for k in range(b):
                a = seg[k][idx]
                c = seg[k][idx + 1]
                val = torch.lerp(a, c, w1)
                if isinstance(wt, float):
                    out[k] += val.sum(0) * wt if wt != 1.0 else val.sum(0)
                else:
                    out[k] += (val * wt).sum(0)
        return out.reshape(b, *g.image_size)

    def _backproject_fast(self, sino: "torch.Tensor") -> "torch.Tensor":
        """Parallel-beam FBP back-projection with linear interpolation (scikit-image's ``iradon``, to rounding).

        The views come in groups that share one view's interpolation indices and weights on a turned or
        mirrored grid (:func:`_symmetric_groups`): on a square grid, views evenly spread over 180 degrees
        fall in fours (``theta``, ``theta + 90``, ``180 - theta``, ``90 - theta``), so the index arithmetic
        is done once per four views and each pixel reads its four views' values in one gather from a
        table of ``(value, next value - value)`` rows. Each view is accumulated on its own grid, turned
        back once at the end. About half the time of a gather per view (tests/benchmarks/bench_recon_ct.py).
        """
        import torch

        g = self.geo
        b = sino.shape[0]
        nx, ny = g.image_size
        groups, turns = _symmetric_groups(np.asarray(g.angles, np.float64), nx == ny and
                                          abs(g.pixel_spacing[0] - g.pixel_spacing[1]) < 1e-9 * g.pixel_spacing[0])
        width = g.detectors + 2
        # a zero view at index `views` fills the slots of a group without a partner
        pad = torch.nn.functional.pad(sino.float(), (1, 1, 0, 1))
        nxt = torch.nn.functional.pad(pad[..., 1:], (0, 1))
        rows = torch.as_tensor(np.where(groups < 0, g.views, groups), device=sino.device)
        value = pad[:, rows]  # (B, groups, slots, width)
        table = torch.cat([value, nxt[:, rows] - value], 2).contiguous()
        slots = groups.shape[1]
        acc = torch.zeros(b, slots, self.npix, dtype=torch.float32, device=sino.device)
        offset = (g.detectors - 1) / 2 + 1
        xs = self._x.reshape(nx, ny)[:, 0]
        ys = self._y.reshape(nx, ny)[0]
        first = torch.as_tensor(groups[:, 0], device=sino.device)
        cos, sin = self._cos[first] * (1.0 / g.detector_width), self._sin[first] * (1.0 / g.detector_width)
        gathered = torch.empty(2 * slots, self.npix, dtype=torch.float32, device=sino.device)
        for i in range(len(groups)):
            # bin coordinate = (offset - x sin) + y cos: a sum of a row and a column term (one pass)
            f = ((offset - xs * sin[i])[:, None] + (ys * cos[i])[None, :]).reshape(-1)
            if self._may_miss:
                f.clamp_(0, g.detectors + 0.999)
            i0 = f.int()
            f -= i0
            for k in range(b):
                torch.index_select(table[k, i], 1, i0, out=gathered)
                acc[k].add_(gathered[:slots]).addcmul_(gathered[slots:], f)
        acc = acc.reshape(b, slots, nx, ny)
        return sum(_TURNS[t](acc[:, j]) for j, t in enumerate(turns))

    # -- normalisations for SIRT/SART ---------------------------------------------------------
    def row_sums(self, views: slice | None = None) -> "torch.Tensor":
        """``A 1`` (views, detectors): the length of each ray inside the grid, in mm."""
        import torch

        if "row" not in self._norms:
            self._norms["row"] = self.forward(torch.ones(1, *self.geo.image_size, device=self.device))[0]
        return self._norms["row"]

    def col_sums(self) -> "torch.Tensor":
        """``A^T 1`` (nx, ny)."""
        import torch

        if "col" not in self._norms:
            self._norms["col"] = self.backward(torch.ones(1, self.geo.views, self.geo.detectors, device=self.device))[0]
        return self._norms["col"]

    def as_matrix(self, max_entries: float = 6e7) -> "Projector | MatrixProjector":
        """The same operator as a sparse matrix (iterative methods apply it hundreds of times), if it fits in memory."""
        return self.subsets([np.arange(self.geo.views)], max_entries)[0][0]

    def subsets(self, groups: list[np.ndarray], max_entries: float = 6e7, split: int = 2) -> "list[tuple[Projector | MatrixProjector, torch.Tensor]]":
        """Operators of groups of views (ordered-subset methods) and the view indices of each.

        As sparse matrices when ``2 x split^2 x views x pixels <= max_entries`` (the pixel-to-detector
        coordinates computed once for all views), else as chunked projectors. The matrices split each
        pixel into ``split x split`` sub-pixels: a footprint closer to the square pixel's than one
        linearly interpolated point, which SART/SIRT need to converge without moire.
        """
        import torch
        from dataclasses import replace

        out = []
        if 2 * split**2 * self.geo.views * self.npix > max_entries:
            for idx in groups:
                sub = Projector(replace(self.geo, angles=np.asarray(self.geo.angles)[idx]), self.device, self.chunk)
                out.append((sub, torch.as_tensor(idx, device=self.device)))
            return out
        perm = np.concatenate(groups)
        full = Projector(replace(self.geo, angles=np.asarray(self.geo.angles)[perm]), self.device, self.chunk)
        dx, dy = self.geo.pixel_spacing
        offsets = [((i + 0.5) / split - 0.5, (j + 0.5) / split - 0.5) for i in range(split) for j in range(split)]
        parts = [full._coords(0, full.geo.views, offset=(ox * dx, oy * dy), share=1.0 / split**2) for ox, oy in offsets]
        width = self.geo.detectors + 2
        start = 0
        for idx in groups:
            stop = start + len(idx)
            sub = replace(self.geo, angles=np.asarray(self.geo.angles)[idx])
            pieces = [(flat[start:stop] - start * width, w1[start:stop], wt if isinstance(wt, float) else wt[start:stop])
                      for flat, w1, wt in parts]
            out.append((MatrixProjector(sub, self.device, pieces), torch.as_tensor(idx, device=self.device)))
            start = stop
        return out


class MatrixProjector:
    """A :class:`Projector` stored as CSR matrices ``A^T`` (regular: 2 entries per pixel and view) and ``A``.

    ``A`` is ``A^T`` transposed once (scipy on the host, O(entries)); both act on the padded sinogram.
    """

    def __init__(self, geo: CTGeometry, device, pieces: "list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | float]]"):
        import scipy.sparse
        import torch

        self.geo, self.device = geo, device
        self.npix = pieces[0][0].shape[1]
        width = geo.detectors + 2
        # (pixel, piece, view, 2) entries: every row of A^T holds 2 x pieces x views of them
        cols = torch.stack([torch.stack([f, f + 1], -1) for f, _, _ in pieces], 0).permute(2, 0, 1, 3).reshape(-1).cpu().numpy()
        vals = torch.stack([torch.stack([1 - w, w], -1) * (wt if isinstance(wt, float) else wt[..., None]) for _, w, wt in pieces], 0)
        vals = vals.permute(2, 0, 1, 3).reshape(-1).cpu().numpy()
        crow = np.arange(self.npix + 1, dtype=np.int64) * (2 * len(pieces) * geo.views)
        at = scipy.sparse.csr_matrix((vals, cols, crow), shape=(self.npix, geo.views * width))
        at.sum_duplicates()
        a = at.T.tocsr()
        a.sum_duplicates()

        def tensor(m):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(np.int64)),
                                               torch.from_numpy(m.data.astype(np.float32)), size=m.shape, device=device)

        self._at, self._a = tensor(at), tensor(a)
        self._norms: dict[str, "torch.Tensor"] = {}

    def forward(self, img: "torch.Tensor") -> "torch.Tensor":
        b = img.shape[0]
        out = (self._a @ img.reshape(b, self.npix).float().T).T
        return out.reshape(b, self.geo.views, self.geo.detectors + 2)[:, :, 1:-1]

    def backward(self, sino: "torch.Tensor", fbp_weight: bool = False) -> "torch.Tensor":
        import torch

        assert not fbp_weight, "FBP uses the Projector's own back-projection"
        b = sino.shape[0]
        pad = torch.nn.functional.pad(sino.float(), (1, 1)).reshape(b, -1)
        return (self._at @ pad.T).T.reshape(b, *self.geo.image_size)

    row_sums = Projector.row_sums
    col_sums = Projector.col_sums

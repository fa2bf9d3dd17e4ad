"""The learned detector at inference: image in, findings in world millimetres out.

The image is resampled along its own voxel axes to the model's spacing (2 mm:
the grid it was trained on; oblique grids keep their orientation), normalised
to the search mask's robust range (as :func:`medcli.detect.log.normalise`,
CT first clipped to the soft-tissue window) and run through the network whole,
or in overlapping tiles when large. Test-time mirroring (left-right, optional)
averages the heatmaps and sizes of the image and its mirror.

Findings are the heatmap's local maxima inside the mask (3x3x3 maximum),
refined to sub-voxel positions, suppressed in world millimetres (a weaker peak
within half the predicted diameter of a stronger one is the same lesion), and
boxed by the regressed sizes: the box along the grid's axes, its world extent
the axis-aligned box around it. Their scores are then multiplied by their
left-right asymmetry (:mod:`medcli.detect.symmetry`): normal anatomy that looks
like a lesion (the temporal horns' tips) has a twin across the midline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medcli.detect.findings import Finding, same_lesion
from medcli.detect.log import _subvoxel, normalise, spacing_of

#: Network input range (normalised units).
CLIP = (-1.0, 2.0)
#: Gaussian sigmas (mm) of the scale-space input channels: differences of adjacent blurs, the
#: normalised Laplacian of Gaussian of :mod:`medcli.detect.log` for blobs of about 2-24 mm. Given
#: as input they spare the network learning blob filters from scratch (it learns which blobs are
#: lesions: shape, context, mimics), which a CPU training budget could not afford.
DOG_SIGMAS_MM = (0.6, 1.0, 1.6, 2.6, 4.2, 6.8)
#: Whole-volume inference up to this many voxels; tiles above.
WHOLE_MAX = 160**3
TILE, MARGIN = 96, 12


def to_model_grid(data: np.ndarray, affine: np.ndarray, mask: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image and mask resampled along their voxel axes to ``spacing`` mm (anti-aliased); the new affine."""
    from scipy import ndimage

    sp = spacing_of(affine)
    f = spacing / sp
    n = np.maximum(np.floor((np.array(data.shape) - 1) / f).astype(int) + 1, 1)
    if np.allclose(f, 1.0, atol=1e-3):
        return data.astype(np.float32), affine.copy(), mask.copy()
    pre = np.sqrt(np.maximum(f**2 - 1, 0)) * 0.4246
    smooth = ndimage.gaussian_filter(data.astype(np.float32), pre, mode="nearest") if np.any(pre > 0) else data.astype(np.float32)
    grid = np.meshgrid(*[np.arange(n[i]) * f[i] for i in range(3)], indexing="ij", sparse=False)
    img = ndimage.map_coordinates(smooth, grid, order=1, mode="nearest").astype(np.float32)
    m = ndimage.map_coordinates(mask.astype(np.float32), grid, order=1, mode="nearest") >= 0.5
    aff = affine.copy()
    aff[:3, :3] = affine[:3, :3] @ np.diag(f)
    return img, aff, m


def model_input(data: np.ndarray, mask: np.ndarray, ct: bool, window: tuple[float, float], channels: int = 2,
                spacing: float = 2.0) -> np.ndarray:
    """(C, X, Y, Z) network input: normalised image, search mask, then (C > 2) the scale-space channels."""
    from scipy import ndimage

    work = np.clip(data, *window) if ct else data
    x = np.clip(normalise(work.astype(np.float32), mask), *CLIP)
    chans = [x, mask.astype(np.float32)]
    if channels > 2:
        sig = np.array(DOG_SIGMAS_MM[: channels - 1]) / spacing
        blur = [ndimage.gaussian_filter(x, s, mode="nearest", truncate=3.0) for s in sig]
        k = sig[1:] / sig[:-1]
        chans += [(blur[i] - blur[i + 1]) / np.float32(k[i] - 1) for i in range(len(sig) - 1)]
    return np.stack(chans).astype(np.float32)


def _forward(model, x: np.ndarray, device) -> np.ndarray:
    """Network output (C, X, Y, Z) for input (2, X, Y, Z): whole (padded to a multiple of 8) or tiled."""
    import torch

    shape = np.array(x.shape[1:])

    def run(block: np.ndarray) -> np.ndarray:
        s = np.array(block.shape[1:])
        pad = (-s) % 8
        b = np.pad(block, [(0, 0)] + [(0, int(p)) for p in pad], mode="edge")
        with torch.inference_mode():
            out = model(torch.from_numpy(b[None]).to(device))[0].float().cpu().numpy()
        return out[:, : s[0], : s[1], : s[2]]

    if np.prod(shape) <= WHOLE_MAX:
        return run(x)
    out = None
    starts = [list(range(0, max(int(n) - TILE, 0) + 1, TILE - 2 * MARGIN)) for n in shape]
    for i, n in enumerate(shape):
        if starts[i][-1] + TILE < n:
            starts[i].append(int(n) - TILE)
    for a in starts[0]:
        for b in starts[1]:
            for c in starts[2]:
                lo = np.array([a, b, c])
                hi = np.minimum(lo + TILE, shape)
                o = run(x[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
                if out is None:
                    out = np.zeros((o.shape[0],) + tuple(shape), np.float32)
                # Keep each tile's centre: its margins (except at the volume's faces) see too little context.
                keep_lo = np.where(lo > 0, lo + MARGIN, 0)
                keep_hi = np.where(hi < shape, hi - MARGIN, shape)
                sl = tuple(slice(int(p), int(q)) for p, q in zip(keep_lo, keep_hi))
                osl = tuple(slice(int(p - l), int(q - l)) for p, q, l in zip(keep_lo, keep_hi, lo))
                out[(slice(None),) + sl] = o[(slice(None),) + osl]
    return out


def predict_maps(model, x: np.ndarray, device=None, mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(heatmap probabilities (X, Y, Z), sizes (4, X, Y, Z) in mm), averaged over the left-right mirror if asked."""
    import torch

    device = device or torch.device("cpu")
    out = _forward(model, x, device)
    heat = 1.0 / (1.0 + np.exp(-out[0]))
    logsize = out[1:]
    if mirror:
        o2 = _forward(model, np.ascontiguousarray(x[:, ::-1]), device)[:, ::-1]
        heat = 0.5 * (heat + 1.0 / (1.0 + np.exp(-o2[0])))
        logsize = 0.5 * (logsize + o2[1:])
    return heat.astype(np.float32), (10.0 * np.exp(np.clip(logsize, -4, 2))).astype(np.float32)


def peaks_to_findings(heat: np.ndarray, sizes: np.ndarray, mask: np.ndarray, affine: np.ndarray, floor: float,
                      max_findings: int | None = None, min_diameter: float = 0.0, max_diameter: float = float("inf")) -> list[Finding]:
    """Local maxima of ``heat`` in ``mask`` (>= ``floor``) as findings, suppressed in world mm, best first.

    Peaks whose predicted diameter is under ``min_diameter`` are dropped; sizes over ``max_diameter`` are clipped to it.
    """
    from scipy import ndimage

    h = np.where(mask, heat, 0.0)
    peak = (h >= floor) & (h >= ndimage.maximum_filter(h, size=3, mode="constant"))
    idx = np.argwhere(peak)
    order = np.argsort(-h[tuple(idx.T)], kind="stable")
    rot = affine[:3, :3] / np.maximum(spacing_of(affine), 1e-9)  # unit direction of each voxel axis
    found: list[Finding] = []
    kept: list[tuple[np.ndarray, float]] = []
    for p in idx[order]:
        p = tuple(int(v) for v in p)
        score = float(h[p])
        ijk = np.array(p, float) + _subvoxel(h, p)
        c = affine[:3, :3] @ ijk + affine[:3, 3]
        size = sizes[:3][(slice(None),) + p].astype(float)
        d = float(sizes[3][p])
        if d < min_diameter:
            continue
        if d > max_diameter:
            # A size beyond the searched range is the size head's error, not a reason to drop the peak: on
            # validation it over-predicted large lesions by up to 1.9x (a 28.7 mm lesion scored 0.87 was
            # "55 mm" and dropped, session 8). Clipped, the peak stays, and its suppression radius with it.
            size = size * (max_diameter / d)
            d = max_diameter
        if same_lesion(c, d, kept):
            continue
        half = 0.5 * np.abs(rot) @ size
        found.append(Finding(c, np.concatenate([c - half, c + half]), d, score, math.pi / 6 * d**3 / 1000.0, "lesion", ijk))
        kept.append((c, d))
        if max_findings is not None and len(found) >= max_findings:
            break
    return found


class LearnedDetector:
    """A trained detection model from the hub (name or folder), ready to run on images."""

    def __init__(self, model: str, device=None):
        from medcli.runtime import configure_torch
        from medcli.engine.architectures import build
        from medcli.models import hub

        torch = configure_torch()
        self.spec, state = hub.load(model)
        self.net = build(self.spec)
        self.net.load_state_dict(state)
        self.net.eval()
        self.device = device or torch.device("cpu")
        self.net.to(self.device)
        inp: dict[str, Any] = self.spec.get("input") or {}
        self.spacing = float((inp.get("spacing") or [2.0])[0])
        self.channels = int((self.spec.get("params") or {}).get("in_channels", 2))
        self.mirror = bool(inp.get("mirror", False))
        self.name = str(self.spec.get("name", model))
        files = self.spec.get("files") or [{}]  # registry models: per file; trained folders: in spec.json
        self.sha256 = str(self.spec.get("sha256") or files[0].get("sha256", ""))

    def __call__(self, data: np.ndarray, affine: np.ndarray, mask: np.ndarray, ct: bool, window: tuple[float, float],
                 floor: float, max_findings: int | None = None, min_diameter: float = 0.0, max_diameter: float = float("inf"),
                 mirror: bool | None = None, bilateral: bool = True) -> tuple[list[Finding], np.ndarray, np.ndarray]:
        """Findings (with ``voxel_ijk`` on the model grid), the heatmap and the model grid's affine.

        ``bilateral``: scores multiplied by the findings' left-right asymmetry (:func:`medcli.detect.symmetry.rescore`),
        before ``floor`` and ``max_findings`` apply; False: the heatmap's scores as they are.
        """
        img, aff, m = to_model_grid(data, affine, mask, self.spacing)
        if not m.any():
            m = np.zeros_like(m)
            return [], np.zeros(img.shape, np.float32), aff
        x = model_input(img, m, ct, window, self.channels, self.spacing)
        heat, sizes = predict_maps(self.net, x, self.device, self.mirror if mirror is None else mirror)
        # re-scoring can reorder the findings, so the count is cut after it
        found = peaks_to_findings(heat, sizes, m, aff, floor, None if bilateral else max_findings, min_diameter, max_diameter)
        if bilateral:
            from medcli.detect.symmetry import rescore

            found = [f for f in rescore(found, x[0], m, aff) if f.score >= floor][:max_findings]
        return found, heat, aff

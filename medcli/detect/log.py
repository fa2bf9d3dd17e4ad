"""Multi-scale Laplacian-of-Gaussian (difference-of-Gaussians) blob detection in physical units.

The image is blurred with Gaussians whose sigmas are given in millimetres (per
axis sigma_mm / spacing, so anisotropic voxels see the same physical blob);
adjacent blurs are subtracted and divided by ``k - 1``, which approximates the
scale-normalised Laplacian ``sigma^2 * LoG`` (Lindeberg 1998) at a third of its
cost. A blob of radius ``R`` answers most strongly at ``sigma = R / sqrt(3)``
(3D). Candidates are local extrema in space and scale, bright and dark alike
(a lesion can be hypo- or hyperintense in any contrast); a Hessian blobness
factor (smallest / largest eigenvalue at the candidate's scale) damps tubes
(vessels) and sheets (sulci), the usual mimics. Overlapping candidates are
suppressed in world millimetres, and each finding is outlined by a local
half-contrast region to give its box, centre and volume.

Scores are the normalised response in units of the image's robust intensity
range (1st-99th percentile inside the mask): a blob of contrast 0.3 of that
range scores about 0.3 x 0.4 (the peak of a normalised 3D LoG on a sphere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from medcli.detect.findings import Finding
from medcli.image import Image

#: sigma per blob radius in 3D (the normalised LoG of a sphere peaks at R / sqrt(3)).
SQRT3 = math.sqrt(3.0)
#: Smallest blob diameter, in voxels (geometric mean spacing), that the detector reports.
MIN_VOXELS = 2.4


@dataclass
class LogSettings:
    """Settings of the detector.

    Attributes:
        min_diameter: Smallest blob diameter searched (mm).
        max_diameter: Largest blob diameter searched (mm).
        scale_ratio: Ratio of consecutive sigmas (k).
        low: Candidate floor on the score (findings below it are never made).
        polarity: ``both``, ``bright`` or ``dark``.
        blobness: Blobness ratio (smallest/largest Hessian eigenvalue) at which the score is kept whole.
        min_depth: A centre lies at least this deep in the mask (mm), and half its radius: the mask's
            surface (cortex, skin) is folded and mimics small blobs.
    """

    min_diameter: float = 2.0
    max_diameter: float = 40.0
    min_depth: float = 2.0
    scale_ratio: float = 1.3
    low: float = 0.02
    polarity: str = "both"
    blobness: float = 0.3


def sigmas_mm(s: LogSettings) -> np.ndarray:
    """The sigmas (mm) searched: one below and one above the range, for scale maxima at its ends."""
    lo = s.min_diameter / 2 / SQRT3 / s.scale_ratio
    hi = s.max_diameter / 2 / SQRT3 * s.scale_ratio
    n = int(math.ceil(math.log(hi / lo) / math.log(s.scale_ratio))) + 1
    return lo * s.scale_ratio ** np.arange(n)


def spacing_of(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def normalise(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Intensities as fractions of the mask's 1st-99th percentile range; outside the mask the nearest inside value.

    Filling the outside with the nearest tissue keeps the mask border (brain-skull,
    body-air) from answering like a huge dark or bright blob.
    """
    from scipy import ndimage

    vals = data[mask]
    lo, hi = np.percentile(vals, [1, 99]) if vals.size else (0.0, 1.0)
    out = (data.astype(np.float32) - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))
    if not mask.all():
        # Nearest inside voxel, on a 2x coarser grid (the fill only has to be smooth, not exact).
        idx = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
        out = out[tuple(idx)]
    return out


def detect_blobs(image: Image, mask: np.ndarray | None = None, settings: LogSettings | None = None,
                 threshold: float = 0.0, max_findings: int | None = None,
                 heatmap: bool = False) -> tuple[list[Finding], np.ndarray | None, np.ndarray]:
    """Find blobs in a 3D image.

    Args:
        image: 3D image (any orientation, oblique and anisotropic grids included).
        mask: Boolean search region on the image grid (None: everywhere).
        settings: Detector settings.
        threshold: Minimum score of a finding.
        max_findings: Keep at most this many (highest scores).
        heatmap: Also return the per-voxel best score (max over scales and polarities).

    Returns:
        ``(findings, heatmap or None, labels)``: findings sorted by decreasing score, and a
        label map (finding ``i`` = label ``i + 1``) of their outlines.
    """
    from scipy import ndimage

    s = settings or LogSettings()
    data = np.asarray(image.data, np.float32)
    shape = data.shape
    mask = np.ones(shape, bool) if mask is None else np.asarray(mask, bool)
    sp = spacing_of(image.affine)
    # A blob under ~2.4 voxels across cannot be told from noise (the normalised LoG of a single noisy
    # voxel is as strong as a lesion's): the smallest diameter searched is at least that.
    s = replace(s, min_diameter=max(s.min_diameter, MIN_VOXELS * float(np.prod(sp)) ** (1 / 3)))
    x = normalise(data, mask)
    inner = mask
    if s.min_depth > 0 and not mask.all():
        inner = ndimage.distance_transform_edt(mask, sampling=sp)
    sig = sigmas_mm(s)
    k = s.scale_ratio
    blurred = [ndimage.gaussian_filter(x, sig[0] / sp, mode="nearest", truncate=3.0)]
    responses = []
    for i in range(1, len(sig)):
        blurred.append(ndimage.gaussian_filter(x, sig[i] / sp, mode="nearest", truncate=3.0))
        # (G(k sigma) - G(sigma)) / (k - 1) ~ sigma^2 LoG: negative on bright blobs, so flip it.
        responses.append((blurred[i - 1] - blurred[i]) / np.float32(k - 1))
    # responses[j] belongs to the geometric middle of sig[j], sig[j+1].
    rsig = np.sqrt(sig[:-1] * sig[1:])
    heat = np.zeros(shape, np.float32) if heatmap else None
    polarities = {"both": (1, -1), "bright": (1,), "dark": (-1,)}[s.polarity]
    cands = []  # (score, i, j, k, scale index, polarity)
    nsc = len(responses)
    for j in range(nsc):
        for pol in polarities:
            r = responses[j] if pol == 1 else -responses[j]
            if heat is not None and 1 <= j < nsc - 1:
                np.maximum(heat, np.where(mask, r, 0), out=heat)
            if j == 0 or j == nsc - 1:
                continue  # the extra scales only bound the scale maxima
            deep = inner >= max(s.min_depth, 0.5 * rsig[j] * SQRT3) if inner is not mask else mask
            peak = (r > s.low) & deep
            if not peak.any():
                continue
            peak &= r >= ndimage.maximum_filter(r, size=3, mode="nearest")
            idx = np.argwhere(peak)
            if not len(idx):
                continue
            v = r[tuple(idx.T)]
            lower = pol * responses[j - 1][tuple(idx.T)]
            upper = pol * responses[j + 1][tuple(idx.T)]
            keep = (v >= lower) & (v >= upper)
            for (a, b, c), val in zip(idx[keep], v[keep]):
                cands.append((float(val), int(a), int(b), int(c), j, pol))
    # Best first, lazily: a candidate's raw response bounds its score (the blobness factor is <= 1),
    # so the Hessian is computed only for candidates that could still be reported.
    import heapq

    heap = [(-val, 0, a, b, c, j, pol) for val, a, b, c, j, pol in cands if val >= max(threshold, s.low)]
    heapq.heapify(heap)
    findings: list[Finding] = []
    labels = np.zeros(shape, np.uint16)
    kept_c: list[np.ndarray] = []
    kept_r: list[float] = []
    while heap:
        neg, done, a, b, c, j, pol = heapq.heappop(heap)
        radius = rsig[j] * SQRT3
        if labels[a, b, c]:
            continue  # inside a finding already made
        ijk = np.array([a, b, c], float) + _subvoxel(responses[j] * pol, (a, b, c))
        cw = image.voxel_to_world(ijk)[0]
        if kept_c:
            d = np.linalg.norm(np.array(kept_c) - cw, axis=1)
            if np.any(d < np.maximum(np.array(kept_r), radius)):
                continue
        if not done:
            bness = _blobness(blurred[j + 1], (a, b, c), sp, pol)
            score = -neg * min(1.0, bness / s.blobness) if s.blobness > 0 else -neg
            if score >= max(threshold, s.low):
                heapq.heappush(heap, (-score, 1, a, b, c, j, pol))
            continue
        f = _outline(x, image, labels, (a, b, c), ijk, radius, pol, -neg, len(findings) + 1)
        if f.diameter_mm < s.min_diameter or f.diameter_mm > s.max_diameter * 1.33:
            labels[labels == len(findings) + 1] = 0
            continue
        findings.append(f)
        kept_c.append(f.center_ras)
        kept_r.append(max(radius, f.diameter_mm / 2))
        if max_findings is not None and len(findings) >= max_findings:
            break
    return findings, heat, labels


def _blobness(g: np.ndarray, p: tuple[int, int, int], sp: np.ndarray, pol: int) -> float:
    """Smallest over largest Hessian eigenvalue (of the right sign) of the blurred image at ``p`` (1: a ball, 0: a tube or sheet)."""
    pad = [(max(0, 1 - p[i]), max(0, p[i] + 2 - g.shape[i])) for i in range(3)]
    sl = tuple(slice(max(p[i] - 1, 0), p[i] + 2) for i in range(3))
    w = np.pad(g[sl], pad, mode="edge").astype(np.float64)
    h = np.zeros((3, 3))
    for i in range(3):
        e = [1, 1, 1]
        e[i] = 0
        f = [1, 1, 1]
        f[i] = 2
        h[i, i] = (w[tuple(f)] - 2 * w[1, 1, 1] + w[tuple(e)]) / sp[i] ** 2
        for jj in range(i + 1, 3):
            def at(di, dj):
                q = [1, 1, 1]
                q[i] += di
                q[jj] += dj
                return w[tuple(q)]
            h[i, jj] = h[jj, i] = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (4 * sp[i] * sp[jj])
    ev = np.linalg.eigvalsh(-pol * h)  # a bright blob: all eigenvalues of -H positive
    big = ev.max()
    if big <= 0:
        return 0.0
    return float(max(ev.min(), 0.0) / big)


def _subvoxel(r: np.ndarray, p: tuple[int, int, int]) -> np.ndarray:
    """Parabolic refinement of a peak along each axis (within half a voxel)."""
    off = np.zeros(3)
    for ax in range(3):
        if 0 < p[ax] < r.shape[ax] - 1:
            lo, hi = list(p), list(p)
            lo[ax] -= 1
            hi[ax] += 1
            a, b, c = float(r[tuple(lo)]), float(r[p]), float(r[tuple(hi)])
            den = a - 2 * b + c
            if den < 0:
                off[ax] = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return off


def _outline(x: np.ndarray, image: Image, labels: np.ndarray, p: tuple[int, int, int], ijk: np.ndarray,
             radius: float, pol: int, score: float, label: int) -> Finding:
    """The finding's region: voxels past half-way from the surrounding level to the centre level, connected to the centre.

    The centre level is the mean in a ball of radius/2, the surrounding level the median of a
    shell at 1.5-2.5 radii; the region is kept within 1.5 radii. Falls back to the sphere of the
    detection scale when the contrast is too faint to outline.
    """
    from scipy import ndimage

    sp = spacing_of(image.affine)
    half = np.ceil(2.5 * radius / sp).astype(int) + 1
    lo = np.maximum(np.array(p) - half, 0)
    hi = np.minimum(np.array(p) + half + 1, x.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop = x[box]
    crop = ndimage.gaussian_filter(crop, 0.5, mode="nearest") if min(crop.shape) > 2 else crop
    grid = np.meshgrid(*[(np.arange(lo[i], hi[i]) - ijk[i]) * sp[i] for i in range(3)], indexing="ij")
    dist = np.sqrt(sum(g**2 for g in grid))  # approximate for oblique grids: spacing per axis
    inner = dist <= max(radius / 2, sp.min() * 0.75)
    shell = (dist >= 1.5 * radius) & (dist <= 2.5 * radius)
    region = None
    if inner.any() and shell.any():
        cval, bval = float(crop[inner].mean()), float(np.median(crop[shell]))
        if pol * (cval - bval) > 0.02:
            on = (pol * (crop - 0.5 * (cval + bval)) > 0) & (dist <= 1.5 * radius)
            lab, _ = ndimage.label(on)
            centre = tuple(int(np.clip(round(ijk[i]) - lo[i], 0, crop.shape[i] - 1)) for i in range(3))
            v = lab[centre]
            if v == 0 and inner.any():
                ids = lab[inner & (lab > 0)]
                v = int(np.bincount(ids).argmax()) if ids.size else 0
            if v:
                region = lab == v
    if region is None or not region.any():
        region = dist <= radius
    if not region.any():  # a sub-voxel blob: its nearest voxel
        region = np.zeros(crop.shape, bool)
        region[tuple(int(np.clip(round(ijk[i]) - lo[i], 0, crop.shape[i] - 1)) for i in range(3))] = True
    free = labels[box] == 0
    labels[box][region & free] = label
    vox = np.argwhere(region) + lo
    vol_mm3 = float(len(vox) * abs(np.linalg.det(image.affine[:3, :3])))
    centre_ijk = vox.mean(axis=0)
    # Box: the world extent of the region's voxel centres, plus each voxel's own half extent.
    world = image.voxel_to_world(vox)
    half_vox = 0.5 * np.abs(image.affine[:3, :3]).sum(axis=1)
    bmin, bmax = world.min(0) - half_vox, world.max(0) + half_vox
    diameter = (6.0 * vol_mm3 / math.pi) ** (1 / 3)
    return Finding(image.voxel_to_world(centre_ijk)[0], np.concatenate([bmin, bmax]), diameter, score,
                   vol_mm3 / 1000.0, "bright" if pol > 0 else "dark", centre_ijk)

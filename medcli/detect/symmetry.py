"""Left-right asymmetry of candidate lesions: the brain's bilateral mimics scored down.

The failure analysis of session 7 (20 validation scans behind the anatomy split) found that most of the
false peaks that outscore true lesions of 6 mm and more are normal anatomy, at the same places in every
scan: the tips of the temporal horns of the lateral ventricles (both sides), other small CSF pockets.
They are compact blobs of lesion-like contrast, so no blob measure (size, shape, contrast, leakage into a
larger structure) sets them apart; but they have a twin across the midsagittal plane, which a lesion has
not. The same reasoning is a radiologist's (compare with the other side) and an old CAD feature
(bilateral asymmetry).

:func:`mirror_plane` finds the plane that maps the image best onto itself (normalised correlation, near
the world x axis: the left-right axis of a RAS image); :func:`asymmetry` compares each candidate's core
with the image at its mirror position (the best match within :data:`TOLERANCE_MM`, for brains that are
not exactly symmetric), relative to the candidate's own contrast with its surroundings: about 0 for a
structure with a twin, 1 or more for a lesion. :func:`rescore` multiplies each score by
``FLOOR + (1 - FLOOR) * min(asymmetry / FULL, 1)``; candidates on the midline (their mirror within their
own radius) keep their score. The constants were chosen on validation scans (seeds 5000+, behind the
split), not on the benchmark's.

Limits: the MNI template behind every synthetic case is the *symmetric* ICBM 2009a, so the benchmark's
anatomy is exactly bilateral and this measure is at its best there; real brains are asymmetric by a few
millimetres (hence the tolerance), and bilateral lesions at mirror positions would be scored down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Mirror matches are searched within this distance (mm) of the exact mirror position.
TOLERANCE_MM = 4.0
#: Asymmetry at which a score is kept whole, and the factor of a perfectly symmetric candidate.
FULL, FLOOR = 0.5, 0.2
#: Below this correlation of the image with its mirror image there is no usable plane (not a head).
MIN_CORRELATION = 0.4


@dataclass
class Plane:
    """A mirror plane in world mm: unit ``normal``, a ``point`` on it, and the image's correlation with its mirror."""

    normal: np.ndarray
    point: np.ndarray
    correlation: float

    def reflect(self, pts: np.ndarray) -> np.ndarray:
        """Points (N, 3) mirrored across the plane."""
        return pts - 2.0 * ((pts - self.point) @ self.normal)[:, None] * self.normal


def _normal(yaw: float, tilt: float) -> np.ndarray:
    """World x turned by ``yaw`` about z and ``tilt`` about y (radians)."""
    return np.array([np.cos(yaw) * np.cos(tilt), np.sin(yaw) * np.cos(tilt), np.sin(tilt)])


def _sample(x: np.ndarray, affine: np.ndarray, pts: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    inv = np.linalg.inv(affine)
    ijk = pts @ inv[:3, :3].T + inv[:3, 3]
    return ndimage.map_coordinates(x, ijk.T, order=1, mode="nearest")


def mirror_plane(x: np.ndarray, mask: np.ndarray, affine: np.ndarray, points: int = 4000, seed: int = 0) -> Plane:
    """The plane (within 12 degrees and 16 mm of x = the mask's centre) that best maps ``x`` in ``mask`` onto itself.

    A grid search (4 degrees, 4 mm) refined by halving steps; the score is the correlation of the image at
    ``points`` random mask voxels with the (lightly smoothed) image at their mirror positions.
    """
    from scipy import ndimage

    idx = np.argwhere(mask)
    rng = np.random.default_rng(seed)
    idx = idx[rng.choice(len(idx), min(points, len(idx)), replace=False)]
    pts = idx @ affine[:3, :3].T + affine[:3, 3]
    v = x[tuple(idx.T)].astype(np.float64)
    smooth = ndimage.gaussian_filter(x.astype(np.float32), 1.0)
    centre = pts.mean(0)

    def corr(p: tuple[float, float, float]) -> float:
        plane = Plane(_normal(p[0], p[1]), centre + p[2] * _normal(p[0], p[1]), 0.0)
        w = _sample(smooth, affine, plane.reflect(pts))
        if v.std() < 1e-9 or w.std() < 1e-9:
            return -1.0
        return float(np.corrcoef(v, w)[0, 1])

    deg = np.radians
    grid = [(a, b, t) for a in deg(np.arange(-12, 13, 4.0)) for b in deg(np.arange(-12, 13, 4.0)) for t in np.arange(-16, 17, 4.0)]
    scores = [corr(p) for p in grid]
    best, p = max(scores), np.array(grid[int(np.argmax(scores))])
    for step in (deg(2.0), deg(1.0), deg(0.5)):
        moves = np.array([[step, 0, 0], [0, step, 0], [0, 0, step * 60.0]])  # 0.5 degree ~ 0.5 mm at 60 mm
        for m in (*moves, *-moves):
            s = corr(tuple(p + m))
            if s > best:
                best, p = s, p + m
    n = _normal(p[0], p[1])
    return Plane(n, centre + p[2] * n, best)


def _ball(radius: float) -> np.ndarray:
    """Offsets (mm) of a 1 mm lattice within ``radius``."""
    r = int(np.ceil(radius))
    g = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1].reshape(3, -1).T.astype(float)
    return g[np.linalg.norm(g, axis=1) <= radius]


def _shell(inner: float, outer: float) -> np.ndarray:
    g = _ball(outer)
    return g[np.linalg.norm(g, axis=1) >= inner]


def _thin(pts: np.ndarray, n: int = 400) -> np.ndarray:
    """At most ``n`` of the points, evenly spread through the list (a large lesion's ball has thousands: a mean
    or median of 400 is as good, and the twin search samples them at 27 positions)."""
    return pts[:: max(1, int(np.ceil(len(pts) / n)))]


def asymmetry(x: np.ndarray, affine: np.ndarray, plane: Plane, centres: np.ndarray, diameters: np.ndarray) -> np.ndarray:
    """Per candidate: how unlike its best mirror twin it is, in units of its own contrast (inf: no evidence).

    ``x`` is the normalised image on the grid of ``affine``; centres (N, 3) in world mm, diameters in mm.
    The core is the ball of half the radius (at least 1.5 mm), the surroundings the shell from 1 mm to
    ``max(2, r/2)`` mm beyond the radius. A twin must match both, core and surroundings, at one of the mirror
    positions within :data:`TOLERANCE_MM`: ``min (|core - twin core| + |shell - twin shell|) / |core - shell|``.
    (Matching the core alone let a lesion as bright as the white matter find "its twin" in the normal white
    matter next to its mirror position.) A candidate whose twin search could reach into itself (within
    ``0.75 r + 3.5`` mm of the plane: a lesion on or near the midline) has no evidence either way.
    """
    tol = np.mgrid[-1:2, -1:2, -1:2].reshape(3, -1).T * TOLERANCE_MM
    out = np.full(len(centres), np.inf)
    for i, (c, d) in enumerate(zip(np.asarray(centres, float).reshape(-1, 3), diameters)):
        r = max(float(d) / 2, 1.0)
        if abs(float((c - plane.point) @ plane.normal)) < 0.75 * r + 3.5:
            continue
        core = _thin(_ball(max(0.5 * r, 1.5)))
        shell = _thin(_shell(r + 1.0, r + 1.0 + max(2.0, 0.5 * r)))
        xc = float(_sample(x, affine, c + core).mean())
        xs = float(np.median(_sample(x, affine, c + shell)))
        mc = plane.reflect(c[None])[0]
        twin_c = _sample(x, affine, (mc + core[None] + tol[:, None]).reshape(-1, 3)).reshape(len(tol), -1).mean(1)
        twin_s = np.median(_sample(x, affine, (mc + shell[None] + tol[:, None]).reshape(-1, 3)).reshape(len(tol), -1), axis=1)
        out[i] = float(np.min(np.abs(twin_c - xc) + np.abs(twin_s - xs))) / max(abs(xc - xs), 1e-3)
    return out


def factors(asym: np.ndarray) -> np.ndarray:
    """Score multipliers: :data:`FLOOR` for a perfect twin, 1 from asymmetry :data:`FULL` (and on the midline)."""
    return FLOOR + (1.0 - FLOOR) * np.minimum(np.asarray(asym, float) / FULL, 1.0)


def rescore(found: list, x: np.ndarray, mask: np.ndarray, affine: np.ndarray, plane: Plane | None = None) -> list:
    """Findings with their scores multiplied by :func:`factors` of their asymmetry, best first.

    ``x`` and ``mask`` are the normalised image and search region on the grid of ``affine``. Without a usable
    mirror plane (correlation under :data:`MIN_CORRELATION`: not a head, or too little of it) the findings are
    returned as they are.
    """
    if not found:
        return found
    plane = plane or mirror_plane(x, mask, affine)
    if plane.correlation < MIN_CORRELATION:
        return found
    a = asymmetry(x, affine, plane, np.array([f.center_ras for f in found]), np.array([f.diameter_mm for f in found]))
    for f, k in zip(found, factors(a)):
        f.score = float(f.score * k)
    return sorted(found, key=lambda f: -f.score)

"""Synthetic lesions in MNI anatomy: the cases the detectors are tuned, tested and benchmarked on.

No lesion data set is available offline, so cases are made: the MNI152 tissue
maps (the tissue model, :func:`medcli.train.synth.tissue_maps`) are rendered as
T1-, T2-, FLAIR-like MR or as a head CT (skull and scalp added around the
brain), and lesions are inserted whose

* sizes follow a long tail (equivalent diameters 2-40 mm, small ones most common),
* shapes are ellipsoids, lobulated unions of balls or irregular blobs (a radius
  modulated by smooth noise),
* structure may include a rim, a necrotic core and perilesional oedema,
* intensity is drawn independently of the tissue around them (hypo- or
  hyperintense, at least ``min_contrast`` away from the local tissue).

Mimics are added too: thin tortuous vessels (tubes) with lesion-like contrast
and, in the training setting, dark vessels and thin CSF-like sheets (sulcus-like
pockets); sulci and ventricles are in the anatomy already.

The MNI brain is split front to back at :data:`SPLIT_Y` (world y, mm): the
learned detector is trained on crops entirely behind it (``box``), the benchmark
puts its lesions and searches entirely in front of it (``y_range``), so that no
test lesion lies in anatomy a model was trained on.

Contrast ``random`` renders the tissue maps with random tissue means, texture and
drift (the domain-randomised renderer of :func:`medcli.train.synth.render_slab`). Each case comes with its truth:
findings (centroid, box, equivalent diameter, volume) and a lesion label map.

Example:
    >>> import numpy as np
    >>> case = lesion_case(np.random.default_rng(0), "flair", spacing=(1.5, 1.5, 1.5))  # doctest: +SKIP
    >>> case.image.shape, len(case.truth)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from medcli.detect.findings import Finding
from medcli.image import Image

CONTRASTS = ("t1", "t2", "flair", "ct")
#: World y (mm) splitting the MNI brain: training crops lie behind it, benchmark lesions in front of it.
SPLIT_Y = 0.0
#: Mean intensity of CSF, GM, WM per MR contrast (WM of T1 near 0.85 as after percentile scaling).
TISSUE_MEANS = {"t1": (0.25, 0.6, 0.85), "t2": (1.0, 0.55, 0.4), "flair": (0.12, 0.65, 0.5)}
#: Head CT in HU: CSF, GM, WM; skull, scalp, air.
CT_HU = (8.0, 40.0, 28.0)
SKULL_HU, SCALP_HU, AIR_HU = 900.0, 30.0, -1000.0


@dataclass
class LesionConfig:
    """Ranges of the lesion and image randomisation.

    Attributes:
        n_lesions: Inclusive range of lesions per case.
        diameter: Equivalent-diameter range (mm).
        tail: Size-distribution exponent (larger: more small lesions); diameters are
            log-uniform when 1.
        shapes: Shapes drawn from (``ellipsoid``, ``lobulated``, ``irregular``).
        rim_prob, core_prob, oedema_prob: Probabilities of a rim, a necrotic core and
            oedema (for lesions of 8 mm and more).
        min_contrast: Smallest lesion-tissue difference (fraction of the WM-CSF range; CT: x 40 HU).
        hyper_prob: Probability of a hyperintense lesion.
        vessels: Inclusive range of mimic vessels.
        noise: Noise std range (fraction of the brightest tissue; CT: x 100 HU).
        bias: Std of the log bias field (MR).
        jitter: Std of the tissue means' jitter.
        vessel_radius: Range of the vessels' radius (mm).
        dark_vessel_prob: Probability that a vessel is dark (a flow void, a dark sulcus).
        pockets: Inclusive range of thin CSF-like sheets (sulcus-like mimics, 1-3 mm thick, 8-30 mm wide).
    """

    n_lesions: tuple[int, int] = (0, 8)
    diameter: tuple[float, float] = (2.0, 40.0)
    tail: float = 1.6
    shapes: tuple[str, ...] = ("ellipsoid", "lobulated", "irregular")
    rim_prob: float = 0.2
    core_prob: float = 0.2
    oedema_prob: float = 0.25
    min_contrast: float = 0.25
    hyper_prob: float = 0.5
    vessels: tuple[int, int] = (0, 6)
    noise: tuple[float, float] = (0.01, 0.04)
    bias: float = 0.1
    jitter: float = 0.05
    vessel_radius: tuple[float, float] = (0.5, 1.3)
    dark_vessel_prob: float = 0.0
    pockets: tuple[int, int] = (0, 0)


#: A second setting, for held-out benchmark cases: other shapes' mix, more noise, fewer hyperintense.
HELD_OUT = LesionConfig(tail=1.3, rim_prob=0.3, core_prob=0.3, oedema_prob=0.35, hyper_prob=0.4, vessels=(1, 8),
                        noise=(0.015, 0.05), bias=0.15, jitter=0.07)
#: The learned detector's training setting (neither the validation defaults nor HELD_OUT): lower
#: contrast floor, wider noise and bias, more and darker mimics, CSF-like sheets.
TRAINING = LesionConfig(n_lesions=(0, 5), tail=0.9, rim_prob=0.25, core_prob=0.25, oedema_prob=0.3, min_contrast=0.18,
                        hyper_prob=0.5, vessels=(0, 5), noise=(0.0, 0.06), bias=0.2, jitter=0.09, vessel_radius=(0.4, 1.8),
                        dark_vessel_prob=0.35, pockets=(0, 3))


@dataclass
class LesionCase:
    image: Image
    truth: list[Finding]
    lesions: Image  # label map, lesion i = label i + 1
    brain: np.ndarray  # search mask (brain for MR; head for CT)
    contrast: str


@lru_cache(maxsize=4)
def anatomy(spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), margin: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """MNI tissue probabilities (4, X, Y, Z) cropped to the brain + margin (mm), on a grid of ``spacing``, and its affine."""
    from scipy import ndimage

    from medcli.train.synth import tissue_maps

    maps = tissue_maps()
    lo, hi = maps.brain_box
    m = int(math.ceil(margin))
    lo = np.maximum(lo - m, 0)
    hi = np.minimum(hi + m + 1, maps.probs.shape[1:])
    probs = maps.probs[(slice(None),) + tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
    affine = maps.affine.copy()
    affine[:3, 3] = maps.affine[:3, :3] @ lo + maps.affine[:3, 3]
    sp = np.asarray(spacing, float)
    if np.allclose(sp, 1.0):
        return np.ascontiguousarray(probs), affine
    n = np.maximum(np.floor((np.array(probs.shape[1:]) - 1) / sp).astype(int) + 1, 2)
    grid = np.meshgrid(*[np.arange(n[i]) * sp[i] for i in range(3)], indexing="ij")
    # Average over the new voxel's footprint (slice profile) before sampling.
    pre = [ndimage.gaussian_filter(p, np.maximum(sp - 1, 0) * 0.4246, mode="nearest") for p in probs]
    out = np.stack([ndimage.map_coordinates(p, grid, order=1, mode="nearest") for p in pre]).astype(np.float32)
    out /= np.maximum(out.sum(0, keepdims=True), 1e-6)
    aff = affine.copy()
    aff[:3, :3] = affine[:3, :3] @ np.diag(sp)
    return out, aff


def _diameter(rng: np.random.Generator, cfg: LesionConfig) -> float:
    lo, hi = cfg.diameter
    return float(math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * rng.random() ** cfg.tail))


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([[a*a+b*b-c*c-d*d, 2*(b*c-a*d), 2*(b*d+a*c)],
                     [2*(b*c+a*d), a*a-b*b+c*c-d*d, 2*(c*d-a*b)],
                     [2*(b*d-a*c), 2*(c*d+a*b), a*a-b*b-c*c+d*d]])


def _shape_field(rng: np.random.Generator, kind: str, radius: float, rel: np.ndarray) -> np.ndarray:
    """Signed distance-like field (mm, < 0 inside) of a lesion at offsets ``rel`` (..., 3) from its centre."""
    if kind == "lobulated":
        n = int(rng.integers(2, 5))
        field = np.full(rel.shape[:-1], np.inf, np.float32)
        for i in range(n):
            r = radius * rng.uniform(0.55, 0.8)
            off = rng.normal(size=3)
            off = off / np.linalg.norm(off) * radius * rng.uniform(0.1, 0.45) if i else np.zeros(3)
            field = np.minimum(field, np.linalg.norm(rel - off, axis=-1) - r)
        return field
    axes = radius * rng.uniform(0.65, 1.0, 3)
    axes *= radius / np.prod(axes) ** (1 / 3)  # same volume as the ball of ``radius``
    local = rel @ _rotation(rng)
    rho = np.linalg.norm(local / axes, axis=-1)
    if kind == "irregular":
        # Radius modulated by a few random low-order harmonics of the direction.
        u = local / np.maximum(np.linalg.norm(local, axis=-1, keepdims=True), 1e-6)
        mod = np.ones(rel.shape[:-1], np.float32)
        for _ in range(4):
            k = rng.normal(size=3) * rng.uniform(1.5, 3.0)
            mod += 0.12 * np.sin(u @ k + rng.uniform(0, 2 * np.pi))
        rho = rho / np.clip(mod, 0.6, 1.5)
    return (rho - 1.0) * radius


def _tube(rng: np.random.Generator, world: np.ndarray, start: np.ndarray, radius: tuple[float, float] = (0.5, 1.3)) -> np.ndarray:
    """Occupancy of a tortuous vessel (quadratic Bezier) of radius in ``radius`` (mm)."""
    length = rng.uniform(20, 60)
    d1, d2 = rng.normal(size=3), rng.normal(size=3)
    p0, p2 = start, start + d1 / np.linalg.norm(d1) * length
    p1 = 0.5 * (p0 + p2) + d2 / np.linalg.norm(d2) * length * rng.uniform(0.1, 0.4)
    t = np.linspace(0, 1, int(length))[:, None]
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(curve).query(world.reshape(-1, 3))
    r = rng.uniform(*radius)
    return np.clip(r + 0.5 - dist.reshape(world.shape[:-1]), 0, 1).astype(np.float32)


def _bias(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    from scipy import ndimage

    coarse = rng.normal(0, std, (4, 4, 4))
    return np.exp(ndimage.zoom(coarse, np.array(shape) / 4.0, order=3, mode="nearest")[: shape[0], : shape[1], : shape[2]]).astype(np.float32)


def _random_means(rng: np.random.Generator, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A domain-randomised rendering of ``probs`` (random tissue means, texture, drift) and its CSF, GM, WM levels."""
    from medcli.train.synth import SynthConfig, render_slab

    img, _ = render_slab(probs, rng, SynthConfig(bg_zero_prob=1.0, texture=0.06, hard_prob=0.3, min_contrast=0.1))
    means = np.array([float(np.median(img[probs[k] > 0.8])) if (probs[k] > 0.8).any() else 0.5 for k in (1, 2, 3)])
    return img, np.clip(means, 0.02, 1.1)


def lesion_case(rng: np.random.Generator, contrast: str = "t1", cfg: LesionConfig | None = None,
                spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), n_lesions: int | None = None,
                box: tuple[slice, slice, slice] | None = None, y_range: tuple[float, float] | None = None) -> LesionCase:
    """One synthetic case: an MNI brain rendered in ``contrast`` with lesions and mimics, and its truth.

    Args:
        rng: Random generator (one per case: cases are reproducible from their seed).
        contrast: ``t1``, ``t2``, ``flair``, ``ct`` or ``random`` (domain-randomised MR-like).
        cfg: Randomisation ranges.
        spacing: Voxel size of the case (mm); the grid is RAS-aligned, anisotropic if asked.
        n_lesions: Number of lesions (default: drawn from ``cfg.n_lesions``).
        box: Crop of the anatomy grid (:func:`anatomy`) to render (default: all of it).
        y_range: World y range (mm) that every lesion lies entirely within (default: anywhere).
    """
    from scipy import ndimage

    cfg = cfg or LesionConfig()
    probs, affine = anatomy(tuple(float(s) for s in spacing))
    if box is not None:
        lo0 = np.array([b.start or 0 for b in box])
        probs = np.ascontiguousarray(probs[(slice(None),) + tuple(box)])
        affine = affine.copy()
        affine[:3, 3] = affine[:3, :3] @ lo0 + affine[:3, 3]
    shape = probs.shape[1:]
    sp = np.sqrt((affine[:3, :3] ** 2).sum(0))
    brain = probs[0] < 0.5
    ct = contrast == "ct"
    if ct:
        means = np.array(CT_HU) + rng.normal(0, 3, 3)
        scale = 40.0  # HU per unit of contrast
    elif contrast == "random":
        rendered, means = _random_means(rng, probs)
        scale = max(float(np.ptp(means)), 0.1)
    else:
        means = np.clip(np.array(TISSUE_MEANS[contrast]) + rng.normal(0, cfg.jitter, 3), 0.02, 1.1)
        scale = abs(means[2] - means[0]) if contrast != "flair" else abs(means[1] - means[0])
    img = rendered if contrast == "random" else np.tensordot(means, probs[1:], axes=1).astype(np.float32)
    if ct:
        # Skull (3-7 mm) and scalp (3 mm) around the brain, air outside.
        dist = ndimage.distance_transform_edt(~brain, sampling=sp)
        skull_mm = rng.uniform(3, 7)
        bg = np.where(dist <= skull_mm + 1, SKULL_HU + rng.normal(0, 60), np.where(dist <= skull_mm + 4, SCALP_HU, AIR_HU))
        img = img + probs[0] * bg.astype(np.float32)
        head = dist <= skull_mm + 4
    else:
        head = brain
    tissue_at = img.copy()
    world_idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    labels = np.zeros(shape, np.uint16)
    depth = ndimage.distance_transform_edt(brain, sampling=sp)
    n = int(rng.integers(cfg.n_lesions[0], cfg.n_lesions[1] + 1)) if n_lesions is None else n_lesions
    truth: list[Finding] = []
    placed: list[tuple[np.ndarray, float]] = []
    parenchyma = (probs[2] + probs[3] > 0.5) & brain
    cand = np.argwhere(parenchyma)
    for _ in range(n):
        d = _diameter(rng, cfg)
        r = d / 2
        for _try in range(200):
            ijk = cand[rng.integers(len(cand))]
            c = affine[:3, :3] @ ijk + affine[:3, 3]
            if depth[tuple(ijk)] < max(0.6 * r, 2.0):
                continue
            if y_range is not None and not (y_range[0] + r + 2 <= c[1] <= y_range[1] - r - 2):
                continue
            if all(np.linalg.norm(c - pc) > r + pr + 3 for pc, pr in placed):
                break
        else:
            continue
        placed.append((c, r))
        ext = np.ceil((2.2 * r + 2) / sp).astype(int)
        lo, hi = np.maximum(ijk - ext, 0), np.minimum(ijk + ext + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        rel = world_idx[box] @ affine[:3, :3].T + affine[:3, 3] - c
        field = _shape_field(rng, str(rng.choice(list(cfg.shapes))), r, rel)
        vox = float(np.prod(sp)) ** (1 / 3)
        occ = np.clip(0.5 - field / vox, 0, 1).astype(np.float32) * (brain[box] | (probs[0][box] < 0.9))
        local = float(np.median(tissue_at[box][occ > 0.5])) if (occ > 0.5).any() else float(means[2])
        hyper = rng.random() < cfg.hyper_prob
        for _k in range(50):
            val = rng.uniform(-10, 90) if ct else rng.uniform(0.0, 1.15 * max(means))
            if (val - local) * (1 if hyper else -1) >= cfg.min_contrast * scale:
                break
        else:
            val = local + (1 if hyper else -1) * cfg.min_contrast * scale * 1.5
        value = np.full(occ.shape, val, np.float32)
        if d >= 8 and rng.random() < cfg.core_prob:
            core = np.clip(0.5 - (field + r * rng.uniform(0.35, 0.55)) / vox, 0, 1)
            cval = means[0] if not ct else rng.uniform(5, 15)
            value = value * (1 - core) + cval * core
        if d >= 8 and rng.random() < cfg.rim_prob:
            th = rng.uniform(1.0, 2.0)
            rim = np.clip(0.5 - np.abs(field + th / 2) / vox + th / (2 * vox), 0, 1)
            rval = val + (1 if rng.random() < 0.5 else -1) * cfg.min_contrast * scale
            value = value * (1 - rim) + rval * rim
        a = img[box]
        if d >= 8 and rng.random() < cfg.oedema_prob:
            width = r * rng.uniform(0.3, 0.9)
            w = np.clip(1 - np.maximum(field, 0) / width, 0, 1) * (field > 0) * brain[box]
            base = {"t1": -0.12, "t2": 0.2, "flair": 0.25, "ct": -8.0}
            shift = (base[contrast] if contrast in base else float(rng.choice([-0.15, 0.2]))) * (1 if ct else scale)
            a = a + (0.6 * w * shift).astype(np.float32)
        img[box] = a * (1 - occ) + value * occ
        inside = occ > 0.5
        lab = labels[box]
        lab[inside & (lab == 0)] = len(truth) + 1
        idx = np.argwhere(inside) + lo
        if not len(idx):
            placed.pop()
            continue
        vol = float(occ.sum() * np.prod(sp))
        w = occ[inside]
        centroid = (idx * w[:, None]).sum(0) / w.sum()
        world = idx @ affine[:3, :3].T + affine[:3, 3]
        half = 0.5 * np.abs(affine[:3, :3]).sum(axis=1)
        truth.append(Finding(affine[:3, :3] @ centroid + affine[:3, 3], np.concatenate([world.min(0) - half, world.max(0) + half]),
                             (6 * vol / math.pi) ** (1 / 3), 1.0, vol / 1000.0, "hyper" if hyper else "hypo", centroid))
    # Mimics: vessels, with lesion-like contrast.
    nv = int(rng.integers(cfg.vessels[0], cfg.vessels[1] + 1))
    for _ in range(nv):
        ijk = cand[rng.integers(len(cand))]
        c = affine[:3, :3] @ ijk + affine[:3, 3]
        ext = np.ceil(70 / sp).astype(int)
        lo, hi = np.maximum(ijk - ext, 0), np.minimum(ijk + ext + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        world = world_idx[box] @ affine[:3, :3].T + affine[:3, 3]
        occ = _tube(rng, world, c, cfg.vessel_radius) * brain[box] * (labels[box] == 0)
        vval = (rng.uniform(60, 90) if ct else means.max() * rng.uniform(0.9, 1.2))
        if cfg.dark_vessel_prob > 0 and rng.random() < cfg.dark_vessel_prob:
            vval = rng.uniform(-5, 12) if ct else means.min() * rng.uniform(0.5, 1.1)
        img[box] = img[box] * (1 - occ) + vval * occ
    # Sulcus-like sheets of CSF (hard negatives): thin discs, never labelled.
    npk = int(rng.integers(cfg.pockets[0], cfg.pockets[1] + 1)) if cfg.pockets[1] > 0 else 0
    for _ in range(npk):
        ijk = cand[rng.integers(len(cand))]
        c = affine[:3, :3] @ ijk + affine[:3, 3]
        width, thick = rng.uniform(8, 30), rng.uniform(1.0, 3.0)
        ext = np.ceil((width / 2 + 2) / sp).astype(int)
        lo, hi = np.maximum(ijk - ext, 0), np.minimum(ijk + ext + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        local = (world_idx[box] @ affine[:3, :3].T + affine[:3, 3] - c) @ _rotation(rng)
        rho = np.linalg.norm(local / np.array([width / 2, width / 2 * rng.uniform(0.5, 1.0), thick / 2]), axis=-1)
        vox = float(np.prod(sp)) ** (1 / 3)
        occ = np.clip((1 - rho) * thick / 2 / vox + 0.5, 0, 1).astype(np.float32) * brain[box] * (labels[box] == 0)
        pval = rng.uniform(-2, 15) if ct else means[0] * rng.uniform(0.8, 1.2)
        img[box] = img[box] * (1 - occ) + pval * occ
    if not ct:
        img = img * _bias(rng, shape, cfg.bias)
        top = float(means.max())
        img = img + rng.uniform(*cfg.noise) * top * rng.standard_normal(shape).astype(np.float32)
        img = np.where(brain, img, 0).astype(np.float32)
    else:
        img = img + rng.uniform(*cfg.noise) * 100 * rng.standard_normal(shape).astype(np.float32)
    meta = {"source": f"synthetic {contrast}"}
    return LesionCase(Image(img.astype(np.float32), affine, meta), truth, Image(labels, affine, dict(meta)), head, contrast)

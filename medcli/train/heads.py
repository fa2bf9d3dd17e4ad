"""Synthetic skull-on heads of any contrast, built around the bundled MNI152 brain (SynthStrip-style).

medcli ships only a skull-stripped brain (the MNI152 2009a T1 and its GM/WM
maps). To train and to *measure* brain extraction and contrast recognition on
heads with skull, this module wraps that brain in procedurally generated
non-brain tissue and renders the whole head with a random MR contrast (or in
Hounsfield units):

* brain: CSF / GM / WM partial-volume maps (the MNI maps, so tissue borders
  look like a scan's);
* around it, following the distance to a smoothed brain envelope, layers of
  random, smoothly varying thickness: extra-cerebral CSF, dura, inner table,
  diploic marrow, outer table, galea/temporalis muscle, subcutaneous fat, skin;
* below and in front: a face and neck of muscle with fat and air (sinuses),
  two eyes (vitreous fluid) in orbital fat, a spinal cord in its CSF sheath
  inside vertebral bone with marrow;
* rendering: one mean intensity per tissue drawn within the contrast's order
  (T1: WM > GM > CSF, fat bright; T2: CSF > GM > WM; PD: flat, CSF >= GM > WM;
  FLAIR: GM >= WM > CSF dark), texture, then a random affine + smooth elastic
  deformation, a bias field, thick slices (1-5 mm), Rician noise and a
  phase-encoding ghost.

Every head is drawn from its own ``numpy.random.Generator`` with a
:class:`HeadConfig`. The benchmark (tests/benchmarks/bench_brain_contrast.py)
uses :data:`HELD_OUT`, whose seeds and deformation (control grid, amplitude)
differ from the training generators' :data:`TRAINING`.

Example:
    >>> import numpy as np
    >>> head = synth_head(np.random.default_rng(0), "t2", spacing=4.0)  # doctest: +SKIP
    >>> head.image.shape == head.brain.shape  # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Sequence

import numpy as np

#: Contrast classes of the recognition model, in its output order (x2: skull-stripped, with skull).
CONTRASTS = ("ct", "t1", "t2", "pd", "flair")
#: Human names of :data:`CONTRASTS`.
CONTRAST_NAMES = {"ct": "CT", "t1": "MR T1-like", "t2": "MR T2-like", "pd": "MR PD-like", "flair": "MR FLAIR-like"}

# Tissue labels of the head model. 1-3 (CSF, GM, WM) are the brain's and come as probability maps.
BG, CSF, GM, WM, RIM, DURA, BONE, MARROW, MUSCLE, FAT, SKIN, EYE, CORD, AIR, SOFT = range(15)
N_TISSUES = 15

# (low, high) mean intensity per tissue and contrast; drawn uniformly then the brain order is enforced.
# MR values are relative (brightest tissue ~1); CT values are Hounsfield units.
_MEANS = {
    "t1": {CSF: (0.08, 0.3), GM: (0.4, 0.6), WM: (0.65, 0.85), RIM: (0.06, 0.3), DURA: (0.1, 0.35), BONE: (0.0, 0.08),
           MARROW: (0.55, 1.0), MUSCLE: (0.3, 0.5), FAT: (0.8, 1.0), SKIN: (0.4, 0.75), EYE: (0.05, 0.25),
           CORD: (0.55, 0.8), AIR: (0.0, 0.05), SOFT: (0.35, 0.6)},
    "t2": {CSF: (0.8, 1.0), GM: (0.45, 0.65), WM: (0.25, 0.45), RIM: (0.75, 1.0), DURA: (0.05, 0.25), BONE: (0.0, 0.08),
           MARROW: (0.35, 0.8), MUSCLE: (0.15, 0.35), FAT: (0.45, 0.9), SKIN: (0.3, 0.6), EYE: (0.8, 1.0),
           CORD: (0.3, 0.5), AIR: (0.0, 0.05), SOFT: (0.25, 0.55)},
    "pd": {CSF: (0.75, 0.95), GM: (0.65, 0.8), WM: (0.5, 0.65), RIM: (0.7, 0.95), DURA: (0.15, 0.4), BONE: (0.02, 0.12),
           MARROW: (0.6, 0.95), MUSCLE: (0.4, 0.6), FAT: (0.7, 1.0), SKIN: (0.5, 0.8), EYE: (0.75, 0.95),
           CORD: (0.5, 0.7), AIR: (0.0, 0.05), SOFT: (0.45, 0.7)},
    "flair": {CSF: (0.02, 0.15), GM: (0.6, 0.85), WM: (0.45, 0.65), RIM: (0.02, 0.18), DURA: (0.1, 0.3),
              BONE: (0.0, 0.08), MARROW: (0.4, 0.9), MUSCLE: (0.2, 0.45), FAT: (0.5, 1.0), SKIN: (0.35, 0.7),
              EYE: (0.02, 0.2), CORD: (0.45, 0.65), AIR: (0.0, 0.05), SOFT: (0.3, 0.6)},
    "ct": {CSF: (0, 15), GM: (35, 45), WM: (22, 32), RIM: (0, 15), DURA: (40, 70), BONE: (900, 1900),
           MARROW: (250, 700), MUSCLE: (40, 60), FAT: (-120, -80), SKIN: (20, 60), EYE: (0, 20),
           CORD: (25, 40), AIR: (-1000, -900), SOFT: (20, 60)},
}
#: Brain tissue order each contrast must respect (brightest first), the definition of the class.
BRAIN_ORDER = {"t1": (WM, GM, CSF), "t2": (CSF, GM, WM), "pd": (CSF, GM, WM), "flair": (GM, WM, CSF), "ct": (GM, WM, CSF)}


@dataclass(frozen=True)
class HeadConfig:
    """Ranges of the randomisation of one head.

    Attributes:
        rotation: Max rotation (degrees) about each axis.
        scale: Max relative scaling.
        elastic: Max std (mm) of the smooth displacement.
        elastic_grid: Control points per axis of the displacement.
        slice_mm: Slice thicknesses to draw from (1 = isotropic).
        bias: Max std of the log bias field.
        noise: (min, max) Rician noise std, fraction of the brightest tissue.
        ghost: Max amplitude of the phase-encoding ghost.
        jitter: Relative within-tissue texture.
        stripped_prob: Probability of a skull-stripped rendering (background 0).
    """

    rotation: float = 20.0
    scale: float = 0.05
    elastic: float = 3.0
    elastic_grid: int = 5
    slice_mm: Sequence[float] = (1.0, 2.0, 3.0, 4.0, 5.0)
    bias: float = 0.3
    noise: Sequence[float] = (0.005, 0.05)
    ghost: float = 0.05
    jitter: float = 0.04
    stripped_prob: float = 0.0


#: The training generators' setting.
TRAINING = HeadConfig()
#: The benchmark's held-out setting: another control grid (4 vs 5 points), larger amplitude, other seeds.
HELD_OUT = HeadConfig(rotation=15.0, scale=0.05, elastic=4.0, elastic_grid=4, noise=(0.02, 0.04), bias=0.25)


@dataclass
class Head:
    """One synthetic head: the image, its true brain mask and how it was made."""

    image: np.ndarray  # float32, on the output grid
    brain: np.ndarray  # bool, the true brain mask on the same grid
    affine: np.ndarray  # voxel -> RAS mm
    contrast: str
    skull: bool
    info: dict
    intracranial: np.ndarray | None = None  # bool: brain + extra-cerebral CSF (the rim), same grid


# -- the anatomy ------------------------------------------------------------------------------------


@dataclass
class _Anatomy:
    probs: np.ndarray  # (3, X, Y, Z) CSF, GM, WM partial volumes (0 outside the brain)
    brain: np.ndarray  # bool
    dist: np.ndarray  # mm from the smoothed brain envelope (0 inside)
    world: tuple[np.ndarray, np.ndarray, np.ndarray]  # RAS mm of each axis (MNI space)
    affine: np.ndarray
    spacing: float


@lru_cache(maxsize=4)
def _anatomy(spacing: float) -> _Anatomy:
    """The MNI brain on a ``spacing`` mm grid, padded with room for the skull, face and neck."""
    from scipy import ndimage

    from medcli.train.synth import mni_volumes

    from medcli import io

    t1img = io.read("sample:t1").reorient("RAS")
    t1, gm, wm, csf, brain = (np.asarray(v, np.float32) for v in mni_volumes(0))
    # mni_volumes crops to the brain: recover the crop's origin in world mm.
    nz = np.argwhere(np.asarray(t1img.data) > 0)
    origin = t1img.affine[:3, :3] @ nz.min(0) + t1img.affine[:3, 3]
    pad_lo = np.array([30.0, 30.0, 95.0])  # mm: sides, back/front, below (face and neck)
    pad_hi = np.array([30.0, 35.0, 28.0])
    size_mm = np.array(brain.shape, float) + pad_lo + pad_hi
    shape = tuple(int(np.ceil(s / spacing)) for s in size_mm)
    start = origin - pad_lo
    world = tuple(start[a] + spacing * np.arange(shape[a]) for a in range(3))
    # Sample the 1 mm maps at the new grid's points (linear, so partial volumes stay partial volumes).
    idx = [(w - origin[a]) for a, w in enumerate(world)]
    grid = np.meshgrid(*idx, indexing="ij", sparse=False)
    sample = lambda v: ndimage.map_coordinates(v, grid, order=1, cval=0.0, prefilter=False)  # noqa: E731
    if spacing > 1.0:
        smooth = lambda v: ndimage.uniform_filter(v, int(round(spacing)))  # noqa: E731
    else:
        smooth = lambda v: v  # noqa: E731
    probs = np.stack([sample(smooth(v)) for v in (csf, gm, wm)]).astype(np.float32)
    brain_pv = sample(smooth(brain))
    mask = brain_pv >= 0.5
    # The skull follows the brain's envelope, not its sulci: a heavily smoothed brain.
    envelope = ndimage.gaussian_filter(brain_pv, 5.0 / spacing) > 0.3
    envelope |= mask
    dist = ndimage.distance_transform_edt(~envelope).astype(np.float32) * spacing
    affine = np.eye(4)
    affine[:3, :3] *= spacing
    affine[:3, 3] = start
    return _Anatomy(probs, mask, dist, world, affine, spacing)


def _field3(rng: np.random.Generator, shape: Sequence[int], grid: int, std: float) -> np.ndarray:
    """A smooth random 3D field (separable interpolation of coarse Gaussian noise), std ~ ``std``."""
    from medcli.train.synth import _basis

    coarse = rng.normal(0.0, std, (grid, grid, grid)).astype(np.float32)
    b = [_basis(int(n), grid) for n in shape]
    gain = 1.0 / float(np.sqrt(np.prod([(bi**2).sum(1).mean() for bi in b])))
    return np.einsum("xi,ijk,yj,zk->xyz", b[0], coarse, b[1], b[2], optimize=True) * gain


def _ellipsoid(world, centre, radii) -> np.ndarray:
    x, y, z = (((w - c) / r) ** 2 for w, c, r in zip(world, centre, radii))
    return (x[:, None, None] + y[None, :, None] + z[None, None, :]) <= 1.0


def _cylinder_z(world, centre_xy, radii_xy, z_max) -> np.ndarray:
    x, y, z = world
    disc = ((x[:, None] - centre_xy[0]) / radii_xy[0]) ** 2 + ((y[None, :] - centre_xy[1]) / radii_xy[1]) ** 2 <= 1.0
    return disc[:, :, None] & (z[None, None, :] <= z_max)


def head_labels(rng: np.random.Generator, spacing: float = 1.0) -> tuple[np.ndarray, _Anatomy]:
    """A random non-brain anatomy around the MNI brain: a label map (brain voxels = CSF), and the anatomy."""
    an = _anatomy(float(spacing))
    shape = an.brain.shape
    w = an.world
    d = an.dist
    lab = np.zeros(shape, np.uint8)
    # The face and neck: soft tissue below and in front of the brain, with fat and sinus air.
    face = _ellipsoid(w, (0, 35 + rng.uniform(-5, 5), -50), (62 * rng.uniform(0.9, 1.1), 62, 48 * rng.uniform(0.9, 1.1)))
    neck = _cylinder_z(w, (0, -20 + rng.uniform(-5, 5)), (55 * rng.uniform(0.85, 1.1), 58 * rng.uniform(0.85, 1.1)), -30)
    solid = face | neck
    lab[solid] = SOFT
    fatty = _field3(rng, shape, 6, 1.0) > rng.uniform(0.3, 1.0)
    lab[solid & fatty] = FAT
    muscle = _field3(rng, shape, 7, 1.0) > rng.uniform(0.2, 0.8)
    lab[solid & muscle & ~fatty] = MUSCLE
    for side in (-1, 1):  # maxillary sinuses
        lab[_ellipsoid(w, (side * 22, 45, -62), np.array([12, 16, 14]) * rng.uniform(0.7, 1.15, 3))] = AIR
    # Layers around the brain, thickness modulated by smooth fields.
    mod = 1.0 + _field3(rng, shape, 5, 0.25)
    t = {RIM: rng.uniform(1.0, 3.0), DURA: rng.uniform(0.8, 1.5), BONE: rng.uniform(1.2, 2.5), MARROW: rng.uniform(1.5, 4.0),
         MUSCLE: rng.uniform(0.5, 3.0), FAT: rng.uniform(1.5, 5.0), SKIN: rng.uniform(1.5, 3.0)}
    outer_table = rng.uniform(1.0, 2.0)
    edges, acc = [], 0.0
    for tissue in (RIM, DURA, BONE, MARROW):
        acc += t[tissue]
        edges.append((tissue, acc))
    acc += outer_table
    edges.append((BONE, acc))
    skull_edge = acc
    # Temporalis: thicker muscle at the sides of the head, above the ears.
    temporal = np.clip((np.abs(w[0])[:, None, None] - 45.0) / 20.0, 0, 1) * np.clip(1 - np.abs(w[2][None, None, :] - 10) / 40, 0, 1)
    for tissue, thick in ((MUSCLE, t[MUSCLE] + 8.0 * temporal), (FAT, t[FAT]), (SKIN, t[SKIN])):
        acc = acc + thick
        edges.append((tissue, acc))
    scaled = d / mod
    done = np.zeros(shape, bool)
    for tissue, edge in edges:
        sel = ~done & (scaled <= edge)
        if tissue in (MUSCLE, FAT, SKIN):
            sel &= ~solid  # the face/neck already has its own soft tissue there
        lab[sel] = tissue
        done |= scaled <= edge
    head = solid | (scaled <= edges[-1][1])
    # Skin over the whole outer surface (face and neck included).
    from scipy import ndimage

    inner = ndimage.binary_erosion(head, iterations=max(1, int(round(t[SKIN] / spacing))))
    lab[head & ~inner & (scaled > skull_edge)] = SKIN
    # Eyes in orbital fat, in front of and below the frontal lobes, outside the skull.
    for side in (-1, 1):
        c = (side * 32 + rng.uniform(-2, 2), 58 + rng.uniform(-4, 4), -40 + rng.uniform(-4, 4))
        orbit = _ellipsoid(w, c, (18, 20, 16)) & (d > skull_edge)
        lab[orbit] = FAT
        lab[_ellipsoid(w, c, np.array([12, 12, 11]) * rng.uniform(0.9, 1.1)) & (d > skull_edge)] = EYE
    # Spinal cord in its CSF sheath, inside a vertebra, continuing the brainstem downwards.
    cz = float(w[2][np.argwhere(an.brain.any((0, 1)))[0, 0]]) + 4.0
    cy = -40.0 + rng.uniform(-3, 3)
    lab[_cylinder_z(w, (0, cy), (16, 16), cz) & (d > 0)] = BONE
    lab[_cylinder_z(w, (0, cy), (13, 13), cz) & (d > 0)] = MARROW
    lab[_cylinder_z(w, (0, cy), (9, 9), cz) & (d > 0)] = RIM
    lab[_cylinder_z(w, (0, cy), (5.5, 5.5), cz) & (d > 0)] = CORD
    lab[an.brain] = CSF  # the brain is rendered from its partial-volume maps
    return lab, an


# -- rendering --------------------------------------------------------------------------------------


def tissue_means(rng: np.random.Generator, contrast: str) -> np.ndarray:
    """Mean intensity per tissue label for ``contrast``, drawn in its ranges, brain order enforced."""
    table = _MEANS[contrast]
    mu = np.zeros(N_TISSUES, np.float32)
    for k, (lo, hi) in table.items():
        mu[k] = rng.uniform(lo, hi)
    order = BRAIN_ORDER[contrast]
    gap = 8.0 if contrast == "ct" else 0.1
    for hi_k, lo_k in zip(order[:-1], order[1:]):
        if mu[hi_k] < mu[lo_k] + gap:
            mu[lo_k] = mu[hi_k] - gap
    if contrast == "ct":
        mu[BG] = rng.uniform(-1024, -990)
    return mu


def render(rng: np.random.Generator, lab: np.ndarray, an: _Anatomy, contrast: str, cfg: HeadConfig, epi: bool = False) -> np.ndarray:
    """Intensities of the head before deformation: tissue means, partial volume in the brain, texture.

    ``epi``: an echo-planar (DWI b=0, BOLD) look: fat suppressed (scalp fat and marrow dark), the long echo
    time's flat tissue signal against bright fluid, and susceptibility dropout above the sinuses.
    """
    mu = tissue_means(rng, contrast).copy()
    if epi:
        mu[[FAT, MARROW]] *= rng.uniform(0.03, 0.3)
        mu[[GM, WM, MUSCLE, SKIN, SOFT, CORD, DURA]] *= rng.uniform(0.45, 0.9)
    img = mu[lab]
    brain = an.brain
    img[brain] = (an.probs[:, brain] * mu[[CSF, GM, WM], None]).sum(0) / np.maximum(an.probs[:, brain].sum(0), 1e-3)
    span = float(np.ptp(mu[1:])) if contrast != "ct" else 60.0
    if cfg.jitter > 0:
        img += (_field3(rng, lab.shape, 12, cfg.jitter * span) * (lab > 0)).astype(np.float32)
    if epi:
        # Susceptibility dropout: signal lost above the air of the frontal sinus and the mastoids/temporal bone.
        w = an.world
        for centre in ((0.0, 45.0, -20.0), (-42.0, 0.0, -35.0), (42.0, 0.0, -35.0)):
            c = np.asarray(centre) + rng.normal(0, 6, 3)
            sd = rng.uniform(8, 18)
            d2 = (w[0][:, None, None] - c[0]) ** 2 + (w[1][None, :, None] - c[1]) ** 2 + (w[2][None, None, :] - c[2]) ** 2
            img *= (1.0 - rng.uniform(0.3, 1.0) * np.exp(-d2 / (2 * sd**2))).astype(np.float32)
    return img.astype(np.float32)


def _deformation(rng: np.random.Generator, shape, spacing: float, cfg: HeadConfig):
    """Source voxel coordinates (3, *shape) of a random rotation + scaling + smooth displacement about the centre."""
    from medcli.train.synth import _rotation

    rot = _rotation(rng, cfg.rotation) * (1.0 + rng.uniform(-cfg.scale, cfg.scale))
    c = (np.array(shape) - 1) / 2.0
    axes = [np.arange(n, dtype=np.float32) - ci for n, ci in zip(shape, c)]
    disp = [_field3(rng, shape, cfg.elastic_grid, cfg.elastic / spacing) for _ in range(3)] if cfg.elastic > 0 else [0, 0, 0]
    coords = []
    for i in range(3):
        v = (rot[i, 0] * axes[0][:, None, None] + rot[i, 1] * axes[1][None, :, None] + rot[i, 2] * axes[2][None, None, :]) + c[i]
        coords.append((v + disp[i]).astype(np.float32))
    return np.stack(coords), rot


def synth_head(
    rng: np.random.Generator,
    contrast: str,
    spacing: float = 1.0,
    cfg: HeadConfig = TRAINING,
    skull: bool | None = None,
    slice_mm: float | None = None,
    slice_axis: int | None = None,
    epi: bool = False,
) -> Head:
    """A random head with skull (or skull-stripped) rendered in ``contrast``.

    Args:
        rng: The head's random generator.
        contrast: One of :data:`CONTRASTS`.
        spacing: In-plane (and isotropic base) voxel size in mm.
        cfg: Randomisation ranges (:data:`TRAINING` or :data:`HELD_OUT`).
        skull: Keep the skull (default: drawn with ``cfg.stripped_prob``).
        slice_mm: Slice thickness (default: drawn from ``cfg.slice_mm``; at least ``spacing``).
        slice_axis: Axis of the thick slices (default: random).
        epi: An echo-planar acquisition's look (DWI b=0, BOLD): fat suppression, long-TE contrast, dropout
            (:func:`render`), axial slices with gaps, a stack of 8-40 slices, a wide field of view,
            a Nyquist (N/2) ghost in the skull-stripped case too, and low SNR.

    Returns:
        The :class:`Head`; ``image`` is in arbitrary units for MR, HU for CT.
    """
    from scipy import ndimage

    if contrast not in CONTRASTS:
        raise ValueError(f"unknown contrast {contrast!r} (known: {', '.join(CONTRASTS)})")
    if skull is None:
        skull = bool(rng.random() >= cfg.stripped_prob)
    lab, an = head_labels(rng, spacing)
    img = render(rng, lab, an, contrast, cfg, epi=epi)
    coords, rot = _deformation(rng, lab.shape, spacing, cfg)
    bg = float(_MEANS["ct"][AIR][0]) if contrast == "ct" else 0.0
    img = ndimage.map_coordinates(img, coords, order=1, cval=bg, prefilter=False)
    brain = ndimage.map_coordinates(an.brain.astype(np.float32), coords, order=1, cval=0.0, prefilter=False)
    # Intracranial = brain + the extra-cerebral CSF rim (some tools' "brain mask" includes it).
    icv = ndimage.map_coordinates((an.brain | (lab == RIM) & (an.dist < 8.0)).astype(np.float32), coords, order=1,
                                  cval=0.0, prefilter=False)
    del coords
    if not skull:
        img = np.where(brain >= 0.5, img, 0.0 if contrast != "ct" else rng.choice([0.0, -1024.0])).astype(np.float32)
    mr = contrast != "ct"
    if mr and cfg.bias > 0:
        img *= np.exp(_field3(rng, img.shape, 4, rng.uniform(0, cfg.bias)))
    # Thick slices: a slice profile along one axis, then every k-th plane.
    thick = float(slice_mm if slice_mm is not None else rng.choice(list(cfg.slice_mm)))
    if epi:
        thick, slice_axis = max(thick, float(rng.uniform(2.5, 6.0))), 2
    k = max(1, int(round(thick / spacing)))
    axis = int(slice_axis if slice_axis is not None else rng.integers(3))
    affine = an.affine.copy()
    if k > 1:
        sigma = k / 2.355
        img = ndimage.gaussian_filter1d(img, sigma, axis=axis, mode="nearest")
        brain = ndimage.gaussian_filter1d(brain, sigma, axis=axis, mode="nearest")
        icv = ndimage.gaussian_filter1d(icv, sigma, axis=axis, mode="nearest")
        start = int(rng.integers(k))
        take = np.arange(start, img.shape[axis], k)
        img, brain, icv = np.take(img, take, axis=axis), np.take(brain, take, axis=axis), np.take(icv, take, axis=axis)
        affine[:3, axis] *= k
        affine[:3, 3] += affine[:3, :3] @ np.eye(3)[axis] * (start / k)
    if epi:
        # A slab of a few slices (a slice gap widens their spacing), then a field of view wider than the head.
        gap = int(rng.choice([1, 1, 2, 3]))
        n = img.shape[2] // gap
        keep = min(n, int(rng.integers(8, 41)))
        # The slab is placed on the brain (its centre on a brain slice), as a DWI or BOLD series is.
        zs = np.flatnonzero((brain[:, :, : n * gap : gap] >= 0.5).any((0, 1)))
        mid = int(rng.integers(zs[0], zs[-1] + 1)) if zs.size else n // 2
        first = int(np.clip(mid - keep // 2, 0, n - keep))
        take = (np.arange(keep) + first) * gap
        img, brain, icv = img[:, :, take], brain[:, :, take], icv[:, :, take]
        affine[:3, 3] += affine[:3, 2] * take[0]
        affine[:3, 2] *= gap
        pad = [(int(p), int(q)) for p, q in rng.integers(0, int(40 / spacing) + 1, (2, 2))] + [(0, 0)]
        img, brain, icv = np.pad(img, pad), np.pad(brain, pad), np.pad(icv, pad)
        affine[:3, 3] -= affine[:3, :2] @ np.array([pad[0][0], pad[1][0]], float)
    noise_frac = 0.0
    if mr:
        top = float(np.percentile(img[brain >= 0.5], 99)) if (brain >= 0.5).any() else 1.0
        noise_frac = float(rng.uniform(*cfg.noise)) * (rng.uniform(1.0, 2.5) if epi else 1.0)
        s = noise_frac * top
        if cfg.ghost > 0 and (skull or epi):
            pe = 1 if epi else int(rng.choice([0, 1]))
            amp = rng.uniform(0.02, 0.15) if epi else rng.uniform(0, cfg.ghost)
            img = img + amp * np.roll(img, img.shape[pe] // 2, axis=pe)
        n1 = rng.normal(0, s, img.shape).astype(np.float32)
        n2 = rng.normal(0, s, img.shape).astype(np.float32)
        img = np.sqrt((img + n1) ** 2 + n2**2)
        img *= float(np.exp(rng.uniform(np.log(0.5), np.log(5000))))  # arbitrary scanner units
    else:
        img = img + rng.normal(0, rng.uniform(2, 12), img.shape).astype(np.float32)
        img = np.clip(img, -1024, 3071)
    info = {"contrast": contrast, "skull": skull, "slice_mm": k * spacing, "slice_axis": axis, "spacing": spacing,
            "rotation_deg": float(np.degrees(np.arccos(np.clip((np.trace(rot / np.cbrt(np.linalg.det(rot))) - 1) / 2, -1, 1)))),
            "noise": noise_frac, "epi": bool(epi)}
    return Head(img.astype(np.float32), brain >= 0.5, affine, contrast, skull, info, icv >= 0.5)


def as_image(head: Head):
    """The head as a :class:`medcli.image.Image` (and its brain mask as a second one)."""
    from medcli.image import Image

    return Image(head.image, head.affine, {}), Image(head.brain.astype(np.uint8), head.affine, {})


def with_config(base: HeadConfig, **changes) -> HeadConfig:
    """A copy of ``base`` with some ranges changed (recipes pass their settings this way)."""
    return replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})


# -- contrast recognition: training samples ---------------------------------------------------------

#: Regions of the recognition model, per contrast (class = 3 * contrast + region).
REGIONS = ("head, skull-stripped", "head with skull", "other body part")


def contrast_class(contrast: str, region: int) -> int:
    """Class index of the recognition model for a contrast and a region (index in :data:`REGIONS`)."""
    return 3 * CONTRASTS.index(contrast) + int(region)


def body_plane(rng: np.random.Generator, contrast: str, size: int = 128) -> tuple[np.ndarray, float]:
    """A random 2D torso or limb cross-section (fat, muscle, organs, fluid, lungs, bone), rendered in ``contrast``.

    Returns the plane and its pixel size in mm. The brain-tissue means stand in for the body's:
    organs take GM's, fluid CSF's, so a body slice keeps the contrast's order.
    """
    from medcli.train.synth import _smooth_field

    mu = tissue_means(rng, contrast)
    fov = rng.uniform(120, 420)
    px = fov / size
    yy, xx = (np.mgrid[0:size, 0:size] - size / 2) * px
    lab = np.zeros((size, size), np.uint8)
    ax, ay = rng.uniform(0.3, 0.48) * fov, rng.uniform(0.2, 0.4) * fov
    r = (xx / ax) ** 2 + (yy / ay) ** 2
    skin, fat = rng.uniform(1.5, 3) / min(ax, ay), rng.uniform(5, 40) / min(ax, ay)
    lab[r <= 1] = SKIN
    lab[r <= (1 - skin) ** 2] = FAT
    lab[r <= (1 - skin - fat) ** 2] = MUSCLE
    inner = r <= (1 - skin - fat - rng.uniform(0.05, 0.2)) ** 2
    field = _smooth_field(rng, (size, size), 6, 1.0)[0]
    lab[inner] = GM  # organs
    lab[inner & (field > rng.uniform(0.3, 1.2))] = FAT
    lab[inner & (field < -rng.uniform(0.5, 1.5))] = CSF  # fluid, bowel content
    kind = rng.random()
    if kind < 0.4:  # chest: two lungs
        for side in (-1, 1):
            lung = ((xx - side * ax * 0.45) / (ax * 0.35)) ** 2 + ((yy + ay * 0.1) / (ay * 0.6)) ** 2 <= 1
            lab[lung & inner] = AIR
    if kind < 0.8:  # spine: vertebral body with marrow, and a vessel in front of it
        cy = ay * rng.uniform(0.4, 0.65)
        rv = rng.uniform(12, 22)
        vb = (xx**2 + (yy - cy) ** 2) <= rv**2
        lab[vb] = BONE
        lab[(xx**2 + (yy - cy) ** 2) <= (rv - rng.uniform(1.5, 4)) ** 2] = MARROW
        lab[((xx - rng.uniform(-10, 10)) ** 2 + (yy - cy + rv + 14) ** 2) <= rng.uniform(8, 14) ** 2] = CSF
        # The spinal canal behind the vertebral body: CSF around the cord, ringed by the posterior arch.
        rc = rng.uniform(5, 9)
        canal = xx**2 + (yy - cy - rv - rc - 1) ** 2
        lab[canal <= (rc + rng.uniform(2, 4)) ** 2] = BONE
        lab[canal <= rc**2] = CSF
        lab[canal <= (rc * rng.uniform(0.3, 0.5)) ** 2] = CORD
        if rng.random() < 0.7:  # a fluid-filled organ: bladder, gallbladder, stomach, a cyst
            c = rng.uniform(-0.5, 0.5, 2) * (ax, ay)
            rr = rng.uniform(10, 45, 2)
            lab[inner & (((xx - c[0]) / rr[0]) ** 2 + ((yy - c[1]) / rr[1]) ** 2 <= 1)] = CSF
    else:  # limb: a long bone with its marrow cavity
        rb = rng.uniform(8, 20)
        c = rng.uniform(-0.3, 0.3, 2) * (ax, ay)
        d2 = (xx - c[0]) ** 2 + (yy - c[1]) ** 2
        if rng.random() < 0.6:  # joint fluid or a vessel beside the bone
            a = rng.uniform(0, 2 * np.pi)
            fc = c + (rb + rng.uniform(3, 10)) * np.array([np.cos(a), np.sin(a)])
            lab[inner & ((xx - fc[0]) ** 2 + (yy - fc[1]) ** 2 <= rng.uniform(3, 12) ** 2)] = CSF
        lab[d2 <= rb**2] = BONE
        lab[d2 <= (rb * rng.uniform(0.4, 0.7)) ** 2] = MARROW
    img = mu[lab] + _smooth_field(rng, (size, size), 10, 0.03 * (60.0 if contrast == "ct" else 1.0))[0] * (lab > 0)
    if contrast == "ct":
        img[lab == AIR] = rng.uniform(-900, -750)
        img[lab == BG] = rng.uniform(-1024, -990)
        img += rng.normal(0, rng.uniform(3, 15), img.shape)
    else:
        img *= np.exp(_smooth_field(rng, (size, size), 4, rng.uniform(0, 0.3))[0])
        s = rng.uniform(0.005, 0.05)
        img = np.sqrt((img + rng.normal(0, s, img.shape)) ** 2 + rng.normal(0, s, img.shape) ** 2)
        img *= float(np.exp(rng.uniform(np.log(0.5), np.log(5000))))
    return img.astype(np.float32), float(px)


def head_planes(image: np.ndarray, affine: np.ndarray, axis: int, offsets_mm: Sequence[float]) -> list[tuple[np.ndarray, tuple]]:
    """Planes of a RAS volume across ``axis`` at ``offsets_mm`` from its foreground's centre, with their pixel sizes."""
    spacing = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))
    n = image.shape[axis]
    sub = image[::2, ::2, ::2] if image.size > 200_000 else image  # percentiles of a subsample: same, 8x cheaper
    lo, hi = np.percentile(sub, [2, 98])
    fg = image > lo + 0.1 * (hi - lo)
    prof = np.flatnonzero(fg.any(axis=tuple(a for a in range(3) if a != axis)))
    centre = (prof[0] + prof[-1]) / 2 if prof.size else (n - 1) / 2
    out = []
    for off in offsets_mm:
        i = int(np.clip(round(centre + off / spacing[axis]), 0, n - 1))
        other = [a for a in range(3) if a != axis]
        out.append((np.take(image, i, axis=axis), tuple(float(spacing[a]) for a in other)))
    return out


@lru_cache(maxsize=None)
def _pool_head(k: int, pool_seed: int, held_out: bool, spacings: tuple, slice_mm: tuple, stripped_prob: float,
               epi_prob: float = 0.0) -> Head:
    """Head ``k`` of a deterministic pool (drawn from ``[pool_seed, k]``), kept for the process's life.

    A T2 head is an echo-planar one (:func:`synth_head`'s ``epi``) with probability ``epi_prob``.
    """
    rng = np.random.default_rng([pool_seed, k])
    contrast = CONTRASTS[int(rng.integers(len(CONTRASTS)))]
    skull = bool(rng.random() >= stripped_prob)
    g = float(rng.choice(list(spacings)))
    thick = max(g, float(rng.choice(list(slice_mm))))
    epi = bool(epi_prob > 0 and contrast == "t2" and rng.random() < epi_prob)
    return synth_head(rng, contrast, spacing=g, cfg=HELD_OUT if held_out else TRAINING, skull=skull, slice_mm=thick, epi=epi)


def contrast_sample(
    rng: np.random.Generator,
    size: int = 64,
    spacings: Sequence[float] = (3.0, 4.0),
    body_prob: float = 0.2,
    stripped_prob: float = 0.3,
    slice_mm: Sequence[float] = (1.0, 3.0, 4.0, 5.0, 6.0),
    crop: Sequence[float] = (0.6, 1.0),
    offset_mm: float = 15.0,
    pool: int = 500,
    pool_seed: int = 1,
    held_out: bool = False,
    gamma: float = 0.1,
    body_contrasts: Sequence[str] = CONTRASTS,
    body_crop: Sequence[float] | None = None,
    epi_prob: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One training sample of the contrast model: a presented plane (2, size, size) and its class.

    Heads (:data:`TRAINING`, or :data:`HELD_OUT` when ``held_out``) come from a pool of ``pool``
    heads drawn once per process from ``[pool_seed, k]`` (a 3D head costs 0.2-0.4 s, a plane of it
    nothing), at a random base spacing and slice thickness; one plane across a random axis within ``offset_mm`` of the
    head's centre is cropped at random (a fraction ``crop`` of each side), mirrored, MR intensities
    gamma-warped (the tissue order stays), and presented as at inference
    (:func:`medcli.engine.classify.present`). ``pool = 0`` draws a fresh head per sample.

    Body sections are rendered in ``body_contrasts`` only: the PD and FLAIR classes are defined by
    the brain's tissue order, which a torso or limb does not have (there a section is CT, T1-like:
    fluid dark, or T2-like: fluid bright). ``body_crop`` (default: ``crop``) is their window's range;
    small windows are the zoomed fields of view inside the body (a spine, a joint) that real series have.
    ``epi_prob``: the fraction of T2 heads rendered as echo-planar images (DWI b=0, BOLD).
    """
    from medcli.engine.classify import present

    window = crop
    if rng.random() < body_prob:
        contrast = str(body_contrasts[int(rng.integers(len(body_contrasts)))])
        plane, px = body_plane(rng, contrast)
        sp = (px, px)
        region = 2
        window = crop if body_crop is None else body_crop
    else:
        if pool > 0:
            key = (int(rng.integers(pool)), int(pool_seed))
        else:
            key = (int(rng.integers(2**31)), int(pool_seed))
        make = _pool_head if pool > 0 else _pool_head.__wrapped__
        head = make(*key, bool(held_out), tuple(spacings), tuple(slice_mm), float(stripped_prob), float(epi_prob))
        contrast = head.contrast
        # An echo-planar stack is read from its slices (across the others, a few thick slices are a smear).
        axis = 2 if head.info.get("epi") and rng.random() < 0.7 else int(rng.integers(3))
        plane, sp = head_planes(head.image, head.affine, axis, [rng.uniform(-offset_mm, offset_mm)])[0]
        region = int(head.skull)
    # A random window: a zoomed or partial field of view.
    fr = rng.uniform(*window, 2)
    h, w = plane.shape
    ch, cw = max(8, int(h * fr[0])), max(8, int(w * fr[1]))
    oy, ox = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    plane = plane[oy : oy + ch, ox : ox + cw]
    if rng.random() < 0.5:
        plane = plane[::-1]
    if rng.random() < 0.5:
        plane = plane.T
        sp = sp[::-1]
    if contrast != "ct" and gamma > 0:
        top = max(float(np.percentile(plane, 99.5)), 1e-6)
        plane = top * np.clip(plane / top, 0, None) ** float(np.exp(rng.normal(0, gamma)))
    return present(plane, sp, size), np.asarray(contrast_class(contrast, region), np.int64)

"""Learned CT reconstruction: a U-Net that corrects a short model-based reconstruction.

The network (FBPConvNet-style post-processing, Jin et al. 2017, started from
an iterative image rather than from FBP) takes two channels of a sparse-view,
low-dose parallel-beam slice in HU / 1000: a short OS-SPS + TV reconstruction
(``input.start``: 5 iterations, half of osem's default 10, :func:`start_inputs`)
and the ramp-filtered FBP (the detail TV smooths away), and predicts the
correction (clean - start) / 1000 that is added to the start. It is trained
with ``medcli train`` (``recipes/recon_ct.toml``, then ``recon_ct_finetune.toml``
and ``recon_ct_stage3.toml`` from the previous stage's weights) on CT-like slices
synthesised here, never on the real CT slices the tests and the benchmark use:

* heads from the MNI152 2009a grey/white-matter/CSF maps mapped to HU
  (GM 35-45, WM 22-32, CSF 0-15 HU), wrapped in a skull (cortical tables
  1000-1800 HU around 300-700 HU diploe) and a scalp with a fat layer, in air;
* bodies of random ellipses (soft tissue, fat, lungs, bone, contrast-filled
  vessels) -- the anatomy of the thorax and abdomen that the MNI maps lack;
* domain-randomised slices (:func:`_random_slice`): random ellipses of any
  tissue from air pockets to dense bone inside an optional bony shell, with
  textures of random grain, so that the network does not learn to expect
  only the two anatomies above;

each at a random pixel size, rotation and zoom (some fill the grid, like a
reconstruction field of view inside the body), optionally with a head holder or
table in the air beside the object (:func:`_holder`), then projected with
:func:`medcli.recon.ct.simulate.project_image` (a 3x finer grid) and counted
with Poisson noise as LoDoPaB-CT does.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from medcli.recon.ct.geometry import CTGeometry

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from medcli.recon.ct.projector import Projector

DEFAULT_MODEL = "recon-ct"


# -- synthetic CT slices -----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _head_maps() -> tuple[np.ndarray, ...]:
    """The MNI152 grey matter, white matter, CSF and brain maps (1 mm, 16 voxels of margin), read once."""
    from medcli.train.synth import mni_volumes

    _, gm, wm, csf, brain = mni_volumes(margin=16)
    return gm, wm, csf, brain


def _head_slice(rng: np.random.Generator, clutter_prob: float = 0.0, vertex_prob: float = 0.0,
                dense_prob: float = 0.0) -> np.ndarray:
    """A head slice (HU) at 1 mm from the MNI tissue maps, with skull and scalp.

    Args:
        rng: The random source.
        clutter_prob: Probability of skull-base-like bone and air clutter (:func:`_clutter`).
        vertex_prob: Probability of an axial slice from the top quarter of the brain (the vertex), where
            the skull is cut obliquely (1.2-2.5x wider in the slice) and the head is small in its field
            of view; otherwise any slice of the middle 70 % of the volume along a random axis.
        dense_prob: Probability of a dense skull, one band of bone: diploe at 0.6-1.0 of the tables' density
            instead of 300-700 HU. At 1.7-2 mm pixels a real skull's tables and diploe blend into one band;
            2.1.0, trained on two tables around a dark diploe only, drew two tables into it.
    """
    from scipy import ndimage

    gm, wm, csf, brain = _head_maps()
    axis = int(rng.choice([2, 2, 2, 1, 0]))
    lo, hi = int(0.15 * brain.shape[axis]), int(0.85 * brain.shape[axis])
    k = int(rng.integers(lo, hi))
    # drawn only when asked (like the clutter), so that the earlier recipes' banks stay reproducible
    vertex = vertex_prob > 0 and rng.random() < vertex_prob
    if vertex:
        axis = 2
        zs = np.flatnonzero((brain > 0.5).any(axis=(0, 1)))
        k = int(zs[0] + rng.uniform(0.75, 0.98) * (zs[-1] - zs[0]))
    g, w, c, b = (np.take(v, k, axis=axis).astype(np.float32) for v in (gm, wm, csf, brain))
    b = b > 0.5
    hu = g * rng.uniform(35, 45) + w * rng.uniform(22, 32) + c * rng.uniform(0, 15)
    hu += ndimage.gaussian_filter(rng.normal(0, rng.uniform(0, 6), hu.shape), 1.0)
    inner = ndimage.binary_fill_holes(b)
    if vertex:  # the skull over the vertex is smooth: it does not follow the gyri, CSF fills the sulci
        inner = ndimage.gaussian_filter(inner.astype(np.float32), 4.0) > 0.4
    outside = ndimage.distance_transform_edt(~inner)
    t_in, t_dip, t_out = rng.uniform(1.2, 2.5), rng.uniform(1.5, 5), rng.uniform(1.2, 2.5)
    if vertex:  # cut obliquely, the skull over the vertex is wider in the slice than it is thick
        t_in, t_dip, t_out = np.array([t_in, t_dip, t_out]) * rng.uniform(1.2, 2.5)
    skull = t_in + t_dip + t_out
    scalp = rng.uniform(3, 9)
    img = np.full(hu.shape, -1000.0, np.float32)
    img[b] = hu[b]
    csf_rim = ((outside > 0) & (outside <= 1.5)) | (inner & ~b)
    img[csf_rim] = rng.uniform(0, 15)
    bone = rng.uniform(1000, 1800)
    dip_lo, dip_hi = 300.0, 700.0
    if dense_prob > 0 and rng.random() < dense_prob:
        dip_lo, dip_hi = 0.6 * bone, bone
    img[(outside > 1.5) & (outside <= 1.5 + t_in)] = bone
    dip = (outside > 1.5 + t_in) & (outside <= 1.5 + t_in + t_dip)
    img[dip] = rng.uniform(dip_lo, dip_hi) + rng.normal(0, 60, int(dip.sum()))
    img[(outside > 1.5 + t_in + t_dip) & (outside <= 1.5 + skull)] = bone * rng.uniform(0.8, 1.0)
    soft = (outside > 1.5 + skull) & (outside <= 1.5 + skull + scalp)
    img[soft] = rng.uniform(20, 60)
    fat = soft & (outside > 1.5 + skull + scalp * rng.uniform(0.3, 0.7))
    img[fat] = rng.uniform(-120, -60)
    # drawn only when asked: the stage-1 bank (clutter_prob 0) stays reproducible; no skull base at the vertex
    for _ in range(int(rng.integers(0, 4)) if clutter_prob > 0 and not vertex and rng.random() < clutter_prob else 0):
        _clutter(rng, img, _clutter_region(rng, img, (outside > 1.5) & (outside <= 1.5 + skull)))
    return img


def _ellipse(shape: tuple[int, int], centre, axes, angle: float) -> np.ndarray:
    """Boolean mask of the ellipse of semi-axes ``axes`` (pixels) around ``centre``, turned by ``angle`` (radians)."""
    x, y = np.meshgrid(np.arange(shape[0]) - centre[0], np.arange(shape[1]) - centre[1], indexing="ij")
    c, s = np.cos(angle), np.sin(angle)
    return ((x * c + y * s) / axes[0]) ** 2 + ((-x * s + y * c) / axes[1]) ** 2 <= 1


def _body_slice(rng: np.random.Generator, n: int = 256) -> np.ndarray:
    """A thorax/abdomen-like slice (HU, about 1.5 mm pixels) of random ellipses."""
    from scipy import ndimage

    shape = (n, n)
    img = np.full(shape, -1000.0, np.float32)
    cx, cy = n / 2 + rng.normal(0, 5, 2)
    a, b = rng.uniform(0.30, 0.46) * n, rng.uniform(0.22, 0.38) * n
    body = _ellipse(shape, (cx, cy), (a, b), rng.uniform(-0.2, 0.2))
    img[body] = rng.uniform(-120, -70)  # subcutaneous fat
    inner = _ellipse(shape, (cx, cy), (a - rng.uniform(4, 15), b - rng.uniform(4, 15)), 0)
    img[inner] = rng.uniform(20, 60)
    if rng.random() < 0.6:  # lungs
        for side in (-1, 1):
            img[_ellipse(shape, (cx + side * a * 0.45, cy - b * 0.05), (a * rng.uniform(0.3, 0.42), b * rng.uniform(0.55, 0.8)),
                         rng.uniform(-0.3, 0.3))] = rng.uniform(-900, -750)
    for _ in range(int(rng.integers(4, 14))):  # organs, vessels, bones
        kind = rng.random()
        centre = (cx + rng.uniform(-0.7, 0.7) * a, cy + rng.uniform(-0.7, 0.7) * b)
        size = rng.uniform(2, 0.25 * min(a, b), 2)
        m = _ellipse(shape, centre, size, rng.uniform(0, np.pi)) & inner
        if kind < 0.3:
            img[m] = rng.uniform(300, 1400)  # bone
            core = _ellipse(shape, centre, size * 0.6, 0) & m
            img[core] = rng.uniform(150, 400)
        elif kind < 0.55:
            img[m] = rng.uniform(100, 350)  # contrast-filled vessel
        else:
            img[m] = rng.uniform(-20, 80)  # organ
    img += ndimage.gaussian_filter(rng.normal(0, rng.uniform(2, 15), shape), rng.uniform(0.5, 2)).astype(np.float32) * (img > -500)
    return img


def _clutter(rng: np.random.Generator, img: np.ndarray, where: np.ndarray) -> None:
    """Irregular bone with air cells in ``where`` (skull base, mastoid, sinuses, vertebrae), in place.

    Thresholded smooth random fields: the shapes the ellipses and the MNI maps lack, and where the
    first training stage failed on real heads (the network then smoothed or invented such edges).
    """
    from scipy import ndimage

    if where.sum() < 20:
        return
    f = ndimage.gaussian_filter(rng.normal(size=img.shape), rng.uniform(1.5, 5))
    bone = where & (f > np.quantile(f[where], rng.uniform(0.3, 0.8)))
    img[bone] = rng.uniform(300, 1900) + rng.normal(0, rng.uniform(0, 150), int(bone.sum()))
    g = ndimage.gaussian_filter(rng.normal(size=img.shape), rng.uniform(0.8, 3))
    if bone.sum() > 10 and rng.random() < 0.8:  # air cells inside the bone
        img[bone & (g > np.quantile(g[bone], rng.uniform(0.5, 0.9)))] = rng.uniform(-1000, -600)
    soft = where & ~bone
    if soft.sum() > 10 and rng.random() < 0.5:  # an air-filled cavity beside it (sinus, airway)
        img[soft & (g < np.quantile(g[soft], rng.uniform(0.05, 0.3)))] = rng.uniform(-1000, -800)


def _clutter_region(rng: np.random.Generator, img: np.ndarray, near: np.ndarray) -> np.ndarray:
    """An ellipse around a random pixel of ``near``, inside the object."""
    pts = np.argwhere(near)
    if len(pts) == 0:
        return np.zeros(img.shape, bool)
    c = pts[int(rng.integers(len(pts)))]
    ext = float(np.ptp(np.argwhere(img > -500), 0).max())
    size = rng.uniform(0.08, 0.3, 2) * ext
    return _ellipse(img.shape, c, size, rng.uniform(0, np.pi)) & (img > -500)


def _random_slice(rng: np.random.Generator, n: int = 256, clutter_prob: float = 0.0) -> np.ndarray:
    """A domain-randomised slice (HU, about 1 mm pixels): random ellipses of random tissues, random texture."""
    from scipy import ndimage

    shape = (n, n)
    img = np.full(shape, -1000.0, np.float32)
    cx, cy = n / 2 + rng.normal(0, 6, 2)
    a, b = rng.uniform(0.25, 0.46) * n, rng.uniform(0.2, 0.46) * n
    outer = _ellipse(shape, (cx, cy), (a, b), rng.uniform(0, np.pi))
    img[outer] = rng.uniform(-100, 80)
    inside = outer
    if rng.random() < 0.5:  # a bony shell (skull-like) of random thickness and density
        t = rng.uniform(2, 12)
        inside = _ellipse(shape, (cx, cy), (a - t, b - t), 0) & outer
        img[outer & ~inside] = rng.uniform(400, 2200)
        img[inside] = rng.uniform(-20, 60)
    hu_ranges = [(-1000, -700), (-950, -400), (-150, -50), (-20, 100), (100, 400), (300, 2200)]
    for _ in range(int(rng.integers(3, 25))):
        lo, hi = hu_ranges[int(rng.choice(len(hu_ranges), p=[0.12, 0.08, 0.15, 0.4, 0.1, 0.15]))]
        centre = (cx + rng.uniform(-0.8, 0.8) * a, cy + rng.uniform(-0.8, 0.8) * b)
        size = rng.uniform(1, rng.choice([4, 0.2 * min(a, b), 0.45 * min(a, b)]), 2)
        img[_ellipse(shape, centre, size, rng.uniform(0, np.pi)) & inside] = rng.uniform(lo, hi)
    for _ in range(int(rng.integers(0, 3)) if clutter_prob > 0 and rng.random() < clutter_prob else 0):
        _clutter(rng, img, _clutter_region(rng, img, img > -500))
    if rng.random() < 0.5:  # soften some edges (partial volume)
        img = ndimage.gaussian_filter(img, rng.uniform(0.3, 1.2))
    grain = ndimage.gaussian_filter(rng.normal(0, 1, shape), rng.uniform(0.5, 4))
    img += (grain / (grain.std() + 1e-6) * rng.uniform(0, 30)).astype(np.float32) * (img > -500)
    return img


def synthetic_ct_slice(rng: np.random.Generator, size: int = 128, body_prob: float = 0.3, fill_prob: float = 0.3,
                       random_prob: float = 0.3, clutter_prob: float = 0.0, fov_max: float = 1.25,
                       holder_prob: float = 0.0, vertex_prob: float = 0.0, dense_prob: float = 0.0,
                       coarse_prob: float = 0.0) -> tuple[np.ndarray, float]:
    """One CT-like slice in HU on a ``size`` x ``size`` grid, and its pixel size (mm).

    Args:
        rng: The random source (the slice is a function of its state and the settings).
        size: Grid size in pixels.
        body_prob: Probability of a thorax/abdomen-like slice (:func:`_body_slice`).
        fill_prob: Probability of a field of view inside the object (0.3-0.7 of its extent), as when the
            reconstruction grid is smaller than the body; otherwise the object fits with a margin.
        random_prob: Probability of a domain-randomised slice (:func:`_random_slice`); the rest are heads.
        clutter_prob: Probability of skull-base-like bone and air clutter (:func:`_clutter`) in heads and
            random slices.
        fov_max: The largest field of view, as a multiple of the object's extent (the smallest is 1.02).
        holder_prob: Probability of a head holder or table in the air beside the object (:func:`_holder`).
        vertex_prob: Probability that a head slice comes from the vertex (:func:`_head_slice`).
        dense_prob: Probability that a head's skull is one dense band (:func:`_head_slice`).
        coarse_prob: Probability that an object that fits the grid gets a scanner-like pixel of 1.5-2.2 mm
            (a head protocol's 220-280 mm field of view) whatever its size, instead of a field of view
            proportional to it: a small vertex slice then sits in a field of view twice its size.
    """
    from scipy import ndimage

    u = rng.random()
    if u < body_prob:
        src, src_mm = _body_slice(rng), 1.5
    elif u < body_prob + random_prob:
        src, src_mm = _random_slice(rng, clutter_prob=clutter_prob), 1.0
    else:
        src, src_mm = _head_slice(rng, clutter_prob, vertex_prob, dense_prob), 1.0
    obj = np.argwhere(src > -500)
    lo, hi = obj.min(0), obj.max(0)
    extent = float(max(hi - lo)) * src_mm
    inside = rng.random() < fill_prob
    fov = extent * (rng.uniform(0.3, 0.7) if inside else rng.uniform(1.02, fov_max))
    pixel = fov / size
    if coarse_prob > 0 and not inside and rng.random() < coarse_prob:
        pixel = max(rng.uniform(1.5, 2.2), 1.02 * extent / size)
    centre = (lo + hi) / 2 + rng.normal(0, 0.05, 2) * (hi - lo)
    th = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    scale = pixel / src_mm
    grid = (np.indices((size, size)).reshape(2, -1).T - (size - 1) / 2) * scale
    coords = (grid @ rot.T + centre).T
    if rng.random() < 0.5:
        coords[0] = 2 * centre[0] - coords[0]
    # antialias before shrinking; order 1 keeps edges honest
    sm = ndimage.gaussian_filter(src, max(0.0, 0.5 * (scale - 1))) if scale > 1.2 else src
    out = ndimage.map_coordinates(sm, coords, order=1, cval=-1000.0).reshape(size, size)
    # drawn only when asked, like the clutter: the banks of the earlier recipes stay reproducible
    if holder_prob > 0 and rng.random() < holder_prob and not inside:
        _holder(rng, out)
    return out.astype(np.float32), float(pixel)


def _holder(rng: np.random.Generator, img: np.ndarray) -> None:
    """A head holder or table top beside the object, in place: a thin dense shell in the air.

    Clinical scans show them as thin bright arcs or lines in the air around the head or under the body
    (300-350 HU at a 2 mm pixel on one of the benchmark's real head slices). The shell is 0.5-2.5 pixels
    thick with a one-pixel partial-volume ramp, curved (part of an ellipse around the object, one or two
    walls) or flat, and is drawn only where the image is air.
    """
    obj = img > -500
    if not obj.any():
        return
    pts = np.argwhere(obj)
    c = (pts.min(0) + pts.max(0)) / 2
    x, y = (np.indices(img.shape) - c[:, None, None]).astype(np.float64)
    gap, thick = rng.uniform(1, 12), rng.uniform(0.5, 2.5)
    if rng.random() < 0.65:  # curved shell over part of an ellipse around the object
        a, b = (pts.max(0) - pts.min(0)) / 2 + gap
        dist = (np.sqrt((x / a) ** 2 + (y / b) ** 2) - 1) * min(a, b)  # about the distance in pixels
        phi = np.angle(np.exp(1j * (np.arctan2(y, x) - rng.uniform(-np.pi, np.pi))))
        span = np.abs(phi) < rng.uniform(0.3, 0.8) * np.pi
    else:  # flat table top on one side of the object
        t = rng.uniform(0, 2 * np.pi)
        along = x * np.cos(t) + y * np.sin(t)
        dist = along - ((pts - c) @ np.array([np.cos(t), np.sin(t)])).max() - gap
        span = np.ones(img.shape, bool)
    walls = [0.0] + ([rng.uniform(thick + 1.5, thick + 6)] if rng.random() < 0.3 else [])
    frac = sum(np.clip(thick / 2 + 0.5 - np.abs(dist - w), 0, 1) for w in walls) * span * (img < -900)
    hu = rng.uniform(-200, 1500)
    img += (np.minimum(frac, 1) * (hu - img)).astype(img.dtype)


# -- training pairs ----------------------------------------------------------------------------


def parallel_geometry(size: int, pixel: float, views: int) -> CTGeometry:
    """The training geometry: a ``size`` x ``size`` grid of ``pixel`` mm, ``views`` parallel-beam angles over 180 degrees."""
    from medcli.recon.ct.simulate import make_geometry

    return make_geometry((size, size), (pixel, pixel), views, "parallel")


def start_inputs(b: torch.Tensor, proj: Projector, photons: float, inp: dict[str, Any]) -> torch.Tensor:
    """The network's input ``(B, 2, nx, ny)`` in HU / 1000: the short OS-SPS + TV start and the FBP.

    The same function makes the training pairs and the run-time input, so they cannot drift apart.

    Args:
        b: Line integrals ``(B, views, detectors)``.
        proj: The projector of the geometry.
        photons: I0 of the scan (the likelihood's weights).
        inp: The model's ``input`` spec: ``start_iterations``, ``start_lambda`` (HU), ``filter``.
    """
    import torch

    from medcli.recon.ct.fbp import fbp
    from medcli.recon.ct.iterative import osem

    mw = proj.geo.mu_water
    x0 = osem(b, proj, float(photons), int(inp.get("start_iterations", 5)), "tv", float(inp.get("start_lambda", 20.0)))
    f = fbp(b, proj, inp.get("filter", "ram-lak"))
    return torch.stack([(x0 - mw) / mw, (f - mw) / mw], 1).float()


#: Test-time transforms of the learned method (:meth:`PostProcessor.__call__`): the mean over the flips and the
#: half turn (exact for any evenly spread views) gained 0.18-0.39 dB PSNR on every held-out benchmark image over one
#: pass, on each of three noise seeds (tests/benchmarks/recon_ct_compare.py); four U-Net passes cost about a fifth of
#: the start's time, so the learned method stays within the best iterative method's time.
TEST_TIME_TRANSFORMS = 4

#: The ``input`` spec the training pairs are made with (the recipe's ``[model] input`` repeats it).
TRAIN_INPUT = {"start_iterations": 5, "start_lambda": 20.0, "filter": "ram-lak"}


def ct_pair(rng: np.random.Generator, size: int = 128, views: int = 60, photons: float = 4096.0,
            **slice_kw: float) -> tuple[np.ndarray, np.ndarray]:
    """One training pair: ``(start and FBP / 1000 (2, size, size), (clean - start) / 1000 (1, size, size))``.

    Args:
        rng: The random source.
        size: Grid size in pixels.
        views: Parallel-beam views over 180 degrees.
        photons: Unattenuated counts per detector bin (Poisson noise, LoDoPaB-CT's model).
        **slice_kw: The slice's settings (:func:`synthetic_ct_slice`: ``body_prob``, ``clutter_prob``, ...).
    """
    import torch

    from medcli.recon.ct.projector import Projector
    from medcli.recon.ct.simulate import add_poisson, hu_to_mu, project_image

    hu, pixel = synthetic_ct_slice(rng, size, **slice_kw)
    geo = parallel_geometry(size, pixel, views)
    p = add_poisson(project_image(hu_to_mu(hu)[None], geo)[0], photons, rng)
    with torch.inference_mode():
        x = start_inputs(torch.as_tensor(p[None], dtype=torch.float32), Projector(geo), photons, TRAIN_INPUT)[0].numpy()
    clean = np.maximum(hu, -1000.0) / 1000.0
    return x, (clean - x[0])[None].astype(np.float32)


@lru_cache(maxsize=2)
def _pair_bank(count: int, seed: int, size: int, views: int, photons: float,
               slice_kw: tuple[tuple[str, float], ...]) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pairs of :func:`ct_pair` drawn once per process (simulation and the start cost more than a step)."""
    rng = np.random.default_rng(seed)
    pairs = [ct_pair(rng, size, views, photons, **dict(slice_kw)) for _ in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def ct_pair_bank(rng: np.random.Generator, bank: int = 400, bank_seed: int = 1, crop: int = 64, size: int = 128,
                 views: int = 60, photons: float = 4096.0, **slice_kw: float) -> tuple[np.ndarray, np.ndarray]:
    """A random ``crop`` x ``crop`` window of one of ``bank`` simulated pairs, under a random rot90 / flip.

    Exact augmentations for the FBP channel: ``views`` angles evenly spread over 180 degrees are
    mapped onto themselves by 90 degree rotations (when ``views`` is even) and flips, so the FBP
    artefacts stay those of the acquisition (the start's ordered subsets change order, not content).

    Args:
        rng: The random source of the window and the augmentation (the bank has its own, ``bank_seed``).
        bank: Number of simulated pairs (:func:`ct_pair` with ``size``, ``views``, ``photons``, ``slice_kw``).
        bank_seed: Seed of the bank.
        crop: Window size in pixels.
    """
    xs, ys = _pair_bank(bank, bank_seed, size, views, photons, tuple(sorted(slice_kw.items())))
    i = int(rng.integers(len(xs)))
    a, b = (int(rng.integers(0, size - crop + 1)) for _ in range(2))
    x, y = xs[i, :, a : a + crop, b : b + crop], ys[i, :, a : a + crop, b : b + crop]
    k = int(rng.integers(4)) if views % 2 == 0 else 2 * int(rng.integers(2))
    x, y = np.rot90(x, k, (1, 2)), np.rot90(y, k, (1, 2))
    if rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def ct_pair_bank_mix(rng: np.random.Generator, mix: list[dict[str, Any]], **common: Any) -> tuple[np.ndarray, np.ndarray]:
    """A window of :func:`ct_pair_bank` from one of several banks, each drawn with equal probability.

    A fine-tune on a new bank alone forgets what only the old bank taught (stage 4's vertex bank cost
    CT_small 0.2-0.4 dB); mixing the old bank back in keeps it.

    Args:
        rng: The random source of the bank's choice, the window and the augmentation.
        mix: Each bank's own settings (``bank_seed``, slice settings), over ``common``.
        **common: Settings shared by all banks (``bank``, ``crop``, ``size``, ``views``, ``photons``).
    """
    return ct_pair_bank(rng, **{**common, **mix[int(rng.integers(len(mix)))]})


# -- run time ----------------------------------------------------------------------------------


def model_fits(spec: dict[str, Any], geo: CTGeometry) -> tuple[bool, str]:
    """Whether the geometry is one the model was trained for (and why not)."""
    inp = spec.get("input", {})
    if geo.beam != inp.get("beam", "parallel"):
        return False, f"{geo.beam} beam (the model knows {inp.get('beam', 'parallel')})"
    lo, hi = inp.get("views", [0, 10**9])
    if not lo <= geo.views <= hi:
        return False, f"{geo.views} views (the model knows {lo}-{hi})"
    slo, shi = inp.get("size", [0, 10**9])
    if not (slo <= min(geo.image_size) and max(geo.image_size) <= shi):
        return False, f"a {geo.image_size[0]}x{geo.image_size[1]} grid (the model knows {slo}-{shi} pixels)"
    span = float(np.ptp(geo.angles)) * geo.views / max(geo.views - 1, 1)
    if abs(span - 180.0) > 2.0:
        return False, f"{span:.0f} degrees of angles (the model knows 180)"
    dose = inp.get("photons")
    if dose and not (geo.photons and dose / 4 <= geo.photons <= dose * 4):
        return False, f"{'an unknown' if not geo.photons else f'{geo.photons:g} photons'} dose (the model knows about {dose:g} photons per bin)"
    return True, ""


class PostProcessor:
    """The network at run time: ``PostProcessor.load()(inputs) -> HU / 1000`` (the start plus its correction)."""

    def __init__(self, net: torch.nn.Module, spec: dict[str, Any]):
        self.net, self.spec = net, spec

    @classmethod
    def load(cls, name: str | None = None) -> PostProcessor:
        from medcli.enhance.learned import _load_net
        from medcli.errors import UsageError

        net, spec = _load_net(name or DEFAULT_MODEL)
        if spec.get("input", {}).get("start") != "osem+tv":
            # 1.x models post-processed the FBP alone; their input no longer exists here.
            raise UsageError(f"model {name or DEFAULT_MODEL!r} is not a recon-ct 2.x model (input.start = 'osem+tv')")
        return cls(net, spec)

    def __call__(self, x: np.ndarray, transforms: int = 1) -> np.ndarray:
        """``x`` ``(slices, 2, nx, ny)`` from :func:`start_inputs` -> corrected start ``(slices, nx, ny)``.

        Args:
            x: The network's input.
            transforms: 1, or the mean over 2 (the half turn), 4 (flips, half turn: exact for any evenly spread views over
                180 degrees) or 8 (also the quarter turns: exact for an even number of views) transforms
                of the input, each output turned back (test-time augmentation with the training windows' own
                augmentations).
        """
        import torch

        from medcli.runtime import torch_device

        if transforms not in (1, 2, 4, 8):
            raise ValueError(f"transforms must be 1, 2, 4 or 8, not {transforms}")
        mult = 2 ** (len(self.spec.get("params", {}).get("features", [0, 0, 0, 0])) - 1)
        dev = torch_device()
        self.net.to(dev)
        total = np.zeros((x.shape[0], *x.shape[2:]), np.float32)
        for k, flip in [(0, False), (2, False), (0, True), (2, True), (1, False), (3, False), (1, True), (3, True)][:transforms]:
            xt = np.rot90(x[:, :, ::-1] if flip else x, k, (2, 3))
            nx, ny = xt.shape[2:]
            pad = ((0, 0), (0, 0), (0, (-nx) % mult), (0, (-ny) % mult))
            xp = np.pad(xt, pad, mode="edge").astype(np.float32)
            with torch.inference_mode():
                out = self.net(torch.from_numpy(xp).to(dev))[:, 0].float().cpu().numpy()[:, :nx, :ny]
            out = np.rot90(out, -k, (1, 2))
            total += out[:, ::-1] if flip else out
        return x[:, 0] + total / transforms

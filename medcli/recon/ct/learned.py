"""Learned CT reconstruction: an FBPConvNet-style post-processing U-Net on the FBP image.

The network (Jin et al. 2017) takes the ramp-filtered FBP of a sparse-view,
low-dose parallel-beam sinogram in HU / 1000 and predicts the correction
(clean - FBP) / 1000. It is trained with ``medcli train recipes/recon_ct.toml``
on CT-like slices synthesised here, never on the real CT slices the tests and
the benchmark use:

* heads from the MNI152 2009a grey/white-matter/CSF maps mapped to HU
  (GM 35-45, WM 22-32, CSF 0-15 HU), wrapped in a skull (cortical tables
  1000-1800 HU around 300-700 HU diploe) and a scalp with a fat layer, in air;
* bodies of random ellipses (soft tissue, fat, lungs, bone, contrast-filled
  vessels) -- the anatomy of the thorax and abdomen that the MNI maps lack;

each at a random pixel size, rotation and zoom (some fill the grid, like a
reconstruction field of view inside the body), then projected with
:func:`medcli.recon.ct.simulate.project_image` (a 3x finer grid) and counted
with Poisson noise as LoDoPaB-CT does.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from medcli.recon.ct.geometry import CTGeometry

DEFAULT_MODEL = "recon-ct"


# -- synthetic CT slices -----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _head_maps() -> tuple[np.ndarray, ...]:
    from medcli.train.synth import mni_volumes

    _, gm, wm, csf, brain = mni_volumes(margin=16)
    return gm, wm, csf, brain


def _head_slice(rng: np.random.Generator) -> np.ndarray:
    """A head slice (HU) at 1 mm from the MNI tissue maps, with skull and scalp."""
    from scipy import ndimage

    gm, wm, csf, brain = _head_maps()
    axis = int(rng.choice([2, 2, 2, 1, 0]))
    lo, hi = int(0.15 * brain.shape[axis]), int(0.85 * brain.shape[axis])
    k = int(rng.integers(lo, hi))
    take = lambda v: np.take(v, k, axis=axis).astype(np.float32)  # noqa: E731
    g, w, c, b = take(gm), take(wm), take(csf), take(brain) > 0.5
    hu = g * rng.uniform(35, 45) + w * rng.uniform(22, 32) + c * rng.uniform(0, 15)
    hu += ndimage.gaussian_filter(rng.normal(0, rng.uniform(0, 6), hu.shape), 1.0)
    outside = ndimage.distance_transform_edt(~ndimage.binary_fill_holes(b))
    t_in, t_dip, t_out = rng.uniform(1.2, 2.5), rng.uniform(1.5, 5), rng.uniform(1.2, 2.5)
    skull = t_in + t_dip + t_out
    scalp = rng.uniform(3, 9)
    img = np.full(hu.shape, -1000.0, np.float32)
    img[b] = hu[b]
    csf_rim = (outside > 0) & (outside <= 1.5)
    img[csf_rim] = rng.uniform(0, 15)
    bone = rng.uniform(1000, 1800)
    img[(outside > 1.5) & (outside <= 1.5 + t_in)] = bone
    dip = (outside > 1.5 + t_in) & (outside <= 1.5 + t_in + t_dip)
    img[dip] = rng.uniform(300, 700) + rng.normal(0, 60, int(dip.sum()))
    img[(outside > 1.5 + t_in + t_dip) & (outside <= 1.5 + skull)] = bone * rng.uniform(0.8, 1.0)
    soft = (outside > 1.5 + skull) & (outside <= 1.5 + skull + scalp)
    img[soft] = rng.uniform(20, 60)
    fat = soft & (outside > 1.5 + skull + scalp * rng.uniform(0.3, 0.7))
    img[fat] = rng.uniform(-120, -60)
    return img


def _ellipse(shape: tuple[int, int], centre, axes, angle) -> np.ndarray:
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


def synthetic_ct_slice(rng: np.random.Generator, size: int = 128, body_prob: float = 0.4, fill_prob: float = 0.3) -> tuple[np.ndarray, float]:
    """One CT-like slice ``(size, size)`` in HU and its pixel size (mm)."""
    from scipy import ndimage

    if rng.random() < body_prob:
        src, src_mm = _body_slice(rng), 1.5
    else:
        src, src_mm = _head_slice(rng), 1.0
    obj = np.argwhere(src > -500)
    lo, hi = obj.min(0), obj.max(0)
    extent = float(max(hi - lo)) * src_mm
    if rng.random() < fill_prob:
        fov = extent * rng.uniform(0.3, 0.7)  # a field of view inside the object
    else:
        fov = extent * rng.uniform(1.02, 1.25)
    pixel = fov / size
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
    return out.astype(np.float32), float(pixel)


# -- training pairs ----------------------------------------------------------------------------


def parallel_geometry(size: int, pixel: float, views: int) -> CTGeometry:
    from medcli.recon.ct.simulate import make_geometry

    return make_geometry((size, size), (pixel, pixel), views, "parallel")


def fbp_input(sino: np.ndarray, geo: CTGeometry, filter_name: str = "ram-lak") -> np.ndarray:
    """FBP in HU / 1000 of one sinogram ``(views, detectors)``: the network's input."""
    import torch

    from medcli.recon.ct.fbp import fbp
    from medcli.recon.ct.projector import Projector

    mu = fbp(torch.as_tensor(sino[None], dtype=torch.float32), Projector(geo), filter_name)[0].numpy()
    return ((mu - geo.mu_water) / geo.mu_water).astype(np.float32)


def ct_pair(
    rng: np.random.Generator,
    size: int = 128,
    views: int = 60,
    photons: float = 4096.0,
    clean_prob: float = 0.0,
    body_prob: float = 0.4,
    fill_prob: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """One training pair: ``(FBP / 1000, (clean - FBP) / 1000)``, both ``(1, size, size)``."""
    from medcli.recon.ct.simulate import add_poisson, hu_to_mu, project_image

    hu, pixel = synthetic_ct_slice(rng, size, body_prob, fill_prob)
    geo = parallel_geometry(size, pixel, views)
    p = project_image(hu_to_mu(hu)[None], geo)[0]
    if rng.random() >= clean_prob:
        p = add_poisson(p, photons, rng)
    x = fbp_input(p, geo)
    clean = np.maximum(hu, -1000.0) / 1000.0
    return x[None], (clean - x)[None].astype(np.float32)


@lru_cache(maxsize=2)
def _pair_bank(count: int, seed: int, size: int, views: int, photons: float, body_prob: float, fill_prob: float):
    """``count`` pairs of :func:`ct_pair` drawn once per process (simulation costs more than a training step)."""
    rng = np.random.default_rng(seed)
    pairs = [ct_pair(rng, size, views, photons, 0.0, body_prob, fill_prob) for _ in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def ct_pair_bank(
    rng: np.random.Generator,
    bank: int = 400,
    bank_seed: int = 1,
    crop: int = 64,
    size: int = 128,
    views: int = 60,
    photons: float = 4096.0,
    body_prob: float = 0.4,
    fill_prob: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``crop`` x ``crop`` window of one of ``bank`` simulated pairs, under a random rot90 / flip.

    Exact augmentations: ``views`` angles evenly spread over 180 degrees are
    mapped onto themselves by 90 degree rotations (when ``views`` is even) and
    flips, so the FBP artefacts stay those of the acquisition.
    """
    xs, ys = _pair_bank(bank, bank_seed, size, views, photons, body_prob, fill_prob)
    i = int(rng.integers(len(xs)))
    a, b = (int(rng.integers(0, size - crop + 1)) for _ in range(2))
    x, y = xs[i, :, a : a + crop, b : b + crop], ys[i, :, a : a + crop, b : b + crop]
    k = int(rng.integers(4)) if views % 2 == 0 else 2 * int(rng.integers(2))
    x, y = np.rot90(x, k, (1, 2)), np.rot90(y, k, (1, 2))
    if rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


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
    """The post-processing network at run time: ``PostProcessor.load()(fbp_hu_over_1000) -> HU / 1000``."""

    def __init__(self, net, spec: dict[str, Any]):
        self.net, self.spec = net, spec

    @classmethod
    def load(cls, name: str | None = None) -> "PostProcessor":
        from medcli.enhance.learned import _load_net

        return cls(*_load_net(name or DEFAULT_MODEL))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(slices, nx, ny)`` -> corrected ``(slices, nx, ny)``."""
        import torch

        from medcli.cli.runtime import torch_device

        mult = 2 ** (len(self.spec.get("params", {}).get("features", [0, 0, 0, 0])) - 1)
        dev = torch_device()
        self.net.to(dev)
        nx, ny = x.shape[1:]
        pad = ((0, 0), (0, (-nx) % mult), (0, (-ny) % mult))
        xp = np.pad(x, pad, mode="edge").astype(np.float32)
        with torch.inference_mode():
            out = self.net(torch.from_numpy(xp[:, None]).to(dev))[:, 0].float().cpu().numpy()
        return x + out[:, :nx, :ny]

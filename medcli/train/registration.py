"""Training pairs, loss and validation of the learned registration model (SynthMorph-style).

A network that has only seen image pairs rendered from label maps, each
image with its own random contrast, bias, noise, blur and its own random
smooth deformation, learns to align the *anatomy* (the labels it is scored
on), not the intensities: it registers a T2 onto a T1 as it registers two T1s
(Hoffmann et al. 2022).

Here the label maps are the MNI152 2009a tissue maps (the tissue model's,
:func:`medcli.train.synth.tissue_maps`). Each tissue class is split into
eight soft octants of the template (left/right, front/back, up/down), so that
the Dice loss sees 24 structures and penalises a misplaced lobe, not only a
misplaced tissue border. Both images of a pair are deformed, independently:
a random affine (small rotation, scaling, shift: what is left after the
classical affine step) composed with a random stationary velocity field
integrated by scaling and squaring (diffeomorphic, as the network's output).

Everything lives on the network grid: RAS-aligned, :data:`SPACING` mm voxels,
:data:`SHAPE` voxels around the brain (the same grid that
:mod:`medcli.register.learned` builds around a fixed image).

A sample (the training engine's generator protocol) is
``x = [moving, fixed]`` ``(2, *SHAPE)`` and ``y = [moving labels, fixed
labels]`` ``(2 * 24, *SHAPE)``; the network's output is a velocity field
``v`` ``(3, *SHAPE)`` in voxel units; ``exp(v)`` maps a fixed-grid voxel to
the moving-grid voxel that lands on it.

References:
    Hoffmann M, Billot B, Greve DN, Iglesias JE, Fischl B, Dalca AV.
    SynthMorph: learning contrast-invariant registration without acquired
    images. IEEE Trans Med Imaging 2022;41(3):543-558.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

#: Voxel size (mm) and shape of the network grid (RAS-aligned; 160 x 192 x 160 mm: a brain and a margin).
SPACING = 4.0
SHAPE = (40, 48, 40)
#: Squarings of the velocity field (v / 64 per step: exact enough for fields up to ~16 voxels).
SQUARINGS = 6
#: Anti-aliasing of a 1 mm image before it is sampled on the network grid (Gaussian sigma, mm).
PRESMOOTH_MM = 1.9


def net_affine(centre: np.ndarray) -> np.ndarray:
    """Voxel-to-RAS matrix of the network grid centred on ``centre`` (world mm)."""
    aff = np.diag([SPACING, SPACING, SPACING, 1.0])
    aff[:3, 3] = np.asarray(centre, float) - SPACING * (np.array(SHAPE) - 1) / 2
    return aff


@lru_cache(maxsize=1)
def template() -> dict[str, Any]:
    """The tissue maps, smoothed as the network grid sees them, with their affine and brain centre."""
    from scipy import ndimage

    from medcli.train.synth import tissue_maps

    maps = tissue_maps()
    probs = np.stack([ndimage.gaussian_filter(p, PRESMOOTH_MM, mode="nearest") for p in maps.probs]).astype(np.float32)
    probs[0] = 1.0 - probs[1:].sum(0)  # outside the template: all background (grid_sample pads with zeros)
    brain = maps.probs[0] < 0.5
    idx = np.argwhere(brain)
    centre_vox = idx.mean(0)
    centre = maps.affine[:3, :3] @ centre_vox + maps.affine[:3, 3]
    import torch

    return {"tensor": torch.from_numpy(probs)[None], "affine": maps.affine, "centre": centre}


def random_svf_displacement(rng: np.random.Generator, amplitude_mm: float, smooth_mm: float) -> np.ndarray:
    """Displacement (X, Y, Z, 3) in mm of ``exp(v)`` for a random smooth velocity field on the network grid."""
    import torch
    from scipy import ndimage

    from medcli.register import grid as G

    v = rng.normal(size=(3,) + SHAPE)
    v = np.stack([ndimage.gaussian_filter(c, smooth_mm / SPACING, mode="wrap") for c in v])
    v *= amplitude_mm / SPACING / max(float(v.std()), 1e-8)
    with torch.no_grad():
        d = G.expmap(torch.from_numpy(v.astype(np.float32))[None], SQUARINGS)[0]
    return np.moveaxis(d.numpy(), 0, -1) * SPACING


def _octants(world: np.ndarray, centre: np.ndarray, width: float) -> np.ndarray:
    """Soft octant memberships (8, ...) of template points ``world`` (..., 3) about ``centre``."""
    s = 1.0 / (1.0 + np.exp(-(world - centre) / width))  # (..., 3): "right/anterior/superior of the centre"
    out = []
    for i in range(8):
        w = np.ones(world.shape[:-1], np.float32)
        for a in range(3):
            w = w * (s[..., a] if (i >> a) & 1 else 1.0 - s[..., a])
        out.append(w)
    return np.stack(out).astype(np.float32)


def _render(probs: np.ndarray, rng: np.random.Generator, cfg) -> np.ndarray:
    """One random MR-like contrast of probability maps (4, X, Y, Z): tissue means, bias, blur, noise, gamma."""
    import torch
    from scipy import ndimage

    from medcli.train.synth import render_slab

    img, top = render_slab(probs, rng, cfg)
    if rng.random() < 0.5:  # lower resolution: an extra blur, anisotropic at times
        img = ndimage.gaussian_filter(img, rng.uniform(0, 1.0, 3))
    coarse = torch.from_numpy(rng.normal(0, rng.uniform(0, cfg.bias), (1, 1, 4, 4, 4)).astype(np.float32))
    bias = torch.nn.functional.interpolate(coarse, size=img.shape, mode="trilinear", align_corners=True)[0, 0].numpy()
    img = img * np.exp(bias)
    sigma = rng.uniform(0, 0.06) * top  # at 4 mm noise is averaged over 64 voxels: a 1 mm image's 24 % is 3 % here
    img = img + sigma * rng.standard_normal(img.shape).astype(np.float32)
    img = np.clip(img / (top * rng.uniform(0.95, 1.3)), 0, 1) ** np.exp(rng.normal(0, cfg.gamma))
    return img.astype(np.float32)


def pair_generator(
    rng: np.random.Generator,
    *,
    amplitude: float = 4.0,
    smooth: float = 12.0,
    rotation: float = 5.0,
    scale: float = 0.05,
    shift: float = 5.0,
    centre_jitter: float = 6.0,
    octant_width: float = 6.0,
    same_contrast_prob: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """A training pair for ``[data] source = "generator"``: ``x`` (2, *SHAPE), ``y`` (48, *SHAPE).

    Args:
        rng: Random generator of this sample.
        amplitude: Largest RMS displacement (mm) of each image's nonlinear deformation.
        smooth: Smoothness (Gaussian sigma, mm) of the velocity fields.
        rotation: Largest rotation (degrees, about each axis) of each image's affine.
        scale: Largest relative scaling of each image's affine.
        shift: Largest translation (mm) of each image's affine.
        centre_jitter: Largest offset (mm) of the grid centre from the brain centre.
        octant_width: Softness (mm) of the octant borders of the label channels.
        same_contrast_prob: Probability that both images share one contrast draw (mono-modal pairs).
    """
    import torch
    from scipy.spatial.transform import Rotation

    from medcli.register import grid as G
    from medcli.train.synth import SynthConfig

    T = template()
    cfg = SynthConfig()
    centre = T["centre"] + rng.uniform(-centre_jitter, centre_jitter, 3)
    aff = net_affine(centre)
    ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in SHAPE], indexing="ij"), -1)
    grid_world = ijk @ aff[:3, :3].T + aff[:3, 3]
    to_vox = np.linalg.inv(T["affine"])
    xs, ys = [], []
    shared = rng.random() < same_contrast_prob
    contrast_seed = int(rng.integers(2**63))
    for _ in range(2):
        B = np.eye(4)
        R = Rotation.from_euler("XYZ", rng.uniform(-rotation, rotation, 3), degrees=True).as_matrix()
        B[:3, :3] = R * (1 + rng.uniform(-scale, scale, 3))[None]
        B[:3, 3] = T["centre"] - B[:3, :3] @ T["centre"] + rng.uniform(-shift, shift, 3)
        u = random_svf_displacement(rng, rng.uniform(0.5, 1.0) * amplitude, smooth)
        world = (grid_world + u) @ B[:3, :3].T + B[:3, 3]  # template point shown at each grid voxel
        vox = world @ to_vox[:3, :3].T + to_vox[:3, 3]
        with torch.no_grad():  # grid_sample: 10x faster than scipy's map_coordinates for 4 channels
            tissue = G.sample(T["tensor"], torch.from_numpy(vox.astype(np.float32))[None])[0, 1:].numpy()
        probs = np.concatenate([np.clip(1.0 - tissue.sum(0, keepdims=True), 0.0, 1.0), tissue])
        r = np.random.default_rng(contrast_seed) if shared else rng
        xs.append(_render(probs, r, cfg))
        octs = _octants(world, T["centre"], octant_width)
        ys.append((probs[1:, None] * octs[None]).reshape(24, *SHAPE))
    return np.stack(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


# -- loss ---------------------------------------------------------------------------------------------


def warp(vol, d):
    """``vol`` (1, C, *S) sampled at ``x + d(x)`` (``d`` (1, 3, *S), voxel units)."""
    from medcli.register import grid as G

    ident = G.identity(d.shape[2:], d.device)
    return G.sample(vol, ident + d.permute(0, 2, 3, 4, 1), padding="border")


def smoothness(v):
    """Mean squared finite difference of a field (1, 3, *S): the R1 regulariser."""
    return sum(v.diff(dim=a).pow(2).mean() for a in (2, 3, 4)) / 3


def soft_dice(a, b, eps: float = 1e-3):
    """Mean soft Dice over the channels of (N, C, ...) tensors."""
    dims = tuple(range(2, a.ndim))
    inter = (a * b).sum(dims)
    return ((2 * inter + eps) / (a.sum(dims) + b.sum(dims) + eps)).mean()


def make_loss(cfg: dict[str, Any]):
    """``1 - Dice(moving labels o exp(v), fixed labels) + smooth_weight * |grad v|^2`` (SynthMorph's loss).

    The recipe's ``[loss]``: ``name = "svf_dice"``, ``smooth_weight`` (default 0.5).
    """
    from medcli.register import grid as G

    cfg = dict(cfg)
    cfg.pop("name", None)
    lam = float(cfg.pop("smooth_weight", 0.5))
    if cfg:
        raise ValueError(f"unknown [loss] setting(s) for svf_dice: {', '.join(sorted(cfg))}")

    def loss(v, y):
        c = y.shape[1] // 2
        total = 0.0
        for i in range(v.shape[0]):  # the field helpers work on one volume at a time
            d = G.expmap(v[i : i + 1], SQUARINGS)
            moved = warp(y[i : i + 1, :c], d)
            total = total + 1.0 - soft_dice(moved, y[i : i + 1, c:]) + lam * smoothness(v[i : i + 1])
        return total / v.shape[0]

    return loss


def tissue_of(labels: np.ndarray) -> np.ndarray:
    """Hard tissue labels (0 background, 1 CSF, 2 GM, 3 WM) of 24 octant channels (24, ...)."""
    t = labels.reshape(3, 8, *labels.shape[1:]).sum(1)
    return np.where(t.sum(0) > 0.5, 1 + t.argmax(0), 0)


def hard_dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    return float(2 * (x & y).sum() / max(x.sum() + y.sum(), 1))


class Validator:
    """Held-out pairs (another seed than training): GM/WM Dice of the warped moving labels, before and after."""

    def __init__(self, recipe: dict[str, Any]):
        v = recipe["validation"]
        settings = dict(recipe["data"].get("settings") or {})
        rng = np.random.default_rng(int(v["seed"]))
        self.samples = [pair_generator(np.random.default_rng(rng.integers(2**63)), **settings) for _ in range(int(v["samples"]))]

    def __call__(self, model, device) -> tuple[float, list[dict[str, Any]]]:
        import torch

        from medcli.register import grid as G

        rows = []
        was = model.training
        model.eval()
        with torch.inference_mode():
            for i, (x, y) in enumerate(self.samples):
                v = model(torch.from_numpy(x[None]).to(device))
                d = G.expmap(v, SQUARINGS)
                c = y.shape[0] // 2
                moved = warp(torch.from_numpy(y[None, :c]).to(device), d)[0].cpu().numpy()
                fixed, before, after = tissue_of(y[c:]), tissue_of(y[:c]), tissue_of(moved)
                det = G.jacobian_determinant(d)
                row = {"case": f"pair {i}"}
                for name, lab in (("gm", 2), ("wm", 3)):
                    row[f"dice_{name}_before"] = round(hard_dice(before, fixed, lab), 4)
                    row[f"dice_{name}"] = round(hard_dice(after, fixed, lab), 4)
                row["folded"] = float((det <= 0).float().mean())
                row["score"] = (row["dice_gm"] + row["dice_wm"]) / 2
                rows.append(row)
        model.train(was)
        return float(np.mean([r["score"] for r in rows])), rows

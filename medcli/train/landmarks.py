"""Training data, loss and validation of the landmark heatmap model (``task = "landmarks"``).

What the network sees at run time (:mod:`medcli.landmarks.learned`) is a patch of
the subject sampled in the template's frame around a template landmark ``p``
through an affine registration. The patch differs from the template's own
neighbourhood of ``p`` by (a) the affine's error and (b) the subject's
non-linear shape difference, both of a few millimetres, and by contrast,
resolution, bias and noise. A training sample draws all of these directly,
without registering anything:

* a local transform ``x(o) = p + M o + t + u(o)`` of the patch offsets ``o``:
  ``M`` a rotation (up to ``rotation`` degrees) times a scaling (up to
  ``scale``), ``t`` a shift (normal, a random scale up to ``shift`` mm), ``u`` a
  smooth random displacement (a sum of random low-frequency waves, amplitude up
  to ``elastic`` mm). The target is the offset ``o*`` with ``x(o*) = p``: where
  the landmark's anatomy is in the patch (fixed-point iterations);
* the anatomy at ``x(o)``: the bundled MNI T1 under a random monotone intensity
  curve (inverted half of the time: T2/PD-like orderings), or the MNI tissue
  probability maps with random tissue means (SynthSeg-style, :mod:`medcli.train.synth`),
  or a skull-on head (:mod:`medcli.train.heads`: skull, scalp, face around the
  MNI brain) rendered as T1, T2, PD or FLAIR;
* thick slices (2-5 mm along a random, slightly oblique axis: several samples
  along it averaged with a triangular profile: the slice and the trilinear
  interpolation that brings it onto the patch), blur, a bias ramp, noise.

The target is ``(o*_x, o*_y, o*_z, k)`` for landmark ``k``; the loss is the mean
radial distance (mm) between the soft-argmax of channel ``k`` and ``o*``.
Validation uses the same generator with the validation seed (other transforms,
contrasts and heads than training's) and reports the radial error per source.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from medcli.landmarks.learned import PATCH, heatmap_offsets, patch_offsets

SOURCES = ("t1-curve", "synthetic", "head")


@lru_cache(maxsize=1)
def _template() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The MNI T1 (brain 99th percentile = 1), its affine, the AFIDs (RAS mm) and its brain (float)."""
    from medcli import io
    from medcli.landmarks.sets import load_set

    lset = load_set("afids")
    t1 = io.read(lset.template).reorient("RAS")
    d = np.asarray(t1.data, np.float32)
    d = d / float(np.percentile(d[d > 0], 99))
    return d, t1.affine, lset.points.ras.astype(np.float64), (d > 0).astype(np.float32)


@lru_cache(maxsize=1)
def _probs() -> tuple[np.ndarray, np.ndarray]:
    from medcli.train.synth import tissue_maps

    m = tissue_maps()
    return m.probs, m.affine


@lru_cache(maxsize=8)
def _head(seed: int, spacing: float):
    """A skull-on anatomy (labels, brain mask as float, CSF/GM/WM maps, affine) drawn from ``seed``."""
    from medcli.train.heads import head_labels

    lab, an = head_labels(np.random.default_rng(seed), spacing)
    return lab.astype(np.float32), an.brain.astype(np.float32), an.probs, an.affine


@lru_cache(maxsize=1)
def reference_patches() -> np.ndarray:
    """(32, P, P, P): the template T1 around each AFID, the network's second input channel."""
    from medcli.image import Image
    from medcli.landmarks import learned

    t1, aff, afids, _ = _template()
    return learned.reference_patches(Image(t1, aff), afids)


def _vox(affine: np.ndarray, ras: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(affine)
    return inv[:3, :3] @ ras.T + inv[:3, 3:]


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", rng.uniform(-max_deg, max_deg, 3), degrees=True).as_matrix()


def _waves(rng: np.random.Generator, amplitude: float, n: int = 4):
    """A smooth random displacement u(o) (mm): ``n`` plane waves of 25-80 mm wavelength per component."""
    k = rng.normal(size=(n, 3))
    k *= (2 * np.pi / rng.uniform(25.0, 80.0, n) / np.linalg.norm(k, axis=1))[:, None]
    phase = rng.uniform(0, 2 * np.pi, n)
    amp = rng.normal(size=(n, 3)) * amplitude / np.sqrt(n)

    def u(o: np.ndarray) -> np.ndarray:
        return np.sin(o @ k.T + phase) @ amp

    return u


def _curve(rng: np.random.Generator, x: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """A random monotone intensity curve on the brain (inverted half of the time); outside the brain 0 or a constant."""
    knots = np.linspace(0.0, 1.3, 6)
    vals = np.cumsum(rng.uniform(0.02, 1.0, 6))
    vals = (vals - vals[0]) / (vals[-1] - vals[0])
    if rng.random() < 0.5:
        vals = 1.05 - vals
    y = np.interp(x, knots, vals)
    bg = 0.0 if rng.random() < 0.8 else rng.uniform(0.0, 0.3)
    return np.where(inside, y, bg)


def _sample(volume: np.ndarray, vox: np.ndarray, order: int = 1) -> np.ndarray:
    from scipy import ndimage

    return ndimage.map_coordinates(volume, vox, order=order, mode="constant", cval=0.0, prefilter=False)


def _render(rng: np.random.Generator, pts: np.ndarray, source: str, heads: tuple[int, int], head_spacing: float) -> np.ndarray:
    """Intensities at world points ``pts`` (M, 3) of one random rendering of the anatomy."""
    if source == "t1-curve":
        t1, aff, _, brain = _template()
        vox = _vox(aff, pts)
        v = _sample(t1, vox)
        inside = _sample(brain, vox) >= 0.5
        return _curve(rng, v, inside)
    if source == "synthetic":
        from medcli.train.synth import SynthConfig, _tissue_means

        probs, aff = _probs()
        vox = _vox(aff, pts)
        p = np.stack([_sample(probs[c], vox) for c in range(4)])
        mu = np.concatenate([[0.0 if rng.random() < 0.8 else rng.uniform(0, 0.3)], _tissue_means(rng, SynthConfig())])
        tex = rng.uniform(0, 0.05, 4)[:, None] * rng.standard_normal(p.shape)
        return (p * (mu[:, None] + tex)).sum(0)
    from medcli.train.heads import tissue_means

    lab, brain, probs, aff = _head(heads[0] + int(rng.integers(heads[1])), head_spacing)
    mu = tissue_means(rng, str(rng.choice(["t1", "t2", "pd", "flair"])))
    vox = _vox(aff, pts)
    lv = np.rint(_sample(lab, vox, order=0)).astype(np.int64)
    img = mu[np.clip(lv, 0, len(mu) - 1)]
    b = _sample(brain, vox) >= 0.5
    p = np.stack([_sample(probs[c], vox) for c in range(3)])
    from medcli.train.heads import CSF, GM, WM

    mix = (p * mu[[CSF, GM, WM], None]).sum(0) / np.maximum(p.sum(0), 1e-3)
    return np.where(b, mix, img)


def landmark_patch(
    rng: np.random.Generator,
    *,
    rotation: float = 6.0,
    scale: float = 0.06,
    shift: float = 3.0,
    elastic: float = 2.0,
    thick_prob: float = 0.4,
    slice_mm: tuple[float, float] = (2.0, 5.0),
    noise: float = 0.06,
    bias: float = 0.15,
    blur: float = 1.0,
    source_probs: tuple[float, float, float] = (0.4, 0.35, 0.25),
    heads: int = 6,
    head_spacing: float = 1.5,
    head_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One training sample: patches (2, P, P, P) (subject, template) and the target (4,) = landmark offset (mm) and index.

    Args:
        rng: The sample's generator.
        rotation, scale, shift, elastic: Ranges of the local transform (degrees, fraction, mm, mm).
        thick_prob, slice_mm: Probability of thick slices and their thickness range (mm).
        noise, bias, blur: Max noise std (fraction of the patch's 99th percentile), log-bias ramp, blur (voxels).
        source_probs: Probabilities of the renderings in :data:`SOURCES`.
        heads, head_spacing, head_seed: Number of skull-on anatomies, their grid (mm) and the seed of the first.
    """
    from scipy import ndimage

    afids = _template()[2]
    k = int(rng.integers(len(afids)))
    p = afids[k]
    m = _rotation(rng, rotation) @ np.diag(1.0 + rng.uniform(-scale, scale, 3))
    t = np.clip(rng.normal(0, rng.uniform(0.3, 1.0) * shift / 1.5, 3), -2.5 * shift, 2.5 * shift)
    u = _waves(rng, rng.uniform(0, elastic))
    offs = patch_offsets()
    x = p + offs @ m.T + t + u(offs)
    target = np.zeros(3)
    minv = np.linalg.inv(m)
    for _ in range(20):  # o* = -M^-1 (t + u(o*)): a contraction for these small fields
        target = -minv @ (t + u(target[None])[0])
    source = SOURCES[int(rng.choice(len(SOURCES), p=np.asarray(source_probs) / np.sum(source_probs)))]
    if rng.random() < thick_prob:
        s = rng.uniform(*slice_mm)
        axis = np.eye(3)[int(rng.integers(3))] @ _rotation(rng, 15.0).T
        deltas = np.linspace(-s, s, 5)
        w = 1.0 - np.abs(deltas) / (s * 1.0001)
        w /= w.sum()
        pts = (x[None] + deltas[:, None, None] * axis).reshape(-1, 3)
        v = (_render(rng, pts, source, (head_seed, heads), head_spacing).reshape(len(deltas), -1) * w[:, None]).sum(0)
    else:
        v = _render(rng, x, source, (head_seed, heads), head_spacing)
    img = v.reshape(PATCH, PATCH, PATCH)
    sigma = rng.uniform(0, blur)
    if sigma > 0.2:
        img = ndimage.gaussian_filter(img, sigma)
    top = float(np.percentile(img, 99)) or 1.0
    img = img * np.exp((offs @ rng.normal(0, bias / 15.0, 3)).reshape(img.shape))
    n = rng.uniform(0, noise) * top
    img = img + rng.normal(0, n, img.shape)
    if rng.random() < 0.5:
        img = ndimage.gaussian_filter(img, rng.uniform(0.3, 0.8))  # noise through the interpolation onto the patch
    y = np.array([*target, float(k)], np.float32)
    return np.stack([img, reference_patches()[k]]).astype(np.float32), y


def make_loss(cfg: dict[str, Any]):
    """Mean radial distance (mm) of the soft-argmax of each patch's landmark channel from its target, plus
    ``heatmap_weight`` x the cross-entropy of that channel's softmax against a Gaussian of ``sigma_mm`` at the target.

    The second term is DSNT's regulariser (Nibali et al. 2018): the soft-argmax alone barely moves a diffuse
    heatmap (its expectation stays at the centre: measured, no progress in 800 steps), the Gaussian target gives
    every cell a gradient. The recipe's ``[loss]``: ``name = "radial"``, ``heatmap_weight`` (default 1),
    ``sigma_mm`` (default 2).
    """
    import torch

    from medcli.landmarks.learned import soft_argmax

    cfg = dict(cfg)
    cfg.pop("name", None)
    weight = float(cfg.pop("heatmap_weight", 1.0))
    sigma = float(cfg.pop("sigma_mm", 2.0))
    if cfg:
        raise ValueError(f"unknown [loss] setting(s) for radial: {', '.join(sorted(cfg))}")
    offs = torch.tensor(heatmap_offsets(), dtype=torch.float32)

    def loss(logits, y):
        c = offs.to(logits.device)
        o, prob = soft_argmax(logits, c)
        radial = torch.sqrt(((o - y[:, :3]) ** 2).sum(1) + 1e-4).mean()
        if weight <= 0:
            return radial
        g = torch.softmax(-((c[None] - y[:, None, :3]) ** 2).sum(-1) / (2 * sigma**2), dim=1)
        ce = -(g * torch.log(prob + 1e-8)).sum(1).mean()
        return radial + weight * ce

    return loss


class Validator:
    """Held-out samples (the validation seed): radial error (mm) before (|o*|) and after the network, per source."""

    def __init__(self, recipe: dict[str, Any]):
        v = recipe["validation"]
        settings = dict(recipe["data"].get("settings") or {})
        settings.update(v.get("settings") or {})
        rng = np.random.default_rng(int(v["seed"]))
        self.samples = []
        for i in range(int(v["samples"])):
            src = i % len(SOURCES)
            probs = [1.0 if j == src else 0.0 for j in range(len(SOURCES))]
            x, y = landmark_patch(np.random.default_rng(rng.integers(2**63)), **{**settings, "source_probs": probs})
            self.samples.append((SOURCES[src], x, y))

    def __call__(self, model, device) -> tuple[float, list[dict[str, Any]]]:
        import torch

        from medcli.landmarks.learned import soft_argmax

        offs = torch.tensor(heatmap_offsets(), dtype=torch.float32, device=device)
        x = torch.from_numpy(np.stack([s[1] for s in self.samples])).to(device)
        y = np.stack([s[2] for s in self.samples])
        was = model.training
        model.eval()
        with torch.inference_mode():
            o = np.concatenate([soft_argmax(model(x[i : i + 32]), offs)[0].cpu().numpy() for i in range(0, len(x), 32)])
        model.train(was)
        err = np.linalg.norm(o - y[:, :3], axis=1)
        before = np.linalg.norm(y[:, :3], axis=1)
        rows = []
        for src in SOURCES:
            sel = np.array([s[0] == src for s in self.samples])
            rows.append({"case": src, "error_before_mm": round(float(before[sel].mean()), 3),
                         "error_mm": round(float(err[sel].mean()), 3), "error_median_mm": round(float(np.median(err[sel])), 3),
                         "score": -float(err[sel].mean())})
        return -float(err.mean()), rows

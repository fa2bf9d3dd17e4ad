"""The learned enhancement models of medcli: training-pair generators and run-time wrappers.

Two models, trained with ``medcli train`` from ``recipes/denoise.toml`` and
``recipes/biasfield.toml`` and shipped as safetensors in
``medcli/models/weights``:

* **denoise** -- a 3D U-Net that sees ``[noisy / ref, sigma / ref]`` (``ref``
  the image's 99th percentile, ``sigma`` the estimated noise level, a constant
  channel) and predicts the correction ``(clean - noisy) / ref``. Conditioning
  on sigma lets one model serve 1-15 % noise; the Rician bias is part of
  what it learns to remove.
* **biasfield** -- a 3D U-Net that sees the image at 6 mm as
  ``[log(x / median) in the mask, mask]`` and predicts the log field at 6 mm;
  the prediction is upsampled by separable cubic B-splines, so the field at
  full resolution is smooth by construction.

Both generators draw from real anatomy: the bundled MNI152 T1 under random
smooth deformations (2/3 of samples) or a random tissue contrast rendered
from its GM/WM/CSF maps (1/3), so the models do not learn one contrast only.
The degradations come from :mod:`medcli.enhance.degrade`, the same code the
tests and benchmarks use.

Example:
    >>> import numpy as np
    >>> x, y = denoise_pair(np.random.default_rng(0), patch=16)
    >>> x.shape, y.shape
    ((2, 16, 16, 16), (1, 16, 16, 16))
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from medcli.enhance import degrade

BIAS_SPACING = 6.0  # mm: the grid the bias model sees


# -- anatomy ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _anatomy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNI T1 scaled to p99 = 1, and GM, WM, CSF probability maps (1 mm)."""
    from medcli import io

    t1 = np.asarray(io.read("sample:t1").data, np.float32)
    t1 = t1 / degrade.reference_intensity(t1)
    gm = np.asarray(io.read("sample:gm").data, np.float32) / 255.0
    wm = np.asarray(io.read("sample:wm").data, np.float32) / 255.0
    csf = np.clip((t1 > 0.02).astype(np.float32) - gm - wm, 0, 1)
    return t1, gm, wm, csf


# -- denoising ----------------------------------------------------------------------------------


def denoise_pair(
    rng: np.random.Generator,
    patch: int = 32,
    percent_min: float = 1.0,
    percent_max: float = 15.0,
    deform: float = 3.0,
    contrast_prob: float = 0.33,
) -> tuple[np.ndarray, np.ndarray]:
    """One training pair of the denoiser: ``([noisy, sigma] / ref, (clean - noisy) / ref)``.

    Args:
        rng: Generator (the training engine draws one per sample).
        patch: Cube side in voxels.
        percent_min, percent_max: Rician noise level range, % of the p99
            reference (drawn log-uniformly: low levels matter as much).
        deform: Maximum displacement (voxels) of the random warp.
        contrast_prob: Fraction of synthetic contrasts.
    """
    t1 = _anatomy()[0]
    margin = 4
    size = patch + 2 * margin
    brain = np.argwhere(t1[::4, ::4, ::4] > 0.05) * 4
    centre = brain[rng.integers(len(brain))]
    lo = [int(np.clip(c - size // 2, 0, s - size)) for c, s in zip(centre, t1.shape)]
    region = tuple(slice(a, a + size) for a in lo)
    if rng.random() < contrast_prob:
        _, gm, wm, csf = _anatomy()
        clean = degrade.random_contrast([gm[region], wm[region], csf[region]], rng)
    else:
        clean = t1[region].copy()
    if deform > 0:
        (clean,) = degrade.random_deformation([clean], rng, amplitude=deform, control=3)
    clean = clean[margin:-margin, margin:-margin, margin:-margin]
    for ax in range(3):
        if rng.random() < 0.5:
            clean = np.flip(clean, ax)
    clean = np.ascontiguousarray(clean) * float(rng.uniform(0.7, 1.3))
    percent = float(np.exp(rng.uniform(np.log(percent_min), np.log(percent_max))))
    sigma = percent / 100.0  # the reference intensity of the T1 scale is 1
    noisy = degrade.add_rician(clean, 0, rng, sigma=sigma)
    x = np.stack([noisy, np.full_like(noisy, sigma)]).astype(np.float32)
    y = (clean - noisy)[None].astype(np.float32)
    return x, y


class _RunTimeModel:
    """A hub model built once and called on volumes; subclasses name their default model."""

    default_model = ""

    def __init__(self, net, spec: dict[str, Any]):
        self.net, self.spec = net, spec

    @classmethod
    def load(cls, name: str | None = None):
        return cls(*_load_net(name or cls.default_model))


class Denoiser(_RunTimeModel):
    """The learned denoiser at run time: ``Denoiser.load()(volume, sigma) -> volume``."""

    default_model = "denoise"

    def __call__(self, volume: np.ndarray, sigma: float, noise: str = "rician", tile: int = 96) -> np.ndarray:
        from scipy import ndimage

        x = np.nan_to_num(np.asarray(volume, np.float32))
        ref = degrade.reference_intensity(x)
        if ref <= 0 or sigma <= 0:
            return x.copy()
        # Work only on the object's box: air costs as much as tissue and the
        # network maps it to ~0 anyway (measured), as does the cheap fallback.
        obj = ndimage.binary_dilation(ndimage.uniform_filter(x, 3) > 2 * sigma, iterations=4)
        idx = np.argwhere(obj)
        out = np.sqrt(np.clip(ndimage.uniform_filter(x * x, 3) - 2 * sigma * sigma, 0, None)).astype(np.float32)
        if noise != "rician":
            out = ndimage.uniform_filter(x, 3).astype(np.float32)
        if idx.size == 0:
            return out
        lo, hi = idx.min(0), idx.max(0) + 1
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        sub = x[box] / ref
        inp = np.stack([sub, np.full_like(sub, sigma / ref)])
        res = _tiled(self.net, inp, tile=tile, margin=12, multiple=_multiple(self.spec))
        out[box] = np.clip(sub + res[0], 0, None) * ref
        return out


# -- bias field -----------------------------------------------------------------------------------


def _downsample(x: np.ndarray, spacing: Sequence[float], target: float) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased resampling to ``target`` mm; returns (low-res array, per-axis scale)."""
    from scipy import ndimage

    sp = np.asarray(spacing[:3], float)
    factor = target / sp
    sig = np.maximum(factor / 2.3548, 0)
    sm = ndimage.gaussian_filter(x, sig, mode="constant")
    shape = np.maximum(2, np.round(np.asarray(x.shape) / factor)).astype(int)
    scale = np.asarray(x.shape) / shape  # input voxels per low-res voxel
    coords = [(np.arange(n) + 0.5) * s - 0.5 for n, s in zip(shape, scale)]
    grid = np.meshgrid(*coords, indexing="ij", sparse=True)
    low = ndimage.map_coordinates(sm, np.broadcast_arrays(*grid), order=1, mode="nearest")
    return low.astype(np.float32), scale


def _upsample_matrix(n_low: int, n_full: int, scale: float) -> np.ndarray:
    """(n_full, n_low) cubic B-spline interpolation weights, for the centres of :func:`_downsample`."""
    from scipy import ndimage

    pos = (np.arange(n_full) + 0.5) / scale - 0.5
    eye = np.eye(n_low)
    cols = [
        ndimage.map_coordinates(ndimage.spline_filter1d(eye[j], 3, mode="nearest"), [pos], order=3, prefilter=False, mode="nearest")
        for j in range(n_low)
    ]
    return np.stack(cols, axis=1).astype(np.float32)


def upsample_smooth(low: np.ndarray, shape: Sequence[int], scale: Sequence[float]) -> np.ndarray:
    """Separable cubic-spline upsampling of a low-resolution field to ``shape``."""
    mats = [_upsample_matrix(l, int(f), float(s)) for l, f, s in zip(low.shape, shape, scale)]
    return np.einsum("ia,jb,kc,abc->ijk", *mats, low.astype(np.float32), optimize=True).astype(np.float32)


def bias_inputs(low: np.ndarray, low_mask: np.ndarray) -> np.ndarray:
    """The bias model's input channels from a low-resolution image and mask."""
    m = low_mask & (low > 0)
    med = float(np.median(low[m])) if m.any() else 1.0
    logx = np.where(m, np.log(np.maximum(low, 1e-6) / max(med, 1e-6)), 0.0)
    return np.stack([logx, m.astype(np.float32)]).astype(np.float32)


def bias_pair(
    rng: np.random.Generator,
    size: int = 48,
    strength_max: float = 1.6,
    deform: float = 2.0,
    contrast_prob: float = 0.33,
    noise_max: float = 8.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One training sample of the bias model: a whole head at 6 mm in a ``size``^3 canvas.

    The input is built like at run time: a 1 mm image (T1 or synthetic
    contrast, warped) times a random smooth field, Rician noise, downsampled
    to 6 mm; the target is the log field on the 6 mm grid (mean 0 in the mask).
    """
    from scipy import ndimage

    t1, gm, wm, csf = _anatomy()
    step = 3  # build at 3 mm: 27x cheaper than 1 mm and still finer than the 6 mm model grid
    sl = (slice(None, None, step),) * 3
    if rng.random() < contrast_prob:
        img = degrade.random_contrast([gm[sl], wm[sl], csf[sl]], rng)
    else:
        img = t1[sl].copy()
    img = ndimage.zoom(img, float(rng.uniform(0.85, 1.15)), order=1)
    if deform > 0:
        (img,) = degrade.random_deformation([img], rng, amplitude=deform, control=4)
    strength = float(rng.uniform(0.0, strength_max))
    field = degrade.bias_field(img.shape, strength, rng, control=int(rng.integers(3, 6)))
    biased = img * field
    biased = degrade.add_rician(biased, float(rng.uniform(0, noise_max)), rng)
    mask = ndimage.binary_fill_holes(ndimage.gaussian_filter(img, 1) > 0.05)
    low, scale = _downsample(biased, (step,) * 3, BIAS_SPACING)
    low_mask = _downsample(mask.astype(np.float32), (step,) * 3, BIAS_SPACING)[0] > 0.5
    low_field = np.log(_downsample(field, (step,) * 3, BIAS_SPACING)[0])
    x = bias_inputs(low, low_mask)
    low_field -= float(low_field[low_mask].mean()) if low_mask.any() else 0.0
    # Place the head at a random offset of the canvas (scans are not centred).
    canvas_x = np.zeros((2, size, size, size), np.float32)
    canvas_y = np.zeros((1, size, size, size), np.float32)
    n = np.minimum(low.shape, size)
    off = [int(rng.integers(0, size - k + 1)) for k in n]
    src = tuple(slice(0, k) for k in n)
    dst = tuple(slice(o, o + k) for o, k in zip(off, n))
    canvas_x[(slice(None),) + dst] = x[(slice(None),) + src]
    canvas_y[(0,) + dst] = low_field[src]
    return canvas_x, canvas_y


class BiasModel(_RunTimeModel):
    """The learned bias model at run time: ``BiasModel.load()(volume, spacing) -> field``."""

    default_model = "biasfield"

    def __call__(self, volume: np.ndarray, spacing: Sequence[float], mask: np.ndarray | None = None) -> np.ndarray:
        from medcli.enhance.masks import foreground_mask

        x = np.nan_to_num(np.asarray(volume, np.float32))
        if mask is None:
            mask = foreground_mask(x)
        mask = np.asarray(mask, bool)
        if not (mask & (x > 0)).any():
            raise ValueError("the foreground mask has no positive voxels")
        low, scale = _downsample(x, spacing, BIAS_SPACING)
        low_mask = _downsample(mask.astype(np.float32), spacing, BIAS_SPACING)[0] > 0.5
        inp = bias_inputs(low, low_mask)
        mult = _multiple(self.spec)
        pad = [(0, (-s) % mult) for s in low.shape]
        inp = np.pad(inp, [(0, 0)] + pad)
        out = _run(self.net, inp)[0]
        log_low = out[: low.shape[0], : low.shape[1], : low.shape[2]]
        log_full = upsample_smooth(log_low, x.shape, scale)
        log_full -= float(log_full[mask].mean())
        return np.exp(log_full).astype(np.float32)


# -- shared -----------------------------------------------------------------------------------------


def _load_net(name: str):
    from medcli.runtime import configure_torch
    from medcli.engine.architectures import build
    from medcli.errors import ProcessingError
    from medcli.models import hub

    torch = configure_torch()
    try:
        spec, state = hub.load(name)
    except Exception as e:  # the hub raises its own one-line errors; keep them
        if hasattr(e, "exit_code"):
            raise
        raise ProcessingError(f"cannot load model {name!r}: {e}") from e
    net = build(spec)
    net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    net.eval()
    return net, spec


def _multiple(spec: dict[str, Any]) -> int:
    return 2 ** (len(spec.get("params", {}).get("features", [0, 0, 0, 0])) - 1)


def _run(net, arr: np.ndarray) -> np.ndarray:
    from medcli.runtime import configure_torch, torch_device

    torch = configure_torch()
    dev = torch_device()
    net.to(dev)
    with torch.inference_mode():
        return net(torch.from_numpy(np.ascontiguousarray(arr[None])).to(dev))[0].float().cpu().numpy()


def _tiled(net, arr: np.ndarray, tile: int, margin: int, multiple: int) -> np.ndarray:
    """Run a fully convolutional net on (C, X, Y, Z) in overlapping tiles; keep tile centres.

    The network has no normalisation layers, so a tile with a margin larger
    than the receptive field's reach gives the same values as the whole volume.
    """
    c, *shape = arr.shape
    out = None
    core = tile - 2 * margin
    starts = [list(range(0, max(s, 1), core)) for s in shape]
    for i in starts[0]:
        for j in starts[1]:
            for k in starts[2]:
                lo = [max(a - margin, 0) for a in (i, j, k)]
                hi = [min(a + core + margin, s) for a, s in zip((i, j, k), shape)]
                block = arr[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
                pad = [(0, (-(b - a)) % multiple) for a, b in zip(lo, hi)]
                res = _run(net, np.pad(block, [(0, 0)] + pad, mode="edge"))
                if out is None:
                    out = np.zeros((res.shape[0], *shape), np.float32)
                a = [x - l for x, l in zip((i, j, k), lo)]
                e = [min(x + core, s) for x, s in zip((i, j, k), shape)]
                out[:, i : e[0], j : e[1], k : e[2]] = res[
                    :, a[0] : a[0] + e[0] - i, a[1] : a[1] + e[1] - j, a[2] : a[2] + e[2] - k
                ]
    assert out is not None
    return out

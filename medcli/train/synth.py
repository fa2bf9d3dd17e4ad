"""Domain-randomised training images from label maps (SynthSeg-style).

A segmentation model that has only ever seen synthetic images whose contrast,
resolution, noise, bias and shape are drawn at random learns to ignore all of
them, and segments T1, T2, PD or FLAIR scans at any resolution (Billot et al.
2023). This module renders such images from tissue *probability* maps, so
that partial volume at tissue borders looks like a real scan rather than a
cartoon.

Every sample is drawn from its own ``numpy.random.Generator``; the training
engine seeds it from ``(seed, step, index)``, which makes training exactly
repeatable and resumable.

A 2D sample is rendered from a thin oblique slab of the 3D maps: the slab's
sub-slices are averaged with a slice profile (thick slices through-plane),
and one in-plane axis may be blurred and decimated (thick slices in-plane),
so that slices of an image acquired at any resolution along any axis are
covered.

Example:
    >>> import numpy as np
    >>> maps = tissue_maps()  # doctest: +SKIP
    >>> x, y = synth_sample(maps, np.random.default_rng(0), SynthConfig(patch=(96, 96)))  # doctest: +SKIP
    >>> x.shape, y.shape  # doctest: +SKIP
    ((1, 96, 96), (96, 96))

References:
    Billot B. et al. SynthSeg: Segmentation of brain MRI scans of any contrast
    and resolution without retraining. Medical Image Analysis 86 (2023) 102789.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

#: Output classes of the tissue model.
TISSUE_LABELS = {0: "background", 1: "CSF", 2: "GM", 3: "WM"}


@dataclass
class TissueMaps:
    """Probability maps (background, CSF, GM, WM) on a 1 mm RAS grid."""

    probs: np.ndarray  # (4, X, Y, Z) float32, sums to 1
    affine: np.ndarray
    brain_box: tuple[np.ndarray, np.ndarray]  # first/last voxel of the brain

    @property
    def labels(self) -> np.ndarray:
        return labels_from_probs(self.probs)


def labels_from_probs(probs: np.ndarray) -> np.ndarray:
    """0 outside the brain, else 1 + argmax(CSF, GM, WM)."""
    brain = probs[0] < 0.5
    return np.where(brain, 1 + np.argmax(probs[1:], axis=0), 0).astype(np.uint8)


@lru_cache(maxsize=1)
def tissue_maps() -> TissueMaps:
    """The MNI152 2009a tissue maps: brain = T1 > 0, CSF = brain - GM - WM.

    The bundled T1 is skull-stripped, so its non-zero voxels are the brain.
    """
    from medcli import io

    t1 = io.read("sample:t1").reorient("RAS")
    gm = io.read("sample:gm").reorient("RAS").data.astype(np.float32) / 255.0
    wm = io.read("sample:wm").reorient("RAS").data.astype(np.float32) / 255.0
    brain = (t1.data > 0).astype(np.float32)
    gm, wm = gm * brain, wm * brain
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    probs = np.stack([1.0 - brain, csf, gm, wm]).astype(np.float32)
    idx = np.argwhere(brain > 0)
    return TissueMaps(probs, t1.affine, (idx.min(0), idx.max(0)))


@lru_cache(maxsize=4)
def mni_volumes(margin: int = 0) -> tuple[np.ndarray, ...]:
    """MNI T1 (brain 99th percentile = 1), GM, WM, CSF and brain, cropped to the brain + ``margin`` voxels.

    The image-to-image generators (harmonize, superres) render their training pairs from these.
    GM/WM are the raw maps (0-1), CSF = brain - GM - WM clipped to 0-1.
    """
    from medcli import io

    t1 = np.asarray(io.read("sample:t1").data, np.float32)
    gm = np.asarray(io.read("sample:gm").data, np.float32) / 255.0
    wm = np.asarray(io.read("sample:wm").data, np.float32) / 255.0
    brain = t1 > 0
    csf = np.clip(brain - gm - wm, 0, 1).astype(np.float32)
    t1 = t1 / float(np.percentile(t1[brain], 99))
    nz = np.argwhere(brain)
    lo, hi = np.maximum(nz.min(0) - margin, 0), np.minimum(nz.max(0) + 1 + margin, brain.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return tuple(np.ascontiguousarray(v[box]) for v in (t1, gm, wm, csf, brain.astype(np.float32)))


@dataclass
class SynthConfig:
    """Ranges of the randomisation (every draw is uniform in its range).

    Attributes:
        patch: Output patch size (2D).
        axes: Slicing axes to draw from (0 sagittal, 1 coronal, 2 axial).
        rotation: Max rotation in degrees about each axis.
        scale: Max relative scaling (0.15: 0.85 to 1.15).
        shear: Max shear.
        elastic: Max displacement of the smooth deformation, in mm.
        elastic_grid: Control points per side of the deformation.
        thick_prob: Probability of thick slices through-plane.
        inplane_prob: Probability of a low-resolution in-plane axis.
        spacing: Range of simulated slice thickness in mm.
        blur: Max extra Gaussian blur (sigma, voxels).
        hard_prob: Probability of hard sub-label rendering (SynthSeg) instead
            of partial-volume mixing.
        sub_bins: Sub-labels per tissue class for hard rendering.
        min_contrast: Minimum difference between tissue means.
        bg_zero_prob: Probability of a zero background (skull-stripped).
        texture: Max within-tissue noise (fraction of range).
        bias: Max std of the log bias field.
        noise: Max noise std (fraction of the brightest tissue).
        rician_prob: Probability that noise is Rician rather than Gaussian.
        gamma: Std of the log gamma exponent.
        scale_jitter: Range of the normalisation scale around the brightest tissue.
        flip_prob: Probability of a left-right flip.
        brain_center_prob: Probability that the patch centre is a brain voxel.
        drift_response: Probability of a random scanner response applied to the
            rendered tissues (:func:`random_response`): a monotone non-linear
            curve (gamma, sigmoid-like or a blend), gain and brain offset, so
            that partial-volume voxels and tissue ratios move the way another
            scanner's would, not only the per-label means. 0 (the default)
            draws nothing: earlier recipes render exactly as before.
        drift_gamma: Range of the response's gamma exponent (log-uniform).
        clinical_contrast: Probability that the tissue means follow one of the
            clinical orders of :data:`CLINICAL_CONTRASTS` (T1-, T2-, PD- or
            FLAIR-like, low contrast included) instead of any order. 0 (the
            default) draws nothing, so earlier recipes render exactly as before.
        tissue_texture: Largest standard deviation of a multiplicative texture per
            tissue (half smooth, half voxel-wise; 0.2 = 20 %). 0 (the default)
            draws nothing.
        drift_offset: Range of the brain offset (fraction of the brightest tissue).
    """

    patch: Sequence[int] = (128, 128)
    axes: Sequence[int] = (0, 1, 2)
    rotation: float = 15.0
    scale: float = 0.15
    shear: float = 0.05
    elastic: float = 4.0
    elastic_grid: int = 5
    thick_prob: float = 0.4
    inplane_prob: float = 0.25
    spacing: Sequence[float] = (1.5, 6.0)
    blur: float = 1.0
    hard_prob: float = 0.3
    sub_bins: int = 3
    min_contrast: float = 0.08
    bg_zero_prob: float = 0.7
    texture: float = 0.05
    bias: float = 0.3
    noise: float = 0.12
    rician_prob: float = 0.5
    gamma: float = 0.25
    scale_jitter: Sequence[float] = (0.95, 1.3)
    flip_prob: float = 0.5
    brain_center_prob: float = 0.9
    drift_response: float = 0.0
    drift_gamma: Sequence[float] = (0.5, 1.6)
    drift_offset: Sequence[float] = (-0.05, 0.15)
    clinical_contrast: float = 0.0
    tissue_texture: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SynthConfig":
        known = {f.name for f in fields(cls)}
        d = dict(d or {})
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown synth setting(s): {', '.join(sorted(unknown))}")
        return cls(**d)


# -- geometry ---------------------------------------------------------------------------------------


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    a, b, c = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


@lru_cache(maxsize=64)
def _basis(n: int, grid: int) -> np.ndarray:
    """(n, grid) smooth interpolation weights: normalised Gaussian bumps at the control points."""
    centres = np.linspace(0, n - 1, grid)
    width = max((n - 1) / max(grid - 1, 1), 1.0) * 0.6
    w = np.exp(-0.5 * ((np.arange(n)[:, None] - centres[None]) / width) ** 2)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], grid: int, std: float, channels: int = 1) -> np.ndarray:
    """Random values on a coarse grid, smoothly interpolated to ``shape`` (2D): a smooth field.

    Separable matrix products rather than spline zooming: 50x faster, and as smooth.
    """
    coarse = rng.normal(0.0, std, (channels, grid, grid)).astype(np.float32)
    bh, bw = _basis(int(shape[0]), grid), _basis(int(shape[1]), grid)
    # Interpolation shrinks the variance; rescale so that ``std`` is the field's std.
    gain = 1.0 / float(np.sqrt((bh**2).sum(1).mean() * (bw**2).sum(1).mean()))
    return np.einsum("hi,cij,wj->chw", bh, coarse, bw) * gain


def _slab_coordinates(maps: TissueMaps, rng: np.random.Generator, cfg: SynthConfig, axis: int, offsets: np.ndarray):
    """Voxel coordinates (3, k, H, W) of a randomly posed, deformed slab."""
    h, w = (int(s) for s in cfg.patch)
    inplane = [a for a in range(3) if a != axis]
    lo, hi = maps.brain_box
    if rng.random() < cfg.brain_center_prob:
        for _ in range(50):  # rejection sampling of a brain voxel: cheaper than a list of 2 M voxels
            centre = lo + rng.random(3) * (hi - lo)
            if maps.probs[0][tuple(np.round(centre).astype(int))] < 0.5:
                break
    else:
        centre = rng.random(3) * (np.array(maps.probs.shape[1:]) - 1)
    # Patch axes (u, v) are the two in-plane voxel axes, w the slice normal.
    basis = np.zeros((3, 3))
    basis[inplane[0], 0] = basis[inplane[1], 1] = basis[axis, 2] = 1.0
    scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale, 3)
    shear = np.eye(3) + np.triu(rng.uniform(-cfg.shear, cfg.shear, (3, 3)), 1)
    mat = _rotation(rng, cfg.rotation) @ basis @ shear @ np.diag(scale)
    u = np.arange(h) - (h - 1) / 2
    v = np.arange(w) - (w - 1) / 2
    uu, vv, ww = np.meshgrid(u, v, offsets, indexing="ij")  # (H, W, k)
    local = np.stack([uu, vv, ww]).reshape(3, -1)
    coords = (mat @ local).reshape(3, h, w, len(offsets)) + centre[:, None, None, None]
    if cfg.elastic > 0:
        amp = rng.uniform(0, cfg.elastic)
        disp = _smooth_field(rng, (h, w), cfg.elastic_grid, amp / 2, channels=3)  # ~95 % within amp
        coords = coords + disp[..., None]
    return np.moveaxis(coords, 3, 1)  # (3, k, H, W)


# -- intensities -------------------------------------------------------------------------------------


#: Relative CSF, GM, WM means of clinical contrasts, as ranges (brightest tissue 1): uniform draws
#: in these boxes. Any-order draws (``min_contrast`` apart, uniform in [0.05, 1]) rarely make the
#: PD-like case, where CSF is only 5-20 % brighter than GM and GM 8-20 % brighter than WM, so sulcal
#: CSF/GM mixtures differ from GM by a few percent (issue 18: PD-like CSF is the network's miss).
CLINICAL_CONTRASTS: dict[str, tuple[tuple[float, float], ...]] = {
    "T1": ((0.1, 0.45), (0.5, 0.8), (1.0, 1.0)),
    "T2": ((1.0, 1.0), (0.45, 0.7), (0.25, 0.41)),
    "PD": ((1.0, 1.0), (0.78, 0.94), (0.6, 0.74)),
    "FLAIR": ((0.05, 0.35), (1.0, 1.0), (0.62, 0.9)),
}


def _clinical_means(rng: np.random.Generator) -> np.ndarray:
    """CSF, GM, WM means of a random clinical contrast (:data:`CLINICAL_CONTRASTS`; the boxes do not overlap, so the order holds)."""
    boxes = CLINICAL_CONTRASTS[list(CLINICAL_CONTRASTS)[int(rng.integers(len(CLINICAL_CONTRASTS)))]]
    return np.array([rng.uniform(a, b) for a, b in boxes]) * rng.uniform(0.6, 1.0)


def _tissue_means(rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """Random means of CSF, GM, WM in [0, 1], pairwise at least ``min_contrast`` apart.

    With probability ``cfg.clinical_contrast``, in the order and ranges of a clinical contrast instead.
    """
    if cfg.clinical_contrast > 0 and rng.random() < cfg.clinical_contrast:
        return _clinical_means(rng)
    for _ in range(100):
        mu = rng.uniform(0.05, 1.0, 3)
        if np.min(np.abs(np.subtract.outer(mu, mu))[np.triu_indices(3, 1)]) >= cfg.min_contrast:
            return mu
    return np.array([0.2, 0.5, 0.8])


def render_slab(probs: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, float]:
    """Intensities (k, H, W) for probability maps (4, k, H, W), and the brightest tissue mean."""
    mu = np.concatenate([[0.0 if rng.random() < cfg.bg_zero_prob else rng.uniform(0, 0.5)], _tissue_means(rng, cfg)])
    shape = probs.shape[1:]
    if rng.random() < cfg.hard_prob:
        # SynthSeg: hard labels, each sub-label (tissue x probability bin) its own Gaussian.
        cls = np.argmax(probs, axis=0)
        conf = np.take_along_axis(probs, cls[None], 0)[0]
        bins = np.clip(((conf - 0.25) / 0.75 * cfg.sub_bins).astype(int), 0, cfg.sub_bins - 1)
        sub = cls * cfg.sub_bins + bins
        means = np.repeat(mu, cfg.sub_bins) + rng.normal(0, 0.04, 4 * cfg.sub_bins)
        means[: cfg.sub_bins] = mu[0]
        stds = rng.uniform(0, cfg.texture, 4 * cfg.sub_bins)
        img = means[sub] + stds[sub] * rng.standard_normal(shape).astype(np.float32)
    else:
        # Partial-volume mixing with a smooth per-tissue drift and texture.
        drift = _smooth_field(rng, shape[1:], 4, rng.uniform(0, cfg.texture), channels=4)
        tex = rng.uniform(0, cfg.texture, 4)[:, None, None, None] * rng.standard_normal((4,) + shape).astype(np.float32)
        img = np.sum(probs * (mu[:, None, None, None] + drift[:, None] + tex), axis=0)
        if mu[0] == 0.0:
            img = img * (probs[0] < 0.999)
    if cfg.tissue_texture > 0:
        img = img * _tissue_texture(probs, rng, cfg.tissue_texture)
    return img.astype(np.float32), float(mu[1:].max())


def _tissue_texture(probs: np.ndarray, rng: np.random.Generator, most: float) -> np.ndarray:
    """A multiplicative texture (k, H, W) around 1: per tissue a std up to ``most``, half smooth, half voxel-wise.

    The benchmark-like heterogeneity of real tissue (a T1's own texture carried into another contrast spreads
    pure CSF by 15-20 %: issue 18's PD-like miss), mixed by the partial-volume probabilities.
    """
    shape = probs.shape[1:]
    std = rng.uniform(0, most, 4).astype(np.float32)
    std[0] = 0.0  # background: whatever it is, it stays
    smooth = _smooth_field(rng, shape[1:], 6, 1.0, channels=4)[:, None]
    fine = rng.standard_normal((4,) + tuple(shape)).astype(np.float32)
    field = std[:, None, None, None] * (smooth + fine) / np.sqrt(2.0)
    return np.clip(1.0 + np.sum(probs * field, axis=0), 0.3, 2.0)


def random_response(rng: np.random.Generator, cfg: SynthConfig):
    """A random monotone scanner response ``f`` with ``f(0) = 0`` and ``f(1) = 1`` (on ``u >= 0``).

    One of: a gamma curve ``u ** g`` (``g`` log-uniform in ``cfg.drift_gamma``);
    a logistic curve of random centre (0.3-0.75) and width (0.07-0.3), shifted
    and scaled to pass through (0, 0) and (1, 1); or a convex blend of the two.
    Each is monotone increasing, so the order of intensities is kept while
    the ratios between tissues (and partial-volume voxels) change.
    """
    lo, hi = (float(v) for v in cfg.drift_gamma)
    g = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    centre, width = rng.uniform(0.3, 0.75), rng.uniform(0.07, 0.3)

    def gamma(u):
        return np.power(u, g)

    def sigmoid(u):
        s0, s1 = 1.0 / (1.0 + np.exp(centre / width)), 1.0 / (1.0 + np.exp(-(1.0 - centre) / width))
        return (1.0 / (1.0 + np.exp(-(u - centre) / width)) - s0) / (s1 - s0)

    kind = rng.random()
    if kind < 0.45:
        return gamma
    if kind < 0.8:
        return sigmoid
    a = rng.uniform(0.2, 0.8)
    return lambda u: a * gamma(u) + (1 - a) * sigmoid(u)


def apply_response(slab: np.ndarray, brain: np.ndarray, top: float, rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, float]:
    """Another scanner's view of a rendered slab: response, gain and brain offset; returns (slab, brightest tissue).

    ``u`` is the slab over a reference near the brightest tissue (1-1.25 times
    it, as a 99th-percentile reference sits above the brightest tissue mean);
    the offset is added in proportion to the brain fraction of each voxel, so
    a zero background stays zero.
    """
    ref = top * rng.uniform(1.0, 1.25)
    f = random_response(rng, cfg)
    gain = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    offset = rng.uniform(*cfg.drift_offset)
    out = gain * ref * (f(np.clip(slab / ref, 0, None)) + offset * brain)
    # The brightest tissue under the new response: the normalisation that follows scales by it.
    new_top = gain * ref * (float(f(np.float64(top / ref))) + offset)
    return np.maximum(out, 0).astype(np.float32), max(new_top, 1e-3 * gain * ref)


def _decimate(img: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """Blur and subsample along one axis by ``factor``, then interpolate back."""
    from scipy import ndimage

    sigma = [0.0, 0.0]
    sigma[axis] = 0.4246 * factor  # FWHM = slice thickness
    low = ndimage.gaussian_filter(img, sigma, mode="nearest")
    n = img.shape[axis]
    pos = np.arange(0, n, factor)
    low = np.take(low, np.round(pos).astype(int).clip(0, n - 1), axis=axis)
    back = np.interp(np.arange(n), pos, np.arange(len(pos)))
    grid = np.meshgrid(*[back if a == axis else np.arange(s) for a, s in enumerate(img.shape)], indexing="ij")
    return ndimage.map_coordinates(low, grid, order=1, mode="nearest").astype(np.float32)


def synth_sample(maps: TissueMaps, rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """One random 2D training pair: image (1, H, W) float32 and labels (H, W) int64."""
    from scipy import ndimage

    axis = int(rng.choice(list(cfg.axes)))
    thick = rng.uniform(*cfg.spacing) if rng.random() < cfg.thick_prob else 1.0
    k = max(1, int(np.ceil(thick)))
    offsets = np.linspace(-(thick - 1) / 2, (thick - 1) / 2, k) if k > 1 else np.zeros(1)
    if k > 1 and not np.any(offsets == 0):
        offsets = np.sort(np.append(offsets, 0.0))
    centre = int(np.flatnonzero(offsets == 0)[0])
    coords = _slab_coordinates(maps, rng, cfg, axis, offsets)
    probs = np.stack(
        [ndimage.map_coordinates(p, coords, order=1, mode="constant", cval=1.0 if i == 0 else 0.0) for i, p in enumerate(maps.probs)]
    )
    probs /= np.maximum(probs.sum(0, keepdims=True), 1e-6)
    label = labels_from_probs(probs[:, centre]).astype(np.int64)
    slab, top = render_slab(probs, rng, cfg)
    if cfg.drift_response > 0 and rng.random() < cfg.drift_response:
        slab, top = apply_response(slab, 1.0 - probs[0], top, rng, cfg)
    # Slice profile: a smooth bump over the slab (thick slices average their content).
    weights = np.exp(-0.5 * (offsets / max(thick / 2.355, 0.5)) ** 2)
    img = np.tensordot(weights / weights.sum(), slab, axes=1)
    if rng.random() < cfg.inplane_prob:
        img = _decimate(img, int(rng.integers(2)), rng.uniform(*cfg.spacing))
    if cfg.blur > 0 and rng.random() < 0.5:
        img = ndimage.gaussian_filter(img, rng.uniform(0, cfg.blur, 2))
    img = img * np.exp(_smooth_field(rng, img.shape, 4, rng.uniform(0, cfg.bias))[0])
    sigma = rng.uniform(0, cfg.noise) * top
    if rng.random() < cfg.rician_prob:
        img = np.sqrt((img + sigma * rng.standard_normal(img.shape)) ** 2 + (sigma * rng.standard_normal(img.shape)) ** 2)
    else:
        img = img + sigma * rng.standard_normal(img.shape)
    # What percentile normalisation does to a whole volume: brightest tissue near 0.8-1, clipped at 1.
    img = np.clip(img / (top * rng.uniform(*cfg.scale_jitter)), 0, 1)
    img = img ** np.exp(rng.normal(0, cfg.gamma))
    if rng.random() < cfg.flip_prob and axis != 0:
        img, label = img[::-1], label[::-1]  # the first in-plane axis is left-right
    return np.ascontiguousarray(img[None], dtype=np.float32), np.ascontiguousarray(label)


def tissue_generator(rng: np.random.Generator, **settings: Any) -> tuple[np.ndarray, np.ndarray]:
    """Training sample for ``[data] source = "synth"`` (the engine's generator protocol)."""
    return synth_sample(tissue_maps(), rng, SynthConfig.from_dict(settings))


# -- held-out cases ----------------------------------------------------------------------------------


def normalise_percentile(data: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    """Clip to the ``lo``-``hi`` percentiles of the volume and map them to 0-1.

    The models' input normalisation (``minmax`` of :func:`medcli.engine.inference.normalize`).
    """
    a, b = np.percentile(data, [lo, hi])
    return np.clip((data - a) / max(b - a, 1e-6), 0, 1).astype(np.float32)


def _remap(t1: np.ndarray, labels: np.ndarray, targets: Sequence[float]) -> np.ndarray:
    """Piecewise-linear map of real T1 intensities: class medians -> ``targets``.

    A different intensity model from the training generator (real T1 texture
    and partial volume, mapped to another contrast).
    """
    knots = [0.0] + [float(np.median(t1[labels == c])) for c in (1, 2, 3)] + [float(t1.max())]
    values = [0.0] + list(targets) + [targets[-1] + (targets[-1] - targets[-2]) * 0.3]
    order = np.argsort(knots)
    return np.interp(t1, np.array(knots)[order], np.array(values)[order]).astype(np.float32)


def tissue_validation_cases(seed: int = 12345, margin: int = 8) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Held-out renderings of the MNI template, NOT made by the training generator.

    Returns (name, image, reference labels) on the 1 mm grid: the real T1; the
    real T1 and its labels under a smooth deformation the generator never
    drew; T2-like and PD-like contrasts made by remapping real T1 intensities;
    4 mm axial slices; 9 % Rician noise. Every image is percentile-normalised
    as the models' input is.
    """
    from scipy import ndimage

    from medcli import io

    maps = tissue_maps()
    labels = maps.labels
    t1 = io.read("sample:t1").reorient("RAS").data.astype(np.float32)
    rng = np.random.default_rng(seed)
    cases: list[tuple[str, np.ndarray, np.ndarray]] = [("T1", t1, labels)]

    shape = t1.shape
    disp = [ndimage.zoom(rng.normal(0, 2.5, (6, 6, 6)), [s / 6 for s in shape], order=3)[: shape[0], : shape[1], : shape[2]] for _ in range(3)]
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    coords = [g + d for g, d in zip(grid, disp)]
    t1_def = ndimage.map_coordinates(t1, coords, order=1)
    probs_def = np.stack([ndimage.map_coordinates(p, coords, order=1, cval=1.0 if i == 0 else 0.0) for i, p in enumerate(maps.probs)])
    cases.append(("T1 deformed", t1_def, labels_from_probs(probs_def)))

    cases.append(("T2-like", _remap(t1, labels, [1.0, 0.55, 0.35]), labels))
    cases.append(("PD-like", _remap(t1, labels, [0.9, 0.75, 0.6]), labels))

    # 4 mm axial slices: average 4 slices, then linear interpolation back to 1 mm.
    nz = shape[2] // 4 * 4
    thick = t1[..., :nz].reshape(shape[0], shape[1], nz // 4, 4).mean(-1)
    z = (np.arange(shape[2]) - 1.5) / 4
    zz = np.broadcast_to(z, shape)
    back = ndimage.map_coordinates(thick, [grid[0], grid[1], zz], order=1, mode="nearest")
    cases.append(("T1 4 mm slices", back.astype(np.float32), labels))

    sigma = 0.09 * float(np.percentile(t1[labels == 3], 50))
    noisy = np.sqrt((t1 + sigma * rng.standard_normal(shape)) ** 2 + (sigma * rng.standard_normal(shape)) ** 2)
    cases.append(("T1 Rician 9 %", noisy.astype(np.float32), labels))
    # Normalise on the whole volume (as at inference), then crop to the brain: less to predict.
    lo, hi = maps.brain_box
    box = tuple(slice(max(int(a) - margin, 0), int(b) + margin + 1) for a, b in zip(lo, hi))
    return [(name, normalise_percentile(img)[box], lab[box]) for name, img, lab in cases]


#: Scanner renderings of the drift validation cases: the same kinds of response as the
#: benchmark's ``degrade.DRIFT_SCANNERS`` (gamma 0.5-1.6, sigmoid, gain, offset, bias, Rician
#: noise, thick slices) with other parameters and other seeds, so that a model or setting chosen
#: on these is not chosen on the benchmark's images.
DRIFT_VALIDATION = {
    "drift gamma 0.55": dict(exponent=0.55, gain=1.4, offset=0.08, bias=0.25, rician=2),
    "drift gamma 1.45": dict(exponent=1.45, gain=0.8, offset=-0.03, bias=0.35, rician=3),
    "drift sigmoid 0.48/0.12": dict(response="sigmoid", centre=0.48, width=0.12, gain=1.0, offset=0.02, bias=0.3, rician=2),
    "drift sigmoid 0.62/0.2": dict(response="sigmoid", centre=0.62, width=0.2, gain=1.5, bias=0.25, rician=3),
    "drift gamma 0.75, 4 %, 3 mm": dict(exponent=0.75, gain=0.7, offset=0.04, bias=0.3, rician=4, slice_mm=3.0),
}


#: Scanners of other contrasts for validation (``tissue_drift_validation_cases(contrasts=True)``): PD-, FLAIR- and
#: T2-like tissue signals (:func:`medcli.enhance.degrade.tissue_contrast`, the T1's texture kept) under a response,
#: with other signals, responses and seeds than the benchmark's PD-/FLAIR-like scanners and scripts/tune_tissue_refine.py's.
DRIFT_CONTRAST_VALIDATION = {
    "drift PD-like gamma 0.9": dict(exponent=0.9, gain=1.1, offset=0.02, bias=0.25, rician=2, contrast=(1.0, 0.86, 0.73)),
    "drift PD-like sigmoid": dict(response="sigmoid", centre=0.5, width=0.2, gain=1.0, bias=0.3, rician=3, contrast=(1.0, 0.82, 0.68)),
    "drift FLAIR-like gamma 1.2": dict(exponent=1.2, gain=1.0, offset=0.01, bias=0.25, rician=2, contrast=(0.18, 1.0, 0.76)),
    "drift T2-like 3 mm": dict(exponent=0.9, gain=1.2, bias=0.3, rician=3, slice_mm=3.0, contrast=(1.0, 0.55, 0.38)),
}


def tissue_drift_validation_cases(seed: int = 12345, margin: int = 8, contrasts: bool = False) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """:func:`tissue_validation_cases` plus the T1 rendered by the scanners of :data:`DRIFT_VALIDATION`.

    Noise and bias seeds are ``seed + 1000 + index`` (the benchmark uses 300-410), labels the
    template's, every image percentile-normalised and cropped like the other cases. With
    ``contrasts``, the scanners of :data:`DRIFT_CONTRAST_VALIDATION` follow (seeds continue the count).
    """
    from medcli import io
    from medcli.enhance import degrade

    cases = tissue_validation_cases(seed, margin)
    maps = tissue_maps()
    labels = maps.labels
    t1 = io.read("sample:t1").reorient("RAS")
    brain = labels > 0
    lo, hi = maps.brain_box
    box = tuple(slice(max(int(a) - margin, 0), int(b) + margin + 1) for a, b in zip(lo, hi))
    scanners = {**DRIFT_VALIDATION, **(DRIFT_CONTRAST_VALIDATION if contrasts else {})}
    for i, (name, params) in enumerate(scanners.items()):
        img = degrade.drift_render(t1, degrade.Drift(**params), rng=seed + 1000 + i, mask=brain, tissues=maps.probs[1:])
        cases.append((name, normalise_percentile(np.asarray(img.data, np.float32))[box], labels[box]))
    return cases

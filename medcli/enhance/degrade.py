"""Known degradations of MR images, and the metrics that measure their removal.

Every enhancement command is tested and benchmarked the same way: take a clean
real image (the bundled MNI152 T1), degrade it with a *known* corruption from
this module, run the command, and compare with the clean image. Training data
generators use the same simulators, so what the models learn is what the tests
measure.

Simulators (all take a ``numpy.random.Generator`` or a seed, never global state):

* :func:`bias_field` / :func:`add_bias` -- smooth multiplicative intensity
  inhomogeneity (random B-spline-like field on a coarse grid).
* :func:`add_rician` -- Rician (magnitude) noise whose sigma is a percentage of
  the 99th percentile of the clean image (the BrainWeb convention).
* :func:`thick_slices` -- a thick-slice acquisition along one axis (slab
  average or Gaussian slice profile), on the correct coarser grid.
* :func:`scanner_response` -- a second scanner: monotonic non-linear intensity
  response, global scale/offset, slightly different blur.
* :func:`Drift` / :func:`drift_render` / :data:`DRIFT_SCANNERS` -- named,
  explicit (not random) scanner renderings for the distribution-drift
  benchmarks: gamma or sigmoid response, gain, offset, bias, Rician noise,
  thick slices.
* :func:`random_contrast` -- a synthetic contrast from tissue probability maps.
* :func:`random_deformation` -- a smooth random warp of one or more volumes.
* :func:`contrast_series` -- a low-rank 4D series (varying contrast weights).

Metrics: :func:`reference_intensity`, :func:`psnr`, :func:`residual_bias`.

Example:
    >>> import numpy as np
    >>> from medcli.enhance.degrade import add_rician, psnr
    >>> clean = np.zeros((20, 20, 20), np.float32); clean[5:15, 5:15, 5:15] = 100
    >>> noisy = add_rician(clean, 5, rng=0)
    >>> bool(20 < psnr(clean, noisy) < 40)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from medcli.image import Image


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


# -- metrics -------------------------------------------------------------------------------------


def reference_intensity(clean: np.ndarray) -> float:
    """The 99th percentile of the clean image: the noise and PSNR reference.

    Robust to a few hot voxels, unlike the maximum, and defined the same way for
    the noise simulator and for :func:`psnr`, so "5 % noise" means
    ``sigma = 0.05 * reference_intensity(clean)``.
    """
    data = np.asarray(clean, np.float32)
    return float(np.percentile(data[np.isfinite(data)], 99))


def psnr(clean: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None, peak: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB inside ``mask`` (default: ``clean > 0``).

    Args:
        clean: Ground truth.
        test: The image to score, same shape.
        mask: Voxels to score; the default is the support of the clean image
            (the brain, for the skull-stripped MNI T1).
        peak: Peak value; default :func:`reference_intensity` of ``clean``.
    """
    clean = np.asarray(clean, np.float64)
    test = np.asarray(test, np.float64)
    if mask is None:
        mask = clean > 0
    peak = reference_intensity(clean) if peak is None else peak
    mse = float(np.mean((clean[mask] - test[mask]) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def residual_bias(corrected: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Std of ``log(corrected / true)`` in the mask, after removing the global scale.

    Zero for a perfect correction up to a constant factor (bias correction can
    never know the global scale). Voxels where either image is not positive are
    ignored.
    """
    corrected = np.asarray(corrected, np.float64)
    true = np.asarray(true, np.float64)
    if mask is None:
        mask = true > 0
    m = mask & (corrected > 0) & (true > 0)
    r = np.log(corrected[m] / true[m])
    return float(np.std(r - np.median(r)))


# -- bias field ----------------------------------------------------------------------------------


def smooth_random_field(
    shape: Sequence[int], rng=None, control: int | Sequence[int] = 4, spacing: Sequence[float] | None = None
) -> np.ndarray:
    """A smooth random field in [-1, 1]: random values on a coarse grid, cubic-upsampled.

    Args:
        shape: Output shape (3D).
        rng: Generator or seed.
        control: Control points per axis (more = less smooth); 3-5 gives the
            slowly varying fields of real receive coils.
        spacing: Voxel size; when given, the control grid is isotropic in mm so
            the field is as smooth along every axis.
    """

    g = _rng(rng)
    shape = tuple(int(s) for s in shape[:3])
    if spacing is not None and np.isscalar(control):
        extent = np.asarray(shape, float) * np.asarray(spacing, float)
        ctrl = np.maximum(2, np.round(control * extent / extent.max())).astype(int)
    else:
        ctrl = np.broadcast_to(np.asarray(control, int), (3,))
    coarse = g.standard_normal(tuple(int(c) for c in ctrl)).astype(np.float32)
    # Cubic spline interpolation is separable: one small (n x c) matrix per
    # axis instead of map_coordinates over every voxel (50x faster).
    mats = [_spline_matrix(int(c), int(s)) for c, s in zip(ctrl, shape)]
    field = np.einsum("ia,jb,kc,abc->ijk", *mats, coarse, optimize=True)
    field -= field.mean()
    field /= max(float(np.abs(field).max()), 1e-12)
    return field.astype(np.float32)


def _spline_matrix(c: int, n: int) -> np.ndarray:
    """(n, c) matrix mapping c control values to n cubic-spline samples spanning them."""
    from scipy import ndimage

    x = np.linspace(0, c - 1, n)
    eye = np.eye(c, dtype=np.float64)
    cols = [ndimage.map_coordinates(ndimage.spline_filter1d(eye[j], order=3, mode="nearest"), [x], order=3,
                                    prefilter=False, mode="nearest") for j in range(c)]
    return np.stack(cols, axis=1).astype(np.float32)


def bias_field(
    shape: Sequence[int],
    strength: float = 0.4,
    rng=None,
    control: int = 4,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """A smooth multiplicative bias field with mean log 0.

    Args:
        shape: Volume shape.
        strength: Peak-to-peak relative amplitude: 0.4 spans about 0.82-1.22
            (the BrainWeb "40 % INU" level).
        rng: Generator or seed.
        control: Control points per axis of the underlying spline.
        spacing: Voxel size in mm (for an isotropic-in-mm field).

    Example:
        >>> f = bias_field((32, 32, 32), strength=0.4, rng=1)
        >>> bool(0.78 < f.min() < f.max() < 1.25)
        True
    """
    log_field = smooth_random_field(shape, rng, control, spacing)
    return np.exp(log_field * np.log1p(strength / 2)).astype(np.float32)


def add_bias(image: Image, strength: float = 0.4, rng=None, control: int = 4) -> tuple[Image, np.ndarray]:
    """Multiply an image by a random :func:`bias_field`; returns (biased image, field)."""
    field = bias_field(image.shape[:3], strength, rng, control, image.spacing)
    data = np.asarray(image.data, np.float32)
    f = field if data.ndim == 3 else field[..., None]
    return image.with_data(data * f), field


# -- noise ---------------------------------------------------------------------------------------


def noise_sigma(clean: np.ndarray, percent: float) -> float:
    """Sigma of ``percent`` % noise: ``percent / 100 * reference_intensity(clean)``."""
    return percent / 100.0 * reference_intensity(clean)


def add_rician(clean: np.ndarray, percent: float, rng=None, sigma: float | None = None) -> np.ndarray:
    """Rician noise: the magnitude of a complex signal with Gaussian noise on both channels.

    Args:
        clean: Noise-free magnitude image.
        percent: Noise level in % of :func:`reference_intensity` (ignored when
            ``sigma`` is given).
        rng: Generator or seed.
        sigma: Absolute standard deviation of the Gaussian noise per channel.
    """
    g = _rng(rng)
    clean = np.asarray(clean, np.float32)
    s = noise_sigma(clean, percent) if sigma is None else sigma
    re = clean + g.standard_normal(clean.shape, dtype=np.float32) * s
    im = g.standard_normal(clean.shape, dtype=np.float32) * s
    return np.sqrt(re * re + im * im)


def add_gaussian(clean: np.ndarray, percent: float, rng=None, sigma: float | None = None) -> np.ndarray:
    """Additive Gaussian noise at ``percent`` % of :func:`reference_intensity`."""
    g = _rng(rng)
    clean = np.asarray(clean, np.float32)
    s = noise_sigma(clean, percent) if sigma is None else sigma
    return clean + g.standard_normal(clean.shape, dtype=np.float32) * s


# -- resolution ----------------------------------------------------------------------------------


def thick_slices(image: Image, thickness: float, axis: int = 2, profile: str = "box") -> Image:
    """Simulate a thick-slice acquisition along ``axis``.

    Args:
        image: A (near) isotropic image.
        thickness: Slice thickness in mm; rounded to a whole number ``k`` of
            input voxels. Slices are contiguous (spacing = thickness).
        axis: Array axis of the slice direction.
        profile: ``box`` averages each slab of ``k`` voxels; ``gaussian`` blurs
            with a Gaussian of FWHM = thickness, then keeps every ``k``-th voxel.

    Returns:
        The thick-slice image on its own grid: ``shape[axis] // k`` slices whose
        centres lie at the centres of the slabs they integrate (world
        coordinates are exact, so resampling back lines up).

    Example:
        >>> img = Image(np.ones((8, 8, 12), np.float32), np.eye(4))
        >>> thick_slices(img, 3).shape, thick_slices(img, 3).spacing
        ((8, 8, 4), (1.0, 1.0, 3.0))
    """
    from scipy import ndimage

    data = np.asarray(image.data, np.float32)
    sp = image.spacing[axis]
    k = max(1, int(round(thickness / sp)))
    n = data.shape[axis] // k
    if n < 1:
        raise ValueError(f"image has {data.shape[axis]} slices along axis {axis}, fewer than one {thickness} mm slab")
    sl = [slice(None)] * data.ndim
    sl[axis] = slice(0, n * k)
    data = data[tuple(sl)]
    if profile == "box":
        shp = list(data.shape)
        shp[axis : axis + 1] = [n, k]
        low = data.reshape(shp).mean(axis=axis + 1)
    elif profile == "gaussian":
        sigma = [0.0] * data.ndim
        sigma[axis] = k / 2.3548
        blurred = ndimage.gaussian_filter(data, sigma, mode="nearest")
        idx = [slice(None)] * data.ndim
        idx[axis] = slice((k - 1) // 2, n * k, k)
        low = blurred[tuple(idx)]
        if k % 2 == 0:  # centre between two voxels: average the pair
            idx2 = list(idx)
            idx2[axis] = slice(k // 2, n * k, k)
            low = 0.5 * (low + blurred[tuple(idx2)])
    else:
        raise ValueError(f"profile must be 'box' or 'gaussian', not {profile!r}")
    aff = image.affine.copy()
    aff[:3, 3] = aff[:3, 3] + aff[:3, axis] * (k - 1) / 2.0
    aff[:3, axis] = aff[:3, axis] * k
    return Image(np.ascontiguousarray(low, np.float32), aff, dict(image.meta))


# -- scanners and contrasts ----------------------------------------------------------------------


def scanner_response(
    data: np.ndarray,
    rng=None,
    severity: float = 1.0,
    mask: np.ndarray | None = None,
    blur_mm: float | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """The same anatomy as seen by another scanner.

    A random monotonic intensity response (a gamma curve mixed with a
    piecewise-linear map through the tissue percentiles, so that tissue
    contrast ratios change, not just the scale), a global gain and offset, and
    a slightly different point-spread function. Background (``data <= 0``
    outside ``mask``) stays 0.

    Args:
        data: Clean image.
        rng: Generator or seed.
        severity: 0 is the identity; 1 is a typical inter-scanner difference.
        mask: Foreground; default ``data > 0``.
        blur_mm: Gaussian FWHM of the extra blur; default random in
            [0, 1.2 * severity] mm.
        spacing: Voxel size, for the blur.
    """
    from scipy import ndimage

    g = _rng(rng)
    x = np.asarray(data, np.float32)
    if mask is None:
        mask = x > 0
    ref = float(np.percentile(x[mask], 99)) if mask.any() else 1.0
    u = np.clip(x / max(ref, 1e-12), 0, None)
    gamma = float(np.exp(g.normal(0, 0.25 * severity)))
    # Piecewise-linear map through 5 knots of the foreground histogram, with
    # random monotonic perturbations of the knot outputs.
    qs = np.percentile(u[mask], [1, 25, 50, 75, 99]) if mask.any() else np.linspace(0, 1, 5)
    knots_in = np.concatenate([[0.0], qs, [max(float(u.max()), qs[-1] + 1e-3)]])
    steps = np.diff(knots_in) * np.exp(g.normal(0, 0.2 * severity, size=len(knots_in) - 1))
    knots_out = np.concatenate([[0.0], np.cumsum(steps)])
    knots_out *= knots_in[-1] / max(knots_out[-1], 1e-12)
    mapped = np.interp(u, knots_in, knots_out) ** gamma
    gain = float(np.exp(g.normal(0, 0.5 * severity))) * ref
    offset = float(g.normal(0, 0.02 * severity)) * gain
    out = mapped * gain + offset
    if blur_mm is None:
        blur_mm = float(g.uniform(0, 1.2 * severity))
    if blur_mm > 0:
        sig = [blur_mm / 2.3548 / s for s in spacing[:3]]
        out = ndimage.gaussian_filter(out, sig + [0.0] * (out.ndim - 3))
    return np.where(mask, out, 0).astype(np.float32)


@dataclass(frozen=True)
class Drift:
    """One explicit scanner rendering (the distribution-drift benchmarks).

    Unlike :func:`scanner_response` (a random mild response), every parameter
    is given, so a benchmark can name the renderings it uses and cover the
    range the issue asks for.

    Attributes:
        response: ``gamma`` (``u ** exponent``) or ``sigmoid`` (a logistic
            curve of centre ``centre`` and width ``width``, rescaled to map
            0 -> 0 and 1 -> 1); ``u`` is the image over its 99th foreground
            percentile. Both are monotone.
        exponent: Gamma exponent (< 1 compressive, > 1 expansive).
        centre: Sigmoid centre (fraction of the 99th percentile).
        width: Sigmoid width (same unit).
        gain: Global scale of the output (times the input's 99th percentile).
        offset: Additive offset, as a fraction of the gain.
        bias: Strength of a smooth multiplicative bias field (:func:`bias_field`).
        rician: Rician noise, percent of the 99th percentile (:func:`add_rician`).
        slice_mm: Slice thickness along the last axis: box-averaged slabs,
            repeated back onto the input grid (what a thin-grid pipeline sees).
        contrast: Relative CSF, GM and WM signals of another contrast (PD-,
            FLAIR-like), or None for the input's own (T1) contrast. With a
            contrast, :func:`drift_render` needs the tissue probability maps
            and renders them first (:func:`tissue_contrast`).
    """

    response: str = "gamma"
    exponent: float = 1.0
    centre: float = 0.5
    width: float = 0.15
    gain: float = 1.0
    offset: float = 0.0
    bias: float = 0.0
    rician: float = 0.0
    slice_mm: float | None = None
    contrast: tuple[float, float, float] | None = None


#: Relative tissue signals (CSF, GM, WM) of the contrasts of the drift renderings: proton density
#: with its usual residual T2 weighting (CSF brightest, low GM/WM contrast) and FLAIR (CSF nulled,
#: GM brighter than WM), from the ranges quoted in MRI textbooks (Bernstein/King/Zhou, "Handbook
#: of MRI Pulse Sequences"); the same values as the main segment benchmark's PD- and FLAIR-like cases.
PD_LIKE = (1.00, 0.83, 0.70)
FLAIR_LIKE = (0.15, 1.00, 0.75)


#: Named drift renderings: exponents 0.5-1.6, a sigmoid, gains 0.5-2,
#: offsets, bias 0.2-0.4, Rician 1-5 %, 3 mm slices. ``issue-18`` is the
#: rendering of the issue (gamma 0.65 + gain/offset + bias + 2 % Rician). The PD- and FLAIR-like
#: scanners render the tissue maps in those contrasts first (:func:`tissue_contrast`).
DRIFT_SCANNERS: dict[str, Drift] = {
    "reference": Drift(bias=0.3, rician=2),
    "issue-18 (gamma 0.65)": Drift(exponent=0.65, gain=1.8, offset=0.05, bias=0.3, rician=2),
    "gamma 0.5": Drift(exponent=0.5, gain=0.6, offset=0.1, bias=0.2, rician=1),
    "gamma 1.6": Drift(exponent=1.6, gain=2.0, offset=-0.02, bias=0.4, rician=3),
    "sigmoid": Drift(response="sigmoid", centre=0.55, width=0.15, gain=1.2, bias=0.3, rician=2),
    "gamma 0.8, 5 %, 3 mm": Drift(exponent=0.8, gain=0.5, offset=0.03, bias=0.3, rician=5, slice_mm=3.0),
    "reference, 3 mm": Drift(bias=0.3, rician=2, slice_mm=3.0),
    "PD-like (gamma 0.8)": Drift(exponent=0.8, gain=1.3, offset=0.02, bias=0.3, rician=2, contrast=PD_LIKE),
    "FLAIR-like (gamma 1.3)": Drift(exponent=1.3, gain=0.9, offset=0.0, bias=0.25, rician=3, contrast=FLAIR_LIKE),
}


def tissue_contrast(t1: np.ndarray, tissues: np.ndarray, signals: Sequence[float], mask: np.ndarray | None = None) -> np.ndarray:
    """The anatomy of a T1 image in another contrast, keeping the T1's own texture.

    The partial-volume mixture of ``signals`` (relative CSF, GM, WM) over the
    tissue probabilities ``tissues`` (3, ...), times the T1's deviation from
    its own mixture (``t1 / sum_k p_k m_k``, the class means ``m_k`` fitted by
    least squares inside ``mask``): real texture and noise-free detail, another
    contrast. Scaled so that the brightest tissue sits where the T1's WM did.
    """
    x = np.asarray(t1, np.float32)
    p = np.asarray(tissues, np.float32)
    if mask is None:
        mask = x > 0
    a = p[:, mask].T.astype(np.float64)
    means = np.linalg.lstsq(a, x[mask].astype(np.float64), rcond=None)[0]
    model = np.tensordot(means.astype(np.float32), p, axes=1)
    texture = np.where(model > 0.05 * float(means.max()), x / np.maximum(model, 1e-6), 1.0)
    texture = np.clip(texture, 0.5, 1.5)
    sig = np.asarray(signals, np.float32) / max(float(np.max(signals)), 1e-6) * float(means.max())
    return np.where(mask, np.tensordot(sig, p, axes=1) * texture, 0.0).astype(np.float32)


def drift_response(data: np.ndarray, drift: Drift, mask: np.ndarray | None = None) -> np.ndarray:
    """The monotone intensity response, gain and offset of ``drift`` (no bias, noise or slices)."""
    x = np.asarray(data, np.float32)
    if mask is None:
        mask = x > 0
    ref = float(np.percentile(x[mask], 99)) if mask.any() else 1.0
    u = np.clip(x / max(ref, 1e-12), 0, None).astype(np.float64)
    if drift.response == "gamma":
        y = u**drift.exponent
    elif drift.response == "sigmoid":
        def s(v):
            return 1.0 / (1.0 + np.exp(-(v - drift.centre) / drift.width))

        y = (s(u) - s(0.0)) / (s(1.0) - s(0.0))
    else:
        raise ValueError(f"unknown response {drift.response!r} (gamma or sigmoid)")
    out = drift.gain * ref * (y + drift.offset)
    return np.where(mask, out, 0).astype(np.float32)


def drift_render(image: Image, drift: Drift, rng=None, mask: np.ndarray | None = None,
                 tissues: np.ndarray | None = None) -> Image:
    """Render ``image`` as the scanner ``drift`` would: contrast, response, gain, offset, bias, slices, noise.

    Args:
        image: Clean 3D image (a T1).
        drift: The rendering.
        rng: Generator or seed (bias field and noise).
        mask: Foreground; default ``image.data > 0``. Background stays 0
            before the noise.
        tissues: CSF, GM, WM probability maps (3, ...) on the image's grid;
            needed when ``drift.contrast`` is set.

    Returns:
        The rendering on the input grid (float32).

    Raises:
        ValueError: a contrast without tissue maps.
    """
    g = _rng(rng)
    data = np.asarray(image.data, np.float32)
    if drift.contrast is not None:
        if tissues is None:
            raise ValueError("a drift rendering with a contrast needs the tissue probability maps (tissues=)")
        data = tissue_contrast(data, tissues, drift.contrast, data > 0 if mask is None else mask)
    x = drift_response(data, drift, mask)
    if drift.bias > 0:
        x = x * bias_field(x.shape, drift.bias, g, spacing=image.spacing)
    if drift.slice_mm:
        thick = thick_slices(image.with_data(x), drift.slice_mm)
        k = x.shape[2] // thick.shape[2]
        back = np.repeat(np.asarray(thick.data, np.float32), k, axis=2)
        # The slabs leave a remainder of < k slices: repeat the last slab there.
        x = np.concatenate([back, np.repeat(back[:, :, -1:], x.shape[2] - back.shape[2], axis=2)], axis=2)
    if drift.rician > 0:
        x = add_rician(x, drift.rician, rng=g)
    return image.with_data(x.astype(np.float32))


def random_contrast(
    tissues: Sequence[np.ndarray], rng=None, noise_texture: float = 0.02
) -> np.ndarray:
    """A synthetic contrast: random mean intensity per tissue, mixed by the probability maps.

    Args:
        tissues: Probability maps (e.g. GM, WM, CSF), each in [0, 1].
        rng: Generator or seed.
        noise_texture: Relative std of a smooth within-tissue texture, so that
            flat tissues do not look like cartoons.
    """
    from scipy import ndimage

    g = _rng(rng)
    probs = np.stack([np.asarray(t, np.float32) for t in tissues])
    means = g.uniform(0.1, 1.0, size=len(tissues)).astype(np.float32)
    out = np.tensordot(means, probs, axes=1)
    if noise_texture > 0:
        tex = ndimage.gaussian_filter(g.standard_normal(out.shape).astype(np.float32), 1.5)
        tex /= max(float(tex.std()), 1e-12)
        out = out * (1 + noise_texture * tex)
    return np.clip(out, 0, None).astype(np.float32)


def contrast_series(bases: Sequence[np.ndarray], n: int = 20, rng=None) -> np.ndarray:
    """A 4D series whose volumes mix the same anatomy with varying contrast weights.

    Like a diffusion or multi-echo series: every volume is a positive
    combination of a few base images (e.g. T1, GM and WM maps), so the series
    is low-rank -- the structure MP-PCA and Patch2Self exploit.

    Args:
        bases: 3D arrays of one shape, each scaled to a comparable range.
        n: Number of volumes.
        rng: Generator or seed.

    Returns:
        ``(X, Y, Z, n)`` float32; volume 0 is the first base alone (a b=0-like
        reference), the others random mixtures with decaying weights.
    """
    g = _rng(rng)
    b = np.stack([np.asarray(v, np.float32) for v in bases], axis=-1)
    w = g.uniform(0.2, 1.0, size=(n, b.shape[-1])).astype(np.float32)
    w[:, 0] *= np.linspace(1.0, 0.4, n, dtype=np.float32)  # signal decay across the series
    w[0] = 0
    w[0, 0] = 1
    return np.tensordot(b, w.T, axes=1).astype(np.float32)


def random_deformation(
    volumes: Sequence[np.ndarray],
    rng=None,
    amplitude: float = 4.0,
    control: int = 5,
    orders: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """Warp volumes (same shape) with one smooth random displacement field.

    Args:
        volumes: Arrays sharing a 3D shape (image, tissue maps, ...).
        rng: Generator or seed.
        amplitude: Maximum displacement in voxels.
        control: Control points per axis of the displacement spline.
        orders: Interpolation order per volume (default linear for all).
    """
    from scipy import ndimage

    g = _rng(rng)
    shape = volumes[0].shape[:3]
    disp = [smooth_random_field(shape, g, control) * amplitude for _ in range(3)]
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    coords = [gr + d for gr, d in zip(grid, disp)]
    orders = orders or [1] * len(volumes)
    return [
        ndimage.map_coordinates(np.asarray(v, np.float32), coords, order=o, mode="nearest").astype(np.float32)
        for v, o in zip(volumes, orders)
    ]


__all__ = [
    "reference_intensity",
    "psnr",
    "residual_bias",
    "smooth_random_field",
    "bias_field",
    "add_bias",
    "noise_sigma",
    "add_rician",
    "add_gaussian",
    "thick_slices",
    "scanner_response",
    "random_contrast",
    "random_deformation",
    "contrast_series",
]

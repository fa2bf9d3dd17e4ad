"""Intensity harmonisation: put MR images from different scanners on one scale.

MR intensities have no physical unit: the same brain scanned twice on two
scanners differs by a gain, an offset and a non-linear response. Methods, from
the least to the most assumption-laden:

* ``zscore`` -- subtract the foreground mean, divide by its standard
  deviation. Linear: removes gain and offset only.
* ``whitestripe`` -- Shinohara et al. 2014: z-score against the
  normal-appearing white matter "stripe" (the voxels within +-5 % in quantile
  of the white-matter histogram peak), so that the WM peak lands at 0 with
  unit spread whatever the lesion load or field of view. Linear.
* ``nyul`` -- Nyul & Udupa 1999, Nyul et al. 2000: a piecewise-linear map of
  histogram landmarks (percentiles 1, 10, ..., 90, 99 of the foreground) onto a
  *standard* learnt from a set of scans (:func:`fit_nyul`). Undoes monotone
  non-linear responses.
* ``histmatch`` -- match the foreground histogram to one reference image
  (a Nyul map with 1001 landmarks taken from a single scan).
* ``learned`` -- the contrast-agnostic tissue network (trained by synthesis,
  SynthSeg-style) gives CSF/GM/WM posteriors for any contrast and scanner; the
  image is re-rendered as the MNI T1 would show those tissues (posterior-weighted
  MNI T1 tissue means): tissue composition, without within-tissue texture.
  A T1-like brain whatever the input contrast, in the spirit of
  SynthSR (Iglesias et al. 2023), without its per-voxel regression.

Every function takes and returns an :class:`~medcli.image.Image` (float32);
4D inputs are harmonised volume by volume.

Example:
    >>> from medcli import io
    >>> from medcli.enhance.harmonize import harmonize
    >>> t1 = io.read("sample:t1")  # doctest: +SKIP
    >>> out = harmonize(t1, method="whitestripe")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from medcli.errors import InputError, ProcessingError, UsageError
from medcli.image import Image

METHODS = ("zscore", "whitestripe", "nyul", "histmatch", "learned")

#: Nyul landmarks: the min/max percentiles (p1, p99) and the deciles between.
NYUL_PERCENTILES: tuple[float, ...] = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)
#: Intensity range the standard maps p1..p99 to (Nyul's s1, s2).
NYUL_RANGE: tuple[float, float] = (0.0, 100.0)
DEFAULT_STANDARD = Path(__file__).resolve().parents[1] / "data" / "harmonize_standard.json"


# -- masks ---------------------------------------------------------------------------------------


def foreground(data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The voxels a method learns its statistics from.

    With ``mask``, its non-zero voxels. Otherwise a robust head/brain mask:
    intensities above 10 % of the way from the 2nd to the 98th percentile (the
    FSL BET rule), with interior holes (ventricles) filled, so that background
    noise and air never enter the statistics.
    """
    if mask is not None:
        m = np.asarray(mask) > 0
        if m.shape != data.shape[:3]:
            raise InputError(f"mask shape {m.shape} does not match the image {data.shape[:3]}")
        if not m.any():
            raise InputError("mask is empty")
        return m
    from scipy import ndimage

    lo, hi = np.percentile(data, [2, 98])
    m = data > lo + 0.1 * (hi - lo)
    if not m.any():
        raise InputError("image is constant: no foreground to learn intensities from")
    return ndimage.binary_fill_holes(m)


def _per_volume(image: Image, fn: Callable[[np.ndarray], np.ndarray]) -> Image:
    data = np.asarray(image.data, np.float32)
    if data.ndim == 3:
        return image.with_data(fn(data).astype(np.float32))
    flat = data.reshape(data.shape[:3] + (-1,))
    out = np.stack([fn(flat[..., t]) for t in range(flat.shape[-1])], axis=-1)
    return image.with_data(out.reshape(data.shape).astype(np.float32))


# -- piecewise-linear maps -----------------------------------------------------------------------


def piecewise_linear(x: np.ndarray, src: Sequence[float], dst: Sequence[float]) -> np.ndarray:
    """Map ``src`` landmarks onto ``dst``, linearly between them and beyond the ends.

    Beyond the first/last landmark the map continues with the *overall* slope
    (``dst`` span over ``src`` span): the tail segments of a histogram are
    short and noisy, and a steep extrapolation would blow up outliers.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    # Images with few distinct values (uint8) repeat percentiles: nudge ties
    # apart so that the map stays a function.
    span = max(float(src[-1] - src[0]), 1e-6)
    src = np.maximum.accumulate(src + np.arange(len(src)) * span * 1e-9)
    slope = (dst[-1] - dst[0]) / max(float(src[-1] - src[0]), 1e-12)
    x = np.asarray(x, np.float64)
    y = np.interp(x, src, dst)
    y = np.where(x < src[0], dst[0] + (x - src[0]) * slope, y)
    y = np.where(x > src[-1], dst[-1] + (x - src[-1]) * slope, y)
    return y.astype(np.float32)


# -- z-score and WhiteStripe ---------------------------------------------------------------------


def zscore(image: Image, mask: np.ndarray | None = None) -> Image:
    """Subtract the foreground mean and divide by its standard deviation.

    Example:
        >>> img = Image(np.arange(1, 65, dtype=np.float32).reshape(4, 4, 4), np.eye(4))
        >>> out = zscore(img, mask=np.ones((4, 4, 4)))
        >>> round(float(out.data.mean()), 6), round(float(out.data.std()), 6)
        (0.0, 1.0)
    """

    def fn(v: np.ndarray) -> np.ndarray:
        fg = v[foreground(v, mask)]
        sd = float(fg.std())
        if sd <= 0:
            raise ProcessingError("foreground has zero variance: cannot z-score", image.meta.get("source"))
        return (v - float(fg.mean())) / sd

    return _per_volume(image, fn)


def tissue_mode(values: np.ndarray, contrast: str = "t1") -> float:
    """The white-matter peak of a brain histogram (WhiteStripe's mode).

    The histogram of ``values`` (top 1 % dropped: fat, vessels, artefacts) is
    smoothed with a Gaussian kernel; for T1 the WM peak is the *last* local
    maximum (brightest tissue), for T2/FLAIR/PD the *largest* one.
    """
    from scipy import ndimage, signal

    v = values[values <= np.percentile(values, 99)]
    hist, edges = np.histogram(v, bins=256)
    centres = 0.5 * (edges[1:] + edges[:-1])
    smooth = ndimage.gaussian_filter1d(hist.astype(np.float64), 3, mode="nearest")
    if contrast in ("t2", "flair", "pd"):
        return float(centres[int(np.argmax(smooth))])
    # Ignore ripples: a peak must hold at least 5 % of the highest one.
    peaks, _ = signal.find_peaks(smooth, height=0.05 * smooth.max(), prominence=0.01 * smooth.max())
    if len(peaks) == 0:
        return float(centres[int(np.argmax(smooth))])
    return float(centres[peaks[-1]])


def whitestripe(
    image: Image, mask: np.ndarray | None = None, width: float = 0.05, contrast: str = "t1"
) -> tuple[Image, dict[str, float]]:
    """WhiteStripe normalisation (Shinohara et al. 2014).

    Args:
        image: A brain MR image (skull-stripped, or give ``mask``).
        mask: Brain mask; default :func:`foreground`.
        width: Half-width of the stripe in quantiles around the WM peak (0.05 = +-5 %).
        contrast: ``t1`` (WM is the last histogram peak) or ``t2``/``flair``/``pd``
            (WM is the largest peak).

    Returns:
        The normalised image (the stripe has mean 0 and std 1) and the stripe
        statistics (``mode``, ``mean``, ``std``, ``lower``, ``upper`` of the
        first volume).

    Example:
        >>> from medcli import io
        >>> out, info = whitestripe(io.read("sample:t1"))  # doctest: +SKIP
    """
    if not 0 < width < 0.5:
        raise UsageError("WhiteStripe width must be in (0, 0.5)")
    info: dict[str, float] = {}

    def fn(v: np.ndarray) -> np.ndarray:
        fg = foreground(v, mask)
        vals = v[fg]
        mode = tissue_mode(vals, contrast)
        q = float(np.mean(vals < mode))
        lower, upper = np.quantile(vals, [max(q - width, 0.0), min(q + width, 1.0)])
        stripe = fg & (v >= lower) & (v <= upper)
        s = v[stripe]
        if s.size < 10 or float(s.std()) <= 0:
            raise ProcessingError("WhiteStripe found no white-matter stripe (is this a brain MR?)", image.meta.get("source"))
        mu, sd = float(s.mean()), float(s.std())
        if not info:
            info.update(mode=mode, mean=mu, std=sd, lower=float(lower), upper=float(upper))
        return (v - mu) / sd

    return _per_volume(image, fn), info


# -- Nyul ----------------------------------------------------------------------------------------


def landmarks(data: np.ndarray, mask: np.ndarray | None = None, percentiles: Sequence[float] = NYUL_PERCENTILES) -> np.ndarray:
    """Foreground intensity percentiles of one volume (Nyul's landmarks)."""
    return np.percentile(data[foreground(data, mask)], list(percentiles)).astype(np.float64)


def fit_nyul(
    images: Sequence[Image],
    masks: Sequence[np.ndarray | None] | None = None,
    percentiles: Sequence[float] = NYUL_PERCENTILES,
    scale: tuple[float, float] = NYUL_RANGE,
    sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Learn a Nyul standard histogram from a set of scans.

    Each scan's landmarks are mapped linearly so that its first and last
    percentile land on ``scale``; the standard is the mean of the mapped
    landmarks (Nyul et al. 2000, training step).

    Args:
        images: Training scans (same contrast). 4D images contribute every volume.
        masks: Optional foreground mask per image.
        percentiles: Landmark percentiles, increasing, first and last = min/max.
        scale: The standard's output range for the first and last landmark.
        sources: Names recorded in the standard (provenance).

    Returns:
        A JSON-serialisable standard for :func:`nyul` (and ``--standard``).

    Example:
        >>> from medcli import io
        >>> std = fit_nyul([io.read("sample:t1")])  # doctest: +SKIP
        >>> std["landmarks"][0], std["landmarks"][-1]  # doctest: +SKIP
        (0.0, 100.0)
    """
    pct = [float(p) for p in percentiles]
    if len(pct) < 3 or any(b <= a for a, b in zip(pct, pct[1:])) or pct[0] < 0 or pct[-1] > 100:
        raise UsageError("Nyul percentiles must be at least 3 increasing values in [0, 100]")
    if not images:
        raise UsageError("fitting a Nyul standard needs at least one image")
    masks = list(masks) if masks is not None else [None] * len(images)
    mapped = []
    for img, m in zip(images, masks):
        data = np.asarray(img.data, np.float32)
        vols = [data] if data.ndim == 3 else [data.reshape(data.shape[:3] + (-1,))[..., t] for t in range(int(np.prod(data.shape[3:])))]
        for v in vols:
            lm = landmarks(v, m, pct)
            if lm[-1] - lm[0] <= 0:
                raise InputError("constant foreground: no landmarks", img.meta.get("source"))
            mapped.append(scale[0] + (lm - lm[0]) * (scale[1] - scale[0]) / (lm[-1] - lm[0]))
    standard = np.mean(mapped, axis=0)
    return {
        "method": "nyul",
        "version": 1,
        "percentiles": pct,
        "landmarks": [round(float(x), 6) for x in standard],
        "scale": [float(scale[0]), float(scale[1])],
        "n_volumes": len(mapped),
        "fit_on": list(sources) if sources else [str(i.meta.get("source", "?")) for i in images],
    }


def load_standard(path: str | Path | None = None) -> dict[str, Any]:
    """Read and validate a Nyul standard (default: the one shipped with medcli)."""
    p = Path(path) if path else DEFAULT_STANDARD
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError as e:
        raise InputError("no such file", p) from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a valid standard JSON ({e})", p) from e
    try:
        pct = [float(x) for x in doc["percentiles"]]
        lm = [float(x) for x in doc["landmarks"]]
    except (KeyError, TypeError, ValueError) as e:
        raise InputError("standard JSON needs 'percentiles' and 'landmarks' lists (write one with 'medcli harmonize fit')", p) from e
    if len(pct) != len(lm) or len(pct) < 3 or any(b <= a for a, b in zip(lm, lm[1:])):
        raise InputError("standard landmarks must be as many as the percentiles and increasing", p)
    doc["percentiles"], doc["landmarks"] = pct, lm
    return doc


def nyul(image: Image, standard: dict[str, Any] | None = None, mask: np.ndarray | None = None) -> Image:
    """Map an image's landmarks onto a standard, piecewise-linearly (Nyul & Udupa 1999).

    Args:
        image: The scan to normalise.
        standard: A standard from :func:`fit_nyul` / :func:`load_standard`
            (default: the standard shipped with medcli).
        mask: Foreground to take the landmarks from.

    Example:
        >>> from medcli import io
        >>> out = nyul(io.read("sample:t1"))  # doctest: +SKIP
    """
    std = standard or load_standard()
    pct, dst = std["percentiles"], std["landmarks"]

    def fn(v: np.ndarray) -> np.ndarray:
        return piecewise_linear(v, landmarks(v, mask, pct), dst)

    return _per_volume(image, fn)


# -- histogram matching --------------------------------------------------------------------------

HISTMATCH_QUANTILES = np.linspace(0.5, 99.5, 1001)


def histmatch(
    image: Image, reference: Image, mask: np.ndarray | None = None, reference_mask: np.ndarray | None = None
) -> Image:
    """Match the foreground histogram of ``image`` to that of ``reference``.

    A dense quantile map (1001 quantiles between 0.5 % and 99.5 %) from the
    image's foreground onto the reference's, so the output's foreground has the
    reference's intensity distribution.

    Example:
        >>> from medcli import io
        >>> out = histmatch(io.read("scan.nii.gz"), io.read("sample:t1"))  # doctest: +SKIP
    """
    ref = np.asarray(reference.data, np.float32)
    if ref.ndim == 4:
        ref = ref[..., 0]
    dst = np.percentile(ref[foreground(ref, reference_mask)], HISTMATCH_QUANTILES)

    def fn(v: np.ndarray) -> np.ndarray:
        src = np.percentile(v[foreground(v, mask)], HISTMATCH_QUANTILES)
        return piecewise_linear(v, src, dst)

    return _per_volume(image, fn)


# -- learned (tissue posteriors rendered as the MNI T1) ---------------------------------------------

LEARNED_MODEL = "tissue"


@lru_cache(maxsize=1)
def t1_tissue_means() -> np.ndarray:
    """Median CSF, GM and WM intensities of the bundled MNI152 T1, divided by its brain 99th percentile."""
    from medcli.train.synth import mni_volumes

    t1, gm, wm, _, brain = mni_volumes()  # T1 already on the brain-p99 = 1 scale
    pure = ((brain > 0) & (gm < 0.1) & (wm < 0.1), gm > 0.7, wm > 0.9)
    return np.array([np.median(t1[m]) for m in pure])


def learned(image: Image, mask: np.ndarray | None = None, model: str = LEARNED_MODEL, device=None) -> Image:
    """Render any contrast/scanner as an MNI-T1-like brain from learned tissue posteriors.

    ``medcli segment --task tissue --method learned`` gives CSF/GM/WM
    probabilities (the network names tissues whatever the contrast; a
    per-image mixture places the boundaries); the output is their
    probability-weighted MNI T1 tissue means (:func:`t1_tissue_means`: brain
    99th percentile = 1, WM ~0.96), 0 outside the brain. The brain is
    ``mask`` when given, else found as the tissue segmentation finds it
    (non-zero region of a stripped image, or brain extraction).
    Within-tissue texture is not kept (carrying it over with the input's
    own spread moved the tissue means by up to 0.1): the output shows tissue
    composition, the same for every scanner and contrast.

    Example:
        >>> from medcli import io
        >>> t1like = learned(io.read("t2_brain.nii.gz"))  # doctest: +SKIP
    """
    from medcli.segment.tissue import segment_tissue

    means = t1_tissue_means().astype(np.float32)

    def fn(v: np.ndarray) -> np.ndarray:
        vol = Image(v.astype(np.float32), image.affine, dict(image.meta))
        brain = None if mask is None else Image((np.asarray(mask) > 0).astype(np.uint8), image.affine)
        # Without the partial-volume CSF rule: it serves the labels, and rendered with it the FLAIR-like scan moved
        # away from the PD-like one (0.263x z-score against 0.129x; tests/benchmarks/results/harmonize_drift.md).
        labels, probs = segment_tissue(vol, "learned", model=model, mask=brain, postprocess=False, device=device,
                                       partial_volume=False)
        inside = np.asarray(labels.data) > 0
        return np.where(inside, np.asarray(probs.data, np.float32) @ means, 0.0).astype(np.float32)

    return _per_volume(image, fn)


# -- dispatch ------------------------------------------------------------------------------------


def harmonize(
    image: Image,
    method: str = "nyul",
    mask: np.ndarray | None = None,
    standard: dict[str, Any] | None = None,
    reference: Image | None = None,
    contrast: str = "t1",
) -> Image:
    """Harmonise the intensities of one image with the named method.

    Args:
        image: 3D or 4D MR image.
        method: One of :data:`METHODS`.
        mask: Foreground/brain mask (non-zero voxels) for the statistics.
        standard: Nyul standard (default: the one shipped with medcli).
        reference: The image to match for ``histmatch``.
        contrast: For ``whitestripe``: ``t1`` or ``t2``/``flair``/``pd``.

    Example:
        >>> from medcli import io
        >>> out = harmonize(io.read("sample:t1"), "zscore")  # doctest: +SKIP
    """
    if method == "zscore":
        return zscore(image, mask)
    if method == "whitestripe":
        return whitestripe(image, mask, contrast=contrast)[0]
    if method == "nyul":
        return nyul(image, standard, mask)
    if method == "histmatch":
        if reference is None:
            raise UsageError("--method histmatch needs --reference FILE")
        return histmatch(image, reference, mask)
    if method == "learned":
        return learned(image, mask)
    raise UsageError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")


__all__ = [
    "METHODS",
    "harmonize",
    "zscore",
    "whitestripe",
    "tissue_mode",
    "fit_nyul",
    "load_standard",
    "nyul",
    "landmarks",
    "histmatch",
    "learned",
    "piecewise_linear",
    "foreground",
]

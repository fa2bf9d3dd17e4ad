"""Classical tissue segmentation: Gaussian mixture + Potts Markov random field (EM, mean field).

The model is the one of FSL FAST and ANTs Atropos, written in numpy so that it
runs anywhere in a few seconds: intensities inside the brain mask are a mixture
of three Gaussians (CSF, GM, WM); a Potts prior rewards neighbours that share a
class. Expectation-maximisation alternates a mean-field update of the class
posteriors (likelihood x exp(beta * neighbour agreement)) and the re-estimation
of the class means, variances and proportions. It is k-means initialised and,
before that, the image is bias-corrected with N4 at modest settings.

Which cluster is which tissue is decided without assuming a contrast: the
three clusters are matched to CSF/GM/WM by where they sit in the brain (depth
below the brain surface, learnt once from the bundled MNI152 tissue maps), so
T1-, T2- and PD-like images all get the right names. See
:func:`assign_by_depth`.

References:
    Zhang, Brady, Smith 2001, "Segmentation of brain MR images through a hidden
    Markov random field model and the expectation-maximization algorithm", IEEE TMI.
    Avants et al. 2011, "An open source multivariate framework for n-tissue
    segmentation with evaluation on public data" (Atropos), Neuroinformatics.
    Tustison et al. 2010, "N4ITK: improved N3 bias correction", IEEE TMI.

Example:
    >>> from medcli import io
    >>> t1 = io.read("sample:t1")  # doctest: +SKIP
    >>> post = gmm_mrf(t1.data, t1.data > 0, spacing=t1.spacing)  # doctest: +SKIP
    >>> post.shape  # (CSF, GM, WM, x, y, z)  # doctest: +SKIP
    (3, 197, 233, 189)
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

#: Tissue names in label order (label value = index + 1).
TISSUES = ("CSF", "GM", "WM")


#: N4 settings of the tissue method (medcli.enhance.bias.n4_log_field): fit on
#: every 4th voxel, two levels of one and two B-spline spans over the image
#: (ITK's default 4 control points), 50 then 25 iterations, ITK's default
#: convergence 1e-3. A finer field (biascorrect's defaults: 100 mm spans, 8th
#: voxel) starts to absorb real anatomy (deep grey nuclei, cortex) and cost 3-4
#: Dice points on the bias-free template (tests/benchmarks/bench_segment.py).
N4_SETTINGS = {"shrink": 4, "iterations": (50, 25), "spline_distance": float("inf"), "convergence": 1e-3}


def n4(data: np.ndarray, mask: np.ndarray, spacing: Sequence[float], **settings) -> np.ndarray:
    """N4 bias-field correction restricted to ``mask``, at the tissue method's coarse settings.

    The one N4 of medcli (:func:`medcli.enhance.bias.n4_log_field`, SimpleITK's
    algorithm in NumPy) with :data:`N4_SETTINGS` (overridden by ``settings``).
    The field is fitted on a subsample and evaluated at full resolution, so
    the corrected image keeps every detail; voxels outside ``mask`` are
    returned unchanged.
    """
    from medcli.enhance.bias import n4_log_field

    data = np.asarray(data, np.float32)
    mask = np.asarray(mask, bool)
    # N4 works on log intensities: it needs strictly positive values inside the mask.
    lo = float(data[mask].min()) if mask.any() else 0.0
    pos = data - lo + 1.0
    field = np.exp(n4_log_field(pos, spacing, mask, **{**N4_SETTINGS, **settings}))
    out = pos / np.maximum(field, 1e-6) + lo - 1.0
    return np.where(mask, out, data).astype(np.float32)


def kmeans_1d(x: np.ndarray, k: int = 3, iters: int = 30) -> np.ndarray:
    """Sorted cluster centres of 1D values (percentile-initialised Lloyd iterations)."""
    centres = np.percentile(x, np.linspace(100 / (2 * k), 100 - 100 / (2 * k), k)).astype(np.float64)
    for _ in range(iters):
        assign = np.argmin(np.abs(x[:, None] - centres[None, :]), axis=1)
        new = np.array([x[assign == j].mean() if np.any(assign == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres, rtol=0, atol=1e-6 * (np.ptp(x) + 1e-12)):
            break
        centres = new
    return np.sort(centres)


def _neighbour_sum(q: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of the 6 face neighbours of each voxel, per class (zero outside the array)."""
    out = np.zeros_like(q)
    for axis, w in enumerate(weights):
        ax = axis + 1
        n = q.shape[ax]
        if n < 2:
            continue
        lo = [slice(None)] * q.ndim
        hi = [slice(None)] * q.ndim
        lo[ax], hi[ax] = slice(0, n - 1), slice(1, n)
        out[tuple(lo)] += w * q[tuple(hi)]
        out[tuple(hi)] += w * q[tuple(lo)]
    return out


def gmm_mrf(
    data: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    classes: int = 3,
    beta: float = 0.3,
    iterations: int = 15,
    bias: bool = True,
    prior: np.ndarray | None = None,
    prior_weight: float = 0.5,
    likelihood: str = "gaussian",
    bins: int = 64,
    partial_volume: tuple[int, int] | None = None,
) -> np.ndarray:
    """Posterior probabilities of ``classes`` intensity clusters inside ``mask``.

    Args:
        data: 3D intensities.
        mask: 3D boolean brain mask; voxels outside get probability 0.
        spacing: Voxel size (mm); the Potts weight of a neighbour is 1/distance,
            so thick slices couple less through-plane.
        classes: Number of Gaussian clusters.
        beta: Potts interaction strength (0 = plain GMM).
        iterations: EM iterations.
        bias: N4-correct the intensities first.
        prior: Optional (classes, *data.shape) spatial prior probabilities, for
            example a network's: EM starts from it instead of k-means, each
            class keeps its prior's meaning and order, and the log-prior
            (times ``prior_weight``) is added to every E-step, as atlas-based
            EM (SPM, SAMSEG) adds its atlas.
        prior_weight: Exponent of the prior (0 ignores it after the start, 1
            trusts it as a calibrated probability).
        likelihood: ``gaussian`` (one Gaussian per class, FAST/Atropos) or
            ``histogram`` (needs ``prior``): each class's intensity density is
            its responsibility-weighted histogram of ``bins`` bins over the
            0.5-99.5 percentile range, smoothed by a 1.5-bin Gaussian. A
            histogram follows whatever shape a scanner's non-linear response
            gives a tissue (skewed, compressed against saturation, spread by
            partial volume), where one Gaussian per class misplaces the
            boundaries; it needs the prior to say which voxels are which.
        bins: Histogram bins of the ``histogram`` likelihood.
        partial_volume: ``(anchor, neighbour)`` class indices (with ``prior``; CSF and GM for
            the tissue method): the anchor's boundaries are redrawn after EM by the
            partial-volume rule (:func:`split_partial_volume`) when its mixtures with the
            neighbour look like a third class.

    Returns:
        float32 array (classes, *data.shape): without ``prior``, clusters sorted
        by increasing mean intensity (name them with :func:`assign_by_depth`);
        with ``prior``, in the prior's class order.
    """
    if likelihood not in ("gaussian", "histogram"):
        raise ValueError(f"likelihood must be gaussian or histogram, not {likelihood!r}")
    if likelihood == "histogram" and prior is None:
        raise ValueError("the histogram likelihood needs a prior (it has no start of its own)")
    data = np.asarray(data, np.float32)
    mask = np.asarray(mask, bool)
    out = np.zeros((classes,) + data.shape, np.float32)
    if mask.sum() < 10 * classes:
        return out
    # Work inside the bounding box of the mask: the rest of the volume is background.
    idx = np.nonzero(mask)
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in idx)
    x, m = data[box], mask[box]
    if bias:
        x = n4(x, m, spacing)
    vals = x[m].astype(np.float64)
    lo, hi = np.percentile(vals, [0.5, 99.5])
    scale = max(hi - lo, 1e-6)
    xs = np.clip((x - lo) / scale, -0.5, 1.5).astype(np.float32)
    v = xs[m].astype(np.float64)

    if prior is None:
        mu = kmeans_1d(v[:: max(1, v.size // 200000)], classes)
        assign = np.argmin(np.abs(v[:, None] - mu[None, :]), axis=1)
        sd = np.array([max(v[assign == j].std(), 1e-3) if np.any(assign == j) else 0.1 for j in range(classes)])
        pi = np.array([max(np.mean(assign == j), 1e-3) for j in range(classes)])
        log_prior = None
        q = np.zeros((classes,) + xs.shape, np.float32)
    else:
        p = np.asarray(prior, np.float32)[(slice(None),) + box] * m[None]
        p = (p + 1e-4) / (p + 1e-4).sum(axis=0, keepdims=True)
        log_prior = (prior_weight * np.log(p)).astype(np.float32)
        q = (p * m[None]).astype(np.float32)
        mu, sd, pi = _moments(q[:, m].astype(np.float64), v)
        # The prior carries the class proportions: a second, global one would count them twice.
        pi = np.ones(classes)

    w = 1.0 / np.asarray(spacing, float)
    w = w / w.max()
    if likelihood == "histogram":
        bin_of = np.minimum((np.clip(xs, 0.0, 1.0) * bins).astype(np.int32), bins - 1)
        bin_in = bin_of[m]
    for it in range(iterations):
        if likelihood == "histogram":
            loglik = _histogram_loglik(q[:, m], bin_in, bins)[:, bin_of]
        else:
            loglik = np.stack(
                [np.log(pi[j]) - np.log(sd[j]) - 0.5 * ((xs - mu[j]) / sd[j]) ** 2 for j in range(classes)]
            ).astype(np.float32)
        if log_prior is not None:
            loglik += log_prior
        if (it > 0 or log_prior is not None) and beta > 0:
            loglik += beta * _neighbour_sum(q, w)
        loglik -= loglik.max(axis=0, keepdims=True)
        np.exp(loglik, out=loglik)
        loglik /= loglik.sum(axis=0, keepdims=True)
        q = loglik * m[None]
        mu, sd, pi_new = _moments(q[:, m].astype(np.float64), v)
        if log_prior is None:
            pi = pi_new
    if partial_volume is not None and log_prior is not None:
        q[:, m] = split_partial_volume(q[:, m], xs[m], *partial_volume)
    order = np.argsort(mu) if log_prior is None else np.arange(classes)
    out[(slice(None),) + box] = q[order]
    return out


def split_partial_volume(q: np.ndarray, v: np.ndarray, anchor: int, neighbour: int, sure: float = 0.95) -> np.ndarray:
    """(classes, n) probabilities with ``anchor``'s boundaries at the partial-volume midpoints.

    A reference label is the tissue that fills most of a voxel; a voxel that
    is part ``anchor`` (say CSF), part ``k`` has an intensity between their
    pure intensities, at the fraction of each (linear mixing of the signal).
    A mixture's posterior puts the boundary elsewhere: where the densities
    cross, which moves towards the smaller class when the contrast is low
    (PD-like: sulcal CSF called GM) and away from it when partial-volume
    voxels of another pair fall in its range (FLAIR-like: CSF/GM mixtures as
    dark as CSF/WM ones). Where ``anchor`` and one rival ``k`` are a voxel's two
    likeliest classes, their joint probability is re-split by the implied
    fraction ``(v - pure_k) / (pure_anchor - pure_k)``, clipped to 0-1; the
    other classes keep theirs. Pure intensities: medians of the voxels at least
    ``sure`` probable. Applied only when a third class's pure intensity lies
    between those of ``anchor`` and ``neighbour`` (the tissue it mostly
    borders), i.e. when their mixtures look like that third tissue. Santago & Gage 1993 and Shattuck et al. 2001 (BrainSuite)
    model the same mixing with explicit partial-volume classes.
    """
    q = q.copy()
    sure_of = [q[j] >= sure for j in range(q.shape[0])]
    pure = [float(np.median(v[s])) if np.count_nonzero(s) >= 100 else None for s in sure_of]
    if pure[anchor] is None:
        return q
    # Only where the anchor's mixtures with the tissue it mostly borders (GM for CSF: the sulci) pass through
    # a third tissue's intensity (FLAIR: CSF/GM mixtures as bright as WM). Elsewhere the fitted densities
    # already separate the mixtures, and the rule measured worse on T1-, PD-like and thick-slice validation
    # renderings (scripts/tune_tissue_refine.py, tests/benchmarks/results/tissue_refine_drift.md).
    if pure[neighbour] is None:
        return q
    lo_n, hi_n = sorted((pure[anchor], pure[neighbour]))
    if not any(p is not None and lo_n < p < hi_n for j, p in enumerate(pure) if j not in (anchor, neighbour)):
        return q
    top = np.argsort(q, axis=0)[-2:]
    spread = float(np.percentile(v, 99) - np.percentile(v, 1)) or 1.0
    for k in range(q.shape[0]):
        # Without a measurable contrast between the two, intensity cannot say which dominates.
        if k == anchor or pure[k] is None or abs(pure[anchor] - pure[k]) < 0.05 * spread:
            continue
        sel = ((top[0] == anchor) & (top[1] == k)) | ((top[0] == k) & (top[1] == anchor))
        f = np.clip((v[sel] - pure[k]) / (pure[anchor] - pure[k]), 0.0, 1.0)
        both = q[anchor, sel] + q[k, sel]
        q[anchor, sel] = both * f
        q[k, sel] = both * (1.0 - f)
    return q


def _histogram_loglik(q: np.ndarray, bins_of: np.ndarray, bins: int) -> np.ndarray:
    """(classes, bins) log densities: each class's responsibility-weighted, smoothed intensity histogram."""
    from scipy import ndimage

    out = np.empty((q.shape[0], bins), np.float32)
    for j in range(q.shape[0]):
        h = np.bincount(bins_of, weights=q[j], minlength=bins).astype(np.float64)
        # Smoothing: a density, not the noise of a finite sample; the floor: never log(0).
        h = ndimage.gaussian_filter1d(h, 1.5, mode="nearest") + 1e-6 * max(h.sum(), 1e-9) / bins
        out[j] = np.log(h / h.sum())
    return out


def _moments(q: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M-step: means, standard deviations and proportions of (classes, n) responsibilities over values v."""
    nk = q.sum(axis=1) + 1e-9
    mu = (q @ v) / nk
    sd = np.sqrt(np.maximum((q * (v[None, :] - mu[:, None]) ** 2).sum(axis=1) / nk, 1e-6))
    return mu, sd, nk / nk.sum()


# -- naming clusters without assuming a contrast ---------------------------------------------------

#: Normalised depth bins (depth / 95th percentile depth of the brain).
_DEPTH_BINS = np.linspace(0.0, 1.5, 31)


def normalised_depth(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) below the mask surface, divided by its 95th percentile inside the mask."""
    from scipy import ndimage

    d = ndimage.distance_transform_edt(mask, sampling=tuple(float(s) for s in spacing))
    ref = np.percentile(d[mask], 95) if mask.any() else 1.0
    return (d / max(ref, 1e-6)).astype(np.float32)


def compute_depth_priors() -> np.ndarray:
    """log P(depth bin | tissue) for CSF, GM, WM, from the bundled MNI152 tissue maps.

    Only the *shape* of depth profiles is used (WM lies deep, GM in a cortical
    ribbon near the surface, CSF at the surface and around the ventricles):
    it names clusters, it does not draw their boundaries.
    """
    from medcli import io

    gm = io.read("sample:gm")
    wm = io.read("sample:wm")
    t1 = io.read("sample:t1")
    brain = t1.data > 0
    g, w = gm.data / 255.0, wm.data / 255.0
    c = np.clip(1.0 - g - w, 0, 1)
    depth = normalised_depth(brain, t1.spacing)[brain]
    hists = []
    for p in (c, g, w):
        h, _ = np.histogram(np.clip(depth, 0, _DEPTH_BINS[-1] - 1e-6), _DEPTH_BINS, weights=p[brain])
        h = h + 1e-3 * h.sum() / len(h)  # never log(0)
        hists.append(np.log(h / h.sum()))
    return np.stack(hists)


#: log P(depth bin | CSF, GM, WM) measured by :func:`compute_depth_priors` on the bundled MNI152
#: maps (kept as a constant so naming costs no distance transform of the template; a test checks it).
_DEPTH_PRIORS = (
    (-1.150, -2.070, -2.751, -2.966, -3.067, -3.208, -3.372, -3.535, -3.653, -3.724, -3.823, -3.931, -4.006, -4.069, -4.071, -4.037, -4.073, -4.121, -4.128, -4.186, -4.276, -4.407, -4.409, -4.531, -4.743, -5.106, -6.476, -10.184, -10.310, -10.310),
    (-2.865, -2.124, -2.219, -2.395, -2.515, -2.633, -2.774, -2.895, -3.022, -3.155, -3.275, -3.395, -3.511, -3.634, -3.739, -3.837, -3.953, -4.121, -4.311, -4.514, -4.709, -4.989, -5.266, -5.583, -5.955, -6.671, -8.274, -10.226, -10.310, -10.310),
    (-5.776, -4.076, -3.240, -2.893, -2.811, -2.759, -2.754, -2.735, -2.726, -2.758, -2.791, -2.832, -2.900, -3.008, -3.129, -3.251, -3.351, -3.453, -3.567, -3.685, -3.842, -4.066, -4.254, -4.539, -4.953, -5.378, -6.246, -9.668, -10.310, -10.310),
)


def depth_priors() -> np.ndarray:
    """log P(depth bin | tissue) for CSF, GM, WM (rows), over :data:`_DEPTH_BINS`."""
    return np.asarray(_DEPTH_PRIORS, np.float64)


def assign_by_depth(posteriors: np.ndarray, mask: np.ndarray, spacing: Sequence[float]) -> tuple[int, ...]:
    """The cluster index of CSF, GM and WM: the permutation whose depth profiles best match the priors.

    For each of the 3! ways to name the three clusters, the expected
    log-likelihood of the voxels' depths under the named tissues' depth priors
    is summed; the best naming wins. On T1 (CSF < GM < WM), T2 and PD
    (CSF > GM > WM) and FLAIR (CSF < WM < GM) alike this needs no intensity order.
    """
    priors = depth_priors()
    # Naming needs depth histograms, not 1 mm detail: work on a ~2 mm subsample of the mask's box.
    idx = np.nonzero(mask)
    if not idx[0].size:
        return tuple(range(priors.shape[0]))
    step = [max(1, int(2.0 // max(float(s), 1e-6))) for s in spacing]
    box = tuple(slice(int(i.min()), int(i.max()) + 1, st) for i, st in zip(idx, step))
    sub = np.pad(mask[box], 1)
    inner = (slice(1, -1),) * 3
    depth = normalised_depth(sub, [float(s) * st for s, st in zip(spacing, step)])[inner]
    sub = sub[inner]
    bins = np.clip(np.digitize(depth[sub], _DEPTH_BINS) - 1, 0, len(_DEPTH_BINS) - 2)
    k = posteriors.shape[0]
    # score[c, t]: expected log-likelihood if cluster c is tissue t
    score = np.zeros((k, priors.shape[0]))
    for c in range(k):
        hist = np.bincount(bins, weights=posteriors[c][box][sub], minlength=len(_DEPTH_BINS) - 1)
        score[c] = priors @ hist
    best, best_score = None, -np.inf
    for perm in itertools.permutations(range(k), priors.shape[0]):
        s = sum(score[perm[t], t] for t in range(priors.shape[0]))
        if s > best_score:
            best, best_score = perm, s
    return tuple(int(i) for i in best)  # type: ignore[arg-type]

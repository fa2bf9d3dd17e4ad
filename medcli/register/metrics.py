"""Similarity metrics of registration, as losses to minimise (torch, differentiable).

* ``mse``: mean squared difference (same contrast and intensity scale).
* ``ncc``: local normalised cross-correlation, squared as in ANTs' ``CC``
  (window of ``radius`` voxels each side) on grids; global squared
  correlation on point samples (the affine stages).
* ``mi``: Mattes mutual information, a joint histogram of 32 bins filled with
  cubic B-spline Parzen windows so that it is differentiable.

Each loss takes the fixed values ``f``, the warped moving values ``m`` and a
weight ``w`` (1 inside the overlap/mask, 0 outside), all of one shape.
"""

from __future__ import annotations

METRICS = ("mse", "ncc", "mi")


def mse(f, m, w):
    return ((f - m) ** 2 * w).sum() / w.sum().clamp_min(1.0)


def global_ncc(f, m, w):
    """Minus the squared Pearson correlation over the weighted samples."""
    n = w.sum().clamp_min(1.0)
    fm, mm = (f * w).sum() / n, (m * w).sum() / n
    fc, mc = (f - fm) * w, (m - mm) * w
    cov = (fc * mc).sum()
    return -(cov * cov) / ((fc * fc).sum() * (mc * mc).sum() + 1e-8)


def box_sum(x, radius: int):
    """Sums over ``(2*radius+1)^3`` windows of ``(1, C, X, Y, Z)`` (zero outside).

    A banded matrix of ones per axis (BLAS): faster on a CPU than running sums
    or a pooling of the window, and the same for any window size.
    """
    from medcli.register import grid as G

    taps = (1.0,) * (2 * radius + 1)
    return G.filter_axes(x, [G.band_matrix(n, taps, "zeros", x.device) for n in x.shape[2:]])


class LocalNCC:
    """Local squared NCC against one fixed image, with its gradient in closed form.

    The fixed image's window statistics are computed once per level, and the
    gradient with respect to the warped moving image is written out (three box
    sums) instead of being taken by autograd through the running sums: a third
    of the work per iteration of the diffeomorphic stage. Same value as
    :func:`local_ncc` with a weight that does not change between iterations.
    """

    def __init__(self, f, w, radius: int = 2, eps: float = 1e-5):
        self.radius, self.eps = radius, eps
        self.w = w
        self.n = box_sum(w, radius).clamp_min(1.0)
        self.fw = f * w
        s = box_sum(torch_cat([self.fw, self.fw * self.fw]), radius) / self.n
        self.mu_f = s[:, :1]
        self.var_f = (s[:, 1:] - self.mu_f * self.mu_f).clamp_min(0)
        self.total = w.sum().clamp_min(1.0)

    def __call__(self, m):
        """``(loss, dloss/dm)`` for the warped moving image ``m`` ``(1, 1, X, Y, Z)``."""
        r, w, n = self.radius, self.w, self.n
        mw = m * w
        s = box_sum(torch_cat([mw, mw * mw, self.fw * mw]), r) / n
        mu_m, mm, fm = s.split(1, 1)
        cross = fm - self.mu_f * mu_m
        var_m = (mm - mu_m * mu_m).clamp_min(0)
        den = self.var_f * var_m + self.eps
        cc = cross * cross / den
        loss = -(cc * w).sum() / self.total
        # d loss / d (window means), each window weighted as in the loss, then spread back over its voxels
        a = -w / (n * self.total)
        d_fm = a * 2 * cross / den
        d_mm = a * (-cc * self.var_f / den)
        d_mu = a * (-2 * cross * self.mu_f / den + 2 * cc * self.var_f * mu_m / den)
        back = box_sum(torch_cat([d_mu, d_mm, d_fm]), r)
        grad = w * (back[:, :1] + 2 * mw * back[:, 1:2] + self.fw * back[:, 2:])
        return loss, grad


def torch_cat(parts):
    import torch

    return torch.cat(parts, 1)


def local_ncc(f, m, w, radius: int = 2):
    """Minus the mean squared local correlation over windows of ``2*radius+1`` voxels (5D grids)."""
    import torch

    n = box_sum(w, radius).clamp_min(1.0)
    fw, mw = f * w, m * w
    sums = box_sum(torch.cat([fw, mw, fw * fw, mw * mw, fw * mw], 1), radius) / n
    mu_f, mu_m, ff, mm, fm = sums.split(1, 1)
    cross = fm - mu_f * mu_m
    var_f = (ff - mu_f * mu_f).clamp_min(0)
    var_m = (mm - mu_m * mu_m).clamp_min(0)
    cc = cross * cross / (var_f * var_m + 1e-5)
    return -(cc * w).sum() / w.sum().clamp_min(1.0)


def _bspline_taps(x):
    """The four cubic B-spline weights ``(4, N)`` of fractional offsets ``x`` in [0, 1)."""
    import torch

    x2, x3 = x * x, x * x * x
    return torch.stack([(1 - x) ** 3 / 6, (3 * x3 - 6 * x2 + 4) / 6, (-3 * x3 + 3 * x2 + 3 * x + 1) / 6, x3 / 6])


def mattes_mi(f, m, w, bins: int = 32):
    """Minus the mutual information of ``f`` and ``m`` (both scaled to about [0, 1]).

    Values are clipped to [0, 1] and placed on bins 2..bins-3 so that every
    Parzen window (cubic B-spline, four bins) stays inside the histogram; each
    sample adds its 4 x 4 weights to the joint histogram (``index_add``, which
    is deterministic on CPU), so the cost is linear in the samples.
    """
    import torch

    f, m, w = f.reshape(-1), m.reshape(-1), w.reshape(-1)
    keep = w > 0
    f, m, w = f[keep], m[keep], w[keep]
    span = bins - 5

    def taps(x):
        pos = 2.0 + x.clamp(0, 1) * span
        base = pos.detach().floor()
        return base.long() - 1, _bspline_taps(pos - base)

    i_f, w_f = taps(f.detach())
    i_m, w_m = taps(m)
    w_f = w_f * w
    offsets = torch.arange(4, device=m.device)
    index = ((i_f[None, None] + offsets[:, None, None]) * bins + (i_m[None, None] + offsets[None, :, None])).reshape(-1)
    weights = (w_f[:, None] * w_m[None, :]).reshape(-1)
    joint = torch.zeros(bins * bins, dtype=m.dtype, device=m.device).index_add(0, index, weights).reshape(bins, bins)
    joint = joint / joint.sum().clamp_min(1e-12)
    mf, mm = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    eps = 1e-10
    return -(joint * (torch.log(joint + eps) - torch.log(mf @ mm + eps))).sum()


def loss_fn(metric: str, on_grid: bool, radius: int = 2, bins: int = 32):
    """The loss for ``metric``: local NCC on grids, global squared correlation on point samples; MI with ``bins``."""
    if metric == "mse":
        return mse
    if metric == "mi":
        return mattes_mi if bins == 32 else (lambda f, m, w: mattes_mi(f, m, w, bins))
    if metric == "ncc":
        return (lambda f, m, w: local_ncc(f, m, w, radius)) if on_grid else global_ncc
    raise ValueError(f"unknown metric {metric!r}")

"""Iterative reconstruction on the matched projector: SIRT, SART (ordered subsets) and OS-SPS.

* ``sirt``: ``x += C A^T R (b - A x)`` with ``R = 1 / A1`` and ``C = 1 / A^T 1``
  (Gregor & Benson 2008), all views at once.
* ``sart``: the same update over ordered subsets of views, visited in a
  bit-reversal-like order that keeps consecutive subsets far apart
  (Andersen & Kak 1984; ordered subsets as in Hudson & Larkin 1994).
* ``osem``: the Poisson log-likelihood of transmission counts
  ``y ~ Poisson(I0 exp(-[A x]))`` maximised by ordered-subsets separable
  paraboloidal surrogates (OS-SPS, Erdogan & Fessler 1999), the
  transmission-CT counterpart of emission OSEM; it weights each ray by its
  counts, so photon-starved rays count less (low dose).

Each iteration ends with the regulariser's step: ``nonneg`` clips at 0,
``tv`` applies the total-variation proximal map (Chambolle 2004) of weight
``lam`` (in HU) and then clips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from medcli.recon.ct.projector import Projector

REGS = ("none", "nonneg", "tv")


def tv_prox(x: "torch.Tensor", weight: float, iterations: int = 20) -> "torch.Tensor":
    """``argmin_u ||u - x||^2 / 2 + weight TV(u)`` (isotropic TV) for ``(B, nx, ny)`` by Chambolle's projection."""
    import torch

    if weight <= 0:
        return x
    px = torch.zeros_like(x)
    py = torch.zeros_like(x)
    tau = 0.248

    def div(px, py):
        dx = torch.cat([px[:, :1], px[:, 1:-1] - px[:, :-2], -px[:, -2:-1]], 1)
        dy = torch.cat([py[:, :, :1], py[:, :, 1:-1] - py[:, :, :-2], -py[:, :, -2:-1]], 2)
        return dx + dy

    for _ in range(iterations):
        u = div(px, py) - x / weight
        gx = torch.cat([u[:, 1:] - u[:, :-1], torch.zeros_like(u[:, :1])], 1)
        gy = torch.cat([u[:, :, 1:] - u[:, :, :-1], torch.zeros_like(u[:, :, :1])], 2)
        norm = 1 + tau * torch.sqrt(gx**2 + gy**2)
        px = (px + tau * gx) / norm
        py = (py + tau * gy) / norm
    return x - weight * div(px, py)


def regulariser(reg: str, lam: float, mu_water: float) -> Callable[["torch.Tensor"], "torch.Tensor"]:
    """The step applied after each iteration; ``lam`` is in HU."""
    if reg not in REGS:
        raise ValueError(f"reg must be one of {', '.join(REGS)}, not {reg!r}")
    if reg == "none":
        return lambda x: x
    if reg == "nonneg":
        return lambda x: x.clamp_min(0)
    weight = lam * mu_water / 1000.0
    return lambda x: tv_prox(x, weight).clamp_min(0)


def subset_order(views: int, subsets: int) -> list[np.ndarray]:
    """View indices of each subset (interleaved), visited in golden-ratio order.

    Consecutive updates then use nearly orthogonal angles (the order of scikit-image's
    ``order_angles_golden_ratio``), which SART needs to converge in a few sweeps.
    """
    subsets = max(1, min(subsets, views))
    groups = [np.arange(s, views, subsets) for s in range(subsets)]
    free = list(range(subsets))
    order = []
    golden = (np.sqrt(5) - 1) / 2
    for t in range(subsets):
        target = (t * golden) % 1.0 * subsets
        pick = min(free, key=lambda s: min(abs(s - target), subsets - abs(s - target)))
        free.remove(pick)
        order.append(pick)
    return [groups[s] for s in order]


def sirt(b: "torch.Tensor", proj: "Projector", iterations: int = 100, reg: str = "nonneg", lam: float = 0.0,
         x0: "torch.Tensor | None" = None, relax: float = 1.0) -> "torch.Tensor":
    """SIRT: ``b`` line integrals ``(B, views, detectors)`` -> attenuation ``(B, nx, ny)``."""
    return sart(b, proj, iterations, reg, lam, x0, subsets=1, relax=relax)


def sart(b: "torch.Tensor", proj: "Projector", iterations: int = 5, reg: str = "nonneg", lam: float = 0.0,
         x0: "torch.Tensor | None" = None, subsets: int | None = None, relax: float = 0.6, decay: float = 0.0) -> "torch.Tensor":
    """SART: one view at a time by default (``subsets=1`` is SIRT); one iteration visits every view once.

    The 2x2 sub-pixel footprint smooths each update, so the relaxation is 0.6 (scikit-image's
    ``iradon_sart`` uses 0.15 with its ray-driven projector): at 2 iterations this converges further
    than ``iradon_sart`` on real CT and on the Shepp-Logan phantom (benchmark).

    Args:
        decay: Relaxation ``relax / (1 + decay * k)`` in iteration ``k`` (0, 1, ...): with noisy data the
            per-view updates then stop chasing the last views' noise. (Weighting each ray by its counts,
            the inverse variance of post-log data, changed PSNR by less than 0.05 dB on the benchmark's
            low-dose cases, ordered subsets of 4 views lost up to 4.8 dB on the 60-view ones: neither is used.)
    """
    import torch

    g = proj.geo
    step = regulariser(reg, lam, g.mu_water)
    n_sub = subsets if subsets is not None else g.views
    parts = proj.subsets(subset_order(g.views, n_sub))
    norms = []
    for p, idx in parts:
        row = p.row_sums()
        col = p.col_sums()
        norms.append((torch.where(row > 1e-6, 1 / row.clamp_min(1e-6), torch.zeros_like(row)), 1 / col.clamp_min(1e-6)))
    x = x0.clone() if x0 is not None else torch.zeros(b.shape[0], *g.image_size, device=b.device)
    for k in range(iterations):
        rk = relax / (1.0 + decay * k)
        for (p, idx), (r, c) in zip(parts, norms):
            res = (b.index_select(1, idx) - p.forward(x)) * r
            x = x + rk * c * p.backward(res)
        x = step(x)
    return x


def osem(b: "torch.Tensor", proj: "Projector", photons: float, iterations: int = 20, reg: str = "nonneg", lam: float = 0.0,
         x0: "torch.Tensor | None" = None, subsets: int | None = None, counts: "torch.Tensor | None" = None) -> "torch.Tensor":
    """OS-SPS for transmission data (Erdogan & Fessler 1999) with precomputed curvatures.

    Args:
        b: Post-log line integrals ``(B, views, detectors)`` (used when ``counts`` is None).
        photons: Unattenuated counts per bin (I0).
        counts: Measured counts, when the data came as counts.
    """
    import torch

    g = proj.geo
    step = regulariser(reg, lam, g.mu_water)
    y = counts if counts is not None else photons * torch.exp(-b)
    n_sub = subsets if subsets is not None else max(1, min(g.views // 4, 16))
    order = subset_order(g.views, n_sub)
    # Denominator A^T diag(y) A 1 >= the likelihood's curvature near its optimum (the "precomputed" SPS curvature).
    x = x0.clone() if x0 is not None else _fbp_start(b, proj)
    parts = proj.subsets(order)
    denom = sum(p.backward(y.index_select(1, idx) * p.row_sums()[None]) for p, idx in parts).clamp_min(1e-6)
    for _ in range(iterations):
        for p, idx in parts:
            ys = y.index_select(1, idx)
            grad = p.backward(photons * torch.exp(-p.forward(x)) - ys)
            x = (x + n_sub * grad / denom).clamp_min(0)
        x = step(x)
    return x


def _fbp_start(b: "torch.Tensor", proj: "Projector") -> "torch.Tensor":
    """A smooth FBP start (Hann filter): the likelihood methods converge from it in a few iterations."""
    from medcli.recon.ct.fbp import fbp

    return fbp(b, proj, "hann").clamp_min(0)

"""Reconstruction metrics as fastMRI computes them (``fastmri.evaluate``).

* NMSE = ||gt - pred||^2 / ||gt||^2 over the volume;
* PSNR with data range = the volume's maximum;
* SSIM per slice (7x7 uniform window, K1 0.01, K2 0.03, sample covariance, as
  scikit-image's ``structural_similarity`` with its defaults), data range =
  the volume's maximum, averaged over slices.
"""

from __future__ import annotations

import numpy as np


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def psnr(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    maxval = float(gt.max()) if maxval is None else maxval
    mse = float(np.mean((gt - pred) ** 2))
    return float(10 * np.log10(maxval**2 / max(mse, 1e-30)))


def _ssim2d(a: np.ndarray, b: np.ndarray, data_range: float, win: int = 7) -> float:
    from scipy.ndimage import uniform_filter

    a, b = a.astype(np.float64), b.astype(np.float64)
    npx = win * win
    cov = npx / (npx - 1)
    ux, uy = uniform_filter(a, win), uniform_filter(b, win)
    vx = cov * (uniform_filter(a * a, win) - ux * ux)
    vy = cov * (uniform_filter(b * b, win) - uy * uy)
    vxy = cov * (uniform_filter(a * b, win) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """Mean SSIM over slices of (slices, H, W) arrays (one 2D array: one slice)."""
    gt, pred = np.atleast_3d(gt.T).T if gt.ndim == 2 else gt, np.atleast_3d(pred.T).T if pred.ndim == 2 else pred
    maxval = float(gt.max()) if maxval is None else maxval
    return float(np.mean([_ssim2d(g, p, maxval) for g, p in zip(gt, pred)]))

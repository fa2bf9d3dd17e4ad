"""Self-supervised denoising: no clean data, only the noisy image itself.

* :func:`patch2self` (4D series) -- each volume is predicted by a linear
  regression from the *other* volumes' values around the same voxel
  (Fadnavis et al. 2020). The noise of a volume is independent of the others,
  so the regression can only reproduce its signal: J-invariance by design.
* :func:`noise2self_3d` (a single 3D volume) -- a tiny CNN is trained on the
  image itself to predict masked voxels from their neighbourhood (Batson &
  Royer 2019): a grid of voxels is hidden (replaced by the mean of their 6
  neighbours), the loss is taken on the hidden voxels only, so the network
  cannot learn the identity and learns the signal's local regularity instead.

Example:
    >>> import numpy as np
    >>> from medcli.enhance.degrade import add_rician, contrast_series, psnr
    >>> rng = np.random.default_rng(0)
    >>> base = [np.ones((12, 12, 12), np.float32) * 100, rng.uniform(50, 100, (12, 12, 12)).astype(np.float32)]
    >>> clean = contrast_series(base, n=8, rng=1)
    >>> noisy = add_rician(clean, 0, rng=2, sigma=5.0)
    >>> bool(psnr(clean, patch2self(noisy), np.ones(clean.shape, bool), 100) > psnr(clean, noisy, np.ones(clean.shape, bool), 100))
    True
"""

from __future__ import annotations

import numpy as np


def patch2self(data: np.ndarray, mask: np.ndarray | None = None, patch_radius: int = 0, ridge: float = 1e-3) -> np.ndarray:
    """Patch2Self denoising of a 4D series (volumes last).

    Args:
        data: ``(X, Y, Z, N)`` with N >= 3.
        mask: Voxels used to fit and to denoise (default all).
        patch_radius: Neighbourhood of the features (0: the same voxel of the
            other volumes, the Patch2Self default for many volumes).
        ridge: Ridge penalty relative to the feature scale (numerical safety).
    """
    from medcli.runtime import configure_torch

    torch = configure_torch()
    x = np.nan_to_num(np.asarray(data, np.float32))
    if x.ndim != 4 or x.shape[3] < 3:
        raise ValueError(f"Patch2Self needs a 4D series of at least 3 volumes, got shape {x.shape}")
    n = x.shape[3]
    m = np.ones(x.shape[:3], bool) if mask is None else np.asarray(mask, bool)
    k = 2 * patch_radius + 1
    if patch_radius:
        from numpy.lib.stride_tricks import sliding_window_view

        padded = np.pad(x, [(patch_radius,) * 2] * 3 + [(0, 0)], mode="edge")
        win = sliding_window_view(padded, (k, k, k), axis=(0, 1, 2))  # (X, Y, Z, N, k, k, k)
        feats = win[m].reshape(int(m.sum()), n, k**3)
    else:
        feats = x[m].reshape(int(m.sum()), n, 1)
    F = torch.from_numpy(np.ascontiguousarray(feats, np.float32)).double()
    Y = torch.from_numpy(x[m]).double()
    scale = float(F.abs().mean()) or 1.0
    out = x.copy()
    ones = torch.ones(F.shape[0], 1, dtype=torch.float64)
    for v in range(n):
        others = [j for j in range(n) if j != v]
        A = torch.cat([F[:, others, :].reshape(F.shape[0], -1) / scale, ones], 1)
        AtA = A.T @ A
        AtA += ridge * torch.eye(AtA.shape[0], dtype=torch.float64) * float(AtA.diagonal().mean())
        coef = torch.linalg.solve(AtA, A.T @ Y[:, v])
        pred = (A @ coef).float().numpy()
        vol = out[..., v]
        vol[m] = np.clip(pred, 0, None)
        out[..., v] = vol
    return out


def _masked_input(x, phase: int, spacing: int = 3):
    """Hide one phase of a voxel grid: replace those voxels by their 6-neighbour mean."""
    import torch
    import torch.nn.functional as F

    kern = torch.zeros(1, 1, 3, 3, 3, dtype=x.dtype)
    for d in [(0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)]:
        kern[(0, 0) + d] = 1 / 6
    neigh = F.conv3d(F.pad(x, (1,) * 6, mode="replicate"), kern)
    grid = torch.zeros_like(x, dtype=torch.bool)
    a, b, c = phase // (spacing * spacing), (phase // spacing) % spacing, phase % spacing
    grid[..., a::spacing, b::spacing, c::spacing] = True
    return torch.where(grid, neigh, x), grid


def noise2self_3d(
    data: np.ndarray,
    sigma: float | None = None,
    noise: str = "rician",
    steps: int = 300,
    patch: int = 32,
    batch: int = 4,
    width: int = 16,
    seed: int = 0,
) -> np.ndarray:
    """Train a tiny CNN on the volume itself with J-invariant masking, then apply it.

    Args:
        data: 3D image.
        sigma: Noise sigma (only used to remove the Rician bias of the result).
        noise: ``rician`` or ``gaussian``.
        steps: Training steps (each a batch of random patches).
        patch: Patch side.
        batch: Patches per step.
        width: Channels of the network.
        seed: Seed of the patch sampling and of the initial weights.
    """
    from medcli.runtime import configure_torch

    torch = configure_torch()
    from torch import nn

    x = np.nan_to_num(np.asarray(data, np.float32))
    scale = float(np.percentile(x, 99)) or 1.0
    vol = torch.from_numpy(x / scale)[None, None]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    layers: list[nn.Module] = [nn.Conv3d(1, width, 3, padding=1), nn.ReLU()]
    for _ in range(3):
        layers += [nn.Conv3d(width, width, 3, padding=1), nn.ReLU()]
    layers += [nn.Conv3d(width, 1, 1)]
    net = nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    fg = np.argwhere(x > np.percentile(x, 50))
    p = min(patch, *x.shape)
    for step in range(steps):
        starts = fg[rng.integers(len(fg), size=batch)]
        crops = []
        for s in starts:
            lo = [int(np.clip(c - p // 2, 0, n - p)) for c, n in zip(s, x.shape)]
            crops.append(vol[0, :, lo[0] : lo[0] + p, lo[1] : lo[1] + p, lo[2] : lo[2] + p])
        b = torch.stack(crops)
        inp, hidden = _masked_input(b, step % 27)
        loss = ((net(inp) - b)[hidden] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    from medcli.enhance.learned import _tiled

    # Tiles with a margin beyond the 5-voxel reach of the network: same values,
    # bounded memory.
    out = _tiled(net, (x / scale)[None], tile=96, margin=6, multiple=1)[0] * scale
    if noise == "rician" and sigma:
        # The network predicts E[m] ~ sqrt(A^2 + sigma^2) of the Rician magnitude m.
        out = np.sqrt(np.clip(out * out - sigma * sigma, 0, None))
    return np.clip(out, 0, None).astype(np.float32)


__all__ = ["patch2self", "noise2self_3d"]

"""Whole-volume prediction and metrics for validation during training.

The inference engine (:mod:`medcli.engine.inference`) serves users; this is
the minimal version the training loop needs on arrays that are already on
the model's grid and normalised: slice-by-slice for 2D models (averaged over
the slicing axes), overlapping tiles for 3D models.

Example:
    >>> import numpy as np
    >>> dice(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), [1, 2])
    [0.6666666666666666, 0.6666666666666666]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def predict_volume(model, volume: np.ndarray, *, dim: int, axes: Sequence[int] = (2,), patch: Sequence[int] = (96, 96, 96),
                   batch: int = 16, device=None, softmax: bool = True) -> np.ndarray:
    """Model outputs (C, X, Y, Z) for a (X, Y, Z) or (Cin, X, Y, Z) float volume.

    2D models run on every slice along each of ``axes`` (the outputs are
    averaged); 3D models on tiles of ``patch`` overlapping by half.
    """
    import torch
    import torch.nn.functional as F

    from medcli.engine.unet import pad_multiple

    vol = volume[None] if volume.ndim == 3 else volume
    mult = getattr(model, "multiple", 1)
    was_training = model.training
    model.eval()
    total = None
    with torch.inference_mode():
        if dim == 2:
            for axis in axes:
                v = np.moveaxis(vol, axis + 1, 1)  # (Cin, S, A, B)
                pads = pad_multiple(v.shape[2:], mult)
                t = torch.from_numpy(np.ascontiguousarray(v)).float()
                t = F.pad(t, [p for pair in reversed(pads) for p in pair])
                outs = []
                for s in range(0, t.shape[1], batch):
                    x = t[:, s : s + batch].movedim(1, 0)
                    if device is not None:
                        x = x.to(device)
                    y = model(x)
                    outs.append((y.softmax(1) if softmax else y).float().cpu())
                out = torch.cat(outs).movedim(0, 1)  # (C, S, A', B')
                out = out[:, :, pads[0][0] : out.shape[2] - pads[0][1], pads[1][0] : out.shape[3] - pads[1][1]]
                out = np.moveaxis(out.numpy(), 1, axis + 1)
                total = out if total is None else total + out
            total = total / len(axes)
        else:
            total = _tiles(model, vol, patch, mult, device, softmax)
    model.train(was_training)
    return total


def _tiles(model, vol, patch, mult, device, softmax):
    import torch

    shape = vol.shape[1:]
    patch = [min(int(p), -(-s // mult) * mult) for p, s in zip(patch, shape)]
    padded = [max(s, p) for s, p in zip(shape, patch)]
    v = np.zeros((vol.shape[0],) + tuple(padded), np.float32)
    v[(slice(None),) + tuple(slice(0, s) for s in shape)] = vol
    acc = None
    count = np.zeros(padded, np.float32)
    starts = [sorted(set(list(range(0, s - p + 1, max(p // 2, 1))) + [s - p])) for s, p in zip(padded, patch)]
    for i in starts[0]:
        for j in starts[1]:
            for k in starts[2]:
                sl = (slice(i, i + patch[0]), slice(j, j + patch[1]), slice(k, k + patch[2]))
                x = torch.from_numpy(v[(slice(None),) + sl][None])
                if device is not None:
                    x = x.to(device)
                y = model(x)[0]
                y = (y.softmax(0) if softmax else y).float().cpu().numpy()
                if acc is None:
                    acc = np.zeros((y.shape[0],) + tuple(padded), np.float32)
                acc[(slice(None),) + sl] += y
                count[sl] += 1
    acc /= np.maximum(count, 1)
    return acc[(slice(None),) + tuple(slice(0, s) for s in shape)]


def dice(pred: np.ndarray, ref: np.ndarray, labels: Sequence[int]) -> list[float]:
    """Dice of each label (1.0 when both are empty)."""
    out = []
    for c in labels:
        a, b = pred == c, ref == c
        denom = a.sum() + b.sum()
        out.append(1.0 if denom == 0 else float(2 * np.logical_and(a, b).sum() / denom))
    return out


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, peak = the reference's range."""
    mse = float(np.mean((pred.astype(np.float64) - ref) ** 2))
    peak = float(ref.max() - ref.min()) or 1.0
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)

"""Image classification: a small 2D CNN over planes of a volume, and how planes are presented to it.

The contrast model (``medcli/models/cards/contrast.md``) sees one plane at a
time, fitted into a ``size`` x ``size`` canvas (aspect kept, padded with the
image's background), as two channels: the plane scaled by its own 1-99th
percentiles (the *look*: which tissues are bright), and ``tanh(value / 1000)``
(the *scale*: only CT puts air at -1000 and bone at +1000). Training
(:func:`medcli.train.heads.contrast_sample`) and inference
(:func:`medcli.segment.contrast.recognise`) both go through :func:`present`,
so they cannot drift apart.

Example:
    >>> import numpy as np
    >>> present(np.random.rand(40, 30).astype(np.float32), (2.0, 2.0)).shape
    (2, 64, 64)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def fit_plane(plane: np.ndarray, spacing: Sequence[float], size: int = 64, pad: float | None = None) -> np.ndarray:
    """Resample a 2D plane onto a ``size``-pixel square canvas: the longer side in mm fills it, aspect kept."""
    from scipy import ndimage

    plane = np.asarray(plane, np.float32)
    fov = [n * float(s) for n, s in zip(plane.shape, spacing)]
    pixel = max(fov) / size
    out_shape = [max(1, int(round(f / pixel))) for f in fov]
    zoom = [o / n for o, n in zip(out_shape, plane.shape)]
    if min(zoom) < 1.0:
        # Anti-alias before shrinking, as an acquisition at the coarser pixel would have.
        plane = ndimage.gaussian_filter(plane, [max(0.0, 0.5 * (1 / z - 1)) for z in zoom], mode="nearest")
    small = ndimage.zoom(plane, zoom, order=1, mode="nearest", grid_mode=True)
    bg = float(np.percentile(plane, 1)) if pad is None else pad
    canvas = np.full((size, size), bg, np.float32)
    h, w = small.shape[:2]
    h, w = min(h, size), min(w, size)
    oy, ox = (size - h) // 2, (size - w) // 2
    canvas[oy : oy + h, ox : ox + w] = small[:h, :w]
    return canvas


def present(plane: np.ndarray, spacing: Sequence[float], size: int = 64, pad: float | None = None) -> np.ndarray:
    """The two-channel network input (2, size, size) of one plane (see the module's docstring)."""
    x = fit_plane(plane, spacing, size, pad)
    lo, hi = np.percentile(x, [1.0, 99.0])
    look = np.clip((x - lo) / max(float(hi - lo), 1e-6), -0.5, 1.5)
    scale = np.tanh(x / 1000.0)
    return np.stack([look, scale]).astype(np.float32)


class PlaneClassifier:
    """Factory of the torch module (imported lazily so that this module stays torch-free)."""

    def __new__(cls, in_channels: int = 2, classes: int = 15, features: Sequence[int] = (16, 32, 64, 96), dropout: float = 0.2):
        import torch.nn as nn

        layers: list = []
        ch = in_channels
        for f in features:
            layers += [
                nn.Conv2d(ch, f, 3, padding=1, bias=False), nn.BatchNorm2d(f), nn.ReLU(inplace=True),
                nn.Conv2d(f, f, 3, padding=1, bias=False), nn.BatchNorm2d(f), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            ch = f
        # Global average: any canvas size, and the class does not depend on where the head sits.
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(ch, classes)]
        return nn.Sequential(*layers)

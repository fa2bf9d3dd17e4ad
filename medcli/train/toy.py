"""Small synthetic problems for tests, docs and quick recipe checks.

Each is a generator in the engine's protocol ``fn(rng, **settings) -> (input, target)``.

Example:
    >>> import numpy as np
    >>> x, y = blobs(np.random.default_rng(0), size=32)
    >>> x.shape, y.shape, np.unique(y).tolist()
    ((1, 32, 32), (32, 32), [0, 1, 2])
"""

from __future__ import annotations

import numpy as np


def blobs(
    rng: np.random.Generator,
    size: int = 48,
    radius: tuple[float, float] = (4.0, 10.0),
    minority_radius: float = 2.5,
    noise: float = 0.3,
    label_noise: float = 0.0,
    delay: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy discs on a plane: class 1 a large bright disc, class 2 a small dim one (the minority).

    ``label_noise``: fraction of the image whose labels are replaced by random
    classes in random square blocks (noisy annotations). ``delay``: seconds
    to wait per sample, to mimic a slow generator (tests interrupt runs mid-way).
    """
    if delay:
        import time

        time.sleep(delay)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    img = np.zeros((size, size), np.float32)
    lab = np.zeros((size, size), np.int64)
    for cls, r, value in ((1, rng.uniform(*radius), 1.0), (2, minority_radius, 0.6)):
        cy, cx = rng.uniform(r, size - r, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[disc] = value
        lab[disc] = cls
    img += noise * rng.standard_normal(img.shape).astype(np.float32)
    if label_noise > 0:
        noisy = lab.copy()
        block = max(2, size // 8)
        n = int(label_noise * size * size / block**2)
        for _ in range(n):
            y0, x0 = rng.integers(0, size - block, 2)
            noisy[y0 : y0 + block, x0 : x0 + block] = rng.integers(0, 3)
        lab = noisy
    return img[None], lab


def smooth_pairs(rng: np.random.Generator, size: int = 32, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Image-to-image toy: a noisy smooth image in, the clean one out (regression)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    a, b, c = rng.uniform(1, 4, 3)
    clean = (np.sin(a * 3.1416 * xx + c) * np.cos(b * 3.1416 * yy)).astype(np.float32)
    noisy = clean + noise * rng.standard_normal(clean.shape).astype(np.float32)
    return noisy[None], clean[None]

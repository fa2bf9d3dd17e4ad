"""Centred orthonormal 2D FFTs over the last two axes (fastMRI's ``fft2c``/``ifft2c``).

The k-space centre sits at index ``n // 2``; with ``norm="ortho"`` the
transform is unitary, so a fully sampled single-coil k-space maps back to its
image exactly and energy is the same in both domains.
"""

from __future__ import annotations

import numpy as np


def fft2c(x: np.ndarray) -> np.ndarray:
    """Image -> k-space over the last two axes (numpy)."""
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), axes=ax, norm="ortho"), axes=ax)


def ifft2c(k: np.ndarray) -> np.ndarray:
    """K-space -> image over the last two axes (numpy)."""
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), axes=ax, norm="ortho"), axes=ax)


def ifftc(k: np.ndarray, axis: int) -> np.ndarray:
    """Centred orthonormal inverse FFT along one axis (3D k-space -> slices)."""
    return np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(k, axes=axis), axis=axis, norm="ortho"), axes=axis)


def tfft2c(x):
    """Image -> k-space over the last two axes (torch)."""
    import torch

    ax = (-2, -1)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=ax), dim=ax, norm="ortho"), dim=ax)


def tifft2c(k):
    """K-space -> image over the last two axes (torch)."""
    import torch

    ax = (-2, -1)
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=ax), dim=ax, norm="ortho"), dim=ax)

"""ESPIRiT coil sensitivities from the fully sampled k-space centre (Uecker et al. 2014).

1. The calibration region (the fully sampled centre, at most ``calib`` x ``calib``)
   is cut into all ``kernel`` x ``kernel`` blocks of every coil: the rows of
   the calibration matrix.
2. Its right singular vectors above ``thresh`` x the largest singular value
   span the signal subspace: k-space kernels.
3. In the image domain every pixel then has an (coils x coils) matrix
   sum_k a_k a_k^H whose eigenvector of eigenvalue ~1 is the coil sensitivity
   there; pixels whose top eigenvalue is below ``crop`` are outside the object
   and get zero maps.

The same defaults and normalisation as SigPy's ``EspiritCalib`` (kernel 6,
threshold 0.02, crop 0.95; phase relative to the first coil), but the per-pixel
eigenvectors come from a batched Hermitian eigendecomposition (``torch.linalg.eigh``)
instead of power iterations: exact and faster.
"""

from __future__ import annotations

import numpy as np


def calibration_region(mask2d: np.ndarray, limit: int = 24) -> tuple[slice, slice]:
    """The largest fully sampled centred box (at most ``limit`` per axis) of a (ro, pe) mask."""
    ro, pe = mask2d.shape
    cr, cp = ro // 2, pe // 2

    def width(line: np.ndarray, c: int) -> int:
        w = 0
        while w < limit and c - (w + 1) // 2 >= 0 and c + (w + 2) // 2 <= line.size and line[c - (w + 1) // 2 : c + (w + 2) // 2].all():
            w += 1
        return w

    wp = width(mask2d[cr - 1 : cr + 2].all(0) if ro > 2 else mask2d[cr], cp)
    wr = width(mask2d[:, cp], cr)
    wr, wp = max(wr, 1), max(wp, 1)
    return slice(cr - wr // 2, cr - wr // 2 + wr), slice(cp - wp // 2, cp - wp // 2 + wp)


def espirit_maps(kspace, mask2d: np.ndarray, *, calib: int = 24, kernel: int = 6, thresh: float = 0.02, crop: float = 0.95):
    """Sensitivities ``(coils, ro, pe)`` (complex torch tensor on kspace's device) of one slice.

    Args:
        kspace: Complex torch tensor ``(coils, ro, pe)``.
        mask2d: Boolean (ro, pe) sampling mask (to find the calibration region).
        calib: Largest calibration width.
        kernel: Kernel width (reduced to the calibration width - 4 when that is smaller).
        thresh: Singular values kept, relative to the largest.
        crop: Eigenvalue below which a pixel is outside the object.
    """
    import torch

    from medcli.recon.mri.fft import tifft2c

    nc, ro, pe = kspace.shape
    if nc == 1:
        return torch.ones_like(kspace)
    sr, sp = calibration_region(mask2d, calib)
    cal = kspace[:, sr, sp]
    # A narrow calibration region (8x: 9 lines) leaves too few kernel positions for a 6-wide kernel: the
    # eigenvalues drop below the crop inside the object. Keep >= 5 positions (measured on MNI T1 slices).
    kr, kp = (min(kernel, max(3, w - 4), w) for w in cal.shape[1:])
    # All kernel-sized blocks: (coils, nr, np, kr, kp) -> rows of (coils * kr * kp).
    blocks = cal.unfold(1, kr, 1).unfold(2, kp, 1)
    mat = blocks.permute(1, 2, 0, 3, 4).reshape(-1, nc * kr * kp)
    _, s, vh = torch.linalg.svd(mat, full_matrices=False)
    vh = vh[s > thresh * s.max()]
    kernels = vh.reshape(-1, nc, kr, kp)
    # sum_k g_k g_k^H per pixel, g_k the image-domain kernel (SigPy's resize + ifft), computed from the
    # kernels' cross-correlations Q_cd(delta) = sum_k sum_u v_kc(u) conj(v_kd(u - delta)), whose Fourier
    # transform it is: (2kr-1) x (2kp-1) taps per coil pair instead of one image per kernel and coil.
    p = torch.einsum("kcij,kdmn->cijdmn", kernels, kernels.conj())
    q = torch.zeros((nc, nc, ro, pe), dtype=kspace.dtype, device=kspace.device)
    cr, cp = ro // 2, pe // 2
    for ui in range(kr):
        for uj in range(kp):
            for wi in range(kr):
                q[:, :, cr + ui - wi, cp + uj - kp + 1 : cp + uj + 1] += p[:, ui, uj, :, wi, :].flip(-1)
    aha = (tifft2c(q) * (np.sqrt(ro * pe) / (kr * kp))).permute(2, 3, 0, 1)
    vals, vecs = torch.linalg.eigh(aha)
    top, vec = vals[..., -1], vecs[..., -1]  # (ro, pe), (ro, pe, coils)
    maps = vec.permute(2, 0, 1)
    ref = maps[0]
    maps = maps * (ref.conj() / ref.abs().clamp_min(1e-12))[None]
    return maps * (top > crop)[None]

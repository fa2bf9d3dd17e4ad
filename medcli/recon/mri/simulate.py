"""The MRI forward model behind ``medcli recon simulate``.

An image is multiplied by smooth coil sensitivities (and optionally a smooth
random phase), Fourier transformed slice by slice, undersampled with a
fastMRI-style Cartesian mask and corrupted by complex Gaussian noise:

    y_c = M F (S_c x) + n_c

The sensitivities are normalised so that sum_c |S_c|^2 = 1 in every pixel:
the root-sum-of-squares of the fully sampled, noiseless coil images is then
exactly |x|, the reference every metric is computed against.

Masks follow fastMRI's ``RandomMaskFunc`` / ``EquispacedMaskFunc`` (1D
Cartesian along phase encoding, fully sampled centre); ``poisson`` draws a
2D variable-density Poisson-disc pattern over the (ro, pe) plane, the pattern
of 3D Cartesian scans (phase 1 x phase 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medcli.errors import UsageError
from medcli.recon.mri.fft import fft2c
from medcli.recon.mri.formats import KSpace

PATTERNS = ("random", "equispaced", "poisson")


def coil_maps(shape: tuple[int, int], coils: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Smooth complex sensitivities ``(coils, ro, pe)`` of loops on a ring around the field of view.

    Each coil's magnitude falls off with the distance to its centre (1 / r,
    like a loop's near field) and its phase turns with its angle; a random
    rotation of the ring (``rng``) varies them between training samples.
    sum_c |S_c|^2 = 1 in every pixel.
    """
    if coils == 1:
        return np.ones((1, *shape), np.complex64)
    ro, pe = shape
    y, x = np.meshgrid(np.linspace(-1, 1, ro), np.linspace(-1, 1, pe), indexing="ij")
    x = x * pe / max(ro, pe)
    y = y * ro / max(ro, pe)
    turn = float(rng.uniform(0, 2 * np.pi)) if rng is not None else 0.0
    radius = 1.5 if rng is None else float(rng.uniform(1.2, 1.8))
    maps = []
    for c in range(coils):
        a = turn + 2 * np.pi * c / coils
        cx, cy = radius * np.cos(a), radius * np.sin(a)
        d = np.hypot(x - cx, y - cy)
        phase = np.arctan2(y - cy, x - cx) + a
        maps.append(np.exp(1j * phase) / d)
    s = np.stack(maps)
    s /= np.sqrt((np.abs(s) ** 2).sum(0, keepdims=True))
    return s.astype(np.complex64)


def line_mask(pe: int, accel: float, center: float, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """fastMRI's 1D Cartesian masks: ``round(pe * center)`` centre lines, the rest random or equispaced."""
    if accel < 1:
        raise UsageError("--accel must be >= 1")
    if accel == 1:
        return np.ones(pe, bool)
    low = max(int(round(pe * center)), 1)
    mask = np.zeros(pe, bool)
    pad = (pe - low + 1) // 2
    mask[pad : pad + low] = True
    if pattern == "random":
        prob = (pe / accel - low) / max(pe - low, 1)
        mask |= rng.uniform(size=pe) < prob
    elif pattern == "equispaced":
        # fastMRI: the spacing that makes the total (centre + equispaced lines) pe / accel.
        adjusted = accel * (low - pe) / (low * accel - pe) if low * accel != pe else accel
        step = max(int(round(adjusted)), 1)
        offset = int(rng.integers(0, step))
        mask[offset::step] = True
    else:
        raise UsageError(f"--pattern must be one of {', '.join(PATTERNS)}")
    return mask


def poisson_mask(shape: tuple[int, int], accel: float, center: float, rng: np.random.Generator) -> np.ndarray:
    """Variable-density Poisson-disc mask over a 2D k-space plane, with a fully sampled centre box.

    Dart throwing on a grid: points are visited in random order and kept when
    no kept point lies within the local radius, which grows with the distance
    from the centre; the radius scale is bisected to reach ``1/accel`` of the points.
    """
    ny, nx = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    r = np.hypot(yy, xx) / np.sqrt(2)
    order = rng.permutation(ny * nx)
    target = ny * nx / accel
    cy, cx = int(round(ny * center / 2)), int(round(nx * center / 2))
    centre = np.zeros(shape, bool)
    centre[ny // 2 - cy : ny // 2 + cy + 1, nx // 2 - cx : nx // 2 + cx + 1] = True

    def throw(scale: float) -> np.ndarray:
        rad = scale * (0.5 + 2 * r)  # denser in the centre
        taken = np.zeros(shape, bool)
        for idx in order:
            i, j = divmod(int(idx), nx)
            rr = rad[i, j]
            k = int(np.ceil(rr))
            win = taken[max(i - k, 0) : i + k + 1, max(j - k, 0) : j + k + 1]
            if win.any():
                wy, wx = np.nonzero(win)
                if np.min((wy + max(i - k, 0) - i) ** 2 + (wx + max(j - k, 0) - j) ** 2) < rr * rr:
                    continue
            taken[i, j] = True
        return taken | centre

    lo, hi = 0.3, 4.0
    best = throw(1.0)
    for _ in range(8):
        mid = (lo + hi) / 2
        best = throw(mid)
        if best.sum() > target:
            lo = mid
        else:
            hi = mid
    return best


def smooth_phase(shape: tuple[int, int], rng: np.random.Generator, amplitude: float = np.pi) -> np.ndarray:
    """A smooth random phase map (low-order 2D polynomial), in radians within +-amplitude."""
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    c = rng.normal(size=6)
    p = c[0] + c[1] * x + c[2] * y + c[3] * x * y + c[4] * x**2 + c[5] * y**2
    return (amplitude * p / max(np.abs(p).max(), 1e-6)).astype(np.float32)


def simulate_slices(
    images: np.ndarray,
    *,
    coils: int = 8,
    accel: float = 4.0,
    center: float = 0.08,
    pattern: str = "random",
    snr: float | None = None,
    phase: bool = False,
    seed: int = 0,
    maps: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K-space of a stack of real images ``(slices, ro, pe)``.

    Args:
        images: The object, one 2D image per slice.
        coils: Receive coils (1: single coil, no sensitivity).
        accel: Acceleration (grid points / sampled points).
        center: Fraction of phase-encoding lines fully sampled in the centre.
        pattern: ``random`` | ``equispaced`` (one 1D mask for all slices, as a
            2D multi-slice scan), ``poisson`` (a 2D mask).
        snr: Image SNR: mean foreground signal / noise standard deviation (None: no noise).
        phase: Multiply the object by a smooth random phase.
        seed: Seed of the mask, phase and noise.
        maps: Sensitivities to use instead of :func:`coil_maps`.

    Returns:
        (kspace (slices, coils, ro, pe) complex64, mask (slices, ro, pe) bool,
        reference (slices, ro, pe): the RSS of the fully sampled noiseless coil images).
    """
    if pattern not in PATTERNS:
        raise UsageError(f"--pattern must be one of {', '.join(PATTERNS)}")
    if coils < 1:
        raise UsageError("--coils must be >= 1")
    if not 0 < center < 1:
        raise UsageError("--center must be a fraction in (0, 1)")
    rng = np.random.default_rng(seed)
    s, ro, pe = images.shape
    sens = coil_maps((ro, pe), coils) if maps is None else maps
    if pattern == "poisson":
        m2 = poisson_mask((ro, pe), accel, center, rng) if accel > 1 else np.ones((ro, pe), bool)
    else:
        m2 = np.broadcast_to(line_mask(pe, accel, center, pattern, rng)[None, :], (ro, pe))
    mask = np.ascontiguousarray(np.broadcast_to(m2[None], (s, ro, pe)))
    obj = images.astype(np.complex64)
    if phase:
        obj = obj * np.exp(1j * np.stack([smooth_phase((ro, pe), rng) for _ in range(s)]))
    k = fft2c(sens[None] * obj[:, None]).astype(np.complex64)
    if snr is not None and snr > 0:
        fg = np.abs(images) > 0.1 * np.abs(images).max()
        sigma = float(np.abs(images)[fg].mean()) / snr if fg.any() else 0.0
        noise = rng.normal(scale=sigma / np.sqrt(2), size=k.shape + (2,)).astype(np.float32)
        k = k + (noise[..., 0] + 1j * noise[..., 1]).astype(np.complex64)
    k *= mask[:, None]
    reference = np.sqrt((np.abs(sens[None] * obj[:, None]) ** 2).sum(1)).astype(np.float32)
    return k, mask, reference


def simulate_image(image: Any, **kwargs: Any) -> tuple[KSpace, np.ndarray]:
    """:func:`simulate_slices` of a 3D :class:`~medcli.image.Image`, slices along its third voxel axis.

    The KSpace keeps the image's affine, so reconstructing it returns the input grid exactly.
    """
    data = np.asarray(image.data, dtype=np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    slices = np.ascontiguousarray(np.moveaxis(data, 2, 0))
    k, mask, ref = simulate_slices(slices, **kwargs)
    ks = KSpace(k, mask, np.asarray(image.affine, float), (slices.shape[1], slices.shape[2]), {"format": "simulated"})
    return ks, ref

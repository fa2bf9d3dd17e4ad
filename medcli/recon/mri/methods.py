"""Reconstruction methods on torch (``--device cuda`` runs the same code).

The SENSE forward model of one slice, with sensitivities S_c normalised so that
sum_c |S_c|^2 <= 1 and a 0/1 mask M, is ``A x = M F (S_c x)``; ||A|| <= 1, so
gradient steps of 1 need no line search.

* ``zerofill``: root-sum-of-squares of the inverse FFT of every coil.
* ``sense``: least squares min ||A x - y||^2 + lambda ||x||^2 by conjugate
  gradients (SigPy's ``SenseRecon``), ESPIRiT maps.
* ``cs``: min 1/2 ||A x - y||^2 + lambda R(x) with R the l1 norm of an
  orthonormal Haar wavelet transform, randomly shifted every iteration (FISTA;
  the coarsest band is not penalised) or isotropic total variation (primal-dual, Condat-Vu).
* ``learned``: see :mod:`medcli.recon.mri.learned`.

``lambda = auto`` is a fixed fraction of the largest zero-filled image value
(chosen on training slices of the MNI T1 at 4x and 8x, never the held-out ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from medcli.errors import UsageError
from medcli.recon.mri.formats import KSpace

METHODS = ("auto", "zerofill", "sense", "cs", "learned")
REGS = ("wavelet", "tv")
#: lambda = AUTO_LAMBDA[reg] * max |A^H y| (tuned on training slices, see tests/benchmarks/bench_recon_mri.py --tune).
AUTO_LAMBDA = {"wavelet": 0.003, "tv": 0.008}
DEFAULT_ITERATIONS = {"sense": 10, "cs": 50, "learned": 0, "zerofill": 0}


@dataclass
class Result:
    """Images ``(slices, ro, pe)`` (complex; magnitude is the usual output) and the coil maps used."""

    image: np.ndarray
    maps: np.ndarray | None
    method: str
    info: dict[str, Any]


# -- operators --------------------------------------------------------------------------------------


def forward(x, maps, mask):
    """A x: image (B, ro, pe) -> masked coil k-space (B, C, ro, pe)."""
    from medcli.recon.mri.fft import tfft2c

    return tfft2c(maps * x[:, None]) * mask[:, None]


def adjoint(y, maps, mask):
    """A^H y: coil k-space -> coil-combined image."""
    from medcli.recon.mri.fft import tifft2c

    return (maps.conj() * tifft2c(y * mask[:, None])).sum(1)


def normal_op(maps, mask) -> Callable:
    """``x -> A^H A x``, i.e. ``adjoint(forward(x))``, for fixed maps and mask, with the centring shifts done once.

    The centred FFTs' shifts cancel inside A^H A except on the image: with S' = ifftshift(S) and
    M' = ifftshift(M), A^H A x = fftshift(sum_c conj(S'_c) ifft(M' fft(S'_c ifftshift(x)))). Two shifts of
    one image per call instead of four of every coil's: about a fifth of the iterative solvers' time.
    """
    import torch

    ax = (-2, -1)
    shifted_maps = torch.fft.ifftshift(maps, dim=ax)
    shifted_mask = torch.fft.ifftshift(mask, dim=ax)[:, None]

    def apply(x):
        coils = shifted_maps * torch.fft.ifftshift(x, dim=ax)[:, None]
        k = torch.fft.fft2(coils, dim=ax, norm="ortho") * shifted_mask
        back = (shifted_maps.conj() * torch.fft.ifft2(k, dim=ax, norm="ortho")).sum(1)
        return torch.fft.fftshift(back, dim=ax)

    return apply


def conjugate_gradient(apply: Callable, b, x0, iterations: int):
    """Solve apply(x) = b (Hermitian positive semi-definite) for every slice of the batch."""
    x = x0.clone()
    r = b - apply(x)
    p = r.clone()
    rs = (r.conj() * r).real.sum(dim=(-2, -1), keepdim=True)
    for _ in range(iterations):
        ap = apply(p)
        alpha = rs / (p.conj() * ap).real.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r.conj() * r).real.sum(dim=(-2, -1), keepdim=True)
        if float(rs_new.detach().max()) < 1e-20:
            break
        p = r + (rs_new / rs.clamp_min(1e-30)) * p
        rs = rs_new
    return x


# -- wavelets ---------------------------------------------------------------------------------------

class Wavelet:
    """Orthonormal 2D Haar wavelet transform (pyramid) of a (B, H, W) grid, H and W multiples of 2^levels.

    Haar rather than the smoother Daubechies-4 used before: with the random shifts of
    :func:`cs_wavelet` it measured better on everything tried (SSIM at 4x / 8x random: training
    MNI slices 70 and 145 +0.003 to +0.022, Shepp-Logan phantom +0.030 / +0.081; see
    tests/benchmarks/results/recon_mri.md), and as sums and differences of neighbours it costs O(n)
    where db4's dense matrices cost O(n^3) per level.
    """

    def __init__(self, shape: tuple[int, int], levels: int):
        self.levels = levels
        self.coarse = (shape[0] >> levels, shape[1] >> levels)

    @staticmethod
    def _split(x, dim: int):
        """[low; high] along ``dim`` (negative): (even + odd, even - odd) / sqrt 2."""
        import torch

        even, odd = x.unflatten(dim, (-1, 2)).unbind(dim)
        return torch.cat(((even + odd) / np.sqrt(2), (even - odd) / np.sqrt(2)), dim)

    @staticmethod
    def _merge(c, dim: int):
        """The inverse of :meth:`_split`."""
        import torch

        low, high = c.chunk(2, dim)
        return torch.stack(((low + high) / np.sqrt(2), (low - high) / np.sqrt(2)), dim).flatten(dim - 1, dim)

    def forward(self, x):
        c = x.clone()
        h, w = c.shape[-2:]
        for _ in range(self.levels):
            c[..., :h, :w] = self._split(self._split(c[..., :h, :w], -2), -1)
            h, w = h // 2, w // 2
        return c

    def inverse(self, c):
        x = c.clone()
        for level in reversed(range(self.levels)):
            h, w = c.shape[-2] >> level, c.shape[-1] >> level
            x[..., :h, :w] = self._merge(self._merge(x[..., :h, :w], -1), -2)
        return x


def soft(c, t):
    """Complex soft thresholding."""
    mag = c.abs()
    return c * ((mag - t).clamp_min(0) / mag.clamp_min(1e-30))


# -- total variation --------------------------------------------------------------------------------


def grad(x):
    """Forward differences (periodic), stacked: (2, B, H, W)."""
    import torch

    return torch.stack([x.roll(-1, -2) - x, x.roll(-1, -1) - x])


def grad_adjoint(g):
    return (g[0].roll(1, -2) - g[0]) + (g[1].roll(1, -1) - g[1])


# -- methods ----------------------------------------------------------------------------------------


def estimate_maps(k, mask_np: np.ndarray):
    """ESPIRiT maps of every slice: (slices, coils, ro, pe)."""
    import torch

    from medcli.recon.mri.espirit import espirit_maps

    from medcli.errors import ProcessingError
    from medcli.recon.mri.espirit import calibration_region

    maps = torch.stack([espirit_maps(k[i], mask_np[i]) for i in range(k.shape[0])])
    if float((maps.abs().sum(1) > 0).float().mean()) < 0.01:
        # Every pixel's top eigenvalue below the crop: no usable maps (a zero image would follow).
        lines = calibration_region(mask_np[0])[1]
        raise ProcessingError(f"ESPIRiT found no coil sensitivities in a calibration region of {lines.stop - lines.start} "
                              "centre lines (too narrow): use --method zerofill, or give --maps")
    return maps


def zerofill(k):
    """Root-sum-of-squares of the zero-filled coil images (real, >= 0)."""
    from medcli.recon.mri.fft import tifft2c

    return tifft2c(k).abs().pow(2).sum(1).sqrt()


def sense(k, maps, mask, iterations: int, lam: float = 0.0):
    """CG-SENSE from zero (as SigPy's SenseRecon: with few iterations the start matters, early stopping regularises)."""
    b = adjoint(k, maps, mask)
    aha = normal_op(maps, mask)
    return conjugate_gradient(lambda x: aha(x) + lam * x, b, b * 0, iterations)


def _padded(shape: tuple[int, int], levels: int) -> tuple[int, int]:
    step = 2**levels
    return tuple(-(-s // step) * step for s in shape)  # type: ignore[return-value]


def cs_wavelet(k, maps, mask, lam: float, iterations: int, levels: int = 3, seed: int = 0):
    """FISTA on the wavelet coefficients' l1 norm, with random cycle spinning and the image kept to the maps' support.

    The image grid is padded to a multiple of 2^levels outside the data model
    (A sees the centre crop), so the transform stays orthonormal and the
    proximal step exact. Each iteration shifts the grid by a random offset
    before the transform (cycle spinning, as BART's pics): the blocky
    artefacts of a decimated wavelet average out. Three levels, not four: as good
    or better (up to +0.006 SSIM) on the phantom and on training MNI slices. Where the coil maps are zero
    no data constrain the image; it is set to zero there (as the reference
    SENSE solution), else the penalty fills the background with the object's
    smooth extension.
    """
    import torch

    ro, pe = k.shape[-2:]
    levels = max(1, min(levels, int(np.log2(max(min(ro, pe) // 8, 2)))))
    hp, wp = _padded((ro, pe), levels)
    r0, p0 = (hp - ro) // 2, (wp - pe) // 2
    wav = Wavelet((hp, wp), levels)
    ch, cw = wav.coarse
    keep = torch.zeros((hp, wp), dtype=torch.bool, device=k.device)
    keep[:ch, :cw] = True
    rng = np.random.default_rng(seed)

    def crop(x):
        return x[..., r0 : r0 + ro, p0 : p0 + pe]

    def pad(x):
        out = torch.zeros(x.shape[:-2] + (hp, wp), dtype=x.dtype, device=x.device)
        out[..., r0 : r0 + ro, p0 : p0 + pe] = x
        return out

    support = pad((maps.abs().sum(1) > 0).to(k.dtype))
    aty = pad(adjoint(k, maps, mask))
    aha = normal_op(maps, mask)
    x = aty.clone()
    z, t = x.clone(), 1.0
    for _ in range(iterations):
        g = pad(aha(crop(z))) - aty
        dr, dp = (int(v) for v in rng.integers(0, 2**levels, size=2))
        c = wav.forward((z - g).roll((dr, dp), (-2, -1)))
        c = torch.where(keep, c, soft(c, lam))
        x_new = wav.inverse(c).roll((-dr, -dp), (-2, -1)) * support
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return crop(x)


def cs_tv(k, maps, mask, lam: float, iterations: int):
    """Isotropic TV by the Condat-Vu primal-dual algorithm (tau 1, sigma 1/16: tau (L/2 + 8 sigma) <= 1), image kept to the maps' support."""
    import torch

    aty = adjoint(k, maps, mask)
    aha = normal_op(maps, mask)
    support = (maps.abs().sum(1) > 0).to(k.dtype)  # the image is 0 where no coil sees it (see cs_wavelet)
    x = aty.clone()
    p = torch.zeros((2,) + x.shape, dtype=x.dtype, device=x.device)
    tau, sigma = 1.0, 1.0 / 16
    for _ in range(iterations):
        x_new = (x - tau * (aha(x) - aty + grad_adjoint(p))) * support
        p = p + sigma * grad(2 * x_new - x)
        mag = (p.abs() ** 2).sum(0, keepdim=True).sqrt()
        p = p / (mag / lam).clamp_min(1.0)
        x = x_new
    return x


def auto_lambda(k, maps, mask, reg: str) -> float:
    return AUTO_LAMBDA[reg] * float(adjoint(k, maps, mask).abs().max())


def crop_centre(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre crop of the last two axes (readout oversampling, fastMRI's 320 x 320)."""
    ro, pe = x.shape[-2:]
    r0, p0 = (ro - shape[0]) // 2, (pe - shape[1]) // 2
    return x[..., r0 : r0 + shape[0], p0 : p0 + shape[1]]


def reconstruct_mri(
    ks: KSpace,
    method: str = "auto",
    *,
    reg: str = "tv",
    lam: float | str = "auto",
    iterations: int | None = None,
    maps: np.ndarray | None = None,
    model: str | None = None,
    device: Any = None,
    progress: Callable[[int], None] | None = None,
    seed: int = 0,
) -> Result:
    """Reconstruct every slice of ``ks`` (see the module docstring for the methods).

    Args:
        ks: The k-space.
        method: ``auto`` (= cs, the best measured over all benchmark data), ``zerofill``, ``sense``, ``cs``,
            ``learned`` (cs with a warning when the data lie outside the model's training range).
        reg: ``wavelet`` or ``tv`` (cs).
        lam: Regularisation weight of cs/sense, or ``"auto"``.
        iterations: CG / FISTA / primal-dual / none; default per method.
        maps: Coil sensitivities ``(slices, coils, ro, pe)`` to use instead of ESPIRiT.
        model: Learned model name or path (default: the bundled one).
        device: torch device.
        progress: Called with 1 after each slice.
        seed: Seed of the wavelet cycle spinning.

    Returns:
        A :class:`Result` with complex images cropped to ``ks.recon_shape``.
    """
    import torch

    from medcli.runtime import log
    from medcli.recon.mri.fft import tifft2c

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}")
    if reg not in REGS:
        raise UsageError(f"--reg must be one of {', '.join(REGS)}")
    device = device or torch.device("cpu")
    info: dict[str, Any] = {}
    learned = None
    if method == "auto":
        # cs: the learned model beats it on the held-out brain slices but loses badly on the Shepp-Logan
        # phantom (tests/benchmarks/results/recon_mri.md), and nothing at run time tells the two apart.
        method = "cs"
    if method == "learned":
        from medcli.recon.mri import learned as lm

        learned, why = lm.load_if_fits(ks, model, device)
        if learned is None:
            log.warning(f"learned model does not fit this data ({why}): falling back to cs")
            method = "cs"
        else:
            info["model"] = learned.provenance
    its = DEFAULT_ITERATIONS[method] if iterations is None else int(iterations)
    images, all_maps = [], []
    for s in range(ks.data.shape[0]):
        k = torch.from_numpy(ks.data[s : s + 1]).to(device)
        m = torch.from_numpy(ks.mask[s : s + 1].astype(np.float32)).to(device)
        if method == "zerofill":
            # One coil: its complex image; several: the root-sum-of-squares (no phase).
            img = tifft2c(k)[:, 0] if k.shape[1] == 1 else zerofill(k).to(k.dtype)
            smap = None
        else:
            smap = torch.from_numpy(maps[s : s + 1]).to(device) if maps is not None else estimate_maps(k, ks.mask[s : s + 1])
            if method == "sense":
                img = sense(k, smap, m, its, 0.0 if lam == "auto" else float(lam))
            elif method == "cs":
                value = auto_lambda(k, smap, m, reg) if lam == "auto" else float(lam)
                info["lambda"] = value
                img = cs_wavelet(k, smap, m, value, its, seed=seed + s) if reg == "wavelet" else cs_tv(k, smap, m, value, its)
            else:
                img = learned.run(k, smap, m)
        images.append(crop_centre(img.detach().cpu().numpy()[0], ks.recon_shape))
        if smap is not None:
            all_maps.append(smap.cpu().numpy()[0])
        if progress:
            progress(1)
    info["iterations"] = its
    return Result(np.stack(images), np.stack(all_maps) if all_maps else None, method, info)

"""Denoising of MR magnitude images: noise estimation, non-local means, MP-PCA, learned.

The pure functions behind ``medcli denoise``. All work on numpy arrays (3D, or
4D with volumes last) and on :class:`~medcli.image.Image` through
:func:`denoise`; none of them changes the geometry.

Methods:

* ``nlmeans`` -- Rician-aware non-local means (Coupé 2008, Wiest-Daesslé 2008)
  in two passes: the second pass computes patch similarities on the first
  pass's output (a pre-filtered guide, as in Manjón's PRI-NLM), which gives
  better weights than noisy patches. Vectorised over search offsets in numpy
  (each offset is a few array operations; the symmetric offset is reused).
* ``mppca`` -- Marchenko-Pastur PCA for 4D series (Veraart 2016): local PCA
  in sliding patches, with the noise eigenvalues identified by random matrix
  theory; returns the noise map as a by-product.
* ``learned`` -- a small residual U-Net trained on real anatomy with synthetic
  Rician noise, run on the image scaled by its noise sigma (so one model
  serves every noise level).
* ``noise2self`` -- self-supervised: for 4D, Patch2Self-style regression of
  each volume from the others; for 3D, a tiny CNN trained on the image itself
  with J-invariant masking (Batson & Royer 2019).

Example:
    >>> import numpy as np
    >>> from medcli.enhance.degrade import add_rician, psnr
    >>> from medcli.enhance.denoise import estimate_sigma, nlmeans
    >>> clean = np.zeros((40, 40, 40), np.float32); clean[10:30, 10:30, 10:30] = 100
    >>> noisy = add_rician(clean, 0, rng=0, sigma=8.0)
    >>> round(estimate_sigma(noisy), 0)
    8.0
    >>> bool(psnr(clean, nlmeans(noisy)) > psnr(clean, noisy) + 5)
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medcli.image import Image

METHODS = ("nlmeans", "mppca", "learned", "noise2self")
NOISE_MODELS = ("rician", "gaussian")


# -- noise estimation ----------------------------------------------------------------------------


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D sample (between-class variance maximum)."""
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        return float(values.min()) if values.size else 0.0
    hist, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def estimate_sigma(data: np.ndarray, noise: str = "rician", mask: np.ndarray | None = None) -> float:
    """Standard deviation of the (per-channel Gaussian) noise of a 3D image.

    Two estimators, cross-checked:

    * *foreground*: the median absolute third-order Haar detail (HHH)
      coefficient in the flattest 30 % of the object, / 0.6745 (Donoho's
      MAD). Anatomy is smooth at that scale, so the coefficient is nearly pure
      noise; works for any noise model at the SNRs where denoising matters
      (it overestimates by ~10 % when the noise is below ~3 % of the signal).
    * *background* (Rician only): air is Rayleigh-distributed with
      ``E[m^2] = 2 sigma^2``, an unbiased estimate. Used when the image has
      enough background and the two estimates agree within 50 % (masked or
      zero-filled backgrounds, ghosts and coil drop-off make it fail).

    Args:
        data: 3D magnitude image.
        noise: ``rician`` or ``gaussian``.
        mask: Object mask; default Otsu on a smoothed copy.
    """
    from scipy import ndimage

    x = np.nan_to_num(np.asarray(data, np.float32))
    if x.ndim != 3 or min(x.shape) < 4:
        raise ValueError(f"noise estimation needs a 3D image of at least 4^3 voxels, got {x.shape}")
    smooth = ndimage.uniform_filter(x, 5)
    thr = otsu_threshold(smooth[::2, ::2, ::2])
    fg = smooth > thr if mask is None else np.asarray(mask, bool)
    hhh = np.diff(np.diff(np.diff(x, axis=0), axis=1), axis=2) / np.sqrt(8.0)
    sel = fg[1:, 1:, 1:] & fg[:-1, :-1, :-1]
    if sel.sum() > 10000:
        # Edges leak anatomy into the detail band: keep the flattest 30 %.
        grad = ndimage.gaussian_gradient_magnitude(x, 1.5)[1:, 1:, 1:]
        sel &= grad < np.percentile(grad[sel], 30)
    coef = hhh[sel] if sel.sum() > 1000 else hhh.ravel()
    sigma_fg = float(np.median(np.abs(coef)) / 0.6745)
    if noise != "rician":
        return sigma_fg
    bg = ndimage.binary_erosion(smooth < 0.3 * thr, iterations=3)
    if bg.sum() < 0.05 * x.size:
        return sigma_fg
    sigma_bg = float(np.sqrt(np.mean(x[bg].astype(np.float64) ** 2) / 2))
    if sigma_fg > 0 and 0.5 < sigma_bg / sigma_fg < 1.5:
        return sigma_bg
    return sigma_fg


# -- non-local means -----------------------------------------------------------------------------


def _box_valid(t: np.ndarray, r: int, scale: float) -> np.ndarray:
    """``scale`` times the sum over (2r+1)^3 boxes, 'valid' region only (separable sums of shifted views)."""
    k = 2 * r + 1
    for dim in range(3):
        n = t.shape[dim] - k + 1
        view = [slice(None)] * 3
        parts = []
        for j in range(k):
            view[dim] = slice(j, j + n)
            parts.append(t[tuple(view)])
        acc = np.add(parts[0], parts[1]) if k > 1 else parts[0].copy()
        for p in parts[2:]:
            acc += p
        t = acc
    t *= np.float32(scale)
    return t


def _search_offsets(search: int) -> list[tuple[int, int, int]]:
    """Half of the search ball (the weight of offset -o at p is that of +o at p-o).

    The ball of radius ``sqrt(search^2 + 1)`` is the search cube without its
    corners: 9 + 28 offsets for the two passes instead of 13 + 62, for 0.1-0.25
    dB less on 96^3 blocks of a synthetic head and of the MNI T1 at 3-9 %
    noise (tuning blocks, not the benchmark's).
    """
    rng = range(-search, search + 1)
    r2 = search * search + 1
    return [(a, b, c) for a in rng for b in rng for c in rng if (a, b, c) > (0, 0, 0) and a * a + b * b + c * c <= r2]


def _nlm_pass(
    x: np.ndarray, sigma: float, guide: np.ndarray, search: int, patch: int, h: float, rician: bool, chunk: int = 8
) -> np.ndarray:
    """One NLM pass: average ``x`` (its square when Rician) with weights from ``guide`` patches.

    Plain numpy (each search offset is a few whole-slab array operations): as
    fast per voxel as torch within 30 %, without torch's second of import
    time, which dominates on small images. Slabs along the first axis keep the
    temporaries in cache (the loop is memory-bound) and run in parallel threads
    (numpy releases the GIL) when ``--threads`` allows.
    """
    from concurrent.futures import ThreadPoolExecutor

    from medcli.runtime import default_threads, state

    s, r = search, patch
    pad = 2 * s + r
    mode = "reflect" if min(x.shape) > pad else "edge"
    Xp = np.pad(np.asarray(x, np.float32), pad, mode=mode)
    Gp = np.pad(np.asarray(guide, np.float32), pad, mode=mode)
    Vp = Xp * Xp if rician else Xp
    out = np.empty(x.shape, np.float32)
    # Patch mean of squared differences / h^2 in one multiplication.
    scale = -1.0 / (h * h * (2 * r + 1) ** 3)
    offsets = _search_offsets(s)
    ny, nz = x.shape[1], x.shape[2]
    lo = pad - s - r
    my, mz = ny + 2 * (s + r), nz + 2 * (s + r)

    def slab(z0: int) -> None:
        z1 = min(z0 + chunk, x.shape[0])
        nx = z1 - z0
        mx = nx + 2 * (s + r)
        n = (nx, ny, nz)
        W = np.zeros(n, np.float32)
        S = np.zeros(n, np.float32)
        wmax = np.full(n, 1e-6, np.float32)
        tmp = np.empty(n, np.float32)
        diff = np.empty((mx, my, mz), np.float32)
        A = Gp[lo + z0 : lo + z0 + mx, lo : lo + my, lo : lo + mz]
        q = pad + z0
        for a, b, c in offsets:
            np.subtract(A, Gp[lo + z0 + a : lo + z0 + a + mx, lo + b : lo + b + my, lo + c : lo + c + mz], out=diff)
            w = _box_valid(np.square(diff, out=diff), r, scale)
            np.exp(w, out=w)
            wp = w[s : s + nx, s : s + ny, s : s + nz]
            wm = w[s - a : s - a + nx, s - b : s - b + ny, s - c : s - c + nz]
            S += np.multiply(wp, Vp[q + a : q + a + nx, pad + b : pad + b + ny, pad + c : pad + c + nz], out=tmp)
            S += np.multiply(wm, Vp[q - a : q - a + nx, pad - b : pad - b + ny, pad - c : pad - c + nz], out=tmp)
            W += wp
            W += wm
            np.maximum(wmax, wp, out=wmax)
            np.maximum(wmax, wm, out=wmax)
        # The centre voxel counts as much as its most similar neighbour (Buades):
        # weight 1 would dominate where all neighbours are dissimilar.
        S += np.multiply(wmax, Vp[q : q + nx, pad : pad + ny, pad : pad + nz], out=tmp)
        W += wmax
        np.divide(S, W, out=out[z0:z1])

    starts = range(0, x.shape[0], chunk)
    workers = min(state.threads or default_threads(), len(starts))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(slab, starts))
    else:
        for z0 in starts:
            slab(z0)
    if rician:
        # E[m^2] = A^2 + 2 sigma^2 for Rician magnitudes m of a signal A.
        out = np.sqrt(np.clip(out - 2 * sigma * sigma, 0, None))
    return out


def _bbox(mask: np.ndarray, margin: int, shape) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    if idx.size == 0:
        return tuple(slice(0, 0) for _ in shape)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def nlmeans(
    data: np.ndarray,
    sigma: float | None = None,
    noise: str = "rician",
    mask: np.ndarray | None = None,
    search: int = 2,
    patch: int = 1,
    beta: float = 1.0,
    beta2: float = 0.7,
    passes: int = 2,
    guide_search: int = 1,
) -> np.ndarray:
    """Rician-aware two-pass non-local means of a 3D image.

    Args:
        data: 3D image.
        sigma: Noise sigma; default :func:`estimate_sigma`.
        noise: ``rician`` (average squared magnitudes and remove the
            ``2 sigma^2`` bias) or ``gaussian``.
        mask: Voxels to denoise (others keep a bias-corrected local mean);
            default: the object and a margin, found automatically.
        search: Search radius in voxels of the final pass (2: the 5^3 cube
            without its corners, 56 neighbours; see :func:`_search_offsets`).
        patch: Patch radius (3^3 patches for 1).
        beta: First-pass filtering strength, ``h = beta * sigma``.
        beta2: Second-pass strength, relative to sigma; the guide is much less
            noisy, so the weights can be sharper.
        passes: 1 for classic NLM, 2 to refine the weights on the first result.
        guide_search: Search radius of the passes that only make the guide
            (1: 18 neighbours, enough there and 3x cheaper).

    The defaults were chosen by measurement on the MNI T1 at 3-9 % Rician noise
    (``tests/benchmarks/results/enhance.md``); the search balls on tuning blocks
    of synthetic skull-on heads and the MNI T1 (``denoise_heads.md``).
    """
    from scipy import ndimage

    x = np.nan_to_num(np.asarray(data, np.float32))
    if sigma is None:
        sigma = estimate_sigma(x, noise)
    rician = noise == "rician"
    if sigma <= 0:
        return x.copy()
    if mask is None:
        # Skip air: denoising it costs as much as the head and only the bias
        # correction matters there.
        # Air is Rayleigh with mean 1.25 sigma; its 3^3 mean never reaches 2 sigma.
        mask = ndimage.binary_dilation(ndimage.uniform_filter(x, 3) > 2 * sigma, iterations=2)
    bb = _bbox(np.asarray(mask, bool), search + patch, x.shape)
    if rician:
        out = np.sqrt(np.clip(ndimage.uniform_filter(x * x, 3) - 2 * sigma * sigma, 0, None)).astype(np.float32)
    else:
        out = ndimage.uniform_filter(x, 3).astype(np.float32)
    sub = x[bb]
    if sub.size == 0:
        return out
    y = sub
    for i in range(passes):
        last = i == passes - 1
        y = _nlm_pass(sub, sigma, y, search if last else guide_search, patch, (beta2 if i else beta) * sigma, rician)
    out[bb] = y
    return out


# -- MP-PCA --------------------------------------------------------------------------------------


def mppca(
    data: np.ndarray,
    patch_radius: int = 2,
    stride: int = 2,
    mask: np.ndarray | None = None,
    return_sigma: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Marchenko-Pastur PCA denoising of a 4D series (Veraart et al. 2016).

    Each (2r+1)^3-voxel patch gives an (M voxels x N volumes) matrix; its
    covariance eigenvalues below the Marchenko-Pastur upper edge are noise and
    are dropped. Patches are taken every ``stride`` voxels and the overlapping
    reconstructions averaged, which is as good as every voxel (each voxel is
    still covered by ``((2r+1)/stride)^3`` patches) at a fraction of the cost.

    Args:
        data: 4D array, volumes last (at least 3 volumes).
        patch_radius: Patch radius; 2 gives 125-voxel patches, enough for up to
            ~100 volumes.
        stride: Step between patch centres.
        mask: Voxels to denoise (default all).
        return_sigma: Also return the noise sigma map.
    """
    from medcli.runtime import configure_torch

    torch = configure_torch()
    x = np.nan_to_num(np.asarray(data, np.float32))
    if x.ndim != 4 or x.shape[3] < 3:
        raise ValueError(f"MP-PCA needs a 4D series of at least 3 volumes, got shape {x.shape}")
    k = 2 * patch_radius + 1
    nvol = x.shape[3]
    m = k**3
    if mask is None:
        mask = np.ones(x.shape[:3], bool)
    bb = _bbox(np.asarray(mask, bool), patch_radius, x.shape[:3])
    sub = x[bb]
    shape = sub.shape[:3]
    # Patch starts covering the box; the last start is flush with the end.
    starts = [sorted(set(list(range(0, max(s - k, 0) + 1, stride)) + [max(s - k, 0)])) for s in shape]
    acc = np.zeros(shape + (nvol,), np.float64)
    cnt = np.zeros(shape, np.float64)
    sig_acc = np.zeros(shape, np.float64)
    T = torch.from_numpy(np.ascontiguousarray(sub))
    if min(shape) < k:
        raise ValueError(f"image is smaller than one {k}^3 patch")
    # One slab of patches (fixed first index) at a time bounds memory.
    for i in starts[0]:
        slab = T[i : i + k]  # (k, Y, Z, N)
        pats = slab.unfold(1, k, 1).unfold(2, k, 1)  # (k, Y-k+1, Z-k+1, N, k, k)
        js = torch.tensor(starts[1])
        ls = torch.tensor(starts[2])
        pats = pats[:, js][:, :, ls]  # (k, nj, nl, N, k, k)
        nj, nl = len(starts[1]), len(starts[2])
        X = pats.permute(1, 2, 0, 4, 5, 3).reshape(nj * nl, m, nvol).double()
        mean = X.mean(1, keepdim=True)
        Xc = X - mean
        C = Xc.transpose(1, 2) @ Xc / m  # (P, N, N)
        evals, evecs = torch.linalg.eigh(C)  # ascending
        # Marchenko-Pastur: the largest c with lambda_c - lambda_0 <=
        # 4 sqrt((c+1)/M) mean(lambda_0..c) marks the noise eigenvalues 0..c.
        L = evals
        if nvol > m - 1:
            L = L[:, nvol - (m - 1) :]
        nl_ = L.shape[1]
        csum = torch.cumsum(L, 1)
        cidx = torch.arange(nl_, dtype=L.dtype)
        var = csum / (cidx + 1)
        r = L - L[:, :1] - 4 * torch.sqrt((cidx + 1) / m) * var
        ok = r <= 0
        c_star = (ok * cidx).amax(1).long()  # r(0) <= 0 always holds
        sigma2 = var.gather(1, c_star[:, None])[:, 0]
        ncomp = c_star + 1 + (nvol - nl_)  # noise components among all N
        keep = (torch.arange(nvol)[None, :] >= ncomp[:, None]).double()
        V = evecs * keep[:, None, :]
        Xd = Xc @ V @ V.transpose(1, 2) + mean  # (P, M, N)
        # Patches explained by fewer components are more reliable: weight them
        # by 1 / (1 + signal components) when averaging overlaps (Manjon 2013).
        theta = (1.0 / (1.0 + (nvol - ncomp).clamp(min=0).double())).reshape(nj, nl).numpy()
        Xd = Xd.reshape(nj, nl, k, k, k, nvol).numpy()
        s2 = sigma2.reshape(nj, nl).numpy()
        for a, j in enumerate(starts[1]):
            for b, l in enumerate(starts[2]):
                w = theta[a, b]
                acc[i : i + k, j : j + k, l : l + k] += w * Xd[a, b]
                cnt[i : i + k, j : j + k, l : l + k] += w
                sig_acc[i : i + k, j : j + k, l : l + k] += w * np.sqrt(max(s2[a, b], 0.0))
    out = x.copy()
    cnt = np.maximum(cnt, 1e-12)
    out[bb] = (acc / cnt[..., None]).astype(np.float32)
    if return_sigma:
        sig = np.zeros(x.shape[:3], np.float32)
        sig[bb] = (sig_acc / cnt).astype(np.float32)
        return out, sig
    return out


# -- the image-level entry point -----------------------------------------------------------------


def denoise(
    image: Image,
    method: str = "nlmeans",
    noise: str = "rician",
    sigma: float | str | None = "auto",
    mask: np.ndarray | None = None,
    return_sigma_map: bool = False,
    **options: Any,
) -> Image:
    """Denoise an image; 4D series are denoised volume by volume for 3D methods.

    Args:
        image: 3D or 4D magnitude image.
        method: ``nlmeans``, ``mppca`` (4D only), ``learned`` or ``noise2self``.
        noise: ``rician`` (magnitude MR) or ``gaussian``.
        sigma: ``auto`` (estimated per volume) or the noise sigma in image units.
        mask: Optional 3D mask of the voxels to denoise.
        return_sigma_map: Put the local noise map of ``mppca`` in
            ``meta["noise_sigma_map"]``.
        options: Method-specific settings (e.g. ``search``, ``patch_radius``).

    Returns:
        The denoised image on the same grid (float32); the estimated sigma is
        recorded in ``meta["noise_sigma"]``. Non-finite input voxels stay
        non-finite.

    Example:
        >>> from medcli import io
        >>> img = io.read("sample:t1")  # doctest: +SKIP
        >>> out = denoise(img, method="nlmeans")  # doctest: +SKIP
    """
    from medcli.errors import InputError, UsageError

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if noise not in NOISE_MODELS:
        raise UsageError(f"--noise must be one of {', '.join(NOISE_MODELS)}, not {noise!r}")
    data = np.asarray(image.data, np.float32)
    bad = ~np.isfinite(data)
    data = np.where(bad, 0, data).astype(np.float32)
    vols = data[..., None] if data.ndim == 3 else data.reshape(data.shape[:3] + (-1,))
    fixed = None if sigma in (None, "auto") else float(sigma)
    if mask is not None and np.asarray(mask).shape != tuple(image.shape[:3]):
        raise InputError(f"mask shape {np.asarray(mask).shape} does not match the image grid {image.shape[:3]}")
    src = image.meta.get("source")
    if method == "mppca":
        if vols.shape[3] < 3:
            raise InputError("--method mppca needs a 4D series of at least 3 volumes (use nlmeans for 3D)", src)
        out, sig = mppca(vols, mask=mask, return_sigma=True, **options)
        sigmas = [float(np.median(sig[sig > 0])) if (sig > 0).any() else 0.0]
    elif method == "noise2self" and vols.shape[3] >= 3:
        from medcli.enhance.selfsup import patch2self

        out = patch2self(vols, mask=mask, **options)
        sigmas = []
    else:
        out = np.empty_like(vols)
        sigmas = []
        run = _volume_method(method, noise, options)
        for t in range(vols.shape[3]):
            v = vols[..., t]
            s = fixed if fixed is not None else estimate_sigma(v, noise)
            sigmas.append(s)
            out[..., t] = run(v, s, mask)
    out = out.reshape(data.shape)
    if bad.any():
        out = np.where(bad, np.nan, out)
    meta: dict[str, Any] = {"noise_sigma": sigmas[0] if len(sigmas) == 1 else sigmas} if sigmas else {}
    if return_sigma_map and method == "mppca":
        meta["noise_sigma_map"] = sig
    return image.with_data(out.astype(np.float32), **meta)


def _volume_method(method: str, noise: str, options: dict[str, Any]):
    """A ``f(volume, sigma, mask) -> volume`` for the 3D methods."""
    if method == "nlmeans":
        return lambda v, s, m: nlmeans(v, s, noise, mask=m, **options)
    if method == "learned":
        from medcli.enhance.learned import Denoiser

        model = Denoiser.load(options.get("model", "denoise"))
        return lambda v, s, m: model(v, s, noise=noise)
    if method == "noise2self":
        from medcli.enhance.selfsup import noise2self_3d

        return lambda v, s, m: noise2self_3d(v, s, noise=noise, **options)
    if method == "mppca":
        raise AssertionError("unreachable")
    raise ValueError(method)


__all__ = ["estimate_sigma", "nlmeans", "mppca", "denoise", "otsu_threshold", "METHODS", "NOISE_MODELS"]

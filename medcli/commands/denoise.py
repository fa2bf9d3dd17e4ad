"""``medcli denoise``: remove noise from MR magnitude images (3D, or 4D series)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from medcli.cli.command import Job, command
from medcli.image import Image

METHODS = ("nlmeans", "mppca", "learned", "noise2self")
DEFAULT_METHOD = "nlmeans"


@command(
    "denoise",
    summary="Remove noise (non-local means, MP-PCA or learned).",
    description="Estimates the noise level (Rician background statistics, cross-checked with the wavelet "
    "median absolute deviation in the object) unless --sigma gives it, then denoises: 'nlmeans' is a two-pass "
    "Rician-aware non-local means, 'mppca' Marchenko-Pastur PCA across the volumes of a 4D series, 'learned' a "
    "small network trained on real anatomy with synthetic Rician noise, 'noise2self' a self-supervised method "
    "that needs no clean data (Patch2Self-style regression across volumes for 4D series, a tiny network trained "
    "on the image itself for 3D). 3D methods process 4D series volume by volume. The estimated sigma is "
    "logged with -v.",
    examples=[
        ("Denoise a T1", "medcli denoise t1.nii.gz -o t1_dn.nii.gz"),
        ("Known noise level, Gaussian model", "medcli denoise scan.nii.gz --noise gaussian --sigma 12 -o dn.nii.gz"),
        ("A diffusion series with MP-PCA, and its noise map", "medcli denoise dwi.nii.gz --method mppca --sigma-map sigma.nii.gz -o dwi_dn.nii.gz"),
        ("In a pipe", "medcli denoise sample:t1 -o - | medcli biascorrect - -o t1_clean.nii.gz"),
    ],
    references=[
        "Coupe P et al. An optimized blockwise nonlocal means denoising filter for 3-D magnetic resonance images. IEEE TMI 2008.",
        "Manjon JV et al. New methods for MRI denoising based on sparseness and self-similarity. Med Image Anal 2012.",
        "Veraart J et al. Denoising of diffusion MRI using random matrix theory. NeuroImage 2016.",
        "Batson J, Royer L. Noise2Self: blind denoising by self-supervision. ICML 2019; Fadnavis S et al. Patch2Self. NeurIPS 2020.",
    ],
    needs_3d=True,
    allow_nonfinite=True,
)
def cli(
    method: Annotated[str, typer.Option("--method", "-m", help=f"Method: {', '.join(METHODS)}.")] = DEFAULT_METHOD,
    noise: Annotated[str, typer.Option("--noise", help="Noise model: rician (magnitude MR) or gaussian.")] = "rician",
    sigma: Annotated[
        str, typer.Option("--sigma", help="Noise standard deviation in image units, or 'auto' to estimate it per volume.")
    ] = "auto",
    mask: Annotated[
        Optional[str],
        typer.Option("--mask", help="Denoise only inside this mask (same grid); default: the object, found automatically.", show_default=False),
    ] = None,
    sigma_map: Annotated[
        Optional[str],
        typer.Option("--sigma-map", help="Also write the local noise sigma map (mppca) to this file or template.", show_default=False),
    ] = None,
):
    from medcli.errors import UsageError

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if noise not in ("rician", "gaussian"):
        raise UsageError(f"--noise must be rician or gaussian, not {noise!r}")
    value: float | str = "auto"
    if sigma != "auto":
        try:
            value = float(sigma)
        except ValueError:
            raise UsageError(f"--sigma must be 'auto' or a number, not {sigma!r}") from None
        if not value > 0:
            raise UsageError(f"--sigma must be positive, not {sigma!r}")
    if sigma_map and method != "mppca":
        raise UsageError("--sigma-map is only produced by --method mppca")

    def step(image: Image, job: Job) -> Image:
        from medcli.runtime import log
        from medcli.enhance.denoise import denoise
        from medcli.enhance.masks import read_mask

        m = read_mask(mask, image) if mask else None
        out = denoise(image, method=method, noise=noise, sigma=value, mask=m, return_sigma_map=bool(sigma_map))
        s = out.meta.pop("noise_sigma", None)
        smap = out.meta.pop("noise_sigma_map", None)
        if s is not None:
            shown = f"{s:.4g}" if isinstance(s, float) else ", ".join(f"{v:.4g}" for v in s)
            log.info(f"{job.source}: noise sigma {shown}")
            job.provenance["NoiseSigma"] = s
        if sigma_map and smap is not None:
            job.write_image(image.with_data(smap), sigma_map)
        return out

    return step

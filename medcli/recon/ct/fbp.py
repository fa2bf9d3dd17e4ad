"""Filtered back-projection for parallel and flat-detector fan beams.

The ramp filter is built from its band-limited spatial kernel (Kak & Slaney,
eq. 61: ``h[0] = 1/4``, ``h[n odd] = -1/(pi n)^2``), which avoids the DC offset
of a sampled ``|f|``, then apodised by the chosen window (the same window
definitions as scikit-image's ``iradon``, so the two agree at equal settings).
``cutoff`` (fraction of the Nyquist frequency) stretches the window and zeroes
the band above it. Fan beam: cosine pre-weighting on the detector rescaled to
the isocentre, ramp filtering there, and the ``1/U^2`` distance-weighted
back-projection (Kak & Slaney ch. 3.4.2), over a full 360 degree scan.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from medcli.recon.ct.geometry import CTGeometry

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from medcli.recon.ct.projector import Projector

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann", "hamming")


def filter_response(n: int, name: str = "ram-lak", cutoff: float = 1.0) -> np.ndarray:
    """Frequency response (length ``n``, FFT order) of the apodised ramp in samples^-1."""
    if name not in FILTERS:
        raise ValueError(f"filter must be one of {', '.join(FILTERS)}, not {name!r}")
    if not 0 < cutoff <= 1:
        raise ValueError(f"cutoff must be in (0, 1], not {cutoff}")
    k = np.concatenate((np.arange(1, n / 2 + 1, 2, dtype=int), np.arange(n / 2 - 1, 0, -2, dtype=int)))
    h = np.zeros(n)
    h[0] = 0.25
    h[1::2] = -1 / (np.pi * k) ** 2
    ramp = 2 * np.real(np.fft.fft(h))
    f = np.fft.fftfreq(n) / cutoff  # cycles per sample, 0.5 = Nyquist when cutoff = 1
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "shepp-logan":
            w = np.where(f == 0, 1.0, np.sin(np.pi * f) / (np.pi * f))
        elif name == "cosine":
            w = np.cos(np.pi * f)
        elif name == "hann":
            w = 0.5 + 0.5 * np.cos(2 * np.pi * f)
        elif name == "hamming":
            w = 0.54 + 0.46 * np.cos(2 * np.pi * f)
        else:
            w = np.ones(n)
    w = np.where(np.abs(f) <= 0.5, w, 0.0)
    return ramp * w


def padded_length(detectors: int) -> int:
    return max(64, int(2 ** math.ceil(math.log2(2 * detectors))))


def ramp_filter(sino: "torch.Tensor", spacing: float, name: str = "ram-lak", cutoff: float = 1.0) -> "torch.Tensor":
    """Filter each view of ``sino`` ``(B, views, detectors)``; ``spacing`` in mm, result per mm."""
    import torch

    n = sino.shape[-1]
    size = padded_length(n)
    resp = torch.as_tensor(filter_response(size, name, cutoff), dtype=torch.float32, device=sino.device)
    spec = torch.fft.rfft(sino.float(), n=size, dim=-1)
    out = torch.fft.irfft(spec * resp[: size // 2 + 1], n=size, dim=-1)[..., :n]
    return out / spacing


def fbp(sino: "torch.Tensor", proj: "Projector", name: str = "ram-lak", cutoff: float = 1.0) -> "torch.Tensor":
    """Attenuation image (mm^-1) ``(B, nx, ny)`` from line integrals ``(B, views, detectors)``."""
    import torch

    g: CTGeometry = proj.geo
    scale = math.pi / (2 * g.views)  # the response above is 2x the ramp (scikit-image's convention)
    if g.beam == "fan":
        mag = g.magnification
        ds = g.detector_width / mag  # detector rescaled to the isocentre
        s = (torch.arange(g.detectors, device=sino.device, dtype=torch.float32) - (g.detectors - 1) / 2) * ds
        pre = g.source_origin / torch.sqrt(g.source_origin**2 + s**2)
        q = ramp_filter(sino * pre, ds, name, cutoff)
        return proj.backward(q, fbp_weight=True) * scale
    q = ramp_filter(sino, g.detector_width, name, cutoff)
    return proj.backward(q, fbp_weight=True) * scale

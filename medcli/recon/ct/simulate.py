"""The CT forward model: an image in HU to a (noisy) parallel- or fan-beam sinogram.

Attenuation ``mu = MU_WATER (1 + HU / 1000)`` (clipped at 0, so air is 0).
To keep the simulation from sharing the reconstruction's discretisation (the
"inverse crime"), the image is projected on a grid three times as fine (each
pixel split into nine: the square-pixel model, at sub-pixel positions that the
iterative methods' 2x2 split does not share). Low dose follows LoDoPaB-CT:
counts ``~ Poisson(I0 exp(-p))`` per detector bin, stored as post-log line
integrals ``-log(max(counts, 0.1) / I0)`` with ``Photons = I0`` in the sidecar.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from medcli.errors import InputError, UsageError
from medcli.image import Image
from medcli.recon.ct.geometry import BEAMS, MU_WATER, CTGeometry, Sinogram, default_detectors


def hu_to_mu(hu: np.ndarray, mu_water: float = MU_WATER) -> np.ndarray:
    """Linear attenuation (mm^-1) of HU values; negative attenuation (below -1000 HU) is clipped."""
    return np.maximum(mu_water * (1.0 + np.asarray(hu, np.float32) / 1000.0), 0.0).astype(np.float32)


def mu_to_hu(mu: np.ndarray, mu_water: float = MU_WATER) -> np.ndarray:
    return (1000.0 * (np.asarray(mu, np.float32) - mu_water) / mu_water).astype(np.float32)


def make_geometry(
    image_size: tuple[int, int],
    pixel_spacing: tuple[float, float],
    views: int = 180,
    beam: str = "parallel",
    detectors: int | None = None,
    arc: float | None = None,
    source_origin: float | None = None,
    origin_detector: float | None = None,
) -> CTGeometry:
    """A full-scan geometry for a grid: 180 deg parallel or 360 deg fan, bins as wide as a pixel (at the isocentre)."""
    if beam not in BEAMS:
        raise UsageError(f"--beam must be one of {', '.join(BEAMS)}")
    if views < 1:
        raise UsageError("--views must be >= 1")
    span = arc if arc is not None else (180.0 if beam == "parallel" else 360.0)
    angles = np.arange(views) * span / views
    width = float(min(pixel_spacing))
    so = od = 0.0
    mag = 1.0
    if beam == "fan":
        radius = 0.5 * float(np.hypot(image_size[0] * pixel_spacing[0], image_size[1] * pixel_spacing[1]))
        so = float(source_origin) if source_origin else 3.0 * radius
        od = float(origin_detector) if origin_detector is not None else so
        mag = (so + od) / so
        width *= mag
    if detectors is None:
        detectors = default_detectors(image_size, pixel_spacing, width, mag if beam == "fan" else 1.0)
        if beam == "fan":
            # the fan's half-angle must reach the corners: bins on the detector plane, past the magnified diagonal
            radius = 0.5 * float(np.hypot(image_size[0] * pixel_spacing[0], image_size[1] * pixel_spacing[1]))
            half = (so + od) * radius / np.sqrt(so**2 - radius**2)
            n = int(np.ceil(2 * half / width)) + 2
            detectors = n + 1 - n % 2
    geo = CTGeometry(beam, angles, int(detectors), width, (int(image_size[0]), int(image_size[1])),
                     (float(pixel_spacing[0]), float(pixel_spacing[1])), so, od)
    geo.validate("simulate")
    return geo


def project_image(mu: np.ndarray, geo: CTGeometry, device: str = "cpu", oversample: int = 3) -> np.ndarray:
    """Noise-free line integrals ``(slices, views, detectors)`` of ``mu`` ``(slices, nx, ny)``."""
    import torch

    from medcli.recon.ct.projector import Projector

    fine = replace(geo, image_size=(geo.image_size[0] * oversample, geo.image_size[1] * oversample),
                   pixel_spacing=(geo.pixel_spacing[0] / oversample, geo.pixel_spacing[1] / oversample))
    proj = Projector(fine, device)
    out = []
    for sl in mu:
        t = torch.as_tensor(np.ascontiguousarray(sl), dtype=torch.float32, device=device)
        if oversample > 1:
            t = t.repeat_interleave(oversample, 0).repeat_interleave(oversample, 1)
        out.append(proj.forward(t[None])[0].cpu().numpy())
    return np.stack(out)


def add_poisson(p: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Post-log line integrals after Poisson counting with ``photons`` unattenuated counts per bin."""
    counts = rng.poisson(photons * np.exp(-p.astype(np.float64)))
    return (-np.log(np.maximum(counts, 0.1) / photons)).astype(np.float32)


def simulate_ct(
    image: Image,
    views: int = 180,
    beam: str = "parallel",
    photons: float | None = None,
    detectors: int | None = None,
    seed: int = 0,
    *,
    arc: float | None = None,
    source_origin: float | None = None,
    origin_detector: float | None = None,
    mu_water: float = MU_WATER,
    device: str = "cpu",
) -> Sinogram:
    """Simulate the sinogram of every axial slice of ``image`` (HU).

    Args:
        image: A CT image in HU, 2D or 3D (slices along the third axis).
        views: Number of projection angles over 180 (parallel) or 360 (fan) degrees.
        beam: ``parallel`` or ``fan`` (flat detector).
        photons: Unattenuated photons per detector bin (I0) for Poisson noise; None = noise-free.
        detectors: Detector bins (default: enough for the grid's diagonal, odd).
        seed: Seed of the Poisson noise.
        arc: Angular range in degrees (default full scan).
        source_origin, origin_detector: Fan-beam distances in mm (default 3 x the grid's half diagonal, magnification 2).
        mu_water: Water's attenuation (mm^-1) for HU -> mu.
        device: Torch device of the projector.

    Returns:
        The sinogram, whose geometry reproduces ``image``'s grid and affine exactly.

    Raises:
        InputError: non-finite image, or a non-positive photon count.
    """
    data = np.asarray(image.data, np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise InputError(f"simulate --ct needs a 2D or 3D image, not {data.ndim}D", image.meta.get("source", "image"))
    if not np.all(np.isfinite(data)):
        raise InputError("image holds NaN/Inf values", image.meta.get("source", "image"))
    if photons is not None and photons <= 0:
        raise UsageError("--photons must be > 0")
    sx, sy, _ = image.spacing
    geo = make_geometry((data.shape[0], data.shape[1]), (sx, sy), views, beam, detectors, arc, source_origin, origin_detector)
    geo.affine = image.affine.copy()
    geo.slice_positions = [float(z) for z in (image.affine @ np.array([[0.0, 0.0, k, 1.0] for k in range(data.shape[2])]).T)[2]]
    geo.mu_water = mu_water
    mu = hu_to_mu(np.moveaxis(data, 2, 0), mu_water)
    p = project_image(mu, geo, device)
    if photons:
        p = add_poisson(p, float(photons), np.random.default_rng(seed))
        geo.photons = float(photons)
    return Sinogram(p.astype(np.float32), geo)

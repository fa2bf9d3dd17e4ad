"""CT reconstruction: sinogram (+ JSON geometry) -> image in HU, and the forward model.

Pure functions with typed signatures; the CLI layer is ``medcli/commands/recon.py``.

Example:
    >>> from medcli import io
    >>> from medcli.recon.ct import simulate_ct, reconstruct_ct
    >>> sino = simulate_ct(io.read("sample:ct"), views=180)        # doctest: +SKIP
    >>> img = reconstruct_ct(sino, method="fbp")                    # doctest: +SKIP
    >>> img.shape, img.affine is not None                           # doctest: +SKIP
    ((128, 128, 1), True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medcli.errors import UsageError
from medcli.image import Image
from medcli.recon.ct.geometry import MU_WATER, CTGeometry, Sinogram, is_ct_sinogram, read_sinogram, sidecar_of, write_sinogram
from medcli.recon.ct.simulate import simulate_ct

METHODS = ("auto", "fbp", "sart", "sirt", "osem", "learned")
UNITS = ("hu", "mu")
#: Iterations of each method when not given: where the benchmark's PSNR stops improving.
DEFAULT_ITERATIONS = {"sart": 5, "sirt": 100, "osem": 10}

__all__ = [
    "METHODS", "UNITS", "MU_WATER", "CTGeometry", "Sinogram", "is_ct_sinogram", "read_sinogram", "reconstruct_ct",
    "sidecar_of", "simulate_ct", "write_sinogram", "choose_method",
]


def choose_method(geo: CTGeometry, model: str | None = None) -> tuple[str, str, str | None]:
    """``--method auto``: (method, why, regulariser).

    Learned when its model was trained for this geometry and dose *and* its registry entry says
    it measured best on held-out data (``input.auto = true``); otherwise, for a low-dose scan (the
    sidecar gives Photons) the Poisson-likelihood osem with TV, else per-view SART -- the best
    classical methods of tests/benchmarks/bench_recon_ct.py for each case.
    """
    from medcli.recon.ct.learned import DEFAULT_MODEL, model_fits

    try:
        from medcli.models import hub

        if model and Path(model).exists():
            spec, _ = hub.load(model)
        else:
            spec = hub.spec(model or DEFAULT_MODEL)
    except Exception:  # no such model: fall back to the classical methods
        spec = None
    why = "no learned CT model available"
    if spec is not None:
        ok, why = model_fits(spec, geo)
        if ok and spec.get("input", {}).get("auto", False):
            return "learned", "learned (its model was trained for this geometry and dose)", None
        if ok:
            why = "osem with TV measured better on held-out slices"
    if geo.photons:
        return "osem", f"osem with TV ({why})", "tv"
    return "sart", f"sart ({why})", None


def reconstruct_ct(
    source: "str | Path | Sinogram",
    method: str = "auto",
    *,
    filter: str = "ram-lak",  # noqa: A002 - the option's name
    cutoff: float = 1.0,
    iterations: int | None = None,
    reg: str | None = None,
    lam: float = 20.0,
    units: str = "hu",
    device: str | None = None,
    model: str | None = None,
    photons: float | None = None,
    sidecar: str | Path | None = None,
    provenance: dict[str, Any] | None = None,
) -> Image:
    """Reconstruct every slice of a CT sinogram.

    Args:
        source: A sinogram file (NIfTI/.npy + JSON sidecar, ``-`` for stdin) or a :class:`Sinogram`.
        method: ``auto``, ``fbp``, ``sart``, ``sirt``, ``osem`` or ``learned``.
        filter: FBP filter (``ram-lak``, ``shepp-logan``, ``cosine``, ``hann``, ``hamming``).
        cutoff: FBP filter cut-off as a fraction of the Nyquist frequency (0-1].
        iterations: Iterations of sart/sirt/osem (default :data:`DEFAULT_ITERATIONS`).
        reg: ``none``, ``nonneg`` (default of the iterative methods) or ``tv``.
        lam: Weight of the TV step, in HU.
        units: ``hu`` (Hounsfield units) or ``mu`` (linear attenuation, mm^-1).
        device: Torch device (default: ``--device`` of the CLI, else cpu).
        model: Learned model name or folder (default ``recon-ct``).
        photons: I0 for osem (default 1e5) and for the learned model's start (default its training dose)
            when the sidecar does not say.
        sidecar: Geometry JSON when not next to the sinogram.
        provenance: Filled with the method used (and the model, for learned).

    Returns:
        The image ``(nx, ny, slices)`` on the sidecar's grid and affine.

    Raises:
        InputError: bad sinogram or geometry (one line).
        UsageError: unknown method, filter, units or regulariser.
    """
    import torch

    from medcli.runtime import configure_torch, log, torch_device
    from medcli.recon.ct.fbp import FILTERS, fbp
    from medcli.recon.ct.iterative import REGS, osem, sart, sirt
    from medcli.recon.ct.projector import Projector

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)} for CT")
    if filter not in FILTERS:
        raise UsageError(f"--filter must be one of {', '.join(FILTERS)}")
    if not 0 < cutoff <= 1:
        raise UsageError("--cutoff must be in (0, 1]")
    if units not in UNITS:
        raise UsageError(f"--units must be one of {', '.join(UNITS)}")
    if reg is not None and reg not in REGS:
        raise UsageError(f"--reg must be one of {', '.join(REGS)} for CT")
    if iterations is not None and iterations < 1:
        raise UsageError("--iterations must be >= 1")
    sino = source if isinstance(source, Sinogram) else read_sinogram(source, sidecar)
    geo = sino.geometry
    configure_torch()
    dev = torch.device(device) if device else torch_device()
    if method == "auto":
        method, why, auto_reg = choose_method(geo, model)
        reg = reg or auto_reg
        log.info(f"recon: --method auto chose {why}")
    p = torch.as_tensor(sino.line_integrals(), device=dev)
    proj = Projector(geo, dev)
    n_it = iterations or DEFAULT_ITERATIONS.get(method, 0)
    prov = provenance if provenance is not None else {}
    prov["Method"] = method
    with torch.inference_mode():
        if method == "fbp":
            mu = fbp(p, proj, filter, cutoff)
        elif method == "learned":
            from medcli.recon.ct.learned import TEST_TIME_TRANSFORMS, PostProcessor, model_fits, start_inputs

            net = PostProcessor.load(model)
            ok, why = model_fits(net.spec, geo)
            if not ok:
                log.warning(f"recon: the learned model was not trained for {why}; expect artefacts (try --method osem)")
            i0 = photons or geo.photons
            if not i0:
                i0 = float(net.spec.get("input", {}).get("photons", 4096))
                log.warning(f"recon: the learned model's start needs the photon count I0 (sidecar Photons); assuming {i0:g}")
            hu = net(start_inputs(p, proj, float(i0), net.spec.get("input", {})).cpu().numpy(), TEST_TIME_TRANSFORMS) * 1000.0
            mu = torch.as_tensor(geo.mu_water * (1 + hu / 1000.0))
            files = net.spec.get("files") or [{}]
            prov["Model"] = {"Name": net.spec.get("name", model or "recon-ct"),
                             "SHA256": net.spec.get("sha256") or files[0].get("sha256", "")}
        elif method == "osem":
            i0 = photons or geo.photons
            if not i0:
                i0 = 1e5
                log.warning("recon: osem needs the photon count I0 (sidecar Photons); assuming 1e5")
            counts = torch.as_tensor(sino.data, device=dev) if geo.data == "counts" else None
            mu = osem(p, proj, float(i0), n_it, reg or "nonneg", lam, counts=counts)
        elif method == "sirt":
            mu = sirt(p, proj, n_it, reg or "nonneg", lam, relax=1.0)
        else:
            # Low dose (the sidecar gives Photons): each single-view update also copies that view's noise into
            # the image, and more views per sweep copy more of it, so the relaxation falls from sweep to sweep,
            # the faster the more views: relax / (1 + k views / 60) in sweep k (tests/benchmarks/bench_recon_ct.py;
            # the fixed relaxation lost to iradon_sart on 4 of its 8 low-dose cases).
            decay = geo.views / 60.0 if geo.photons else 0.0
            mu = sart(p, proj, n_it, reg or "nonneg", lam, decay=decay)
    arr = np.moveaxis(mu.float().cpu().numpy(), 0, 2)
    if units == "hu":
        arr = 1000.0 * (arr - geo.mu_water) / geo.mu_water
    img = Image(arr.astype(np.float32), geo.output_affine(arr.shape[2]),
                {"description": f"medcli recon ct {method} ({units})"})
    return img

"""``medcli recon``: images from raw scanner data (MRI k-space, CT sinograms).

Two forms share the command name:

* ``medcli recon RAW... -o IMAGE`` reconstructs each input; the modality is
  recognised from the file (HDF5 / .cfl / complex .npy k-space -> MRI; a
  NIfTI or real .npy sinogram with a JSON sidecar -> CT) or forced with
  ``--modality``;
* ``medcli recon simulate IMAGE... -o RAW`` runs the forward model (k-space,
  or with ``--ct`` a sinogram) for tests, teaching and training.

The ``simulate`` form is recognised by its first word, as ``harmonize fit``.
Inputs are raw data, not images: the batch engine hands the step the path
(``reader=str``) and the step reads it with the modality's reader.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from medcli.cli.command import Job, command

MODALITIES = ("auto", "mr", "ct")
MR_METHODS = ("auto", "zerofill", "sense", "cs", "learned")
PATTERNS = ("random", "equispaced", "poisson")


def modality_of(path: str) -> str | None:
    """'mr' or 'ct' from the file's content, None when neither."""
    from medcli.recon.mri.formats import kind_of

    if kind_of(path) is not None:
        return "mr"
    low = path.lower()
    stem = None
    for suf in (".nii.gz", ".nii", ".npy"):
        if low.endswith(suf):
            stem = path[: -len(suf)]
    if stem is not None and Path(stem + ".json").is_file():
        return "ct"
    return None


def _kspace_suffix(path: str) -> str:
    low = path.lower()
    if low.endswith(".cfl"):
        return "cfl"
    if low.endswith((".mrd", ".ismrmrd")):
        return "ismrmrd"
    if low.endswith((".h5", ".hdf5")):
        return "fastmri"
    return ""


@command(
    "recon simulate",
    summary="Simulate raw data from an image: multi-coil undersampled k-space (or, with --ct, a sinogram).",
    description="MRI: each slice (third voxel axis) is multiplied by smooth coil sensitivities (sum of squares 1, "
    "so the root-sum-of-squares of the fully sampled coils is the input), Fourier transformed, undersampled "
    "with a fastMRI-style mask (1D Cartesian along the second voxel axis, random or equispaced, with a fully "
    "sampled centre; poisson: 2D variable-density Poisson disc) and given complex Gaussian noise. Written as "
    "fastMRI HDF5 (.h5: kspace, mask, ismrmrd_header, reconstruction_rss), ISMRMRD (.mrd) or BART (.cfl/.hdr), "
    "with the image's affine in the header, so that 'medcli recon' returns the input grid exactly.",
    examples=[
        ("8 coils, 4x random", "medcli recon simulate sample:t1 --coils 8 --accel 4 -o t1_k.h5"),
        ("Round trip", "medcli recon simulate sample:t1 --accel 4 -o k.h5 && medcli recon k.h5 -o t1_recon.nii.gz"),
        ("8x equispaced, noisy, as BART", "medcli recon simulate t1.nii.gz --accel 8 --center 0.04 --pattern equispaced --snr 30 -o k.cfl"),
    ],
    references=[
        "Zbontar J et al. fastMRI: An Open Dataset and Benchmarks for Accelerated MRI. arXiv:1811.08839 (2018).",
        "Inati SJ et al. ISMRM Raw data format: a proposed standard for MRI raw datasets. Magn Reson Med 2017;77:411-421.",
    ],
    output_kind="raw",
)
def simulate_cli(
    coils: Annotated[int, typer.Option("--coils", min=1, metavar="N", help="MRI: receive coils.")] = 8,
    accel: Annotated[float, typer.Option("--accel", min=1.0, metavar="R", help="MRI: acceleration (grid / sampled points).")] = 4.0,
    center: Annotated[
        float, typer.Option("--center", metavar="FRACTION", help="MRI: fraction of phase-encoding lines sampled in the centre.")
    ] = 0.08,
    pattern: Annotated[str, typer.Option("--pattern", metavar="|".join(PATTERNS), help="MRI: sampling pattern.")] = "random",
    snr: Annotated[
        Optional[float],
        typer.Option("--snr", "--noise", metavar="SNR", help="MRI: add complex Gaussian noise; image SNR (foreground mean / noise SD)."),
    ] = None,
    phase: Annotated[bool, typer.Option("--phase", help="MRI: multiply the object by a smooth random phase.")] = False,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the mask, phase and noise.")] = 0,
    # --- CT options (simulate) ---
    ct: Annotated[bool, typer.Option("--ct", help="Simulate a CT sinogram instead of MRI k-space.")] = False,
    views: Annotated[int, typer.Option("--views", min=1, metavar="N", help="CT: projection angles (over 180 deg parallel, 360 fan).")] = 180,
    beam: Annotated[str, typer.Option("--beam", metavar="parallel|fan", help="CT: beam geometry (fan: flat detector).")] = "parallel",
    photons: Annotated[
        Optional[float],
        typer.Option("--photons", min=1.0, metavar="I0", help="CT: Poisson noise, unattenuated photons per detector bin (LoDoPaB-CT: 4096)."),
    ] = None,
    detectors: Annotated[
        Optional[int], typer.Option("--detectors", min=2, metavar="N", help="CT: detector bins [default: cover the grid's diagonal].")
    ] = None,
):
    from medcli.runtime import log
    from medcli.errors import UsageError

    if pattern not in PATTERNS:
        raise UsageError(f"--pattern must be one of {', '.join(PATTERNS)}")
    if ct:
        return _ct_simulate_step(views, beam, photons, detectors, seed)

    def step(image, job: Job):
        from medcli import io
        from medcli.errors import UsageError as _Usage
        from medcli.io.safe import atomic_output
        from medcli.recon.mri import formats
        from medcli.recon.mri.simulate import simulate_image

        io.check_finite(image, job.source)
        dest = job.output
        kind = _kspace_suffix(dest or "")
        if not kind:
            raise _Usage("recon simulate writes .h5 (fastMRI), .mrd (ISMRMRD) or .cfl (BART)")
        ks, ref = simulate_image(image, coils=coils, accel=accel, center=center, pattern=pattern, snr=snr, phase=phase, seed=seed)
        extra = {"acceleration": f"{ks.acceleration:.4g}", "coils": str(coils), "pattern": pattern, "center_fraction": f"{center}",
                 "snr": "none" if snr is None else f"{snr}", "seed": str(seed)}
        if kind == "cfl":
            job.written += formats.save_cfl(formats.kspace_to_bart(ks), dest, job.force, ks.affine)
        else:
            with atomic_output(dest, job.force) as tmp:
                if kind == "fastmri":
                    formats.write_fastmri(ks, tmp, extra, reference=ref)
                else:
                    formats.write_ismrmrd(ks, tmp, extra)
            job.written.append(dest)
        log.info(f"{job.source}: {ks.data.shape[0]} slices, {coils} coils, R = {ks.acceleration:.2f} -> {dest}")
        return None

    return step


def _ct_simulate_step(views: int, beam: str, photons: float | None, detectors: int | None, seed: int):
    """``recon simulate --ct``: a sinogram and its JSON geometry (NIfTI or .npy; ``-``: NIfTI with the geometry inside)."""
    from medcli.runtime import log, torch_device
    from medcli.errors import UsageError

    if beam not in ("parallel", "fan"):
        raise UsageError("--beam must be parallel or fan")

    def step(image, job: Job):
        from medcli.recon.ct import simulate_ct, write_sinogram

        dest = job.output or "-"
        if dest != "-" and not dest.lower().endswith((".nii", ".nii.gz", ".npy")):
            raise UsageError("recon simulate --ct writes .nii.gz, .nii or .npy (with a .json sidecar)")
        sino = simulate_ct(image, views=views, beam=beam, photons=photons, detectors=detectors, seed=seed,
                           device=str(torch_device()))
        write_sinogram(sino, dest, job.force)
        if dest != "-":
            from medcli.recon.ct import sidecar_of

            job.written += [dest, str(sidecar_of(dest))]
        log.info(f"{job.source}: {sino.data.shape[0]} slices, {views} views {beam} beam"
                 f"{'' if photons is None else f', {photons:g} photons'} -> {dest}")
        return None

    return step


@command(
    "recon",
    summary="Reconstruct images from raw data: undersampled multi-coil MRI k-space (or CT sinograms).",
    description="MRI input: fastMRI HDF5 (kspace (slices, coils, ro, pe), ismrmrd_header, optional mask), ISMRMRD "
    "HDF5 (.mrd), BART .cfl/.hdr (readout, phase 1, phase 2 / slice at dim 13, coils) or complex .npy (--layout). "
    "The sampling mask is the data's non-zero lines or --mask. Methods: zerofill (root-sum-of-squares), sense "
    "(ESPIRiT maps from the fully sampled centre, CG least squares), cs (l1-wavelet by FISTA or total variation "
    "by primal-dual, SENSE model, --lambda), learned (an unrolled network: the cs result refined by "
    "cascades of a small CNN and a data-consistency step, trained on k-space simulated from the MNI T1; used only "
    "within the masks, accelerations and coil counts it was trained for, else cs with a warning), auto (cs with total "
    "variation: the best measured over all benchmark data -- learned beats it on held-out brain slices but not on a "
    "phantom, tests/benchmarks/results/recon_mri.md). The output is the magnitude image, "
    "slices along the third voxel axis, with the header's geometry (recon simulate stores the exact affine; "
    "fastMRI headers give only FOV / matrix). Stages run on --device (cuda works). "
    "CT input: a sinogram (NIfTI (detector, view, slice) or .npy (slice, view, detector)) with its JSON sidecar "
    "(ASTRA proj_geom names: type parallel|fanflat, DetectorCount, DetectorWidth, ProjectionAnglesDeg, "
    "DistanceOriginSource/Detector, ImageSize, PixelSpacing, Affine, Photons); output in HU (--units mu: mm^-1, "
    "water 0.0192). CT methods: fbp (--filter, --cutoff), sart (one view per update; relaxation falling per sweep when the sidecar gives Photons), sirt, osem (Poisson "
    "likelihood, OS-SPS, for low dose), each with --reg nonneg|tv --lambda (HU), learned (a U-Net correcting 5 osem+TV "
    "iterations, given the FBP too; trained for 60-view, 4096-photon parallel-beam slices), auto (learned where its "
    "spec fits, else osem+TV when the sidecar gives Photons, else sart: tests/benchmarks/results/recon_ct.md).",
    examples=[
        ("Simulate, then reconstruct", "medcli recon simulate sample:t1 --accel 4 -o k.h5 && medcli recon k.h5 -o t1.nii.gz"),
        ("fastMRI file, l1-wavelet compressed sensing", "medcli recon file_brain_AXT2_200.h5 --method cs --reg wavelet -o brain.nii.gz"),
        ("SENSE, keep the coil maps", "medcli recon k.h5 --method sense --sens maps.cfl -o sense.nii.gz"),
        ("BART k-space, complex output", "medcli recon ksp.cfl --complex img.cfl -o img.nii.gz"),
        ("A NumPy array", "medcli recon k.npy --layout coil,ro,pe -o img.nii.gz"),
        ("CT: sparse-view low-dose sinogram", "medcli recon simulate sample:ct --ct --views 60 --photons 4096 -o s.nii.gz && medcli recon s.nii.gz -o ct.nii.gz"),
        ("CT: FBP with a Hann window", "medcli recon sino.npy --method fbp --filter hann --cutoff 0.8 -o ct.nii.gz"),
    ],
    references=[
        "Pruessmann KP et al. SENSE: sensitivity encoding for fast MRI. Magn Reson Med 1999;42:952-962.",
        "Uecker M et al. ESPIRiT - an eigenvalue approach to autocalibrating parallel MRI. Magn Reson Med 2014;71:990-1001.",
        "Lustig M, Donoho D, Pauly JM. Sparse MRI. Magn Reson Med 2007;58:1182-1195.",
        "Beck A, Teboulle M. A fast iterative shrinkage-thresholding algorithm. SIAM J Imaging Sci 2009;2:183-202.",
        "Aggarwal HK et al. MoDL: model-based deep learning architecture for inverse problems. IEEE TMI 2019;38:394-405.",
        "Sriram A et al. End-to-end variational networks for accelerated MRI reconstruction. MICCAI 2020.",
        "Kak AC, Slaney M. Principles of Computerized Tomographic Imaging. IEEE Press 1988 (FBP, ch. 3).",
        "Andersen AH, Kak AC. Simultaneous algebraic reconstruction technique (SART). Ultrason Imaging 1984;6:81-94.",
        "Erdogan H, Fessler JA. Ordered subsets algorithms for transmission tomography. Phys Med Biol 1999;44:2835-2851.",
        "Jin KH, McCann MT, Froustey E, Unser M. Deep convolutional neural network for inverse problems in imaging. IEEE TIP 2017;26:4509-4522.",
    ],
)
def cli(
    method: Annotated[
        str,
        typer.Option("-m", "--method", metavar="auto|zerofill|sense|cs|learned|...", help="Reconstruction method (CT: see below)."),
    ] = "auto",
    iterations: Annotated[
        Optional[int], typer.Option("--iterations", min=0, metavar="N", help="Iterations of the iterative method [default: per method].")
    ] = None,
    lam: Annotated[
        str, typer.Option("--lambda", metavar="auto|VALUE", help="Regularisation weight (cs; sense: Tikhonov; auto: tuned fraction of the image scale).")
    ] = "auto",
    reg: Annotated[
        str, typer.Option("--reg", metavar="auto|wavelet|tv", help="Regulariser of cs (auto: MRI tv, the better measured; CT: see below).")
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of any random step.")] = 0,
    model: Annotated[
        Optional[str], typer.Option("--model", metavar="NAME|PATH", help="Learned model (hub name or folder).", show_default="recon-mri")
    ] = None,
    modality: Annotated[str, typer.Option("--modality", metavar="auto|mr|ct", help="Input kind; auto: from the file.")] = "auto",
    # --- MRI options ---
    layout: Annotated[
        Optional[str], typer.Option("--layout", metavar="AXES", help="MRI .npy: axis names, e.g. slice,coil,ro,pe.")
    ] = None,
    mask: Annotated[Optional[str], typer.Option("--mask", metavar="FILE", help="MRI: sampling mask .npy (1D pe lines, 2D, or per slice).")] = None,
    maps: Annotated[
        Optional[str], typer.Option("--maps", metavar="FILE", help="MRI: coil sensitivities .npy (slices, coils, ro, pe) instead of ESPIRiT.")
    ] = None,
    complex_out: Annotated[
        Optional[str], typer.Option("--complex", metavar="FILE", help="MRI: also write the complex image (.cfl, or a 2-channel .nii.gz).")
    ] = None,
    sens: Annotated[Optional[str], typer.Option("--sens", metavar="FILE", help="MRI: also write the coil maps used (.cfl or .npy).")] = None,
    # --- CT options ---
    filter_name: Annotated[
        str, typer.Option("--filter", metavar="ram-lak|shepp-logan|cosine|hann|hamming", help="CT fbp: filter window.")
    ] = "ram-lak",
    cutoff: Annotated[float, typer.Option("--cutoff", metavar="FRACTION", help="CT fbp: filter cut-off, fraction of Nyquist (0-1].")] = 1.0,
    units: Annotated[str, typer.Option("--units", metavar="hu|mu", help="CT output: Hounsfield units or attenuation (mm^-1, water 0.0192).")] = "hu",
):
    from medcli.runtime import log, torch_device
    from medcli.errors import InputError, UsageError

    if modality not in MODALITIES:
        raise UsageError(f"--modality must be one of {', '.join(MODALITIES)}")
    lam_value: float | str = "auto"
    if lam != "auto":
        try:
            lam_value = float(lam)
        except ValueError:
            raise UsageError(f"--lambda must be auto or a number, got {lam!r}") from None
        if lam_value < 0:
            raise UsageError("--lambda must be >= 0")

    def step(source: str, job: Job):
        kind = modality if modality != "auto" else modality_of(source)
        if kind is None:
            raise InputError("not raw data: MRI k-space (.h5, .mrd, .cfl, complex .npy) or a CT sinogram with its .json sidecar", source)
        if kind == "ct":
            # --- CT dispatch ---
            return _ct_step(source, job)
        if method not in MR_METHODS:
            raise UsageError(f"--method for MRI must be one of {', '.join(MR_METHODS)}")
        return _mr_step(source, job)

    def _ct_step(source: str, job: Job):
        from medcli.recon.ct import METHODS as CT_METHODS
        from medcli.recon.ct import reconstruct_ct

        if method not in CT_METHODS:
            raise UsageError(f"--method for CT must be one of {', '.join(CT_METHODS)}")
        ct_reg = None if reg in ("wavelet", "auto") else reg  # auto/wavelet are MRI's: CT's own default then
        img = reconstruct_ct(source, method, filter=filter_name, cutoff=cutoff, iterations=iterations, reg=ct_reg,
                             lam=20.0 if lam_value == "auto" else float(lam_value), units=units, device=str(torch_device()),
                             model=model, provenance=job.provenance)
        log.info(f"{source}: CT {job.provenance.get('Method')}, {img.shape[2]} slices of {img.shape[0]}x{img.shape[1]}")
        return img

    def _mr_step(source: str, job: Job):
        import numpy as np

        from medcli.runtime import configure_torch, progress
        from medcli.recon.mri import formats
        from medcli.recon.mri.methods import reconstruct_mri

        configure_torch().manual_seed(seed)
        ks = formats.read_kspace(source, layout=layout, mask=mask)
        given = _read_maps(maps, ks) if maps else None
        with progress(ks.data.shape[0], "recon") as advance:
            res = reconstruct_mri(ks, method, reg="tv" if reg == "auto" else reg, lam=lam_value, iterations=iterations, maps=given, model=model,
                                  device=torch_device(), progress=advance, seed=seed)
        if "model" in res.info:
            job.provenance["Model"] = res.info["model"]
        job.provenance["Seed"] = seed
        log.info(f"{source}: {res.method}, {ks.data.shape[0]} slices, {ks.coils} coils, R = {ks.acceleration:.2f}")
        vol = np.ascontiguousarray(np.moveaxis(res.image, 0, -1))  # (ro, pe, slices)
        if complex_out:
            _write_complex(vol, ks, job)
        if sens and res.maps is not None:
            _write_array(np.moveaxis(res.maps, 0, -1), sens, ks, job)  # (coils, ro, pe, slices)
        elif sens:
            log.warning("--sens: zerofill uses no coil maps; nothing written")
        from medcli.image import Image

        return Image(np.abs(vol).astype(np.float32), ks.affine, {"source": source})

    def _write_complex(vol, ks, job: Job) -> None:
        import numpy as np

        from medcli.image import Image

        dest = job.path(complex_out)
        if dest and dest.lower().endswith(".cfl"):
            _write_array(vol, complex_out, ks, job)
        else:
            job.write_image(Image(np.stack([vol.real, vol.imag], -1).astype(np.float32), ks.affine), complex_out)

    return step


def _read_maps(path: str, ks):
    """Given coil maps: .npy (slices, coils, ro, pe) or (coils, ro, pe), on the k-space grid."""
    import numpy as np

    from medcli.errors import InputError

    try:
        arr = np.load(path)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read coil maps ({e})", path) from None
    if arr.ndim == 3:
        arr = np.broadcast_to(arr[None], (ks.data.shape[0],) + arr.shape)
    if arr.shape != ks.data.shape:
        raise InputError(f"coil maps of shape {arr.shape}, k-space is {ks.data.shape}", path)
    return np.ascontiguousarray(arr).astype(np.complex64)


def _write_array(arr, template: str, ks, job: Job) -> None:
    """A complex side output: BART .cfl/.hdr, else .npy (atomic)."""
    import numpy as np

    from medcli.io.safe import atomic_output
    from medcli.recon.mri.formats import save_cfl

    dest = job.path(template)
    if not dest:
        return
    if dest.lower().endswith(".cfl"):
        # (ro, pe, slices) images; maps (coils, ro, pe, slices) with coils at BART's dim 3.
        bart = np.moveaxis(arr, 0, 3) if arr.ndim == 4 else arr
        job.written += save_cfl(bart, dest, job.force, ks.affine)
    else:
        with atomic_output(dest, job.force) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr.astype(np.complex64))
        job.written.append(dest)


# The batch engine hands the step the input path: k-space and sinograms are not images.
cli = replace(cli, reader=str).with_subcommands(simulate=simulate_cli)

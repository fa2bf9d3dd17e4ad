"""``medcli register``: align moving images with a fixed image (rigid, affine, diffeomorphic).

Two forms share the command name:

* ``medcli register MOVING... --fixed FIXED -o WARPED [--transform PREFIX]``
  registers each moving image (the fixed image is read once per process);
* ``medcli register apply IN... -t T... -r REF -o OUT`` carries images, label
  maps and points through written transforms (:mod:`medcli.commands.register_apply`).

``apply`` is recognised by its first word, as ``harmonize fit`` is.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from medcli.cli.command import Job, command
from medcli.image import Image

TYPES = ("rigid", "affine", "syn")
METRICS = ("auto", "ncc", "mi", "mse")
METHODS = ("auto", "classical", "learned", "hybrid")


def resolve_method(method: str) -> str:
    """``classical``, ``learned`` or ``hybrid``; ``auto`` is the one that measured better (medcli.register.learned.AUTO)."""
    if method != "auto":
        return method
    from medcli.register.learned import AUTO

    return AUTO


def transform_paths(prefix: str, kind: str) -> dict[str, str]:
    """ANTs file names under ``PREFIX``: ``PREFIX_0GenericAffine.mat`` (+ ``_1Warp``/``_1InverseWarp`` for SyN)."""
    sep = "" if prefix.endswith(("_", "/", "-", ".")) else "_"
    out = {"affine": f"{prefix}{sep}0GenericAffine.mat"}
    if kind == "syn":
        out["warp"] = f"{prefix}{sep}1Warp.nii.gz"
        out["inverse_warp"] = f"{prefix}{sep}1InverseWarp.nii.gz"
    return out



@command(
    "register",
    summary="Register images: rigid, affine or diffeomorphic (SyN-like), mono- and multi-modal; ANTs-compatible transforms.",
    description="Aligns each MOVING image with --fixed and writes the moving image resampled on the fixed grid (-o). "
    "--type syn (default) runs rigid, then affine, then a diffeomorphic stage (stationary velocity field integrated by "
    "scaling and squaring, Gaussian-regularised, 4 and 2 mm levels; the Jacobian determinant stays positive, the "
    "inverse is exp(-v)). Metrics: auto = Mattes mutual information for the rigid/affine stages, then local NCC "
    "for the deformable stage when the affinely aligned images correlate (Pearson r > 0.5 over the fixed head: same "
    "contrast) and MI otherwise (T2 onto T1). --transform PREFIX writes ANTs-named files that antsApplyTransforms, "
    "ANTsPy, SimpleITK and 3D Slicer read: PREFIX_0GenericAffine.mat (ITK MATLAB v4), and for syn "
    "PREFIX_1Warp.nii.gz / PREFIX_1InverseWarp.nii.gz (ITK displacement fields, LPS mm); apply them with 'medcli "
    "register apply' (images, labels, points) in the order warp, affine. Transforms map fixed points to moving "
    "points (ITK's convention). Same --seed and --threads give bit-identical outputs.",
    examples=[
        ("A T1 onto the bundled MNI template", "medcli register t1.nii.gz --fixed sample:t1 -o t1_mni.nii.gz --transform t1_mni"),
        ("Affine only, with QC and statistics", "medcli register t1.nii.gz --fixed sample:t1 --type affine -o t1_aff.nii.gz --qc qc.png --stats reg.json"),
        ("A T2 onto its T1 (mutual information)", "medcli register t2.nii.gz --fixed t1.nii.gz --type rigid --metric mi -o t2_in_t1.nii.gz"),
        ("Many subjects onto one template", "medcli register sub-*/anat/*_T1w.nii.gz --fixed sample:t1 -o mni/{stem}.nii.gz --transform mni/{stem}_"),
        ("After bias correction, in a pipe", "medcli biascorrect t1.nii.gz -o - | medcli register - --fixed sample:t1 -o t1_mni.nii.gz"),
        ("Learned field (SynthMorph-style, any contrast), refined by a short SyN", "medcli register t2.nii.gz --fixed t1.nii.gz --method hybrid -o t2_in_t1.nii.gz"),
        ("Carry labels with the result", "medcli register apply aseg.nii.gz --labels -t t1_mni_1Warp.nii.gz -t t1_mni_0GenericAffine.mat -r sample:t1 -o aseg_mni.nii.gz"),
    ],
    references=[
        "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image registration with cross-correlation. Med Image Anal 2008.",
        "Arsigny V, Commowick O, Pennec X, Ayache N. A Log-Euclidean framework for statistics on diffeomorphisms. MICCAI 2006.",
        "Vercauteren T et al. Symmetric log-domain diffeomorphic registration: a demons-based approach. MICCAI 2008.",
        "Mattes D et al. PET-CT image registration in the chest using free-form deformations. IEEE TMI 2003.",
        "Hoffmann M, Billot B, Greve DN, Iglesias JE, Fischl B, Dalca AV. SynthMorph: learning contrast-invariant registration without acquired images. IEEE TMI 2022.",
        "Yushkevich PA et al. Fast automatic segmentation of hippocampal subfields and medial temporal lobe subregions (greedy). Hum Brain Mapp 2015.",
    ],
    needs_3d=True,
)
def cli(
    fixed: Annotated[
        Optional[str],
        typer.Option("--fixed", metavar="IMAGE", help="The fixed (reference) image: a file or sample:t1 (the MNI template).", show_default=False),
    ] = None,
    kind: Annotated[str, typer.Option("--type", metavar="|".join(TYPES), help="Transform model (syn: rigid, affine, then diffeomorphic).")] = "syn",
    metric: Annotated[str, typer.Option("--metric", metavar="|".join(METRICS), help="Similarity metric (auto: MI for affine stages, NCC or MI for syn by measured contrast).")] = "auto",
    method: Annotated[
        str,
        typer.Option("--method", metavar="|".join(METHODS), help="Deformable stage of --type syn: classical (SyN-like), learned (SynthMorph-style network, model 'register'), hybrid (the network's field refined by a short classical SyN), auto (the one that measured better: classical)."),
    ] = "auto",
    transform: Annotated[
        Optional[str],
        typer.Option("--transform", metavar="PREFIX", help="Write transforms as PREFIX_0GenericAffine.mat (+ PREFIX_1Warp.nii.gz, PREFIX_1InverseWarp.nii.gz); a template for batches."),
    ] = None,
    mask: Annotated[Optional[str], typer.Option("--mask", metavar="FILE", help="Moving-image mask (its grid); a template for batches.")] = None,
    fixed_mask: Annotated[Optional[str], typer.Option("--fixed-mask", metavar="FILE", help="Fixed-image mask (its grid): only these voxels count.")] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the affine stages' point samples.")] = 0,
    qc: Annotated[Optional[str], typer.Option("--qc", metavar="FILE", help="Write a QC checkerboard of fixed and warped (.png).", show_default=False)] = None,
    jacobian: Annotated[Optional[str], typer.Option("--jacobian", metavar="FILE", help="Write the log Jacobian determinant map (syn).", show_default=False)] = None,
    stats: Annotated[Optional[str], typer.Option("--stats", metavar="FILE", help="Write a JSON summary: metric before/after, folded voxels, time ('-' stdout).", show_default=False)] = None,
):
    import json

    from medcli import io
    from medcli.files import sha256_of
    from medcli.runtime import log, torch_device
    from medcli.enhance.masks import read_mask
    from medcli.errors import UsageError

    if not fixed:
        raise UsageError("give the fixed image: --fixed IMAGE (e.g. --fixed sample:t1)")
    if kind not in TYPES:
        raise UsageError(f"--type must be one of {', '.join(TYPES)}")
    if metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}")
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}")
    if method in ("learned", "hybrid") and kind != "syn":
        raise UsageError(f"--method {method} is a deformable method: it needs --type syn")
    if qc and not qc.lower().endswith(".png"):
        raise UsageError(f"--qc {qc!r}: the QC picture is a .png file")
    if jacobian and kind != "syn":
        raise UsageError("--jacobian needs --type syn (rigid and affine transforms have a constant Jacobian)")
    if jacobian and io.format_of(jacobian) is None and "{" not in jacobian:
        raise UsageError(f"--jacobian {jacobian!r}: unknown image extension (use .nii.gz)")
    fixed_img = io.check_finite(io.read(fixed), fixed)
    io.check_3d(fixed_img, fixed, allow_4d=False)
    fmask = read_mask(fixed_mask, fixed_img, "--fixed-mask") if fixed_mask else None
    device = torch_device()

    def step(image: Image, job: Job) -> Image:
        from medcli.io.safe import check_writable
        from medcli.register.methods import register
        from medcli.register.transform_io import write_affine, write_displacement_field

        io.check_3d(image, job.source, allow_4d=False)
        paths = transform_paths(job.path(transform), kind) if transform else {}
        # Every side output is checked before the work: no partial results after a minute of fitting.
        for dest in list(paths.values()) + [job.path(p) for p in (qc, jacobian, stats) if p]:
            if dest != "-":
                check_writable(dest, job.force)
        mmask = read_mask(job.path(mask), image, "--mask") if mask else None
        common = dict(metric=metric, moving_mask=mmask, fixed_mask=fmask, seed=seed, device=device, want_jacobian=bool(jacobian), log=log.debug)
        chosen = resolve_method(method)
        if kind == "syn" and chosen in ("learned", "hybrid"):
            from medcli.register.learned import REFINE_LEVELS, register_learned

            res = register_learned(image, fixed_img, refine_levels=REFINE_LEVELS if chosen == "hybrid" else (), **common)
            job.provenance["Model"] = {"Name": res.stats["model"]["name"], "SHA256": res.stats["model"]["sha256"]}
        else:
            res = register(image, fixed_img, kind=kind, **common)
        st = res.stats
        log.info(
            f"{job.source}: {st['type']} {st['metric']} {st['metric_before']:.4f} -> {st['metric_after']:.4f}, "
            f"folded {st['folded_fraction']:.2e}, {st['seconds']:.1f} s"
        )
        if transform:
            write_affine(res.chain[-1], paths["affine"], force=job.force)
            job.written.append(paths["affine"])
            if kind == "syn":
                write_displacement_field(res.chain[0], paths["warp"], force=job.force)
                write_displacement_field(res.chain[0].inverse(), paths["inverse_warp"], force=job.force)
                job.written += [paths["warp"], paths["inverse_warp"]]
        if jacobian and res.log_jacobian is not None:
            job.write_image(res.log_jacobian, jacobian)
        if qc:
            from medcli.register.qc import qc_png

            job.write_text(qc_png(fixed_img, res.warped, title=f"{st['type']} {st['metric']}"), qc)
        if stats:
            doc = {"moving": job.source, "fixed": fixed, **st, "transforms": paths}
            job.write_text(json.dumps(doc, indent=2) + "\n", stats)
        job.provenance["Seed"] = seed
        job.provenance["Registration"] = {
            "Fixed": {"Path": fixed, "SHA256": sha256_of(fixed)},
            "Type": kind,
            "Method": st.get("method", "classical"),
            "Metric": st["metric"],
            "Transforms": [paths[k] for k in ("warp", "affine") if k in paths],
        }
        return res.warped

    return step


def _apply_spec():
    from medcli.commands.register_apply import cli as apply_spec

    return apply_spec


cli = cli.with_subcommands(apply=_apply_spec)

"""``medcli landmarks``: anatomical landmarks (the 32 AFIDs) on a head image, and their evaluation.

Two forms share the command name:

* ``medcli landmarks IN... -o points.fcsv`` detects the landmarks of ``--set`` on each image
  (:mod:`medcli.landmarks.atlas`);
* ``medcli landmarks eval PRED TRUTH`` prints per-landmark and mean radial errors
  (:mod:`medcli.landmarks.evaluate`).

``eval`` is recognised by its first word, as ``harmonize fit`` is.
"""

from __future__ import annotations

from typing import Annotated

import typer

from medcli.cli.command import Job, command
from medcli.image import Image
from medcli.landmarks.choice import TEMPLATE_MM, auto_method

METHODS = ("auto", "atlas", "learned")
SKULL = ("auto", "on", "off")


@command(
    "landmarks eval",
    summary="Radial error (mm) of detected landmarks against reference ones, per landmark and mean (AFLE).",
    description="Matches PRED and TRUTH by label (.fcsv, .mrk.json, .json, .csv in any coordinate system the "
    "readers know: Slicer LPS, legacy RAS) and prints the Euclidean distance of each landmark, then the mean, "
    "standard deviation, median and largest: the AFIDs localisation error (AFLE). A landmark missing on either side "
    "is listed as missing, not counted as zero. --json writes the same as JSON.",
    examples=[
        ("Detected vs a rater's", "medcli landmarks eval sub01_afids.fcsv rater_afids.fcsv"),
        ("As JSON, to a file", "medcli landmarks eval pred.mrk.json truth.fcsv --json -o afle.json"),
    ],
    references=["Lau JC et al. A framework for evaluating correspondence between brain images using anatomical fiducials. Hum Brain Mapp 2019."],
    batch=False,
)
def eval_cli(
    pred: Annotated[str, typer.Argument(help="Detected points (.fcsv, .mrk.json, .json, .csv).", metavar="PRED", show_default=False)],
    truth: Annotated[str, typer.Argument(help="Reference points, same labels.", metavar="TRUTH", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Write JSON instead of a text table.")] = False,
    output: Annotated[str, typer.Option("-o", "--output", metavar="FILE", help="Where to write ('-' stdout).")] = "-",
    force: Annotated[bool, typer.Option("-f", "--force", help="Overwrite the output.")] = False,
) -> int:
    import json
    import sys

    from medcli.io.points import read_points
    from medcli.io.safe import atomic_output, check_writable
    from medcli.landmarks.evaluate import format_table, radial_errors

    if output != "-":
        check_writable(output, force)
    result = radial_errors(read_points(pred), read_points(truth))
    text = json.dumps({"pred": pred, "truth": truth, **result}, indent=2) + "\n" if as_json else format_table(result)
    if output == "-":
        sys.stdout.write(text)
    else:
        with atomic_output(output, force) as tmp:
            tmp.write_text(text)
    return 0


@command(
    "landmarks",
    summary="Anatomical landmarks (the 32 AFIDs) on a T1/T2 head image, as Slicer markups, with a confidence per point.",
    description="atlas (the default on a skull-stripped head): registers the head onto the set's template (medcli register: rigid, affine, "
    "then diffeomorphic; any MR contrast; on the template's box around the landmarks, 20 mm beyond them) and carries the template's landmarks to the subject through that "
    "transform. A head with its skull (recognised automatically, or --skull on) is brain-extracted first "
    "(medcli segment's brain model) unless --mask gives the brain. Output in world millimetres with the "
    "coordinate system in the file, chosen by extension: .fcsv (3D Slicer 5, LPS), .mrk.json (Slicer markups "
    "JSON, LPS), .json and .csv (RAS and LPS columns, confidence); -o - writes JSON to stdout. Confidence: the "
    "correlation of template and registered subject in a 12 mm cube around the point (0..1, not a calibrated "
    "probability). A landmark outside the field of view is written as missing (nan) with a warning, never "
    "clamped. The AFIDs were placed on MNI152NLin2009bAsym; the bundled template is MNI152 2009a symmetric: "
    "offsets of about 1 mm between the two spaces are included in the error. --method learned: an affine "
    "registration (4 and 2 mm) then the landmarks-afids network refines each landmark by matching a 30 mm patch of the "
    "subject with the template's (about as fast as atlas on a skull-stripped head and less precise there on known warps of "
    "the template: 0.49-1.05 vs 0.25-0.50 mm; confidence = heatmap mass within 3 mm). --method auto (default) uses learned on a "
    "head with its skull (it measured better there: 0.76 vs 1.24 mm and 0.85 vs 1.93 mm on held-out synthetic "
    "skull-on heads at 2 mm) and atlas otherwise, or when --mask gives the brain. "
    "'medcli landmarks eval PRED TRUTH' gives radial errors.",
    examples=[
        ("The 32 AFIDs for 3D Slicer", "medcli landmarks t1.nii.gz -o t1_afids.fcsv"),
        ("With a QC picture and a brain mask", "medcli landmarks t1.nii.gz --mask brain.nii.gz -o afids.mrk.json --qc afids.png"),
        ("JSON to stdout", "medcli landmarks sample:t1 -o -"),
        ("Affine + learned refinement", "medcli landmarks t2.nii.gz --method learned -o afids.fcsv"),
        ("Many subjects", "medcli landmarks sub-*/anat/*_T1w.nii.gz -o afids/{stem}.fcsv"),
        ("Check against a rater", "medcli landmarks t1.nii.gz -o pred.fcsv && medcli landmarks eval pred.fcsv rater.fcsv"),
    ],
    references=[
        "Lau JC et al. A framework for evaluating correspondence between brain images using anatomical fiducials. Hum Brain Mapp 2019.",
        "Taha A et al. Magnetic resonance imaging datasets with anatomical fiducials for quality control and registration. Sci Data 2023.",
        "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image registration with cross-correlation. Med Image Anal 2008.",
    ],
    needs_3d=True,
    output_kind="any",
)
def cli(
    method: Annotated[str, typer.Option("-m", "--method", metavar="|".join(METHODS), help="Detection method (auto: learned on a head with its skull, else atlas).")] = "auto",
    landmark_set: Annotated[str, typer.Option("--set", metavar="NAME", help="Landmark set (medcli/data/landmark_sets.json).")] = "afids",
    mask: Annotated[str | None, typer.Option("--mask", metavar="FILE", help="Brain mask on the input grid; a template ({stem}...) for batches.")] = None,
    skull: Annotated[str, typer.Option("--skull", metavar="|".join(SKULL), help="Is the skull on? auto: recognised; on: brain-extract first.")] = "auto",
    spacing: Annotated[
        float | None, typer.Option("--spacing", min=0.5, metavar="MM", help="Voxel size of the template grid the registration runs on "
                                      f"(default: {TEMPLATE_MM['atlas']:g} for atlas, {TEMPLATE_MM['learned']:g} for learned).", show_default=False)
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the registration's affine stages.")] = 0,
    qc: Annotated[str | None, typer.Option("--qc", metavar="FILE", help="Write a QC picture: each landmark on its three planes (.png).", show_default=False)] = None,
):
    from medcli import io
    from medcli.runtime import log, torch_device
    from medcli.errors import UsageError
    from medcli.landmarks.sets import load_set

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}")
    if skull not in SKULL:
        raise UsageError(f"--skull must be one of {', '.join(SKULL)}")
    if qc and not qc.lower().endswith(".png") and "{" not in qc:
        raise UsageError(f"--qc {qc!r}: the QC picture is a .png file")
    lset = load_set(landmark_set)
    reference = io.read(lset.template)
    device = torch_device()
    templates: dict[str, Image] = {}
    models: dict[str, object] = {}

    def template_for(chosen: str) -> Image:
        # read once, resampled once per method: a batch pays for each only when it first needs it
        if chosen not in templates:
            mm = spacing if spacing is not None else TEMPLATE_MM[chosen]
            if chosen == "atlas":
                from medcli.landmarks.atlas import atlas_template

                templates[chosen] = atlas_template(reference, lset, mm)
            else:
                templates[chosen] = reference if mm == 1.0 else reference.resample(mm)
        return templates[chosen]

    def model_for() -> object:
        if "learned" not in models:
            from medcli.landmarks.learned import load_model

            models["learned"] = load_model(device)
        return models["learned"]

    def step(image: Image, job: Job):
        from medcli.enhance.masks import read_mask
        from medcli.errors import ProcessingError
        from medcli.io.points import is_points_path, write_points
        from medcli.io.safe import check_writable
        from medcli.landmarks.atlas import detect_atlas

        out = job.output or "-"
        if out != "-" and not is_points_path(out):
            raise ProcessingError("landmarks are written to a point file (.fcsv, .mrk.json, .json, .csv)", out)
        if qc:
            check_writable(job.path(qc), job.force)
        m = read_mask(job.path(mask), image, "--mask") if mask else None
        chosen, early, how = method, [], skull
        if method == "auto":
            from medcli.landmarks.atlas import brain_mask_for

            user_mask = m is not None
            if not user_mask:
                # answers the skull question once: the brain (skull on) is in m, else there is none to extract
                m, early = brain_mask_for(image, skull, device, log.debug)
                how = "off"
            chosen = auto_method(skull_on=m is not None, user_mask=user_mask)
            log.info(f"{job.source}: --method auto: {chosen} ({'skull on' if chosen == 'learned' else 'brain only'})")
        if chosen == "learned":
            from medcli.landmarks.learned import detect_learned

            det = detect_learned(image, lset, mask=m, skull=how, template=template_for(chosen), seed=seed, device=device,
                                 model=model_for(), reference=reference, log=log.debug)
        else:
            det = detect_atlas(image, lset, mask=m, skull=how, template=template_for(chosen), reference=reference, seed=seed,
                               device=device, log=log.debug)
        det.warnings[:0] = early
        for w in det.warnings:
            log.warning(f"{job.source}: {w}")
        pts = det.points
        found = int((~pts.missing).sum())
        log.info(f"{job.source}: {found} of {len(pts)} {lset.name} landmarks, median confidence "
                 f"{float(_nanmedian(pts.confidences)):.2f}")
        if qc:
            from medcli.landmarks.qc import qc_png

            job.write_text(qc_png(image, pts, title=f"{lset.name} ({chosen}) {job.source}"), qc)
        write_points(pts, out, force=job.force)
        if out != "-":
            job.written.insert(0, out)
        job.provenance["Seed"] = seed
        job.provenance["Landmarks"] = {"Set": lset.name, "Method": chosen, "Template": lset.template,
                                       "Registration": {k: det.stats.get(k) for k in ("type", "metric", "seconds")}}
        if det.stats.get("model"):
            job.provenance["Landmarks"]["Model"] = det.stats["model"]

    return step


def _nanmedian(values) -> float:
    import numpy as np

    v = np.asarray(values if values is not None else [], float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


cli = cli.with_subcommands(eval=eval_cli)

"""``medcli detect``: focal lesions found and boxed in world millimetres; ``detect eval``: FROC and LUNA16 CPM.

Two forms share the command name (like ``harmonize fit``):

* ``medcli detect IN... -o findings.json`` detects in each input;
* ``medcli detect eval PRED TRUTH [PRED TRUTH ...]`` scores findings against truth.
"""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from medcli.cli.command import Job, command
from medcli.image import Image

TASKS = ("brain-lesion", "ct-lesion", "blob")
METHODS = ("log", "learned")
FINDINGS_EXT = ".json, .csv, .mrk.json or .fcsv"


def _is_image(path: str) -> bool:
    from medcli.files import IMAGE_SUFFIXES

    return path.lower().endswith(IMAGE_SUFFIXES) or path.startswith("sample:")


def load_pair(pred_path: str, truth_path: str, excluded: str | None = None) -> list:
    """The scans of one PRED/TRUTH pair (a LUNA16 CSV pair may hold many series)."""
    import numpy as np

    from medcli import io
    from medcli.detect.api import truth_from_labels
    from medcli.detect.evaluate import Scan
    from medcli.detect.findings import read_findings
    from medcli.errors import InputError

    pred = read_findings(pred_path)
    if _is_image(truth_path):
        lab = io.read(truth_path)
        io.check_3d(lab, truth_path)
        img = pred.image or {}
        if img.get("affine") is not None:
            same = list(lab.shape[:3]) == list(img.get("shape", lab.shape[:3]))[:3] and np.allclose(
                np.array(img["affine"], float), lab.affine, atol=1e-3)
            if not same:
                raise InputError(f"truth label map grid {tuple(lab.shape[:3])} is not the grid the findings were made on "
                                 f"{tuple(img.get('shape', []))} (another space: resample it first)", truth_path)
        truth = truth_from_labels(lab)
        truth_f = None
    else:
        truth_f = read_findings(truth_path)
        truth = truth_f.items
        a, b = pred.image or {}, truth_f.image or {}
        if a.get("affine") is not None and b.get("affine") is not None and not np.allclose(
                np.array(a["affine"], float), np.array(b["affine"], float), atol=1e-3):
            raise InputError("truth findings were made on another image grid than the predictions (another space)", truth_path)
    if any(np.isnan(t.diameter_mm) for t in truth):
        raise InputError("truth lesions need a diameter (diameter_mm) for the hit radius", truth_path)
    if excluded:
        ex = read_findings(excluded).items
        for t in ex:
            t.excluded = True
        truth = truth + ex
    series = {f.series for f in pred.items} | {t.series for t in truth}
    if series - {""}:
        return [Scan(s, [f for f in pred.items if f.series == s], [t for t in truth if t.series == s]) for s in sorted(series)]
    return [Scan(pred_path, pred.items, truth)]


@command(
    "detect eval",
    summary="Score findings against truth: FROC, LUNA16 CPM, AP at IoU 0.1, sensitivity by size.",
    description="Arguments come in pairs PRED TRUTH (findings files, " + FINDINGS_EXT + "; TRUTH may also be a label map, "
    "each connected component one lesion). LUNA16 rules: a finding hits a lesion when its centre is within the lesion's "
    "radius; several findings on one lesion count once (the best score) and are not false positives; findings on "
    "--excluded lesions are ignored. CPM: mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4, 8 false positives per scan. "
    "LUNA16 CSVs (seriesuid,coordX,coordY,coordZ,probability / annotations.csv with diameter_mm) are grouped by "
    "series. Writes a JSON report (stdout by default); -v adds a one-line summary on stderr.",
    examples=[
        ("One scan against its lesion mask", "medcli detect eval findings.json lesions.nii.gz"),
        ("A LUNA16 submission", "medcli detect eval submission.csv annotations.csv --excluded annotations_excluded.csv -o froc.json"),
    ],
    references=["Setio AAA et al. Validation, comparison, and combination of algorithms for automatic detection of "
                "pulmonary nodules in computed tomography images: the LUNA16 challenge. Med Image Anal 2017."],
    batch=False,
)
def eval_cli(
    files: Annotated[List[str], typer.Argument(help="PRED TRUTH pairs.", metavar="PRED TRUTH", show_default=False)],
    output: Annotated[str, typer.Option("-o", "--output", metavar="FILE", help="Report JSON ('-': stdout).")] = "-",
    excluded: Annotated[
        Optional[str], typer.Option("--excluded", metavar="FILE", help="Lesions to ignore (LUNA16 annotations_excluded.csv).", show_default=False)
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", metavar="SCORE", help="Operating point of the sensitivities [default: 1 FP per scan].", show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option("-f", "--force", help="Overwrite the output.")] = False,
) -> int:
    import json
    import sys

    from medcli.runtime import log
    from medcli.detect.evaluate import evaluate
    from medcli.errors import UsageError
    from medcli.io.safe import atomic_output, check_writable

    if len(files) % 2:
        raise UsageError("give PRED TRUTH pairs (an even number of files)")
    if output != "-":
        check_writable(output, force)
    scans = []
    for i in range(0, len(files), 2):
        scans += load_pair(files[i], files[i + 1], excluded)
    rep = evaluate(scans, threshold)
    text = json.dumps(rep, indent=2) + "\n"
    if output == "-":
        sys.stdout.write(text)
    else:
        with atomic_output(output, force) as tmp:
            tmp.write_text(text)
    log.info(f"CPM {rep['cpm']} over {rep['n_scans']} scans, {rep['n_lesions']} lesions; at {rep['fp_per_scan']} FP/scan "
             f"sensitivity {rep['sensitivity']}; AP@0.1 {rep['ap_iou_0.1']}")
    return 0


@command(
    "detect",
    summary="Detect focal lesions; write findings (centre, box, diameter, score) in world mm for Slicer and evaluators.",
    description="Two methods. learned: a dense 3D CenterNet-style network (centre heatmap + box sizes, 0.43 M "
    "parameters, model detect-lesion; input: the image, the search mask and its scale-space (DoG) channels) run at "
    "2 mm along the image's own axes, trained with a focal loss on synthetic lesions of 2-40 mm (any contrast, hypo- "
    "or hyperintense; MR and CT) among vessel and sulcus-like mimics; peaks of the heatmap become findings boxed by "
    "the regressed sizes. log: a multi-scale "
    "Laplacian-of-Gaussian (difference of Gaussians, sigmas in mm so anisotropic and oblique grids see physical sizes; "
    "scale-normalised; Hessian blobness damps vessels and sulci; suppression in world mm), outlining each at half "
    "contrast for its box, centre and volume. The default method per task is the one that measured better on the "
    "held-out benchmark. Tasks: brain-lesion (searched in the brain: a skull-stripped image's "
    "non-zero region, else the brain mask of 'medcli segment'), ct-lesion (HU, soft-tissue window, the body without "
    "bone and air), blob (everywhere). -o picks the format by extension: .json (schema medcli.findings/1: id, "
    "center_ras_mm, center_lps_mm, box_ras_mm [xmin,ymin,zmin,xmax,ymax,zmax], size_mm, diameter_mm, volume_ml, "
    "score, label, voxel_ijk; image name, shape, affine, sha256), .csv (LUNA16: seriesuid,coordX,coordY,coordZ,"
    "probability in LPS, diameter_mm), .mrk.json (3D Slicer ROI boxes), .fcsv (centres). An image without findings "
    "writes a valid empty file. Scores are the method's own (learned: heatmap probability, scaled down (to 0.2x) "
    "for a finding with a twin across the midline, as normal anatomy has; log: normalised contrast); "
    "the default --threshold of each is set on validation scans at about 1 false positive per scan.",
    examples=[
        ("Lesions of a FLAIR, Slicer boxes", "medcli detect flair.nii.gz --task brain-lesion -o lesions.mrk.json --qc lesions.png"),
        ("A LUNA16-style CSV per CT", "medcli detect ct/*.nii.gz --task ct-lesion -o out/{stem}.csv"),
        ("Label map and score map too", "medcli detect t2.nii.gz -o f.json --mask-out f_labels.nii.gz --heatmap f_score.nii.gz"),
        ("Score against truth", "medcli detect eval f.json truth_lesions.nii.gz"),
    ],
    references=[
        "Lindeberg T. Feature detection with automatic scale selection. IJCV 1998.",
        "Setio AAA et al. The LUNA16 challenge. Med Image Anal 2017.",
        "Baumgartner M et al. nnDetection: a self-configuring method for medical object detection. MICCAI 2021.",
    ],
    needs_3d=True,
    output_kind="findings",
)
def cli(
    task: Annotated[str, typer.Option("--task", "-t", metavar="|".join(TASKS), help="What to look for (sets the search region).")] = "brain-lesion",
    method: Annotated[
        Optional[str], typer.Option("--method", "-m", metavar="|".join(METHODS), help="Detector [default: the better one on the benchmark for the task].", show_default=False)
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", metavar="SCORE", help="Minimum score [default: about 1 false positive per scan on validation cases].", show_default=False)
    ] = None,
    max_findings: Annotated[int, typer.Option("--max-findings", min=1, metavar="N", help="Keep at most N findings (best first).")] = 50,
    min_diameter: Annotated[float, typer.Option("--min-diameter", min=0.5, metavar="MM", help="Smallest lesion diameter.")] = 2.0,
    mask: Annotated[Optional[str], typer.Option("--mask", metavar="FILE", help="Search inside this mask (input grid; {stem} templates).", show_default=False)] = None,
    mask_out: Annotated[Optional[str], typer.Option("--mask-out", metavar="FILE", help="Label map of the findings (label i = finding i).", show_default=False)] = None,
    heatmap: Annotated[Optional[str], typer.Option("--heatmap", metavar="FILE", help="Score map: for learned the centre heatmap of the network, before the left-right asymmetry factor of the findings; for log the best normalised response per voxel.", show_default=False)] = None,
    qc: Annotated[Optional[str], typer.Option("--qc", metavar="FILE", help="Contact sheet PNG: each finding's three planes with its box.", show_default=False)] = None,
):
    from medcli.errors import ProcessingError, UsageError

    if task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}")
    if method is not None and method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}")
    from medcli.detect.api import DEFAULT_METHOD, MODELS

    method = method or DEFAULT_METHOD[task]
    if method == "learned" and task not in MODELS:
        raise UsageError(f"--method learned has no model for --task {task} (use brain-lesion or ct-lesion, or --method log)")
    if qc and not qc.lower().endswith(".png"):
        raise UsageError(f"--qc {qc!r}: the contact sheet is a .png file")

    def step(image: Image, job: Job):
        from medcli.files import sha256_of
        from medcli.enhance.masks import read_mask
        from medcli.detect.api import detect
        from medcli.detect.findings import findings_format, format_findings
        from medcli.errors import InputError

        out = job.output or "-"
        fmt = "json" if out == "-" else findings_format(out)
        if fmt is None:
            raise ProcessingError(f"unknown findings extension (use {FINDINGS_EXT})", out)
        m = read_mask(job.path(mask), image) if mask else None
        if m is not None and not m.any():
            raise InputError("the mask is empty", job.path(mask))
        det = detect(image, task=task, method=method, mask=m, threshold=threshold, max_findings=max_findings,
                     min_diameter=min_diameter, heatmap=bool(heatmap))
        det.findings.image.update(name=job.source, sha256=sha256_of(job.source))
        if det.findings.model:
            job.provenance["Model"] = {"Name": det.findings.model["name"], "SHA256": det.findings.model["sha256"]}
        from medcli.cli.command import stem_of

        job.write_text(format_findings(det.findings, fmt, series=stem_of(job.source)), out)
        if mask_out:
            job.write_image(det.labels, mask_out)
        if heatmap and det.heatmap is not None:
            job.write_image(det.heatmap, heatmap)
        if qc:
            from medcli.detect.qc import contact_sheet

            title = f"{job.source}: {len(det.findings)} findings ({task}, {method}, >= {det.findings.threshold:g})"
            job.write_text(contact_sheet(image, det.findings, ct=task == "ct-lesion", title=title), qc)
        from medcli.runtime import log

        log.info(f"{job.source}: {len(det.findings)} findings")
        return None

    return step


cli = cli.with_subcommands(eval=eval_cli)

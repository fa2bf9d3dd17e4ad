"""``medcli report``: one self-contained HTML (or Markdown, JSON) report per scan; ``report cohort`` for many."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from medcli.cli.command import command

RUNNABLE = ("brain", "tissue", "detect", "landmarks")


def _write_all(texts: dict[str, str], outputs: list[str], force: bool) -> None:
    """Write every report atomically (all destinations were checked before any work)."""
    from medcli.runtime import log
    from medcli.io.safe import atomic_output

    for dest, text in texts.items():
        with atomic_output(dest, force) as tmp:
            tmp.write_text(text, encoding="utf-8")
        log.info(f"{dest}: {len(text.encode()) / 1e6:.2f} MB")


def _check_outputs(outputs: list[str], force: bool) -> list[str]:
    from medcli.errors import UsageError
    from medcli.io.safe import check_writable
    from medcli.report.api import format_of

    if not outputs:
        raise UsageError("no output given: use -o report.html (or .md, .json; several -o allowed)")
    fmts = [format_of(o) for o in outputs]
    for o in outputs:
        check_writable(o, force)
    return fmts


@command(
    "report",
    summary="Write a self-contained report (HTML, Markdown, JSON) of a scan and what medcli found in it.",
    description=(
        "Reads IMAGE and the files other medcli commands wrote for it (--with, repeatable), each recognised by its "
        "content: label maps (segment -o), segment --stats JSON/CSV, sidecars (--sidecar), detect findings JSON "
        "(schema medcli.findings/1), landmarks (.fcsv, .mrk.json, JSON points), register --stats. Each must belong "
        "to IMAGE (same grid, same sha256, points inside the field of view): a file of another image is refused. "
        "--run brain,tissue,detect,landmarks (or all) runs segment's brain and tissue analyses, detect's brain-lesion "
        "search and the AFIDs landmarks in this process instead (models loaded once, the brain mask found once and shared); "
        "'all' runs those that fit what the image is (an MR head: all four; a CT: lesion detection only).\n\n"
        "The report holds the scan's identity and acquisition (header, voxel size, orientation), volumes per label in "
        "mL and % of intracranial volume, findings (with crops) and landmarks tables, QC mosaics with outlines in "
        "three planes, provenance (every step's model and its sha256), what the models were trained on (their "
        "cards), and a short narrative whose every sentence links to the number it states. It claims no diagnosis. "
        "HTML is one file: inline CSS and WebP pictures, no script, no font, no network request; about 0.1-0.3 MB. "
        "--dicom-sr FILE (IMAGE a DICOM series) also writes the measurements as a DICOM SR (TID 1500, Comprehensive 3D "
        "SR: volumes, findings and landmarks as 3D points in the series' frame of reference; needs highdicom).\n\n"
        "'medcli report cohort SUBJECT.json... -o cohort.html' (or --list FILE) gathers the .json reports of many "
        "scans: a table of key numbers, histograms (inline SVG), robust outlier flags (|z| > 3 from median and MAD) "
        "linking to each subject's page, and --csv FILE for the table."
    ),
    examples=[
        ("Report of a scan and its tissue segmentation", "medcli report t1.nii.gz --with tissue.nii.gz --with tissue.json -o report.html"),
        ("Run the analyses and write HTML and JSON", "medcli report sample:t1 --run brain,tissue -o t1.html -o t1.json"),
        ("Cohort page from per-subject JSON reports", "medcli report cohort out/*.json -o cohort.html --csv cohort.csv"),
    ],
    references=["Esteban et al. 2017, MRIQC: advancing the automatic prediction of image quality in MRI from unseen sites, PLoS ONE (visual reports)."],
    batch=False,
    output_required=False,
)
def cli(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="The scan (file, DICOM folder or sample:NAME).", show_default=False)],
    with_: Annotated[
        Optional[List[str]], typer.Option("--with", "-w", metavar="FILE", help="A file another medcli command wrote for IMAGE (repeatable).", show_default=False)
    ] = None,
    output: Annotated[
        Optional[List[str]], typer.Option("--output", "-o", metavar="FILE", help="Report file: .html, .md or .json (repeatable).", show_default=False)
    ] = None,
    run: Annotated[
        Optional[str], typer.Option("--run", metavar="LIST", help=f"Analyses to run here, comma-separated: {', '.join(RUNNABLE)} (or all).", show_default=False)
    ] = None,
    dicom_sr: Annotated[
        Optional[str],
        typer.Option("--dicom-sr", metavar="FILE", help="Also write a DICOM SR (TID 1500) of the measurements; IMAGE must be a DICOM series.", show_default=False),
    ] = None,
    series: Annotated[Optional[str], typer.Option("--series", metavar="UID", help="DICOM series to read from a folder of several.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing reports.")] = False,
) -> int:
    from medcli import io
    from medcli.files import sha256_of
    from medcli.runtime import log
    from medcli.report.api import scan_report
    from medcli.report.inputs import recognise

    outputs = list(output or [])
    fmts = _check_outputs(outputs, force) if outputs or not dicom_sr else []
    if dicom_sr:
        from medcli.io.safe import check_writable

        check_writable(dicom_sr, force)
    tasks = _parse_run(run)
    img = io.read(image, series=series)
    io.check_3d(img, image)
    contrast = None
    if run and run.strip() == "all":
        tasks, contrast = _fitting(tasks, img)
    sha = sha256_of(image)
    items = [recognise(p, img, sha) for p in with_ or []]
    for it in items:
        log.info(f"{it.path}: {it.kind}")
    if tasks:
        items += run_analyses(img, image, tasks, contrast=contrast)
    if not items and not tasks:
        log.warning("no --with file and no --run: the report holds the scan's identity only")
    texts = scan_report(img, image, items, fmts, sha256=sha)
    sr = _dicom_sr(texts["doc"], img, image) if dicom_sr else None  # built before any write: all or nothing
    _write_all({o: texts[f] for o, f in zip(outputs, fmts)}, outputs, force)
    if sr is not None:
        from medcli.io.safe import atomic_output

        with atomic_output(dicom_sr, force) as tmp:
            sr.save_as(str(tmp))
    return 0


def _dicom_sr(doc, img, source: str):
    from medcli.errors import InputError, UsageError

    if not (img.meta or {}).get("dicom"):
        raise InputError("--dicom-sr needs a DICOM series as IMAGE (its files are the report's evidence)", source)
    from medcli.io.dicom_derived import source_datasets
    from medcli.report.dicom_sr import measurement_report

    try:
        import highdicom  # noqa: F401
    except ImportError as e:  # pragma: no cover - highdicom is in the test extra
        raise UsageError(f"--dicom-sr needs highdicom: pip install highdicom ({e})") from e
    return measurement_report(doc, source_datasets(source, img.meta["dicom"].get("series_uid"), "--dicom-sr"))


def _parse_run(run: str | None) -> list[str]:
    from medcli.errors import UsageError

    if not run:
        return []
    tasks = _available() if run.strip() == "all" else [t.strip() for t in run.split(",") if t.strip()]
    for t in tasks:
        if t not in RUNNABLE:
            raise UsageError(f"--run: unknown analysis {t!r} (known: {', '.join(RUNNABLE)}, all)")
    if set(tasks) - {"brain"} and "brain" not in tasks:
        tasks.insert(0, "brain")  # the others work inside the brain mask found once; it is reported too
    tasks.sort(key=RUNNABLE.index)
    return tasks


def _fitting(tasks: list[str], image) -> tuple[list[str], dict]:
    """``--run all``: the analyses that fit what the image is (brain analyses need an MR head; CT gets lesion
    detection), and the recognised contrast (the brain step reuses it)."""
    from medcli.runtime import log
    from medcli.segment.contrast import describe, recognise

    rec = recognise(image)
    dicom_ct = str((image.meta.get("dicom") or {}).get("modality", "")).upper() == "CT"
    if rec["modality"] == "CT" or dicom_ct:
        kept = [t for t in tasks if t == "detect"]
        log.info(f"--run all: {describe(rec)}: CT, so lesion detection only ({', '.join(kept) or 'nothing'})")
        return kept, rec
    if rec["skull"] is None:  # "other body part"
        log.warning(f"--run all: {describe(rec)}: not a head, so no brain analysis")
        return [], rec
    return tasks, rec


def _available() -> list[str]:
    """The analyses whose packages are installed (``--run all``)."""
    import importlib.util

    pkg = {"detect": "medcli.detect.api", "landmarks": "medcli.landmarks.atlas"}
    return [t for t in RUNNABLE if t not in pkg or importlib.util.find_spec(pkg[t]) is not None]


def run_analyses(image, source: str, tasks: list[str], contrast: dict | None = None):
    """Run the analyses in this process: brain extraction once, its mask reused by the others (:func:`shared_brain`).

    ``contrast``: the image already recognised (``--run all``), not recognised again by the brain step.
    """
    import time

    from medcli.runtime import log

    items = []
    brain_img = None
    for task in tasks:
        t0, c0 = time.perf_counter(), time.process_time()
        items += _run_one(task, image, source, brain_img, contrast)
        if task == "brain":
            brain_img = shared_brain(image, items[-2].data)
        log.info(f"--run {task}: {time.perf_counter() - t0:.1f} s ({time.process_time() - c0:.1f} s CPU)")
    return items


def shared_brain(image, brain_labels):
    """The brain mask the other analyses work in: the brain step's; on a skull-stripped image its non-zero region,
    which the separate ``segment --task tissue`` and ``detect`` take there, so that ``--run`` reports their numbers."""
    import numpy as np

    from medcli.image import Image
    from medcli.segment.tissue import background_value, brain_mask

    if background_value(image) is not None:
        return Image(brain_mask(image, None)[0].astype(np.uint8), image.affine)
    return Image(np.asarray(brain_labels.data).astype(np.uint8), image.affine)


def _run_one(task, image, source, brain_img, contrast=None):
    """The items one analysis adds (a label map and its statistics, findings, or landmarks)."""
    import numpy as np

    from medcli.commands.segment import run_task
    from medcli.image import Image
    from medcli.report.inputs import Item
    from medcli.segment.outputs import LABELS, statistics

    if task == "detect":
        return [_detect_item(image, brain_img)]
    if task == "landmarks":
        return _landmarks_items(image, brain_img)
    items = []
    labels, _, brain, model_name, sha, checks = run_task(task, image, mask=brain_img, contrast=contrast)
    lab = Image(np.asarray(labels.data).astype(np.int32), image.affine)
    items.append(Item("labels", f"--run {task}", lab))
    doc = statistics(lab, LABELS[task], brain=brain, model=model_name, sha256=sha, source=source)
    doc.update(checks)
    if task == "brain":
        doc["labels"] = []  # the brain mask is the ICV, not a structure
    items.append(Item("seg_stats", f"--run {task}", doc))
    return items


def _detect_item(image, brain_img):
    """``detect`` (brain-lesion inside the brain mask found by the brain step; ct-lesion without one), read back as detect writes it."""
    import json

    import numpy as np

    from medcli.detect.api import detect
    from medcli.detect.findings import format_findings
    from medcli.report.inputs import findings_item

    mask = np.asarray(brain_img.data) > 0 if brain_img is not None else None
    task = "brain-lesion" if brain_img is not None else "ct-lesion"  # no brain step: --run all on a CT
    det = detect(image, task=task, mask=mask)  # the task's default method, as medcli detect runs it
    return findings_item(json.loads(format_findings(det.findings, "json")), "--run detect", image, None)


def _landmarks_items(image, brain_img):
    """``medcli landmarks`` (AFIDs, the method ``--method auto`` picks) with the brain mask already found: no second
    extraction. The points, and the step (method, template) for the provenance table."""
    from pathlib import Path

    import numpy as np

    from medcli import io
    from medcli.runtime import log, torch_device
    from medcli.landmarks.atlas import brain_mask_for, detect_atlas
    from medcli.landmarks.choice import TEMPLATE_MM, auto_method
    from medcli.landmarks.sets import load_set
    from medcli.report.inputs import Item
    from medcli.segment.tissue import background_value

    lset = load_set("afids")
    device = torch_device()
    early: list[str] = []
    if brain_img is not None:  # the brain step ran: its mask is the non-zero region on a skull-stripped image
        mask, skull_on = np.asarray(brain_img.data) > 0, background_value(image) is None
    else:
        mask, early = brain_mask_for(image, "auto", device, log.debug)
        skull_on = mask is not None
    method = auto_method(skull_on)
    reference = io.read(lset.template)
    template = reference if TEMPLATE_MM[method] == 1.0 else reference.resample(TEMPLATE_MM[method])
    model = None
    if method == "learned":
        from medcli.landmarks.learned import detect_learned, load_model

        model = load_model(device)
        det = detect_learned(image, lset, mask=mask, skull="off", template=template, reference=reference, device=device,
                             model=model, log=log.debug)
    else:  # skull "off": the brain mask is found above (or the image is a brain), not recognised a second time
        det = detect_atlas(image, lset, mask=mask, skull="off", template=template, device=device, log=log.debug)
    for w in early + det.warnings:
        log.warning(f"landmarks: {w}")
    reg = det.stats
    step = f"landmarks ({lset.name}, {method}: {reg.get('type', 'syn')} registration to {Path(lset.template).name})"
    done = {"step": step}
    if model is not None:  # the network's name and weights, as the other learned steps record theirs
        spec = model[1]
        done.update(model=reg.get("model"), sha256=(spec.get("files") or [{}])[0].get("sha256"))
    return [Item("landmarks", "--run landmarks", det.points), Item("step", "--run landmarks", done)]


@command(
    "report cohort",
    summary="Gather per-scan JSON reports into one cohort page: table, distributions, outlier flags, CSV.",
    description=(
        "Reads the .json reports of 'medcli report' (arguments or --list FILE, one per line). Writes one HTML page "
        "with a table of every subject's key numbers (intracranial volume, volumes per label, % ICV, number of "
        "findings), histograms as inline SVG, and flags a value whose robust z (median and MAD x 1.4826) exceeds "
        "--threshold; each subject links to its own report (the .html beside its .json, when it exists)."
    ),
    examples=[("Cohort of an array job's reports", "medcli report cohort --list reports.txt -o cohort.html --csv cohort.csv")],
    batch=False,
    output_required=False,
)
def cohort_cli(
    reports: Annotated[Optional[List[str]], typer.Argument(metavar="REPORT.json...", help="Per-scan JSON reports.", show_default=False)] = None,
    list_file: Annotated[Optional[str], typer.Option("--list", metavar="FILE", help="A file naming one JSON report per line.", show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE", help="Cohort page (.html).", show_default=False)] = None,
    csv_out: Annotated[Optional[str], typer.Option("--csv", metavar="FILE", help="Also write the table as CSV.", show_default=False)] = None,
    threshold: Annotated[float, typer.Option("--threshold", metavar="Z", help="Flag |robust z| above this.")] = 3.0,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
) -> int:
    from medcli.cli.command import read_list
    from medcli.errors import UsageError
    from medcli.io.safe import check_writable
    from medcli.report import cohort

    paths = list(reports or []) + ([src for src, _ in read_list(list_file)] if list_file else [])
    if not paths:
        raise UsageError("no report given (name .json reports or use --list FILE)")
    if not output and not csv_out:
        raise UsageError("no output given: use -o cohort.html and/or --csv cohort.csv")
    if output and not output.lower().endswith((".html", ".htm")):
        raise UsageError(f"-o {output!r}: the cohort page is .html")
    for dest in (output, csv_out):
        if dest:
            check_writable(dest, force)
    table = cohort.load(paths)
    texts = {}
    if output:
        texts[output] = cohort.html(table, threshold=threshold)
    if csv_out:
        texts[csv_out] = cohort.csv_text(table)
    _write_all(texts, list(texts), force)
    return 0


cli = cli.with_subcommands(cohort=cohort_cli)

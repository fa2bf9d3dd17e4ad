"""``medcli segment``: brain masks, brain tissues and CT structures as uint8 label maps."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from medcli.cli.command import Job, command
from medcli.errors import InputError, UsageError
from medcli.image import Image

TASKS = ("brain", "tissue", "ct-body", "ct-lungs", "ct-bone", "ct-fat")
LABEL_HELP = (
    "brain: 1 brain. tissue: 1 CSF, 2 GM, 3 WM. ct-body: 1 body. ct-lungs: 1 right lung, 2 left lung. "
    "ct-bone: 1 bone. ct-fat: 1 subcutaneous fat, 2 visceral fat."
)


@command(
    "segment",
    summary="Segment brain, tissue classes or CT structures; write label maps, stats and QC.",
    description=(
        "Writes a uint8 label map on the input's grid and orientation (0 = background). Labels: "
        + LABEL_HELP
        + "\n\n--task brain runs a brain-extraction network chosen from the contrast the bundled 'contrast' model "
        "recognises (measured on held-out synthetic skull-on heads): deepbet for T1- and FLAIR-like heads, the voxels "
        "deepbet calls brain both on the head and on its intensity-inverted copy, less those within 4 mm of the dark dura "
        "(extra-cerebral CSF; deepbet-consensus), for T2- and PD-like ones; --model deepbet|deepbet-inverted|deepbet-consensus|hd-bet forces one (HD-BET is downloaded). It warns on stderr and in --stats (fields contrast, warnings) when the "
        "contrast is outside what the model was trained or validated on, the mask is outside 0.8-2.2 L or touches the border. "
        "--task tissue segments CSF/GM/WM inside the brain of an MR image of any contrast: 'learned' (default) "
        "runs the contrast-agnostic 'tissue' network (or --model NAME|PATH) and refines its output with per-tissue "
        "intensity histograms + a Potts MRF fitted to the image by EM, the network as prior (histograms follow the "
        "skewed tissue shapes of non-linear scanner responses); 'classical' is a Gaussian mixture + Potts MRF alone, "
        "k-means initialised, its clusters named by depth in the brain; the brain is the non-zero region of a skull-stripped image, --mask FILE, "
        "or found by brain extraction. CT tasks threshold Hounsfield units and clean up by morphology.\n\n"
        "Side outputs take the same {stem} templates as -o: --labels-out (label table: .txt ITK-SNAP, .ctbl "
        "3D Slicer, .json), --probabilities (4D float32, channel k = label k+1), --stats (.json/.csv volumes in mL, "
        "intracranial volume, model and sha256), --qc (PNG mosaic with legend), --masked (skull-stripped image), "
        "--dicom-seg (a DICOM SEG of a DICOM series input: one segment per label, each frame referencing its source "
        "image, in the series' frame of reference; needs highdicom)."
    ),
    examples=[
        ("Brain mask of the bundled T1", "medcli segment sample:t1 -o mask.nii.gz"),
        ("Skull-strip and keep the stripped image", "medcli segment t1.nii.gz -o mask.nii.gz --masked t1_brain.nii.gz"),
        (
            "CSF/GM/WM with volumes and a QC picture",
            "medcli segment sample:t1 --task tissue -o tissue.nii.gz --stats tissue.csv --qc tissue.png",
        ),
        ("Grey matter only, many subjects", "medcli segment sub-*/anat/*T1w.nii.gz --task tissue --labels GM -o gm/{stem}.nii.gz"),
        ("Lungs of a CT series", "medcli segment ct_dicom/ --task ct-lungs -o lungs.nii.gz --labels-out lungs.ctbl"),
    ],
    references=[
        "Fisch et al. 2024, deepbet: Fast brain extraction of T1-weighted MRI using CNNs, Comput Biol Med.",
        "Isensee et al. 2019, Automated brain extraction of multisequence MRI using artificial neural networks, HBM.",
        "Zhang, Brady, Smith 2001, Segmentation of brain MR images through a hidden Markov random field model "
        "and the expectation-maximization algorithm, IEEE TMI.",
        "Tustison et al. 2010, N4ITK: improved N3 bias correction, IEEE TMI.",
        "Billot et al. 2023, SynthSeg: segmentation of brain MRI scans of any contrast and resolution, MedIA.",
        "Puonti et al. 2016, Fast and sequence-adaptive whole-brain segmentation using parametric Bayesian "
        "modeling (SAMSEG: an atlas prior refined by a per-image mixture), NeuroImage.",
    ],
)
def cli(
    task: Annotated[str, typer.Option("--task", "-t", metavar="TASK", help=f"What to segment: {', '.join(TASKS)}.")] = "brain",
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", metavar="NAME|PATH", help="Model name or path (brain: auto, deepbet, deepbet-consensus, deepbet-inverted, hd-bet; tissue: tissue).", show_default=False),
    ] = None,
    method: Annotated[
        Optional[str],
        typer.Option("--method", metavar="learned|classical", help="Tissue method: learned (default, measured better) or classical.", show_default=False),
    ] = None,
    mask: Annotated[
        Optional[str], typer.Option("--mask", metavar="FILE", help="Brain mask on the input grid (tissue task; skips brain extraction).", show_default=False)
    ] = None,
    labels: Annotated[
        Optional[str], typer.Option("--labels", metavar="LIST", help="Keep only these labels (values or names, e.g. 2,3 or GM,WM).", show_default=False)
    ] = None,
    labels_out: Annotated[
        Optional[str], typer.Option("--labels-out", metavar="FILE", help="Write the label table (.txt ITK-SNAP, .ctbl Slicer, .json).", show_default=False)
    ] = None,
    probabilities: Annotated[
        Optional[str], typer.Option("--probabilities", metavar="FILE", help="Write class probabilities (4D float32 image).", show_default=False)
    ] = None,
    stats: Annotated[
        Optional[str], typer.Option("--stats", metavar="FILE", help="Write volumes per label (.json or .csv).", show_default=False)
    ] = None,
    qc: Annotated[Optional[str], typer.Option("--qc", metavar="FILE", help="Write a QC mosaic (.png).", show_default=False)] = None,
    masked: Annotated[
        Optional[str], typer.Option("--masked", metavar="FILE", help="Also write the input with everything outside the brain set to 0.", show_default=False)
    ] = None,
    dicom_seg: Annotated[
        Optional[str],
        typer.Option("--dicom-seg", metavar="FILE", help="Also write a DICOM SEG referencing the input DICOM series.", show_default=False),
    ] = None,
    postprocess: Annotated[
        bool,
        typer.Option(
            "--postprocess/--no-postprocess",
            help="Clean up: largest component and hole filling (brain, CT), small islands merged (tissue).",
        ),
    ] = True,
):
    import numpy as np

    from medcli.segment.outputs import LABELS, label_table, parse_labels

    if task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, not {task!r}")
    table = LABELS[task]
    keep = parse_labels(labels, table)
    if keep:
        table = {v: table[v] for v in keep}
    ct = task.startswith("ct-")
    if ct and (model or method):
        raise UsageError(f"--task {task} is rule-based (Hounsfield units): --model and --method do not apply")
    if ct and (probabilities or mask or masked):
        raise UsageError(f"--task {task} is rule-based: --probabilities, --mask and --masked do not apply")
    if task == "brain" and (method or mask):
        raise UsageError("--method and --mask apply to --task tissue")
    if task != "tissue" and method:
        raise UsageError("--method applies to --task tissue")
    if method is not None and method not in ("learned", "classical"):
        raise UsageError(f"--method must be learned or classical, not {method!r}")
    if labels_out:
        label_table(table, labels_out)  # a bad extension fails before any work
    if stats and not (stats == "-" or stats.lower().endswith((".json", ".csv"))):
        raise UsageError(f"--stats {stats!r}: use a .json or .csv file")
    if qc and not qc.lower().endswith(".png"):
        raise UsageError(f"--qc {qc!r}: the QC picture is a .png file")

    if dicom_seg:
        try:
            import highdicom  # noqa: F401
        except ImportError as e:
            raise UsageError(f"--dicom-seg needs highdicom: pip install highdicom ({e})") from e

    from medcli import io

    mask_image = io.read(mask) if mask else None

    def step(image: Image, job: Job) -> Image:
        to_stdout = [n for n, v in (("--stats", stats), ("--labels-out", labels_out), ("--dicom-seg", dicom_seg)) if v == "-"]
        if to_stdout and job.output == "-":
            raise UsageError(f"-o - sends the image to stdout: write {to_stdout[0]} to a file")
        if dicom_seg and not image.meta.get("dicom"):
            raise InputError("--dicom-seg needs a DICOM series as input (the SEG references its files)", job.source)
        result, probs, brain, model_name, sha, checks = run_task(task, image, model=model, method=method, mask=mask_image,
                                                         postprocess=postprocess, masked_out=bool(masked))
        data = np.asarray(result.data)
        if keep:
            from medcli.segment.postprocess import keep_labels

            data = keep_labels(data, keep)
        out = Image(data.astype(np.uint8), image.affine, {k: v for k, v in image.meta.items() if k != "intent"})
        job.provenance.update({"Task": task, "Model": model_name, "ModelSha256": sha})
        if dicom_seg:  # built before any side output is written: a series it cannot describe leaves nothing
            from medcli.io.dicom_seg import seg_bytes

            seg = seg_bytes(out, table, job.source, image.meta["dicom"].get("series_uid"), algorithm=model_name or task,
                            learned=not ct and (method or "learned") == "learned")
        if masked and brain is not None:
            src = np.asarray(image.data)
            m = brain if src.ndim == 3 else brain[..., None]
            job.write_image(image.with_data(np.where(m, src, 0).astype(src.dtype)), masked)
        if probabilities and probs is not None:
            from medcli.segment.outputs import probabilities_image

            job.write_image(probabilities_image(probs, keep), probabilities)
        if labels_out:
            job.write_text(label_table(table, job.path(labels_out) or labels_out), labels_out)
        if stats:
            from medcli.segment.outputs import statistics, stats_text

            doc = statistics(out, table, brain=brain if not ct else None, model=model_name, sha256=sha, source=job.source)
            doc.update(checks)  # brain: the recognised contrast and the warnings also given on stderr
            job.write_text(stats_text(doc, job.path(stats) or stats), stats)
        if dicom_seg:
            job.write_text(seg, dicom_seg)
        if qc:
            from medcli.segment.outputs import qc_png

            title = f"{task} ({model_name})" if model_name else task
            job.write_text(qc_png(image, out, table, ct=ct, title=title), qc)
        return out

    return step


def run_task(task: str, image: Image, *, model=None, method=None, mask=None, postprocess=True, masked_out=False, contrast=None):
    """Run one task: (labels, probabilities or None, brain mask or None, model name, model sha256, checks).

    ``checks`` holds, for the brain task, the recognised contrast and the warnings (for ``--stats``);
    ``contrast``, when the caller already recognised the image, is not recognised again.
    """
    import numpy as np

    from medcli.errors import ProcessingError

    if task.startswith("ct-"):
        from medcli.segment.ct import TASKS as CT

        return CT[task](image, postprocess=postprocess), None, None, "rules (HU thresholds + morphology)", None, {}
    if task == "brain":
        from medcli.segment import brain as B

        r = B.extract_brain_checked(image, model=model or B.DEFAULT_MODEL, postprocess=postprocess, contrast=contrast)
        checks = {"contrast": r.contrast, "warnings": r.warnings}
        return r.mask, r.probability, np.asarray(r.mask.data) > 0, r.model, _brain_sha(B, B.WEIGHTS.get(r.model, r.model)), checks
    from medcli.segment import tissue as T

    chosen = method or T.DEFAULT_METHOD
    if chosen == "learned":
        name = model or T.DEFAULT_MODEL
    else:
        if model:
            raise UsageError("--model selects a learned tissue model: use it with --method learned")
        name = "classical (GMM + Potts MRF, N4)"
    brain, _ = T.brain_mask(image, mask)
    labels, probs = T.segment_tissue(
        image, chosen, model=model or T.DEFAULT_MODEL, mask=Image(brain.astype(np.uint8), image.affine), postprocess=postprocess
    )
    sha = _model_sha(name) if chosen == "learned" else None
    if not np.asarray(labels.data).any():
        raise ProcessingError("no tissue found inside the brain mask", image.meta.get("source"))
    return labels, probs, brain, name, sha, {}


def _brain_sha(module, name: str) -> str | None:
    bundled = getattr(module, "BUNDLED", {})
    return bundled[name][1] if name in bundled else _model_sha(name)


def _model_sha(name: str) -> str | None:
    """sha256 of a model's (first) weight file, from the hub's registry or a user model's spec."""
    try:
        from medcli.models import hub

        spec = hub.spec(name) if "/" not in name and not name.endswith(".safetensors") else hub.load(name)[0]
    except Exception:  # noqa: BLE001 - stats must not fail for want of a hash
        return None
    files = list(spec.get("files") or []) + list(spec.get("folds") or [])
    return files[0].get("sha256") if files else None

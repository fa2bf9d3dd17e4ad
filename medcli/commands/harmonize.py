"""``medcli harmonize``: put intensities from different scanners on one scale.

Two forms share the command name:

* ``medcli harmonize IN... -o OUT --method M`` normalises each input;
* ``medcli harmonize fit IN... -o standard.json`` learns a Nyul standard from a
  set of scans, to apply later one scan at a time with ``--standard``.

The ``fit`` form is recognised by its first word (the batch engine of image
commands has no sub-commands): ``HarmonizeSpec.click_command`` hands the
arguments after ``fit`` to a second, non-batch declaration.
"""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from medcli.cli.command import Job, command
from medcli.image import Image

METHODS = ("learned", "nyul", "histmatch", "zscore", "whitestripe")
CONTRASTS = ("t1", "t2", "flair", "pd")


@command(
    "harmonize fit",
    summary="Learn a Nyul standard histogram from a set of scans (write it as JSON).",
    description="Takes the foreground percentiles 1, 10, 20, ..., 90, 99 of every input (or of --mask), maps each "
    "scan's p1..p99 onto 0..100 and averages: the standard that 'medcli harmonize --method nyul --standard FILE' "
    "maps every later scan onto. Fit on scans of one contrast.",
    examples=[
        ("Fit on a training set", "medcli harmonize fit train/*.nii.gz -o t1_standard.json"),
        ("Apply to a new scan", "medcli harmonize new.nii.gz --method nyul --standard t1_standard.json -o new_h.nii.gz"),
    ],
    references=["Nyul LG, Udupa JK, Zhang X. New variants of a method of MRI scale standardization. IEEE TMI 2000."],
    batch=False,
)
def fit_cli(
    inputs: Annotated[List[str], typer.Argument(help="Training scans (files, '-', sample:NAME).", metavar="INPUT...", show_default=False)],
    output: Annotated[str, typer.Option("-o", "--output", metavar="FILE", help="Standard JSON to write ('-' for stdout).")] = "-",
    mask: Annotated[
        Optional[str],
        typer.Option("--mask", metavar="FILE", help="Foreground mask per scan; a template such as {dir}/{stem}_mask.nii.gz."),
    ] = None,
    force: Annotated[bool, typer.Option("-f", "--force", help="Overwrite the output.")] = False,
) -> int:
    import json
    import sys

    from medcli import io
    from medcli.cli.command import expand
    from medcli.runtime import log
    from medcli.enhance.harmonize import fit_nyul
    from medcli.enhance.masks import read_mask
    from medcli.io.safe import atomic_output, check_writable

    if output != "-":
        check_writable(output, force)
    images, masks = [], []
    for i, src in enumerate(inputs):
        img = io.check_finite(io.read(src), src)
        io.check_3d(img, src)
        images.append(img)
        masks.append(read_mask(expand(mask, src, i), img) if mask else None)
        log.info(f"{src}: read")
    std = fit_nyul(images, masks, sources=list(inputs))
    text = json.dumps(std, indent=2) + "\n"
    if output == "-":
        sys.stdout.write(text)
    else:
        with atomic_output(output, force) as tmp:
            tmp.write_text(text)
        log.info(f"standard of {std['n_volumes']} volumes -> {output}")
    return 0


@command(
    "harmonize",
    summary="Normalise intensities across scanners (z-score, WhiteStripe, Nyul, histogram matching, learned).",
    description="zscore: foreground mean 0, std 1. whitestripe: the normal-appearing white-matter stripe gets mean 0, "
    "std 1 (T1: brightest histogram peak). nyul: piecewise-linear map of the foreground percentiles onto a standard "
    "(--standard, default: the T1 standard shipped with medcli; fit your own with 'medcli harmonize fit IN... -o "
    "standard.json'). histmatch: match the histogram of --reference. learned: the contrast-agnostic tissue network "
    "(medcli segment --task tissue) gives CSF/GM/WM probabilities for any contrast, rendered as the MNI T1 shows "
    "those tissues (scale: brain 99th percentile = 1, 0 outside the brain; --mask is then the brain); the output "
    "shows tissue composition, not the input's texture or lesions: use nyul or histmatch to keep them. Statistics come from --mask, else from an automatic "
    "foreground. Run after biascorrect: medcli biascorrect in.nii.gz -o - | medcli harmonize - -o out.nii.gz. "
    "4D images are normalised volume by volume.",
    examples=[
        ("WhiteStripe on a skull-stripped T1", "medcli harmonize t1.nii.gz --method whitestripe -o t1_ws.nii.gz"),
        ("Nyul with the shipped T1 standard", "medcli harmonize sub-*/anat/*_T1w.nii.gz --method nyul -o h/{stem}.nii.gz"),
        ("Fit a standard, then apply it", "medcli harmonize fit train/*.nii.gz -o std.json && medcli harmonize x.nii.gz --method nyul --standard std.json -o x_h.nii.gz"),
        ("Match the bundled MNI T1", "medcli harmonize scan.nii.gz --method histmatch --reference sample:t1 -o scan_h.nii.gz"),
        ("After bias correction, in a pipe", "medcli biascorrect t1.nii.gz -o - | medcli harmonize - --mask brain.nii.gz -o t1_h.nii.gz"),
    ],
    references=[
        "Shinohara RT et al. Statistical normalization techniques for magnetic resonance imaging. NeuroImage Clin 2014.",
        "Nyul LG, Udupa JK. On standardizing the MR image intensity scale. Magn Reson Med 1999.",
        "Iglesias JE et al. SynthSR: a public AI tool to turn heterogeneous clinical brain scans into "
        "high-resolution T1-weighted images for 3D morphometry. Sci Adv 2023.",
    ],
    needs_3d=True,
)
def cli(
    method: Annotated[
        str,
        typer.Option(
            "-m", "--method", metavar="|".join(METHODS),
            help="Harmonisation method (default learned: the smallest differences between scanners after "
            "biascorrect, also on gamma 0.5-1.6 and sigmoid scanner responses, tests/benchmarks/results/harmonize.md "
            "and harmonize_drift.md; nyul and histmatch keep the image's texture and are ~30x faster).",
        ),
    ] = "learned",
    mask: Annotated[
        Optional[str],
        typer.Option("--mask", metavar="FILE", help="Foreground/brain mask on the input grid; a template ({stem}...) for batches."),
    ] = None,
    standard: Annotated[
        Optional[str], typer.Option("--standard", metavar="FILE", help="Nyul standard JSON from 'harmonize fit' [default: shipped T1 standard].")
    ] = None,
    reference: Annotated[
        Optional[str], typer.Option("--reference", metavar="FILE", help="Image whose histogram histmatch matches (e.g. sample:t1).")
    ] = None,
    contrast: Annotated[
        str, typer.Option("--contrast", metavar="|".join(CONTRASTS), help="WhiteStripe: which histogram peak is white matter.")
    ] = "t1",
):
    from medcli import io
    from medcli.enhance.harmonize import harmonize, load_standard
    from medcli.errors import UsageError

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}")
    if contrast not in CONTRASTS:
        raise UsageError(f"--contrast must be one of {', '.join(CONTRASTS)}")
    if method == "histmatch" and not reference:
        raise UsageError("--method histmatch needs --reference FILE")
    if standard and method != "nyul":
        raise UsageError("--standard is for --method nyul")
    if reference and method != "histmatch":
        raise UsageError("--reference is for --method histmatch")
    std = load_standard(standard) if method == "nyul" else None
    ref = io.check_finite(io.read(reference), reference) if reference else None

    def step(image: Image, job: Job) -> Image:
        from medcli.enhance.masks import read_mask

        m = read_mask(job.path(mask), image) if mask else None
        return harmonize(image, method, mask=m, standard=std, reference=ref, contrast=contrast)

    return step


cli = cli.with_subcommands(fit=fit_cli)

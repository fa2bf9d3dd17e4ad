"""``medcli superres``: through-plane super-resolution of thick-slice MR."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from medcli.cli.command import Job, command
from medcli.image import Image

METHODS = ("cubic", "smore", "learned")
PROFILES = ("box", "gaussian")


@command(
    "superres",
    summary="Through-plane super-resolution of thick-slice MR (cubic, SMORE self-supervised, learned).",
    description="The slice axis is the one with the largest voxel size. cubic: cubic B-spline interpolation. "
    "smore: trains a small 2D U-Net on the image's own in-plane slices degraded to the slice profile "
    "(--profile, --steps), then applies it to the cubic-upsampled volume in the two planes that contain the slice "
    "axis and averages them, starting from the learned network (under a minute of one CPU core for a brain). learned: "
    "the same network pretrained on thick-slice degradations of the MNI T1 and of synthetic heads with skull and scalp "
    "(about 30 s). Both end by making the result "
    "consistent with the acquired slices (iterative back-projection). The output grid has voxel size --spacing and "
    "covers exactly the input's field of view. 4D images are processed volume by volume.",
    examples=[
        ("5 mm axial T2 to 1 mm isotropic", "medcli superres t2_axial.nii.gz -o t2_1mm.nii.gz"),
        ("Faster, pretrained", "medcli superres t2_axial.nii.gz --method learned -o t2_1mm.nii.gz"),
        ("Keep the in-plane voxel size", "medcli superres flair.nii.gz --spacing 0 -o flair_sr.nii.gz"),
        ("Baseline", "medcli superres t1_thick.nii.gz --method cubic --spacing 1 -o t1_cubic.nii.gz"),
    ],
    references=[
        "Zhao C, Dewey BE, Pham DL, Calabresi PA, Reich DS, Prince JL. SMORE: a self-supervised anti-aliasing and "
        "super-resolution algorithm for MRI using deep learning. IEEE TMI 2021;40(3):805-817.",
    ],
    needs_3d=True,
)
def cli(
    method: Annotated[str, typer.Option("-m", "--method", metavar="|".join(METHODS), help="Super-resolution method.")] = "smore",
    spacing: Annotated[
        float,
        typer.Option("--spacing", metavar="MM", min=0, help="Output voxel size (isotropic); 0 keeps the in-plane voxel size."),
    ] = 1.0,
    mask: Annotated[
        Optional[str],
        typer.Option("--mask", metavar="FILE", help="Foreground on the input grid: the network runs only in its bounding box (faster)."),
    ] = None,
    profile: Annotated[
        str, typer.Option("--profile", metavar="|".join(PROFILES), help="smore: slice profile (box = contiguous slab average, gaussian = FWHM thickness).")
    ] = "box",
    steps: Annotated[int, typer.Option("--steps", min=1, metavar="N", help="smore: training steps (more is sharper and slower).")] = 400,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="smore: random seed of the training.")] = 0,
):
    from medcli.enhance.superres import superres
    from medcli.errors import UsageError

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}")
    if profile not in PROFILES:
        raise UsageError(f"--profile must be one of {', '.join(PROFILES)}")

    def step(image: Image, job: Job) -> Image:
        m = None
        if mask:
            from medcli.enhance.masks import read_mask

            m = read_mask(job.path(mask), image)
        return superres(image, method, spacing or None, profile=profile, steps=steps, mask=m, seed=seed)

    return step

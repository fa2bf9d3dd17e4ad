"""``medcli convert``: change format, dtype or orientation, keeping geometry exact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from medcli.cli.command import Job, command

if TYPE_CHECKING:  # numpy stays off the help path
    from medcli.image import Image

DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "float32", "float64")


def convert(image: Image, dtype: str | None = None, reorient: str | None = None, strict: bool = False) -> Image:
    """Cast and/or reorient an image; voxel positions in mm never change.

    Args:
        image: The input image.
        dtype: Target dtype. Integer targets round to nearest and clip to their
            range; every value the cast changes (rounded, clipped, NaN) is
            counted and reported with the largest change.
        reorient: Three-letter orientation code such as ``RAS`` or ``LPS``.
        strict: Refuse a cast that would change any value instead of warning.

    Raises:
        ProcessingError: with ``strict``, when the cast would change values.

    Example:
        >>> import numpy as np
        >>> from medcli.image import Image
        >>> img = Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4))
        >>> convert(img, reorient="LPS").orientation
        'LPS'
        >>> convert(img.with_data(img.data + 0.25), dtype="int16", strict=True)
        Traceback (most recent call last):
        ...
        medcli.errors.ProcessingError: --dtype int16 would change values: 24 of 24 voxels rounded (largest change 0.25) (--strict)
    """
    import numpy as np

    from medcli.errors import ProcessingError, UsageError
    from medcli.io.values import cast, cast_report

    out = image
    if reorient:
        try:
            out = out.reorient(reorient)
        except ValueError as e:
            raise UsageError(f"--reorient: {e}") from e
    if dtype:
        if dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}")
        target = np.dtype(dtype)
        data = out.data
        report = cast_report(data, target)
        if not report.lossless:
            where = image.meta.get("source")
            if strict:
                raise ProcessingError(f"--dtype {dtype} would change values: {report.text()} (--strict)", where)
            from medcli.runtime import log

            log.warning(f"{where or 'input'}: --dtype {dtype} changes values: {report.text()}")
        out = out.with_data(cast(data, target))
        for key in ("scaling", "values"):  # the file's scale factors no longer describe these values
            out.meta.pop(key, None)
    return out


@command(
    "convert",
    summary="Convert images (DICOM, NIfTI, MGZ, NRRD, MetaImage in; all but DICOM out); change dtype or orientation.",
    description="The output format follows the output's extension. Geometry (affine) is kept to 1e-5 mm and "
    "voxel values exactly, unless --dtype asks for a cast: a cast that rounds, clips or drops values says how "
    "many on stderr, and --strict refuses it. Scaled integers (NIfTI scl_slope/scl_inter, MINC, PAR/REC, AFNI) "
    "are read with their scale factors applied; NIfTI outputs keep the raw integers and scale factors when the "
    "values are unchanged, the other formats get a float type that holds the values exactly. "
    "Inputs: NIfTI-1/2, Analyze/NIfTI pairs (.hdr/.img), MGH/MGZ, NRRD, MetaImage, DICOM, Philips PAR/REC "
    "(display values), MINC 1/2, AFNI .HEAD/.BRIK, ECAT 7. Outputs: .nii(.gz), .mgz/.mgh, .nrrd/.nhdr, .mha/.mhd.",
    examples=[
        ("DICOM series to NIfTI", "medcli convert dicom_dir/ -o scan.nii.gz"),
        ("NIfTI to NRRD in LPS orientation", "medcli convert scan.nii.gz --reorient LPS -o scan.nrrd"),
        ("Stream through a pipe", "medcli convert a.nrrd -o - | medcli convert - -o b.nii.gz"),
        ("Many files at once", "medcli convert *.mha -o nifti/{stem}.nii.gz"),
        ("Philips PAR/REC to NIfTI", "medcli convert scan.PAR -o scan.nii.gz"),
        ("Refuse a cast that would change values", "medcli convert scan.nii.gz --dtype int16 --strict -o s16.nii.gz"),
    ],
)
def cli(
    dtype: Annotated[Optional[str], typer.Option("--dtype", help=f"Output dtype: {', '.join(DTYPES)}.")] = None,
    reorient: Annotated[Optional[str], typer.Option("--reorient", help="Reorient the array, e.g. RAS or LPS.")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse a --dtype cast that would round, clip or drop any value.")
    ] = False,
):
    def step(image: Image, job: Job) -> Image:  # noqa: ARG001
        return convert(image, dtype=dtype, reorient=reorient, strict=strict)

    return step

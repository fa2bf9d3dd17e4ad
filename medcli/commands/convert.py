"""``medcli convert``: change format, dtype or orientation, keeping geometry exact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from medcli.cli.command import Job, command

if TYPE_CHECKING:  # numpy stays off the help path
    from medcli.image import Image

DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "float32", "float64")


def convert(image: Image, dtype: str | None = None, reorient: str | None = None) -> Image:
    """Cast and/or reorient an image; voxel positions in mm never change.

    Args:
        image: The input image.
        dtype: Target dtype; integer targets round and refuse values out of range.
        reorient: Three-letter orientation code such as ``RAS`` or ``LPS``.

    Example:
        >>> import numpy as np
        >>> from medcli.image import Image
        >>> img = Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4))
        >>> convert(img, reorient="LPS").orientation
        'LPS'
    """
    import numpy as np

    from medcli.errors import ProcessingError, UsageError

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
        if np.issubdtype(target, np.integer):
            info = np.iinfo(target)
            if data.size and (data.min() < info.min or data.max() > info.max):
                raise ProcessingError(
                    f"values {data.min():g}..{data.max():g} do not fit {dtype} ({info.min}..{info.max})",
                    image.meta.get("source"),
                )
            if np.issubdtype(data.dtype, np.floating):
                data = np.rint(data)
        out = out.with_data(data.astype(target))
    return out


@command(
    "convert",
    summary="Convert images (DICOM, NIfTI, MGZ, NRRD, MetaImage in; all but DICOM out); change dtype or orientation.",
    description="The output format follows the output's extension. Geometry (affine) is kept to 1e-5 mm and "
    "voxel values exactly, unless --dtype asks for a cast.",
    examples=[
        ("DICOM series to NIfTI", "medcli convert dicom_dir/ -o scan.nii.gz"),
        ("NIfTI to NRRD in LPS orientation", "medcli convert scan.nii.gz --reorient LPS -o scan.nrrd"),
        ("Stream through a pipe", "medcli convert a.nrrd -o - | medcli convert - -o b.nii.gz"),
        ("Many files at once", "medcli convert *.mha -o nifti/{stem}.nii.gz"),
    ],
)
def cli(
    dtype: Annotated[Optional[str], typer.Option("--dtype", help=f"Output dtype: {', '.join(DTYPES)}.")] = None,
    reorient: Annotated[Optional[str], typer.Option("--reorient", help="Reorient the array, e.g. RAS or LPS.")] = None,
):
    def step(image: Image, job: Job) -> Image:  # noqa: ARG001
        return convert(image, dtype=dtype, reorient=reorient)

    return step

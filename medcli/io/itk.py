"""NRRD and MetaImage through SimpleITK, converting ITK's LPS geometry to RAS+.

ITK stores direction cosines, spacing and origin in LPS; medcli's affine is
RAS+, so both the direction and the origin flip sign on their first two rows.
Geometry is carried in float64 end to end, so a round trip keeps it to 1e-5 mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medcli.errors import InputError
from medcli.image import Image

_LPS = np.diag([-1.0, -1.0, 1.0])


def _sitk():
    import SimpleITK as sitk

    from medcli.cli.runtime import configure_itk

    configure_itk(sitk)
    return sitk


def read_itk(path: Path) -> Image:
    sitk = _sitk()
    from medcli.io import check_size

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(f"not a valid {path.suffix.lstrip('.').upper()} file ({_itk_msg(e)})", path) from e
    size = tuple(int(s) for s in reader.GetSize())
    ncomp = int(reader.GetNumberOfComponents())
    dim = len(size)
    shape = size + ((ncomp,) if ncomp > 1 else ())
    check_size(shape, path)
    if dim == 2:
        shape = size + (1,) + ((ncomp,) if ncomp > 1 else ())
    affine = itk_geometry_to_affine(reader.GetDirection(), reader.GetSpacing(), reader.GetOrigin(), dim)
    meta = {"format": "itk"}
    for key in reader.GetMetaDataKeys():
        if key in ("medcli", "content"):
            meta["description"] = reader.GetMetaData(key)

    def load() -> np.ndarray:
        try:
            img = reader.Execute()
        except RuntimeError as e:
            raise InputError(f"cannot read voxel data, file truncated or corrupt ({_itk_msg(e)})", path) from e
        arr = sitk.GetArrayFromImage(img)  # (z, y, x[, c]) or (t, z, y, x)
        if ncomp > 1:
            arr = np.moveaxis(arr, -1, 0)
        arr = arr.transpose(tuple(range(arr.ndim))[::-1]) if ncomp == 1 else _comp_last(arr)
        return np.ascontiguousarray(arr).reshape(shape)

    dtype = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1] * dim, reader.GetPixelID())).dtype) if ncomp == 1 else None
    return Image(load, affine, meta, shape=shape, dtype=dtype)


def _comp_last(arr: np.ndarray) -> np.ndarray:
    # arr is (c, z, y, x): reverse the spatial axes and keep components last
    spatial = arr.ndim - 1
    return arr.transpose(tuple(range(spatial, 0, -1)) + (0,))


def itk_geometry_to_affine(direction, spacing, origin, dim: int) -> np.ndarray:
    d = np.asarray(direction, float).reshape(dim, dim)
    aff = np.eye(4)
    k = min(dim, 3)
    rot = np.eye(3)
    rot[:k, :k] = d[:k, :k]
    sp = np.ones(3)
    sp[:k] = np.asarray(spacing, float)[:k]
    org = np.zeros(3)
    org[:k] = np.asarray(origin, float)[:k]
    aff[:3, :3] = _LPS @ rot @ np.diag(sp)
    aff[:3, 3] = _LPS @ org
    return aff


def write_itk(image: Image, path: Path) -> None:
    sitk = _sitk()
    data = image.data
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    sp = np.asarray(image.spacing)
    rot = image.affine[:3, :3] / sp
    d3 = _LPS @ rot
    o3 = _LPS @ image.affine[:3, 3]
    if data.ndim == 4:
        arr = data.transpose(3, 2, 1, 0)  # (t, z, y, x)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=False)
        d4 = np.eye(4)
        d4[:3, :3] = d3
        img.SetDirection(tuple(d4.ravel()))
        img.SetSpacing(tuple(sp.tolist()) + (float(image.meta.get("tr", 1.0)),))
        img.SetOrigin(tuple(o3.tolist()) + (0.0,))
    else:
        img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
        img.SetDirection(tuple(d3.ravel()))
        img.SetSpacing(tuple(sp.tolist()))
        img.SetOrigin(tuple(o3.tolist()))
    desc = image.meta.get("description")
    if desc:
        img.SetMetaData("medcli", desc)
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.SetUseCompression(True)
    writer.Execute(img)


def _itk_msg(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if "Description:" in line:
            return line.split("Description:", 1)[1].strip()[:160]
    return (lines[-1] if lines else type(e).__name__)[:160]

"""NRRD and MetaImage through SimpleITK, converting ITK's LPS geometry to RAS+.

ITK stores direction cosines, spacing and origin in LPS; medcli's affine is
RAS+, so both the direction and the origin flip sign on their first two rows.
Geometry is carried in float64 end to end, so a round trip keeps it to 1e-5 mm.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from medcli.errors import InputError
from medcli.image import Image

_LPS = np.diag([-1.0, -1.0, 1.0])


def _sitk():
    import SimpleITK as sitk

    from medcli.runtime import configure_itk

    configure_itk(sitk)
    return sitk


#: SimpleITK pixel type name -> numpy dtype of one component. Names, not the
#: integer IDs, because the IDs differ between SimpleITK builds (e.g. with or
#: without 64-bit integer support).
_PIXEL_DTYPES = {
    "sitkUInt8": np.uint8, "sitkInt8": np.int8,
    "sitkUInt16": np.uint16, "sitkInt16": np.int16,
    "sitkUInt32": np.uint32, "sitkInt32": np.int32,
    "sitkUInt64": np.uint64, "sitkInt64": np.int64,
    "sitkFloat32": np.float32, "sitkFloat64": np.float64,
    "sitkComplexFloat32": np.complex64, "sitkComplexFloat64": np.complex128,
    "sitkVectorUInt8": np.uint8, "sitkVectorInt8": np.int8,
    "sitkVectorUInt16": np.uint16, "sitkVectorInt16": np.int16,
    "sitkVectorUInt32": np.uint32, "sitkVectorInt32": np.int32,
    "sitkVectorUInt64": np.uint64, "sitkVectorInt64": np.int64,
    "sitkVectorFloat32": np.float32, "sitkVectorFloat64": np.float64,
}  # fmt: skip


def pixel_dtype(sitk, pixel_id: int) -> np.dtype | None:
    """The numpy dtype of one component of an ITK pixel type (None if unknown)."""
    for name, dtype in _PIXEL_DTYPES.items():
        if getattr(sitk, name, None) == pixel_id:
            return np.dtype(dtype)
    return None


def read_itk(path: Path) -> Image:
    """Read NRRD (.nrrd/.nhdr) or MetaImage (.mha/.mhd) lazily: the header now, voxels on first use.

    Array layout: ITK's (x, y, z[, t]) index order becomes medcli's array
    axes 0..3; a multi-component pixel (vector, RGB) becomes the 4th axis.
    """
    sitk = _sitk()
    from medcli.io import check_size

    kind = path.suffix.lstrip(".").upper()
    check_text_header(path, kind)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _quiet_stderr() as chatter:
            reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(f"not a valid {kind} file ({_itk_msg(e, chatter)})", path) from e
    size = tuple(int(s) for s in reader.GetSize())
    ncomp = int(reader.GetNumberOfComponents())
    dim = len(size)
    dtype = pixel_dtype(sitk, reader.GetPixelID())
    if dtype is None:
        raise InputError(f"unsupported {kind} pixel type {reader.GetPixelIDTypeAsString()!r}", path)
    if dim > 4 or (dim == 4 and ncomp > 1):
        raise InputError(f"{dim}D images with {ncomp} components per voxel are not supported", path)
    spatial = size + (1,) * (3 - dim) if dim < 3 else size
    shape = spatial + ((ncomp,) if ncomp > 1 else ())
    check_size(shape, path)
    spacing = tuple(float(v) for v in reader.GetSpacing())
    if any(v <= 0 for v in spacing[: min(dim, 3)]):
        kind = "zero" if any(v == 0 for v in spacing) else "negative"
        raise InputError(f"{kind} voxel size {spacing} in header", path)
    try:
        affine = itk_geometry_to_affine(reader.GetDirection(), reader.GetSpacing(), reader.GetOrigin(), dim)
    except ValueError as e:
        raise InputError(f"invalid geometry in header ({e})", path) from e
    meta: dict = {"format": "itk"}
    if dim == 4:
        meta["tr"] = float(reader.GetSpacing()[3])
    for key in reader.GetMetaDataKeys():
        if key in ("medcli", "content"):
            meta["description"] = reader.GetMetaData(key)

    def load() -> np.ndarray:
        try:
            with _quiet_stderr() as chatter:
                img = reader.Execute()
        except RuntimeError as e:
            raise InputError(f"cannot read voxel data, file truncated or corrupt ({_itk_msg(e, chatter)})", path) from e
        except MemoryError as e:
            raise InputError("not enough memory to read the voxels", path) from e
        # numpy's view is the reverse of ITK's index order: (t, z, y, x) or (z, y, x, c).
        arr = sitk.GetArrayFromImage(img)
        nsp = arr.ndim - (1 if ncomp > 1 else 0)
        axes = tuple(range(nsp - 1, -1, -1)) + ((nsp,) if ncomp > 1 else ())
        return np.ascontiguousarray(arr.transpose(axes)).reshape(shape)

    return Image(load, affine, meta, shape=shape, dtype=dtype)


#: Header fields that give the dimension count and the sizes, per format.
_TEXT_HEADERS = {
    "NRRD": (":", "dimension", "sizes", None),
    "NHDR": (":", "dimension", "sizes", None),
    "MHA": ("=", "ndims", "dimsize", "elementnumberofchannels"),
    "MHD": ("=", "ndims", "dimsize", "elementnumberofchannels"),
}


def check_text_header(path: Path, kind: str) -> None:
    """Refuse an absurd NRRD/MetaImage header before ITK sees it.

    ITK trusts these fields: ``NDims = 2147483648`` makes MetaIO loop for
    minutes and a huge ``sizes`` line allocates before reading. The header is
    text, so medcli checks the dimension count and sizes itself (and, through
    :func:`medcli.io.check_size`, the memory they claim) before any allocation.
    """
    from medcli.io import check_size

    sep, dim_key, size_key, chan_key = _TEXT_HEADERS[kind]
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return  # ITK will say why
    fields: dict[str, str] = {}
    for raw in head.split(b"\n"):
        line = raw.decode("latin-1").strip()
        if not line:
            if kind in ("NRRD", "NHDR") and fields:
                break  # the blank line that ends a NRRD header
            continue
        if line.startswith("#") or sep not in line:
            continue
        key, _, val = line.partition(sep)
        key = key.strip().lower()
        fields.setdefault(key, val.strip())
        if kind in ("MHA", "MHD") and key == "elementdatafile":
            break
    if dim_key not in fields and size_key not in fields:
        return  # not this format at all: ITK's own message is the clearest
    try:
        ndim = int(fields.get(dim_key, "0"))
        sizes = [int(v) for v in fields.get(size_key, "").split()]
        chans = int(fields.get(chan_key, "1")) if chan_key else 1
    except ValueError:
        raise InputError(f"invalid {kind} header: {dim_key}/{size_key} are not integers", path) from None
    if not 1 <= ndim <= 5:
        raise InputError(f"invalid {kind} header: {ndim} dimensions (medcli reads 2 to 4, plus vector components)", path)
    if len(sizes) != ndim:
        raise InputError(f"invalid {kind} header: {len(sizes)} sizes for {ndim} dimensions", path)
    if not 1 <= chans <= 4096:
        raise InputError(f"invalid {kind} header: {chans} components per voxel", path)
    check_size(tuple(sizes) + ((chans,) if chans > 1 else ()), path)


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
    from medcli.io.values import storable

    sitk = _sitk()
    data = storable(image.data, "itk", path=path).data  # exact: no NRRD/MetaImage type loses a value
    if data.ndim == 2:
        data = data[:, :, None]
    sp = np.asarray(image.spacing)
    rot = image.affine[:3, :3] / sp
    d3 = _LPS @ rot
    o3 = _LPS @ image.affine[:3, 3]
    if data.ndim == 4 and image.meta.get("color") and data.shape[3] in (3, 4):
        # Colour (e.g. a DICOM RGB capture): one 3-component vector pixel per voxel, as viewers expect.
        img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0, 3)), isVector=True)
        img.SetDirection(tuple(d3.ravel()))
        img.SetSpacing(tuple(sp.tolist()))
        img.SetOrigin(tuple(o3.tolist()))
    elif data.ndim == 4:
        arr = data.transpose(3, 2, 1, 0)  # (t, z, y, x)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=False)
        d4 = np.eye(4)
        d4[:3, :3] = d3
        img.SetDirection(tuple(d4.ravel()))
        from medcli.io.nifti import _positive

        tr = float(image.meta["tr"]) if _positive(image.meta.get("tr")) else 1.0
        img.SetSpacing(tuple(sp.tolist()) + (tr,))
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
    try:
        with _quiet_stderr():
            writer.Execute(img)
    except RuntimeError as e:
        raise _write_error(e, path) from e


@contextmanager
def _quiet_stderr():
    """Hold back what ITK's C++ code prints on stderr (fd 2) while it runs.

    MetaImage writes lines such as "M_WriteElementsData: file stream is fail"
    straight to std::cerr; medcli's errors are one line, so such chatter is
    logged at debug level instead of reaching the user.
    """
    import os
    import sys
    import tempfile

    said: list[str] = []
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured in tests)
        yield said
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), fd)
        try:
            yield said
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            buf.seek(0)
            chatter = buf.read().decode("utf-8", "replace").strip()
            if chatter:
                from medcli.runtime import log

                log.debug(f"ITK: {chatter}")
                said.extend(" ".join(line.split()) for line in chatter.splitlines() if line.strip())


def _write_error(e: RuntimeError, path: Path) -> Exception:
    """ITK reports I/O failures as RuntimeError; give back the OSError they were,
    so that :func:`medcli.io.safe.atomic_output` words them like any other."""
    import errno

    text = str(e).lower()
    if "no space" in text or "disk full" in text:
        return OSError(errno.ENOSPC, "No space left on device", str(path))
    if "too large" in text or "size limit" in text:
        return OSError(errno.EFBIG, "File too large", str(path))
    if "permission denied" in text:
        return OSError(errno.EACCES, "Permission denied", str(path))
    if "fwrite wrote only" in text or "couldn't write" in text or "stream is fail" in text:
        # NRRD's writer does not say why a write came up short: look for the usual causes.
        import os
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        try:
            import glob

            base = glob.escape(path.name[: -len(path.suffix)] if path.suffix else path.name)
            size = max((p.stat().st_size for p in path.parent.glob(base + "*")), default=0)
        except OSError:
            size = 0
        if limit != resource.RLIM_INFINITY and size >= limit * 0.9:
            return OSError(errno.EFBIG, "File too large", str(path))
        try:
            st = os.statvfs(path.parent)
            if st.f_bavail * st.f_frsize < 1 << 20:
                return OSError(errno.ENOSPC, "No space left on device", str(path))
        except OSError:
            pass
    from medcli.errors import ProcessingError

    return ProcessingError(f"cannot write ({_itk_msg(e)})", path)


def _itk_msg(e: Exception, chatter: list[str] | None = None) -> str:
    if chatter:  # what ITK printed is more telling than the errno it left behind
        return "; ".join(chatter)[:160]
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if "Description:" in line:
            return line.split("Description:", 1)[1].strip()[:160]
    return (lines[-1] if lines else type(e).__name__)[:160]

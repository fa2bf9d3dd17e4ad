"""NIfTI-1/2 and MGH/MGZ through nibabel, with lazy voxel access."""

from __future__ import annotations

import gzip
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from medcli.errors import InputError
from medcli.image import Image

#: NIfTI intent code for label maps.
NIFTI_INTENT_LABEL = 1002


def read_nibabel(path: Path) -> Image:
    import nibabel as nib

    try:
        with _header_problems() as problems:
            nimg = nib.load(str(path))
            shape = tuple(int(s) for s in nimg.shape)
    except (gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise InputError(f"corrupt or truncated gzip data ({e})", path) from e
    except Exception as e:  # nibabel raises many types for a bad header
        raise InputError(f"not a valid {_kind(path)} file ({_short(e)})", path) from e
    _judge_header_problems(problems, nimg.header, path)
    return from_nibabel(nimg, path, shape)


@contextmanager
def _header_problems():
    """Collect what nibabel's header checks report instead of letting it print them.

    nibabel silently "fixes" some broken headers (a zero voxel size becomes 1,
    a negative one its absolute value) and prints a note on stderr; medcli
    decides itself whether that is an error or a warning.
    """
    import logging

    from nibabel import imageglobals

    found: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record.getMessage())

    keep = _Keep()
    with imageglobals.LoggingOutputSuppressor():
        imageglobals.logger.addHandler(keep)
        try:
            yield found
        finally:
            imageglobals.logger.removeHandler(keep)


def _judge_header_problems(problems: list[str], hdr, path) -> None:
    from medcli.cli.runtime import log

    sform_used = "sform_code" in hdr and int(hdr["sform_code"]) > 0
    for msg in problems:
        if "pixdim[1,2,3]" in msg and not sform_used:
            kind = "zero" if "non-zero" in msg else "negative"
            raise InputError(f"{kind} voxel size in header (pixdim[1:4]) and no sform; refusing to guess the geometry", path)
        log.warning(f"{path}: header: {msg}")


def from_nibabel(nimg, path: str | Path, shape: tuple[int, ...] | None = None) -> Image:
    """Wrap a nibabel image (file-backed or in memory) as a lazy :class:`Image`."""
    from medcli.io import check_size

    shape = shape or tuple(int(s) for s in nimg.shape)
    if len(shape) > 4:
        # 5D NIfTI (e.g. vectors stored as t=1, c=3): fold trailing axes into the 4th.
        if shape[3] == 1:
            shape = shape[:3] + (int(np.prod(shape[4:])),)
        else:
            raise InputError(f"{len(shape)}D images are not supported (shape {shape})", path)
    check_size(shape, path)
    meta: dict = {"format": type(nimg).__name__}
    hdr = nimg.header
    affine = np.asarray(nimg.affine, float)
    if hasattr(hdr, "get_sform"):
        _check_qform_sform(hdr, path)
        descrip = hdr.get("descrip")
        if descrip is not None:
            d = np.asarray(descrip).tobytes().rstrip(b"\0").decode("latin-1", "replace").strip()
            if d:
                meta["description"] = d
        if int(hdr.get("intent_code", 0)) == NIFTI_INTENT_LABEL:
            meta["intent"] = "label"
        try:
            meta["xyzt_units"] = hdr.get_xyzt_units()
            if len(shape) == 4:
                # meta["tr"] is in seconds whatever unit the header uses.
                scale = {"msec": 1e-3, "usec": 1e-6}.get(hdr.get_xyzt_units()[1], 1.0)
                meta["tr"] = float(hdr.get_zooms()[3]) * scale
        except Exception:
            pass
    elif "tr" in hdr and float(hdr["tr"]) > 0 and len(shape) == 4:
        meta["tr"] = float(hdr["tr"]) / 1000.0  # MGH keeps TR in milliseconds
    # Native byte order: MGH is big-endian on disk, and torch refuses swapped arrays.
    dtype = np.dtype(nimg.get_data_dtype()).newbyteorder("=")
    slope, inter = (None, None)
    if hasattr(hdr, "get_slope_inter"):
        slope, inter = hdr.get_slope_inter()
    scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
    out_dtype = np.float64 if scaled and np.dtype(dtype).itemsize > 4 else (np.float32 if scaled else dtype)

    def load() -> np.ndarray:
        try:
            arr = np.asanyarray(nimg.dataobj)
        except (gzip.BadGzipFile, zlib.error, EOFError) as e:
            raise InputError(f"corrupt or truncated gzip data ({_short(e)})", path) from e
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read voxel data, file truncated or corrupt ({_short(e)})", path) from e
        except MemoryError as e:
            raise InputError("not enough memory to read the voxels", path) from e
        except Exception as e:  # nibabel/numpy raise many types on a corrupt payload
            raise InputError(f"cannot read voxel data ({_short(e)})", path) from e
        if arr.dtype != out_dtype:
            arr = arr.astype(out_dtype)
        return arr.reshape(shape)

    return Image(load, affine, meta, shape=shape, dtype=out_dtype)


def _check_qform_sform(hdr, path) -> None:
    try:
        qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    except Exception:
        return
    if qcode > 0 and scode > 0:
        q, s = hdr.get_qform(), hdr.get_sform()
        if not np.allclose(q, s, atol=1e-3):
            from medcli.cli.runtime import log

            log.warning(f"{path}: qform and sform disagree; using the sform (as nibabel and FSL do)")


def to_nibabel(image: Image, nifti2: bool = False):
    """The nibabel NIfTI image of ``image`` (sform = qform = affine)."""
    import nibabel as nib

    data = _storable(image.data)
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    nimg = cls(data, image.affine)
    hdr = nimg.header
    hdr.set_sform(image.affine, code=int(image.meta.get("sform_code", 1)))
    hdr.set_qform(image.affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    if data.ndim == 4 and "tr" in image.meta:
        zooms = list(hdr.get_zooms())
        zooms[3] = float(image.meta["tr"])
        hdr.set_zooms(zooms)
    desc = image.meta.get("description")
    if desc:
        hdr["descrip"] = desc.encode("latin-1", "replace")[:79]
    if image.meta.get("intent") == "label":
        hdr.set_intent(NIFTI_INTENT_LABEL)
    return nimg


def write_nibabel(image: Image, path: Path) -> None:
    import nibabel as nib

    name = str(path).lower()
    if name.endswith((".mgz", ".mgh")):
        data = _storable(image.data)
        if data.dtype not in (np.uint8, np.int16, np.int32, np.float32):
            data = data.astype(np.float32)
        mgh = nib.MGHImage(data, image.affine)
        if data.ndim == 4 and "tr" in image.meta:
            mgh.header["tr"] = float(image.meta["tr"]) * 1000.0
        nib.save(mgh, str(path))
        return
    nimg = to_nibabel(image)
    nimg.to_filename(str(path))


def _storable(data: np.ndarray) -> np.ndarray:
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype == np.int64:
        if data.size == 0 or (data.min() >= np.iinfo(np.int32).min and data.max() <= np.iinfo(np.int32).max):
            return data.astype(np.int32)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data


def _kind(path: Path) -> str:
    return "MGH/MGZ" if str(path).lower().endswith((".mgh", ".mgz")) else "NIfTI"


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:160]

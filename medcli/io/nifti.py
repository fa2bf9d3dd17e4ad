"""NIfTI-1/2 and MGH/MGZ through nibabel, with lazy voxel access."""

from __future__ import annotations

import gzip
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from medcli.errors import InputError
from medcli.image import Image
from medcli.io.values import apply_scaling

#: NIfTI intent code for label maps.
NIFTI_INTENT_LABEL = 1002


def read_nibabel(path: Path, load=None, kind: str | None = None) -> Image:
    """Read a file nibabel opens (NIfTI, MGH, and through ``load`` the formats of :mod:`medcli.io.neuro`).

    Args:
        path: The file.
        load: ``load(path) -> nibabel image``; ``nibabel.load`` by default.
        kind: Format name for messages (from the extension by default).
    """
    import nibabel as nib

    kind = kind or _kind(path)
    if load is None and kind == "MGH/MGZ":
        _check_mgh_size(path)
    try:
        with _header_problems() as problems:
            nimg = (load or (lambda p: nib.load(str(p))))(path)
            shape = tuple(int(s) for s in nimg.shape)
    except InputError:
        raise
    except (gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise InputError(f"corrupt or truncated gzip data ({e})", path) from e
    except Exception as e:  # nibabel raises many types for a bad header
        raise InputError(f"not a valid {kind} file ({_short(e)})", path) from e
    from medcli.io.neuro import refuse_non_volume

    refuse_non_volume(nimg, path)
    _judge_header_problems(problems, nimg.header, path)
    return from_nibabel(nimg, path, shape)


def _check_mgh_size(path: Path) -> None:
    """Refuse absurd MGH dimensions before nibabel seeks or allocates for them.

    The MGH header starts with big-endian int32 version, width, height, depth, frames.
    """
    from medcli.io import check_size

    try:
        opener = gzip.open if str(path).lower().endswith(".mgz") else open
        with opener(path, "rb") as f:
            head = f.read(20)
    except (OSError, EOFError, zlib.error):
        return  # nibabel's own message follows
    if len(head) < 20:
        return
    version, *dims = (int(v) for v in np.frombuffer(head, ">i4"))
    if version != 1:
        return
    check_size(tuple(dims[:3]) + ((dims[3],) if dims[3] > 1 else ()), path)


@contextmanager
def _header_problems():
    """Collect what nibabel's header checks report instead of letting it print them.

    nibabel silently "fixes" some broken headers (a zero voxel size becomes 1,
    a negative one its absolute value) and prints a note on stderr; medcli
    decides itself whether that is an error or a warning.
    """
    import logging
    import warnings

    from nibabel import imageglobals

    found: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record.getMessage())

    keep = _Keep()
    with imageglobals.LoggingOutputSuppressor(), warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        imageglobals.logger.addHandler(keep)
        try:
            yield found
        finally:
            imageglobals.logger.removeHandler(keep)
            noise = (ResourceWarning, DeprecationWarning, PendingDeprecationWarning, FutureWarning)
            found.extend(" ".join(str(w.message).split()) for w in said if not issubclass(w.category, noise))


def _judge_header_problems(problems: list[str], hdr, path) -> None:
    from medcli.runtime import log

    try:
        sform_used = int(hdr["sform_code"]) > 0
    except Exception:  # not a NIfTI header
        sform_used = False
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
    elif type(nimg).__name__ == "MGHImage" and float(hdr["tr"]) > 0 and len(shape) == 4:
        meta["tr"] = float(hdr["tr"]) / 1000.0  # MGH keeps TR in milliseconds
    perm = _axis_order(nimg, shape, path)
    if perm is not None:
        shape = tuple(shape[i] for i in perm)
    dtype, values, scaling = _values(nimg, path)
    if scaling:
        meta["scaling"] = scaling
        meta["values"] = f"{scaling['dtype']} on disk * {scaling['slope']:g} + {scaling['inter']:g} (scl_slope/scl_inter applied)"

    def load() -> np.ndarray:
        try:
            arr = values()
        except InputError:
            raise
        except (gzip.BadGzipFile, zlib.error, EOFError) as e:
            raise InputError(f"corrupt or truncated gzip data ({_short(e)})", path) from e
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read voxel data, file truncated or corrupt ({_short(e)})", path) from e
        except MemoryError as e:
            raise InputError("not enough memory to read the voxels", path) from e
        except Exception as e:  # nibabel/numpy raise many types on a corrupt payload
            raise InputError(f"cannot read voxel data ({_short(e)})", path) from e
        if perm is not None:
            arr = np.ascontiguousarray(arr.transpose(perm))
        if arr.dtype != dtype:
            arr = arr.astype(dtype)
        return arr.reshape(shape)

    return Image(load, affine, meta, shape=shape, dtype=dtype)


def _axis_order(nimg, shape: tuple[int, ...], path) -> tuple[int, ...] | None:
    """MINC stores time (or vectors) as any axis, often the first; medcli's 4th axis is the non-spatial one."""
    names = getattr(getattr(nimg.dataobj, "minc_file", None), "_dim_names", None)
    if not names or len(names) != len(shape):
        return None
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    spatial = [i for i, n in enumerate(names) if n.endswith("space")]
    other = [i for i, n in enumerate(names) if not n.endswith("space")]
    if len(spatial) != 3 or len(other) > 1:
        raise InputError(f"MINC dimensions {names} are not three spatial axes (+ one other)", path)
    perm = tuple(spatial + other)
    return None if perm == tuple(range(len(shape))) else perm


def _values(nimg, path):
    """(dtype, loader, scaling) of a nibabel image's voxels, scale factors applied.

    Plain NIfTI/Analyze proxies: integers with scl_slope/scl_inter become
    ``raw * slope + inter`` in float32 (raw of 8/16 bits, as nibabel computes it)
    or float64 (wider raw); ``scaling`` records the raw type, slope and
    intercept so that a NIfTI writer can store the very same integers again.
    Other proxies (MINC, PAR/REC, AFNI, ECAT) scale per slice or sub-brick:
    nibabel's own scaled array is used, its type probed on one voxel.
    """
    proxy = nimg.dataobj
    if isinstance(proxy, np.ndarray):
        return proxy.dtype.newbyteorder("="), (lambda: proxy), None
    if type(proxy).__name__ == "ArrayProxy":
        raw_dtype = np.dtype(nimg.get_data_dtype()).newbyteorder("=")
        slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
        if not (np.isfinite(slope) and np.isfinite(inter)):
            raise InputError(f"scale factors scl_slope={slope:g}, scl_inter={inter:g} are not finite", path)
        if (slope, inter) == (1.0, 0.0):
            return raw_dtype, (lambda: np.asanyarray(proxy)), None
        # 8/16-bit integers times a float32 slope: float32 keeps 24 bits, enough for every raw value
        ftype = np.dtype(np.float32 if raw_dtype.kind in "iu" and raw_dtype.itemsize <= 2 else np.float64)

        def scaled() -> np.ndarray:
            # float64 arithmetic (as nibabel's get_fdata), then one rounding to float32 for narrow raw types
            return apply_scaling(np.asanyarray(proxy.get_unscaled()), slope, inter, ftype)

        scaling = {"dtype": raw_dtype.name, "slope": slope, "inter": inter} if raw_dtype.kind in "iu" else None
        return ftype, scaled, scaling
    try:
        probe = np.asanyarray(proxy[(slice(0, 1),) * len(proxy.shape)])
    except Exception as e:  # the data file is missing or truncated
        raise InputError(f"cannot read voxel data ({_short(e)})", path) from e
    return probe.dtype.newbyteorder("="), (lambda: np.asanyarray(proxy)), None


def _check_qform_sform(hdr, path) -> None:
    try:
        qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    except Exception:
        return
    if qcode > 0 and scode > 0:
        q, s = hdr.get_qform(), hdr.get_sform()
        if not np.allclose(q, s, atol=1e-3):
            from medcli.runtime import log

            log.warning(f"{path}: qform and sform disagree; using the sform (as nibabel and FSL do)")


def to_nibabel(image: Image, nifti2: bool = False):
    """The nibabel NIfTI image of ``image`` (sform = qform = affine).

    Values are stored exactly (:func:`medcli.io.values.storable`): an image read
    from scaled integers and unchanged since gets its raw integers and
    scl_slope/scl_inter back.
    """
    import nibabel as nib

    from medcli.io.values import storable

    stored = storable(image.data, "nifti", image.meta.get("scaling"))
    data = stored.data
    colour = image.meta.get("color") and data.ndim == 4 and data.shape[3] in (3, 4)
    if colour:
        data = data[:, :, :, None, :]  # NIfTI keeps vector components on the 5th axis (t = 1)
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    nimg = cls(data, image.affine)
    if colour:
        nimg.header.set_intent("vector")
    hdr = nimg.header
    if stored.slope is not None:
        hdr.set_slope_inter(stored.slope, stored.inter)
    hdr.set_sform(image.affine, code=int(image.meta.get("sform_code", 1)))
    hdr.set_qform(image.affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    if data.ndim == 4 and _positive(image.meta.get("tr")):
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

    from medcli.io.values import storable

    name = str(path).lower()
    if name.endswith((".mgz", ".mgh")):
        stored = storable(image.data, "mgh", path=path)
        if stored.note:
            from medcli.runtime import log

            log.warning(f"MGH/MGZ output: {stored.note}")
        data = stored.data
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]  # MGH has no 4D with one frame: it is a 3D volume
        mgh = nib.MGHImage(data, image.affine)
        if data.ndim == 4 and _positive(image.meta.get("tr")):
            mgh.header["tr"] = float(image.meta["tr"]) * 1000.0
        nib.save(mgh, str(path))
        return
    nimg = to_nibabel(image)
    nimg.to_filename(str(path))


def _positive(value) -> bool:
    """A usable TR: a finite number above zero (a corrupt header may say 0, -1 or NaN)."""
    try:
        return bool(np.isfinite(float(value)) and float(value) > 0)
    except (TypeError, ValueError):
        return False


def _kind(path: Path) -> str:
    return "MGH/MGZ" if str(path).lower().endswith((".mgh", ".mgz")) else "NIfTI"


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:160]

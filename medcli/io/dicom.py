"""DICOM series (a folder, searched recursively, or one file) through pydicom.

Geometry is rebuilt from the tags, never from the file order:

* the slice normal is the cross product of the two ImageOrientationPatient
  (IOP) direction cosines, and slices are sorted by the projection of their
  ImagePositionPatient (IPP) on that normal, so a shuffled, renamed or
  oblique series comes out the same;
* the affine is built in DICOM's LPS world from IOP, IPP and PixelSpacing and
  converted to medcli's RAS+ (the first two world axes change sign).

A series whose slices do not form one regular grid is **refused** with an
:class:`~medcli.errors.InputError` that names the defect: missing slices
(a gap that is a multiple of the usual step), irregular spacing, gantry tilt
(slices shifted in-plane from one to the next, i.e. a sheared grid) or
slices with different orientations or sizes. Resampling such a series onto a
regular grid would invent voxel values and is left to the user, who can then
decide how (for instance ``dcm2niix`` corrects gantry tilt); silently writing
a wrong or sheared affine would be worse.

Slices that share a position (repeated acquisitions, echoes, diffusion
directions) become a 4D image when every position has the same number of
them, ordered by temporal position, acquisition, echo and instance number.

Multi-frame files are read frame by frame: enhanced objects (per-frame
functional groups: plane position, orientation, pixel measures, rescale) and
legacy multi-frame objects with a GridFrameOffsetVector (e.g. RT dose).
Enhanced frames at one position are ordered along their dimension (temporal
position, echo time, b-value and gradient direction), so a multi-echo,
dynamic or diffusion object is one 4D image; an object holding several stacks
(StackID, e.g. a three-plane localizer) lists each stack as its own series.

Siemens mosaics (ImageType MOSAIC: one file per volume, slices tiled in
one image) are unpacked with the CSA header through nibabel.nicom (the
mosaic's corrected position, slice normal and count; b-value and gradient
for diffusion), so a DWI or fMRI run is one 4D image.

Compressed transfer syntaxes (JPEG baseline/extended/lossless, JPEG-LS, JPEG
2000, RLE, deflate) are decoded by pydicom's plugins (pylibjpeg and its
libjpeg, openjpeg and rle packages, dependencies of medcli). Files written
without the Part 10 preamble and meta header are read (pydicom's ``force``)
with a warning.

Images without patient geometry (no ImagePositionPatient /
ImageOrientationPatient: radiographs, secondary captures, ultrasound) are
read as 2D images: grey ``(columns, rows)``, several frames ``(columns, rows,
1, frames)``, colour (RGB, YBR, palette, converted to RGB as pydicom does)
``(columns, rows, 1, 3)`` with ``meta["color"] = "RGB"``; the pixel spacing
comes from PixelSpacing or else ImagerPixelSpacing, the orientation is
DICOM's default (rows along patient left, columns along posterior, origin 0),
and a warning says that there is no patient position. Non-image objects
(structured reports, RT structure sets and plans, waveforms, presentation
states...) are refused with a :class:`NotAnImage` error naming what they are.

Example:
    >>> from pathlib import Path
    >>> from medcli.io.dicom import read_dicom
    >>> img = read_dicom(Path("medcli/data/ct_small.dcm"))  # doctest: +SKIP
    >>> img.shape, img.meta["dicom"]["modality"]  # doctest: +SKIP
    ((128, 128, 1), 'CT')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcli.errors import InputError
from medcli.image import Image

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class NotAnImage(InputError):
    """DICOM objects without pixels (SR, RT plan/structure set, waveform...).

    ``objects`` lists what was found (file, SOP class and its name, modality,
    description), so that ``medcli info`` can say what they are.
    """

    def __init__(self, message: str, path: Any, objects: list[dict]):
        super().__init__(message, path)
        self.objects = objects


#: Storage class of DICOMDIR index files (no pixels; skipped in folders).
_DICOMDIR_UID = "1.2.840.10008.1.3.10"

#: Tolerances. DICOM stores positions as decimal strings (up to 16 characters),
#: and scanners round them, so comparisons allow a little slack.
_ORIENT_TOL = 1e-4  # direction cosines
_STEP_ABS_TOL = 0.02  # mm
_STEP_REL_TOL = 0.01  # fraction of the slice step
_SHEAR_ABS_TOL = 0.02  # mm of in-plane drift of a slice origin


@dataclass
class _Slice:
    """One 2D frame of a series, with what is needed to place it."""

    file: Path
    frame: int | None  # index into a multi-frame file, None for single-frame
    position: np.ndarray | None  # IPP (LPS mm)
    orientation: np.ndarray | None  # IOP (6 direction cosines)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns)
    thickness: float | None
    slope: float
    intercept: float
    rows: int
    cols: int
    order: tuple = ()  # ordering of repeated slices at one position (4D)
    samples: int = 1
    forced: bool = False  # no Part 10 header: read with pydicom's force
    mosaic: int = 0  # Siemens mosaic: slices in the file (frame = tile index), 0 otherwise
    labels: dict = field(default_factory=dict)  # what tells the volumes apart (echo time, b-value...)


@dataclass
class _Series:
    uid: str
    number: int | None
    description: str
    modality: str
    manufacturer: str
    first: Any  # the header of the first file (for dtype and summary)
    slices: list[_Slice] = field(default_factory=list)
    files: set = field(default_factory=set)
    stack: str | None = None  # StackID of an enhanced object holding several stacks


# -- discovery ------------------------------------------------------------------------------------


def _list_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            files.append(p)
    return files


def _read_header(path: Path, explicit: bool):
    from pydicom.errors import InvalidDicomError

    try:
        ds = _dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        ds = _read_headerless(path, explicit)
        if ds is None:
            if explicit:
                raise InputError("not a valid DICOM file", path) from None
            return None
    except PermissionError as e:
        raise InputError("permission denied", path) from e
    except Exception as e:  # noqa: BLE001 - pydicom raises many types on garbage
        if explicit:
            raise InputError(f"not a valid DICOM file ({_short(e)})", path) from e
        return None
    if explicit and not _looks_like_dicom(ds):
        raise InputError("not a valid DICOM file (no image attributes)", path)
    return ds


def _dcmread(path: Path, **kw):
    """pydicom.dcmread, with pydicom's own warnings (odd VRs, encodings) logged at debug level."""
    import warnings

    import pydicom

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(str(path), **kw)
    if said:
        from medcli.runtime import log

        for w in said:
            log.debug(f"{path}: pydicom: {str(w.message).splitlines()[0]}")
    return ds


#: Groups a raw (headerless) DICOM data set starts with: command, file meta, identification.
_FIRST_GROUPS = {0x0000, 0x0002, 0x0008}


def _read_headerless(path: Path, explicit: bool):
    """A data set written without preamble and meta header (pre-Part 10, or raw dumps).

    Read with pydicom's ``force`` only when the first bytes are the tag of a
    group such a data set starts with, so that random files in a folder are
    not parsed as DICOM.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        if explicit:
            raise InputError(f"cannot read ({e.strerror})", path) from e
        return None
    if len(head) < 4:
        return None
    little = int.from_bytes(head[:2], "little"), int.from_bytes(head[2:4], "little")
    big = int.from_bytes(head[:2], "big"), int.from_bytes(head[2:4], "big")
    if not any(g in _FIRST_GROUPS and e < 0x0100 for g, e in (little, big)):
        return None
    try:
        ds = _dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - not DICOM after all
        return None
    if not _looks_like_dicom(ds):
        return None
    implicit, little_endian = ds.original_encoding
    from medcli.runtime import log

    log.warning(
        f"{path}: no DICOM Part 10 header (preamble and meta information); read as "
        f"{'implicit' if implicit else 'explicit'} VR {'little' if little_endian else 'big'} endian"
    )
    ds.medcli_forced = True
    return ds


def _looks_like_dicom(ds) -> bool:
    keys = ("SOPClassUID", "Rows", "Modality", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
    return any(k in ds for k in keys) or "MediaStorageSOPClassUID" in getattr(ds, "file_meta", {})


def _object_summary(ds, path: Path) -> dict:
    """What a DICOM object without an image is: SOP class (and its name), modality, description."""
    from pydicom.uid import UID

    sop = str(getattr(ds, "SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    name = UID(sop).name if sop else "unknown SOP class"
    if sop and name == sop:
        name = "private or unknown SOP class"
    if "Image Storage" in name:  # an image class, but no pixels came with it
        name += " without pixel data"
    return {
        "file": str(path),
        "sop_class_uid": sop,
        "sop_class": name,
        "modality": str(getattr(ds, "Modality", "") or ""),
        "description": str(getattr(ds, "SeriesDescription", "") or getattr(ds, "StudyDescription", "") or ""),
    }


def _not_an_image(objects: list[dict], path: Path, explicit: bool, searched: int) -> NotAnImage:
    if explicit:
        o = objects[0]
        name, bare = o["sop_class"], " without pixel data"
        what = name[: -len(bare)] + " object" + bare if name.endswith(bare) else name + " object"
        what += f" (modality {o['modality']})" if o["modality"] else ""
        hint = "; give the folder it indexes" if o["sop_class_uid"] == _DICOMDIR_UID else "; medcli reads images only"
        return NotAnImage(f"not an image: DICOM {what}{hint}", path, objects)
    kinds: dict[str, int] = {}
    for o in objects:
        key = o["sop_class"] + (f" ({o['modality']})" if o["modality"] else "")
        kinds[key] = kinds.get(key, 0) + 1
    listing = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    return NotAnImage(
        f"no DICOM images in this folder ({searched} files searched), only {len(objects)} non-image object(s): {listing}",
        path,
        objects,
    )


def _scan(path: Path) -> dict[str, _Series]:
    files = _list_files(path)
    explicit = path.is_file()
    series: dict[str, _Series] = {}
    objects: list[dict] = []
    for f in files:
        ds = _read_header(f, explicit)
        if ds is None:
            continue
        sop = str(getattr(ds, "SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if sop == _DICOMDIR_UID or "Rows" not in ds or "Columns" not in ds or not _has_pixels(ds):
            objects.append(_object_summary(ds, f))  # index files, structured reports, RT plans: no image
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "(no SeriesInstanceUID)")
        for stack, slices in _stacks_of(_slices_of(ds, f)):
            key = uid if stack is None else f"{uid}/stack-{stack}"
            s = series.get(key)
            if s is None:
                num = getattr(ds, "SeriesNumber", None)
                desc = str(getattr(ds, "SeriesDescription", "") or "")
                s = series[key] = _Series(
                    uid=key,
                    number=_int_or_none(num),
                    description=desc + (f" (stack {stack})" if stack is not None else ""),
                    modality=str(getattr(ds, "Modality", "") or ""),
                    manufacturer=str(getattr(ds, "Manufacturer", "") or ""),
                    first=ds,
                    stack=stack,
                )
            s.slices.extend(slices)
            s.files.add(f)
    if not series:
        if objects:
            raise _not_an_image(objects, path, explicit, len(files))
        where = "file" if explicit else f"folder ({len(files)} files searched)"
        raise InputError(f"no DICOM files found in this {where}", path)
    return series


def _int_or_none(v) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _has_pixels(ds) -> bool:
    # stop_before_pixels leaves the pixel element out; the image attributes say whether one follows.
    return "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds or "BitsAllocated" in ds


def _stacks_of(slices: list[_Slice]) -> list[tuple[str | None, list[_Slice]]]:
    """Split the frames of an enhanced object into its stacks (StackID) when it holds several."""
    ids = [sl.labels.get("stack") for sl in slices]
    distinct = sorted({i for i in ids if i is not None}, key=lambda v: (len(v), v))
    if len(distinct) < 2 or any(i is None for i in ids):
        return [(None, slices)]
    return [(i, [sl for sl in slices if sl.labels.get("stack") == i]) for i in distinct]


def _float(v, default=None):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _vec(v, n):
    if v is None:
        return None
    try:
        arr = np.array([float(x) for x in v], float)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) else None


def _pixel_spacing(ds):
    ps = _vec(getattr(ds, "PixelSpacing", None), 2)
    if ps is None:
        ps = _vec(getattr(ds, "ImagerPixelSpacing", None), 2)
    return None if ps is None else (float(ps[0]), float(ps[1]))


def _order_key(ds) -> tuple:
    def num(name):
        v = getattr(ds, name, None)
        if isinstance(v, (list, tuple)) or (hasattr(v, "__len__") and not isinstance(v, str) and v is not None):
            v = v[0] if len(v) else None
        return _float(v, 0.0)

    return (
        num("TemporalPositionIdentifier"),
        num("AcquisitionNumber"),
        num("EchoNumbers"),
        num("TriggerTime"),
        num("InstanceNumber"),
    )


def _frames(ds, path: Path) -> int:
    v = getattr(ds, "NumberOfFrames", None)
    if v in (None, ""):
        return 1
    try:
        n = int(str(v).strip())
    except (TypeError, ValueError):
        raise InputError(f"invalid NumberOfFrames {str(v)!r}", path) from None
    if n < 1:
        raise InputError(f"invalid NumberOfFrames {n}", path)
    return n


def _samples(ds) -> int:
    if str(getattr(ds, "PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR":
        return 3  # indices into red, green and blue tables: read as RGB
    return int(_float(getattr(ds, "SamplesPerPixel", 1), 1) or 1)


def _slices_of(ds, path: Path) -> list[_Slice]:
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = _samples(ds)
    nframes = _frames(ds, path)
    slope = _float(getattr(ds, "RescaleSlope", None), 1.0)
    inter = _float(getattr(ds, "RescaleIntercept", None), 0.0)
    if str(getattr(ds, "Modality", "")) == "RTDOSE" and "DoseGridScaling" in ds:
        slope = _float(ds.DoseGridScaling, 1.0)  # dose in Gy = stored value * scaling
    ipp = _vec(getattr(ds, "ImagePositionPatient", None), 3)
    iop = _vec(getattr(ds, "ImageOrientationPatient", None), 6)
    ps = _pixel_spacing(ds)
    thick = _float(getattr(ds, "SliceThickness", None))
    base = _order_key(ds)
    forced = bool(getattr(ds, "medcli_forced", False))
    common = dict(rows=rows, cols=cols, samples=samples, forced=forced)

    if nframes <= 1 and _is_mosaic(ds):
        return _mosaic_slices(ds, path, iop, ps, thick, slope, inter, base, forced)
    if nframes <= 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        return [_Slice(path, None, ipp, iop, ps, thick, slope, inter, order=base, **common)]

    shared = _first(getattr(ds, "SharedFunctionalGroupsSequence", None))
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if per_frame is not None and len(per_frame) > nframes:
        from medcli.runtime import log

        log.warning(f"{path}: {len(per_frame)} per-frame functional groups for {nframes} frame(s); using the first {nframes}")
        per_frame = list(per_frame)[:nframes]
    if per_frame is not None and len(per_frame) == nframes:
        out = []
        for k, fg in enumerate(per_frame):
            pos = _fg(fg, shared, "PlanePositionSequence", "ImagePositionPatient")
            ori = _fg(fg, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
            pix = _fg(fg, shared, "PixelMeasuresSequence", "PixelSpacing")
            th = _fg(fg, shared, "PixelMeasuresSequence", "SliceThickness")
            sl = _fg(fg, shared, "PixelValueTransformationSequence", "RescaleSlope")
            ic = _fg(fg, shared, "PixelValueTransformationSequence", "RescaleIntercept")
            labels = _frame_labels(fg, shared)
            pv = _vec(pix, 2)
            out.append(
                _Slice(
                    path,
                    k if nframes > 1 else None,
                    _vec(pos, 3) if pos is not None else ipp,
                    _vec(ori, 6) if ori is not None else iop,
                    (float(pv[0]), float(pv[1])) if pv is not None else ps,
                    _float(th, thick),
                    _float(sl, slope),
                    _float(ic, inter),
                    order=(
                        labels.get("temporal_position", 0.0),
                        labels.get("echo_time", 0.0),
                        labels.get("b_value", 0.0),
                        tuple(labels.get("gradient", ())),
                    )
                    + base
                    + (labels.get("in_stack", 0.0), k),
                    labels=labels,
                    **common,
                )
            )
        return out
    if nframes <= 1:
        return [_Slice(path, None, ipp, iop, ps, thick, slope, inter, order=base, **common)]
    offsets = getattr(ds, "GridFrameOffsetVector", None)
    if offsets is not None and len(offsets) == nframes and ipp is not None and iop is not None:
        # Legacy multi-frame (RT dose): frame k lies offsets[k] mm along the normal from IPP.
        normal = np.cross(iop[:3], iop[3:])
        return [
            _Slice(path, k, ipp + float(off) * normal, iop, ps, thick, slope, inter, order=base + (k,), **common)
            for k, off in enumerate(offsets)
        ]
    # Frames without their own positions (cine, ultrasound loops): nothing to place them with.
    return [_Slice(path, k, None, iop, ps, thick, slope, inter, order=base + (k,), **common) for k in range(nframes)]


def _is_mosaic(ds) -> bool:
    kinds = getattr(ds, "ImageType", None) or []
    kinds = [kinds] if isinstance(kinds, str) else kinds
    return any(str(k).strip().upper() == "MOSAIC" for k in kinds) and "SIEMENS" in str(getattr(ds, "Manufacturer", "")).upper()


def _mosaic_slices(ds, path: Path, iop, ps, thick, slope, inter, base, forced) -> list[_Slice]:
    """The slices tiled in a Siemens mosaic, placed with its CSA header (through nibabel.nicom).

    The mosaic's ImagePositionPatient is the corner of the whole tiled image,
    not of a slice; nibabel's MosaicWrapper corrects it, and the CSA header
    gives the number of slices, the slice normal and the diffusion b-value.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom warns that it is experimental on import
        from nibabel.nicom import csareader
        from nibabel.nicom.dicomwrappers import MosaicWrapper

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = MosaicWrapper(ds)
            n = int(w.n_mosaic)
            tile_rows, tile_cols = int(w.image_shape[0]), int(w.image_shape[1])
            pos0 = np.asarray(w.image_position, float)
            normal = np.asarray(w.slice_normal, float)
            step = float(w.voxel_sizes[2])
            csa = csareader.get_csa_header(ds, "image")
            bval = csareader.get_b_value(csa) if csa else None
            grad = csareader.get_g_vector(csa) if csa else None
    except Exception as e:  # noqa: BLE001 - a mosaic without a usable CSA header
        raise InputError(
            f"Siemens mosaic (ImageType MOSAIC) whose CSA header cannot be used to unpack the slices ({_short(e)}); "
            "try dcm2niix",
            path,
        ) from e
    if n < 1 or tile_rows < 1 or tile_cols < 1 or not np.all(np.isfinite(pos0)) or not np.all(np.isfinite(normal)):
        raise InputError(f"Siemens mosaic with an invalid CSA header ({n} slices of {tile_rows}x{tile_cols})", path)
    labels: dict = {}
    if bval is not None and np.isfinite(float(bval)):
        labels["b_value"] = float(bval)
        labels["gradient"] = [float(x) for x in grad] if grad is not None else [0.0, 0.0, 0.0]
    return [
        _Slice(
            path, k, pos0 + k * step * normal, iop, ps, thick, slope, inter,
            rows=tile_rows, cols=tile_cols, order=base + (k,), forced=forced, mosaic=n, labels=dict(labels),
        )
        for k in range(n)
    ]


def _unmosaic(arr: np.ndarray, rows: int, cols: int, n: int, path: Path) -> np.ndarray:
    """(n, rows, cols) slices from a mosaic image of tiles, row-major from the top left."""
    per_row = arr.shape[1] // cols
    if per_row < 1 or arr.shape[0] // rows * per_row < n:
        raise InputError(f"mosaic of shape {arr.shape} cannot hold {n} slices of {rows}x{cols}", path)
    out = np.empty((n, rows, cols), arr.dtype)
    for k in range(n):
        r, c = divmod(k, per_row)
        out[k] = arr[r * rows : (r + 1) * rows, c * cols : (c + 1) * cols]
    return out


def _frame_labels(fg, shared) -> dict:
    """What sets a frame of an enhanced object apart from the others at its position."""
    labels: dict = {}
    fc = _first(getattr(fg, "FrameContentSequence", None))
    if fc is not None:
        if "StackID" in fc and str(fc.StackID).strip():
            labels["stack"] = str(fc.StackID).strip()
        for key, name in (("temporal_position", "TemporalPositionIndex"), ("in_stack", "InStackPositionNumber")):
            v = _float(getattr(fc, name, None))
            if v is not None:
                labels[key] = v
    te = _fg(fg, shared, "MREchoSequence", "EffectiveEchoTime")
    if _float(te) is not None:
        labels["echo_time"] = _float(te)
    bval = _fg(fg, shared, "MRDiffusionSequence", "DiffusionBValue")
    if _float(bval) is not None:
        labels["b_value"] = _float(bval)
    diff = _first(getattr(fg, "MRDiffusionSequence", None))
    grad = _first(getattr(diff, "DiffusionGradientDirectionSequence", None)) if diff is not None else None
    g = _vec(getattr(grad, "DiffusionGradientOrientation", None), 3) if grad is not None else None
    if g is not None:
        labels["gradient"] = [float(x) for x in g]
    ctime = _first(getattr(fg, "TemporalPositionSequence", None))
    if ctime is not None and _float(getattr(ctime, "TemporalPositionTimeOffset", None)) is not None:
        labels["time_offset_s"] = _float(ctime.TemporalPositionTimeOffset)
    return labels


def _first(seq):
    try:
        return seq[0] if seq is not None and len(seq) else None
    except (TypeError, IndexError):
        return None


def _fg(frame_group, shared, seq_name: str, attr: str):
    for group in (frame_group, shared):
        item = _first(getattr(group, seq_name, None)) if group is not None else None
        if item is not None and attr in item:
            return getattr(item, attr)
    return None


# -- selection ------------------------------------------------------------------------------------


def _describe(s: _Series) -> str:
    num = f"#{s.number}" if s.number is not None else "#?"
    desc = f" '{s.description}'" if s.description else ""
    return f"{num} {s.uid}{desc} ({len(s.slices)} slices)"


def _select(series: dict[str, _Series], wanted: str | None, path: Path) -> _Series:
    ordered = sorted(series.values(), key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    if wanted is None:
        if len(ordered) == 1:
            return ordered[0]
        listing = "; ".join(_describe(s) for s in ordered)
        raise InputError(f"{len(ordered)} DICOM series found, choose one with --series UID or NUMBER: {listing}", path)
    wanted = str(wanted).strip()
    if wanted in series:
        return series[wanted]
    matches = [s for s in ordered if s.number is not None and wanted.lstrip("#").isdigit() and s.number == int(wanted.lstrip("#"))]
    if len(matches) == 1:
        return matches[0]
    listing = "; ".join(_describe(s) for s in ordered)
    if len(matches) > 1:
        raise InputError(f"--series {wanted} matches {len(matches)} series, give the UID instead: {listing}", path)
    raise InputError(f"no DICOM series {wanted!r} here (found: {listing})", path)


def list_series(path: Path) -> list[dict]:
    """Summaries of every series under ``path`` (headers only), ordered by SeriesNumber.

    Example:
        >>> [s["series_number"] for s in list_series(Path("dicom_dir"))]  # doctest: +SKIP
        [2, 3, 5]
    """
    found = _scan(Path(path))
    ordered = sorted(found.values(), key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    return [
        {
            "series_number": s.number,
            "series_uid": s.uid,
            "series_description": s.description,
            "modality": s.modality,
            "manufacturer": s.manufacturer,
            "slices": len(s.slices),
            "files": len(s.files),
        }
        for s in ordered
    ]


# -- geometry -------------------------------------------------------------------------------------


def _geometry(s: _Series, path: Path) -> tuple[np.ndarray, list[list[_Slice]]]:
    """The RAS+ affine and the slices grouped by position (sorted along the normal)."""
    slices = s.slices
    missing = [sl for sl in slices if sl.position is None or sl.orientation is None]
    if missing:
        raise InputError(
            f"missing position tags (ImagePositionPatient/ImageOrientationPatient) in {len(missing)} of "
            f"{len(slices)} slices, e.g. {missing[0].file.name}; cannot place the slices in space",
            path,
        )
    first = slices[0]
    if any((sl.rows, sl.cols, sl.samples) != (first.rows, first.cols, first.samples) for sl in slices):
        sizes = sorted({f"{sl.rows}x{sl.cols}" for sl in slices})
        raise InputError(f"slices of this series have different sizes ({', '.join(sizes)}); not one volume", path)
    iop = first.orientation
    assert iop is not None
    if any(np.max(np.abs(sl.orientation - iop)) > _ORIENT_TOL for sl in slices):  # type: ignore[operator]
        n_or = len({tuple(np.round(sl.orientation, 3)) for sl in slices})  # type: ignore[arg-type]
        raise InputError(
            f"slices have {n_or} different orientations (ImageOrientationPatient), e.g. a localizer mixed in; "
            "not one volume",
            path,
        )
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"ImageOrientationPatient {list(iop)} is not two orthogonal unit vectors", path)
    # Re-orthonormalise: decimal strings leave cosines a few 1e-7 off unit length.
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    normal = np.cross(row, col)
    if first.pixel_spacing is None:
        raise InputError("missing PixelSpacing; the voxel size is unknown", path)
    if any(sl.pixel_spacing is None or np.max(np.abs(np.subtract(sl.pixel_spacing, first.pixel_spacing))) > 1e-4 for sl in slices):
        raise InputError("slices have different PixelSpacing; not one volume", path)
    dr, dc = first.pixel_spacing  # between rows (along col), between columns (along row)
    if dr <= 0 or dc <= 0:
        raise InputError(f"invalid PixelSpacing {first.pixel_spacing}", path)

    dist = np.array([float(sl.position @ normal) for sl in slices])  # type: ignore[operator]
    order = np.argsort(dist, kind="stable")
    # Group slices at the same position (within tolerance): repeated volumes.
    groups: list[list[int]] = []
    for i in order:
        if groups and abs(dist[i] - dist[groups[-1][0]]) < 1e-3:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    counts = {len(g) for g in groups}
    if len(counts) > 1:
        raise InputError(
            f"slice positions are repeated unevenly ({min(counts)} to {max(counts)} slices per position): "
            "duplicate or incomplete files?",
            path,
        )
    stacks = [sorted((slices[i] for i in g), key=lambda sl: sl.order) for g in groups]
    pos = np.array([dist[g[0]] for g in groups])
    origins = np.array([slices[g[0]].position for g in groups])
    n = len(groups)

    if n == 1:
        step = first.thickness if first.thickness and first.thickness > 0 else 1.0
        if not (first.thickness and first.thickness > 0):
            from medcli.runtime import log

            log.warning(f"{path}: single slice without SliceThickness; using 1 mm for the third voxel size")
    else:
        steps = np.diff(pos)
        step = float(np.median(steps))
        tol = max(_STEP_ABS_TOL, _STEP_REL_TOL * step)
        bad = np.abs(steps - step) > tol
        if np.any(bad):
            ratio = steps / step
            near = np.abs(ratio - np.round(ratio)) * step <= tol
            if np.all(near) and np.all(np.round(ratio) >= 1):
                k = int(np.argmax(bad))
                lost = int(np.sum(np.round(ratio) - 1))
                raise InputError(
                    f"missing slices: {lost} slice(s) absent, e.g. a gap of {steps[k]:.4g} mm after slice {k + 1} of "
                    f"{n} (usual step {step:.4g} mm); refusing to build a volume with holes",
                    path,
                )
            raise InputError(
                f"irregular slice spacing: steps from {steps.min():.4g} to {steps.max():.4g} mm along the slice "
                f"normal (median {step:.4g} mm); refusing rather than resampling",
                path,
            )
        step = float((pos[-1] - pos[0]) / (n - 1))
        # The slice origins must move along the normal only; an in-plane drift
        # is a gantry tilt (a sheared grid that an orthogonal affine cannot hold).
        rel = origins - origins[0]
        inplane = rel - np.outer(rel @ normal, normal)
        drift = float(np.max(np.linalg.norm(inplane, axis=1)))
        if drift > _SHEAR_ABS_TOL + 1e-4 * abs(pos[-1] - pos[0]):
            angle = np.degrees(np.arctan2(np.linalg.norm(inplane[-1]), abs(pos[-1] - pos[0])))
            raise InputError(
                f"gantry tilt: slices drift {drift:.3g} mm in-plane ({angle:.2f} degrees off the slice normal); "
                "a sheared grid is refused (correct the tilt first, e.g. with dcm2niix)",
                path,
            )
    lps = np.eye(4)
    lps[:3, 0] = row * dc  # array axis 0 runs along a row (column index)
    lps[:3, 1] = col * dr  # array axis 1 runs down the columns (row index)
    lps[:3, 2] = normal * step
    lps[:3, 3] = origins[0]
    ras = np.eye(4)
    ras[:3, :] = _LPS_TO_RAS @ lps[:3, :]
    return ras, stacks


# -- voxels ---------------------------------------------------------------------------------------


def _raw_dtype(ds) -> np.dtype:
    if str(getattr(ds, "PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR":
        desc = getattr(ds, "RedPaletteColorLookupTableDescriptor", None)
        lut_bits = int(_float(desc[2], 16)) if desc is not None and len(desc) == 3 else 16
        return np.dtype(np.uint8 if lut_bits <= 8 else np.uint16)  # the tables' values, not the indices
    bits = int(getattr(ds, "BitsAllocated", 16) or 16)
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return np.dtype(np.float32 if bits == 32 else np.float64)
    if bits <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    if bits <= 16:
        return np.dtype(np.int16 if signed else np.uint16)
    return np.dtype(np.int32 if signed else np.uint32)


def _out_dtype(ds, slices: list[_Slice]) -> np.dtype:
    """Integers stay integers when the rescale is an integer shift; else float32."""
    raw = _raw_dtype(ds)
    slopes = {sl.slope for sl in slices}
    inters = {sl.intercept for sl in slices}
    if slopes == {1.0} and inters == {0.0}:
        return raw
    if np.issubdtype(raw, np.integer) and slopes == {1.0} and all(float(i).is_integer() for i in inters):
        stored = int(getattr(ds, "BitsStored", raw.itemsize * 8) or raw.itemsize * 8)
        lo, hi = (-(2 ** (stored - 1)), 2 ** (stored - 1) - 1) if raw.kind == "i" else (0, 2**stored - 1)
        lo, hi = lo + min(inters), hi + max(inters)
        for cand in (np.int16, np.int32):
            info = np.iinfo(cand)
            if info.min <= lo and hi <= info.max:
                return np.dtype(cand)
    return np.dtype(np.float32)


#: Uncompressed little-endian transfer syntaxes: pixels can be viewed straight from the bytes.
_RAW_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _pixels(ds) -> np.ndarray:
    """The pixel array of a dataset: (rows, cols[, samples]) or (frames, rows, cols[, samples]).

    Colour comes out as RGB, as pydicom gives it: YBR converted, palette
    indices looked up in the palette's tables.
    """
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(f"no pixel data: a {_sop_name(ds) or 'DICOM'} object with image attributes but without its pixels")
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    if not syntax:
        # A headerless file: its encoding is the one pydicom found when parsing it.
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
        syntax = str(ds.file_meta.TransferSyntaxUID)
    if str(getattr(ds, "PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        return apply_color_lut(ds.pixel_array, ds)
    bits = int(getattr(ds, "BitsAllocated", 0) or 0)
    if (
        syntax in _RAW_SYNTAXES
        and "PixelData" in ds
        and int(getattr(ds, "SamplesPerPixel", 1) or 1) == 1
        and bits in (8, 16, 32)
        and int(getattr(ds, "BitsStored", bits) or bits) == bits  # no sign extension or masking needed
    ):
        # Fast path (most series): a view of the bytes instead of pydicom's decoder pipeline.
        dtype = np.dtype(f"{'i' if int(getattr(ds, 'PixelRepresentation', 0) or 0) else 'u'}{bits // 8}").newbyteorder("<")
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(_float(getattr(ds, "NumberOfFrames", 1), 1) or 1)
        raw = ds.PixelData
        n = rows * cols * frames
        if len(raw) >= n * dtype.itemsize:
            arr = np.frombuffer(raw, dtype, count=n).astype(dtype.newbyteorder("="), copy=False)
            return arr.reshape((frames, rows, cols) if frames > 1 else (rows, cols))
    return ds.pixel_array


def _loader(stacks: list[list[_Slice]], shape: tuple[int, ...], dtype: np.dtype, path: Path):
    def load() -> np.ndarray:
        nz, nt = len(stacks), len(stacks[0])
        # Fill a (z, t, rows, cols[, samples]) stack slice by slice (contiguous
        # writes), then transpose once to medcli's (cols, rows, z[, t][, samples]).
        stack: np.ndarray | None = None
        slopes = np.ones((nz, nt))
        inters = np.zeros((nz, nt))
        cache: dict[Path, np.ndarray] = {}
        uses: dict[Path, int] = {}
        for st in stacks:
            for sl in st:
                uses[sl.file] = uses.get(sl.file, 0) + 1
        for z, st in enumerate(stacks):
            for t, sl in enumerate(st):
                arr = cache.get(sl.file)
                if arr is None:
                    try:
                        ds = _dcmread(sl.file, force=sl.forced)
                    except Exception as e:  # noqa: BLE001 - pydicom raises many types on a damaged file
                        raise InputError(f"cannot read the pixel data ({_short(e)})", sl.file) from e
                    try:
                        arr = _pixels(ds)
                    except InputError as e:
                        raise InputError(e.message, sl.file) from e
                    except Exception as e:  # noqa: BLE001 - decoder errors come in many types
                        raise _decode_error(ds, e, sl.file) from e
                    if sl.mosaic:
                        arr = _unmosaic(arr, sl.rows, sl.cols, sl.mosaic, sl.file)
                    if uses[sl.file] > 1:
                        cache[sl.file] = arr
                frame = arr[sl.frame] if sl.frame is not None else arr
                if frame.shape[:2] != (sl.rows, sl.cols):
                    raise InputError(f"pixel data has shape {frame.shape}, header says {sl.rows}x{sl.cols}", sl.file)
                if stack is None:
                    stack = np.empty((nz, nt) + frame.shape, frame.dtype)
                stack[z, t] = frame
                slopes[z, t], inters[z, t] = sl.slope, sl.intercept
                uses[sl.file] -= 1
                if uses[sl.file] == 0:
                    cache.pop(sl.file, None)
        assert stack is not None
        if np.any(slopes != 1.0) or np.any(inters != 0.0):
            extra = (1,) * (stack.ndim - 2)
            if dtype.kind == "f":
                work = stack.astype(np.float64) * slopes.reshape(slopes.shape + extra) + inters.reshape(inters.shape + extra)
            else:  # integer shift only (see _out_dtype): exact in integers
                work = stack.astype(dtype) + inters.astype(dtype).reshape(inters.shape + extra)
            stack = work
        # (z, t, rows, cols[, s]) -> (cols, rows, z, t[, s])
        axes = (3, 2, 0, 1) + ((4,) if stack.ndim == 5 else ())
        out = np.ascontiguousarray(stack.transpose(axes), dtype=dtype)
        return out.reshape(shape)

    return load


def read_dicom(path: Path, series: str | None = None) -> Image:
    """Read one DICOM series from a folder (recursively) or a single file.

    Args:
        path: A DICOM file or a folder holding one or more series.
        series: SeriesInstanceUID or SeriesNumber of the series to read when
            the folder holds several.

    Returns:
        A lazy :class:`Image` (voxels decoded on first access) with RAS+
        affine and ``meta["dicom"]`` summarising the series.

    Raises:
        InputError: no DICOM files, several series and no ``series``,
            missing position tags, missing/irregular/tilted slices.

    Example:
        >>> img = read_dicom(Path("dicom_dir"), series="3")  # doctest: +SKIP
    """
    from medcli.io import check_size

    path = Path(path)
    found = _scan(path)
    s = _select(found, series, path)
    first = s.slices[0]
    ds = s.first
    planar = all(sl.position is None or sl.orientation is None for sl in s.slices)
    if planar:
        affine, stacks = _planar_geometry(s, path)
    else:
        affine, stacks = _geometry(s, path)
    nvol = len(stacks[0])
    shape: tuple[int, ...] = (first.cols, first.rows, len(stacks))
    if nvol > 1:
        shape += (nvol,)
    if first.samples > 1:
        if nvol > 1:
            raise InputError(
                f"{nvol} frames of {first.samples}-sample (colour) pixels: colour series over time are not supported", path
            )
        shape += (first.samples,)
    if planar and first.samples == 1 and nvol == 1:
        shape = (first.cols, first.rows)  # a 2D image is written as 2D
    check_size(shape, path)
    dtype = _out_dtype(ds, s.slices)
    meta: dict[str, Any] = {
        "format": "DICOM",
        "dicom": {
            "modality": s.modality,
            "manufacturer": s.manufacturer,
            "series_number": s.number,
            "series_description": s.description,
            "series_uid": s.uid,
            "sop_class": _sop_name(ds),
            "transfer_syntax": _syntax_name(ds),
            "photometric": str(getattr(ds, "PhotometricInterpretation", "") or ""),
            "slices": len(s.slices),
            "files": len(s.files),
        },
    }
    if first.samples > 1:
        meta["color"] = "RGB"  # YBR and palette colour are converted to RGB when read
    if meta["dicom"]["photometric"].strip().upper() == "MONOCHROME1":
        from medcli.runtime import log

        log.warning(f"{path}: MONOCHROME1 (low values display bright): stored values kept as they are, not inverted")
    if planar:
        meta["dicom"]["geometry"] = "2D, no patient position"
    if nvol > 1:
        meta["dicom"]["volumes"] = nvol
        meta["dicom"].update(_volume_labels(stacks))
    if len(found) > 1:
        meta["dicom"]["other_series"] = len(found) - 1
    if any(sl.forced for sl in s.slices):
        meta["dicom"]["part10_header"] = False
    return Image(_loader(stacks, shape, dtype, path), affine, meta, shape=shape, dtype=dtype)


def _sop_name(ds) -> str:
    from pydicom.uid import UID

    sop = str(getattr(ds, "SOPClassUID", "") or "")
    return UID(sop).name if sop else ""


def _syntax_name(ds) -> str:
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid:
        return str(getattr(uid, "name", uid))
    if getattr(ds, "medcli_forced", False):
        implicit, little = ds.original_encoding
        return f"{'Implicit' if implicit else 'Explicit'} VR {'Little' if little else 'Big'} Endian (no meta header)"
    return ""


def _volume_labels(stacks: list[list[_Slice]]) -> dict:
    """Per-volume echo times, b-values, gradient directions, when the frames say them."""
    out: dict[str, list] = {}
    names = {"echo_time": "echo_times_ms", "b_value": "b_values", "gradient": "gradient_directions",
             "time_offset_s": "time_offsets_s"}
    for key, name in names.items():
        vals = [sl.labels.get(key) for sl in stacks[0]]
        if all(v is not None for v in vals) and len({str(v) for v in vals}) > 1:
            # The same label at every position, or it does not describe the volumes.
            if all([sl.labels.get(key) for sl in st] == vals for st in stacks):
                out[name] = vals
    return out


def _planar_geometry(s: _Series, path: Path) -> tuple[np.ndarray, list[list[_Slice]]]:
    """A 2D image (or a 2D image over frames) with no position in the patient.

    The affine is DICOM's default orientation (rows along patient left, columns
    along posterior, LPS; RAS+ after the sign change) at the origin, scaled by
    the pixel spacing; frames become the 4th axis.
    """
    from medcli.runtime import log

    slices = s.slices
    if len(s.files) > 1:
        raise InputError(
            f"{len(s.files)} images without patient position (ImagePositionPatient/ImageOrientationPatient) in one "
            f"series: they cannot be stacked into a volume; read them one file at a time (e.g. {sorted(s.files)[0]})",
            path,
        )
    first = slices[0]
    if any((sl.rows, sl.cols, sl.pixel_spacing) != (first.rows, first.cols, first.pixel_spacing) for sl in slices):
        raise InputError("frames of different sizes or pixel spacings; not one image", path)
    ds = s.first
    if first.pixel_spacing is not None and min(first.pixel_spacing) > 0:
        dr, dc = first.pixel_spacing
        source = "PixelSpacing" if _vec(getattr(ds, "PixelSpacing", None), 2) is not None else "ImagerPixelSpacing"
        spacing = f"{dc:g} x {dr:g} mm from {source}"
    else:
        dr = dc = 1.0
        spacing = "no PixelSpacing or ImagerPixelSpacing: 1 mm pixels assumed"
    kind = s.modality or "DICOM"
    frames = f", {len(slices)} frames" if len(slices) > 1 else ""
    log.warning(
        f"{path}: 2D {kind} image{frames} without patient position (no ImagePositionPatient/ImageOrientationPatient); "
        f"{spacing}; orientation and origin are DICOM's defaults, not the patient's"
    )
    step = first.thickness if first.thickness and first.thickness > 0 else 1.0
    ras = np.diag([-dc, -dr, step, 1.0])  # LPS identity -> RAS+
    return ras, [sorted(slices, key=lambda sl: sl.order)]


#: Transfer syntax (UID prefix) -> the pydicom decoder plugin package that reads it.
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.5": "pylibjpeg-libjpeg",  # JPEG baseline/extended/lossless
    "1.2.840.10008.1.2.4.7": "pylibjpeg-libjpeg",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.8": "pylibjpeg-libjpeg",  # JPEG-LS
    "1.2.840.10008.1.2.4.9": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.20": "pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE
}


def _decode_error(ds, e: BaseException, path: Path) -> InputError:
    """One line: which transfer syntax failed, and either the package to install or the decoder's reason."""
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = getattr(uid, "name", None) or str(uid or "unknown transfer syntax")
    text = str(e)
    if "missing dependencies" in text or "no pixel data decoders" in text.lower() or "not supported by any" in text:
        pkg = next((v for k, v in _DECODER_PACKAGES.items() if str(uid or "").startswith(k)), "pylibjpeg")
        return InputError(f"cannot decode '{name}' pixel data: no decoder installed (pip install pylibjpeg {pkg})", path)
    # pydicom lists each plugin's failure on its own line: keep the most telling one.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = lines[1] if len(lines) > 1 and lines[0].endswith(":") else (lines[0] if lines else type(e).__name__)
    return InputError(f"cannot decode '{name}' pixel data ({detail[:200]})", path)


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:160]

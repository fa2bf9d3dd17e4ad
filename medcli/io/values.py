"""Voxel values are never changed silently: storage types per format and casts that say what they lose.

Two jobs:

* :func:`storable` picks, per output format, an on-disk type that holds the
  image's values exactly: the raw integers with their slope/intercept when the
  image was read from a scaled-integer file and its values are still exactly
  ``raw * slope + inter``; otherwise the narrowest type of the format that holds
  every value (float64 becomes float32 when nothing changes). Only when the
  format has no exact type (MGH keeps at most float32) are values rounded, and
  then a warning gives the numbers.
* :func:`cast_report` measures what a requested cast (``convert --dtype``)
  would lose: voxels rounded, voxels clipped to the target range, largest change.

Example:
    >>> import numpy as np
    >>> cast_report(np.array([0.25, 1.0, 300.0]), np.dtype("uint8")).text()
    '1 of 3 voxels rounded (largest change 0.25), 1 clipped to 0..255 (values 0.25..300)'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: On-disk value types each output format can hold (MGH: uint8, int16, int32, float32 only).
FORMAT_DTYPES: dict[str, tuple[str, ...]] = {
    "nifti": ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64", "float32", "float64",
              "complex64", "complex128"),
    "mgh": ("uint8", "int16", "int32", "float32"),
    "itk": ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64", "float32", "float64",
            "complex64", "complex128"),
}  # fmt: skip

#: Integer types in the order a format's narrowest exact type is looked for.
_INT_ORDER = ("uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64")


@dataclass
class Stored:
    """What a writer puts on disk: ``data`` (and ``slope``/``inter`` for scaled integers)."""

    data: np.ndarray
    slope: float | None = None
    inter: float | None = None
    note: str | None = None  # a loss the format forced (logged as a warning)


def float32_exact(data: np.ndarray) -> bool:
    """True when every value survives a round trip through float32 (NaN stays NaN)."""
    if data.dtype == np.float32:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        back = data.astype(np.float32).astype(data.dtype)
    return bool(np.array_equal(back, data, equal_nan=np.issubdtype(data.dtype, np.floating)))


def _int_fits(lo, hi, name: str) -> bool:
    info = np.iinfo(np.dtype(name))
    return info.min <= lo and hi <= info.max


def rescaled_raw(data: np.ndarray, scaling: dict) -> np.ndarray | None:
    """The raw integers behind ``data`` if it is still exactly ``raw * slope + inter`` (else None).

    ``scaling`` is what readers put in ``meta["scaling"]``: ``{"dtype", "slope", "inter"}``.
    Exactness is checked by recomputing the values the way the reader did
    (:func:`apply_scaling`), so a processed image never slips through.
    """
    try:
        raw_dtype = np.dtype(scaling["dtype"])
        slope, inter = float(scaling["slope"]), float(scaling["inter"])
    except (KeyError, TypeError, ValueError):
        return None
    if raw_dtype.kind not in "iu" or not np.issubdtype(data.dtype, np.floating) or slope == 0 or data.size == 0:
        return None
    if not np.all(np.isfinite(data)):
        return None
    raw = np.rint((data.astype(np.float64) - inter) / slope)
    if not _int_fits(raw.min(), raw.max(), raw_dtype.name):
        return None
    raw = raw.astype(raw_dtype)
    return raw if np.array_equal(apply_scaling(raw, slope, inter, data.dtype), data) else None


def apply_scaling(raw: np.ndarray, slope: float, inter: float, dtype) -> np.ndarray:
    """``raw * slope + inter`` computed in float64 and rounded once to ``dtype``.

    The one formula for reading scaled integers and for checking that values
    are still what the raw integers give, so that both agree to the bit.
    """
    out = raw.astype(np.float64)
    out *= slope
    out += inter
    return out.astype(dtype, copy=False)


def storable(data: np.ndarray, fmt: str, scaling: dict | None = None, path=None) -> Stored:
    """The exact on-disk representation of ``data`` for format ``fmt`` (see the module docstring)."""
    allowed = FORMAT_DTYPES[fmt]
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    if scaling and fmt == "nifti":
        raw = rescaled_raw(data, scaling)
        if raw is not None:
            return Stored(raw, float(scaling["slope"]), float(scaling["inter"]))
    kind = data.dtype.kind
    if kind in "iu":
        if data.dtype.name in allowed and data.dtype.name not in ("int64", "uint64"):
            return Stored(data)
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        # 64-bit integers: int32 when the values fit (what most tools read), else as they are;
        # a type the format lacks (MGH: int8, uint16, uint32): the narrowest one that holds the range.
        order = ("int32", "uint32", "int64", "uint64") if data.dtype.itemsize == 8 else _INT_ORDER
        for name in order:
            if name in allowed and _int_fits(lo, hi, name):
                return Stored(data.astype(name))
        data = data.astype(np.float64)  # only MGH gets here (values beyond int32)
        kind = "f"
    if kind == "f":
        if data.dtype == np.float64 and float32_exact(data):
            return Stored(data.astype(np.float32))
        if data.dtype.name in allowed:
            return Stored(data)
        report = cast_report(data, np.dtype(np.float32))
        return Stored(data.astype(np.float32), note=f"this format stores at most float32: {report.text()}")
    if data.dtype.name in allowed or (data.dtype.kind == "V" and fmt == "nifti"):  # NIfTI RGB24/RGBA32 records
        return Stored(data)
    from medcli.errors import ProcessingError

    raise ProcessingError(f"{data.dtype} voxels cannot be stored in this format (use .nii.gz or .nrrd)", path)


@dataclass
class CastReport:
    """What casting an array to ``target`` changes."""

    target: str
    total: int
    rounded: int = 0
    largest: float = 0.0
    clipped: int = 0
    lo: float = 0.0
    hi: float = 0.0
    vmin: float = 0.0
    vmax: float = 0.0
    nonfinite: int = 0

    @property
    def lossless(self) -> bool:
        return not (self.rounded or self.clipped or self.nonfinite)

    def text(self) -> str:
        parts = []
        if self.rounded:
            parts.append(f"{self.rounded} of {self.total} voxels rounded (largest change {self.largest:.6g})")
        if self.clipped:
            parts.append(f"{self.clipped} clipped to {self.lo:g}..{self.hi:g} (values {self.vmin:g}..{self.vmax:g})")
        if self.nonfinite:
            parts.append(f"{self.nonfinite} NaN/Inf voxels have no {self.target} value")
        return ", ".join(parts) if parts else "no value changes"


def cast_report(data: np.ndarray, target: np.dtype) -> CastReport:
    """Count what ``cast(data, target)`` (round to nearest, clip to range) changes."""
    target = np.dtype(target)
    rep = CastReport(target.name, int(data.size))
    if data.size == 0:
        return rep
    src = data
    if src.dtype.kind in "fc":
        finite = np.isfinite(src)
        rep.nonfinite = int(src.size - finite.sum())
        if rep.nonfinite and target.kind == "f":
            rep.nonfinite = 0  # NaN/Inf exist in every float type
        vals = src[finite] if rep.nonfinite or not finite.all() else src
    else:
        vals = src
    if vals.size == 0:
        return rep
    rep.vmin, rep.vmax = float(vals.min()), float(vals.max())
    if target.kind in "iu":
        info = np.iinfo(target)
        rep.lo, rep.hi = float(info.min), float(info.max)
        if vals.dtype.kind in "iu":
            out = (vals < info.min) | (vals > info.max)
            rep.clipped = int(out.sum())
            return rep
        out = (vals < info.min - 0.5) | (vals > info.max + 0.5)
        rep.clipped = int(out.sum())
        inside = vals[~out] if rep.clipped else vals
        frac = np.abs(inside - np.rint(inside))
        rep.rounded = int(np.count_nonzero(frac))
        rep.largest = float(frac.max()) if frac.size else 0.0
        return rep
    if target.kind == "f":
        finfo = np.finfo(target)
        rep.lo, rep.hi = float(finfo.min), float(finfo.max)
        if vals.dtype.kind == "f" and vals.dtype.itemsize <= target.itemsize:
            return rep
        if vals.dtype.kind in "iu" and vals.dtype.itemsize < target.itemsize and target.itemsize >= 4 \
                and (vals.dtype.itemsize <= 2 or target.itemsize == 8):
            return rep
        with np.errstate(over="ignore", invalid="ignore"):
            cast = vals.astype(target)
        over = ~np.isfinite(cast)
        rep.clipped = int(over.sum())
        ok = ~over
        diff = np.abs(cast[ok].astype(np.float64) - vals[ok].astype(np.float64))
        rep.rounded = int(np.count_nonzero(diff))
        rep.largest = float(diff.max()) if diff.size else 0.0
        return rep
    return rep


def cast(data: np.ndarray, target: np.dtype) -> np.ndarray:
    """Round to nearest and clip to ``target``'s range (NaN becomes 0 for integers)."""
    target = np.dtype(target)
    if target.kind in "iu":
        info = np.iinfo(target)
        if data.dtype.kind in "fc":
            data = np.nan_to_num(np.rint(data.real if data.dtype.kind == "c" else data), nan=0.0,
                                 posinf=info.max, neginf=info.min)
            return np.clip(data, info.min, info.max).astype(target)
        return np.clip(data, info.min, info.max).astype(target)
    if target.kind == "f":
        finfo = np.finfo(target)
        with np.errstate(over="ignore", invalid="ignore"):
            if data.dtype.kind == "f" and data.dtype.itemsize > target.itemsize:
                data = np.where(np.isfinite(data), np.clip(data, finfo.min, finfo.max), data)
            return data.astype(target)
    return data.astype(target)

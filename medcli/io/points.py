"""Point sets (landmarks, fiducials) in world millimetres: read and write.

A :class:`Points` holds labelled points in RAS+ millimetres, like every
coordinate inside medcli. Files carry their own coordinate system and are
converted on the way in and out, here and nowhere else:

==================  =================================================  ==========
format              what                                               written in
==================  =================================================  ==========
``.fcsv``           3D Slicer markups CSV (version 5 header, 14         LPS
                    columns); legacy files with ``CoordinateSystem =
                    0`` (RAS), ``1`` (LPS), ``RAS`` or ``LPS`` are read
``.mrk.json``       3D Slicer markups JSON (``coordinateSystem``,        LPS
                    ``controlPoints`` with label, description, position)
``.json``           medcli JSON: ``ras`` and ``lps`` per point,          both
                    optional ``confidence``
``.csv``            one row per point: label, ``ras_x..z``,              both
                    ``lps_x..z``, confidence, description
==================  =================================================  ==========

Slicer writes LPS since version 5 and reads both, so LPS is what medcli writes
to Slicer's formats. A point whose position is unknown (a landmark outside the
field of view) is a row of NaN: Slicer's JSON marks it ``positionStatus:
missing``, the other formats write ``nan``.

Example:
    >>> import numpy as np
    >>> p = Points(np.array([[1.0, 2.0, 3.0]]), ["AC"])
    >>> p.lps
    array([[-1., -2.,  3.]])
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medcli.errors import InputError, ProcessingError
from medcli.io.safe import atomic_output, os_error_to_input

#: The version string medcli writes in ``.fcsv`` headers (the format of Slicer 5).
FCSV_VERSION = "5.6"
FCSV_COLUMNS = ("id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID")
MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
CSV_COLUMNS = ("label", "ras_x", "ras_y", "ras_z", "lps_x", "lps_y", "lps_z", "confidence", "description")

#: RAS <-> LPS: the same flip both ways (negate x and y).
_FLIP = np.array([-1.0, -1.0, 1.0])


def ras_to_lps(xyz: np.ndarray) -> np.ndarray:
    """Points (N, 3) from RAS+ to LPS+ millimetres (and back: the map is its own inverse)."""
    return np.asarray(xyz, dtype=np.float64) * _FLIP


lps_to_ras = ras_to_lps


@dataclass
class Points:
    """Labelled points in RAS+ world millimetres.

    Attributes:
        ras: (N, 3) coordinates; a row of NaN is a missing point.
        labels: One label per point (Slicer's ``label``).
        descriptions: One description per point ("" when none).
        confidences: Optional (N,) confidence per point (NaN where unknown).
        name: Name of the point set (Slicer's node name), may be empty.
    """

    ras: np.ndarray
    labels: list[str]
    descriptions: list[str] = field(default_factory=list)
    confidences: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.ras = np.asarray(self.ras, dtype=np.float64).reshape(-1, 3)
        n = len(self.ras)
        self.labels = [str(v) for v in self.labels] if self.labels else [str(i + 1) for i in range(n)]
        self.descriptions = [str(v) for v in self.descriptions] if self.descriptions else [""] * n
        if self.confidences is not None:
            self.confidences = np.asarray(self.confidences, dtype=np.float64).reshape(-1)
        if len(self.labels) != n or len(self.descriptions) != n or (self.confidences is not None and len(self.confidences) != n):
            raise ValueError("labels, descriptions and confidences need one entry per point")

    def __len__(self) -> int:
        return len(self.ras)

    @property
    def lps(self) -> np.ndarray:
        """The coordinates in LPS+ millimetres (ITK, DICOM, ANTs)."""
        return ras_to_lps(self.ras)

    @property
    def missing(self) -> np.ndarray:
        """Boolean (N,): points without a position."""
        return ~np.isfinite(self.ras).all(axis=1)

    def moved(self, ras: np.ndarray) -> Points:
        """The same points (labels, descriptions, confidences) at new RAS+ positions."""
        ras = np.asarray(ras, dtype=np.float64)
        if ras.shape != self.ras.shape:
            raise ValueError(f"{ras.shape} positions for {self.ras.shape} points")
        return replace(self, ras=ras.copy())


# -- formats ------------------------------------------------------------------------------------

POINT_SUFFIXES = (".mrk.json", ".fcsv", ".json", ".csv")


def points_format(path: str | Path) -> str | None:
    """``fcsv``, ``mrk.json``, ``json`` or ``csv`` from a file name; None for other names."""
    name = str(path).lower()
    for suf in POINT_SUFFIXES:
        if name.endswith(suf):
            return suf[1:]
    return None


def is_points_path(path: str | Path) -> bool:
    return points_format(path) is not None


def read_points(path: str | Path, fmt: str | None = None) -> Points:
    """Read a point file in any of the supported formats (chosen by extension).

    Raises:
        InputError: missing or unreadable file, unknown extension, malformed
            content, or a coordinate system other than RAS/LPS.
    """
    fmt = fmt or points_format(path)
    if fmt is None:
        raise InputError("unknown point file extension (use .fcsv, .mrk.json, .json or .csv)", path)
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise os_error_to_input(e, path) from e
    except UnicodeDecodeError as e:
        raise InputError("not a text file", path) from e
    return parse_points(text, fmt, path)


def parse_points(text: str, fmt: str, path: str | Path = "<text>") -> Points:
    """Points from the text of a file of format ``fmt``."""
    readers = {"fcsv": _parse_fcsv, "mrk.json": _parse_markups_json, "json": _parse_json, "csv": _parse_csv}
    try:
        pts = readers[fmt](text, path)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise InputError(f"malformed {fmt} point file ({type(e).__name__}: {str(e)[:120]})", path) from e
    if not len(pts):
        raise InputError("no points in the file", path)
    return pts


def format_points(points: Points, fmt: str) -> str:
    """The text of ``points`` in format ``fmt``."""
    writers = {"fcsv": _format_fcsv, "mrk.json": _format_markups_json, "json": _format_json, "csv": _format_csv}
    return writers[fmt](points)


def write_points(points: Points, dest: str | Path, *, force: bool = False, fmt: str | None = None) -> None:
    """Write ``points`` atomically; the format comes from the extension (``-``: JSON to stdout).

    Raises:
        ProcessingError: unknown extension, existing output without ``force``,
            unwritable folder.
    """
    if str(dest) == "-":
        sys.stdout.write(format_points(points, fmt or "json"))
        sys.stdout.flush()
        return
    fmt = fmt or points_format(dest)
    if fmt is None:
        raise ProcessingError("unknown point file extension (use .fcsv, .mrk.json, .json or .csv)", dest)
    text = format_points(points, fmt)
    with atomic_output(dest, force) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _num(v: float) -> str:
    """Shortest text that reads back as the same float (``nan`` for missing)."""
    return "nan" if not math.isfinite(v) else repr(float(v))


def _float(text: str) -> float:
    text = text.strip()
    return float("nan") if text == "" else float(text)


def _system(value: Any, path: str | Path) -> str:
    """``RAS`` or ``LPS`` from a header value (Slicer's legacy 0/1 included)."""
    v = str(value).strip().upper()
    v = {"0": "RAS", "1": "LPS"}.get(v, v)
    if v not in ("RAS", "LPS"):
        what = "IJK (voxel) coordinates are" if v in ("2", "IJK") else f"coordinate system {value!r} is"
        raise InputError(f"{what} not supported (RAS or LPS world mm)", path)
    return v


def _to_ras(xyz: np.ndarray, system: str) -> np.ndarray:
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    return lps_to_ras(xyz) if system == "LPS" else xyz


# .fcsv -----------------------------------------------------------------------------------------


def _parse_fcsv(text: str, path: str | Path) -> Points:
    # Slicer 4 wrote no CoordinateSystem line in its oldest files: they are RAS.
    system, columns = "RAS", list(FCSV_COLUMNS)
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            key = key.strip().lower()
            if key == "coordinatesystem":
                system = _system(value, path)
            elif key == "columns":
                columns = [c.strip() for c in value.split(",")]
            continue
        rows.append(line)
    if not {"x", "y", "z"} <= set(columns):
        raise InputError("the '# columns' line names no x,y,z", path)
    col = {c: i for i, c in enumerate(columns)}
    xyz, labels, descs = [], [], []
    for row in csv.reader(rows):
        xyz.append([_float(row[col[c]]) for c in "xyz"])
        labels.append(row[col["label"]] if "label" in col and col["label"] < len(row) else str(len(labels) + 1))
        descs.append(row[col["desc"]] if "desc" in col and col["desc"] < len(row) else "")
    return Points(_to_ras(np.array(xyz), system), labels, descs)


def _format_fcsv(points: Points) -> str:
    buf = _io.StringIO()
    buf.write(f"# Markups fiducial file version = {FCSV_VERSION}\n# CoordinateSystem = LPS\n")
    buf.write("# columns = " + ",".join(FCSV_COLUMNS) + "\n")
    # Slicer quotes a label holding a comma or a quote the way the csv module does.
    w = csv.writer(buf, lineterminator="\n")
    for i, (p, label, desc) in enumerate(zip(points.lps, points.labels, points.descriptions)):
        w.writerow([str(i + 1), *map(_num, p), 0, 0, 0, 1, 1, 1, 0, label, desc, ""])
    return buf.getvalue()


# .mrk.json -------------------------------------------------------------------------------------


def _parse_markups_json(text: str, path: str | Path) -> Points:
    doc = json.loads(text)
    markups = doc.get("markups") if isinstance(doc, dict) else None
    if not markups:
        raise InputError("no 'markups' list (not a Slicer markups JSON file)", path)
    # A point list is one markup; curves and planes carry control points too, and
    # their points are points all the same, so every markup's points are read.
    xyz, labels, descs = [], [], []
    names = []
    for m in markups:
        system = _system(m.get("coordinateSystem", "LPS"), path)
        units = str(m.get("coordinateUnits", "mm")).lower()
        scale = {"mm": 1.0, "um": 1e-3, "m": 1e3}.get(units)
        if scale is None:
            raise InputError(f"coordinate units {units!r} are not supported", path)
        names.append(str(m.get("name", "")))
        for cp in m.get("controlPoints", []):
            status = cp.get("positionStatus", "defined")
            pos = cp.get("position")
            if status not in ("defined", "preview") or pos is None:
                pos = [float("nan")] * 3
            xyz.append(_to_ras(np.asarray(pos, float) * scale, system)[0])
            labels.append(str(cp.get("label", len(labels) + 1)))
            descs.append(str(cp.get("description", "")))
    return Points(np.array(xyz).reshape(-1, 3), labels, descs, name=names[0] if len(names) == 1 else "")


def _format_markups_json(points: Points) -> str:
    cps = []
    for i, (p, label, desc) in enumerate(zip(points.lps, points.labels, points.descriptions)):
        ok = bool(np.isfinite(p).all())
        cp: dict[str, Any] = {"id": str(i + 1), "label": label, "description": desc, "associatedNodeID": ""}
        if ok:
            cp["position"] = [float(v) for v in p]
        # Slicer's identity orientation for an LPS file (the same matrix it writes).
        cp["orientation"] = [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0]
        cp.update(selected=True, locked=False, visibility=True, positionStatus="defined" if ok else "missing")
        cps.append(cp)
    markup = {
        "type": "Fiducial",
        "coordinateSystem": "LPS",
        "coordinateUnits": "mm",
        "locked": False,
        "fixedNumberOfControlPoints": False,
        "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": len(cps),
        "controlPoints": cps,
        "measurements": [],
    }
    if points.name:
        markup = {"name": points.name, **markup}
    return json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [markup]}, indent=4) + "\n"


# .json (medcli) --------------------------------------------------------------------------------


def _parse_json(text: str, path: str | Path) -> Points:
    doc = json.loads(text)
    if isinstance(doc, dict) and "markups" in doc:
        return _parse_markups_json(text, path)  # a Slicer file saved as plain .json
    items = doc.get("points") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InputError("expected a 'points' list", path)
    default = _system(doc.get("coordinateSystem", "RAS"), path) if isinstance(doc, dict) else "RAS"
    xyz, labels, descs, conf = [], [], [], []
    for i, it in enumerate(items):
        if "ras" in it:
            pos, system = it["ras"], "RAS"
        elif "lps" in it:
            pos, system = it["lps"], "LPS"
        else:
            pos, system = it["position"], default
        pos = [float("nan")] * 3 if pos is None else [float("nan") if v is None else float(v) for v in pos]
        xyz.append(_to_ras(np.array(pos), system)[0])
        labels.append(str(it.get("label", i + 1)))
        descs.append(str(it.get("description", "")))
        c = it.get("confidence")
        conf.append(float("nan") if c is None else float(c))
    has_conf = any(math.isfinite(c) for c in conf)
    name = doc.get("name", "") if isinstance(doc, dict) else ""
    return Points(np.array(xyz).reshape(-1, 3), labels, descs, np.array(conf) if has_conf else None, name=str(name))


def _json_vec(v: np.ndarray) -> list[float | None]:
    return [float(x) if math.isfinite(x) else None for x in v]


def _format_json(points: Points) -> str:
    items = []
    for i in range(len(points)):
        it: dict[str, Any] = {"label": points.labels[i], "description": points.descriptions[i]}
        it["ras"] = _json_vec(points.ras[i])
        it["lps"] = _json_vec(points.lps[i])
        if points.confidences is not None:
            c = points.confidences[i]
            it["confidence"] = float(c) if math.isfinite(c) else None
        it["missing"] = bool(points.missing[i])
        items.append(it)
    doc: dict[str, Any] = {"coordinateSystem": "RAS", "units": "mm"}
    if points.name:
        doc["name"] = points.name
    doc["points"] = items
    return json.dumps(doc, indent=2) + "\n"


# .csv ------------------------------------------------------------------------------------------


def _parse_csv(text: str, path: str | Path) -> Points:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    reader = csv.DictReader(lines)
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    if {"ras_x", "ras_y", "ras_z"} <= set(fields):
        keys, system = ("ras_x", "ras_y", "ras_z"), "RAS"
    elif {"lps_x", "lps_y", "lps_z"} <= set(fields):
        keys, system = ("lps_x", "lps_y", "lps_z"), "LPS"
    else:
        raise InputError("a point CSV needs columns ras_x,ras_y,ras_z or lps_x,lps_y,lps_z (world mm)", path)
    xyz, labels, descs, conf = [], [], [], []
    for i, row in enumerate(reader):
        xyz.append([_float(row[fields[k]]) for k in keys])
        labels.append(row[fields["label"]] if "label" in fields else str(i + 1))
        descs.append(row.get(fields.get("description", ""), "") or "")
        conf.append(_float(row[fields["confidence"]]) if "confidence" in fields else float("nan"))
    has_conf = any(math.isfinite(c) for c in conf)
    return Points(_to_ras(np.array(xyz), system), labels, descs, np.array(conf) if has_conf else None)


def _format_csv(points: Points) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    conf = points.confidences if points.confidences is not None else np.full(len(points), np.nan)
    for i in range(len(points)):
        c = "" if not math.isfinite(conf[i]) else _num(conf[i])
        w.writerow([points.labels[i], *map(_num, points.ras[i]), *map(_num, points.lps[i]), c, points.descriptions[i]])
    return buf.getvalue()


def points_from_lps(lps: Sequence[Sequence[float]], labels: Sequence[str], **kw: Any) -> Points:
    """Points given in LPS+ millimetres (as ITK and ANTs return them)."""
    return Points(lps_to_ras(np.asarray(lps, float)), list(labels), **kw)

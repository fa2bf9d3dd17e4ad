"""Findings (detected lesions) in world millimetres, and their files.

A :class:`Finding` is one lesion: centre, axis-aligned box in RAS+ mm, diameter,
volume and score. Files are chosen by extension and all carry world mm:

==============  =====================================================================
``.json``       medcli findings (``schema: medcli.findings/1``): per finding ``id``,
                ``center_ras_mm``, ``center_lps_mm``, ``box_ras_mm`` as
                ``[xmin, ymin, zmin, xmax, ymax, zmax]``, ``size_mm``, ``diameter_mm``,
                ``volume_ml``, ``score``, ``label``, ``voxel_ijk``; and the source image
                (name, shape, affine, sha256), task, method, model
``.csv``        LUNA16 submission columns ``seriesuid,coordX,coordY,coordZ,probability``
                (LPS mm, as LUNA16's world coordinates) plus ``diameter_mm``
``.mrk.json``   3D Slicer ROI markups (``roiType`` Box, LPS), one ROI per finding
``.fcsv``       centres as Slicer fiducials (via :mod:`medcli.io.points`)
==============  =====================================================================

Reading accepts the same files (a LUNA16 ``annotations.csv`` with ``diameter_mm``
and no ``probability`` reads as truth).
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcli.errors import InputError
from medcli.io.points import MARKUPS_SCHEMA, Points, format_points, lps_to_ras, parse_points, ras_to_lps

SCHEMA = "medcli.findings/1"
FORMATS = (".mrk.json", ".json", ".csv", ".fcsv")
CSV_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability", "diameter_mm")


@dataclass
class Finding:
    """One detected (or true) lesion, all in RAS+ millimetres.

    Attributes:
        center_ras: (3,) centre.
        box_ras: (6,) ``[xmin, ymin, zmin, xmax, ymax, zmax]``.
        diameter_mm: Equivalent-sphere diameter.
        score: Detection score (truth: 1).
        volume_ml: Volume (NaN when unknown).
        label: Kind (``lesion``, ``bright``/``dark`` polarity ...).
        voxel_ijk: (3,) continuous voxel index of the centre on the source grid (NaN if unknown).
        series: Series (scan) identifier, LUNA16's ``seriesuid``.
        excluded: A truth lesion that neither counts as hit nor makes a false positive (LUNA16's
            "irrelevant findings").
    """

    center_ras: np.ndarray
    box_ras: np.ndarray
    diameter_mm: float
    score: float = 1.0
    volume_ml: float = float("nan")
    label: str = "lesion"
    voxel_ijk: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    series: str = ""
    excluded: bool = False

    def __post_init__(self) -> None:
        self.center_ras = np.asarray(self.center_ras, float).reshape(3)
        self.box_ras = np.asarray(self.box_ras, float).reshape(6)
        self.voxel_ijk = np.asarray(self.voxel_ijk, float).reshape(3)

    @property
    def center_lps(self) -> np.ndarray:
        return ras_to_lps(self.center_ras)

    @property
    def size_mm(self) -> np.ndarray:
        return self.box_ras[3:] - self.box_ras[:3]

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2.0


def same_lesion(center_ras: np.ndarray, diameter: float, kept) -> bool:
    """Whether a candidate lies within half the larger diameter of any ``(centre, diameter)`` already kept: the
    suppression rule of the detectors' findings, in world mm."""
    return any(np.linalg.norm(center_ras - c) < 0.5 * max(d, diameter) for c, d in kept)


def sphere_box(center_ras: np.ndarray, diameter: float) -> np.ndarray:
    """The box of a sphere (used when a file gives only a centre and a diameter)."""
    c = np.asarray(center_ras, float)
    r = diameter / 2.0 if math.isfinite(diameter) else 0.0
    return np.concatenate([c - r, c + r])


@dataclass
class Findings:
    """The findings of one image (or, read from a LUNA16 CSV, of several series)."""

    items: list[Finding]
    image: dict[str, Any] = field(default_factory=dict)
    task: str = ""
    method: str = ""
    model: dict[str, Any] | None = None
    threshold: float | None = None

    def __len__(self) -> int:
        return len(self.items)


def findings_format(path: str | Path) -> str | None:
    name = str(path).lower()
    for suf in FORMATS:
        if name.endswith(suf):
            return suf[1:]
    return None


def _f(v: float, nd: int = 4) -> float | None:
    return round(float(v), nd) if math.isfinite(float(v)) else None


def _vec(v: np.ndarray, nd: int = 4) -> list[float | None]:
    return [_f(x, nd) for x in v]


def format_findings(f: Findings, fmt: str, series: str = "") -> str:
    """The text of ``f`` in ``json``, ``csv``, ``mrk.json`` or ``fcsv``."""
    if fmt == "json":
        return _format_json(f)
    if fmt == "csv":
        return _format_csv(f, series)
    if fmt == "mrk.json":
        return _format_roi(f)
    if fmt == "fcsv":
        pts = Points(np.array([x.center_ras for x in f.items]).reshape(-1, 3), [f"{x.label}-{i + 1}" for i, x in enumerate(f.items)],
                     [f"score={x.score:.4g} diameter_mm={x.diameter_mm:.2f}" for x in f.items])
        if not len(pts):
            # An empty point list is a valid Slicer file: the header alone.
            return format_points(Points(np.zeros((1, 3)), ["x"]), "fcsv").rsplit("\n", 2)[0] + "\n"
        return format_points(pts, "fcsv")
    raise InputError("unknown findings extension (use .json, .csv, .mrk.json or .fcsv)", f"*.{fmt}")


def _format_json(f: Findings) -> str:
    items = []
    for i, x in enumerate(f.items):
        items.append({
            "id": i + 1,
            "label": x.label,
            "score": _f(x.score, 6),
            "center_ras_mm": _vec(x.center_ras),
            "center_lps_mm": _vec(x.center_lps),
            "box_ras_mm": _vec(x.box_ras),
            "size_mm": _vec(x.size_mm),
            "diameter_mm": _f(x.diameter_mm, 3),
            "volume_ml": _f(x.volume_ml, 5),
            "voxel_ijk": _vec(x.voxel_ijk, 3),
            **({"series": x.series} if x.series else {}),
            **({"excluded": True} if x.excluded else {}),
        })
    doc = {
        "schema": SCHEMA,
        "coordinate_system": "RAS",
        "units": "mm",
        "image": f.image,
        "task": f.task,
        "method": f.method,
        "model": f.model,
        "threshold": f.threshold,
        "n_findings": len(items),
        "findings": items,
    }
    text = json.dumps(doc, indent=2)
    # Vectors and matrix rows on one line each: a findings file is read by people too.
    text = re.sub(r"\[\s*([-0-9.eE+, \nnulltrue]*?)\s*\]", lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)).strip() + "]", text)
    return text + "\n"


def _format_csv(f: Findings, series: str) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for x in f.items:
        lps = x.center_lps
        w.writerow([x.series or series, *(repr(round(float(v), 4)) for v in lps), repr(round(float(x.score), 6)),
                    repr(round(float(x.diameter_mm), 3))])
    return buf.getvalue()


def _format_roi(f: Findings) -> str:
    markups = []
    for i, x in enumerate(f.items):
        c = [float(v) for v in ras_to_lps(x.center_ras)]
        markups.append({
            "type": "ROI",
            "name": f"{x.label}-{i + 1}",
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": True,
            "roiType": "Box",
            "insideOut": False,
            "center": c,
            # The box is axis-aligned in RAS; in LPS the same axes, flipped: Slicer's LPS identity.
            "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
            "size": [float(v) for v in x.size_mm],
            "controlPoints": [{"id": "1", "label": f"{x.label}-{i + 1}", "description": f"score={x.score:.6g}",
                               "position": c, "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
                               "selected": True, "locked": True, "visibility": True, "positionStatus": "defined"}],
            "measurements": [],
            "display": {"visibility": True},
        })
    return json.dumps({"@schema": MARKUPS_SCHEMA, "markups": markups}, indent=4) + "\n"


# -- reading ---------------------------------------------------------------------------------------


def read_findings(path: str | Path) -> Findings:
    """Read a findings file (any format above; a Slicer point list or LUNA16 annotations too).

    Raises:
        InputError: missing, unreadable or malformed file, unknown extension.
    """
    fmt = findings_format(path)
    if fmt is None:
        raise InputError("unknown findings extension (use .json, .csv, .mrk.json or .fcsv)", path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        from medcli.io.safe import os_error_to_input

        raise os_error_to_input(e, path) from e
    try:
        return parse_findings(text, fmt, path)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise InputError(f"malformed {fmt} findings file ({type(e).__name__}: {str(e)[:120]})", path) from e


def parse_findings(text: str, fmt: str, path: str | Path = "<text>") -> Findings:
    if fmt == "json":
        doc = json.loads(text)
        if isinstance(doc, dict) and "markups" in doc:
            return _parse_roi(doc, path)
        if not isinstance(doc, dict) or "findings" not in doc:
            raise InputError("not a medcli findings JSON (no 'findings' list)", path)
        items = []
        for it in doc["findings"]:
            c = np.array(it["center_ras_mm"], float) if "center_ras_mm" in it else lps_to_ras(np.array(it["center_lps_mm"], float))
            d = float(it.get("diameter_mm") if it.get("diameter_mm") is not None else "nan")
            box = np.array(it["box_ras_mm"], float) if it.get("box_ras_mm") else sphere_box(c, d)
            ijk = it.get("voxel_ijk") or [None] * 3
            items.append(Finding(c, box, d, float(it.get("score", 1.0) if it.get("score") is not None else 1.0),
                                 float(it["volume_ml"]) if it.get("volume_ml") is not None else float("nan"),
                                 str(it.get("label", "lesion")), np.array([np.nan if v is None else v for v in ijk], float),
                                 str(it.get("series", "")), bool(it.get("excluded", False))))
        return Findings(items, doc.get("image") or {}, doc.get("task", ""), doc.get("method", ""), doc.get("model"), doc.get("threshold"))
    if fmt == "mrk.json":
        return _parse_roi(json.loads(text), path)
    if fmt == "csv":
        return _parse_csv(text, path)
    if fmt == "fcsv":
        if not any(ln.strip() and not ln.startswith("#") for ln in text.splitlines()):
            return Findings([])
        pts = parse_points(text, "fcsv", path)
        items = []
        for c, lab, desc in zip(pts.ras, pts.labels, pts.descriptions):
            kv = dict(p.split("=", 1) for p in desc.split() if "=" in p)
            d = float(kv.get("diameter_mm", "nan"))
            items.append(Finding(c, sphere_box(c, d), d, float(kv.get("score", 1.0)), label=lab.rsplit("-", 1)[0]))
        return Findings(items)
    raise InputError("unknown findings extension (use .json, .csv, .mrk.json or .fcsv)", path)


def _parse_roi(doc: dict, path: str | Path) -> Findings:
    items = []
    for m in doc.get("markups", []):
        system = str(m.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise InputError(f"coordinate system {system!r} is not supported (RAS or LPS world mm)", path)
        if m.get("type") != "ROI":
            if m.get("controlPoints"):  # a point list: centres only
                pts = parse_points(json.dumps({"markups": [m]}), "mrk.json", path)
                items += [Finding(c, sphere_box(c, float("nan")), float("nan"), label=lab) for c, lab in zip(pts.ras, pts.labels)]
            continue
        c = np.array(m["center"], float)
        c = lps_to_ras(c) if system == "LPS" else c
        size = np.abs(np.array(m["size"], float))
        rot = np.abs(np.array(m.get("orientation", [1, 0, 0, 0, 1, 0, 0, 0, 1]), float).reshape(3, 3))
        size = rot @ size  # a rotated box: its axis-aligned extent (exact for Slicer's identity orientations)
        desc = (m.get("controlPoints") or [{}])[0].get("description", "")
        kv = dict(p.split("=", 1) for p in str(desc).split() if "=" in p)
        d = float((6.0 / math.pi * np.prod(size)) ** (1 / 3)) if np.all(size > 0) else float("nan")
        items.append(Finding(c, np.concatenate([c - size / 2, c + size / 2]), d, float(kv.get("score", 1.0)),
                             label=str(m.get("name", "lesion")).rsplit("-", 1)[0]))
    if not items and not doc.get("markups") == []:
        if not isinstance(doc.get("markups"), list):
            raise InputError("no 'markups' list (not a Slicer markups JSON file)", path)
    return Findings(items)


def _parse_csv(text: str, path: str | Path) -> Findings:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    reader = csv.DictReader(lines)
    cols = {c.strip(): c for c in reader.fieldnames or []}
    if not {"coordX", "coordY", "coordZ"} <= set(cols):
        raise InputError("a findings CSV needs LUNA16 columns seriesuid,coordX,coordY,coordZ[,probability][,diameter_mm]", path)
    items = []
    for row in reader:
        lps = np.array([float(row[cols[k]]) for k in ("coordX", "coordY", "coordZ")])
        c = lps_to_ras(lps)
        d = float(row[cols["diameter_mm"]]) if "diameter_mm" in cols and row[cols["diameter_mm"]].strip() else float("nan")
        p = float(row[cols["probability"]]) if "probability" in cols else 1.0
        items.append(Finding(c, sphere_box(c, d), d, p, series=row.get(cols.get("seriesuid", ""), "") or ""))
    return Findings(items)


def findings_points(f: Findings) -> Points:
    """The centres as :class:`~medcli.io.points.Points` (score as confidence)."""
    return Points(np.array([x.center_ras for x in f.items]).reshape(-1, 3), [str(i + 1) for i in range(len(f))],
                  confidences=np.array([x.score for x in f.items]) if len(f) else None)

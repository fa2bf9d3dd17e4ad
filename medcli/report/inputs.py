"""Recognise the files given with ``report --with`` by their content, and check they belong to the image.

Each file becomes an :class:`Item` of one kind:

==================  ===========================================================================
``labels``          an integer image on the image's grid (``segment -o``)
``seg_stats``       ``segment --stats`` JSON (``labels`` + ``voxel_volume_ml``) or CSV
``register_stats``  ``register --stats`` JSON (``metric_before`` / ``metric_after``)
``sidecar``         a ``--sidecar`` JSON (``GeneratedBy`` + ``Sources``)
``findings``        ``detect`` findings JSON (``schema: medcli.findings/N``)
``landmarks``       points: ``.fcsv``, ``.mrk.json``, or JSON with ``points``
==================  ===========================================================================

"Belongs to the image" means: a label map has the image's shape and affine; a
findings file or sidecar that names the image's sha256 names this one; points
and findings lie inside the image's field of view. Anything else is refused
with a one-line :class:`~medcli.errors.InputError`, before any output is written.
"""

from __future__ import annotations

import csv
import io as _io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medcli.errors import InputError
from medcli.image import Image

#: Findings schemas this reader knows (major versions).
FINDINGS_SCHEMAS = ("medcli.findings/1",)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass
class Item:
    """One recognised input: its kind, path and parsed content."""

    kind: str
    path: str
    data: Any


def recognise(path: str, image: Image, image_sha256: str | None = None) -> Item:
    """Read ``path``, decide what it is, and check that it belongs to ``image``.

    Raises:
        InputError: missing/unreadable file, unknown content, or a file of another image.
    """
    low = path.lower()
    if not Path(path).exists():
        raise InputError("no such file", path)
    if low.endswith(IMAGE_SUFFIXES):
        return _labels(path, image)
    if low.endswith(".fcsv") or low.endswith(".mrk.json"):
        return _landmarks(path, image)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read as text ({type(e).__name__})", path) from e
    if low.endswith(".csv"):
        return _stats_csv(text, path, image)
    if not low.endswith(".json"):
        raise InputError("not a file report knows (label map image, .json, .csv, .fcsv, .mrk.json)", path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON ({e.msg}, line {e.lineno})", path) from e
    if isinstance(doc, dict):
        schema = str(doc.get("schema") or "")
        if schema.startswith("medcli.findings/"):
            return findings_item(doc, path, image, image_sha256)
        if "markups" in doc or "points" in doc:
            return _landmarks(path, image)
        if "GeneratedBy" in doc and "Sources" in doc:
            return _sidecar(doc, path, image_sha256)
        if "metric_before" in doc and "metric_after" in doc:
            return _register_stats(doc, path, image_sha256)
        if isinstance(doc.get("labels"), list) and "voxel_volume_ml" in doc:
            _check_voxel_volume(float(doc["voxel_volume_ml"]), path, image)
            return Item("seg_stats", path, doc)
        if "findings" in doc:
            raise InputError(f"findings file of an unknown schema {schema or '(none)'!r} (known: {', '.join(FINDINGS_SCHEMAS)})", path)
    raise InputError("JSON of no kind report knows (segment/register --stats, sidecar, findings, landmarks)", path)


def _labels(path: str, image: Image) -> Item:
    from medcli import io

    lab = io.read(path)
    data = np.asarray(lab.data)
    if data.ndim != 3 or not (np.issubdtype(data.dtype, np.integer) or np.all(data == np.round(data))):
        raise InputError(f"not a label map (a {data.ndim}D {data.dtype} image; labels are 3D integers)", path)
    shape = tuple(image.shape[:3])
    if tuple(data.shape) != shape or not np.allclose(lab.affine, image.affine, atol=1e-3):
        raise InputError(
            f"label map on another grid (shape {tuple(data.shape)}, image {shape}, or another affine): made from another image?", path
        )
    return Item("labels", path, Image(data.astype(np.int32), image.affine, dict(lab.meta)))


def _fov_check(ras: np.ndarray, image: Image, path: str, what: str, margin_mm: float = 5.0) -> None:
    """Points in world mm must lie in the image's field of view (plus a margin)."""
    ras = ras[np.all(np.isfinite(ras), axis=1)]
    if not ras.size:
        return
    ijk = image.world_to_voxel(ras) if hasattr(image, "world_to_voxel") else None
    if ijk is None:
        inv = np.linalg.inv(image.affine)
        ijk = ras @ inv[:3, :3].T + inv[:3, 3]
    margin = margin_mm / np.asarray(image.spacing[:3], float)
    hi = np.asarray(image.shape[:3], float) - 1 + margin
    bad = np.any((ijk < -margin) | (ijk > hi), axis=1)
    if bad.any():
        k = int(np.argmax(bad))
        x, y, z = ras[k]
        raise InputError(f"{what} at RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm lies outside the image: made for another image?", path)


def _landmarks(path: str, image: Image) -> Item:
    from medcli.io.points import read_points

    pts = read_points(path)
    _fov_check(pts.ras, image, path, "landmark")
    return Item("landmarks", path, pts)


def findings_item(doc: dict, path: str, image: Image, sha: str | None) -> Item:
    """A findings document (``medcli.findings/N``) as an item, checked against the image."""
    schema = doc.get("schema")
    if schema not in FINDINGS_SCHEMAS:
        raise InputError(f"findings file of an unknown schema version {schema!r} (known: {', '.join(FINDINGS_SCHEMAS)})", path)
    src = doc.get("image") or {}
    if isinstance(src, dict):
        if sha and src.get("sha256") and src["sha256"] != sha:
            raise InputError(f"findings of another image ({src.get('name') or 'sha256 ' + src['sha256'][:12]})", path)
        if src.get("shape") and list(src["shape"])[:3] != list(image.shape[:3]):
            raise InputError(f"findings of another image (shape {src['shape']}, image {list(image.shape[:3])})", path)
    rows = []
    for i, f in enumerate(doc.get("findings") or []):
        # Tolerant: keep what is there, NaN what is not (a later schema minor may add fields).
        c = f.get("center_ras_mm") or [None] * 3
        rows.append({
            "id": f.get("id", i + 1),
            "label": str(f.get("label", "lesion")),
            "score": _num(f.get("score")),
            "center_ras_mm": [_num(v) for v in c],
            "box_ras_mm": [_num(v) for v in (f.get("box_ras_mm") or [None] * 6)],
            "diameter_mm": _num(f.get("diameter_mm")),
            "volume_ml": _num(f.get("volume_ml")),
        })
    _fov_check(np.array([r["center_ras_mm"] for r in rows], float).reshape(-1, 3), image, path, "finding")
    meta = {k: doc.get(k) for k in ("task", "method", "model", "threshold")}
    return Item("findings", path, {"findings": rows, **meta})


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _sidecar(doc: dict, path: str, sha: str | None) -> Item:
    srcs = [s for s in doc.get("Sources") or [] if isinstance(s, dict)]
    known = [s.get("SHA256") for s in srcs if s.get("SHA256")]
    if sha and known and sha not in known:
        raise InputError(f"sidecar of a step run on another image ({srcs[0].get('Path')})", path)
    return Item("sidecar", path, doc)


def _register_stats(doc: dict, path: str, sha: str | None) -> Item:
    from medcli.files import sha256_of

    # The registered image is the moving one or the fixed one; either may be this image.
    names = [doc.get("moving"), doc.get("fixed")]
    shas = [sha256_of(n) for n in names if isinstance(n, str) and (Path(n).is_file() or n.startswith("sample:"))]
    if sha and shas and sha not in shas:
        raise InputError(f"registration of other images ({doc.get('moving')} to {doc.get('fixed')})", path)
    return Item("register_stats", path, doc)


def _check_voxel_volume(ml: float, path: str, image: Image) -> None:
    mine = float(abs(np.linalg.det(image.affine[:3, :3]))) / 1000.0
    if not np.isclose(ml, mine, rtol=1e-3):
        raise InputError(f"statistics of another grid (voxel {ml * 1000:.4g} mm3, image {mine * 1000:.4g} mm3)", path)


def _stats_csv(text: str, path: str, image: Image) -> Item:
    rows = list(csv.DictReader(_io.StringIO(text)))
    if not rows or not {"label", "name", "voxels", "volume_ml"} <= set(rows[0]):
        raise InputError("CSV of no kind report knows (segment --stats columns: label, name, voxels, volume_ml)", path)
    labels = [{"label": int(r["label"]), "name": r["name"], "voxels": int(r["voxels"]), "volume_ml": float(r["volume_ml"])} for r in rows]
    icv = rows[0].get("intracranial_volume_ml") or ""
    nz = [r for r in labels if r["voxels"]]
    if nz:  # the voxel volume is implied by voxels and mL
        big = max(nz, key=lambda r: r["voxels"])
        _check_voxel_volume(big["volume_ml"] / big["voxels"], path, image)
    doc = {"source": rows[0].get("source"), "labels": labels, "model": rows[0].get("model") or None,
           "model_sha256": rows[0].get("model_sha256") or None}
    if icv:
        doc["intracranial_volume_ml"] = float(icv)
    if rows[0].get("warnings"):  # segment's warnings (contrast, mask size, border) stay visible in the report
        doc["warnings"] = rows[0]["warnings"].split("; ")
    return Item("seg_stats", path, doc)

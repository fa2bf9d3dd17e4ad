"""The report document of one scan: a plain dict (the ``.json`` report), rendered by :mod:`medcli.report.render`.

Every number a sentence of the narrative states has an ``id`` (``vol-GM``,
``icv``, ``finding-1`` ...) that the sentence links to, so a reader can check
where it comes from. The narrative reports measurements only; it names no
diagnosis.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medcli import __version__
from medcli.image import Image
from medcli.report.inputs import Item

SCHEMA = "medcli.report/1"
#: label-map value sets -> segment task, when no sidecar says which task made the map
TASK_BY_VALUES = {frozenset({1}): "brain", frozenset({1, 2, 3}): "tissue", frozenset({2, 3}): "tissue"}
CARDS = Path(__file__).resolve().parent.parent / "models" / "cards"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def _label_table(item: Item) -> tuple[str, dict[int, tuple[str, tuple[int, int, int]]]]:
    """The task and label table of a label map: from its sidecar, else from its values."""
    import json

    from medcli.files import sidecar_path
    from medcli.segment.outputs import LABELS

    task = None
    side = Path(sidecar_path(item.path))
    if side.is_file():
        try:
            task = json.loads(side.read_text()).get("Task")
        except (OSError, ValueError):
            task = None
    counts = np.bincount(np.clip(np.asarray(item.data.data), 0, None).ravel().astype(np.int64))
    values = frozenset(int(v) for v in np.flatnonzero(counts) if v > 0)
    task = task if task in LABELS else TASK_BY_VALUES.get(values)
    if task:
        return task, LABELS[task]
    palette = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
    return "labels", {v: (f"label {v}", palette[i % len(palette)]) for i, v in enumerate(sorted(values))}


def card_summary(model: str | None) -> dict[str, str] | None:
    """What a bundled model was trained on, from its card (``models/cards/NAME.md``)."""
    if not model:
        return None
    base = str(model).split(" ")[0]
    for name in (base, base.split("-")[0]):
        card = CARDS / f"{name}.md"
        if card.is_file():
            text = card.read_text(encoding="utf-8")
            title = text.splitlines()[0].lstrip("# ").strip()
            m = re.search(r"Training data:?\**:?\s*(.+?)(?:\n\n|$)", text, re.S) or re.search(r"\*\*Source\*\*:?\s*(.+?)(?:\n\n|$)", text, re.S)
            trained = re.sub(r"\s+", " ", m.group(1)).strip() if m else "see the model card"
            return {"name": name, "title": title, "trained_on": trained[:600], "card": f"medcli/models/cards/{name}.md"}
    return None


def identity(image: Image, source: str, sha256: str | None) -> dict[str, Any]:
    meta = image.meta or {}
    dicom = meta.get("dicom") or {}
    sp = [round(float(s), 4) for s in image.spacing]
    shape = [int(s) for s in image.shape]
    doc: dict[str, Any] = {
        "source": source,
        "sha256": sha256,
        "shape": shape,
        "dtype": str(image.dtype),
        "voxel_size_mm": sp,
        "orientation": image.orientation,
        "field_of_view_mm": [round(a * b, 1) for a, b in zip(shape[:3], sp)],
        "origin_mm": [round(float(o), 3) for o in image.origin],
    }
    for key in ("modality", "series_description", "manufacturer", "magnetic_field_strength", "repetition_time", "echo_time"):
        if dicom.get(key) not in (None, ""):
            doc[key] = dicom[key]
    return doc


def volumes(items: Sequence[Item], image: Image) -> dict[str, Any]:
    """Volumes per label (mL) and % of the intracranial volume, from label maps and ``--stats`` files."""
    rows: dict[str, dict[str, Any]] = {}
    icv = None
    icv_from = None
    voxel_ml = float(abs(np.linalg.det(image.affine[:3, :3]))) / 1000.0
    for it in items:
        if it.kind == "seg_stats":
            brain_task = [r["name"] for r in it.data["labels"]] == ["brain"] and it.data.get("intracranial_volume_ml")
            for r in [] if brain_task else it.data["labels"]:  # segment --task brain: its one label is the ICV, as for its map
                rows[r["name"]] = {"name": r["name"], "volume_ml": float(r["volume_ml"]), "voxels": int(r["voxels"]), "source": it.path}
            if it.data.get("intracranial_volume_ml"):
                icv, icv_from = float(it.data["intracranial_volume_ml"]), it.path
        elif it.kind == "labels":
            task, table = _label_table(it)
            counts = np.bincount(np.clip(np.asarray(it.data.data).ravel(), 0, None).astype(np.int64))
            for v, (name, _) in sorted(table.items()):
                n = int(counts[v]) if v < counts.size else 0
                if task == "brain":
                    icv, icv_from = n * voxel_ml, it.path
                    continue
                rows.setdefault(name, {"name": name, "volume_ml": round(n * voxel_ml, 4), "voxels": n, "source": it.path})
    if icv is None and {"CSF", "GM", "WM"} <= set(rows):
        icv, icv_from = sum(rows[k]["volume_ml"] for k in ("CSF", "GM", "WM")), "CSF + GM + WM"
    out = []
    for r in rows.values():
        r["percent_icv"] = round(100.0 * r["volume_ml"] / icv, 2) if icv else None
        r["id"] = "vol-" + slug(r["name"])
        out.append(r)
    return {"intracranial_volume_ml": round(icv, 2) if icv is not None else None, "icv_from": icv_from, "labels": out}


def _label_info(label_items: Sequence[Item], image: Image) -> list[tuple[str, dict, np.ndarray, float | None]]:
    """(task, table, data, x of the labels' centre in mm) per label map, computed once for all findings."""
    out = []
    for it in label_items:
        task, table = _label_table(it)
        data = np.asarray(it.data.data)
        where = np.argwhere(data[::2, ::2, ::2] > 0) * 2  # every 8th voxel: a centre to a voxel
        x = float(image.voxel_to_world(where.mean(axis=0)[None])[0][0]) if len(where) else None
        out.append((task, table, data, x))
    return out


def midsagittal_plane(point_items: Sequence[Item]) -> tuple[np.ndarray, float, int] | None:
    """The mid-sagittal plane (unit normal towards the patient's right, offset in mm, pairs used) from landmarks
    that come in right/left pairs ('R superior LMS' / 'L superior LMS' ...), None with fewer than 3 pairs.

    The landmarks were carried from the template by registration, so this is the template's midline in the
    subject: it follows a tilted or off-centre head, where the centre of the brain mask does not.
    """
    sides: dict[str, dict[str, np.ndarray]] = {}
    for it in point_items:
        p = it.data
        for i in range(len(p)):
            m = re.match(r"^(R|L|right|left)[\s_-]+(.+)$", (p.descriptions[i] or p.labels[i]).strip(), re.I)
            if m and np.all(np.isfinite(p.ras[i])):
                sides.setdefault(m.group(2).lower(), {})[m.group(1)[0].upper()] = np.asarray(p.ras[i], float)
    pairs = [(v["R"], v["L"]) for v in sides.values() if "R" in v and "L" in v and np.linalg.norm(v["R"] - v["L"]) > 1.0]
    if len(pairs) < 3:
        return None
    n = np.mean([(r - left) / np.linalg.norm(r - left) for r, left in pairs], axis=0)
    n /= np.linalg.norm(n)
    return n, float(np.mean([n @ ((r + left) / 2) for r, left in pairs])), len(pairs)


def _where(center_ras: Sequence[float], image: Image, info: Sequence[tuple[str, dict, np.ndarray, float | None]],
           plane: tuple[np.ndarray, float, int] | None = None) -> str:
    """'left hemisphere white matter': side from the landmarks' mid-sagittal ``plane`` (else the brain's centre),
    tissue from a tissue map."""
    c = np.asarray(center_ras, float)
    if not np.all(np.isfinite(c)):
        return ""
    words = []
    tissue_names = {"CSF": "CSF", "GM": "grey matter", "WM": "white matter"}
    brain_x = next((x for _, _, _, x in info if x is not None), None)
    ijk = np.round(image.world_to_voxel(c[None])[0]).astype(int)
    for task, table, data, _ in info:
        inside = np.all((ijk >= 0) & (ijk < np.asarray(data.shape)))
        if task == "tissue" and inside:
            v = int(data[tuple(ijk)])
            if v in table:
                words.append(tissue_names.get(table[v][0], table[v][0]))
    if plane is not None:
        words.insert(0, "right hemisphere" if plane[0] @ c > plane[1] else "left hemisphere")
    elif brain_x is not None:
        words.insert(0, "right hemisphere" if c[0] > brain_x else "left hemisphere")  # RAS+: +x is the patient's right
    return " ".join(words)


def _fmt(v: float, nd: int = 0) -> str:
    return f"{v:,.{nd}f}"


def narrative(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Plain sentences from the numbers; each links (``ref``) to the row it states."""
    out: list[dict[str, str]] = []
    vol = doc["volumes"]
    icv = vol["intracranial_volume_ml"]
    if icv:
        out.append({"text": f"Intracranial volume {_fmt(icv)} mL.", "ref": "icv"})
    for r in vol["labels"]:
        pct = f" ({r['percent_icv']:.0f} % of intracranial volume)" if r.get("percent_icv") is not None else ""
        name = {"GM": "Grey matter", "WM": "White matter", "CSF": "CSF"}.get(r["name"], r["name"][:1].upper() + r["name"][1:])
        out.append({"text": f"{name} {_fmt(r['volume_ml'])} mL{pct}.", "ref": r["id"]})
    finds = doc.get("findings")
    if finds is not None:
        n = len(finds)
        if n == 0:
            out.append({"text": "No focal finding was detected.", "ref": "findings"})
        else:
            big = max(finds, key=lambda f: -1 if math.isnan(f["diameter_mm"]) else f["diameter_mm"])
            words = {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five"}.get(n, str(n))
            where = f", in the {big['where']}" if big.get("where") else ""
            out.append({
                "text": f"{words} focal finding{'s were' if n > 1 else ' was'} detected; the largest measures "
                f"{big['diameter_mm']:.0f} mm{where} (score {big['score']:.2f}).",
                "ref": big["anchor"],
            })
    if doc.get("landmarks"):
        pts = doc["landmarks"]
        placed = [p for p in pts if all(x is not None and math.isfinite(x) for x in p["ras_mm"])]
        conf = [p["confidence"] for p in placed if p.get("confidence") is not None]
        count = f"{len(placed)}" if len(placed) == len(pts) else f"{len(placed)} of {len(pts)}"
        missing = f" ({len(pts) - len(placed)} outside the field of view)" if len(placed) < len(pts) else ""
        how = f", median confidence {float(np.median(conf)):.2f}" if conf else ""
        out.append({"text": f"{count} landmarks were placed{missing}{how}.", "ref": "landmarks"})
    for i, r in enumerate(doc.get("registration") or []):
        if r.get("metric_before") is not None:
            out.append({
                "text": f"Registration ({r.get('type', '?')}, {r.get('metric', '?')}) changed the similarity from "
                f"{r['metric_before']:.3f} to {r['metric_after']:.3f}.",
                "ref": f"reg-{i + 1}",
            })
    out.append({"text": "These are automatic measurements for research; they are not a diagnosis.", "ref": "about"})
    return out


def build(image: Image, source: str, items: Sequence[Item], sha256: str | None = None) -> dict[str, Any]:
    """The report document of one image and the recognised files (see the module docstring)."""
    labels = [it for it in items if it.kind == "labels"]
    doc: dict[str, Any] = {"schema": SCHEMA, "generated_by": f"medcli {__version__}", "identity": identity(image, source, sha256)}
    doc["inputs"] = [{"path": it.path, "kind": it.kind} for it in items]
    doc["volumes"] = volumes(items, image)
    finding_items = [it for it in items if it.kind == "findings"]
    pts = [it for it in items if it.kind == "landmarks"]
    if finding_items:
        info = _label_info(labels, image)
        plane = midsagittal_plane(pts)
        if plane is not None or any(x is not None for *_, x in info):
            doc["side_from"] = (f"the mid-sagittal plane of {plane[2]} right/left landmark pairs" if plane is not None
                                else "the centre of the brain in the label map")
        rows = []
        for it in finding_items:
            for f in it.data["findings"]:
                r = dict(f)
                r["anchor"] = f"finding-{len(rows) + 1}"
                r["where"] = _where(f["center_ras_mm"], image, info, plane)
                r["source"] = it.path
                rows.append(r)
        doc["findings"] = rows
    if pts:
        doc["landmarks"] = [
            {"label": p.labels[i], "description": p.descriptions[i], "ras_mm": [round(float(x), 2) for x in p.ras[i]],
             "confidence": _confidence(p, i), "source": it.path}
            for it in pts for p in [it.data] for i in range(len(p))
        ]
    regs = [it for it in items if it.kind == "register_stats"]
    if regs:
        doc["registration"] = [
            {k: it.data.get(k) for k in ("type", "metric", "metric_before", "metric_after", "folded_fraction", "moving", "fixed")} | {"source": it.path}
            for it in regs
        ]
    warnings = [f"{it.path}: {w}" for it in items if it.kind == "seg_stats" for w in it.data.get("warnings") or []]
    if warnings:
        doc["warnings"] = warnings  # what segment warned about (contrast, mask size, border) stays visible
    doc["provenance"] = provenance(items)
    models = {p["model"]: p.get("sha256") for p in doc["provenance"] if p.get("model")}
    doc["models"] = [{"model": m, "sha256": s, **(card_summary(m) or {})} for m, s in models.items()]
    doc["narrative"] = narrative(doc)
    return doc


def _confidence(points, i: int) -> float | None:
    """The confidence ``landmarks`` gave point ``i`` (local similarity to the template), None when unknown."""
    c = points.confidences
    return round(float(c[i]), 3) if c is not None and math.isfinite(float(c[i])) else None


def provenance(items: Sequence[Item]) -> list[dict[str, Any]]:
    """One row per step that made an input: command, model and its sha256 (sidecars, stats, findings)."""
    rows = []
    for it in items:
        d = it.data
        if it.kind == "sidecar":
            model = d.get("Model")
            name, sha = (model.get("Name"), model.get("SHA256")) if isinstance(model, dict) else (model, d.get("ModelSha256"))
            rows.append({"step": d.get("Command"), "command_line": d.get("CommandLine"), "model": name, "sha256": sha, "source": it.path})
        elif it.kind == "seg_stats" and d.get("model"):
            rows.append({"step": "segment", "model": d.get("model"), "sha256": d.get("model_sha256"), "source": it.path})
        elif it.kind == "findings":
            m = d.get("model")
            name, sha = (m.get("name") or m.get("Name"), m.get("sha256") or m.get("SHA256")) if isinstance(m, dict) else (m, None)
            method = d.get("method")
            rows.append({"step": f"detect ({method})" if method else "detect", "model": name, "sha256": sha, "source": it.path})
        elif it.kind == "register_stats":
            rows.append({"step": "register", "model": None, "sha256": None, "source": it.path})
        elif it.kind == "step":  # an analysis report --run ran itself that leaves no other trace of its method
            rows.append({"step": d["step"], "model": d.get("model"), "sha256": d.get("sha256"), "source": it.path})
    return rows


def pictures(image: Image, items: Sequence[Item], doc: dict[str, Any]):
    """QC mosaics (one per label map; one with landmarks and finding boxes) and a crop per finding."""
    from medcli.report.figures import Figure, Views, encode

    ct = str((image.meta.get("dicom") or {}).get("modality", "")).upper() == "CT"
    views = Views(image, ct=ct)
    figs: list[Figure] = []
    for it in items:
        if it.kind != "labels":
            continue
        task, table = _label_table(it)
        lab = Image(np.asarray(it.data.data), image.affine).reorient("RAS").data
        centre = views.centre_of(lab > 0)
        pic = views.mosaic(centre, labels=lab, colours={v: c for v, (_, c) in table.items()})
        names = ", ".join(f"{n} (value {v})" for v, (n, _) in sorted(table.items()))
        figs.append(Figure(encode(pic), f"Axial, coronal and sagittal slices of the scan with the outlines of the {task} labels: {names}.",
                           pic.width, pic.height, f"{task} labels from {it.path}: outlines over the scan, in RAS (R marks the patient's right)."))
    pts = np.array([p["ras_mm"] for p in doc.get("landmarks") or []], float).reshape(-1, 3)
    boxes = np.array([f["box_ras_mm"] for f in doc.get("findings") or []], float).reshape(-1, 6)
    crops: dict[str, Figure] = {}
    finds = doc.get("findings") or []
    if len(boxes):
        # Centred on the largest finding, so that at least its box shows in all three planes.
        big = max(range(len(finds)), key=lambda i: np.nan_to_num(finds[i]["diameter_mm"], nan=-1.0))
        c = np.asarray(finds[big]["center_ras_mm"], float)
        figs.append(_marked(views, c, None, boxes, f"{len(boxes)} finding boxes (red), planes through finding {finds[big]['id']}"))
    if len(pts):
        ok = pts[np.all(np.isfinite(pts), axis=1)]
        figs.append(_marked(views, ok.mean(axis=0) if len(ok) else None, pts, None,
                            f"{len(pts)} landmark crosses (yellow; bright within 3 mm of the plane), planes through their centroid"))
    for f in (doc.get("findings") or [])[:50]:  # crops of the first 50: a report stays small
        pic = views.crop(f["center_ras_mm"], f["box_ras_mm"])
        crops[f["anchor"]] = Figure(encode(pic), f"Axial crop around finding {f['id']} ({f['diameter_mm']:.0f} mm) with its box.", pic.width, pic.height)
    return figs, crops


def _marked(views, centre_ras, pts, boxes, what: str):
    """A three-plane mosaic with landmark crosses and/or finding boxes, through ``centre_ras`` (mm)."""
    from medcli.report.figures import Figure, encode

    if centre_ras is not None and np.all(np.isfinite(centre_ras)):
        centre = [int(np.clip(round(c), 0, s - 1)) for c, s in zip(views.image.world_to_voxel(np.asarray(centre_ras)[None])[0], views.image.shape[:3])]
    else:
        centre = views.centre_of(None)
    pic = views.mosaic(centre, points=pts, boxes=boxes)
    return Figure(encode(pic), f"Axial, coronal and sagittal slices of the scan with {what}.", pic.width, pic.height, what[:1].upper() + what[1:] + ".")

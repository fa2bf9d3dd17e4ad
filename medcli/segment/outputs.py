"""Side outputs of ``medcli segment``: label tables, volume statistics and a QC mosaic.

* Label tables by extension: ``.txt`` (ITK-SNAP label description), ``.ctbl``
  (3D Slicer colour table), ``.json``.
* Statistics (``.json`` or ``.csv``): voxel count and volume in mL of every
  label, intracranial volume (the brain mask) for MR tasks, the model and its
  sha256.
* QC: a PNG with axial, coronal and sagittal slices through the labels' centre,
  the labels overlaid in their table colours, and a legend.

Example:
    >>> table = LABELS["tissue"]
    >>> print(label_table(table, "labels.ctbl").splitlines()[2])
    0 background 0 0 0 0
"""

from __future__ import annotations

import csv
import io as _io
import json
from typing import Any, Sequence

import numpy as np

from medcli import qc
from medcli.errors import UsageError
from medcli.image import Image

Table = dict[int, tuple[str, tuple[int, int, int]]]

#: task -> {value: (name, RGB)}; value 0 (background) is implicit. Colours are chosen
#: to stay distinct when blended over a grey-scale image (WM is green, not FreeSurfer's white).
LABELS: dict[str, Table] = {
    "brain": {1: ("brain", (255, 192, 32))},
    "tissue": {1: ("CSF", (60, 60, 255)), 2: ("GM", (230, 148, 34)), 3: ("WM", (110, 215, 110))},
    "ct-body": {1: ("body", (255, 160, 122))},
    "ct-lungs": {1: ("right lung", (40, 200, 255)), 2: ("left lung", (255, 80, 200))},
    "ct-bone": {1: ("bone", (241, 214, 145))},
    "ct-fat": {1: ("subcutaneous fat", (255, 230, 0)), 2: ("visceral fat", (255, 90, 0))},
}

TABLE_FORMATS = (".txt", ".ctbl", ".json")


def label_table(table: Table, dest: str) -> str:
    """The label table in the format of ``dest``'s extension (.txt ITK-SNAP, .ctbl Slicer, .json)."""
    low = dest.lower()
    rows = [(0, "background", (0, 0, 0))] + [(v, n, c) for v, (n, c) in sorted(table.items())]
    if low.endswith(".txt"):
        lines = [
            "################################################",
            "# ITK-SnAP Label Description File",
            "# File format: ",
            "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
            "# Fields: ",
            "#    IDX:   Zero-based index ",
            "#    -R-:   Red color component (0..255)",
            "#    -G-:   Green color component (0..255)",
            "#    -B-:   Blue color component (0..255)",
            "#    -A-:   Label transparency (0.00 .. 1.00)",
            "#    VIS:   Label visibility (0 or 1)",
            "#    IDX:   Label mesh visibility (0 or 1)",
            "#  LABEL:   Label description ",
            "################################################",
        ]
        for v, n, (r, g, b) in rows:
            alpha, vis = (0, 0) if v == 0 else (1, 1)
            label = "Clear Label" if v == 0 else n
            lines.append(f"{v:5d} {r:5d} {g:4d} {b:4d} {alpha:8d} {vis:2d} {vis:2d}    \"{label}\"")
        return "\n".join(lines) + "\n"
    if low.endswith(".ctbl"):
        lines = ["# Color table file written by medcli segment", f"# {len(rows)} values"]
        lines += [f"{v} {n.replace(' ', '_')} {r} {g} {b} {0 if v == 0 else 255}" for v, n, (r, g, b) in rows]
        return "\n".join(lines) + "\n"
    if low.endswith(".json"):
        doc = [{"value": v, "name": n, "color": list(c)} for v, n, c in rows]
        return json.dumps({"labels": doc}, indent=2) + "\n"
    raise UsageError(f"--labels-out {dest!r}: use a .txt (ITK-SNAP), .ctbl (3D Slicer) or .json file")


def statistics(
    labels: Image,
    table: Table,
    *,
    brain: np.ndarray | None = None,
    model: str | None = None,
    sha256: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Voxel counts and volumes (mL) per label, plus intracranial volume when a brain mask is known."""
    data = np.asarray(labels.data)
    voxel_ml = float(abs(np.linalg.det(labels.affine[:3, :3]))) / 1000.0
    counts = np.bincount(data.ravel().astype(np.int64), minlength=max(table, default=0) + 1)
    rows = []
    for v, (name, _) in sorted(table.items()):
        n = int(counts[v]) if v < counts.size else 0
        rows.append({"label": v, "name": name, "voxels": n, "volume_ml": round(n * voxel_ml, 4)})
    doc: dict[str, Any] = {
        "source": source,
        "voxel_volume_ml": voxel_ml,
        "labels": rows,
        "model": model,
        "model_sha256": sha256,
    }
    if brain is not None:
        n = int(np.count_nonzero(brain))
        doc["intracranial_volume_ml"] = round(n * voxel_ml, 4)
        doc["intracranial_voxels"] = n
    return doc


def stats_text(doc: dict[str, Any], dest: str) -> str:
    """The statistics as JSON, or as CSV (one row per label; ICV, model, recognised contrast and warnings as extra columns)."""
    if dest.lower().endswith(".csv"):
        contrast = doc.get("contrast") or {}
        extra = [contrast.get("label", "") if isinstance(contrast, dict) else str(contrast), "; ".join(doc.get("warnings") or [])]
        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["source", "label", "name", "voxels", "volume_ml", "intracranial_volume_ml", "model", "model_sha256",
                    "contrast", "warnings"])
        for r in doc["labels"]:
            w.writerow(
                [doc.get("source") or "", r["label"], r["name"], r["voxels"], r["volume_ml"],
                 doc.get("intracranial_volume_ml", ""), doc.get("model") or "", doc.get("model_sha256") or "", *extra]
            )
        return buf.getvalue()
    if dest.lower().endswith(".json") or dest == "-":
        return json.dumps(doc, indent=2) + "\n"
    raise UsageError(f"--stats {dest!r}: use a .json or .csv file")


# -- QC mosaic -------------------------------------------------------------------------------------


def qc_png(image: Image, labels: Image, table: Table, *, ct: bool = False, title: str = "", alpha: float = 0.45) -> bytes:
    """PNG bytes: axial, coronal and sagittal views through the labels' centre, overlay and legend.

    The image is shown in RAS orientation (radiological left/right would
    mislead without annotations, so the panels say which side is R).
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    ras = qc.ras_volume(image)
    lv = Image(np.asarray(labels.data), labels.affine).reorient("RAS").data
    if lv.any():
        where = np.argwhere(lv > 0)
        centre = [int(round(c)) for c in where.mean(axis=0)]
        # The mid-sagittal plane of a head is mostly fissure: show one hemisphere instead.
        centre[0] = int(round(np.percentile(where[:, 0], 30)))
    else:
        centre = [s // 2 for s in lv.shape]
    lut = np.zeros((256, 3), np.float32)
    for v, (_, c) in table.items():
        lut[v] = c
    # Window from the three displayed slices only: percentiles of a whole volume cost seconds.
    lo, hi = qc.window(np.concatenate([qc.plane(ras.data, a, centre[a]).ravel() for a in range(3)]), ct)
    height = 256
    panels = []
    for name, axis in qc.PLANES:
        if any(lv.shape[a] == 1 for a in range(3) if a != axis):
            continue  # a single slice has no view across it
        lbl = qc.plane(lv, axis, centre[axis])
        rgb = np.repeat(qc.grey(qc.plane(ras.data, axis, centre[axis]), lo, hi)[..., None] * 255.0, 3, axis=-1)
        on = lbl > 0
        rgb[on] = (1 - alpha) * rgb[on] + alpha * lut[lbl[on]]
        # Outline each label so thin structures stay visible under the blend.
        edge = qc.outline(lbl)
        rgb[edge] = lut[lbl[edge]]
        pic = qc.to_pil(qc.display(rgb))
        width = qc.panel_width(lv.shape, ras.spacing, axis, height)
        panels.append((name, pic.resize((width, height), PILImage.NEAREST if min(pic.size) > 200 else PILImage.BILINEAR)))
    canvas, x = qc.strip(panels, extra_width=230, text_size=15)
    draw = ImageDraw.Draw(canvas)
    font, small = qc.font(15), qc.font(13)
    y = 8
    for line in qc.wrap(title or "labels", 26):
        draw.text((x, y), line, fill=qc.TEXT, font=font if y == 8 else small)
        y += 20
    y += 8
    counts = np.bincount(lv.ravel().astype(np.int64), minlength=256)
    for v, (n, c) in sorted(table.items()):
        draw.rectangle([x, y, x + 16, y + 14], fill=tuple(c), outline=(200, 200, 200))
        draw.text((x + 22, y), f"{v} {n}" + ("" if counts[v] else " (none)"), fill=qc.TEXT, font=small)
        y += 20
    return qc.png(canvas)


def parse_labels(text: str | None, table: Table) -> list[int] | None:
    """``--labels 2,3`` (values or names) -> sorted label values; None keeps all."""
    if not text:
        return None
    names = {n.lower(): v for v, (n, _) in table.items()}
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.isdigit() and int(part) in table:
            out.append(int(part))
        elif part.lower() in names:
            out.append(names[part.lower()])
        else:
            known = ", ".join(f"{v}={n}" for v, (n, _) in sorted(table.items()))
            raise UsageError(f"--labels: no label {part!r} in this task (known: {known})")
    return sorted(set(out))


def probabilities_image(probs: Image, keep: Sequence[int] | None) -> Image:
    """4D float32 probabilities, channel k-1 = label k; ``keep`` selects channels."""
    data = np.asarray(probs.data, np.float32)
    if data.ndim == 3:
        data = data[..., None]
    if keep:
        data = data[..., [k - 1 for k in keep]]
    return Image(np.ascontiguousarray(data), probs.affine, dict(probs.meta))

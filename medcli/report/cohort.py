"""Cohort reports: per-scan JSON reports -> one table, robust outlier flags, SVG histograms, CSV.

The robust z of a value is ``(x - median) / (1.4826 * MAD)`` per column: a few
outliers do not widen the yardstick they are measured with, unlike mean and SD.
"""

from __future__ import annotations

import csv
import io as _io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medcli import __version__
from medcli.errors import InputError


def key_numbers(doc: dict[str, Any]) -> dict[str, float]:
    """The numbers of one report that a cohort table shows (volumes, % ICV, findings, landmarks)."""
    out: dict[str, float] = {}
    vol = doc.get("volumes") or {}
    if vol.get("intracranial_volume_ml") is not None:
        out["ICV mL"] = float(vol["intracranial_volume_ml"])
    for r in vol.get("labels") or []:
        out[f"{r['name']} mL"] = float(r["volume_ml"])
        if r.get("percent_icv") is not None:
            out[f"{r['name']} %ICV"] = float(r["percent_icv"])
    if "findings" in doc:
        out["findings"] = float(len(doc["findings"] or []))
    if "landmarks" in doc:
        out["landmarks"] = float(len(doc["landmarks"] or []))
    return out


def load(paths: Sequence[str]) -> list[dict[str, Any]]:
    """One row per report: subject name, link to its HTML page (when beside it), key numbers.

    Raises:
        InputError: a missing file or one that is not a medcli report.
    """
    rows = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text(encoding="utf-8"))
        except OSError as e:
            from medcli.io.safe import os_error_to_input

            raise os_error_to_input(e, p) from e
        except json.JSONDecodeError as e:
            raise InputError(f"malformed JSON ({e.msg})", p) from e
        if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("medcli.report/"):
            raise InputError("not a medcli report (no schema medcli.report/N): make it with medcli report -o NAME.json", p)
        page = Path(p).with_suffix(".html")
        src = (doc.get("identity") or {}).get("source") or Path(p).stem
        rows.append({"subject": str(src), "report": p, "link": page.name if page.is_file() else "", **key_numbers(doc)})
    return rows


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in ("subject", "report", "link", "flags") and k not in cols:
                cols.append(k)
    return cols


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD), NaN-aware; 0 where the MAD is 0 and x is the median."""
    med = np.nanmedian(values)
    mad = 1.4826 * np.nanmedian(np.abs(values - med))
    if not np.isfinite(mad) or mad == 0:
        return np.where(values == med, 0.0, np.inf * np.sign(values - med))
    return (values - med) / mad


def flag(rows: list[dict[str, Any]], threshold: float = 3.0) -> list[dict[str, Any]]:
    """Mark each row's outlying columns (``row['flags']``); return the outliers, largest |z| first."""
    cols = columns_of(rows)
    for r in rows:
        r["flags"] = []
    outliers = []
    for c in cols:
        if c in ("findings", "landmarks"):
            continue  # counts: 0 for most subjects, any finding would be an "outlier"
        v = np.array([r.get(c, np.nan) for r in rows], float)
        if np.isfinite(v).sum() < 5:
            continue  # too few subjects for a robust scale
        z = robust_z(v)
        for i in np.flatnonzero(np.abs(np.nan_to_num(z)) > threshold):
            rows[i]["flags"].append(c)
            outliers.append({"index": int(i), "subject": rows[i]["subject"], "column": c, "value": float(v[i]), "z": float(z[i])})
    outliers.sort(key=lambda o: -abs(o["z"]) if np.isfinite(o["z"]) else -1e300)
    return outliers


def html(rows: list[dict[str, Any]], threshold: float = 3.0) -> str:
    """The cohort page (one self-contained HTML file)."""
    from medcli.report.figures import histogram_svg
    from medcli.report.render import _css, _env

    outliers = flag(rows, threshold)
    cols = columns_of(rows)
    for r in rows:
        for c in cols:
            r.setdefault(c, None)
    plots = []
    for c in cols:
        vals = [r[c] for r in rows if r[c] is not None]
        flagged = [r[c] for r in rows if c in r["flags"]]
        unit = "" if "%" in c or c in ("findings", "landmarks") else " mL"
        plots.append(histogram_svg(vals, c.replace(" mL", "") + (" (mL)" if unit else ""), "", flagged))
    return _env().get_template("cohort.html").render(
        rows=rows, columns=cols, plots=plots, outliers=outliers, threshold=threshold, css=_css(), generated_by=f"medcli {__version__}"
    )


def csv_text(rows: list[dict[str, Any]]) -> str:
    cols = columns_of(rows)
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["subject", "report"] + cols)
    for r in rows:
        w.writerow([r["subject"], r["report"]] + ["" if r.get(c) is None else r[c] for c in cols])
    return buf.getvalue()

"""Radial errors between predicted and reference landmarks (the AFIDs "AFLE"), in mm.

Points are matched by label; a label missing from either side, or a point without a
position, counts as missing (never as an error of zero).

Example:
    >>> import numpy as np
    >>> from medcli.io.points import Points
    >>> t = Points(np.zeros((2, 3)), ["AC", "PC"])
    >>> p = Points(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]), ["AC", "PC"])
    >>> radial_errors(p, t)["mean_mm"]
    3.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medcli.errors import InputError
from medcli.io.points import Points


def radial_errors(pred: Points, truth: Points) -> dict[str, Any]:
    """Per-landmark Euclidean distances (mm) and their summary.

    Args:
        pred: Detected points.
        truth: Reference points (e.g. a rater's); the table follows their order.

    Returns:
        ``{"landmarks": [{"label", "description", "error_mm"}...], "n", "missing",
        "mean_mm", "std_mm", "median_mm", "max_mm"}``; ``error_mm`` is None where missing.

    Raises:
        InputError: when no label is shared.
    """
    index = {lab: i for i, lab in enumerate(pred.labels)}
    if not any(lab in index for lab in truth.labels):
        raise InputError(
            f"no landmark label in common (prediction {', '.join(pred.labels[:4])}...; truth {', '.join(truth.labels[:4])}...)"
        )
    rows, errs = [], []
    for j, lab in enumerate(truth.labels):
        e = None
        if lab in index:
            d = float(np.linalg.norm(pred.ras[index[lab]] - truth.ras[j]))
            if np.isfinite(d):
                e = d
                errs.append(d)
        rows.append({"label": lab, "description": truth.descriptions[j], "error_mm": None if e is None else round(e, 4)})
    a = np.array(errs)
    summary = {
        "n": int(a.size),
        "missing": len(rows) - int(a.size),
        "mean_mm": round(float(a.mean()), 4) if a.size else None,
        "std_mm": round(float(a.std()), 4) if a.size else None,
        "median_mm": round(float(np.median(a)), 4) if a.size else None,
        "max_mm": round(float(a.max()), 4) if a.size else None,
    }
    return {"landmarks": rows, **summary}


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`radial_errors` (one row per landmark, then the summary)."""
    w = max([len(r["label"]) for r in result["landmarks"]] + [5])
    lines = [f"{'label':<{w}}  {'error_mm':>8}  description"]
    for r in result["landmarks"]:
        e = "missing" if r["error_mm"] is None else f"{r['error_mm']:.2f}"
        lines.append(f"{r['label']:<{w}}  {e:>8}  {r['description']}")
    if result["n"]:
        lines.append(
            f"mean radial error {result['mean_mm']:.2f} +- {result['std_mm']:.2f} mm, median {result['median_mm']:.2f}, "
            f"max {result['max_mm']:.2f} over {result['n']} landmarks ({result['missing']} missing)"
        )
    return "\n".join(lines) + "\n"

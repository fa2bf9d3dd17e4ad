"""Synthetic per-subject JSON reports for cohort tests and the benchmark (volumes drawn around adult norms)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def subject_doc(name: str, icv: float, gm_frac: float, wm_frac: float, n_findings: int = 0) -> dict:
    csf = icv * (1 - gm_frac - wm_frac)
    labels = [{"name": n, "volume_ml": round(v, 2), "voxels": int(v * 1000), "percent_icv": round(100 * v / icv, 2), "id": f"vol-{n}"}
              for n, v in (("CSF", csf), ("GM", icv * gm_frac), ("WM", icv * wm_frac))]
    return {"schema": "medcli.report/1", "identity": {"source": name},
            "volumes": {"intracranial_volume_ml": round(icv, 2), "labels": labels},
            "findings": [{"id": i + 1} for i in range(n_findings)]}


def write_cohort(folder: Path, n: int, seed: int = 0, outliers: dict[int, float] | None = None, pages: bool = False) -> list[Path]:
    """``n`` reports ``sub-XXXX.json`` in ``folder``; ``outliers`` maps subject index -> ICV (mL)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        icv = float((outliers or {}).get(i, rng.normal(1450, 120)))
        doc = subject_doc(f"sub-{i:04d}", icv, rng.normal(0.43, 0.02), rng.normal(0.36, 0.02), int(rng.poisson(0.5)))
        p = folder / f"sub-{i:04d}.json"
        p.write_text(json.dumps(doc))
        if pages:
            p.with_suffix(".html").write_text("<!DOCTYPE html><title>x</title>")
        paths.append(p)
    return paths

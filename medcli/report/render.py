"""Render report documents: HTML (one self-contained file: inline CSS, inline WebP/SVG, no script,
no font or request), Markdown and JSON.

Templates are Jinja2 (autoescaped) and live in :mod:`medcli.report.templates`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from medcli.report.figures import Figure


def _env():
    import jinja2

    from medcli.report import templates

    env = jinja2.Environment(
        loader=jinja2.DictLoader(templates.TEMPLATES), autoescape=True,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["num"] = _num
    return env


def _num(v: Any, nd: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int, float)):
        return f"{v:,.{nd}f}"
    return str(v)


def html(doc: dict[str, Any], figures: Sequence[Figure] = (), crops: dict[str, Figure] | None = None) -> str:
    """The single-scan report as one HTML page."""
    return _env().get_template("report.html").render(doc=doc, figures=list(figures), crops=crops or {}, css=_css())


def markdown(doc: dict[str, Any]) -> str:
    """The report as Markdown (tables and narrative; no pictures)."""
    return _env().get_template("report.md").render(doc=doc)


def to_json(doc: dict[str, Any]) -> str:
    def clean(o: Any) -> Any:
        if isinstance(o, float):
            return None if not math.isfinite(o) else o
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    return json.dumps(clean(doc), indent=2) + "\n"


def _css() -> str:
    from medcli.report.templates import CSS

    return CSS

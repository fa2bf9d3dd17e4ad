"""One call from inputs to report texts: :func:`scan_report` (used by ``medcli report``)."""

from __future__ import annotations

from typing import Any, Sequence

from medcli.errors import UsageError
from medcli.image import Image
from medcli.report.inputs import Item

FORMATS = (".html", ".htm", ".md", ".json")


def format_of(dest: str) -> str:
    low = dest.lower()
    for ext in FORMATS:
        if low.endswith(ext):
            return ext.lstrip(".").replace("htm", "html").replace("htmll", "html")
    raise UsageError(f"-o {dest!r}: a report is .html, .md or .json")


def scan_report(image: Image, source: str, items: Sequence[Item], formats: Sequence[str], sha256: str | None = None) -> dict[str, Any]:
    """The report of one scan in each of ``formats`` ('html', 'md', 'json'): {format: text}."""
    from medcli.report import render
    from medcli.report.build import build, pictures

    doc = build(image, source, items, sha256=sha256)
    out: dict[str, Any] = {}
    if "html" in formats:
        figs, crops = pictures(image, items, doc)
        out["html"] = render.html(doc, figs, crops)
    if "md" in formats:
        out["md"] = render.markdown(doc)
    if "json" in formats:
        out["json"] = render.to_json(doc)
    out["doc"] = doc
    return out

"""Landmark sets: a points file placed on a template image, described in ``medcli/data/landmark_sets.json``.

A set is data, not code: adding one is adding an entry (points file in medcli/data, the
template as a ``sample:`` name or a path) to that JSON file.

Example:
    >>> s = load_set("afids")
    >>> len(s.points), s.points.descriptions[0]
    (32, 'AC')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcli.errors import UsageError
from medcli.io.points import Points, read_points

DATA = Path(__file__).resolve().parents[1] / "data"
SETS_FILE = DATA / "landmark_sets.json"


@dataclass
class LandmarkSet:
    """A named set of landmarks on a template.

    Attributes:
        name: The set's name (``afids``).
        points: The landmarks in the template's world space (RAS mm).
        template: The template image: ``sample:NAME`` or a path.
        info: The rest of the set's entry (spaces, licence, rater error...).
    """

    name: str
    points: Points
    template: str
    info: dict[str, Any] = field(default_factory=dict)


def set_names() -> list[str]:
    """Names of the landmark sets medcli ships."""
    return sorted(json.loads(SETS_FILE.read_text()))


def load_set(name: str) -> LandmarkSet:
    """The landmark set ``name`` (raises :class:`UsageError` for an unknown one)."""
    sets = json.loads(SETS_FILE.read_text())
    if name not in sets:
        raise UsageError(f"unknown landmark set {name!r} (known: {', '.join(sorted(sets))})")
    entry = dict(sets[name])
    points = read_points(DATA / entry.pop("points"))
    points.name = name
    return LandmarkSet(name=name, points=points, template=entry.pop("template"), info=entry)

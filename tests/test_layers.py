"""The package's layers: the command line sits on top, and nothing below it imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import medcli

ROOT = Path(medcli.__file__).parent
TOP = ("medcli.cli", "medcli.commands")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_nothing_below_the_command_line_imports_it():
    below = [p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] not in ("cli", "commands", "__main__.py")]
    assert len(below) > 50  # the walk found the packages
    bad = {
        str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith(TOP))
        for p in below
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_check_sees_a_violation(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from medcli.cli.command import run_batch\n")
    assert "medcli.cli.command" in imported_modules(f)

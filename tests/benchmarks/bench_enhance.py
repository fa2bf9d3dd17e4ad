"""The enhancement benchmark: biascorrect, denoise, harmonize and superres against their peers.

One runner for four sections, each a module of ``tests/benchmarks/enhance/``
with ``run(quick: bool) -> list[dict]`` (rows) and ``markdown(rows) -> str``
(its table with quality and time ratios against the peer). The runner runs
the chosen sections in one process, prints every table and writes them all to
``tests/benchmarks/results/enhance.md``.

Usage::

    python tests/benchmarks/bench_enhance.py [--quick] [--sections bias,denoise]

Sections (peers): ``bias`` (SimpleITK N4 at its best swept settings, ANTsPy
N4), ``denoise`` (DIPY non-local means and MP-PCA), ``harmonize``
(intensity-normalization, scikit-image), ``superres`` (ANTs B-spline).
See each section's docstring for its data, metric and target.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SECTIONS = ("bias", "denoise", "harmonize", "superres")
RESULTS = HERE / "results" / "enhance.md"


def load_section(name: str):
    """Import ``tests/benchmarks/enhance/NAME.py`` (not a package: by path)."""
    path = HERE / "enhance" / f"{name}.py"
    if not path.exists():
        return None
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"bench_enhance_{name}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def generic_table(name: str, rows: list[dict]) -> str:
    """A plain table of every key, for a section without its own ``markdown``."""
    if not rows:
        return f"### {name}\n\n(no rows)\n"
    keys = [k for k in rows[0] if k != "section"]
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"### {name}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table(module, name: str, rows: list[dict], quick: bool) -> str:
    fn = getattr(module, "markdown", None)
    if fn is None:
        return generic_table(name, rows)
    params = inspect.signature(fn).parameters
    return fn(rows, quick) if "quick" in params else fn(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="medcli enhancement benchmark (all sections, one run).")
    ap.add_argument("--quick", action="store_true", help="smaller images and fewer cases (minutes, not tens of minutes)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    ap.add_argument("--output", default=str(RESULTS), help="markdown file to write")
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    parts = []
    failed = []
    for name in chosen:
        module = load_section(name)
        if module is None:
            print(f"bench_enhance: section {name}: tests/benchmarks/enhance/{name}.py is missing", file=sys.stderr)
            failed.append(name)
            continue
        t0 = time.perf_counter()
        try:
            rows = module.run(args.quick)
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the others' results
            print(f"bench_enhance: section {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(name)
            continue
        text = table(module, name, rows, args.quick)
        print(text, flush=True)
        parts.append((name, text, time.perf_counter() - t0))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "## Enhancement benchmark",
        "",
        "`python tests/benchmarks/bench_enhance.py [--quick] [--sections ...]` on "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}. "
        "Each section runs medcli and its peer side by side on the same images in one run; a run of some "
        "sections keeps the others' last results (the command and date under each table).",
        "",
    ]
    out = Path(args.output)
    if parts:
        # Sections not run this time keep their last results (each marked with
        # the command and date of the run that produced it).
        kept = previous_sections(out)
        for name, text, secs in parts:
            cmd = f"python tests/benchmarks/bench_enhance.py{' --quick' if args.quick else ''} --sections {name}"
            kept[name] = f"{text}\n_{name}: {secs:.0f} s for the section; `{cmd}`, {stamp}._\n"
        body = "\n".join(f"<!-- section: {n} -->\n{kept[n]}" for n in SECTIONS if n in kept)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(head) + "\n" + body)
        print(f"bench_enhance: wrote {out}", file=sys.stderr)
    return 1 if failed else 0


def previous_sections(path: Path) -> dict[str, str]:
    """The sections of an earlier results file, by name."""
    if not path.exists():
        return {}
    found: dict[str, str] = {}
    chunks = path.read_text().split("<!-- section: ")[1:]
    for chunk in chunks:
        name, _, text = chunk.partition(" -->\n")
        found[name.strip()] = text.rstrip("\n") + "\n"
    return found


if __name__ == "__main__":
    sys.exit(main())

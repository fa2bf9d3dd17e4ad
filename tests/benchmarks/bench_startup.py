"""Benchmark: how fast medcli answers --help, against the floor of importing typer.

A command-line tool that takes seconds to print its help (because it imports
torch first) is painful in shells, completions and job scripts. medcli imports
command modules lazily, so ``medcli --help`` should cost little more than
``python -c "import typer"``; the target is a ratio <= 2.5.

Every case runs as a fresh process (the installed ``medcli`` entry point, the
same Python), interleaved, N times; the table gives the median wall time.

Run: ``python tests/benchmarks/bench_startup.py [--quick] [-n N]``.
Writes ``tests/benchmarks/results/startup.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "benchmarks" / "results" / "startup.md"
TARGET = 2.5


def medcli_exe() -> list[str]:
    exe = Path(sys.executable).parent / "medcli"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("medcli")
    return [found] if found else [sys.executable, "-m", "medcli"]


def cases() -> list[tuple[str, list[str]]]:
    m = medcli_exe()
    return [
        ('python -c "import typer" (baseline)', [sys.executable, "-c", "import typer"]),
        ("medcli --help", [*m, "--help"]),
        ("medcli --version", [*m, "--version"]),
        ("medcli convert --help", [*m, "convert", "--help"]),
        ("medcli info --help", [*m, "info", "--help"]),
    ]


def time_once(argv: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "100"})
    dt = time.perf_counter() - t0
    if r.returncode not in (0,):
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.decode()[-500:]}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="7 runs per case instead of 21")
    ap.add_argument("-n", type=int, default=None, help="runs per case")
    args = ap.parse_args()
    n = args.n or (7 if args.quick else 21)
    todo = cases()
    for _, argv in todo:  # warm the file cache and .pyc files
        time_once(argv)
    times: dict[str, list[float]] = {name: [] for name, _ in todo}
    for _ in range(n):  # interleaved, so that load on a shared machine hits every case alike
        for name, argv in todo:
            times[name].append(time_once(argv))
    base = statistics.median(times[todo[0][0]])
    rows = []
    for name, _ in todo:
        med = statistics.median(times[name])
        rows.append((name, med * 1000, min(times[name]) * 1000, med / base))
    head = "| command | median ms | min ms | ratio to import typer |\n|---|---:|---:|---:|"
    body = "\n".join(f"| `{a}` | {b:.0f} | {c:.0f} | {d:.2f} |" for a, b, c, d in rows)
    ratio = rows[1][3]
    verdict = "meets" if ratio <= TARGET else "MISSES"
    text = (
        "# Startup time\n\n"
        f"Fresh process per run, median of {n} interleaved runs; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}), shared machine.\n\n"
        f"{head}\n{body}\n\n"
        f"`medcli --help` / `import typer` = **{ratio:.2f}** ({verdict} the target <= {TARGET}).\n"
    )
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: how fast medcli answers --help, against the floor of importing typer.

A command-line tool that takes seconds to print its help (because it imports
torch first) is painful in shells, completions and job scripts. medcli imports
command modules lazily, so ``medcli --help`` should cost little more than
``python -c "import typer"``, and so should every ``medcli CMD --help``; the
target is a ratio <= 2.5 for each.

A command's help is rendered once (typer + rich from the declaration) and then
served from medcli's help cache (:mod:`medcli.cli.helpcache`) until one of its
sources changes; the table shows both: the steady state (cached, what a user
meets from the second call on) and the first render (``MEDCLI_HELP_CACHE=0``).
The cache lives in a fresh temporary ``MEDCLI_HOME`` for the run.

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
import tempfile
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


def commands() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from medcli.cli.app import COMMANDS, _available

    return [name for name, (module, _) in COMMANDS.items() if _available(module)]


def cases() -> list[tuple[str, list[str], dict]]:
    m = medcli_exe()
    out = [
        ('python -c "import typer" (baseline)', [sys.executable, "-c", "import typer"], {}),
        ("medcli --help", [*m, "--help"], {}),
        ("medcli --version", [*m, "--version"], {}),
    ]
    names = commands()
    out += [(f"medcli {c} --help", [*m, c, "--help"], {}) for c in names]
    out += [(f"medcli {c} --help (first render, no cache)", [*m, c, "--help"], {"MEDCLI_HELP_CACHE": "0"}) for c in names]
    return out


def time_once(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "100", **env})
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
    os.environ["MEDCLI_HOME"] = tempfile.mkdtemp(prefix="medcli-bench-startup-")
    todo = cases()
    for _, argv, env in todo:  # warm the file cache and .pyc files (and render each help once)
        time_once(argv, env)
    times: dict[str, list[float]] = {name: [] for name, _, _ in todo}
    for _ in range(n):  # interleaved, so that load on a shared machine hits every case alike
        for name, argv, env in todo:
            times[name].append(time_once(argv, env))
    base = statistics.median(times[todo[0][0]])
    rows = []
    for name, _, _ in todo:
        med = statistics.median(times[name])
        rows.append((name, med * 1000, min(times[name]) * 1000, med / base))
    head = "| command | median ms | min ms | ratio to import typer |\n|---|---:|---:|---:|"
    body = "\n".join(f"| `{a}` | {b:.0f} | {c:.0f} | {d:.2f} |" for a, b, c, d in rows)
    root = rows[1][3]
    served = [r for r in rows[3:] if "first render" not in r[0]]
    worst = max(served, key=lambda r: r[3])
    first = [r[3] for r in rows if "first render" in r[0]]
    ok = root <= TARGET and worst[3] <= TARGET
    verdict = "meets" if ok else "MISSES"
    text = (
        "# Startup time\n\n"
        f"Fresh process per run, median of {n} interleaved runs; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}), shared machine.\n\n"
        f"{head}\n{body}\n\n"
        f"`medcli --help` / `import typer` = **{root:.2f}**; slowest `medcli CMD --help` = **{worst[3]:.2f}** "
        f"(`{worst[0]}`); first render of a command's help (before the cache holds it): "
        f"{min(first):.2f} to {max(first):.2f}. This {verdict} the target <= {TARGET}.\n"
    )
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of ``medcli report``: size and real-browser load time of a scan report and of cohort
pages (10, 100, 1000 synthetic subjects), and ``report --run brain,tissue,detect`` against the separate commands
(segment brain, segment tissue, detect, then report --with) on the bundled MNI T1.

Run: ``python tests/benchmarks/bench_report.py`` (needs /usr/bin/chromium and playwright).
Writes ``tests/benchmarks/results/report.md``. Whole command lines are timed (process start,
reading, model loading included), as a user runs them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "tests" / "benchmarks" / "results" / "report.md"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


CPU: list[float] = []  # CPU seconds (user + system) of the last medcli() call: less sensitive to a loaded machine


def medcli(*args: str, cwd: Path) -> float:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "medcli", *args, "--force"], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"medcli {' '.join(args)} failed: {r.stderr.strip()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return time.perf_counter() - t0


def best_of(n: int, *args: str, cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds: the fastest of ``n`` runs (the shared machine's load only adds time)."""
    runs = []
    for _ in range(n):
        wall = medcli(*args, cwd=cwd)
        runs.append((wall, CPU[-1]))
    return min(runs)


def load_times(path: Path, repeats: int = 5) -> tuple[float, int]:
    """Median seconds from navigation to the load event in chromium, and requests made beyond the file."""
    from playwright.sync_api import sync_playwright

    url = path.resolve().as_uri()
    times, extra = [], 0
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for _ in range(repeats):
            page = b.new_page()
            others: list[str] = []
            page.on("request", lambda r: others.append(r.url) if r.url != url and not r.url.startswith("data:") else None)
            t0 = time.perf_counter()
            page.goto(url, wait_until="load")
            times.append(time.perf_counter() - t0)
            extra = max(extra, len(others))
            page.close()
        b.close()
    return statistics.median(times), extra


def main() -> None:
    from tests.report._synth import write_cohort

    work = Path(tempfile.mkdtemp(prefix="bench_report_"))
    rows = []
    # -- one scan: --run all vs the separate commands --------------------------------------------
    repeats = 2
    t_run, c_run = best_of(repeats, "report", "sample:t1", "--run", "brain,tissue,detect", "-o", "run.html", "-o", "run.json", cwd=work)
    sep_runs = [
        best_of(repeats, "segment", "sample:t1", "-o", "brain.nii.gz", "--stats", "brain_stats.json", cwd=work),
        best_of(repeats, "segment", "sample:t1", "--task", "tissue", "-o", "tissue.nii.gz", "--stats", "tissue_stats.json", cwd=work),
        best_of(repeats, "detect", "sample:t1", "-o", "findings.json", cwd=work),
        best_of(repeats, "report", "sample:t1", *sum((["--with", f] for f in ("brain.nii.gz", "tissue.nii.gz", "tissue_stats.json", "findings.json")), []),
                "-o", "sep.html", cwd=work),
    ]
    t_sep = [w for w, _ in sep_runs]
    c_sep = sum(c for _, c in sep_runs)
    load, extra = load_times(work / "run.html")
    rows.append(("one scan (MNI T1, --run brain,tissue,detect)", (work / "run.html").stat().st_size, load, extra, t_run))
    # -- cohorts -------------------------------------------------------------------------------------
    for n in (10, 100, 1000):
        d = work / f"cohort{n}"
        d.mkdir()
        paths = write_cohort(d, n, seed=n, outliers={0: 2600.0})
        (d / "list.txt").write_text("\n".join(str(p) for p in paths) + "\n")
        t = medcli("report", "cohort", "--list", str(d / "list.txt"), "-o", str(d / "cohort.html"), "--csv", str(d / "cohort.csv"), cwd=d)
        load, extra = load_times(d / "cohort.html", repeats=3)
        rows.append((f"cohort of {n} (synthetic)", (d / "cohort.html").stat().st_size, load, extra, t))
    sep = sum(t_sep)
    lines = [
        "# medcli report: size, browser load time, one process vs separate commands",
        "",
        f"Machine: shared 2-core CPU, no GPU; chromium {subprocess.run([CHROMIUM, '--version'], capture_output=True, text=True).stdout.strip()} "
        "headless via Playwright; load = navigation to the load event, median of 5 (scan) or 3 (cohorts) loads.",
        "",
        "| report | HTML size (MB) | load in chromium (s) | requests beyond the file | time to make (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {name} | {size / 1e6:.3f} | {load:.2f} | {extra} | {t:.1f} |" for name, size, load, extra, t in rows]
    lines += [
        "",
        "## One process vs separate commands (MNI T1, whole command lines)",
        "",
        f"Fastest of {repeats} runs each; CPU = user + system seconds of the processes.",
        "",
        "| way | wall seconds | CPU seconds |",
        "|---|---:|---:|",
        f"| `report --run brain,tissue,detect` (models loaded once, brain mask shared) | {t_run:.1f} | {c_run:.1f} |",
        f"| `segment` brain + `segment --task tissue` + `detect` + `report --with` | {sep:.1f} "
        f"({' + '.join(f'{t:.1f}' for t in t_sep)}) | {c_sep:.1f} |",
        f"| ratio separate / one process | {sep / t_run:.2f}x | {c_sep / c_run:.2f}x |",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

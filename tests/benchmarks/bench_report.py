"""Benchmark of ``medcli report``: size and real-browser load time of a scan report and of cohort
pages (10, 100, 1000 synthetic subjects), and ``report --run brain,tissue,detect,landmarks`` against the separate
commands (segment brain, segment tissue, detect, landmarks, then report --with) on the bundled MNI T1, in
interleaved pairs (wall and CPU time; median ratio).

Run: ``python tests/benchmarks/bench_report.py [--tasks brain,tissue,detect] [--pairs 3] [--no-browser]``
(the browser part needs /usr/bin/chromium and playwright).
Writes ``tests/benchmarks/results/report.md``. Whole command lines are timed (process start,
reading, model loading included), as a user runs them.
"""

from __future__ import annotations

import shutil
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


#: The separate commands that make what ``report --run TASKS`` makes, then the report of their outputs.
SEPARATE = {
    "brain": (["segment", "IMAGE", "-o", "brain.nii.gz", "--stats", "brain_stats.json"], ["brain.nii.gz", "brain_stats.json"]),
    "tissue": (["segment", "IMAGE", "--task", "tissue", "-o", "tissue.nii.gz", "--stats", "tissue_stats.json"],
               ["tissue.nii.gz", "tissue_stats.json"]),
    "detect": (["detect", "IMAGE", "-o", "findings.json"], ["findings.json"]),
    "landmarks": (["landmarks", "IMAGE", "-o", "afids.json"], ["afids.json"]),
}


PAIRS_HEADING = "## One process vs separate commands"
IMAGE = ["sample:t1"]  # --image


def one_process(tasks: list[str], work: Path) -> tuple[float, float, list[float]]:
    """(wall, CPU, [wall]) of ``report --run TASKS``."""
    wall = medcli("report", IMAGE[0], "--run", ",".join(tasks), "-o", "run.html", "-o", "run.json", cwd=work)
    return wall, CPU[-1], [wall]


def separate(tasks: list[str], work: Path) -> tuple[float, float, list[float]]:
    """(wall, CPU, [wall of each command]) of the separate commands, then ``report --with`` their outputs."""
    walls, cpu, made = [], 0.0, []
    for t in tasks:
        args, outs = SEPARATE[t]
        walls.append(medcli(*[IMAGE[0] if a == "IMAGE" else a for a in args], cwd=work))
        cpu += CPU[-1]
        made += outs
    walls.append(medcli("report", IMAGE[0], *sum((["--with", f] for f in made), []), "-o", "sep.html", "-o", "sep.json", cwd=work))
    return sum(walls), cpu + CPU[-1], walls


def interleaved(tasks: list[str], pairs: int, work: Path, on_pair) -> list[dict]:
    """``pairs`` pairs of (one process, separate commands), the order swapped every pair (A B, B A, A B ...) so that
    a change of the machine's load weighs on both alike; ``on_pair(rows)`` after each pair (partial results kept)."""
    import os

    rows: list[dict] = []
    for i in range(pairs):
        order = ("one", "sep") if i % 2 == 0 else ("sep", "one")
        row: dict = {"pair": i + 1, "order": " ".join("A" if o == "one" else "B" for o in order)}
        for o in order:
            load = os.getloadavg()[0]
            wall, cpu, parts = (one_process if o == "one" else separate)(tasks, work)
            row[o] = {"wall": wall, "cpu": cpu, "parts": parts, "load": load}
        rows.append(row)
        on_pair(rows)
    return rows


def pair_lines(tasks: list[str], rows: list[dict]) -> list[str]:
    """The pairs as a Markdown table, with the median ratios (separate / one process)."""
    if not rows:
        return []
    wall_r = [r["sep"]["wall"] / r["one"]["wall"] for r in rows]
    cpu_r = [r["sep"]["cpu"] / r["one"]["cpu"] for r in rows]
    names = " + ".join(f"`{SEPARATE[t][0][0]}{' ' + t if t in ('brain', 'tissue') else ''}`" for t in tasks) + " + `report --with`"
    lines = [
        f"{PAIRS_HEADING} ({IMAGE[0] if IMAGE[0].startswith('sample:') else Path(IMAGE[0]).name}, `--run {','.join(tasks)}`, whole command lines)",
        "",
        f"A = `report IMAGE --run {','.join(tasks)} -o run.html -o run.json` (models loaded once, image read once, "
        "the brain mask found once and shared). B = " + names + " (same outputs). "
        f"{len(rows)} pairs, interleaved with the order swapped every pair; CPU = user + system seconds of the processes; "
        "load = 1-minute load average of the machine when the run started.",
        "",
        "| pair | order | A wall (s) | A CPU (s) | B wall (s) | B CPU (s) | B commands' wall (s) | load A / B | wall B/A | CPU B/A |",
        "|---:|---|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r, w, c in zip(rows, wall_r, cpu_r):
        a, b = r["one"], r["sep"]
        lines.append(f"| {r['pair']} | {r['order']} | {a['wall']:.1f} | {a['cpu']:.1f} | {b['wall']:.1f} | {b['cpu']:.1f} | "
                     f"{' + '.join(f'{x:.1f}' for x in b['parts'])} | {a['load']:.1f} / {b['load']:.1f} | {w:.2f}x | {c:.2f}x |")
    lines += ["", f"**Median ratio separate / one process: wall {statistics.median(wall_r):.2f}x, CPU {statistics.median(cpu_r):.2f}x** "
              f"(wall ratios {', '.join(f'{x:.2f}' for x in wall_r)}; CPU {', '.join(f'{x:.2f}' for x in cpu_r)}).", ""]
    return lines


def main() -> None:
    import argparse

    from tests.report._synth import write_cohort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="brain,tissue,detect,landmarks", help="analyses of the one-process / separate comparison")
    ap.add_argument("--pairs", type=int, default=3, help="interleaved pairs (A B, B A, ...)")
    ap.add_argument("--no-browser", action="store_true", help="only the one-process / separate comparison")
    ap.add_argument("--no-pairs", action="store_true", help="only sizes and browser load times (the scan report made by one --run)")
    ap.add_argument("--scan-html", type=Path, help="with --no-pairs: measure this scan report (a pair run's run.html) instead of making one")
    ap.add_argument("--image", default="sample:t1", help="the scan (sample:t1 is skull-stripped: the separate commands then need no brain extraction)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="Markdown file written (after every pair)")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    IMAGE[0] = str(Path(args.image).resolve()) if Path(args.image).exists() else args.image
    work = Path(tempfile.mkdtemp(prefix="bench_report_"))
    rows = []
    header = [
        "# medcli report: size, browser load time, one process vs separate commands",
        "",
    ]
    browser_lines: list[str] = []

    def write(pairs_done: list[dict]) -> None:
        """Write the results; a section this run does not measure (--no-browser, --no-pairs) is kept from the file."""
        old = args.results.read_text() if args.results.exists() else ""
        cut = old.find(PAIRS_HEADING)
        kept_browser = old[:cut if cut >= 0 else len(old)].splitlines()[len(header):]
        kept_pairs = old[cut:].splitlines() if cut >= 0 else []
        text = "\n".join(header + (browser_lines or kept_browser) + (kept_pairs if args.no_pairs else pair_lines(tasks, pairs_done)))
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(text)
        print(text, flush=True)

    # -- one scan: --run TASKS vs the separate commands, interleaved -----------------------------------
    pairs = [] if args.no_pairs else interleaved(tasks, args.pairs, work, write)
    if args.no_browser:
        return
    if pairs:
        made = pairs[-1]["one"]["wall"]
    elif args.scan_html:
        shutil.copy(args.scan_html, work / "run.html")
        made = float("nan")  # its time is in the pairs' table
    else:
        made = one_process(tasks, work)[0]
    load, extra = load_times(work / "run.html")
    rows.append((f"one scan (MNI T1, --run {','.join(tasks)})", (work / "run.html").stat().st_size, load, extra, made))
    # -- cohorts -------------------------------------------------------------------------------------
    for n in (10, 100, 1000):
        d = work / f"cohort{n}"
        d.mkdir()
        paths = write_cohort(d, n, seed=n, outliers={0: 2600.0})
        (d / "list.txt").write_text("\n".join(str(p) for p in paths) + "\n")
        t = medcli("report", "cohort", "--list", str(d / "list.txt"), "-o", str(d / "cohort.html"), "--csv", str(d / "cohort.csv"), cwd=d)
        load, extra = load_times(d / "cohort.html", repeats=3)
        rows.append((f"cohort of {n} (synthetic)", (d / "cohort.html").stat().st_size, load, extra, t))
    browser_lines[:] = [
        f"Machine: shared 2-core CPU, no GPU; chromium {subprocess.run([CHROMIUM, '--version'], capture_output=True, text=True).stdout.strip()} "
        "headless via Playwright; load = navigation to the load event, median of 5 (scan) or 3 (cohorts) loads.",
        "",
        "| report | HTML size (MB) | load in chromium (s) | requests beyond the file | time to make (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    browser_lines += [f"| {name} | {size / 1e6:.3f} | {load:.2f} | {extra} | {'A wall below' if t != t else f'{t:.1f}'} |"
                      for name, size, load, extra, t in rows]
    browser_lines.append("")
    write(pairs)


if __name__ == "__main__":
    main()

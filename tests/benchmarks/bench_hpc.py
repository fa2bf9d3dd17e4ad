"""Throughput of a SLURM job array of medcli on this machine: N = 1, 2, 4 tasks, chunked vs one scan per task.

On a one-node loopback SLURM cluster (scripts/slurm_local.sh) it brain-extracts M copies of
the bundled MNI T1 (1 mm, 197 x 233 x 189; deepbet, the default ``segment`` model) with:

* **medcli chunked**: ``--array=0-(N-1)``, each task ``--list --chunk M/N`` (the model loaded
  once per task), as examples/slurm_array.sh does;
* **peer: one scan per task**: ``--array=0-(M-1)%N`` (N at a time, one medcli process and one
  model load per scan), what a per-file workflow (Snakemake's SLURM executor, a naive array) submits.

Each task gets ``--cpus-per-task = max(1, cores // N)`` and medcli takes its ``--threads`` from
``SLURM_CPUS_PER_TASK``. Wall time runs from ``sbatch`` to the end of the last task (scheduler
latency included); scans/hour = M / wall. Per scan it also reports the bytes read and written
and the tasks' peak memory. The machine's load average is printed: on a shared machine the
absolute numbers move with it, the ratios much less.

Usage:
    python tests/benchmarks/bench_hpc.py [--scans 8] [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "hpc"))
sys.path.insert(0, str(ROOT / "tests" / "models"))

from slurm_cluster import local_cluster, missing_programs, write_cohort, write_list  # noqa: E402

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "hpc.md"

# The task body: medcli under a tiny wrapper that reports the peak memory of its child.
TASK = (
    "python -c 'import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "print(\"maxrss_kb\", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)' "
    "medcli segment --list inputs.txt --chunk {chunk} -o {out}/{{stem}}_brain.nii.gz --sidecar -v"
)


def run_array(cluster, work: Path, name: str, array: str, chunk: int, cpus: int, n_scans: int) -> dict:
    out = work / name
    out.mkdir()
    t0 = time.monotonic()
    job = cluster.sbatch(f"--array={array}", f"--cpus-per-task={cpus}", "--mem=3G", f"--job-name={name}",
                         "--output=logs/%x_%A_%a.log", "--wrap", TASK.format(chunk=chunk, out=name), cwd=work, env=cluster.env())
    tasks = cluster.wait(job, timeout=7200)
    wall = time.monotonic() - t0
    bad = [t for t in tasks.values() if t.state != "COMPLETED"]
    if bad:
        logs = "\n".join(p.read_text()[-2000:] for p in sorted((work / "logs").glob(f"{name}_*")))
        raise SystemExit(f"{name}: tasks failed: {bad}\n{logs}")
    logs = [p.read_text() for p in sorted((work / "logs").glob(f"{name}_{job}_*.log"))]
    done = sum(len(re.findall(r"^medcli: \S+ -> \S+ \(", log, flags=re.M)) for log in logs)
    assert done == n_scans, (done, logs)
    rss = max(int(m) for log in logs for m in re.findall(r"^maxrss_kb (\d+)$", log, flags=re.M))
    loads = sum(log.count("device: cpu") for log in logs)  # one line per process that loaded a model
    written = sum(p.stat().st_size for p in out.iterdir())
    return {"wall": wall, "rate": n_scans / wall * 3600, "rss_mb": rss / 1024, "processes": loads, "written": written / n_scans}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=8, help="scans in the array (default 8)")
    ap.add_argument("--quick", action="store_true", help="4 scans at 4 mm (a smoke run; not written to results)")
    args = ap.parse_args()
    why = missing_programs()
    if why:
        raise SystemExit(why)
    from medcli import io

    n_scans = 4 if args.quick else args.scans
    image = io.read("sample:t1")
    if args.quick:
        image = image.resample(4.0)
    cores = len(os.sched_getaffinity(0))
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp, local_cluster(cpus=max(8, cores)) as cluster:
        work = Path(tmp)
        inputs = write_cohort(work / "raw", image, n_scans)
        write_list(work / "inputs.txt", inputs)
        (work / "logs").mkdir()
        read = sum(p.stat().st_size for p in inputs) / n_scans
        for n in (1, 2, 4):
            cpus = max(1, cores // n)
            load = os.getloadavg()[0]
            chunked = run_array(cluster, work, f"chunk{n}", f"0-{n - 1}", -(-n_scans // n), cpus, n_scans)
            single = run_array(cluster, work, f"single{n}", f"0-{n_scans - 1}%{n}", 1, cpus, n_scans)
            rows.append((n, cpus, load, chunked, single))
            print(f"N={n} cpus/task={cpus} load={load:.1f}: chunked {chunked['wall']:.1f} s ({chunked['rate']:.0f} scans/h), "
                  f"one scan per task {single['wall']:.1f} s ({single['rate']:.0f} scans/h), ratio {chunked['rate'] / single['rate']:.2f}",
                  flush=True)
    lines = [
        "# HPC: throughput of a SLURM job array (scans per hour)",
        "",
        f"`medcli segment` (brain, deepbet) of {n_scans} scans of the bundled MNI T1 "
        f"({'4 mm' if args.quick else '1 mm, 197 x 233 x 189'}), on a one-node loopback SLURM cluster "
        f"(scripts/slurm_local.sh) on this machine: {cores} cores, CPU only, shared with other work "
        "(the load average before each row is shown). `--threads` came from `SLURM_CPUS_PER_TASK`. "
        "Wall: from sbatch to the end of the last task. Peer: one scan per task (`--array=0-M%N`), "
        "as a per-file workflow submits it. Run: `python tests/benchmarks/bench_hpc.py`.",
        "",
        "| tasks N | cpus/task | load avg | chunked: wall s | chunked: scans/h | model loads | one scan per task: wall s | scans/h | model loads | ratio | peak RSS/task MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, cpus, load, c, s in rows:
        lines.append(f"| {n} | {cpus} | {load:.1f} | {c['wall']:.1f} | {c['rate']:.0f} | {c['processes']} | {s['wall']:.1f} | "
                     f"{s['rate']:.0f} | {s['processes']} | {c['rate'] / s['rate']:.2f} | {max(c['rss_mb'], s['rss_mb']):.0f} |")
    lines += [
        "",
        f"I/O per scan: {read / 1e6:.2f} MB read (gzipped float32 NIfTI), {rows[0][3]['written'] / 1e6:.3f} MB written "
        "(uint8 mask + JSON sidecar); the model (deepbet, 2 x 8.5 MB safetensors) is read once per task.",
        "",
    ]
    if args.quick:
        print("\n".join(lines))
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""Benchmark: a two-stage medcli pipe against the same work through intermediate files.

``medcli A -o - | medcli B - -o out`` must not cost more than writing the
intermediate image to disk and reading it back (target: pipe / files <= 1.10).
The pipe carries uncompressed NIfTI; the file route is timed with the
fastest intermediate (.nii, the same bytes) and with the usual one (.nii.gz).

Stages: ``convert IN.nrrd -o MID`` then ``convert MID --reorient LPS -o OUT.nii``
on the bundled MNI152 T1 (197 x 233 x 189) and on a 2x upsampled copy
(394 x 466 x 378, 277 MB as float32) where I/O matters more. Outputs of the pipe
and of the file route are checked to be identical. Median of N runs,
interleaved.

Run: ``python tests/benchmarks/bench_pipes.py [--quick]``.
Writes ``tests/benchmarks/results/pipes.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from medcli import io  # noqa: E402
from medcli.image import Image  # noqa: E402

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "pipes.md"
TARGET = 1.10


def medcli() -> str:
    exe = Path(sys.executable).parent / "medcli"
    return shlex.quote(str(exe)) if exe.exists() else f"{shlex.quote(sys.executable)} -m medcli"


def sh(cmd: str, cwd: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, env=env, capture_output=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{r.stderr.decode()[-800:]}")
    return dt


def make_inputs(work: Path, quick: bool) -> list[tuple[str, Path]]:
    t1 = io.read("sample:t1")
    io.write(t1, work / "t1.nrrd")
    out = [("MNI T1 1 mm", work / "t1.nrrd")]
    if not quick:
        big = np.repeat(np.repeat(np.repeat(t1.data.astype(np.float32), 2, 0), 2, 1), 2, 2)
        aff = t1.affine.copy()
        aff[:3, :3] /= 2
        io.write(Image(big, aff), work / "t1_2x.nrrd")
        out.append(("MNI T1 upsampled 2x (float32)", work / "t1_2x.nrrd"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the 1 mm image only, 3 runs")
    ap.add_argument("-n", type=int, default=None, help="runs per case")
    args = ap.parse_args()
    n = args.n or (3 if args.quick else 5)
    m = medcli()
    rows = []
    with tempfile.TemporaryDirectory(prefix="medcli-bench-pipes-") as tmp:
        work = Path(tmp)
        for label, src in make_inputs(work, args.quick):
            routes = {
                "pipe": f"{m} convert {src} -o - | {m} convert - --reorient LPS -o pipe.nii -f",
                "files .nii": f"{m} convert {src} -o mid.nii -f && {m} convert mid.nii --reorient LPS -o files.nii -f && rm mid.nii",
                "files .nii.gz": f"{m} convert {src} -o mid.nii.gz -f && {m} convert mid.nii.gz --reorient LPS -o filesgz.nii -f && rm mid.nii.gz",
            }
            for cmd in routes.values():  # warm-up, and outputs to compare
                sh(cmd, work)
            a, b = io.read(work / "pipe.nii"), io.read(work / "files.nii")
            same = np.array_equal(a.data, b.data) and np.allclose(a.affine, b.affine, atol=1e-5)
            times = {k: [] for k in routes}
            for _ in range(n):
                for k, cmd in routes.items():
                    times[k].append(sh(cmd, work))
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append((label, med["pipe"], med["files .nii"], med["files .nii.gz"], med["pipe"] / med["files .nii"], same))
    head = "| image | pipe s | files (.nii) s | files (.nii.gz) s | pipe / files (.nii) | identical |\n|---|---:|---:|---:|---:|---|"
    body = "\n".join(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {'yes' if r[5] else 'NO'} |" for r in rows)
    worst = max(r[4] for r in rows)
    verdict = "meets" if worst <= TARGET else "MISSES"
    text = (
        "# Pipes vs intermediate files\n\n"
        f"`medcli convert IN.nrrd -o - | medcli convert - --reorient LPS -o OUT.nii` against the same two stages "
        f"through an intermediate file; median of {n} interleaved runs, OMP_NUM_THREADS=1, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, shared machine.\n\n"
        f"{head}\n{body}\n\n"
        f"Worst pipe / files ratio: **{worst:.2f}** ({verdict} the target <= {TARGET}).\n"
    )
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0 if worst <= TARGET and all(r[5] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

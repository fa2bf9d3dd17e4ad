"""Learned registration benchmark: ``medcli register --method classical|learned|hybrid`` side by side.

The case is bench_register's (made by its ``make_case``, deterministic): the
bundled 1 mm MNI T1 is the fixed image; the moving image is the same T1
through a known smooth random displacement (sigma 12 mm, 3 mm RMS) and an
affine; its T2-like rendering is the multi-modal case. The learned model never
saw this displacement: it was trained on pairs its own generator drew
(:mod:`medcli.train.registration`, another family of fields and seeds).

Methods (all ``--type syn``, whole runs as a user makes them, ``--threads 1``):

* ``classical``: rigid -> affine -> SyN-like velocity field (4 and 2 mm levels);
* ``learned``: rigid -> affine -> the network's velocity field (4 mm grid);
* ``hybrid``: ``learned``, then a short classical SyN refinement (2 mm) from it;
* ``affine``: ``--type affine``, the floor every deformable method must beat.

Quality as in bench_register: GM/WM maps through the written transforms by
ANTsPy's ``apply_transforms``, thresholded at 50 %, Dice against the
template's; folded fraction from ANTs' Jacobian of the written warp. Time: CPU
seconds of the whole run (user + sys), wall beside.

Usage::

    nice -n 10 python tests/benchmarks/bench_register_learned.py [--work DIR --reuse-case] [--methods classical,learned,hybrid,affine] [--merge LOG]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results" / "register_learned.md"

from bench_register import dice_of, folded, make_case, run_medcli  # noqa: E402

METHODS = ("classical", "learned", "hybrid", "affine")
CASES = {"T1": "moving", "T2-like": "moving_t2"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spacing", type=float, default=1.0, help="Voxel size of the case in mm (1 = the MNI T1 as shipped).")
    ap.add_argument("--work", default=None, help="Working folder (default: a temporary one).")
    ap.add_argument("--reuse-case", action="store_true", help="Keep the case files already in --work.")
    ap.add_argument("--methods", default=",".join(METHODS), help="Which methods to run (comma-separated).")
    ap.add_argument("--cases", default=",".join(CASES), help="Which cases to run (T1, T2-like).")
    ap.add_argument("--merge", default=None, help="Take the other rows from this earlier run's printed JSON lines.")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_register_learned_"))
    work.mkdir(parents=True, exist_ok=True)
    paths = make_case(work, args.spacing, reuse=args.reuse_case)["paths"]
    methods, cases = args.methods.split(","), args.cases.split(",")
    rows = []
    if args.merge:
        old = [json.loads(line) for line in Path(args.merge).read_text().splitlines() if line.startswith("{")]
        rows += [r for r in old if not (r["method"] in methods and r["case"] in cases)]
    for case in cases:
        for method in methods:
            name = f"{method}_{CASES[case]}"
            kind = "affine" if method == "affine" else "syn"
            extra = () if method == "affine" else ("--method", method)
            t = run_medcli(paths[CASES[case]], paths, work, name, kind, extra)
            gm, wm = dice_of(t["transforms"], paths)
            r = {"method": method, "case": case, "gm": round(gm, 4), "wm": round(wm, 4),
                 "folded": folded(t["transforms"][0], paths) if kind == "syn" else 0.0,
                 "cpu_s": t["cpu_s"], "wall_s": t["wall_s"], "rss_gb": t["rss_gb"], "metric": t["stats"].get("metric")}
            rows.append(r)
            print(json.dumps(r), flush=True)
    write_results(rows, args)
    return 0


def write_results(rows: list[dict], args) -> None:
    order = {m: i for i, m in enumerate(METHODS)}
    rows = sorted(rows, key=lambda r: (list(CASES).index(r["case"]), order.get(r["method"], 9)))
    base = {r["case"]: r for r in rows if r["method"] == "classical"}
    lines = [
        "# medcli register: learned (SynthMorph-style) vs classical deformable stage",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {platform.python_version()}, one thread, "
        f"case spacing {args.spacing:g} mm (bench_register's case: MNI T1 under a known smooth diffeomorphism + affine; "
        "T2-like = its contrast-inverted rendering). `python tests/benchmarks/bench_register_learned.py`.",
        "",
        "| case | method | GM Dice | WM Dice | folded | CPU s | wall s | peak GB | CPU vs classical |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = base.get(r["case"])
        ratio = f"{r['cpu_s'] / b['cpu_s']:.2f}x" if b else ""
        lines.append(
            f"| {r['case']} | {r['method']} | {r['gm']:.4f} | {r['wm']:.4f} | {r['folded']:.2e} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | {r['rss_gb']:.2f} | {ratio} |"
        )
    lines += ["", "Dice: GM/WM maps carried by ANTsPy's apply_transforms through each run's written transforms, 50 % threshold.", ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())

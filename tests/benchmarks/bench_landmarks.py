"""Benchmark: ``medcli landmarks`` (atlas and learned) against the ANTsPy baseline of the AFIDs papers.

Cases (made here, with known answers): the bundled MNI T1 carried through a
known random pull transform ``R = [warp, affine]`` (a smooth random
displacement, then a rotation of up to 15 degrees about each axis, a scaling of
up to 10 % per axis and a translation); the subject image is the template
resampled through ``R``'s inverse, so a template point ``x`` is at ``R(x)`` in
the subject: the 32 AFIDs through ``R`` are the ground truth. Renderings: T1,
T2-like (contrast inverted inside the head, as bench_register makes it), a
4 mm-slice T1 (4 mm slices averaged along z), PD-like (flat,
CSF > GM > WM), and two skull-on heads (medcli.train.heads around the MNI brain,
seeds the landmark model never saw; T1, and T2 with 3 mm slices) through the
same kind of transform.

Two grids, each with its six cases, in one run (``--grids 2,1``):

* **2 mm** (the earlier sessions' cases, unchanged): subjects on 2 mm grids, both tools register with the
  template at 2 mm (medcli ``--spacing 2``, ANTsPy the template resampled to 2 mm);
* **1 mm** (what AFIDs work runs on): subjects on 1 mm grids (the thick-slice ones 1 mm in plane), every tool
  as users run it: medcli's command without ``--spacing`` (its own choice of internal grid), ANTsPy's default
  ``SyN`` on the images as given (the 1 mm subject and the 1 mm template), as AutoAFIDs does.

Tools, whole runs (a fresh process each, one thread each):

* **medcli**: ``medcli landmarks SUBJECT --method atlas|learned --skull off|auto -o pred.fcsv``
  (``auto`` on the skull-on heads: recognised and brain-extracted first);
* **ANTsPy**: ``ants.registration(fixed=subject, moving=template, 'SyN')`` (the
  template onto the subject, as AutoAFIDs and the AFIDs papers do), then the
  template's AFIDs through ``apply_transforms_to_points`` with the inverse
  transforms (``whichtoinvert=[True, False]``: points travel the opposite way of
  images); its time includes importing ANTsPy.

Errors are against the truth; the published rater error (0.94 +- 0.61 mm, AFIDs
on OASIS-1) is shown for scale. Note: the truth is the template's AFIDs carried
exactly, so the 2009b-vs-2009a offset of the bundled coordinates does not enter.

Run: ``nice -n 10 python tests/benchmarks/bench_landmarks.py [--grids 2,1] [--cases N] [--methods learned,atlas] [--work DIR]``.
Writes ``tests/benchmarks/results/landmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from medcli import io
from medcli.io.points import read_points, write_points
from medcli.landmarks.choice import auto_method
from medcli.landmarks.sets import load_set
from medcli.register.transforms import (
    AffineTransform,
    DisplacementField,
    TransformChain,
    warp_image,
)

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "landmarks.md"
ENV = {"OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "MKL_NUM_THREADS": "1"}
RATER = (0.94, 0.61)
ONLY = ""  # the --only options of the run, for the report's command line
SPACING = 2.0  # the grid being run (mm): subjects, ANTsPy's template and medcli's --spacing at 2 mm


def medcli() -> str:
    exe = Path(sys.executable).parent / "medcli"
    return shlex.quote(str(exe)) if exe.exists() else f"{shlex.quote(sys.executable)} -m medcli"


def run(cmd: str, cwd: Path) -> tuple[float, float] | tuple[float, float, str]:
    """Wall and CPU seconds (children's user + sys) of a whole run, and its error's last line if it failed.

    A failed run is a result (its landmarks count as missing: NaN errors, "failed" in the tables), not the end of
    the benchmark: a tool that refuses a case must show in the report.
    """
    c0 = os.times()
    t0 = time.perf_counter()
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env={**os.environ, **ENV}, capture_output=True, check=False)
    dt = time.perf_counter() - t0
    c1 = os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    if r.returncode != 0:
        last = (r.stderr.decode().strip().splitlines() or [f"exit code {r.returncode}"])[-1]
        print(f"failed: {cmd}\n{last}", file=sys.stderr, flush=True)
        return dt, cpu, last
    return dt, cpu


def random_transform(rng: np.random.Generator, grid) -> TransformChain:
    """A smooth random warp (up to 5 mm) then an affine (rotations <= 15 deg, scalings <= 10 %, shifts <= 8 mm)."""
    from scipy import ndimage
    from scipy.spatial.transform import Rotation

    sigma = 8.0 / float(np.sqrt((grid.affine[:3, :3] ** 2).sum(0)).min())  # 8 mm whatever the grid (4 voxels at 2 mm)
    u = np.stack([ndimage.gaussian_filter(rng.normal(size=grid.shape), sigma) for _ in range(3)], -1)
    u *= rng.uniform(3.0, 5.0) / np.linalg.norm(u, axis=-1).max()
    warp = DisplacementField(grid.with_data(u.astype(np.float32)))
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-15, 15, 3), degrees=True).as_matrix() @ np.diag(rng.uniform(0.9, 1.1, 3))
    m[:3, 3] = rng.uniform(-8, 8, 3)
    return TransformChain([warp, AffineTransform(m, center=np.array([0.0, -18.0, 18.0]))])


KINDS = ["T1", "T2-like", "T1, 4 mm slices", "PD-like", "T1 head with skull", "T2 head with skull, 3 mm slices"]
#: Seeds of the skull-on heads (medcli.train.heads): the landmark model trained on heads 0-5 and validated on 1000-1002.
HEAD_SEEDS = 424242


def skull_on_head(i: int, contrast: str, slice_mm: float):
    """A held-out synthetic head with skull around the MNI brain (no deformation of its own: the truth is the AFIDs)."""
    from medcli.image import Image
    from medcli.train.heads import HELD_OUT, synth_head, with_config

    cfg = with_config(HELD_OUT, rotation=0.0, scale=0.0, elastic=0.0, ghost=0.0)
    h = synth_head(np.random.default_rng(HEAD_SEEDS + i), contrast, spacing=SPACING, cfg=cfg, skull=True, slice_mm=SPACING, slice_axis=2)
    img = Image(h.image.astype(np.float32), h.affine)
    return img, slice_mm


def make_cases(work: Path, n: int) -> list[dict]:
    t1 = io.read("sample:t1")
    tmpl = t1 if SPACING == 1.0 else t1.resample(SPACING)
    io.write(tmpl, work / "template.nii.gz")
    afids = load_set("afids").points
    write_points(afids, work / "template_afids.fcsv")
    cases = []
    rng = np.random.default_rng(2026)
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        source, grid = t1, tmpl
        if "skull" in kind:
            source, _ = skull_on_head(i, "t2" if "T2" in kind else "t1", SPACING)
            grid = source
        # the warp lives on a 2 mm grid whatever the subjects' (it is smooth: 8 mm): its inverse costs an eighth at 1 mm
        truth = random_transform(rng, grid if SPACING >= 2.0 else grid.resample(2.0))
        inv = TransformChain([truth[1].inverse(), truth[0].inverse(iterations=50)])  # subject -> template points
        # the subject's grid: the template's field of view, moved with the subject so nothing is cut
        fine = grid.resample([SPACING, SPACING, 1.0]) if "slices" in kind else grid
        img = warp_image(source, inv, fine)
        d = np.asarray(img.data, np.float32)
        if kind == "T2-like":
            d = np.where(d > 8, (300.0 - d) ** 1.3 / 300.0**0.3, 0.0).astype(np.float32)
        if kind == "PD-like":
            # proton density: CSF > GM > WM, flat (CSF/WM 1.4, GM/WM 1.3; flatter still between CSF and GM)
            d = np.where(d > 8, 300.0 + 130.0 * (1.0 - (np.minimum(d, 300.0) / 250.0) ** 2), 0.0).astype(np.float32)
        if "slices" in kind:
            k = 3 if "3 mm" in kind else 4
            z = d.shape[2] // k * k
            d = d[:, :, :z].reshape(d.shape[0], d.shape[1], z // k, k).mean(-1)
            aff = img.affine.copy()
            aff[:3, 2] *= k
            aff[:3, 3] += img.affine[:3, 2] * (k - 1) / 2  # the thick slice's centre
            img = type(img)(d, aff)
        else:
            img = img.with_data(d)
        name = f"case{i}"
        io.write(img, work / f"{name}.nii.gz")
        write_points(afids.moved(truth.transform_points(afids.ras)), work / f"{name}_truth.fcsv")
        cases.append({"name": name, "kind": kind})
    return cases


ANTS = """
import ants, numpy as np, pandas as pd
from medcli.io.points import read_points, write_points
f = ants.image_read('{name}.nii.gz'); m = ants.image_read('template.nii.gz')
reg = ants.registration(fixed=f, moving=m, type_of_transform='SyN', random_seed=1)
p = read_points('template_afids.fcsv')
df = pd.DataFrame(p.lps, columns=['x', 'y', 'z'])
out = ants.apply_transforms_to_points(3, df, reg['invtransforms'], whichtoinvert=[True, False])
write_points(p.moved(out[['x', 'y', 'z']].to_numpy() * np.array([-1.0, -1.0, 1.0])), '{name}_ants.fcsv', force=True)
"""


def errors(pred: Path, truth: Path) -> np.ndarray:
    return np.linalg.norm(read_points(pred).ras - read_points(truth).ras, axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grids", default="2,1", help="grids (mm) of the subjects, comma-separated; each gets its cases")
    ap.add_argument("--cases", type=int, default=len(KINDS), help=f"number of cases per grid ({', '.join(KINDS)}, then again)")
    ap.add_argument("--methods", default="learned,atlas", help="medcli methods to run (comma-separated)")
    ap.add_argument("--skip-ants", action="store_true")
    ap.add_argument("--work", help="keep cases, predictions and timings in this folder (one subfolder per grid); a rerun "
                    "with the same folder runs only the tools it has no result for (the cases are made once)")
    ap.add_argument("--only", action="append", default=[], metavar="GRID:NAMES",
                    help="run only these cases of that grid, in this order (e.g. 1:case0,case4); repeatable")
    args = ap.parse_args()
    only = {float(g): names.split(",") for g, names in (o.split(":", 1) for o in args.only)}
    global ONLY
    ONLY = "".join(f" --only {o}" for o in args.only)
    methods = [x.strip() for x in args.methods.split(",") if x.strip()]
    grids = [float(g) for g in args.grids.split(",") if g.strip()]
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="medcli-bench-landmarks-") as tmp:
        for g in grids:
            work = Path(args.work or tmp) / f"grid{g:g}mm"
            rows, per, made = run_grid(g, work, args.cases, methods, args.skip_ants, results, only.get(g))
            results.append({"grid": g, "rows": rows, "per": per, "made": made})
            report(results, args.cases, methods + (["auto"] if "auto" in per else []))
    return 0


def medcli_flags(grid: float) -> str:
    """At 2 mm the template at the subjects' grid (the earlier sessions' cases); at 1 mm the command's own default."""
    return f"--spacing {grid:g}" if grid != 1.0 else ""


def run_grid(grid: float, work: Path, n_cases: int, methods: list[str], skip_ants: bool, done_grids: list[dict],
             only: list[str] | None = None):
    """Make (once) and run the cases of one grid (``only``: these, in this order); the report is rewritten after each case."""
    global SPACING
    SPACING = grid
    m = medcli()
    rows, per = [], {}
    work.mkdir(parents=True, exist_ok=True)
    done_path = work / "timings.json"
    done = json.loads(done_path.read_text()) if done_path.exists() else {}
    cases = json.loads((work / "cases.json").read_text()) if (work / "cases.json").exists() else make_cases(work, n_cases)
    (work / "cases.json").write_text(json.dumps(cases))
    made = len(cases)
    if only:
        by_name = {c["name"]: c for c in cases}
        cases = [by_name[n] for n in only]
    for c in cases:
        name = c["name"]
        skull = "auto" if "skull" in c["kind"] else "off"
        row = {"case": f"{name} ({c['kind']})", "err": {}, "t": {}}
        tools = [*methods] + ([] if skip_ants else ["ANTsPy"])
        for meth in tools:
            key = f"{name}/{meth}"
            if key not in done:
                if meth == "ANTsPy":
                    script = work / f"{name}_ants.py"
                    script.write_text(textwrap.dedent(ANTS.format(name=name)))
                    done[key] = run(f"{shlex.quote(sys.executable)} {script.name}", work)
                else:
                    done[key] = run(f"{m} landmarks {name}.nii.gz --method {meth} --skull {skull} {medcli_flags(grid)} "
                                    f"-o {name}_{meth}.fcsv --threads 1 --force", work)
                done_path.write_text(json.dumps(done))
            pred = work / (f"{name}_ants.fcsv" if meth == "ANTsPy" else f"{name}_{meth}.fcsv")
            failed = len(done[key]) > 2
            e = np.full(32, np.nan) if failed else errors(pred, work / f"{name}_truth.fcsv")
            if failed:
                row.setdefault("failed", {})[meth] = done[key][2]
            per.setdefault(meth, []).append(e)
            row["err"][meth], row["t"][meth] = e, tuple(done[key][:2])
        if {"learned", "atlas"} <= set(methods):
            # the default: the run of the method --method auto picks on this head (the same command and steps)
            pick = auto_method(skull_on="skull" in c["kind"])
            row["err"]["auto"], row["t"]["auto"] = row["err"][pick], row["t"][pick]
            per.setdefault("auto", []).append(row["err"][pick])
        rows.append(row)
        print(f"{grid:g} mm " + row["case"] + ": " + ", ".join(f"{k} {v.mean():.2f} mm ({row['t'][k][1]:.1f} CPU s)"
                                                             for k, v in row["err"].items()), flush=True)
        report([*done_grids, {"grid": grid, "rows": rows, "per": per, "made": made}], n_cases,
               methods + (["auto"] if "auto" in per else []))  # after each case: a long run leaves what it measured
    return rows, per, made


def report(results: list[dict], n_cases: int, methods: list[str]) -> None:
    import ants

    labels = load_set("afids").points.descriptions
    tools = [*methods, "ANTsPy"] if "ANTsPy" in results[0]["per"] else list(methods)
    name = {t: {"ANTsPy": t, "auto": "medcli default (auto)"}.get(t, f"medcli {t}") for t in tools}
    run_methods = [t for t in methods if t != "auto"]
    grids = ",".join(f"{r['grid']:g}" for r in results)
    lines = [
        "# Landmarks benchmark: medcli landmarks (" + ", ".join(run_methods) + ") vs ANTsPy SyN + apply_transforms_to_points",
        "",
        (f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} ({os.cpu_count()} CPUs, shared with other jobs), "
         f"ANTsPy {ants.__version__}. Per grid, {n_cases} cases: the MNI T1 (or a held-out synthetic skull-on head around the "
         "MNI brain, medcli.train.heads seeds 424242+) through known random smooth warps and affines "
         "(rotations up to 15 deg, scalings up to 10 %), rendered as T1, T2-like, PD-like and thick slices. "
         "**2 mm grid** (the earlier sessions' cases): subjects on 2 mm grids, both tools register with the template at 2 mm "
         "(medcli `--spacing 2`, ANTsPy the template resampled to 2 mm). **1 mm grid**: subjects on 1 mm grids (thick-slice "
         "ones 1 mm in plane), every tool as users run it: medcli without `--spacing`, ANTsPy's default `SyN` on the 1 mm "
         "subject and the 1 mm template. Truth: the template's 32 AFIDs "
         "through the known transform. None of these transforms, renderings or heads was seen in training. Whole runs, one "
         "thread each, ANTsPy's import included; CPU s = user + sys of the process (the machine was shared, so wall times are inflated). "
         "Skull-stripped cases run with --skull off, skull-on cases with --skull auto (recognised and brain-extracted first). "
         f"`nice -n 10 python tests/benchmarks/bench_landmarks.py --grids {grids} --cases {n_cases}{ONLY} --methods {','.join(run_methods)}`."
         + (" medcli default (auto): the run of the method `--method auto` picks for the case (learned on the skull-on "
            "heads, atlas on the skull-stripped ones; medcli.landmarks.choice), which does the same steps." if "auto" in methods else "")),
    ]
    if "ANTsPy" in tools and "auto" in methods:
        lines += ["", "## Summary: the default vs ANTsPy", "",
                  "| grid | case | default mean mm | ANTsPy mean mm | default CPU s | ANTsPy CPU s | CPU ratio |", "|---" * 7 + "|"]
        for res in results:
            for r in res["rows"]:
                a, b = r["t"]["auto"][1], r["t"]["ANTsPy"][1]
                lines.append(f"| {res['grid']:g} mm | {r['case']} | {r['err']['auto'].mean():.2f} | {r['err']['ANTsPy'].mean():.2f} "
                             f"| {a:.1f} | {b:.1f} | {a / b:.2f} |")
            a = sum(r["t"]["auto"][1] for r in res["rows"])
            b = sum(r["t"]["ANTsPy"][1] for r in res["rows"])
            lines.append(f"| {res['grid']:g} mm | all {len(res['rows'])} | {np.mean([r['err']['auto'].mean() for r in res['rows']]):.2f} "
                         f"| {np.mean([r['err']['ANTsPy'].mean() for r in res['rows']]):.2f} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    for res in results:
        lines += grid_section(res, tools, methods, name, labels)
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text, flush=True)


def grid_section(res: dict, tools: list[str], methods: list[str], name: dict, labels: list[str]) -> list[str]:
    """The tables and targets of one grid."""
    g, rows, per = res["grid"], res["rows"], res["per"]
    lines = ["", f"## {g:g} mm grid: {len(rows)} of {res.get('made', len(rows))} cases", "", "Mean / max radial error (mm) and CPU seconds per case:", "",
             "| case | " + " | ".join(f"{name[t]} mean | {name[t]} max | {name[t]} CPU s" for t in tools) + " |",
             "|---" * (1 + 3 * len(tools)) + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | " + " | ".join(
            (f"{r['err'][t].mean():.2f} | {r['err'][t].max():.2f} | {r['t'][t][1]:.1f}" if not r.get("failed", {}).get(t)
             else f"failed | | {r['t'][t][1]:.1f}") if t in r["err"] else " |  | " for t in tools) + " |")
    lines += [f"\nFailed: {name[t]} on {r['case']}: `{msg}`" for r in rows for t, msg in r.get("failed", {}).items() if t in name]
    lines += ["", f"### {g:g} mm: per landmark (median over cases, mm)", "",
              (f"Published rater error (AFIDs, OASIS-1): {RATER[0]} +- {RATER[1]} mm mean over landmarks. A failed run is left "
               "out of its tool's medians (and fails that tool's error targets)."), "",
              "| # | landmark | " + " | ".join(f"{name[t]} median" for t in tools) + " |", "|---" * (2 + len(tools)) + "|"]
    stack = {t: np.stack(per[t]) for t in tools}
    for j, lab in enumerate(labels):
        lines.append(f"| {j + 1} | {lab} | " + " | ".join(f"{np.nanmedian(stack[t][:, j]):.2f}" for t in tools) + " |")
    lines += ["", f"### {g:g} mm: targets", ""]
    am = stack["ANTsPy"].mean(axis=1) if "ANTsPy" in stack else None
    for t in methods:
        med = stack[t]
        worst = float(np.nanmedian(med, axis=0).max())
        means = med.mean(axis=1)
        lines += [f"- {name[t]}: mean radial error <= 1.5 mm on every case: {', '.join(f'{v:.2f}' for v in means)} -> "
                  + ("met" if (means <= 1.5).all() else "NOT met")
                  + f" (stretch 1.2: {'met' if (means <= 1.2).all() else 'NOT met'})",
                  f"- {name[t]}: no landmark's median above 3 mm: largest {worst:.2f} mm -> " + ("met" if worst <= 3 else "NOT met")]
        if am is not None:
            cpu = sum(r["t"][t][1] for r in rows) / sum(r["t"]["ANTsPy"][1] for r in rows)
            wall = sum(r["t"][t][0] for r in rows) / sum(r["t"]["ANTsPy"][0] for r in rows)
            worse = [r["case"].split(" ")[0] for r, a, b in zip(rows, means, am) if a > b]
            lines += [f"- {name[t]}: error at most the peer's: mean {means.mean():.2f} vs ANTsPy {am.mean():.2f} mm -> "
                      + ("met" if means.mean() <= am.mean() else "NOT met")
                      + (f" (per case above ANTsPy's: {', '.join(worse)})" if worse else " (at most ANTsPy's on every case)"),
                      f"- {name[t]}: time at most 1/4 of the peer's: CPU ratio {cpu:.2f}, wall ratio {wall:.2f} -> " + ("met" if cpu <= 0.25 else "NOT met")]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())

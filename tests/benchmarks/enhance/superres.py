"""Benchmark section: through-plane super-resolution of simulated thick-slice MR.

Data: the MNI152 2009a T1 (bundled, 1 mm, 197x233x189, the whole brain;
``--quick``: a 96^3 block through ventricles, deep grey matter and cortex).
Thick slices are simulated along the inferior-superior axis by averaging 4 or
6 consecutive 1 mm slices (a *box* slice profile, contiguous slices:
``medcli.enhance.degrade.thick_slices``; the top 1 or 3 slices that make no
whole slab are dropped from the truth too) and written as NIfTI files.

Whole runs as a user makes them, each a subprocess that reads the thick file,
brings it back to the 1 mm grid (the same field of view, so the result lines
up voxel for voxel with the truth) and writes a NIfTI file:

* ``medcli superres IN -o OUT --threads 1`` (default: ``smore``, self-supervised
  on the image itself, warm-started from the learned network, default steps),
  ``--method learned`` (pretrained, no per-image training) and
  ``--method cubic`` (the baseline of the target);
* peers: ANTs B-spline resampling onto the true grid
  (``ants.resample_image_to_target``, ``interp_type="bSpline"``) and, for
  reference, scipy linear interpolation on the same grid.

Skull-on head (issue 18): the same runs on the held-out synthetic T1 head of
the denoise section (skull, scalp, face and neck around the deformed MNI
brain, ``medcli.train.heads.HELD_OUT``, seed ``HEAD_SEED``, noise-free), scored
in the whole head; ``--quick``: a 96^3 block through skull, scalp and cortex.

Metric: PSNR (dB) against the true 1 mm volume inside the brain (T1 > 0; the head: every non-air voxel), peak
= the 99th percentile of the truth (``degrade.psnr``); gain over medcli's cubic
interpolation (targets: +2 dB at 4 mm, +1.5 dB at 6 mm). Wall and CPU seconds
of each whole subprocess (one thread each; the machine is shared, so CPU
seconds are the fairer comparison).

Run alone: ``python tests/benchmarks/enhance/superres.py [--quick]`` (writes
``tests/benchmarks/results/superres.md``); ``tests/benchmarks/bench_enhance.py``
imports :func:`run`.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from denoise import HEAD_SEED, skull_on_head, timed_run  # noqa: E402  (the same timer and head as the denoise section)

from medcli import io  # noqa: E402
from medcli.enhance import degrade  # noqa: E402
from medcli.enhance.superres import superres  # noqa: E402
from medcli.image import Image  # noqa: E402

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "superres.md"
THICKNESS = (4, 6)
TARGET = {4: 2.0, 6: 1.5}
STEPS = inspect.signature(superres).parameters["steps"].default

ANTS_BSPLINE = textwrap.dedent(
    """
    import sys, ants
    thick, ref = ants.image_read(sys.argv[1]), ants.image_read(sys.argv[2])
    ants.image_write(ants.resample_image_to_target(thick, ref, interp_type="bSpline"), sys.argv[3])
    """
)

# Linear interpolation on the true grid: both grids cover the same extent, so output slice i
# sits at input coordinate (i + 0.5) / k - 0.5 along the slice axis (array axis 2).
SCIPY_LINEAR = textwrap.dedent(
    """
    import sys, nibabel as nib, numpy as np
    from scipy import ndimage
    thick, ref = nib.load(sys.argv[1]), nib.load(sys.argv[2])
    k = ref.shape[2] / thick.shape[2]
    out = ndimage.affine_transform(thick.get_fdata(dtype=np.float32), [1, 1, 1 / k], [0, 0, 0.5 / k - 0.5],
                                   output_shape=ref.shape, order=1, mode="nearest")
    nib.save(nib.Nifti1Image(out, ref.affine), sys.argv[3])
    """
)


def truth(quick: bool) -> Image:
    t1 = io.read("sample:t1")
    d = np.asarray(t1.data, np.float32)
    start = (50, 60, 40) if quick else (0, 0, 0)
    size = (96, 96, 96) if quick else d.shape
    sl = tuple(slice(a, a + s) for a, s in zip(start, size))
    aff = t1.affine.copy()
    aff[:3, 3] = t1.voxel_to_world([start])[0]
    return Image(np.ascontiguousarray(d[sl]), aff)


def run(quick: bool = False) -> list[dict]:
    """Rows: data, thickness, method, tool, PSNR, gain over cubic, wall and CPU seconds."""
    size = "96^3 block" if quick else "whole"
    rows = []
    for desc, ref in ((f"MNI152 T1 {size} brain", truth(quick)),
                      (f"synthetic skull-on T1 head (heads.HELD_OUT, seed {HEAD_SEED}), {size}", skull_on_head(quick))):
        rows += run_one(desc, ref)
    return rows


def run_one(desc: str, ref: Image) -> list[dict]:
    """The superres runs on one true 1 mm image (PSNR where the truth is non-zero)."""
    rows = []
    try:
        import ants  # noqa: F401

        peers = [("B-spline", "antspyx", ANTS_BSPLINE)]
    except ImportError:
        print("superres: antspyx not installed (pip install antspyx)", file=sys.stderr)
        peers = []
    peers.append(("linear", "scipy", SCIPY_LINEAR))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for k in THICKNESS:
            n = ref.shape[2] // k * k
            clean = Image(ref.data[:, :, :n], ref.affine)
            src, true_file = tmp / f"thick{k}.nii.gz", tmp / f"true{k}.nii.gz"
            io.write(degrade.thick_slices(clean, k, axis=2, profile="box"), src, force=True)
            io.write(clean, true_file, force=True)
            med = [sys.executable, "-m", "medcli", "superres", str(src), "--threads", "1", "-f", "-o"]
            runs = [("cubic", "medcli", med + [str(tmp / "c.nii.gz"), "--method", "cubic"], tmp / "c.nii.gz")]
            runs += [(name, tool, [sys.executable, "-c", script, str(src), str(true_file), str(tmp / f"{tool}.nii.gz")],
                      tmp / f"{tool}.nii.gz") for name, tool, script in peers]
            runs += [("learned", "medcli", med + [str(tmp / "l.nii.gz"), "--method", "learned"], tmp / "l.nii.gz"),
                     (f"smore (default, {STEPS} steps)", "medcli", med + [str(tmp / "s.nii.gz")], tmp / "s.nii.gz")]
            results = {}
            for name, tool, cmd, dst in runs:
                try:
                    wall, cpu, _ = timed_run(cmd)
                    out = io.read(dst)
                except Exception as e:  # noqa: BLE001 - one failing method must not hide the others
                    print(f"superres {k} mm {name} ({tool}) failed: {e}", file=sys.stderr)
                    continue
                if out.shape != clean.shape or np.abs(out.affine - clean.affine).max() > 1e-3:
                    print(f"superres {k} mm {name} ({tool}): grid {out.shape} != {clean.shape}", file=sys.stderr)
                    continue
                results[(name, tool)] = (degrade.psnr(clean.data, np.asarray(out.data, np.float32)), wall, cpu)
                print(f"superres {k} mm {name} ({tool}): {results[(name, tool)]}", file=sys.stderr)
            base_psnr, _, base_cpu = results[("cubic", "medcli")]
            for (name, tool), (p, wall, cpu) in results.items():
                rows.append({
                    "section": "superres", "thickness_mm": k, "method": name, "tool": tool, "psnr_db": p,
                    "gain_db": p - base_psnr, "seconds": wall, "cpu_seconds": cpu,
                    "cpu_ratio_vs_cubic": cpu / max(base_cpu, 1e-9),
                    "target_met": bool((p - base_psnr) >= TARGET[k]) if tool == "medcli" and name != "cubic" else None,
                    "data": f"{desc}, box slice profile",
                })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "### superres: true 1 mm vs. thick slices averaged from it (box slice profile)",
        "",
        "| data | slices | method | tool | PSNR (dB) | gain vs cubic (target) | wall s | CPU s | CPU vs cubic |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mark = " ✓" if r["target_met"] else (" ✗" if r["target_met"] is False else "")
        tgt = f" (+{TARGET[r['thickness_mm']]})" if r["target_met"] is not None else ""
        lines.append(
            f"| {r['data'].split(',')[0].split(' (')[0]} | {r['thickness_mm']} mm | {r['method']} | {r['tool']} | {r['psnr_db']:.2f} | {r['gain_db']:+.2f}{tgt}{mark} "
            f"| {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['cpu_ratio_vs_cubic']:.1f}x |"
        )
    lines += ["", "Data: " + "; ".join(dict.fromkeys(r["data"] for r in rows)) + ".", "",
              "PSNR inside the brain (template) or the head (skull-on head) against the true 1 mm image. Whole runs (subprocesses: read, process, write), "
              "one thread each, on a shared 2-core CPU; smore includes its per-image training."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 96^3 block instead of the whole brain")
    args = ap.parse_args(argv)
    rows = run(args.quick)
    text = markdown(rows)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# superres benchmark{' (--quick)' if args.quick else ''}\n\n" + text)


if __name__ == "__main__":
    main()

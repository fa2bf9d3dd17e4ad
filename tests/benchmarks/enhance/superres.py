"""Benchmark section: through-plane super-resolution of simulated thick-slice MR.

Data: the MNI152 2009a T1 (bundled, 1 mm; ``--quick``: a 96^3 block through
ventricles, deep grey matter and cortex). Thick slices are simulated along the
inferior-superior axis by averaging 4 or 6 consecutive 1 mm slices (a *box*
slice profile, contiguous slices: ``medcli.enhance.degrade.thick_slices``);
every method brings the thick image back to the 1 mm grid (the same field of
view, so the result lines up voxel for voxel with the truth).

Metric: PSNR (dB) against the true 1 mm volume inside the brain (T1 > 0), peak
= the 99th percentile of the truth (``degrade.psnr``); gain over medcli's cubic
interpolation (targets: +2 dB at 4 mm, +1.5 dB at 6 mm).

Methods, same images, same run: medcli ``cubic``, ``smore`` (self-supervised on
the image itself, warm-started from the learned network, ``STEPS`` steps) and
``learned`` (pretrained, no per-image training); peer: ANTs B-spline
resampling (``ants.resample_image``, interp_type 4) and, for reference, linear
interpolation (scipy).

Run alone: ``python tests/benchmarks/enhance/superres.py [--quick]`` (writes
``tests/benchmarks/results/superres.md``); ``tests/benchmarks/bench_enhance.py``
imports :func:`run`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from medcli import io  # noqa: E402
from medcli.enhance import degrade  # noqa: E402
from medcli.enhance.superres import superres  # noqa: E402
from medcli.image import Image  # noqa: E402

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "superres.md"
THICKNESS = (4, 6)
STEPS = 200
TARGET = {4: 2.0, 6: 1.5}


def truth(quick: bool) -> Image:
    t1 = io.read("sample:t1")
    d = np.asarray(t1.data, np.float32)
    start = (50, 60, 40) if quick else (0, 0, 0)
    size = (96, 96, 96) if quick else d.shape
    sl = tuple(slice(a, a + s) for a, s in zip(start, size))
    aff = t1.affine.copy()
    aff[:3, 3] = t1.voxel_to_world([start])[0]
    return Image(np.ascontiguousarray(d[sl]), aff)


def ants_bspline(thick: Image, target: Image) -> np.ndarray:
    """ANTs B-spline resampling of the thick image onto the target grid (both axis-aligned here)."""
    import ants

    def to_ants(img):
        return ants.from_numpy(np.asarray(img.data, np.float32), origin=[float(v) for v in img.affine[:3, 3]],
                               spacing=list(img.spacing))

    return ants.resample_image_to_target(to_ants(thick), to_ants(target), interp_type="bSpline").numpy()


def run(quick: bool = False) -> list[dict]:
    """Rows: thickness, method, tool, PSNR, gain over cubic, seconds."""
    from medcli.engine.inference import resample_array

    rows = []
    ref = truth(quick)
    for k in THICKNESS:
        n = ref.shape[2] // k * k
        clean = Image(ref.data[:, :, :n], ref.affine)
        thick = degrade.thick_slices(clean, k, axis=2, profile="box")
        results = {}

        def timed(name, tool, fn):
            t0 = time.perf_counter()
            try:
                out = fn()
            except Exception as e:  # noqa: BLE001 - one failing method must not hide the others
                print(f"superres {k} mm {name} ({tool}) failed: {e}", file=sys.stderr)
                return
            secs = time.perf_counter() - t0
            if out.shape != clean.shape:
                print(f"superres {k} mm {name} ({tool}): shape {out.shape} != {clean.shape}", file=sys.stderr)
                return
            results[(name, tool)] = (degrade.psnr(clean.data, out), secs)

        timed("cubic", "medcli", lambda: superres(thick, "cubic", 1.0).data)
        timed("linear", "scipy", lambda: resample_array(thick.data, thick.affine, clean.affine, clean.shape, order=1))
        try:
            import ants  # noqa: F401

            def ants_run():
                return ants_bspline(thick, clean)

            timed("B-spline", "antspyx", ants_run)
        except ImportError:
            print("superres: antspyx not installed (pip install antspyx)", file=sys.stderr)
        timed("learned", "medcli", lambda: superres(thick, "learned", 1.0).data)
        timed(f"smore ({STEPS} steps)", "medcli", lambda: superres(thick, "smore", 1.0, steps=STEPS).data)
        base_psnr, base_secs = results[("cubic", "medcli")]
        for (name, tool), (p, s) in results.items():
            rows.append({
                "section": "superres", "thickness_mm": k, "method": name, "tool": tool, "psnr_db": p,
                "gain_db": p - base_psnr, "seconds": s, "time_ratio_vs_cubic": s / max(base_secs, 1e-9),
                "target_met": bool((p - base_psnr) >= TARGET[k]) if tool == "medcli" and name != "cubic" else None,
                "data": f"MNI152 T1 {'96^3 block' if quick else 'whole brain'}, box slice profile",
            })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        f"### superres: {rows[0]['data']} (true 1 mm vs. thick slices averaged from it)",
        "",
        "| slices | method | tool | PSNR (dB) | gain vs cubic (target) | s | time vs cubic |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        mark = " ✓" if r["target_met"] else (" ✗" if r["target_met"] is False else "")
        tgt = f" (+{TARGET[r['thickness_mm']]})" if r["target_met"] is not None else ""
        lines.append(
            f"| {r['thickness_mm']} mm | {r['method']} | {r['tool']} | {r['psnr_db']:.2f} | {r['gain_db']:+.2f}{tgt}{mark} "
            f"| {r['seconds']:.1f} | {r['time_ratio_vs_cubic']:.0f}x |"
        )
    lines += ["", "PSNR inside the brain against the true 1 mm T1. Times: wall seconds on a shared 2-core CPU "
              "(smore includes its per-image training)."]
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

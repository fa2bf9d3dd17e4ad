"""Benchmark section: bias-field correction of the bundled T1 with known fields.

Data: the MNI152 2009a T1 (bundled, 1 mm; ``--quick``: resampled to 2 mm)
multiplied by known smooth random fields (``medcli.enhance.degrade.bias_field``,
strengths 0.8 and 1.6, seeds below), written as NIfTI files.

Whole runs as a user makes them, each a subprocess that reads the biased file,
corrects it and writes the corrected image:

* ``medcli biascorrect IN -o OUT`` with ``--method n4`` (medcli's defaults:
  its NumPy N4) and ``--method learned``;
* SimpleITK's ``N4BiasFieldCorrectionImageFilter`` in a script at the best
  settings of the sweep below, and ANTsPy's ``n4_bias_field_correction`` with
  its defaults and ``rescale_intensities=True`` (ANTs N4), each with the same
  automatic mask as medcli (``medcli.enhance.bias.automatic_mask``, computed
  in the script); and SimpleITK at the same settings with the mask computed
  at full resolution (``medcli.enhance.masks.foreground_mask``), to show what
  the 2 mm mask costs.

Metric: residual bias = std of ``log(corrected / true)`` in the brain (T1 > 0)
after removing the global scale (``degrade.residual_bias``); 0 is perfect.
Target (issue #6), checked for every medcli method: at most SimpleITK N4's
residual at its best swept settings (equal to the table's 4 decimals counts:
medcli's N4 is the same algorithm, its field equal to 1e-6), in at most half
its CPU time.

Sweep: SimpleITK N4 (in-process, the automatic mask) over shrink factor,
fitting levels, iterations and first control-point spacing on the
strength-1.6 field; residual and CPU seconds.

Run alone: ``python tests/benchmarks/enhance/bias.py [--quick]``;
``tests/benchmarks/bench_enhance.py`` imports :func:`run`.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from medcli import io  # noqa: E402
from medcli.enhance import degrade  # noqa: E402
from medcli.image import Image  # noqa: E402

STRENGTHS = (0.8, 1.6)
REPEATS = 5
SEEDS = {0.8: 501, 1.6: 502}
# (shrink, levels, iterations, first control-point spacing in mm)
SWEEP = [(4, 3, 50, 200), (6, 3, 50, 200), (6, 2, 50, 100), (8, 3, 50, 200), (8, 1, 50, 50), (8, 2, 25, 100), (8, 2, 50, 100), (10, 2, 50, 100)]
QUICK_SWEEP = [(4, 3, 50, 200), (4, 2, 50, 100), (8, 2, 50, 100)]

SITK = textwrap.dedent(
    """
    import numpy as np, SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # one thread, like every other run

    def sitk_n4(x, spacing, mask, shrink, levels, iterations, spline_distance):
        # SimpleITK N4 on a shrunken copy, the field evaluated at full resolution; returns the corrected array.
        img = sitk.GetImageFromArray(x.T.copy())
        img.SetSpacing(tuple(float(s) for s in spacing))
        msk = sitk.GetImageFromArray((mask & (x > 0)).T.astype(np.uint8).copy())
        msk.CopyInformation(img)
        small, small_mask = sitk.Shrink(img, [shrink] * 3), sitk.Shrink(msk, [shrink] * 3)
        f = sitk.N4BiasFieldCorrectionImageFilter()
        f.SetMaximumNumberOfIterations([iterations] * levels)
        f.SetConvergenceThreshold(1e-4)
        extent = np.asarray(small.GetSize()) * np.asarray(small.GetSpacing())
        f.SetNumberOfControlPoints([int(np.ceil(e / spline_distance)) + 3 for e in extent])
        f.Execute(small, small_mask)
        log_field = sitk.GetArrayFromImage(f.GetLogBiasFieldAsImage(img)).T
        return (x / np.exp(log_field - log_field[mask].mean())).astype(np.float32)
    """
)

SITK_N4 = SITK + textwrap.dedent(
    """
    import sys
    from medcli import io
    img = io.read(sys.argv[1]); x = np.asarray(img.data, np.float32)
    shrink, levels, iters, distance = (int(v) for v in sys.argv[3:7])
    if sys.argv[7] == "full":
        from medcli.enhance.masks import foreground_mask
        mask = foreground_mask(x)
    else:
        from medcli.enhance.bias import automatic_mask
        mask = automatic_mask(x, shrink, img.spacing)
    io.write(img.with_data(sitk_n4(x, img.spacing, mask, shrink, levels, iters, distance)), sys.argv[2], force=True)
    """
)

ANTS_N4 = textwrap.dedent(
    """
    import os, sys, numpy as np
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"  # one thread, like every other run
    import ants
    from medcli import io
    from medcli.enhance.bias import automatic_mask
    img = ants.image_read(sys.argv[1])
    x = img.numpy()
    mask = img.new_image_like(automatic_mask(x, spacing=img.spacing).astype(np.float32))
    # Without rescale_intensities ANTsPy's N4 leaves a residual of ~0.3 on this image (measured).
    out = ants.n4_bias_field_correction(img, mask=mask, rescale_intensities=True)
    ants.image_write(out, sys.argv[2])
    """
)


def truth(quick: bool) -> Image:
    t1 = io.read("sample:t1")
    img = Image(np.asarray(t1.data, np.float32), t1.affine)
    if quick:
        img = img.resample(2.0)
        img = img.with_data(np.clip(img.data, 0, None).astype(np.float32))
    return img


def run(quick: bool = False) -> list[dict]:
    from denoise import timed_run  # the same subprocess timer as the denoise section

    from medcli.runtime import configure_itk, state
    from medcli.enhance.bias import automatic_mask

    namespace: dict = {}
    exec(SITK, namespace)  # the same function as the whole-run script
    import SimpleITK as sitk

    state.threads = 1
    configure_itk(sitk)
    rows: list[dict] = []
    clean = truth(quick)
    brain = clean.data > 0
    desc = f"MNI152 T1 {'2 mm' if quick else '1 mm'}"
    learned = _have_model("biasfield")
    # -- sweep of SimpleITK N4 settings (in-process, CPU time) ---------------------------------------
    field = degrade.bias_field(clean.shape, 1.6, rng=SEEDS[1.6], spacing=clean.spacing)
    biased = clean.data * field
    for shrink, levels, iters, distance in QUICK_SWEEP if quick else SWEEP:
        t0 = time.process_time()
        mask = automatic_mask(biased, shrink, clean.spacing)
        corrected = namespace["sitk_n4"](biased, clean.spacing, mask, shrink, levels, iters, distance)
        cpu = time.process_time() - t0
        r = degrade.residual_bias(corrected, clean.data, brain)
        print(f"bias sweep {shrink}/{levels}/{iters}/{distance} mm: {r:.4f} in {cpu:.1f} s CPU", file=sys.stderr)
        rows.append({
            "section": "bias", "kind": "sweep", "case": "strength 1.6",
            "method": f"N4 shrink {shrink}, {levels} levels x {iters} it from {distance} mm",
            "tool": "SimpleITK", "before": degrade.residual_bias(biased, clean.data, brain), "residual": r, "cpu_s": cpu,
            "wall_s": None, "data": desc, "settings": (shrink, levels, iters, distance),
        })
    # Best = the lowest residual (settings within a few % of each other swap
    # places from one field to the next: the cheapest within 2 %, the rule
    # before, picked settings that were worse on average over 6 fields).
    sweep = [r for r in rows if r["kind"] == "sweep"]
    best = min(sweep, key=lambda r: r["residual"])
    best["best"] = True
    settings = [str(v) for v in best["settings"]]
    label = "/".join(settings[:3]) + f", {settings[3]} mm"
    # -- whole runs ----------------------------------------------------------------------------------
    # Load every tool's modules once untimed, so that the first timed run is
    # not charged for a cold file cache.
    try:
        timed_run([sys.executable, "-c", "import medcli.io, medcli.cli.app, scipy.ndimage, SimpleITK, ants"])
    except RuntimeError:
        pass  # a missing peer fails (and is reported) at its own run
    with tempfile.TemporaryDirectory(prefix="bench-bias-") as tmp:
        tmp = Path(tmp)
        (tmp / "sitk_n4.py").write_text(SITK_N4)
        (tmp / "ants_n4.py").write_text(ANTS_N4)
        for strength in STRENGTHS:
            f = degrade.bias_field(clean.shape, strength, rng=SEEDS[strength], spacing=clean.spacing)
            src = tmp / f"biased{strength}.nii.gz"
            io.write(clean.with_data(clean.data * f), src)
            before = degrade.residual_bias(clean.data * f, clean.data, brain)
            med = [sys.executable, "-m", "medcli", "biascorrect", str(src), "--threads", "1", "-f"]
            runs = [("n4 (default)", "medcli", med + ["-o", str(tmp / "m.nii.gz")], tmp / "m.nii.gz")]
            if learned:
                runs.append(("learned", "medcli", med + ["--method", "learned", "-o", str(tmp / "l.nii.gz")], tmp / "l.nii.gz"))
            sitk_cmd = [sys.executable, str(tmp / "sitk_n4.py"), str(src), str(tmp / "s.nii.gz"), *settings]
            runs.append((f"N4 best of sweep ({label})", "SimpleITK", sitk_cmd + ["automatic"], tmp / "s.nii.gz"))
            runs.append((f"N4 best of sweep ({label}), 1 mm mask", "SimpleITK", sitk_cmd + ["full"], tmp / "s.nii.gz"))
            runs.append(("N4 (defaults, rescale_intensities)", "ANTsPy", [sys.executable, str(tmp / "ants_n4.py"), str(src), str(tmp / "a.nii.gz")], tmp / "a.nii.gz"))
            res = {}
            for method, tool, cmd, out in runs:
                try:
                    # Median of REPEATS (runs of a few seconds on a shared CPU vary by 30 %); ANTs (~25 s) once.
                    times = [timed_run(cmd)[:2] for _ in range(1 if tool == "ANTsPy" else REPEATS)]
                except RuntimeError as e:
                    print(f"bias {strength} {method} ({tool}) failed: {e}", file=sys.stderr)
                    continue
                wall, cpu = (float(np.median(v)) for v in zip(*times))
                r = degrade.residual_bias(io.read(out).data, clean.data, brain)
                res[(method, tool)] = (r, wall, cpu)
                print(f"bias {strength}: {tool} {method}: {r:.4f} (before {before:.4f}), {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
            peer = next((v for (m, t), v in res.items() if t == "SimpleITK"), None)
            for (method, tool), (r, wall, cpu) in res.items():
                row = {"section": "bias", "kind": "run", "case": f"strength {strength}", "method": method, "tool": tool,
                       "before": before, "residual": r, "wall_s": wall, "cpu_s": cpu, "data": desc}
                if peer:
                    row["residual_ratio_vs_peer"] = r / max(peer[0], 1e-12)
                    row["cpu_ratio_vs_peer"] = cpu / max(peer[2], 1e-9)
                    # Equal at the table's precision counts as "at most": medcli's N4 is the same algorithm.
                    met = round(r, 4) <= round(peer[0], 4) and cpu <= 0.5 * peer[2]
                    row["target_met"] = met if tool == "medcli" else None
                rows.append(row)
    return rows


def _have_model(name: str) -> bool:
    try:
        from medcli.models import hub

        hub.load(name)
        return True
    except Exception:  # noqa: BLE001
        return False


def markdown(rows: list[dict]) -> str:
    runs = [r for r in rows if r["kind"] == "run"]
    sweep = [r for r in rows if r["kind"] == "sweep"]
    lines = [
        f"### biascorrect: known smooth fields on the {rows[0]['data'] if rows else ''} (residual bias in the brain)",
        "",
        "Residual bias = std of log(corrected / true) in the brain after removing the global scale (0 = perfect).",
        "",
        "| field | method | tool | before | residual | vs SimpleITK best | wall s | CPU s | CPU vs SimpleITK |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        met = r.get("target_met")
        mark = "" if met is None else (" ✓" if met else " ✗")
        ratio = f"{r['residual_ratio_vs_peer']:.2f}x{mark}" if "residual_ratio_vs_peer" in r else ""
        cpu = f"{r['cpu_ratio_vs_peer']:.2f}x" if "cpu_ratio_vs_peer" in r else ""
        lines.append(f"| {r['case']} | {r['method']} | {r['tool']} | {r['before']:.4f} | {r['residual']:.4f} | {ratio} "
                     f"| {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {cpu} |")
    lines += ["", "N4 settings sweep (SimpleITK, automatic mask, field strength 1.6, in-process CPU seconds):", "",
              "| settings | residual | CPU s |", "|---|---:|---:|"]
    for r in sweep:
        lines.append(f"| {r['method']}{' (best)' if r.get('best') else ''} | {r['residual']:.4f} | {r['cpu_s']:.1f} |")
    lines += ["", f"Whole runs (read NIfTI, mask, correct, write NIfTI), one thread each, on a shared 2-core CPU; "
              f"median of {REPEATS} runs (ANTsPy: one). "
              "Target (✓/✗): at most SimpleITK's residual (first SimpleITK row: same mask) in at most half its CPU time."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 mm image, short sweep")
    args = ap.parse_args(argv)
    print(markdown(run(args.quick)))


if __name__ == "__main__":
    main()

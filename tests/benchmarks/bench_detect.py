"""Benchmark: lesion detection, medcli ``log`` vs scikit-image ``blob_log`` / ``blob_dog``.

Cases are synthetic (no lesion data set is available offline): the MNI152
tissue maps rendered as T1-, T2-, FLAIR-like brains and head CT with lesions
from :mod:`medcli.detect.synth` (long-tailed sizes 2-40 mm; ellipsoid, lobulated,
irregular; rims, necrotic cores, oedema; hypo- or hyperintense whatever the
tissue) and vessel mimics (sulci and ventricles are in the anatomy).

* validation: generator defaults, seeds 1000+, used to set each method's
  threshold at 1 false positive per scan;
* test: the held-out generator settings (:data:`medcli.detect.synth.HELD_OUT`:
  other shape mix, more rims/cores/oedema, more noise and bias, more vessels),
  seeds 2000+, 2 mm isotropic and 1.5 x 1.5 x 3 mm grids; 0-8 lesions, every
  fifth scan lesion-free.

Every method sees the same image and search mask (the brain; the head's soft
tissue for CT, as ``--task ct-lesion``) and the same normalisation (mask
1st-99th percentile range, outside filled with the nearest tissue). scikit-image
runs on both polarities (image and its negative), per-axis sigmas in voxels for
the same 2-40 mm range; each blob is scored by the scale-normalised LoG at its
position and sigma (what ``blob_log`` thresholds). Metrics: LUNA16 CPM, the
sensitivity for lesions >= 6 mm and the false positives per lesion-free scan at
the validation threshold (1 FP/scan), AP at IoU 0.1 (medcli only: skimage gives
no box beyond its sigma sphere, scored the same way), wall time per scan.

Run: ``python tests/benchmarks/bench_detect.py [--quick]``; writes
``tests/benchmarks/results/detect.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from medcli.detect.api import CT_WINDOW, detect, task_mask  # noqa: E402
from medcli.detect.evaluate import Scan, evaluate, match  # noqa: E402
from medcli.detect.findings import Finding, sphere_box  # noqa: E402
from medcli.detect.log import normalise, spacing_of  # noqa: E402
from medcli.detect.synth import HELD_OUT, LesionConfig, lesion_case  # noqa: E402
from medcli.image import Image  # noqa: E402

CONTRASTS = ("t1", "t2", "flair", "ct")
#: Score floor of every method (candidates below it are never made): the FROC is cut there alike.
FLOOR = 0.25
GRIDS_VAL = [(2.0, 2.0, 2.0)]
GRIDS_TEST = [(2.0, 2.0, 2.0), (1.5, 1.5, 3.0)]


def cases(seed0: int, n: int, cfg: LesionConfig, grids, k: int = 0, n_shards: int = 1):
    for i in range(k, n, n_shards):
        con = CONTRASTS[i % 4]
        rng = np.random.default_rng(seed0 + i)
        nl = 0 if i % 5 == 4 else None
        yield f"{con}-{seed0 + i}", lesion_case(rng, con, cfg, spacing=grids[i % len(grids)], n_lesions=nl)


def search_mask(case):
    if case.contrast == "ct":
        return task_mask(case.image, "ct-lesion")
    return case.brain


def run_medcli(case, mask):
    task = "ct-lesion" if case.contrast == "ct" else "brain-lesion"
    det = detect(case.image, task=task, mask=mask, threshold=FLOOR, max_findings=60)
    return det.findings.items


def run_skimage(case, mask, kind: str):
    from scipy import ndimage
    from skimage.feature import blob_dog, blob_log

    data = np.asarray(case.image.data, np.float32)
    if case.contrast == "ct":
        data = np.clip(data, *CT_WINDOW)
    x = normalise(data, mask)
    sp = spacing_of(case.image.affine)
    smin, smax = 2.0 / 2 / math.sqrt(3), 40.0 / 2 / math.sqrt(3)
    # Tuned: at least 0.7 voxel (below, noise makes so many blobs that skimage's pruning takes
    # many minutes), cropped to the mask's box.
    nz = np.argwhere(mask)
    lo, hi = nz.min(0), nz.max(0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    x, mask_c = x[box], mask[box]
    out = []
    for pol in (1, -1):
        im = x if pol > 0 else -x
        im = im - im.min()
        kw = dict(min_sigma=tuple(np.maximum(smin / sp, 0.7)), max_sigma=tuple(smax / sp), threshold=FLOOR, exclude_border=False)
        blobs = blob_log(im, num_sigma=8, **kw) if kind == "log" else blob_dog(im, sigma_ratio=1.4, **kw)
        if not len(blobs):
            continue
        pos = blobs[:, :3].astype(int)
        sig = blobs[:, 3:6]
        keep = mask_c[tuple(pos.T)]
        pos, sig = pos[keep], sig[keep]
        # Score: -sigma^2 LoG (mm units) at the blob's sigma, computed once per distinct sigma.
        scores = np.zeros(len(pos))
        for s in np.unique(sig, axis=0):
            on = np.all(sig == s, axis=1)
            smm = float(np.mean(s * sp))
            resp = -ndimage.gaussian_laplace(im, s, mode="nearest") * smm**2
            scores[on] = resp[tuple(pos[on].T)]
        for p, s, sc in zip(pos, sig, scores):
            c = case.image.voxel_to_world(p + lo)[0]
            d = 2 * math.sqrt(3) * float(np.mean(s * sp))
            out.append(Finding(c, sphere_box(c, d), d, float(sc), label="bright" if pol > 0 else "dark"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="8 validation + 12 test scans")
    ap.add_argument("--no-skimage", action="store_true")
    ap.add_argument("--shard", default="", help="K/N: run every N-th case from K, save to /tmp (then --merge N)")
    ap.add_argument("--merge", type=int, default=0, help="merge N shards and write the results")
    ap.add_argument("--tag", default="", help="shard file tag; --merge takes medcli's results from TAG shards when given")
    args = ap.parse_args()
    import pickle
    n_val, n_test = (8, 12) if args.quick else (8, 40)
    methods = ["medcli log"] + ([] if args.no_skimage else ["skimage blob_log", "skimage blob_dog"])
    runners = {"medcli log": run_medcli, "skimage blob_log": lambda c, m: run_skimage(c, m, "log"),
               "skimage blob_dog": lambda c, m: run_skimage(c, m, "dog")}
    res = {m: {"val": [], "test": [], "time": []} for m in methods}
    free = []
    k, n_sh = (int(v) for v in args.shard.split("/")) if args.shard else (0, 1)
    if args.merge:
        for i in range(args.merge):
            part = pickle.load(open(f"/tmp/bench_detect_shard{i}.pkl", "rb"))
            mine = pickle.load(open(f"/tmp/bench_detect{args.tag}_shard{i}.pkl", "rb")) if args.tag else part
            for m in methods:
                for key in ("val", "test", "time"):
                    res[m][key] += (mine if m == "medcli log" else part)["res"][m][key]
            free += part["free"]
    for split, seed0, n, cfg, grids in (("val", 1000, n_val, LesionConfig(), GRIDS_VAL),
                                        ("test", 2000, n_test, HELD_OUT, GRIDS_TEST)):
        if args.merge:
            break
        for name, case in cases(seed0, n, cfg, grids, k, n_sh):
            mask = search_mask(case)
            if split == "test":
                free.append(len(case.truth) == 0)
            for m in methods:
                t0 = time.perf_counter()
                pred = runners[m](case, mask)
                dt = time.perf_counter() - t0
                res[m][split].append(Scan(name, pred, case.truth))
                if split == "test":
                    res[m]["time"].append(dt)
                print(f"{split} {name} ({len(case.truth)} lesions) {m}: {len(pred)} findings, {dt:.1f} s", file=sys.stderr, flush=True)
    if args.shard:
        pickle.dump({"res": res, "free": free}, open(f"/tmp/bench_detect{args.tag}_shard{k}.pkl", "wb"))
        return 0
    groups = (("brain-lesion (T1-, T2-, FLAIR-like)", ("t1", "t2", "flair")), ("ct-lesion (head CT)", ("ct",)))
    lines = [
        "# detect: medcli log vs scikit-image blob_log / blob_dog",
        "",
        f"{n_test} held-out synthetic scans (T1-, T2-, FLAIR-like MNI brains and head CT, 2 mm iso and 1.5x1.5x3 mm "
        f"grids, lesions of 2-40 mm, {sum(free)} lesion-free scans, vessel mimics), generator settings HELD_OUT, "
        f"seeds 2000+; each method's threshold set per task on {n_val} validation scans (default generator settings, "
        f"seeds 1000+) at 1 FP/scan; every method's candidates floored at score {FLOOR}. "
        "Produced by `python tests/benchmarks/bench_detect.py`" + (" --quick" if args.quick else "") + ".",
    ]
    ratios = []
    for title, pref in groups:
        rows = []
        for m in methods:
            val = [sc for sc in res[m]["val"] if sc.name.startswith(pref)]
            sel = [i for i, sc in enumerate(res[m]["test"]) if sc.name.startswith(pref)]
            test = [res[m]["test"][i] for i in sel]
            thr = match(val).threshold_at(1.0)
            rep = evaluate(test, thr)
            fp_free = match([res[m]["test"][i] for i in sel if free[i]]).fps_at(thr)
            by = {k: v["sensitivity"] for k, v in rep["sensitivity_by_size"].items()}
            rows.append((m, rep, thr, fp_free, float(np.mean([res[m]["time"][i] for i in sel])), by))
            print(f"{title} {m}: CPM {rep['cpm']} thr {thr:.3f}", file=sys.stderr)
        lines += ["", f"## {title}: {len(sel)} scans, {rows[0][1]['n_lesions']} lesions, "
                  f"{sum(free[i] for i in sel)} lesion-free", "",
                  "| method | CPM | FROC 1/8 | 1/4 | 1/2 | 1 | 2 | 4 | 8 | threshold (val) | sens >= 6 mm @thr | sens all @thr "
                  "| FP/scan @thr | FP per lesion-free scan @thr | AP@0.1 | s/scan |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for m, rep, thr, fpf, t, by in rows:
            fr = list(rep["froc"].values())
            lines.append(f"| {m} | {rep['cpm']:.3f} | " + " | ".join(f"{v:.2f}" for v in fr) +
                         f" | {thr:.3f} | {rep['sensitivity_6mm_plus'] or 0:.2f} | {rep['sensitivity'] or 0:.2f} | "
                         f"{rep['fp_per_scan']:.2f} | {fpf:.2f} | {rep['ap_iou_0.1'] or 0:.3f} | {t:.1f} |")
        lines += ["", "Sensitivity by size at the validation threshold:", "", "| method | " + " | ".join(rows[0][5]) + " |",
                  "|---|" + "---|" * len(rows[0][5])]
        for m, rep, thr, fpf, t, by in rows:
            lines.append(f"| {m} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in by.values()) + " |")
        base = rows[0]
        ratios += [f"{title.split()[0]}: CPM {base[1]['cpm'] / max(r[1]['cpm'], 1e-9):.2f}x vs {r[0]}, "
                   f"time {base[4] / max(r[4], 1e-9):.2f}x" for r in rows[1:]]
    lines += ["", "Ratios (medcli / peer): " + "; ".join(ratios)]
    text = "\n".join(lines) + "\n"
    out = ROOT / "tests" / "benchmarks" / "results" / "detect.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

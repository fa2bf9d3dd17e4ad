"""Benchmark: lesion detection, medcli ``learned`` and ``log`` vs scikit-image ``blob_log`` / ``blob_dog``.

Cases are synthetic (no lesion data set is available offline): the MNI152
tissue maps rendered as T1-, T2-, FLAIR-like brains and head CT with lesions
from :mod:`medcli.detect.synth` (long-tailed sizes 2-40 mm; ellipsoid, lobulated,
irregular; rims, necrotic cores, oedema; hypo- or hyperintense whatever the
tissue) and vessel mimics (sulci and ventricles are in the anatomy).

``medcli learned`` is the default learned detector: heatmap peaks re-scored by their left-right asymmetry
(:mod:`medcli.detect.symmetry`); ``medcli learned one-sided`` the same network's heatmap scores alone
(``detect(..., bilateral=False)``, the detector of sessions 5-6).

* validation: generator defaults, seeds 1000+, used to set each method's
  threshold at 1 false positive per scan; lesions and search region behind
  world y = 0 (:data:`medcli.detect.synth.SPLIT_Y`);
* test: the held-out generator settings (:data:`medcli.detect.synth.HELD_OUT`:
  other shape mix, more rims/cores/oedema, more noise and bias, more vessels),
  seeds 2000+, 2 mm isotropic and 1.5 x 1.5 x 3 mm grids; 0-8 lesions, every
  fifth scan lesion-free; lesions and search region IN FRONT of world y = 0: the
  learned models were trained on patches entirely behind it, so no test lesion
  lies in anatomy they saw.

Every method sees the same image and search mask (the brain; the head's soft
tissue for CT, as ``--task ct-lesion``) and the same normalisation (mask
1st-99th percentile range, outside filled with the nearest tissue). scikit-image
runs on both polarities (image and its negative), per-axis sigmas in voxels for
the same 2-40 mm range; each blob is scored by the scale-normalised LoG at its
position and sigma (what ``blob_log`` thresholds). Metrics: LUNA16 CPM, the
sensitivity for lesions >= 6 mm and the false positives per lesion-free scan at
the validation threshold (1 FP/scan), AP at IoU 0.1 (medcli only: skimage gives
no box beyond its sigma sphere, scored the same way), wall time per scan.

Also measured: the wall time of each medcli method on a whole 1 mm brain (2 threads),
and the sparse-label experiment (``--extra NAME=MODEL``: models trained with all
lesions labelled vs half of them unlabelled, scored on the same test scans).

Run: ``python tests/benchmarks/bench_detect.py [--quick]``; methods can run
separately (``--methods``, results kept in ``/tmp/bench_detect_*.pkl``) and be
put together with ``--report``; writes ``tests/benchmarks/results/detect.md``.
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
from medcli.detect.synth import HELD_OUT, SPLIT_Y, LesionConfig, lesion_case  # noqa: E402
from medcli.image import Image  # noqa: E402

CONTRASTS = ("t1", "t2", "flair", "ct")
#: Score floor of every method (candidates below it are never made): the FROC is cut there alike.
FLOOR = 0.25
#: The learned models' heatmap floor (their scores are probabilities, not contrasts).
LEARNED_FLOOR = 0.05
GRIDS_VAL = [(2.0, 2.0, 2.0)]
GRIDS_TEST = [(2.0, 2.0, 2.0), (1.5, 1.5, 3.0)]


def cases(seed0: int, n: int, cfg: LesionConfig, grids, front: bool):
    """The scans: lesions in front of the split (test) or behind it (validation)."""
    y_range = (SPLIT_Y, 1e9) if front else (-1e9, SPLIT_Y)
    for i in range(n):
        con = CONTRASTS[i % 4]
        rng = np.random.default_rng(seed0 + i)
        nl = 0 if i % 5 == 4 else None
        yield f"{con}-{seed0 + i}", lesion_case(rng, con, cfg, spacing=grids[i % len(grids)], n_lesions=nl, y_range=y_range)


def search_mask(case, front: bool):
    """The task's search region (brain; CT: the soft tissue) on one side of the split."""
    m = task_mask(case.image, "ct-lesion") if case.contrast == "ct" else case.brain
    ijk = np.indices(m.shape).reshape(3, -1).T
    y = case.image.voxel_to_world(ijk)[:, 1].reshape(m.shape)
    return m & ((y >= SPLIT_Y) if front else (y < SPLIT_Y))


#: The learned methods' model (``--learned-model``: a trained folder, before it is shipped); None: the registry's.
LEARNED_MODEL: str | None = None


def run_medcli(case, mask, method="log", model=None, mirror=None, bilateral=True):
    task = "ct-lesion" if case.contrast == "ct" else "brain-lesion"
    model = model or (LEARNED_MODEL if method == "learned" else None)
    det = detect(case.image, task=task, method=method, mask=mask, threshold=FLOOR if method == "log" else LEARNED_FLOOR,
                 max_findings=60, model=model, mirror=mirror, bilateral=bilateral)
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
        # With subnormal floats flushed to zero (medcli's configure_torch, on once a learned method ran in this
        # process) skimage's blob pruning crashes (a segmentation fault in _prune_blobs): off around skimage.
        import torch

        torch.set_flush_denormal(False)
        try:
            blobs = blob_log(im, num_sigma=8, **kw) if kind == "log" else blob_dog(im, sigma_ratio=1.4, **kw)
        finally:
            torch.set_flush_denormal(True)  # medcli's setting, for the methods that follow
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


def time_1mm(methods: list[str]) -> dict[str, float]:
    """Wall seconds of each medcli method on a whole 1 mm T1-like brain with lesions, 2 threads."""
    import torch

    torch.set_num_threads(2)
    case = lesion_case(np.random.default_rng(77), "t1", HELD_OUT, spacing=(1.0, 1.0, 1.0), n_lesions=6)
    out = {}
    for m in methods:
        if not m.startswith("medcli"):
            continue
        t0 = time.perf_counter()
        RUNNERS[m](case, case.brain)
        out[m] = time.perf_counter() - t0
        print(f"1 mm brain {case.image.shape} {m}: {out[m]:.1f} s", file=sys.stderr, flush=True)
    torch.set_num_threads(1)
    return out


RUNNERS = {
    "medcli learned": lambda c, m: run_medcli(c, m, "learned", mirror=False),
    "medcli learned one-sided": lambda c, m: run_medcli(c, m, "learned", mirror=False, bilateral=False),
    "medcli learned+mirror": lambda c, m: run_medcli(c, m, "learned", mirror=True),
    "medcli log": run_medcli,
    "skimage blob_log": lambda c, m: run_skimage(c, m, "log"),
    "skimage blob_dog": lambda c, m: run_skimage(c, m, "dog"),
}


def pkl(method: str) -> Path:
    return Path(f"/tmp/bench_detect_{method.replace(' ', '_').replace('+', 'p').replace('/', '_')}.pkl")


def run(methods: list[str], n_val: int, n_test: int, brain_only: tuple[str, ...] = ()) -> None:
    """Run each method on every scan (``brain_only``: on the MR scans); one pickle per method."""
    import pickle

    res = {m: {"val": [], "test": [], "time": [], "free": []} for m in methods}
    for split, seed0, n, cfg, grids in (("val", 1000, n_val, LesionConfig(), GRIDS_VAL),
                                        ("test", 2000, n_test, HELD_OUT, GRIDS_TEST)):
        for name, case in cases(seed0, n, cfg, grids, front=split == "test"):
            mask = search_mask(case, front=split == "test")
            for m in methods:
                if m in brain_only and case.contrast == "ct":
                    continue
                t0 = time.perf_counter()
                pred = RUNNERS[m](case, mask)
                dt = time.perf_counter() - t0
                res[m][split].append(Scan(name, pred, case.truth))
                if split == "test":
                    res[m]["time"].append(dt)
                    res[m]["free"].append(len(case.truth) == 0)
                print(f"{split} {name} ({len(case.truth)} lesions) {m}: {len(pred)} findings, {dt:.1f} s", file=sys.stderr, flush=True)
    for m in methods:
        pickle.dump(res[m], open(pkl(m), "wb"))


def report(methods: list[str], quick: bool, extra: list[str], t1mm: dict[str, float]) -> str:
    import pickle

    res = {m: pickle.load(open(pkl(m), "rb")) for m in methods + extra if pkl(m).exists()}
    methods = [m for m in methods if m in res]
    base = methods[0]
    free = res[base]["free"]
    n_val, n_test = len(res[base]["val"]), len(res[base]["test"])
    groups = (("brain-lesion (T1-, T2-, FLAIR-like)", ("t1", "t2", "flair")), ("ct-lesion (head CT)", ("ct",)))
    lines = [
        "# detect: medcli learned and log vs scikit-image blob_log / blob_dog",
        "",
        f"{n_test} held-out synthetic scans (T1-, T2-, FLAIR-like MNI brains and head CT, 2 mm iso and 1.5x1.5x3 mm "
        f"grids, lesions of 2-40 mm, {sum(free)} lesion-free scans, vessel mimics), generator settings HELD_OUT, "
        f"seeds 2000+, lesions and search region in front of world y = {SPLIT_Y:g} mm (the learned models were trained on "
        f"anatomy behind it); each method's threshold set per task on {n_val} validation scans (default generator settings, "
        f"seeds 1000+, behind the split) at 1 FP/scan; log and skimage candidates floored at score {FLOOR}, learned "
        f"at {LEARNED_FLOOR}. Produced by `python tests/benchmarks/bench_detect.py`" + (" --quick" if quick else "") + ".",
    ]
    ratios = []
    for title, pref in groups:
        rows = []
        for m in methods:
            val = [sc for sc in res[m]["val"] if sc.name.startswith(pref)]
            sel = [i for i, sc in enumerate(res[m]["test"]) if sc.name.startswith(pref)]
            if not sel:
                continue
            test = [res[m]["test"][i] for i in sel]
            thr = match(val).threshold_at(1.0)
            rep = evaluate(test, thr)
            fp_free = match([res[m]["test"][i] for i in sel if free[i]]).fps_at(thr)
            by = {k: v["sensitivity"] for k, v in rep["sensitivity_by_size"].items()}
            rows.append((m, rep, thr, fp_free, float(np.mean([res[m]["time"][i] for i in sel])), by))
            print(f"{title} {m}: CPM {rep['cpm']} thr {thr:.3f}", file=sys.stderr)
        if not rows:
            continue
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
        best = max(rows, key=lambda r: r[1]["cpm"] if r[0].startswith("medcli") else -1)
        ratios += [f"{title.split()[0]}: {best[0]} CPM {best[1]['cpm'] / max(r[1]['cpm'], 1e-9):.2f}x vs {r[0]}, "
                   f"time {best[4] / max(r[4], 1e-9):.2f}x" for r in rows if r[0].startswith("skimage")]
    if t1mm:
        lines += ["", "Whole 1 mm brain (T1-like, the 169x205x167 MNI grid around the brain, 6 lesions, HELD_OUT setting), "
                  "2 threads, search mask given: " +
                  ", ".join(f"{m} {s:.1f} s" for m, s in t1mm.items()) + "."]
    if extra:
        lines += ["", "## Sparse labels (reduced configuration)", "",
                  "Same recipe, seed and starting weights (the main run's step-300 weights, trained with full labels), then 8 minutes each "
                  "(106 and 111 steps), batch 6, lr 1e-3, brain contrasts; one model with every training lesion labelled, one with each "
                  "lesion unlabelled with probability 0.5 (masked out of the loss around it). Brain test scans as "
                  "above, threshold from the validation scans.", "",
                  "| model | CPM brain | sens >= 6 mm @thr | FP/scan @thr |", "|---|---|---|---|"]
        cpms = []
        for m in extra:
            if m not in res:
                continue
            val = [sc for sc in res[m]["val"] if not sc.name.startswith("ct")]
            test = [sc for sc in res[m]["test"] if not sc.name.startswith("ct")]
            thr = match(val).threshold_at(1.0)
            rep = evaluate(test, thr)
            cpms.append(rep["cpm"])
            lines.append(f"| {m} | {rep['cpm']:.3f} | {rep['sensitivity_6mm_plus'] or 0:.2f} | {rep['fp_per_scan']:.2f} |")
        if len(cpms) == 2:
            lines += ["", f"CPM loss with half of the labels: {cpms[0] - cpms[1]:+.3f} (target <= 0.05)."]
    lines += ["", "Ratios (best medcli / peer): " + "; ".join(ratios)]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="8 validation + 12 test scans")
    ap.add_argument("--methods", default=",".join(RUNNERS), help="comma-separated methods to run (default: all; '' for none)")
    ap.add_argument("--extra", action="append", default=[], help="NAME=MODEL: also score a learned model (sparse-label experiment)")
    ap.add_argument("--report", action="store_true", help="only write the report from the saved results")
    ap.add_argument("--time-1mm", action="store_true", help="also time the medcli methods on a whole 1 mm brain")
    ap.add_argument("--learned-model", help="model (name or trained folder) of the medcli learned methods (default: the registry's)")
    args = ap.parse_args()
    global LEARNED_MODEL
    LEARNED_MODEL = args.learned_model
    n_val, n_test = (8, 12) if args.quick else (8, 40)
    extra = []
    for item in args.extra:
        name, model = item.split("=", 1)
        RUNNERS[name] = lambda c, m, model=model: run_medcli(c, m, "learned", model=model, mirror=False)
        extra.append(name)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.report:
        run(methods + extra, n_val, n_test, tuple(extra))
    t1mm = {}
    tpath = Path("/tmp/bench_detect_time1mm.pkl")
    import pickle

    if args.time_1mm:
        t1mm = time_1mm(list(RUNNERS))
        pickle.dump(t1mm, open(tpath, "wb"))
    elif tpath.exists():
        t1mm = pickle.load(open(tpath, "rb"))
    text = report([m for m in RUNNERS if m not in extra], args.quick, extra, t1mm)
    out = ROOT / "tests" / "benchmarks" / "results" / "detect.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

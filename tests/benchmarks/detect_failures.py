"""Failure analysis of the learned lesion detector on VALIDATION scans (never the benchmark's).

For every true lesion of 6 mm and more, says where it is lost, in the order the detector's stages
meet it (:meth:`medcli.detect.learned.LearnedDetector.__call__`):

* ``no peak``: no local maximum of the network's heatmap (3x3x3, any score >= 0.02, mask or not)
  within the lesion's radius of its centre;
* ``off centre``: a local maximum inside the lesion (its label region, dilated one voxel) but none within
  its radius of the centroid (a hit needs the centre within the radius);
* ``mask``: the peaks within the radius all lie outside the search mask (on the model grid);
* ``diameter``: ... all have a predicted diameter under ``min_diameter`` (before session 8 also: over
  1.33 ``max_diameter``; such sizes are now clipped);
* ``nms``: ... all are suppressed by a stronger peak (same-lesion rule) whose centre is not on the lesion;
* ``symmetry``: found, with a heatmap score at or above the threshold, but below it after the left-right
  asymmetry factor;
* ``weak``: found, heatmap score below the threshold already;
* ``hit``: found at or above the threshold.

The threshold is the task's :data:`medcli.detect.api.LEARNED_THRESHOLD` (1 FP/scan on the bench's
validation scans). Per lesion it also records the local contrast (mean inside the lesion minus the median of a
shell 2-4 mm outside, in units of the normalised image) and how many false peaks of its scan outscore it.

Run: ``nice -n 10 python tests/benchmarks/detect_failures.py [--n 24] [--seed 5000] [--held-out]``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from medcli.detect.api import CT_WINDOW, LEARNED_THRESHOLD, learned_detector  # noqa: E402
from medcli.detect.findings import same_lesion  # noqa: E402
from medcli.detect.learned import model_input, peaks_to_findings, predict_maps, to_model_grid  # noqa: E402
from medcli.detect.symmetry import rescore  # noqa: E402
from medcli.detect.synth import HELD_OUT, LesionConfig, lesion_case  # noqa: E402

CONTRASTS = ("t1", "t2", "flair", "ct")
GRIDS = [(2.0, 2.0, 2.0), (1.5, 1.5, 3.0)]
ORDER = ("no peak", "off centre", "mask", "diameter", "nms", "weak", "symmetry", "hit")


def lesion_contrast(case, i: int, x_native: np.ndarray) -> float:
    from scipy import ndimage

    lab = np.asarray(case.lesions.data) == i + 1
    sp = np.sqrt((case.image.affine[:3, :3] ** 2).sum(0))
    dist = ndimage.distance_transform_edt(~lab, sampling=sp)
    shell = (dist > 2) & (dist <= 4) & case.brain
    if not lab.any() or not shell.any():
        return float("nan")
    return float(x_native[lab].mean() - np.median(x_native[shell]))


def analyse_case(det, case, mask, ct: bool, min_diameter: float = 2.0, max_diameter: float = 40.0):
    from medcli.detect.log import normalise

    data = np.asarray(case.image.data, np.float32)
    img, aff, m = to_model_grid(data, case.image.affine, mask, det.spacing)
    x = model_input(img, m, ct, CT_WINDOW, det.channels, det.spacing)
    heat, sizes = predict_maps(det.net, x, det.device, False)
    thr = LEARNED_THRESHOLD["ct-lesion" if ct else "brain-lesion"]
    everywhere = np.ones_like(m)
    raw = peaks_to_findings(heat, sizes, everywhere, aff, 0.02)  # no mask, no size filter: but NMS'd
    # Un-suppressed peaks: every local max, for the "was there a peak at all" question.
    from scipy import ndimage

    pk = (heat >= 0.02) & (heat >= ndimage.maximum_filter(heat, size=3, mode="constant"))
    pidx = np.argwhere(pk)
    pworld = pidx @ aff[:3, :3].T + aff[:3, 3]
    pin = m[tuple(pidx.T)]
    pd = sizes[3][tuple(pidx.T)]
    # The detector's own stages.
    one = peaks_to_findings(heat, sizes, m, aff, 0.05, None, min_diameter, max_diameter)
    import copy

    two = rescore(copy.deepcopy(one), x[0], m, aff)
    work = np.clip(data, *CT_WINDOW) if ct else data
    xn = normalise(work, mask)
    rows = []
    lab = np.asarray(case.lesions.data)
    inv = np.linalg.inv(aff)
    for i, t in enumerate(case.truth):
        r = t.radius_mm
        near = np.linalg.norm(pworld - t.center_ras, axis=1) < r
        # the lesion's region on the model grid (nearest), dilated one voxel
        region_vox = np.argwhere(lab == i + 1)
        rw = case.image.voxel_to_world(region_vox)
        rm = np.rint(rw @ inv[:3, :3].T + inv[:3, 3]).astype(int)
        rm = rm[np.all((rm >= 0) & (rm < np.array(heat.shape)), axis=1)]
        reg = np.zeros(heat.shape, bool)
        reg[tuple(rm.T)] = True
        reg = ndimage.binary_dilation(reg)
        inside = reg[tuple(pidx.T)]
        heat_max = float(heat[reg].max()) if reg.any() else 0.0
        hit1 = [f for f in one if np.linalg.norm(f.center_ras - t.center_ras) < r]
        hit2 = [f for f in two if np.linalg.norm(f.center_ras - t.center_ras) < r]
        s1 = max((f.score for f in hit1), default=-1.0)
        s2 = max((f.score for f in hit2), default=-1.0)
        fps2 = [f.score for f in two if all(np.linalg.norm(f.center_ras - u.center_ras) >= u.radius_mm for u in case.truth)]
        if not near.any():
            cause = "off centre" if inside.any() else "no peak"
        elif not (near & pin).any():
            cause = "mask"
        elif not (near & pin & (pd >= min_diameter)).any():
            cause = "diameter"
        elif not hit1:
            cause = "nms"
        elif s2 >= thr:
            cause = "hit"
        elif s1 >= thr:
            cause = "symmetry"
        else:
            cause = "weak"
        pred_d = float(pd[near].max()) if near.any() else float("nan")
        rows.append(dict(diameter=t.diameter_mm, label=t.label, cause=cause, heat_max=heat_max, s1=s1, s2=s2,
                         above=int(sum(s > s2 for s in fps2)), contrast=lesion_contrast(case, i, xn), pred_d=pred_d,
                         depth_y=float(t.center_ras[1])))
    nfp = sum(1 for f in two if f.score >= thr and all(np.linalg.norm(f.center_ras - u.center_ras) >= u.radius_mm for u in case.truth))
    return rows, nfp, len(raw)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=5000)
    ap.add_argument("--held-out", action="store_true", help="the benchmark's generator setting (still behind the split)")
    ap.add_argument("--model", default="detect-lesion")
    ap.add_argument("--min-size", type=float, default=6.0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
    from bench_detect import search_mask

    det = learned_detector(args.model)
    cfg = HELD_OUT if args.held_out else LesionConfig()
    allrows = defaultdict(list)
    fps = defaultdict(list)
    for i in range(args.n):
        con = CONTRASTS[i % 4]
        rng = np.random.default_rng(args.seed + i)
        case = lesion_case(rng, con, cfg, spacing=GRIDS[(i // 4) % 2], n_lesions=0 if i % 5 == 4 else None,
                           y_range=(-1e9, 0.0))
        mask = search_mask(case, front=False)
        rows, nfp, _ = analyse_case(det, case, mask, con == "ct")
        allrows[con] += rows
        fps[con].append(nfp)
        for r in rows:
            if r["diameter"] >= args.min_size:
                print(f"{con}-{args.seed + i} d={r['diameter']:5.1f} {r['label']:5s} {r['cause']:10s} heat={r['heat_max']:.2f} "
                      f"s1={r['s1']:.2f} s2={r['s2']:.2f} fp_above={r['above']} contrast={r['contrast']:+.2f} pred_d={r['pred_d']:.1f}",
                      file=sys.stderr, flush=True)
    print(f"| contrast | lesions >= {args.min_size:g} mm | " + " | ".join(ORDER) + " | FP/scan @thr |")
    print("|---|---|" + "---|" * len(ORDER) + "---|")
    tot = Counter()
    nt = 0
    for con in CONTRASTS:
        big = [r for r in allrows[con] if r["diameter"] >= args.min_size]
        c = Counter(r["cause"] for r in big)
        tot.update(c)
        nt += len(big)
        print(f"| {con} | {len(big)} | " + " | ".join(str(c.get(k, 0)) for k in ORDER) + f" | {np.mean(fps[con]):.2f} |")
    print(f"| all | {nt} | " + " | ".join(str(tot.get(k, 0)) for k in ORDER) + " | |")
    # Weak lesions: how weak, how contrasted.
    big = [r for con in CONTRASTS for r in allrows[con] if r["diameter"] >= args.min_size]
    for k in ORDER:
        sel = [r for r in big if r["cause"] == k]
        if sel:
            print(f"{k}: n={len(sel)} median |contrast| {np.nanmedian([abs(r['contrast']) for r in sel]):.2f}, "
                  f"median heat max {np.median([r['heat_max'] for r in sel]):.2f}, median diameter "
                  f"{np.median([r['diameter'] for r in sel]):.1f}, hypo {sum(r['label'] == 'hypo' for r in sel)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

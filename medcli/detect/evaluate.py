"""FROC, the LUNA16 competition performance metric, AP and sensitivity by size.

The rules are those of LUNA16's ``noduleCADEvaluationLUNA16.py`` (Setio et al. 2017):

* a finding *hits* a true lesion when its centre lies within the lesion's radius
  (``diameter / 2``, strictly closer) of the lesion's centre;
* several findings on one lesion count once: the lesion takes the highest of
  their scores, and none of them is a false positive;
* a finding that hits only *excluded* lesions (LUNA16's irrelevant findings) is
  ignored: neither hit nor false positive;
* every other finding is a false positive with its score;
* the FROC curve is (false positives per scan, sensitivity) over all thresholds,
  starting at (0, 0), and the CPM is the mean of the sensitivities linearly
  interpolated at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan (beyond
  the last point of the curve the last sensitivity holds).

AP is the area under the precision-recall curve (all-point interpolation) with
boxes matched greedily by score at IoU >= 0.1; sensitivity by size bin counts
lesions hit at a given threshold per equivalent-diameter bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcli.detect.findings import Finding

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SIZE_BINS = ((0.0, 6.0), (6.0, 10.0), (10.0, 20.0), (20.0, float("inf")))


@dataclass
class Scan:
    """Findings and truth of one scan."""

    name: str
    pred: list[Finding]
    truth: list[Finding]


@dataclass
class Froc:
    """Per-scan matching, pooled: the TP scores (one per detected lesion) and FP scores."""

    tp_scores: np.ndarray  # score of each hit lesion
    tp_diameters: np.ndarray  # diameters of those lesions
    fp_scores: np.ndarray
    n_lesions: int
    n_scans: int
    all_diameters: np.ndarray  # every counted lesion
    hit_score: np.ndarray  # per counted lesion: its best hit score, -inf if missed

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fps per scan, sensitivity, threshold) at every distinct score, from (0, 0) at +inf."""
        scores = np.unique(np.concatenate([self.tp_scores, self.fp_scores]))[::-1]
        fps = [0.0]
        sens = [0.0]
        thr = [np.inf]
        for t in scores:
            fps.append(float((self.fp_scores >= t).sum()) / max(self.n_scans, 1))
            sens.append(float((self.tp_scores >= t).sum()) / max(self.n_lesions, 1))
            thr.append(float(t))
        return np.array(fps), np.array(sens), np.array(thr)

    def sensitivities(self, rates=FP_RATES) -> np.ndarray:
        fps, sens, _ = self.curve()
        return np.interp(np.asarray(rates, float), fps, sens)

    def cpm(self) -> float:
        return float(np.mean(self.sensitivities()))

    def threshold_at(self, fp_rate: float = 1.0) -> float:
        """The lowest threshold whose false positives per scan stay at or below ``fp_rate``."""
        fps, _, thr = self.curve()
        ok = np.flatnonzero(fps <= fp_rate + 1e-12)
        return float(thr[ok[-1]])

    def sensitivity_at(self, threshold: float, lo: float = 0.0, hi: float = float("inf")) -> float:
        sel = (self.all_diameters >= lo) & (self.all_diameters < hi)
        if not sel.any():
            return float("nan")
        return float((self.hit_score[sel] >= threshold).mean())

    def fps_at(self, threshold: float) -> float:
        return float((self.fp_scores >= threshold).sum()) / max(self.n_scans, 1)


def match(scans: list[Scan]) -> Froc:
    """Match findings to lesions by the LUNA16 rules (see the module docstring)."""
    tp, tpd, fp, alld, hits = [], [], [], [], []
    n_les = 0
    for sc in scans:
        truth = [t for t in sc.truth if not t.excluded]
        excl = [t for t in sc.truth if t.excluded]
        best = np.full(len(truth), -np.inf)
        tc = np.array([t.center_ras for t in truth]).reshape(-1, 3)
        tr = np.array([t.radius_mm for t in truth])
        ec = np.array([t.center_ras for t in excl]).reshape(-1, 3)
        er = np.array([t.radius_mm for t in excl])
        for p in sc.pred:
            d = np.linalg.norm(tc - p.center_ras, axis=1) if len(truth) else np.zeros(0)
            on = np.flatnonzero(d < tr)
            if len(on):
                best[on] = np.maximum(best[on], p.score)
                continue
            if len(excl) and np.any(np.linalg.norm(ec - p.center_ras, axis=1) < er):
                continue
            fp.append(p.score)
        n_les += len(truth)
        for i, t in enumerate(truth):
            alld.append(t.diameter_mm)
            hits.append(best[i])
            if np.isfinite(best[i]):
                tp.append(best[i])
                tpd.append(t.diameter_mm)
    return Froc(np.array(tp, float), np.array(tpd, float), np.array(fp, float), n_les, len(scans),
                np.array(alld, float), np.array(hits, float))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two world boxes ``[xmin, ymin, zmin, xmax, ymax, zmax]``."""
    lo = np.maximum(a[:3], b[:3])
    hi = np.minimum(a[3:], b[3:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    va, vb = float(np.prod(a[3:] - a[:3])), float(np.prod(b[3:] - b[:3]))
    return inter / max(va + vb - inter, 1e-12)


def average_precision(scans: list[Scan], iou: float = 0.1) -> float:
    """AP of the boxes at ``iou`` (greedy by score per scan; excluded lesions ignored; all-point interpolation)."""
    rec = []  # (score, is_tp)
    n_les = 0
    for sc in scans:
        truth = [t for t in sc.truth if not t.excluded]
        excl = [t for t in sc.truth if t.excluded]
        n_les += len(truth)
        used = np.zeros(len(truth), bool)
        for p in sorted(sc.pred, key=lambda f: -f.score):
            ious = np.array([box_iou(p.box_ras, t.box_ras) for t in truth])
            ious[used] = -1
            if len(ious) and ious.max() >= iou:
                used[int(ious.argmax())] = True
                rec.append((p.score, True))
            elif any(box_iou(p.box_ras, t.box_ras) >= iou for t in excl):
                continue
            else:
                rec.append((p.score, False))
    if n_les == 0:
        return float("nan")
    rec.sort(key=lambda r: -r[0])
    tps = np.cumsum([r[1] for r in rec]) if rec else np.zeros(0)
    fps = np.cumsum([not r[1] for r in rec]) if rec else np.zeros(0)
    recall = tps / n_les
    precision = tps / np.maximum(tps + fps, 1)
    # All-point interpolation: precision made monotone, summed over the recall steps.
    mrec = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def evaluate(scans: list[Scan], threshold: float | None = None) -> dict:
    """Every metric as a JSON-able dict: CPM, FROC points, AP@0.1, sensitivity by size (at ``threshold``,
    default the threshold of 1 false positive per scan)."""
    fr = match(scans)
    sens = fr.sensitivities()
    thr = fr.threshold_at(1.0) if threshold is None else float(threshold)
    bins = {}
    for lo, hi in SIZE_BINS:
        key = f"{lo:g}-{hi:g}mm" if np.isfinite(hi) else f">={lo:g}mm"
        n = int(((fr.all_diameters >= lo) & (fr.all_diameters < hi)).sum())
        bins[key] = {"n": n, "sensitivity": _r(fr.sensitivity_at(thr, lo, hi))}
    fps, s, _ = fr.curve()
    return {
        "n_scans": fr.n_scans,
        "n_lesions": fr.n_lesions,
        "n_findings": int(len(fr.fp_scores) + sum(len(sc.pred) for sc in scans) - len(fr.fp_scores)),
        "cpm": _r(fr.cpm()),
        "froc": {f"{r:g}": _r(v) for r, v in zip(FP_RATES, sens)},
        "ap_iou_0.1": _r(average_precision(scans, 0.1)),
        "threshold": _r(thr),
        "sensitivity": _r(fr.sensitivity_at(thr)),
        "sensitivity_6mm_plus": _r(fr.sensitivity_at(thr, 6.0)),
        "fp_per_scan": _r(fr.fps_at(thr)),
        "sensitivity_by_size": bins,
        "curve": {"fp_per_scan": [_r(v) for v in fps], "sensitivity": [_r(v) for v in s]},
    }


def _r(v: float) -> float | None:
    v = float(v)
    return round(v, 4) if np.isfinite(v) else None

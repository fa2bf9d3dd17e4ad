"""The evaluator reproduces the LUNA16 rules on hand-made cases (FROC points computed by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from medcli.detect.evaluate import FP_RATES, Scan, average_precision, box_iou, evaluate, match
from medcli.detect.findings import Finding, sphere_box


def F(x, y, z, d=5.0, score=1.0, excluded=False, box=None):
    c = np.array([x, y, z], float)
    return Finding(c, sphere_box(c, d) if box is None else np.array(box, float), d, score, excluded=excluded)


def luna_case():
    # Scan A: L1 (r 5), L2 (r 3), an excluded lesion E; scan B: L3 (r 10).
    a_truth = [F(0, 0, 0, 10), F(50, 0, 0, 6), F(100, 0, 0, 10, excluded=True)]
    a_pred = [
        F(1, 0, 0, score=0.9),  # hits L1
        F(0, 2, 0, score=0.5),  # second hit on L1: counted once, not a false positive
        F(100, 1, 0, score=0.8),  # on the excluded lesion: ignored
        F(30, 0, 0, score=0.7),  # false positive
        F(50, 3.5, 0, score=0.6),  # 3.5 mm from L2, radius 3: false positive
    ]
    b_truth = [F(0, 0, 0, 20)]
    b_pred = [F(5, 5, 5, score=0.4), F(200, 0, 0, score=0.95)]  # 8.66 mm < 10: hit; far: FP
    return [Scan("A", a_pred, a_truth), Scan("B", b_pred, b_truth)]


def test_luna_matching_rules():
    fr = match(luna_case())
    assert fr.n_lesions == 3 and fr.n_scans == 2
    assert sorted(fr.tp_scores) == [0.4, 0.9]
    assert sorted(fr.fp_scores) == [0.6, 0.7, 0.95]


def test_froc_points_and_cpm_by_hand():
    fr = match(luna_case())
    fps, sens, thr = fr.curve()
    # thresholds 0.95, 0.9, 0.7, 0.6, 0.4 -> FP/scan 0.5, 0.5, 1, 1.5, 1.5; sensitivity 0, 1/3, 1/3, 1/3, 2/3
    assert np.allclose(fps, [0, 0.5, 0.5, 1.0, 1.5, 1.5])
    assert np.allclose(sens, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3])
    assert np.allclose(fr.sensitivities(), [0, 0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert fr.cpm() == pytest.approx(8 / 21)
    assert fr.threshold_at(1.0) == pytest.approx(0.7)
    rep = evaluate(luna_case())
    assert rep["cpm"] == pytest.approx(8 / 21, abs=1e-4)
    assert rep["sensitivity"] == pytest.approx(1 / 3, abs=1e-4) and rep["fp_per_scan"] == 1.0
    by = rep["sensitivity_by_size"]
    assert by["6-10mm"] == {"n": 1, "sensitivity": 0.0}
    assert by["10-20mm"] == {"n": 1, "sensitivity": 1.0}
    assert by[">=20mm"] == {"n": 1, "sensitivity": 0.0}
    assert list(rep["froc"]) == [f"{r:g}" for r in FP_RATES]


def test_interpolation_between_froc_points():
    # One scan, 2 lesions; FPs at 0.8 and 0.6, hits at 0.7 and 0.5: (1, .5) then (2, .5) then (2, 1).
    sc = Scan("s", [F(0, 0, 0, score=0.7), F(50, 0, 0, score=0.5), F(90, 0, 0, score=0.8), F(-90, 0, 0, score=0.6)],
              [F(0, 0, 0, 4), F(50, 0, 0, 4)])
    fr = match([sc])
    # (0,0) -> (1,0) at 0.8 -> (1,.5) at 0.7 -> (2,.5) at 0.6 -> (2,1) at 0.5
    assert np.allclose(fr.sensitivities([0.5, 1, 1.5, 2, 4]), [0.0, 0.5, 0.5, 1.0, 1.0])


def test_no_findings_and_no_lesions():
    rep = evaluate([Scan("a", [], [F(0, 0, 0, 6)]), Scan("b", [], [])])
    assert rep["cpm"] == 0.0 and rep["n_lesions"] == 1
    fr = match([Scan("b", [F(0, 0, 0, score=0.3)], [])])
    assert fr.n_lesions == 0 and list(fr.fp_scores) == [0.3]


def test_ap_at_iou_01_by_hand():
    t1, t2 = F(5, 5, 5, box=[0, 0, 0, 10, 10, 10]), F(55, 55, 55, box=[50, 50, 50, 60, 60, 60])
    p = [F(5, 5, 5, score=0.9, box=[0, 0, 0, 10, 10, 10]), F(99, 0, 0, score=0.8, box=[95, 0, 0, 100, 5, 5]),
         F(57, 57, 57, score=0.5, box=[52, 52, 52, 62, 62, 62])]
    assert box_iou(p[2].box_ras, t2.box_ras) == pytest.approx(512 / 1488)
    # TP, FP, TP: recall .5, .5, 1; precision 1, .5, 2/3 -> AP = .5 * 1 + .5 * 2/3
    assert average_precision([Scan("s", p, [t1, t2])], 0.1) == pytest.approx(0.5 + 0.5 * 2 / 3)

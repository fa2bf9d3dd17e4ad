"""The SynthSeg-style generator and the held-out tissue cases."""

import numpy as np
import pytest

from medcli.train.synth import (
    DRIFT_VALIDATION,
    SynthConfig,
    apply_response,
    labels_from_probs,
    random_response,
    synth_sample,
    tissue_maps,
    tissue_validation_cases,
)


@pytest.fixture(scope="module")
def maps():
    return tissue_maps()


def test_tissue_maps_from_the_mni_template(maps):
    p = maps.probs
    assert p.shape == (4, 197, 233, 189)
    assert np.allclose(p.sum(0), 1, atol=1e-5) and p.min() >= 0
    counts = np.bincount(maps.labels.ravel(), minlength=4)
    # ~1.9 M brain voxels: GM the largest class, then WM, then CSF (the template is skull-stripped).
    assert 1.8e6 < counts[1:].sum() < 2.0e6
    assert counts[2] > counts[3] > counts[1] > 1e5


def test_samples_are_reproducible_and_randomised(maps):
    cfg = SynthConfig(patch=(64, 64))
    a = synth_sample(maps, np.random.default_rng(1), cfg)
    b = synth_sample(maps, np.random.default_rng(1), cfg)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    samples = [synth_sample(maps, np.random.default_rng(s), cfg) for s in range(24)]
    order = []
    for x, y in samples:
        assert x.shape == (1, 64, 64) and x.dtype == np.float32 and y.shape == (64, 64)
        assert 0 <= x.min() and x.max() <= 1 and set(np.unique(y)) <= {0, 1, 2, 3}
        if (y == 2).sum() > 50 and (y == 3).sum() > 50:
            order.append(x[0][y == 2].mean() > x[0][y == 3].mean())
    # Contrast-agnostic: GM is brighter than WM in some samples (T2-like) and darker in others (T1-like).
    assert len(order) >= 8 and 0 < sum(order) < len(order)
    # And the anatomy moves: no two label patches alike.
    assert len({y.tobytes() for _, y in samples}) == len(samples)


def test_thick_slices_blur_the_image_not_the_labels(maps):
    thin = SynthConfig(patch=(96, 96), thick_prob=0, inplane_prob=0, blur=0, noise=0, bias=0, gamma=0, elastic=0,
                       rotation=0, scale=0, shear=0, hard_prob=0, texture=0, flip_prob=0, bg_zero_prob=1, axes=(2,))
    from dataclasses import replace

    thick = replace(thin, inplane_prob=1.0, spacing=(5.0, 5.0))
    xa, ya = synth_sample(maps, np.random.default_rng(3), thin)
    xb, yb = synth_sample(maps, np.random.default_rng(3), thick)
    assert np.array_equal(ya, yb)  # labels stay at 1 mm
    grad = lambda x: np.abs(np.diff(x[0], axis=0)).mean() + np.abs(np.diff(x[0], axis=1)).mean()  # noqa: E731
    assert grad(xb) < 0.8 * grad(xa)


def test_labels_from_probs():
    p = np.array([[0.9, 0.2], [0.05, 0.1], [0.05, 0.6], [0.0, 0.1]])[:, :, None, None]
    assert labels_from_probs(p)[:, 0, 0].tolist() == [0, 2]


@pytest.mark.slow
def test_held_out_cases_are_other_renderings(maps):
    cases = tissue_validation_cases()
    names = [c[0] for c in cases]
    assert names == ["T1", "T1 deformed", "T2-like", "PD-like", "T1 4 mm slices", "T1 Rician 9 %"]
    means = {}
    for name, img, lab in cases:
        assert img.shape == lab.shape and 0 <= img.min() and img.max() <= 1
        means[name] = [img[lab == c].mean() for c in (1, 2, 3)]
    assert means["T1"][0] < means["T1"][1] < means["T1"][2]  # CSF < GM < WM
    assert means["T2-like"][0] > means["T2-like"][1] > means["T2-like"][2]
    assert means["PD-like"][1] > means["PD-like"][2]
    # The deformed case really moved the anatomy.
    assert (cases[1][2] != cases[0][2]).mean() > 0.05


def test_random_responses_are_monotone_through_0_and_1():
    cfg = SynthConfig()
    u = np.linspace(0, 1.3, 500)
    shapes = set()
    for seed in range(40):
        f = random_response(np.random.default_rng(seed), cfg)
        y = f(u)
        assert np.all(np.diff(y) > 0)  # monotone: intensity order is kept
        assert f(np.float64(0.0)) == pytest.approx(0, abs=1e-9) and f(np.float64(1.0)) == pytest.approx(1, abs=1e-9)
        shapes.add(round(float(f(np.float64(0.5))), 2))
    # Not one curve: compressive and expansive, near-linear and sigmoid-like midpoints.
    assert min(shapes) < 0.4 and max(shapes) > 0.65


def test_drift_response_changes_tissue_ratios_and_keeps_the_order(maps):
    rng = np.random.default_rng(0)
    slab = np.array([0.0, 0.3, 0.6, 0.9], np.float32)[:, None]  # background, CSF, GM, WM
    brain = np.array([0.0, 1.0, 1.0, 1.0], np.float32)[:, None]
    ratios = []
    for seed in range(30):
        out, top = apply_response(slab, brain, 0.9, np.random.default_rng(seed), SynthConfig())
        assert out[0, 0] == pytest.approx(0, abs=1e-6) and np.all(np.diff(out[1:, 0]) > 0)  # zero background stays zero; order kept
        assert top == pytest.approx(out[3, 0], rel=1e-4)  # the brightest tissue, for the normalisation
        ratios.append((out[2, 0] - out[1, 0]) / (out[3, 0] - out[1, 0]))
    # The GM position between CSF and WM (0.5 on a linear scanner) moves with the response.
    assert np.ptp(ratios) > 0.3
    # In training samples: off by default (earlier recipes unchanged), drawn when asked.
    base = SynthConfig(patch=(64, 64))
    from dataclasses import replace

    a = synth_sample(maps, np.random.default_rng(rng.integers(1000)), base)
    assert a[0].shape == (1, 64, 64)
    x, y = synth_sample(maps, np.random.default_rng(7), replace(base, drift_response=1.0))
    assert 0 <= x.min() and x.max() <= 1 and y.shape == (64, 64)


@pytest.mark.slow
def test_drift_validation_cases_add_scanners_to_the_held_out_cases():
    from medcli.train.synth import tissue_drift_validation_cases

    from medcli.train.synth import DRIFT_CONTRAST_VALIDATION

    cases = tissue_drift_validation_cases(contrasts=True)
    names = [c[0] for c in cases]
    assert names[:6] == ["T1", "T1 deformed", "T2-like", "PD-like", "T1 4 mm slices", "T1 Rician 9 %"]
    n = 6 + len(DRIFT_VALIDATION)
    assert names[6:n] == list(DRIFT_VALIDATION) and names[n:] == list(DRIFT_CONTRAST_VALIDATION)
    # The other contrasts keep their tissue order through the scanner's monotone response.
    for name, img, lab in cases[n:]:
        m = [img[lab == c].mean() for c in (1, 2, 3)]
        signals = DRIFT_CONTRAST_VALIDATION[name]["contrast"]
        assert list(np.argsort(m)) == list(np.argsort(signals)), name
    t1 = cases[0][1]
    for name, img, lab in cases[6:n]:
        m = [img[lab == c].mean() for c in (1, 2, 3)]
        assert m[0] < m[1] < m[2]  # still T1 order
        assert not np.allclose(img, t1, atol=0.05)


def test_clinical_contrasts_keep_their_order_and_are_off_by_default():
    from dataclasses import replace

    from medcli.train.synth import CLINICAL_CONTRASTS, _tissue_means

    rng = np.random.default_rng(3)
    # Off by default: the any-order draw, with the same random numbers as before the option existed.
    off = SynthConfig()
    assert np.array_equal(_tissue_means(np.random.default_rng(5), off), _tissue_means(np.random.default_rng(5), replace(off, clinical_contrast=0.0)))
    on = replace(off, clinical_contrast=1.0)
    orders = set()
    for _ in range(200):
        mu = _tissue_means(rng, on)
        assert np.all((mu > 0) & (mu <= 1))
        orders.add(tuple(np.argsort(mu)))  # CSF, GM, WM indices, darkest first
    # T1 (CSF < GM < WM), T2/PD (WM < GM < CSF) and FLAIR (CSF < WM < GM): the clinical orders and no other.
    assert orders == {(0, 1, 2), (2, 1, 0), (0, 2, 1)}
    # PD-like: CSF at most ~25 % brighter than GM (low contrast), GM brighter than WM.
    csf, gm, wm = (np.mean(b) for b in CLINICAL_CONTRASTS["PD"])
    assert csf > gm > wm and csf / gm < 1.3

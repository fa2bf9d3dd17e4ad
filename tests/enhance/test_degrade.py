"""The degradation simulators produce exactly the corruption they claim (on the real T1)."""

from __future__ import annotations

import numpy as np
import pytest

from medcli.enhance import degrade as d
from medcli.image import Image


@pytest.fixture(scope="module")
def crop(t1):
    # A 64^3 block through the ventricles and cortex: real anatomy, fast tests.
    x = np.asarray(t1.data, np.float32)[60:124, 80:144, 70:134]
    aff = t1.affine.copy()
    aff[:3, 3] = t1.voxel_to_world([[60, 80, 70]])[0]
    return Image(x, aff)


@pytest.fixture(scope="module")
def crop_tissues():
    """CSF, GM, WM probabilities of the crop (the MNI maps, CSF = brain - GM - WM)."""
    from medcli import io

    box = (slice(60, 124), slice(80, 144), slice(70, 134))
    brain = np.asarray(io.read("sample:t1").data)[box] > 0
    gm = np.asarray(io.read("sample:gm").data, np.float32)[box] / 255 * brain
    wm = np.asarray(io.read("sample:wm").data, np.float32)[box] / 255 * brain
    return np.stack([np.clip(brain - gm - wm, 0, 1), gm, wm]).astype(np.float32)


def test_rician_sigma_matches_percent(t1):
    clean = np.asarray(t1.data, np.float32)
    noisy = d.add_rician(clean, 5, rng=0)
    sigma = 0.05 * d.reference_intensity(clean)
    bg = noisy[clean == 0]
    # Background of Rician noise is Rayleigh: mean sigma*sqrt(pi/2).
    assert bg.mean() / np.sqrt(np.pi / 2) == pytest.approx(sigma, rel=0.01)
    # In bright tissue Rician ~ Gaussian: residual std ~ sigma.
    bright = clean > 0.5 * d.reference_intensity(clean)
    assert np.std(noisy[bright] - clean[bright]) == pytest.approx(sigma, rel=0.03)


def test_gaussian_psnr_is_known(crop):
    clean = crop.data
    peak = d.reference_intensity(clean)
    noisy = d.add_gaussian(clean, 4, rng=1)
    mask = clean > 0
    assert d.psnr(clean, noisy, mask, peak) == pytest.approx(20 * np.log10(100 / 4), abs=0.1)
    assert d.psnr(clean, clean) == float("inf")


def test_bias_field_is_smooth_and_bounded(crop):
    f = d.bias_field(crop.shape, strength=0.4, rng=3, spacing=crop.spacing)
    assert f.shape == crop.shape
    assert 0.8 <= f.min() < 1 < f.max() <= 1.23
    # Smooth: over a 64 mm block neighbouring voxels differ by about 1 % at most.
    assert np.abs(np.diff(np.log(f), axis=0)).max() < 0.02
    assert abs(np.log(f).mean()) < 0.05
    biased, field = d.add_bias(crop, 0.4, rng=3)
    assert np.allclose(field, f)
    assert d.residual_bias(biased.data, crop.data) > 0.03
    assert d.residual_bias(crop.data * 3.0, crop.data) < 1e-6  # global scale is free


def test_thick_slices_geometry(crop):
    thick = d.thick_slices(crop, 4, axis=2)
    assert thick.shape == (64, 64, 16)
    assert thick.spacing == pytest.approx((1, 1, 4))
    # Slab j averages input slices 4j..4j+3: its centre is their mean position.
    centre = crop.voxel_to_world([[0, 0, 1.5]])[0]
    assert np.allclose(thick.voxel_to_world([[0, 0, 0]])[0], centre, atol=1e-5)
    assert np.allclose(thick.data[..., 2], crop.data[..., 8:12].mean(axis=2), atol=1e-4)
    g = d.thick_slices(crop, 3, axis=0, profile="gaussian")
    assert g.shape == (21, 64, 64) and g.spacing == pytest.approx((3, 1, 1))


def test_scanner_response_is_monotonic_and_identity_at_zero(crop):
    x = crop.data
    same = d.scanner_response(x, rng=0, severity=0.0)
    assert np.allclose(same, x, rtol=1e-4, atol=1e-3)
    other = d.scanner_response(x, rng=5, severity=1.0, blur_mm=0)
    m = x > 0
    order = np.argsort(x[m])
    assert np.all(np.diff(other[m][order]) >= -1e-3)  # monotonic response
    assert not np.allclose(other[m] / other[m].mean(), x[m] / x[m].mean(), atol=0.02)
    assert np.all(other[~m] == 0)


def test_random_contrast_and_deformation(crop):
    a = np.clip(crop.data / 255, 0, 1)
    c = d.random_contrast([a, 1 - a], rng=0)
    assert c.shape == a.shape and c.min() >= 0
    (w,) = d.random_deformation([crop.data], rng=0, amplitude=3)
    assert w.shape == crop.shape
    assert 0.8 < np.corrcoef(w.ravel(), crop.data.ravel())[0, 1] < 0.9999


@pytest.mark.parametrize("name", list(d.DRIFT_SCANNERS))
def test_drift_renderings_are_monotone_with_the_stated_response(crop, crop_tissues, name):
    drift = d.DRIFT_SCANNERS[name]
    x = crop.data
    brain = x > 0
    tissues = crop_tissues if drift.contrast else None
    y = d.drift_response(x, drift, brain)
    # Monotone: sorting the input sorts the output (ties aside).
    order = np.argsort(x[brain], kind="stable")
    assert np.all(np.diff(y[brain][order]) >= -1e-4 * y[brain].max())
    assert np.all(y[~brain] == 0)
    ref = float(np.percentile(x[brain], 99))
    v = x[brain][order][len(order) // 2]
    u = v / ref
    if drift.response == "gamma":
        expected = drift.gain * ref * (u**drift.exponent + drift.offset)
        assert y[brain][order][len(order) // 2] == pytest.approx(expected, rel=1e-4)
    rendered = d.drift_render(crop, drift, rng=0, mask=brain, tissues=tissues)
    assert rendered.shape == crop.shape and np.isfinite(rendered.data).all()
    if drift.rician and not drift.slice_mm:
        # Same seed without noise: same bias field; in bright tissue Rician ~ Gaussian of the stated sigma.
        from dataclasses import replace

        clean = d.drift_render(crop, replace(drift, rician=0), rng=0, mask=brain, tissues=tissues).data
        bright = clean > np.percentile(clean, 50)
        sigma = drift.rician / 100 * d.reference_intensity(clean)
        assert np.std(rendered.data[bright] - clean[bright]) == pytest.approx(sigma, rel=0.05)


@pytest.mark.parametrize("signals", [d.PD_LIKE, d.FLAIR_LIKE])
def test_tissue_contrast_orders_tissues_as_stated(crop, crop_tissues, signals):
    brain = crop.data > 0
    out = d.tissue_contrast(crop.data, crop_tissues, signals, brain)
    labels = np.argmax(crop_tissues, axis=0)
    pure = np.max(crop_tissues, axis=0) > 0.9
    medians = [float(np.median(out[pure & brain & (labels == k)])) for k in range(3)]
    # The tissues come out in the stated order and near the stated ratios; the background stays 0.
    assert np.argsort(medians).tolist() == np.argsort(signals).tolist()
    assert np.allclose(np.array(medians) / max(medians), np.array(signals) / max(signals), atol=0.08)
    assert np.all(out[~brain] == 0)
    # Texture is the T1's own: within WM the rendering follows the T1 (correlated), not a flat mean.
    wm = pure & brain & (labels == 2)
    assert np.corrcoef(out[wm], crop.data[wm])[0, 1] > 0.5
    with pytest.raises(ValueError, match="tissue"):
        d.drift_render(crop, d.Drift(contrast=signals), rng=0)


def test_drift_thick_slices_are_constant_within_a_slab(crop):
    drift = d.Drift(slice_mm=4.0)
    out = d.drift_render(crop, drift, rng=0).data
    assert np.allclose(out[:, :, 0], out[:, :, 3]) and not np.allclose(out[:, :, 3], out[:, :, 4])


def test_drift_rejects_unknown_response(crop):
    with pytest.raises(ValueError, match="sigmoid"):
        d.drift_response(crop.data, d.Drift(response="cubic"))

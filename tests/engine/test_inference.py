"""The inference engine on cases whose answer is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcli.engine import inference
from medcli.engine.inference import (
    gaussian_weights,
    normalize,
    padded_shape,
    predict,
    resample_array,
    to_model_space,
    window_starts,
)
from medcli.image import Image


class Scale(torch.nn.Module):
    """Pointwise network: output channel c = (c + 1) * input. Any correct blending returns it exactly."""

    def __init__(self, channels: int = 2):
        super().__init__()
        self.channels = channels
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x):
        self.calls += 1
        self.shapes.append(tuple(x.shape))
        return torch.cat([(c + 1) * x for c in range(self.channels)], 1)


class Flipper(torch.nn.Module):
    """Not equivariant to mirroring: output = input + a ramp along the last axis."""

    def forward(self, x):
        ramp = torch.arange(x.shape[-1], dtype=x.dtype).expand_as(x)
        return x + ramp


def _img(shape=(37, 29, 23), affine=None, seed=0):
    rng = np.random.default_rng(seed)
    return Image(rng.random(shape, dtype=np.float32) * 100, np.eye(4) if affine is None else affine)


def test_sliding_window_blending_is_exact_and_seamless():
    img = _img()
    net = Scale()
    spec = {"patch_size": [16, 16, 16], "activation": "none"}
    out = predict(net, spec, img, overlap=0.5, batch_size=3, device="cpu")
    assert out.shape == img.shape + (2,)
    assert out.affine == pytest.approx(img.affine)
    np.testing.assert_allclose(out.data[..., 0], img.data, rtol=1e-5)
    np.testing.assert_allclose(out.data[..., 1], 2 * img.data, rtol=1e-5)
    # Many windows, batched by 3, each exactly one patch.
    assert net.calls > 3
    assert all(s[0] <= 3 and s[2:] == (16, 16, 16) for s in net.shapes)


def test_overlap_zero_and_padding_of_small_images():
    img = _img((10, 40, 5))
    out = predict(Scale(1), {"patch_size": [16, 16, 16], "activation": "none"}, img, overlap=0.0, device="cpu")
    np.testing.assert_allclose(out.data[..., 0], img.data, rtol=1e-5)


def test_softmax_outputs_are_probabilities():
    img = _img((20, 20, 20))
    out = predict(Scale(3), {"patch_size": [8, 8, 8], "normalization": "zscore"}, img, device="cpu")
    np.testing.assert_allclose(out.data.sum(-1), 1.0, atol=1e-5)


def test_gaussian_weights_and_window_coverage():
    g = gaussian_weights((16, 16, 16))
    assert g.max() == pytest.approx(1.0)
    assert g.min() > 0
    assert g[8, 8, 8] == g.max() and g[0, 0, 0] == g.min()
    for size, patch, ov in [(100, 32, 0.5), (33, 32, 0.25), (32, 32, 0.5), (7, 32, 0.5)]:
        starts = window_starts(size, patch, ov)
        covered = np.zeros(max(size, patch), bool)
        for s in starts:
            covered[s : s + patch] = True
        assert covered.all() and starts[-1] + patch == max(size, patch)
        if len(starts) > 1:
            assert max(np.diff(starts)) <= int(patch * (1 - ov))
    assert padded_shape((121, 145, 121), 16, (128, 128, 128)) == (128, 160, 128)


def test_whole_volume_mode_pads_to_multiple():
    net = Scale(1)
    img = _img((21, 35, 17))
    out = predict(net, {"activation": "none", "divisible_by": 16, "min_size": [32, 32, 32]}, img, device="cpu")
    assert net.shapes == [(1, 1, 32, 48, 32)]
    np.testing.assert_allclose(out.data[..., 0], img.data, rtol=1e-5)


def test_mirror_tta_is_undone_exactly():
    img = _img((16, 16, 16))
    spec = {"patch_size": [16, 16, 16], "activation": "none", "tta_axes": [0, 1, 2]}
    plain = predict(Flipper(), spec, img, device="cpu").data[..., 0]
    tta = predict(Flipper(), spec, img, tta=True, device="cpu").data[..., 0]
    # The ramp is flipped back with the output: mirrored along z it averages to (n-1)/2.
    np.testing.assert_allclose(plain, img.data + np.arange(16), rtol=1e-5)
    np.testing.assert_allclose(tta, img.data + 7.5, rtol=1e-5)


def test_fold_ensemble_averages_probabilities():
    img = _img((12, 12, 12))
    spec = {"patch_size": [12, 12, 12], "activation": "none"}
    out = predict([Scale(1), torch.nn.Identity()], spec, img, device="cpu")
    # (1 * x + x) / 2 = x
    np.testing.assert_allclose(out.data[..., 0], img.data, rtol=1e-5)
    both = predict([Scale(2), _Const(0.0, 2)], spec, img, device="cpu").data
    np.testing.assert_allclose(both[..., 1], img.data, rtol=1e-5)  # (2x + 0) / 2


class _Const(torch.nn.Module):
    def __init__(self, value: float, channels: int):
        super().__init__()
        self.value, self.channels = value, channels

    def forward(self, x):
        return torch.full((x.shape[0], self.channels) + tuple(x.shape[2:]), self.value)


def test_resampling_round_trip_keeps_geometry_and_values():
    # Oblique, anisotropic, LPS-ish input: model space is RAS at 2 mm.
    theta = np.deg2rad(10)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([-1.2, -0.9, 3.0])
    aff[:3, 3] = [40.0, 20.0, -30.0]
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in (40, 50, 12)), indexing="ij")
    world = np.einsum("ij,jxyz->ixyz", aff[:3, :3], np.stack([x, y, z])) + aff[:3, 3, None, None, None]
    smooth = (world[0] * 0.5 + world[1] * 0.25 - world[2] * 0.1).astype(np.float32)  # linear in mm
    img = Image(smooth, aff)
    spec = {"spacing": [2.0, 2.0, 2.0], "orientation": "RAS", "interpolation": 1}
    work, back = to_model_space(img, spec)
    assert work.orientation == "RAS"
    # The model grid covers exactly the same field of view, so spacing is 2 mm to within one voxel's rounding.
    np.testing.assert_allclose(work.spacing, 2.0, rtol=0.05)
    out = back(Image(work.data[..., None], work.affine))
    assert out.shape == img.shape + (1,)
    np.testing.assert_allclose(out.affine, img.affine, atol=1e-5)
    # A linear field survives linear resampling away from the extended edges.
    inner = (slice(3, -3), slice(3, -3), slice(2, -2))
    np.testing.assert_allclose(out.data[..., 0][inner], smooth[inner], atol=1e-3)
    # Reorientation alone is exact both ways.
    work2, back2 = to_model_space(img, {"orientation": "RAS"})
    np.testing.assert_array_equal(back2(Image(work2.data, work2.affine)).data, smooth)


def test_resample_array_keeps_edges():
    data = np.ones((5, 5, 5), np.float32)
    aff_dst = np.diag([2.5, 2.5, 2.5, 1.0])
    aff_dst[:3, 3] = 0.75  # centres just outside the source's outer centres
    out = resample_array(data, np.eye(4), aff_dst, (2, 2, 2), order=1)
    np.testing.assert_allclose(out, 1.0)


def test_normalization_methods():
    x = np.array([[[0.0, 1.0, 2.0, 3.0, 100.0]]], np.float32)
    z = normalize(x, "zscore")
    assert z.mean() == pytest.approx(0, abs=1e-6) and z.std() == pytest.approx(1, abs=1e-5)
    p = normalize(x, {"method": "percentile", "low": 0, "high": 75})
    assert p.max() == pytest.approx(p[0, 0, 3])  # 100 clipped to the 75th percentile
    nz = normalize(x, {"method": "zscore", "nonzero": True})
    assert nz[0, 0, 0] == 0 and nz[x != 0].mean() == pytest.approx(0, abs=1e-6)
    mm = normalize(x, "minmax")
    assert mm.min() == 0 and mm.max() == pytest.approx(1)


def test_memory_bound_shrinks_batch_and_patch():
    net = Scale(1)
    img = _img((64, 64, 64))
    spec = {"patch_size": [64, 64, 64], "activation": "none", "memory_per_voxel": 1000}
    out = predict(net, spec, img, max_memory="40M", device="cpu")
    np.testing.assert_allclose(out.data[..., 0], img.data, rtol=1e-5)
    assert all(np.prod(s[2:]) * 1000 <= 40 * 1024**2 for s in net.shapes)
    assert all(s[0] == 1 for s in net.shapes)


def test_deterministic_mode_reproduces():
    torch.manual_seed(1)
    conv = torch.nn.Conv3d(1, 2, 3, padding=1)
    img = _img((24, 24, 24))
    spec = {"patch_size": [16, 16, 16]}
    a = predict(conv, spec, img, deterministic=True, device="cpu").data
    b = predict(conv, spec, img, deterministic=True, device="cpu").data
    np.testing.assert_array_equal(a, b)
    inference.set_deterministic(False)


def test_registry_style_spec_is_understood():
    flat = inference.inference_spec({"architecture": "x", "input": {"normalisation": "zscore", "mirror_axes": [0]}})
    assert flat["normalization"] == "zscore" and flat["tta_axes"] == [0] and "input" not in flat


def test_nominal_resize_reproduces_hdbet_padorcut():
    # 131 model voxels at a nominal 1.5 mm -> round(196.5) = 196 at 1 mm, centre-padded to 197 (HD-BET).
    data = np.zeros((131, 4, 4), np.float32)
    data[-1] = 1
    out = inference.nominal_resize(data, [1.5, 1.5, 1.5], [1.0, 1.0, 1.0], (197, 6, 6), order=0)
    assert out.shape == (197, 6, 6)
    assert out[-1].max() == 0 and out[-2].min() == 1  # the one padded slice is at the end
    np.testing.assert_array_equal(inference.zoom_to(data, (197, 6, 6), order=0)[-1], 1)  # exact mode: no pad

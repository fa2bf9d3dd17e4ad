"""MRI reconstruction methods on a real held-out slice of the MNI T1: quality against the fully sampled image."""

from __future__ import annotations

import numpy as np
import pytest

from medcli.recon.mri.formats import KSpace
from medcli.recon.mri.learned import HELD_OUT
from medcli.recon.mri.methods import Wavelet, reconstruct_mri
from medcli.recon.mri.metrics import psnr, ssim
from medcli.recon.mri.simulate import coil_maps, simulate_slices


@pytest.fixture(scope="module")
def slice_4x(t1):
    """A held-out axial slice (never used in training), brain box, 8 coils, 4x random (8 % centre), SNR 40."""
    z = (HELD_OUT[0] + HELD_OUT[1]) // 2
    img = np.asarray(t1.data[30:170, 30:200, z], np.float32)[None]
    k, mask, ref = simulate_slices(img, coils=8, accel=4, center=0.08, snr=40, seed=7)
    return KSpace(k, mask, np.eye(4), img.shape[1:]), ref


def _scores(res, ref):
    x = np.abs(res.image)
    return ssim(ref, x), psnr(ref, x)


def test_wavelet_is_orthonormal_and_sparse_on_flat_patches():
    import torch

    wav = Wavelet((32, 48), 3)
    x = torch.randn(2, 32, 48, dtype=torch.complex64)
    c = wav.forward(x)
    assert c.dtype == x.dtype
    assert abs(float(c.norm() / x.norm()) - 1) < 1e-5
    assert float((wav.inverse(c) - x).abs().max()) < 1e-5
    # Haar: an image constant on aligned 8 x 8 blocks has no detail at 3 levels, only the 4 x 6 coarse band.
    blocks = torch.randn(1, 4, 6, dtype=torch.complex64).repeat_interleave(8, -2).repeat_interleave(8, -1)
    c = wav.forward(blocks)
    assert wav.coarse == (4, 6)
    assert float(c[..., 4:, :].abs().max()) < 1e-5 and float(c[..., :, 6:].abs().max()) < 1e-5
    np.testing.assert_allclose(c[0, :4, :6].numpy(), 8 * blocks[0, ::8, ::8].numpy(), rtol=1e-5)


@pytest.mark.parametrize("shape", [(16, 16), (15, 21)])
def test_normal_operator_with_the_shifts_folded_is_a_h_a(shape):
    """normal_op (the solvers' A^H A, centring shifts done once) equals adjoint(forward(x)), odd sizes included."""
    import torch

    from medcli.recon.mri.methods import adjoint, forward, normal_op

    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, *shape), dtype=torch.complex64, generator=g)
    maps = torch.randn((2, 3, *shape), dtype=torch.complex64, generator=g)
    mask = (torch.rand((2, *shape), generator=g) > 0.5).float()
    torch.testing.assert_close(normal_op(maps, mask)(x), adjoint(forward(x, maps, mask), maps, mask), rtol=1e-5, atol=1e-5)


def test_espirit_finds_the_simulated_sensitivities(slice_4x):
    import torch

    from medcli.recon.mri.espirit import espirit_maps

    ks, ref = slice_4x
    maps = espirit_maps(torch.from_numpy(ks.data[0]), ks.mask[0]).numpy()
    true = coil_maps(ks.data.shape[2:], 8)
    fg = ref[0] > 0.2 * ref.max()
    # Equal up to one phase per pixel: |<estimated, true>| = 1 on the object.
    inner = np.abs((maps.conj() * true).sum(0))[fg]
    assert inner.mean() > 0.995 and inner.min() > 0.95


def test_sense_and_cs_beat_zerofill_at_4x(slice_4x):
    ks, ref = slice_4x
    zf = _scores(reconstruct_mri(ks, "zerofill"), ref)
    sense = _scores(reconstruct_mri(ks, "sense", iterations=10), ref)
    tv = _scores(reconstruct_mri(ks, "cs", reg="tv", iterations=30), ref)
    wav = _scores(reconstruct_mri(ks, "cs", reg="wavelet", iterations=30), ref)
    for name, s in (("sense", sense), ("cs tv", tv), ("cs wavelet", wav)):
        assert s[0] > zf[0] + 0.1, (name, s, zf)
        assert s[1] > zf[1] + 1.0, (name, s, zf)
    assert tv[0] > sense[0]


def test_learned_falls_back_to_cs_outside_its_range(slice_4x):
    ks, _ = slice_4x
    k12 = KSpace(ks.data * 0, ks.mask.copy(), ks.affine, ks.recon_shape)
    k12.mask[:] = False
    k12.mask[:, :, ::24] = True
    k12.mask[:, :, 82:88] = True
    k12.data = ks.data * k12.mask[:, None]
    assert k12.acceleration > 12
    res = reconstruct_mri(k12, "learned", iterations=2)
    assert res.method == "cs"


@pytest.mark.slow
def test_learned_model_on_a_held_out_slice(slice_4x):
    """The shipped network (from the hub, sha256 checked) runs within its range and improves on its own start,
    the cs result, on a slice it never saw."""
    ks, ref = slice_4x
    learned = reconstruct_mri(ks, "learned")
    assert learned.method == "learned" and learned.info["model"]["Name"] == "recon-mri"
    cs = _scores(reconstruct_mri(ks, "cs"), ref)
    got = _scores(learned, ref)
    assert got[0] > cs[0] + 0.005, (got, cs)


def test_hub_model_starts_from_the_cs_method():
    """The registered weights load into the architecture, and its start is `-m cs --reg tv` itself (same lambda, fewer
    iterations: since 3.2 the cascades make up for a 30-iteration start, which keeps learned within the cs time)."""
    from medcli.engine.architectures import build
    from medcli.models import hub
    from medcli.recon.mri.methods import AUTO_LAMBDA, DEFAULT_ITERATIONS

    spec, state = hub.load("recon-mri")
    assert spec["version"] == "3.3.0"
    net = build(spec)
    net.load_state_dict({k: __import__("torch").as_tensor(v) for k, v in state.items()})
    assert 0 < net.cs_iterations < DEFAULT_ITERATIONS["cs"] and net.cs_lambda == AUTO_LAMBDA["tv"]
    assert len(net.cascades) == spec["params"]["cascades"] == len(state["steps"])


def test_training_input_is_made_as_run_time_makes_it():
    """The network is trained on what it meets at run time: ESPIRiT maps, its own CS-TV first iterate."""
    import torch

    from medcli.recon.mri import learned as lm
    from medcli.recon.mri.espirit import espirit_maps

    x, y = lm.cs_training_pair(np.random.default_rng(3), size=64, max_coils=8, cs_iterations=5)
    assert x.shape == (4 * 8 + 3, 64, 64) and y.shape == (1, 64, 64)
    k, maps, mask, first = lm.unpack(torch.from_numpy(x[None]))
    nc = int((maps.abs().sum((-2, -1)) > 0).sum())
    assert 6 <= nc <= 8 and float(k[:, nc:].abs().max()) == 0
    assert lm.is_line_mask(mask.numpy() > 0) and 0.05 < float(mask.mean()) < 0.4
    # ESPIRiT's maps of the undersampled data, not the simulation's (which the 1.0 model was trained with)
    esp = espirit_maps(k[0, :nc], mask[0].numpy() > 0)
    assert torch.allclose(maps[0, :nc], esp, atol=1e-4)
    # the packed first iterate is the network's own CS-TV start on the same data
    net = lm.UnrolledNet(cascades=2, features=4, layers=2, cs_iterations=5)
    own = net.first_iterate(k[:, :nc], maps[:, :nc], mask)
    assert torch.allclose(own, first, atol=1e-4 * float(first.abs().max()))
    # an untrained network (zero last layers, zero steps) returns its first iterate exactly
    with torch.no_grad():
        out = net(torch.from_numpy(x[None]))[0, 0]
    torch.testing.assert_close(out, first[0].abs())
    # a random global phase is an exact augmentation of the bank: the target's magnitude does not turn
    settings = dict(size=64, max_coils=8, cs_iterations=5)
    xb, yb = lm.cs_training_bank(np.random.default_rng(0), bank=2, bank_seed=5, **settings)
    xs, ys = lm._cs_bank(2, 5, tuple(sorted(settings.items())))
    i = int(np.argmin([np.abs(t - yb).max() for t in ys]))
    np.testing.assert_array_equal(yb, ys[i])
    turned = (xb[-2] + 1j * xb[-1]) / (xs[i][-2] + 1j * xs[i][-1] + 1e-12)
    fg = np.abs(xs[i][-2] + 1j * xs[i][-1]) > 0.1
    np.testing.assert_allclose(np.abs(turned[fg]), 1, atol=1e-3)
    assert np.ptp(np.angle(turned[fg] * np.conj(turned[fg][0]))) < 1e-3  # one global phase


def test_training_bank_draws_degenerate_pairs_again(monkeypatch):
    """A pair whose ESPIRiT maps are empty (run time refuses such data) or that is not finite never
    enters a bank: it overflowed the loss (NaN at step 8 of recipes/recon_mri_v33.toml's first run)."""
    from medcli.recon.mri import learned as lm

    x, y = lm.cs_training_pair(np.random.default_rng(3), size=48, max_coils=8, cs_iterations=3)
    assert lm._usable(x, y)
    no_maps = x.copy()
    no_maps[2 * 8 : 4 * 8] = 0
    not_finite = x.copy()
    not_finite[-1, 3, 3] = np.nan
    assert not lm._usable(no_maps, y) and not lm._usable(not_finite, y)
    draws = iter([(no_maps, y), (x, y), (not_finite, y), (x + 1, y)])
    monkeypatch.setattr(lm, "cs_training_pair", lambda rng, **kw: next(draws))
    xs, _ = lm._cs_bank.__wrapped__(2, 0, ())
    np.testing.assert_array_equal(xs, np.stack([x, x + 1]))


def test_ellipse_phantoms_are_objects_inside_the_field_of_view():
    """The non-brain training objects: seeded, maximum 1, a zero border (coils see all of it), several
    intensity levels; a phantoms share of 1 trains on them only, 0 on the brain only."""
    from medcli.recon.mri import learned as lm

    a = lm.ellipse_phantom(np.random.default_rng(8), 64)
    np.testing.assert_array_equal(a, lm.ellipse_phantom(np.random.default_rng(8), 64))
    assert a.shape == (64, 64) and a.dtype == np.float32 and float(a.max()) == 1.0 and float(a.min()) >= 0
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    assert float(border.max()) == 0 and 0.15 < float((a > 0.05).mean()) < 0.8
    assert len(np.unique(np.round(a[a > 0.05], 3))) >= 4
    rng = np.random.default_rng(8)
    rng.uniform()  # training_image's draw of the object kind
    np.testing.assert_array_equal(lm.training_image(np.random.default_rng(8), 64, phantoms=1.0), lm.ellipse_phantom(rng, 64))
    x, y = lm.cs_training_pair(np.random.default_rng(5), size=48, max_coils=8, cs_iterations=3, phantoms=1.0)
    assert float(y[0, 0].max()) == 0 and float(y.max()) > 0  # an ellipse inside the field of view, not a brain crop


def test_cascades_ignore_the_image_phase():
    """A trained-looking network (random weights) gives the same magnitude when the data turn by any global
    phase: it sees only |x| and u* g, so the ESPIRiT maps' arbitrary phase cannot matter."""
    import torch

    from medcli.recon.mri import learned as lm

    x, _ = lm.cs_training_pair(np.random.default_rng(4), size=48, max_coils=8, cs_iterations=3)
    net = lm.UnrolledNet(cascades=2, features=4, layers=2, cs_iterations=3)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn_like(p))
        k, maps, mask, first = lm.unpack(torch.from_numpy(x[None]))
        turn = torch.exp(torch.tensor(1.1j, dtype=torch.complex64))
        a = net.reconstruct(k, maps, mask, first).abs()
        b = net.reconstruct(k * turn, maps, mask, first * turn).abs()
    assert float((a - first.abs()).abs().max()) > 1e-2  # the weights do change the image
    torch.testing.assert_close(a, b, atol=1e-4 * float(a.max()), rtol=0)


def test_auto_is_cs(slice_4x):
    ks, _ = slice_4x
    assert reconstruct_mri(ks, "auto", iterations=1).method == "cs"


def test_too_narrow_calibration_is_an_error_not_a_blank_image(t1):
    from medcli.errors import ProcessingError

    img = np.asarray(t1.data[60:124, 80:144, 110], np.float32)[None]
    k, mask, _ = simulate_slices(img, coils=8, accel=8, center=0.04, seed=1)  # 3 centre lines of 64
    with pytest.raises(ProcessingError, match="calibration region of 3 centre lines"):
        reconstruct_mri(KSpace(k, mask, np.eye(4), img.shape[1:]), "sense")

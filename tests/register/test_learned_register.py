"""The learned (SynthMorph-style) registration path on a known case of the real MNI T1 (2 mm for speed).

The moving image is the T1 resampled through a known smooth displacement
(not one the training generator drew: another family and seed) and an
affine; the network's field must carry the GM/WM maps closer to the template's
than the affine step alone (GM clearly, WM at least as well), without folding,
identically on every run.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from medcli.image import Image
from medcli.register.methods import Options, register
from medcli.register.transforms import AffineTransform, DisplacementField, warp_image

pytestmark = pytest.mark.usefixtures("one_thread")

#: Affine schedule for tests (the benchmark runs the defaults at 1 mm).
FAST = Options(affine_levels=((4.0, 80), (2.0, 30)))
SPACING = 2.0


@functools.cache
def sample(name: str, spacing: float = SPACING) -> Image:
    from medcli import io

    img = io.read(f"sample:{name}")
    return img if spacing == 1 else img.resample(spacing)


@functools.cache
def known_case(seed: int = 11):
    """Smooth random displacement (3 mm RMS, sigma 10 mm) then a rotation/scaling/shift: moving T1, GM and WM maps."""
    from scipy import ndimage
    from scipy.spatial.transform import Rotation

    fixed = sample("t1")
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(3,) + fixed.shape)
    u = np.stack([ndimage.gaussian_filter(c, 10.0 / SPACING) for c in u], -1)
    u *= 3.0 / u.std()
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", [-3.0, 2.0, 4.0], degrees=True).as_matrix() * 0.97
    c = np.array([0.0, -18.0, 18.0])
    m[:3, 3] = c - m[:3, :3] @ c + [-2.0, 3.0, 1.0]
    chain = [DisplacementField(fixed.with_data(u.astype(np.float32))), AffineTransform(m)]
    warp = functools.partial(warp_image, chain=chain, reference=fixed)
    return fixed, warp(sample("t1", 1)), warp(sample("gm", 1)), warp(sample("wm", 1))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def scores(chain) -> tuple[float, float]:
    fixed, _, mgm, mwm = known_case()
    fgm, fwm = np.asarray(sample("gm").data) > 127, np.asarray(sample("wm").data) > 127
    return (
        dice(np.asarray(warp_image(mgm, chain, fixed).data) > 127, fgm),
        dice(np.asarray(warp_image(mwm, chain, fixed).data) > 127, fwm),
    )


@functools.cache
def learned_result():
    from medcli.register.learned import register_learned

    fixed, moving, _, _ = known_case()
    return register_learned(moving, fixed, options=FAST, want_jacobian=True, seed=2)


def test_model_loads_through_the_hub_with_its_checksum():
    import hashlib

    from medcli.engine.unet import UNet
    from medcli.models import hub
    from medcli.register.learned import MODEL, load_model

    entry = hub.registry()[MODEL]
    assert entry["task"] == "registration"
    net, spec, sha = load_model()
    assert isinstance(net, UNet) and sha == entry["files"][0]["sha256"]
    assert spec["input"]["shape"] == [40, 48, 40] and spec["input"]["spacing"][0] == 4.0
    # The bundled file is the one the registry names (the hub loads nothing else).
    path = hub.fetch(MODEL)[0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    n = sum(p.numel() for p in net.parameters())
    assert 1e5 < n < 1e6  # a small model


def test_learned_beats_affine_alone_without_folding():
    fixed, moving, _, _ = known_case()
    aff = register(moving, fixed, kind="affine", options=FAST, seed=2)
    res = learned_result()
    # The same affine step (same seed) comes first: all the difference is the network's field.
    assert np.allclose(res.chain[-1].matrix, aff.chain[-1].matrix)
    gm_a, wm_a = scores(aff.chain)
    gm_l, wm_l = scores(res.chain)
    # Measured with the bundled weights: GM .749 -> .778, WM .742 -> .745 (the network's field is
    # coarse, 4 mm; a zero field would change nothing, a wrong one would lower both).
    assert gm_l > gm_a + 0.015 and wm_l > wm_a - 0.005 and (gm_l + wm_l) / 2 > (gm_a + wm_a) / 2 + 0.008, (gm_a, wm_a, gm_l, wm_l)
    assert res.stats["folded_fraction"] == 0.0 and res.stats["jacobian_min"] > 0
    assert np.isfinite(res.log_jacobian.data).all()
    assert res.stats["method"] == "learned" and res.stats["model"]["sha256"]
    # exp(-v) inverts exp(v): a fixed point sent to moving space and back returns (sub-voxel).
    pts = fixed.voxel_to_world(np.argwhere(np.asarray(fixed.data) > np.percentile(fixed.data, 70))[::7])
    back = res.inverse.transform_points(res.chain.transform_points(pts))
    assert np.linalg.norm(back - pts, axis=1).mean() < 0.5


def test_learned_is_deterministic():
    from medcli.register.learned import register_learned

    fixed, moving, _, _ = known_case()
    again = register_learned(moving, fixed, options=FAST, seed=2)
    first = learned_result()
    assert np.array_equal(first.chain[0].displacements, again.chain[0].displacements)
    assert np.array_equal(first.warped.data, again.warped.data)


@pytest.mark.slow
def test_refinement_composes_without_folding():
    from medcli.register.learned import register_learned

    fixed, moving, _, _ = known_case()
    res = register_learned(moving, fixed, options=FAST, seed=2, refine_levels=((4.0, 20), (2.0, 10)))
    gm_l, wm_l = scores(learned_result().chain)
    gm_r, wm_r = scores(res.chain)
    assert gm_r > gm_l - 0.005 and wm_r > wm_l - 0.005, (gm_l, wm_l, gm_r, wm_r)
    assert res.stats["folded_fraction"] == 0.0 and res.stats["method"] == "learned+refine"

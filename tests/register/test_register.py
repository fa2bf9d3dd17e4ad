"""Registration known-answer tests on the real MNI T1 (resampled to 4 mm for speed).

The moving image is the T1 resampled through a known transform ``B`` (fixed ->
moving), so registration must find ``A`` with ``B . A = identity``; a
synthetic smooth displacement plus an affine must be undone well enough that
the GM/WM maps carried through the result overlap the template's.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from medcli.errors import InputError
from medcli.image import Image
from medcli.register.methods import Options, register
from medcli.register.transforms import AffineTransform, DisplacementField, warp_image

#: Fast schedule for tests at 4 mm (the benchmark runs the defaults at 1 mm).
FAST = Options(affine_levels=((4.0, 80),), syn_levels=((4.0, 50),))


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def sample(name: str, spacing: float = 4.0) -> Image:
    from medcli import io

    img = io.read(f"sample:{name}")
    return img if spacing == 1 else img.resample(spacing)


def rigid(angles_deg, shift_mm) -> AffineTransform:
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    c = np.array([0.0, -18.0, 18.0])  # about the middle of the brain
    m[:3, 3] = c - m[:3, :3] @ c + np.asarray(shift_mm, float)
    return AffineTransform(m)


def errors(B: AffineTransform, A: AffineTransform, fixed: Image) -> tuple[float, float]:
    """Rotation error (degrees) and mean displacement error over the head (mm) of ``B . A`` vs identity."""
    E = B.matrix @ A.matrix
    angle = float(np.degrees(np.arccos(np.clip((np.trace(E[:3, :3]) - 1) / 2, -1, 1))))
    pts = fixed.voxel_to_world(np.argwhere(np.asarray(fixed.data) > np.percentile(fixed.data, 70)))
    return angle, float(np.linalg.norm(AffineTransform(E).transform_points(pts) - pts, axis=1).mean())


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_translation_recovered():
    fixed = sample("t1")
    B = AffineTransform.from_translation([6.0, -4.0, 3.0])
    moving = warp_image(sample("t1", 1), B, fixed)
    res = register(moving, fixed, kind="rigid", options=FAST)
    angle, err = errors(B, res.chain[-1], fixed)
    assert angle < 0.25 and err < 0.25, (angle, err)  # 4 mm voxels: < 1/16 voxel
    assert res.stats["metric_after"] > res.stats["metric_before"]


def test_binary_image_is_refused_in_one_line():
    """A two-valued image (a mask given as an image) has no anatomy to register by: one clear error. It had been
    scaled to foreground 0 and background below it, which gave a NaN transform and an all-zero output."""
    a = np.diag([4.0, 4.0, 4.0, 1.0])
    x = np.zeros((40, 44, 40), np.float32)
    x[10:28, 12:32, 11:27] = 100.0
    with pytest.raises(InputError, match="single intensity over its background"):
        register(Image(np.roll(x, 2, 0), a), Image(x, a), kind="rigid", options=FAST)


def test_rotation_recovered():
    fixed = sample("t1")
    B = rigid([6.0, -4.0, 5.0], [0, 0, 0])
    moving = warp_image(sample("t1", 1), B, fixed)
    res = register(moving, fixed, kind="rigid", options=FAST)
    angle, err = errors(B, res.chain[-1], fixed)
    assert angle < 0.25 and err < 0.3, (angle, err)
    # The inverse chain undoes the forward chain exactly (affine).
    p = np.array([[10.0, -20.0, 30.0]])
    assert np.allclose(res.inverse.transform_points(res.chain.transform_points(p)), p, atol=1e-6)


def test_inverted_contrast_uses_mutual_information():
    """A T2-like rendering (inverted brain contrast) is recognised as another contrast and still aligned."""
    fixed = sample("t1")
    B = rigid([-3.0, 4.0, 2.0], [3.0, 2.0, -4.0])
    m = warp_image(sample("t1", 1), B, fixed)
    d = np.asarray(m.data)
    moving = m.with_data(np.where(d > 8, 300.0 - d, 0.0).astype(np.float32))
    res = register(moving, fixed, kind="affine", options=FAST)
    assert res.stats["contrast_correlation"] < 0.5 and res.stats["metric"] == "mi"
    _, err = errors(B, res.chain[-1], fixed)  # affine: the mean point error says it all
    assert err < 0.5, err


def synthetic_case(seed: int = 0):
    """A smooth random displacement (3 mm RMS) followed by a rotation/scaling: moving image and tissue maps."""
    from scipy import ndimage

    fixed = sample("t1")
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(3,) + fixed.shape)
    u = np.stack([ndimage.gaussian_filter(c, 3.0) for c in u], -1)
    u *= 3.0 / u.std()
    B = rigid([4.0, -3.0, 3.0], [3.0, -2.0, 2.0])
    B.matrix[:3, :3] *= 1.04
    chain = [DisplacementField(fixed.with_data(u.astype(np.float32))), B]
    warp = functools.partial(warp_image, chain=chain, reference=fixed)
    return fixed, warp(sample("t1", 1)), warp(sample("gm", 1)), warp(sample("wm", 1))


@pytest.mark.slow
def test_syn_undoes_a_known_deformation():
    fixed, moving, mgm, mwm = synthetic_case()
    res = register(moving, fixed, kind="syn", options=FAST, want_jacobian=True)
    aff = register(moving, fixed, kind="affine", options=FAST)
    fgm, fwm = np.asarray(sample("gm").data) > 127, np.asarray(sample("wm").data) > 127

    def scores(chain):
        return dice(np.asarray(warp_image(mgm, chain, fixed).data) > 127, fgm), dice(
            np.asarray(warp_image(mwm, chain, fixed).data) > 127, fwm
        )

    gm0, wm0 = dice(np.asarray(mgm.data) > 127, fgm), dice(np.asarray(mwm.data) > 127, fwm)
    gm_a, wm_a = scores(aff.chain)
    gm_s, wm_s = scores(res.chain)
    assert gm_s > gm_a + 0.03 and wm_s > wm_a + 0.03, (gm0, wm0, gm_a, wm_a, gm_s, wm_s)
    assert gm_s > 0.75 and wm_s > 0.8, (gm_s, wm_s)
    assert res.stats["folded_fraction"] == 0.0 and res.stats["jacobian_min"] > 0
    assert np.isfinite(res.log_jacobian.data).all()
    # exp(-v) inverts exp(v): a fixed point sent to moving space and back returns (sub-voxel).
    pts = fixed.voxel_to_world(np.argwhere(np.asarray(fixed.data) > np.percentile(fixed.data, 70))[::7])
    back = res.inverse.transform_points(res.chain.transform_points(pts))
    assert np.linalg.norm(back - pts, axis=1).mean() < 0.5


def test_deterministic():
    fixed = sample("t1")
    moving = warp_image(sample("t1", 1), rigid([2.0, 1.0, -2.0], [2.0, 0.0, 1.0]), fixed)
    a = register(moving, fixed, kind="rigid", options=FAST, seed=3)
    b = register(moving, fixed, kind="rigid", options=FAST, seed=3)
    assert np.array_equal(a.chain[-1].matrix, b.chain[-1].matrix)
    assert np.array_equal(a.warped.data, b.warped.data)


def test_bad_inputs():
    fixed = sample("t1")
    far = Image(np.asarray(fixed.data), fixed.affine @ np.array([[1, 0, 0, 1000.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    with pytest.raises(InputError, match="do not overlap"):
        register(far, fixed, kind="rigid", options=FAST)
    with pytest.raises(InputError, match="3D"):
        register(fixed, Image(np.zeros((30, 30, 1), np.float32), np.eye(4)), kind="rigid", options=FAST)
    with pytest.raises(InputError, match="shape"):
        register(fixed, fixed, kind="rigid", moving_mask=np.ones((3, 3, 3), bool), options=FAST)
    bad = fixed.with_data(np.where(np.arange(fixed.data.size).reshape(fixed.shape) == 5, np.nan, fixed.data.astype(np.float32)))
    with pytest.raises(InputError, match="NaN"):
        register(bad, fixed, kind="rigid", options=FAST)

"""Bad input with texture: non-head 3D images are refused in one line by both methods, heads are not.

The diffeomorphic stage of the atlas method can bend a textured non-head image into the brain's outline (a
smooth random texture scored |r| 0.43-0.46 after it, above the 0.3 of the head check), so the affine stage's
result is checked as well, by the correlation ratio of the subject on the template's tissue intensity
(:func:`medcli.landmarks.atlas.check_tissue`).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage

from medcli.errors import ProcessingError
from medcli.image import Image
from medcli.landmarks.atlas import MIN_TISSUE_MATCH, check_tissue, detect_atlas
from medcli.landmarks.learned import detect_learned
from medcli.landmarks.sets import load_set
from medcli.register.methods import Options
from medcli.register.transforms import AffineTransform, DisplacementField, TransformChain, warp_image

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = Options(affine_levels=((6.0, 60), (3.0, 40)), syn_levels=((6.0, 40), (3.0, 30)))


@functools.cache
def template(spacing: float = 3.0) -> Image:
    from medcli import io

    return io.read("sample:t1").resample(spacing)


def world(img: Image) -> np.ndarray:
    """(3, X, Y, Z) RAS mm of each voxel."""
    idx = np.indices(img.shape[:3], dtype=np.float64).reshape(3, -1)
    return (img.affine[:3, :3] @ idx + img.affine[:3, 3:4]).reshape((3,) + img.shape[:3])


def texture(rng: np.random.Generator, shape, sigma_vox: float) -> np.ndarray:
    t = ndimage.gaussian_filter(rng.normal(size=shape), sigma_vox)
    return t / t.std()


def textured_blob(seed: int = 0) -> Image:
    """Smooth random texture (4 mm) in a head-sized ellipsoid on the template's grid: the outline of a head, no anatomy."""
    t = template()
    x, y, z = world(t)
    inside = (x / 70) ** 2 + ((y + 18) / 85) ** 2 + ((z - 10) / 65) ** 2 <= 1
    d = 100 + 30 * texture(np.random.default_rng(seed), t.shape, 4.0 / 3.0)
    return t.with_data(np.where(inside, d, 0).astype(np.float32))


def body(seed: int = 0) -> Image:
    """A torso-like MR volume (3 mm): fat wall, muscle, lungs, heart, liver, spine with canal, textured tissue."""
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    shape = (114, 80, 100)
    aff[:3, 3] = -np.array(shape) * 1.5
    img = Image(np.zeros(shape, np.float32), aff)
    x, y, z = world(img)

    def ell(c, r):
        return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1

    d = np.zeros(shape, np.float32)
    d[(x / 165) ** 2 + (y / 115) ** 2 <= 1] = 400  # fat
    d[(x / 150) ** 2 + (y / 100) ** 2 <= 1] = 120  # muscle and viscera
    d[ell((-70, 0, 60), (55, 70, 110)) | ell((70, 0, 60), (55, 70, 110))] = 10  # lungs
    d[ell((15, -25, 20), (55, 45, 50))] = 180  # heart
    d[ell((-50, 0, -90), (80, 70, 60))] = 160  # liver
    spine = (x / 18) ** 2 + ((y - 65) / 16) ** 2 <= 1
    d[spine] = np.where(np.mod(z[spine], 30) < 25, 250, 200)
    d[(x / 7) ** 2 + ((y - 88) / 7) ** 2 <= 1] = 350  # spinal canal
    d += (15 * texture(np.random.default_rng(seed), shape, 1.0) * (d > 0)).astype(np.float32)
    return img.with_data(d)


def pd_like_warped(seed: int = 1) -> Image:
    """The template through a smooth warp (up to 4 mm) and a 10-degree rotation, rendered PD-like (flat, CSF > GM > WM,
    as bench_landmarks makes it): the benchmark's weakest head for the affine check (0.56 at 2 mm)."""
    t = template()
    rng = np.random.default_rng(seed)
    u = np.stack([ndimage.gaussian_filter(rng.normal(size=t.shape), 8.0 / 3.0) for _ in range(3)], -1)
    u *= 4.0 / np.linalg.norm(u, axis=-1).max()
    c, s = np.cos(np.deg2rad(10)), np.sin(np.deg2rad(10))
    rot = np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])
    chain = TransformChain([DisplacementField(t.with_data(u.astype(np.float32))), AffineTransform(rot, center=np.array([0.0, -18.0, 18.0]))])
    d = np.asarray(warp_image(t, chain, t).data, np.float32)
    return t.with_data(np.where(d > 8, 300.0 + 130.0 * (1.0 - (np.minimum(d, 300.0) / 250.0) ** 2), 0.0).astype(np.float32))


def test_check_tissue_tells_anatomy_from_an_outline():
    """On the template's grid: any function of the template's intensity (T1, T2-like, PD-like) passes; texture or a
    constant inside the template's exact head outline does not."""
    t = np.asarray(template().data, np.float32)
    s = load_set("afids")
    inv = np.where(t > 0, t.max() - t, 0).astype(np.float32)
    pd = np.where(t > 8, 300.0 + 130.0 * (1.0 - (np.minimum(t, 300.0) / 250.0) ** 2), 0.0).astype(np.float32)
    for img in (t, inv, pd):
        assert check_tissue(t, img, s, None, voxel_mm=3.0) > 2 * MIN_TISSUE_MATCH
    head = ndimage.binary_dilation(t > 0.05 * t.max(), iterations=1)
    fake = np.where(head, 100 + 30 * texture(np.random.default_rng(0), t.shape, 4.0 / 3.0), 0).astype(np.float32)
    with pytest.raises(ProcessingError, match="does not show the afids template's tissues"):
        check_tissue(t, fake, s, None, voxel_mm=3.0)
    with pytest.raises(ProcessingError, match="is it a head MR image"):
        check_tissue(t, np.where(head, 100.0, 0).astype(np.float32), s, None, voxel_mm=3.0)  # a constant box


@pytest.mark.slow
@pytest.mark.parametrize("make", [textured_blob, body], ids=["textured blob", "body MR"])
def test_textured_non_heads_are_refused_by_both_methods(make):
    img = make()
    s, t = load_set("afids"), template()
    with pytest.raises(ProcessingError, match="is it a head MR image"):
        detect_atlas(img, s, skull="off", template=t, options=FAST)
    with pytest.raises(ProcessingError, match="is it a head MR image"):
        detect_learned(img, s, skull="off", template=t)


@pytest.mark.slow
def test_flat_pd_like_head_is_accepted_by_both_methods():
    s, t = load_set("afids"), template()
    img = pd_like_warped()
    for det in (detect_atlas(img, s, skull="off", template=t, options=FAST), detect_learned(img, s, skull="off", template=t)):
        assert det.stats["tissue_match"] >= 2 * MIN_TISSUE_MATCH
        assert np.isfinite(det.points.ras).all()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["atlas", "learned"])
def test_cli_refuses_a_textured_non_head_in_one_line(cli, tmp_path, method):
    from medcli import io

    io.write(textured_blob(1), tmp_path / "blob.nii.gz")
    r = cli("landmarks", tmp_path / "blob.nii.gz", "--method", method, "--skull", "off", "--spacing", "3", "-o", tmp_path / "p.fcsv")
    assert r.returncode != 0
    lines = [x for x in r.stderr.decode().splitlines() if x.strip()]
    assert len(lines) == 1 and "is it a head MR image" in lines[0], lines
    assert not (tmp_path / "p.fcsv").exists()


@pytest.mark.slow
def test_lowest_scoring_skull_on_head_is_accepted():
    """bench_brain_contrast's head 2 (PD, skull on, 1 mm): the lowest tissue match of the heads measured (0.30 with
    the brain model's mask; 0.37 with its true one, used here; threshold 0.17)."""
    from medcli import io
    from medcli.train import heads

    h = heads.synth_head(np.random.default_rng([19_000_019, 2]), "pd", spacing=1.0, cfg=heads.HELD_OUT, skull=True,
                         slice_mm=1.0, slice_axis=2)
    img, _ = heads.as_image(h)
    s = load_set("afids")
    det = detect_learned(img, s, mask=h.brain, template=io.read(s.template).resample(2.0))
    assert det.stats["tissue_match"] >= MIN_TISSUE_MATCH
    assert np.isfinite(det.points.ras).all()

"""Format round trips keep the affine to 1e-5 mm and the voxels bit-exact.

Two geometries: the bundled MNI T1 as is (RAS, 1 mm) and the same voxels with
an oblique, anisotropic, LPS-like affine (rotated 20 degrees about two axes,
first two axes flipped, 0.9 x 1.1 x 2.5 mm), in 3D and 4D.
"""

from __future__ import annotations

import numpy as np
import pytest

from dicomgen import oblique_affine
from medcli import io
from medcli.image import Image

CHAIN = ["a.nii.gz", "b.nrrd", "c.mha", "d.nii", "e.nhdr", "f.mhd", "g.mgz", "h.nii.gz"]


def oblique_lps() -> np.ndarray:
    aff = oblique_affine(spacing=(0.9, 1.1, 2.5), deg=(20.0, 20.0, 0.0), origin=(60.0, 80.0, -40.0))
    aff[:3, :2] *= -1  # axes 0 and 1 now run towards L and P
    return aff


@pytest.fixture(scope="module", params=["bundled", "oblique"])
def geometry(request, t1):
    return t1.affine if request.param == "bundled" else oblique_lps()


def test_oblique_affine_is_what_we_claim():
    img = Image(np.zeros((2, 2, 2), np.uint8), oblique_lps())
    assert img.orientation[:2] == "LP"
    np.testing.assert_allclose(img.spacing, (0.9, 1.1, 2.5))
    rot = oblique_lps()[:3, :3] / np.array([0.9, 1.1, 2.5])
    assert np.abs(rot - np.round(rot)).max() > 0.3  # genuinely oblique


def _chain(img: Image, folder, names=CHAIN):
    truth, truth_affine = img.data, img.affine
    for name in names:
        dest = folder / name
        io.write(img, dest)
        img = io.read(dest)
        assert img.shape == truth.shape, name
        assert img.dtype == truth.dtype, name
        # MGH stores its geometry in float32: 1e-5 mm holds for origins below ~130 mm.
        np.testing.assert_allclose(img.affine, truth_affine, atol=1e-5, rtol=0, err_msg=name)
        np.testing.assert_array_equal(img.data, truth, err_msg=name)
    return img


@pytest.mark.slow
def test_chain_3d(t1, geometry, tmp_path):
    _chain(Image(t1.data, geometry), tmp_path)


def test_chain_3d_float(t1, geometry, tmp_path):
    # Non-trivial floats (not integers in disguise) must also survive bit for bit.
    vals = (t1.data[40:140, 50:170, 30:110].astype(np.float32) * np.float32(0.3713) - np.float32(12.5)) / np.float32(3.1)
    img = Image(vals, geometry)
    _chain(img, tmp_path, ["a.nii.gz", "b.nrrd", "c.mha", "d.mgz", "e.nhdr", "f.nii"])


def test_chain_4d(t1, geometry, tmp_path):
    block = t1.data[50:130, 60:160, 40:100].astype(np.int16)
    vols = np.stack([block, block // 2, 255 - block], axis=-1)
    _chain(Image(vols, geometry, {"tr": 2.0}), tmp_path)
    back = io.read(tmp_path / CHAIN[-1])
    assert back.meta.get("tr") == pytest.approx(2.0)


@pytest.mark.slow
def test_chain_through_cli(cli, t1_path, tmp_path):
    """The same chain through `medcli convert`, with an oblique LPS image as the start."""
    src = tmp_path / "oblique.nii.gz"
    block = io.read(t1_path).data[40:150, 50:180, 30:120]
    io.write(Image(block, oblique_lps()), src)
    prev = src
    for name in ["b.nhdr", "c.mha", "d.mgz", "e.nii.gz"]:
        r = cli("convert", prev, "-o", tmp_path / name)
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == b""
        prev = tmp_path / name
    back = io.read(prev)
    np.testing.assert_allclose(back.affine, oblique_lps(), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(back.data, block)


def test_reorient_round_trip_is_exact(t1):
    img = Image(t1.data, oblique_lps())
    ras = img.reorient("RAS")
    assert ras.orientation == "RAS"
    back = ras.reorient(img.orientation)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-9)
    np.testing.assert_array_equal(back.data, img.data)
    # Every voxel keeps its world position.
    ijk = np.array([[3, 7, 11], [100, 20, 150]])
    xyz = img.voxel_to_world(ijk)
    ijk2 = np.rint(ras.world_to_voxel(xyz)).astype(int)
    for a, b in zip(ijk, ijk2):
        assert img.data[tuple(a)] == ras.data[tuple(b)]

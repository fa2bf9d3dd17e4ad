"""The Image type: geometry, exact reorientation, lazy voxels, resampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dicomgen import oblique_affine
from medcli.errors import InputError
from medcli.image import Image, grid_with_spacing, orientation_codes


def all_codes():
    for perm in itertools.permutations("XYZ"):
        for flips in itertools.product((0, 1), repeat=3):
            yield "".join({"X": "LR", "Y": "PA", "Z": "IS"}[a][f] for a, f in zip(perm, flips))


def test_geometry_properties():
    aff = oblique_affine(spacing=(0.9, 1.1, 2.5), origin=(1.0, 2.0, 3.0))
    img = Image(np.zeros((4, 5, 6), np.float32), aff)
    np.testing.assert_allclose(img.spacing, (0.9, 1.1, 2.5))
    assert img.origin == (1.0, 2.0, 3.0)
    assert sorted(img.orientation) == sorted("RAS")  # 20 degrees off: still the nearest axes
    ijk = np.array([[0, 0, 0], [3, 4, 5], [1.5, 2.25, 0.5]])
    np.testing.assert_allclose(img.world_to_voxel(img.voxel_to_world(ijk)), ijk, atol=1e-12)
    np.testing.assert_allclose(img.voxel_to_world([[1, 0, 0]])[0] - img.origin, aff[:3, 0])


def test_orientation_codes_distinct_for_45_degrees():
    rot = np.eye(4)
    c = np.cos(np.pi / 4)
    rot[:2, :2] = [[c, -c], [c, c]]  # axes 0 and 1 equally close to x and y
    codes = orientation_codes(rot)
    assert len(set(codes)) == 3 and codes[2] == "S"


@pytest.mark.parametrize("code", list(all_codes()))
def test_reorient_is_exact_and_keeps_world_positions(code):
    rng = np.random.default_rng(0)
    data = rng.random((5, 6, 7, 2)).astype(np.float32)  # 4D: the extra axis rides along
    img = Image(data, oblique_affine(deg=(12.0, -7.0, 25.0)))
    out = img.reorient(code)
    assert out.orientation == code
    back = out.reorient(img.orientation)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-12)
    np.testing.assert_array_equal(back.data, img.data)
    # the voxel at a world position holds the same value before and after
    for ijk in ([0, 0, 0], [4, 5, 6], [2, 1, 3]):
        xyz = img.voxel_to_world([ijk])
        new = np.rint(out.world_to_voxel(xyz)[0]).astype(int)
        np.testing.assert_allclose(out.voxel_to_world([new]), xyz, atol=1e-9)
        np.testing.assert_array_equal(out.data[tuple(new)], img.data[tuple(ijk)])


def test_reorient_rejects_bad_codes():
    img = Image(np.zeros((2, 2, 2)), np.eye(4))
    for bad in ("RAA", "XYZ", "RA", "RASP"):
        with pytest.raises(ValueError):
            img.reorient(bad)


def test_lazy_image_reads_once_and_only_when_asked():
    calls = []

    def load():
        calls.append(1)
        return np.ones((3, 4, 5), np.int16)

    img = Image(load, np.eye(4), shape=(3, 4, 5), dtype=np.int16)
    assert img.shape == (3, 4, 5) and img.dtype == np.int16 and img.nbytes == 120
    assert not img.is_loaded and calls == []
    assert img.data.sum() == 60 and img.data.sum() == 60
    assert calls == [1] and img.is_loaded


def test_lazy_failures_are_input_errors():
    def broken():
        raise RuntimeError("decoder exploded")

    img = Image(broken, np.eye(4), {"source": "scan.nii"}, shape=(2, 2, 2))
    with pytest.raises(InputError, match=r"^scan.nii: cannot read voxel data \(RuntimeError: decoder exploded\)"):
        img.data  # noqa: B018
    wrong = Image(lambda: np.zeros((2, 2, 3)), np.eye(4), {"source": "scan.nii"}, shape=(2, 2, 2))
    with pytest.raises(InputError, match=r"voxel data has shape \(2, 2, 3\), the header says \(2, 2, 2\)"):
        wrong.data  # noqa: B018


def test_constructor_checks():
    with pytest.raises(ValueError, match="4x4"):
        Image(np.zeros((2, 2, 2)), np.eye(3))
    with pytest.raises(ValueError, match="2 to 4 dimensions"):
        Image(np.zeros((2, 2, 2, 2, 2)), np.eye(4))
    with pytest.raises(ValueError, match="lazy image needs its shape"):
        Image(lambda: np.zeros((2, 2, 2)), np.eye(4))
    with pytest.raises(ValueError, match="does not match grid"):
        Image(np.zeros((2, 2, 2)), np.eye(4)).with_data(np.zeros((3, 2, 2)))


def test_resample_to_integer_shift_is_exact(t1):
    # A target grid shifted by whole voxels: nearest and linear interpolation are exact copies.
    target = t1.affine.copy()
    target[:3, 3] += t1.affine[:3, :3] @ np.array([3, -2, 5])
    shape = (150, 180, 120)
    for order in (0, 1):
        out = t1.resample_to((target, shape), order=order)
        expect = t1.data[3 : 3 + 150, 0:180, 5 : 5 + 120]
        np.testing.assert_allclose(out.data[:, 2:, :], expect[:, :178, :], atol=1e-4)
        assert np.all(out.data[:, :2, :] == 0)  # outside the input: the fill value


def test_resample_to_oblique_grid_and_back(t1):
    """Rotate the T1 grid 20 degrees and back: linear interpolation twice keeps PSNR high."""
    crop = t1.affine.copy()
    crop[:3, 3] += crop[:3, :3] @ np.array([40, 50, 40])
    img = Image(t1.data[40:160, 50:180, 40:150].astype(np.float32), crop)
    rot = oblique_affine(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    centre = img.voxel_to_world([np.array(img.shape) / 2 - 0.5])[0]
    target = np.eye(4)
    target[:3, :3] = rot[:3, :3]
    target[:3, 3] = centre - rot[:3, :3] @ (np.array(img.shape) / 2 - 0.5)
    there = img.resample_to((target, img.shape), order=1)
    back = there.resample_to(img, order=1)
    inner = tuple(slice(25, s - 25) for s in img.shape)  # away from the rotated corners
    err = back.data[inner] - img.data[inner]
    psnr = 10 * np.log10(255.0**2 / np.mean(err**2))
    assert psnr > 30, psnr


def test_grid_with_spacing_covers_the_same_field_of_view():
    aff = oblique_affine(spacing=(0.9, 1.1, 2.5))
    shape = (100, 90, 40)
    new_aff, new_shape = grid_with_spacing(aff, shape, 1.0)
    assert new_shape == (90, 99, 100)
    old_sp = np.array([0.9, 1.1, 2.5])
    new_sp = np.sqrt((new_aff[:3, :3] ** 2).sum(axis=0))
    # first and last voxel edges coincide
    first_old = aff[:3, 3] - aff[:3, :3] @ np.full(3, 0.5)
    first_new = new_aff[:3, 3] - new_aff[:3, :3] @ np.full(3, 0.5)
    np.testing.assert_allclose(first_new, first_old, atol=1e-9)
    np.testing.assert_allclose(new_sp * new_shape, old_sp * shape, atol=1e-9)
    np.testing.assert_allclose(new_aff[:3, :3] / new_sp, aff[:3, :3] / old_sp, atol=1e-12)


def test_resample_spacing_on_real_image(t1):
    img = Image(t1.data.astype(np.float32), t1.affine)
    half = img.resample(2.0)
    assert half.shape == (98, 116, 94)  # 197/2, 233/2, 189/2 rounded half to even
    assert half.data.max() <= img.data.max() + 1e-3 and half.data.min() >= img.data.min() - 1e-3
    # the mean intensity of the head survives downsampling
    assert abs(half.data.mean() - img.data.mean()) / img.data.mean() < 0.02

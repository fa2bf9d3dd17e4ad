"""register apply: images, label maps and points through transforms, against ANTsPy and SimpleITK."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from medcli.errors import InputError
from medcli.image import Image
from medcli.io.points import read_points, write_points
from medcli.register.apply import (
    Step,
    load_steps,
    parse_transform_arg,
    points_to_fixed,
    pull_chain,
    warp,
    warp_labels,
)
from medcli.register.transform_io import write_transform
from medcli.register.transforms import AffineTransform, TransformChain
from tests.conftest import DATA
from tests.register._interop import (
    ants_points,
    ants_syn,
    brain_points,
    bump_field,
    known_affine,
    rel_diff,
    t1_4mm,
    to_ants,
)

AFIDS = DATA / "afids-MNI152NLin2009bAsym.fcsv"


@pytest.fixture(scope="module")
def t1():
    return t1_4mm()


@pytest.fixture(scope="module")
def truth_files(tmp_path_factory, t1):
    """A known pull chain (bump warp, then affine) written as files, without an inverse warp."""
    folder = tmp_path_factory.mktemp("truth")
    chain = TransformChain([bump_field(t1), known_affine()])
    write_transform(chain[0], folder / "truth_warp.nii.gz")
    write_transform(chain[1], folder / "truth_affine.mat")
    return chain, [str(folder / "truth_warp.nii.gz"), str(folder / "truth_affine.mat")]


def test_translation_moves_every_point_by_exactly_that(tmp_path):
    # pull mapping fixed x -> x + t: the moving image's anatomy sits t further, so its points move by -t
    t = np.array([7.25, -3.5, 12.0])
    write_transform(AffineTransform.from_translation(t), tmp_path / "t.mat")
    pts = read_points(AFIDS)
    moved = points_to_fixed(load_steps([str(tmp_path / "t.mat")]), pts.ras)
    np.testing.assert_allclose(moved - pts.ras, np.broadcast_to(-t, pts.ras.shape), atol=1e-12)
    # --invert carries them back exactly
    back = points_to_fixed(load_steps([str(tmp_path / "t.mat")], invert=True), moved)
    np.testing.assert_allclose(back, pts.ras, atol=1e-12)


def test_points_land_on_the_same_anatomy_as_the_image(t1, truth_files):
    """Bright blobs drawn on the moving image end, in the warped image, where their points are carried."""
    chain, files = truth_files
    steps = load_steps(files)
    grid = t1.resample(2)
    centres = t1.voxel_to_world([[14, 20, 20], [34, 20, 20], [24, 40, 24], [24, 28, 36]])  # 40 mm apart or more
    g = grid.voxel_to_world(np.argwhere(np.ones(grid.shape, bool)))
    blobs = sum(np.exp(-((g - c) ** 2).sum(1) / (2 * 2.5**2)) for c in centres)
    out = warp(grid.with_data(blobs.reshape(grid.shape).astype(np.float32)), steps, grid).data.ravel()
    for c in centres:
        expected = points_to_fixed(steps, c[None])[0]
        near = np.linalg.norm(g - expected, axis=1) < 12
        w = out[near] ** 4  # the peak: centroid of a blob moved by a smooth, near-rigid map
        found = (g[near] * w[:, None]).sum(0) / w.sum()
        # 2 mm grid; carrying the points the pull way instead would miss by 20-25 mm
        assert np.linalg.norm(found - expected) < 0.5, (found, expected)


def test_field_without_inverse_is_inverted_per_point(t1, truth_files):
    chain, files = truth_files
    steps = load_steps(files)
    assert steps[0].transform.inverse_field is None
    pm = brain_points(t1, 80)
    pf = points_to_fixed(steps, pm)
    # the fixed points go forward (pull) onto the moving points again: exact inverse
    assert np.abs(chain.transform_points(pf) - pm).max() < 0.01


def test_points_and_images_agree_with_ants(t1, tmp_path):
    reg, moving, folder = ants_syn()
    fwd, inv = reg["fwdtransforms"], reg["invtransforms"]
    steps = load_steps(fwd)
    pm = brain_points(moving, 60)
    # ANTs: moving points to fixed with the inverse transforms, affine inverted
    theirs = ants_points(pm, inv, whichtoinvert=[True, False])
    assert np.abs(points_to_fixed(steps, pm) - theirs).max() < 0.01
    # images: forward, and --invert (the fixed image onto the moving grid)
    fixed_a, moving_a = to_ants(t1, tmp_path), to_ants(moving, tmp_path)
    ants_fwd = ants.apply_transforms(fixed_a, moving_a, fwd, interpolator="linear").numpy()
    assert rel_diff(warp(moving, steps, t1).data, ants_fwd) < 1e-3
    ants_inv = ants.apply_transforms(moving_a, fixed_a, inv, whichtoinvert=[True, False], interpolator="linear").numpy()
    assert rel_diff(warp(t1, load_steps(fwd, invert=True), moving).data, ants_inv) < 1e-3
    # ANTs' bracket syntax gives the same as --invert
    bracket = load_steps([f"[{fwd[1]},1]", inv[1]])
    np.testing.assert_allclose(pull_chain(bracket).transform_points(pm), pull_chain(load_steps(fwd, invert=True)).transform_points(pm))
    # Without the inverse warp file, each point is inverted through the forward warp: exactly, to 0.01 mm.
    # ANTs' own inverse warp is an approximation whose error changes from run to run (its threads make
    # SyN non-deterministic), so the two may differ by that error and no more.
    alone = tmp_path / "alone"
    alone.mkdir()
    for f in fwd:
        shutil.copy(f, alone)
    solo = load_steps([str(alone / os.path.basename(f)) for f in fwd])
    ours = points_to_fixed(solo, pm)
    forward = pull_chain(solo)
    assert np.abs(forward.transform_points(ours) - pm).max() < 0.01
    ants_error = np.linalg.norm(forward.transform_points(theirs) - pm, axis=1)
    assert ants_error.max() < 0.5
    assert (np.linalg.norm(ours - theirs, axis=1) <= 2 * ants_error + 0.01).all()


@pytest.mark.parametrize("method", ["lanczos", "bspline", "linear"])
def test_interpolators_equal_simpleitk(method, t1, tmp_path):
    from medcli import io

    small = t1.resample(6)
    io.write(small, tmp_path / "m.nii.gz")
    write_transform(known_affine(), tmp_path / "a.mat")
    kind = {"lanczos": sitk.sitkLanczosWindowedSinc, "bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear}[method]
    m = sitk.ReadImage(str(tmp_path / "m.nii.gz"), sitk.sitkFloat32)
    ref = sitk.Resample(m, m, sitk.ReadTransform(str(tmp_path / "a.mat")), kind, 0.0, sitk.sitkFloat32)
    ours = warp(small, load_steps([str(tmp_path / "a.mat")]), small, method).data
    assert rel_diff(ours, sitk.GetArrayFromImage(ref).transpose(2, 1, 0)) < 1e-3


def test_4d_series_volume_by_volume(t1):
    steps = [Step(known_affine())]
    series = t1.with_data(np.stack([t1.data, 2 * t1.data + 1], -1))
    out = warp(series, steps, t1).data
    assert out.shape == t1.shape + (2,)
    np.testing.assert_allclose(out[..., 1], warp(t1.with_data(2 * t1.data + 1), steps, t1).data, rtol=1e-6)


def _tissue_labels(res: float) -> Image:
    """GM = 1, WM = 2 where the MNI probability (0-255) exceeds one half."""
    from medcli import io

    gm, wm = io.read("sample:gm").resample(res), io.read("sample:wm").resample(res)
    lab = np.zeros(gm.shape, np.int16)
    lab[gm.data > 127.5] = 1
    lab[wm.data > 127.5] = 2
    return gm.with_data(lab)


def test_labels_keep_thin_structures(t1):
    """Labels at 2 mm onto a rotated, deformed 2 mm grid: per-label interpolation beats nearest on the cortex."""
    from medcli import io

    full = t1.resample(2)
    corner = full.voxel_to_world([[20, 30, 40]])[0]  # a 48^3 box through the cortex and the ventricles
    ref = Image(np.zeros((48, 48, 48), np.float32), np.c_[full.affine[:, :3], np.r_[corner, 1.0]])
    steps = [Step(bump_field(t1)), Step(known_affine())]
    labels = _tissue_labels(2.0)
    # truth: the 1 mm probability map carried through the same transforms, then thresholded
    gm = warp(io.read("sample:gm"), steps, ref).data > 127.5
    dice = {}
    for method in ("nearest", "linear", "smooth"):
        out = warp_labels(labels, steps, ref, method)
        assert out.dtype == np.int16 and set(np.unique(out.data)) == {0, 1, 2}
        d = out.data == 1
        dice[method] = 2 * (d & gm).sum() / (d.sum() + gm.sum())
    # measured: nearest .92, linear .95, smooth .95 (1 mm onto 1 mm: .961 / .976 / .981)
    assert dice["smooth"] > dice["nearest"] + 0.01 and dice["linear"] > dice["nearest"] + 0.01, dice
    series = labels.with_data(np.stack([labels.data, labels.data], -1))
    out4 = warp_labels(series, steps, ref, "linear").data
    np.testing.assert_array_equal(out4[..., 1], warp_labels(labels, steps, ref, "linear").data)


def test_labels_refuse_fractions(t1):
    with pytest.raises(InputError, match="integer labels"):
        warp_labels(t1, [Step(known_affine())], t1)


def test_parse_transform_arg():
    assert parse_transform_arg("a.mat") == ("a.mat", False)
    assert parse_transform_arg("[dir/a,b.mat,1]") == ("dir/a,b.mat", True)
    assert parse_transform_arg("[a.mat, 0]") == ("a.mat", False)
    with pytest.raises(InputError, match="FILE,1"):
        parse_transform_arg("[a.mat]")


sitk = pytest.importorskip("SimpleITK")
ants = pytest.importorskip("ants")


# -- the command ---------------------------------------------------------------------------------


def test_cli_points_every_format(cli, tmp_path):
    t = np.array([2.0, -1.5, 4.0])
    write_transform(AffineTransform.from_translation(t), tmp_path / "t.tfm")
    pts = read_points(AFIDS)
    write_points(pts, tmp_path / "in.mrk.json")
    r = cli("register", "apply", AFIDS, tmp_path / "in.mrk.json", "-t", tmp_path / "t.tfm", "-o", str(tmp_path / "{stem}_moved.{index}"))
    # a template without a points extension: refused per input, nothing written
    assert r.returncode == 5 and b"point file" in r.stderr
    r = cli("register", "apply", AFIDS, "-t", tmp_path / "t.tfm", "-o", tmp_path / "out.fcsv")
    assert r.returncode == 0, r.stderr
    out = read_points(tmp_path / "out.fcsv")
    np.testing.assert_allclose(out.ras, pts.ras - t, atol=1e-9)
    assert out.descriptions == pts.descriptions
    r = cli("register", "apply", tmp_path / "in.mrk.json", "-t", tmp_path / "t.tfm", "-o", "-")
    assert r.returncode == 0, r.stderr
    from medcli.io.points import parse_points

    np.testing.assert_allclose(parse_points(r.stdout.decode(), "json").ras, pts.ras - t, atol=1e-9)


@pytest.mark.slow
def test_cli_image_and_labels(cli, tmp_path, t1):
    from medcli import io

    io.write(t1, tmp_path / "t1.nii.gz")
    io.write(_tissue_labels(4.0), tmp_path / "lab.nii.gz")
    write_transform(known_affine(), tmp_path / "a.mat")
    r = cli("register", "apply", tmp_path / "t1.nii.gz", "-t", tmp_path / "a.mat", "-r", tmp_path / "t1.nii.gz", "-o", tmp_path / "w.nii.gz", "-n", "lanczos")
    assert r.returncode == 0, r.stderr
    assert rel_diff(io.read(tmp_path / "w.nii.gz").data, warp(t1, [Step(known_affine())], t1, "lanczos").data) < 1e-6
    r = cli("register", "apply", tmp_path / "lab.nii.gz", "--labels", "-t", tmp_path / "a.mat", "-r", tmp_path / "t1.nii.gz", "-o", tmp_path / "l.nii.gz")
    assert r.returncode == 0, r.stderr
    assert set(np.unique(io.read(tmp_path / "l.nii.gz").data)) == {0, 1, 2}


def test_cli_bad_input_one_line(cli, tmp_path, t1_path):
    from medcli import io

    write_transform(known_affine(), tmp_path / "a.mat")
    flat = Image(np.ones((8, 8, 1), np.float32), np.eye(4))
    io.write(flat, tmp_path / "flat.nii.gz")
    cases = [
        (["-t", tmp_path / "none.mat", "-r", t1_path], "no such file"),
        (["-t", t1_path, "-r", t1_path], "not a displacement field"),  # an image is not a transform
        (["-t", tmp_path / "a.mat", "-r", tmp_path / "flat.nii.gz"], "3D image"),
        (["-t", tmp_path / "a.mat", "--labels", "-n", "lanczos", "-r", t1_path], "--interpolation"),
    ]
    for args, message in cases:
        r = cli("register", "apply", t1_path, *args, "-o", tmp_path / "out.nii.gz")
        err = r.stderr.decode().strip()
        assert r.returncode in (2, 3), err
        assert message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "out.nii.gz").exists()

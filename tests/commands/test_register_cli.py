"""``medcli register`` end to end: outputs, transforms readable back, exit codes, no partial output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcli import io
from medcli.image import Image


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 4 mm MNI T1 (fixed) and the same image shifted by 6 mm and rotated 4 degrees (moving)."""
    from scipy.spatial.transform import Rotation

    from medcli.register.transforms import AffineTransform, warp_image

    d = tmp_path_factory.mktemp("reg")
    t1 = io.read("sample:t1")
    fixed = t1.resample(4.0)
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("z", 4.0, degrees=True).as_matrix()
    m[:3, 3] = [6.0, 0.0, -2.0]
    io.write(fixed, d / "fixed.nii.gz")
    io.write(warp_image(t1, AffineTransform(m), fixed), d / "moving.nii.gz")
    return d, AffineTransform(m)


@pytest.mark.slow
def test_syn_run_writes_everything(pair, cli, tmp_path):
    d, B = pair
    out = tmp_path / "warped.nii.gz"
    r = cli(
        "register", d / "moving.nii.gz", "--fixed", d / "fixed.nii.gz", "-o", out, "--transform", tmp_path / "sub",
        "--stats", tmp_path / "s.json", "--qc", tmp_path / "qc.png", "--jacobian", tmp_path / "logjac.nii.gz",
        "--sidecar", "--threads", "1",
    )
    assert r.returncode == 0, r.stderr.decode()
    from medcli.register.transform_io import read_transform

    for name in ("sub_0GenericAffine.mat", "sub_1Warp.nii.gz", "sub_1InverseWarp.nii.gz", "qc.png", "logjac.nii.gz"):
        assert (tmp_path / name).stat().st_size > 0, name
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["metric"] == "ncc" and stats["metric_after"] > stats["metric_before"]
    assert stats["folded_fraction"] == 0.0
    affine = read_transform(tmp_path / "sub_0GenericAffine.mat")[0]
    # The written affine (plus a small warp) undoes the known rotation and shift: B . A close to identity.
    E = B.matrix @ affine.matrix
    p = np.array([[0.0, -18.0, 18.0], [40.0, 20.0, 30.0], [-50.0, -60.0, 0.0]])
    assert np.abs(E[:3, :3] @ p.T + E[:3, 3:] - p.T).max() < 1.5
    warped, fixed = io.read(out), io.read(d / "fixed.nii.gz")
    a, b = np.asarray(warped.data, float).ravel(), np.asarray(fixed.data, float).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.97
    side = json.loads((tmp_path / "warped.json").read_text())
    assert side["Registration"]["Type"] == "syn" and side["Seed"] == 0


def test_rigid_from_stdin_and_apply_subcommand(pair, cli, tmp_path):
    d, _ = pair
    data = (d / "moving.nii.gz").read_bytes()
    r = cli("register", "-", "--fixed", d / "fixed.nii.gz", "--type", "rigid", "-o", tmp_path / "w.nii.gz",
            "--transform", tmp_path / "r_", "--threads", "1", input=data)
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "r_0GenericAffine.mat").exists() and not (tmp_path / "r_1Warp.nii.gz").exists()
    r = cli("register", "apply", d / "moving.nii.gz", "-t", tmp_path / "r_0GenericAffine.mat", "-r", d / "fixed.nii.gz",
            "-o", tmp_path / "a.nii.gz")
    assert r.returncode == 0, r.stderr.decode()
    # register's own output and 'register apply' of its transform agree (both linear).
    w, a = io.read(tmp_path / "w.nii.gz").data, io.read(tmp_path / "a.nii.gz").data
    assert np.abs(np.asarray(w, float) - np.asarray(a, float)).mean() < 0.02 * np.abs(np.asarray(w, float)).mean()


def test_bad_inputs_exit_codes(pair, cli, tmp_path):
    d, _ = pair
    fixed = io.read(d / "fixed.nii.gz")
    io.write(Image(np.ones((5, 5, 5), np.uint8), np.eye(4)), tmp_path / "mask.nii.gz")
    io.write(Image(np.asarray(fixed.data)[:, :, 20:21], fixed.affine), tmp_path / "slice.nii.gz")
    out = tmp_path / "o.nii.gz"
    cases = [
        (("--mask", tmp_path / "mask.nii.gz"), 3, "does not match"),
        (("--fixed-mask", tmp_path / "mask.nii.gz"), 3, "does not match"),
        (("--fixed", tmp_path / "slice.nii.gz"), 3, "3D"),
        (("--type", "rigid", "--jacobian", tmp_path / "j.nii.gz"), 2, "--type syn"),
        (("--type", "bent"), 2, "--type"),
    ]
    for extra, code, msg in cases:
        args = ["register", d / "moving.nii.gz", "-o", out, "--transform", tmp_path / "t", "--threads", "1", *extra]
        if "--fixed" not in extra:
            args += ["--fixed", d / "fixed.nii.gz"]
        r = cli(*args)
        err = r.stderr.decode()
        assert r.returncode == code and msg in err, (extra, r.returncode, err)
        assert len(err.strip().splitlines()) == 1, err
        assert not out.exists() and not list(tmp_path.glob("t_*")), extra

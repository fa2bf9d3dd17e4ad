"""``medcli detect`` and ``medcli detect eval`` end to end: formats read back, bad input in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcli import io
from medcli.detect.findings import read_findings
from medcli.image import Image
from tests.conftest import run_cli
from tests.detect._phantoms import sphere_phantom


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    d = tmp_path_factory.mktemp("det")
    img, spheres = sphere_phantom()
    io.write(img, d / "ph.nii.gz")
    return d, img, spheres


@pytest.mark.slow
def test_detect_all_outputs(phantom):
    d, img, spheres = phantom
    r = run_cli("detect", d / "ph.nii.gz", "--task", "blob", "--threshold", "0.5", "-o", d / "f.json", "--mask-out", d / "lab.nii.gz",
                "--heatmap", d / "heat.nii.gz", "--qc", d / "qc.png", "--max-findings", "3")
    assert r.returncode == 0, r.stderr.decode()
    f = read_findings(d / "f.json")
    assert len(f) == 3 and f.image["sha256"] and f.image["shape"] == list(img.shape)
    for c, dia, _ in spheres:
        assert min(np.linalg.norm(x.center_ras - c) for x in f.items) < 1.0
    lab = io.read(d / "lab.nii.gz")
    assert np.allclose(lab.affine, img.affine) and set(np.unique(lab.data)) == {0, 1, 2, 3}
    assert io.read(d / "heat.nii.gz").shape == img.shape
    assert (d / "qc.png").read_bytes()[:4] == b"\x89PNG"
    for ext in ("csv", "mrk.json", "fcsv"):
        r = run_cli("detect", d / "ph.nii.gz", "--task", "blob", "--threshold", "0.5", "--max-findings", "3", "-o", d / f"f.{ext}")
        assert r.returncode == 0, r.stderr.decode()
        g = read_findings(d / f"f.{ext}")
        assert len(g) == 3
        assert np.allclose([x.center_ras for x in g.items], [x.center_ras for x in f.items], atol=1e-3)
    # Evaluation against the truth label map of the same grid: all three found.
    truth = np.zeros(img.shape, np.uint8)
    world = img.voxel_to_world(np.argwhere(np.ones(img.shape, bool))).reshape(img.shape + (3,))
    for i, (c, dia, _) in enumerate(spheres):
        truth[np.linalg.norm(world - c, axis=-1) <= dia / 2] = i + 1
    io.write(img.with_data(truth), d / "truth.nii.gz")
    r = run_cli("detect", "eval", d / "f.json", d / "truth.nii.gz")
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["n_lesions"] == 3 and rep["cpm"] == 1.0 and rep["froc"]["0.125"] == 1.0
    # A truth map on another grid is refused in one line.
    io.write(Image(truth, np.diag([2.0, 2.0, 2.0, 1.0])), d / "other.nii.gz")
    r = run_cli("detect", "eval", d / "f.json", d / "other.nii.gz")
    assert r.returncode == 3 and b"another space" in r.stderr and r.stderr.count(b"\n") == 1


def test_no_findings_writes_valid_empty_file(tmp_path):
    io.write(Image(np.full((20, 20, 20), 5.0, np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    r = run_cli("detect", tmp_path / "flat.nii.gz", "--task", "blob", "-o", tmp_path / "f.json")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["n_findings"] == 0 and doc["findings"] == []


def test_bad_input_one_line(tmp_path):
    io.write(Image(np.zeros((20, 20, 1), np.float32), np.eye(4)), tmp_path / "flat2d.nii.gz")
    r = run_cli("detect", tmp_path / "flat2d.nii.gz", "-o", tmp_path / "f.json")
    assert r.returncode == 3 and b"3D" in r.stderr and r.stderr.count(b"\n") == 1
    io.write(Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    io.write(Image(np.zeros((20, 20, 20), np.uint8), np.eye(4)), tmp_path / "empty.nii.gz")
    r = run_cli("detect", tmp_path / "v.nii.gz", "--mask", tmp_path / "empty.nii.gz", "-o", tmp_path / "f.json")
    assert r.returncode == 3 and b"empty" in r.stderr and r.stderr.count(b"\n") == 1
    r = run_cli("detect", tmp_path / "v.nii.gz", "--task", "blob", "--method", "learned", "-o", tmp_path / "f.json")
    assert r.returncode == 2 and b"no model for --task blob" in r.stderr and r.stderr.count(b"\n") == 1
    assert not (tmp_path / "f.json").exists()
    r = run_cli("detect", "eval", tmp_path / "nope.json")
    assert r.returncode == 2

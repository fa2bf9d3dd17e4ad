"""``medcli segment`` end to end: geometry, side outputs, batches, label selection, errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medcli import io
from medcli.image import Image


@pytest.fixture(scope="module")
def oblique_t1(tmp_path_factory):
    """The T1 at 3 mm (fast), with its axes permuted/flipped (PIL-like, not RAS) and a 12 degree oblique affine."""
    t1 = io.read("sample:t1")
    data = np.asarray(t1.data)[::3, ::3, ::3].astype(np.float32)
    data = np.ascontiguousarray(np.flip(np.transpose(data, (1, 0, 2)), axis=2))  # axes: A/P, R/L, S->I
    a = np.deg2rad(12)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.array([[0, -3.0, 0], [3.0, 0, 0], [0, 0, -3.0]])
    aff[:3, 3] = [97.3, -130.1, 80.7]
    path = tmp_path_factory.mktemp("oblique") / "sub-01_T1w.nii.gz"
    img = Image(data, aff)
    io.write(img, str(path))
    return path, img


def test_tissue_geometry_and_side_outputs(cli, tmp_path, oblique_t1):
    src, img = oblique_t1
    assert img.orientation not in ("RAS", "LPS")
    out = tmp_path / "tissue.nii.gz"
    r = cli(
        "segment", src, "--task", "tissue", "--method", "classical", "-o", out,
        "--stats", tmp_path / "{stem}.csv", "--probabilities", tmp_path / "p.nii.gz",
        "--labels-out", tmp_path / "t.txt", "--qc", tmp_path / "qc.png",
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""
    seg = io.read(str(out))
    assert seg.dtype == np.uint8
    assert np.abs(seg.affine - img.affine).max() < 1e-5
    assert seg.shape == img.shape
    lab = np.asarray(seg.data)
    assert set(np.unique(lab)) == {0, 1, 2, 3}
    assert ((lab > 0) == (img.data > 0)).mean() > 0.999  # tissue exactly where the stripped brain is
    # GM has a lower mean T1 intensity than WM, CSF lower still (named without assuming that)
    means = [img.data[lab == k].mean() for k in (1, 2, 3)]
    assert means[0] < means[1] < means[2]
    rows = list(csv.DictReader(open(tmp_path / "sub-01_T1w.csv")))
    vox_ml = 27.0 / 1000
    for row in rows:
        assert int(row["voxels"]) == int((lab == int(row["label"])).sum())
        assert float(row["volume_ml"]) == pytest.approx(int(row["voxels"]) * vox_ml, abs=1e-3)
        assert float(row["intracranial_volume_ml"]) == pytest.approx((lab > 0).sum() * vox_ml, rel=1e-3)
    probs = io.read(str(tmp_path / "p.nii.gz"))
    assert probs.shape == img.shape + (3,) and probs.dtype == np.float32
    assert np.abs(probs.affine - img.affine).max() < 1e-5
    assert np.array_equal(np.argmax(probs.data, -1)[lab > 0] + 1, lab[lab > 0]) or (
        (np.argmax(probs.data, -1)[lab > 0] + 1 == lab[lab > 0]).mean() > 0.99  # islands merged by post-processing
    )
    assert (tmp_path / "qc.png").read_bytes()[:4] == b"\x89PNG"
    assert '"GM"' in (tmp_path / "t.txt").read_text()


def test_labels_selection(cli, tmp_path, oblique_t1):
    src, _ = oblique_t1
    out = tmp_path / "gm.nii.gz"
    r = cli("segment", src, "--task", "tissue", "--labels", "GM", "-o", out, "--stats", tmp_path / "s.json", "--no-postprocess")
    assert r.returncode == 0, r.stderr.decode()
    assert set(np.unique(io.read(str(out)).data)) == {0, 2}
    doc = json.loads((tmp_path / "s.json").read_text())
    assert [row["name"] for row in doc["labels"]] == ["GM"]


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--task", "liver"], 2, b"--task must be one of"),
        (["--method", "learned"], 2, b"--method"),
        (["--task", "tissue", "--labels-out", "x.xml"], 2, b"ITK-SNAP"),
        (["--task", "tissue", "--labels", "bone"], 2, b"known: 1=CSF"),
        (["--task", "tissue", "--qc", "qc.jpg"], 2, b".png"),
        (["--task", "ct-body"], 3, b"Hounsfield"),
        (["--task", "tissue", "--stats", "-", "-o", "-"], 2, b"stdout"),
    ],
)
def test_errors_are_one_line(cli, tmp_path, args, code, message):
    r = cli("segment", "sample:t1", "-o", tmp_path / "o.nii.gz", *args, cwd=tmp_path)
    assert r.returncode == code, r.stderr.decode()
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.nii.gz").exists()


def test_help_is_light():
    import subprocess
    import sys

    code = "import sys, medcli.commands.segment as m; m.cli.click_command(); print(sorted({'torch','scipy','SimpleITK'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def tiny_tissue_model(tmp_path_factory):
    """A user model in the hub's format (model.safetensors + spec.json), as `medcli train` writes it."""
    torch = pytest.importorskip("torch")
    from medcli.engine.architectures import build
    from medcli.models import hub

    spec = {
        "name": "tiny-tissue", "version": "0", "task": "tissue-segmentation", "architecture": "unet", "licence": "test",
        "params": {"dim": 3, "in_channels": 1, "out_channels": 4, "features": [4, 8], "norm": "instance"},
        "labels": {"0": "background", "1": "CSF", "2": "GM", "3": "WM"},
        "input": {"normalisation": {"method": "minmax", "low": 0.5, "high": 99.5}, "divisible_by": 4},
    }
    torch.manual_seed(0)
    net = build(spec)
    return hub.save_user_model(tmp_path_factory.mktemp("models") / "tiny", spec, net.state_dict())


def test_learned_batch_loads_model_once(cli, tmp_path, oblique_t1, tiny_tissue_model):
    src, img = oblique_t1
    small = Image(np.asarray(img.data)[5:37, 5:45, 5:37], img.affine)  # a crop keeps the test fast
    (tmp_path / "out").mkdir()
    for name in ("a", "b", "c"):
        io.write(small, str(tmp_path / f"{name}.nii.gz"))
    r = cli(
        "segment", *(tmp_path / f"{n}.nii.gz" for n in "abc"), "--task", "tissue", "--method", "learned",
        "--model", tiny_tissue_model, "-o", tmp_path / "out" / "{stem}_seg.nii.gz", "--stats", tmp_path / "out" / "{stem}.json", "-v",
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr.decode().count("loading tissue model") == 1
    for n in "abc":
        lab = io.read(str(tmp_path / "out" / f"{n}_seg.nii.gz")).data
        inside = small.data > 0
        assert (lab[~inside] == 0).all() and (lab[inside] > 0).all() and lab.max() <= 3
        doc = json.loads((tmp_path / "out" / f"{n}.json").read_text())
        assert doc["model"] == str(tiny_tissue_model) and len(doc["model_sha256"]) == 64


@pytest.mark.slow
def test_brain_mask_masked_image_and_stats(cli, tmp_path, t1):
    r = cli("segment", "sample:t1", "-o", tmp_path / "mask.nii.gz", "--masked", tmp_path / "brain.nii.gz",
            "--stats", tmp_path / "b.json", "--qc", tmp_path / "b.png")
    assert r.returncode == 0, r.stderr.decode()
    mask = io.read(str(tmp_path / "mask.nii.gz")).data
    brain = io.read(str(tmp_path / "brain.nii.gz")).data
    assert set(np.unique(mask)) == {0, 1}
    src = np.asarray(t1.data)
    assert (brain[mask == 0] == 0).all() and np.array_equal(brain[mask == 1], src[mask == 1])
    ref = src > 0  # the bundled T1 is skull-stripped: the brain is its non-zero region
    dice = 2 * (ref & (mask > 0)).sum() / (ref.sum() + (mask > 0).sum())
    assert dice > 0.95
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["intracranial_voxels"] == int(mask.sum()) and doc["model"] == "deepbet"
    assert len(doc["model_sha256"]) == 64


@pytest.mark.slow
def test_tissue_1mm_dice(t1):
    """The bundled 1 mm T1 against its own GM/WM maps (measured CSF/GM/WM 0.872 / 0.959 / 0.961, tests/benchmarks/results/segment.md)."""
    from medcli.segment.tissue import segment_tissue

    gm = io.read("sample:gm").data / 255.0
    wm = io.read("sample:wm").data / 255.0
    brain = np.asarray(t1.data) > 0
    ref = (np.argmax(np.stack([np.clip(1 - gm - wm, 0, 1), gm, wm]), 0) + 1) * brain
    lab = segment_tissue(t1)[0].data
    d = [2 * ((lab == k) & (ref == k)).sum() / ((lab == k).sum() + (ref == k).sum()) for k in (1, 2, 3)]
    assert d[1] > 0.93 and d[2] > 0.93 and d[0] > 0.80, d


def test_stats_to_stdout_is_the_only_stdout(cli, tmp_path):
    r = cli("segment", "sample:ct", "--task", "ct-body", "-o", tmp_path / "body.nii.gz", "--stats", "-")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    body = io.read(str(tmp_path / "body.nii.gz")).data
    assert doc["labels"][0]["voxels"] == int(body.sum()) and "intracranial_volume_ml" not in doc

"""The learned detector's parts: training targets (partial labels), focal loss, peaks -> world findings, a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcli.detect.learned import peaks_to_findings
from medcli.train.detection import detection_sample, focal_loss


def test_targets_and_unlabelled_lesions_are_masked():
    torch = pytest.importorskip("torch")
    seed = [3, 1]
    full = detection_sample(np.random.default_rng(seed), patch=32, contrasts=("t1",), thick_prob=0.0)
    half = detection_sample(np.random.default_rng(seed), patch=32, contrasts=("t1",), unlabelled=1.0, thick_prob=0.0)
    inside = full["x"][1] > 0
    n_centres = int((full["heat"] >= 1.0).sum())
    assert n_centres >= 1
    assert full["weight"][inside].min() == 1.0  # every search voxel taught when all lesions are labelled
    # Sizes taught only near centres, and they are the log of a plausible lesion size (2-40 mm box).
    sel = full["size_w"] > 0
    assert sel.any() and np.all(np.exp(full["size"][3][sel]) * 10 > 1.0) and np.all(np.exp(full["size"][3][sel]) * 10 < 60)
    # Every lesion unlabelled: no centre, nothing taught about sizes, and a hole in the loss around each lesion.
    assert (half["heat"] >= 1.0).sum() == 0 and half["size_w"].sum() == 0
    assert (half["weight"][half["x"][1] > 0] == 0).sum() > 0
    # In the loss, a masked region is neither lesion nor background: its predictions change nothing.
    heat, w = torch.zeros(1, 8, 8, 8), torch.ones(1, 8, 8, 8)
    heat[0, 4, 4, 4] = 1.0
    w[0, :2] = 0.0
    a, b = torch.full((1, 8, 8, 8), -3.0), torch.full((1, 8, 8, 8), -3.0)
    b[0, :2] = 5.0
    assert float(focal_loss(a, heat, w)) == pytest.approx(float(focal_loss(b, heat, w)))
    c = a.clone()
    c[0, 3] = 5.0  # the same confident "centres" where the loss is taught: penalised
    assert float(focal_loss(c, heat, w)) > float(focal_loss(a, heat, w)) + 1.0


def test_peaks_to_world_findings_on_an_oblique_grid():
    rot = np.array([[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([2.0, 2.0, 3.0])
    affine[:3, 3] = [-40.0, 12.0, 7.5]
    shape = (30, 30, 20)
    grid = np.indices(shape).astype(float)
    heat = np.zeros(shape, np.float32)
    for c, amp in (((8, 9, 6), 0.9), ((20, 18, 12), 0.6), ((21, 18, 12), 0.55)):
        heat = np.maximum(heat, amp * np.exp(-0.5 * ((grid - np.array(c)[:, None, None, None]) ** 2).sum(0)))
    sizes = np.full((4,) + shape, 8.0, np.float32)
    found = peaks_to_findings(heat, sizes, np.ones(shape, bool), affine, floor=0.3)
    # The two close peaks (2 mm apart, 8 mm lesions) are one finding; best first.
    assert [round(f.score, 2) for f in found] == [0.9, 0.6]
    expect = affine[:3, :3] @ np.array([8.0, 9.0, 6.0]) + affine[:3, 3]
    assert np.abs(found[0].center_ras - expect).max() < 0.01
    f = found[0]
    assert np.all(f.box_ras[:3] < f.center_ras) and np.all(f.box_ras[3:] > f.center_ras)
    # The box along the oblique axes, then its world extent: wider than 8 mm in x and y, 8 mm in z.
    size = f.box_ras[3:] - f.box_ras[:3]
    assert size[2] == pytest.approx(8.0) and size[0] == pytest.approx(8.0 * (0.96 + 0.28), abs=1e-6)
    assert f.diameter_mm == pytest.approx(8.0)
    assert peaks_to_findings(heat, sizes, np.zeros(shape, bool), affine, floor=0.3) == []


@pytest.mark.slow
def test_tiny_detection_training_run_and_resume(tmp_path):
    pytest.importorskip("torch")
    from medcli.train.engine import load_recipe, train

    over = ["train.steps=2", "train.batch=1", "data.settings.patch=16", "train.validate_every=0", "train.checkpoint_every=1",
            "model.params.widths=[4, 8]", "model.params.head=4", f"output.dir={tmp_path / 'run'}"]
    out = train(load_recipe("recipes/detect_lesion.toml", over))
    spec = json.loads((out / "spec.json").read_text())
    assert spec["task"] == "detection" and spec["architecture"] == "centernet3d"
    assert (out / "model.safetensors").stat().st_size > 0
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and all(np.isfinite(float(r.split(",")[1])) for r in rows[1:])
    # The shared loop logs the loss's parts (heatmap, sizes) as columns.
    assert rows[0].split(",")[:4] == ["step", "loss", "heat", "size"]
    assert all(float(r.split(",")[2]) > 0 for r in rows[1:])
    # Resumed to more steps from the checkpoint.
    out = train(load_recipe("recipes/detect_lesion.toml", over[1:] + ["train.steps=3"]), resume=True)
    assert len((out / "log.csv").read_text().splitlines()) == 4

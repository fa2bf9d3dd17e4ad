"""Side outputs of segment: label tables, statistics, QC picture, label selection."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from medcli.errors import UsageError
from medcli.image import Image
from medcli.segment import outputs


def test_itksnap_table():
    text = outputs.label_table(outputs.LABELS["tissue"], "t.txt")
    rows = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert rows[0][:7] == ["0", "0", "0", "0", "0", "0", "0"] and "Clear" in rows[0][7]
    assert rows[1] == ["1", "60", "60", "255", "1", "1", "1", '"CSF"']
    assert [r[-1] for r in rows] == ['"Clear', '"CSF"', '"GM"', '"WM"'] or [r[0] for r in rows] == ["0", "1", "2", "3"]


def test_slicer_table():
    text = outputs.label_table(outputs.LABELS["ct-fat"], "fat.ctbl")
    lines = text.splitlines()
    assert lines[0].startswith("# Color table")
    assert lines[2:] == ["0 background 0 0 0 0", "1 subcutaneous_fat 255 230 0 255", "2 visceral_fat 255 90 0 255"]


def test_json_table():
    doc = json.loads(outputs.label_table(outputs.LABELS["ct-lungs"], "l.json"))
    assert doc["labels"][1] == {"value": 1, "name": "right lung", "color": [40, 200, 255]}


def test_table_bad_extension():
    with pytest.raises(UsageError, match="ITK-SNAP"):
        outputs.label_table(outputs.LABELS["brain"], "labels.xml")


def test_stats_volumes_are_counts_times_voxel_volume():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (20, 30, 10)).astype(np.uint8)
    # oblique, anisotropic voxels: 0.8 x 1.2 x 3 mm
    rot = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.8, 1.2, 3.0])
    img = Image(labels, aff)
    brain = labels > 0
    doc = outputs.statistics(img, outputs.LABELS["tissue"], brain=brain, model="m", sha256="ab" * 32)
    vox_ml = 0.8 * 1.2 * 3.0 / 1000
    for row in doc["labels"]:
        n = int((labels == row["label"]).sum())
        assert row["voxels"] == n
        assert row["volume_ml"] == pytest.approx(n * vox_ml, abs=1e-4)
    assert doc["intracranial_volume_ml"] == pytest.approx(brain.sum() * vox_ml, abs=1e-4)
    assert doc["model_sha256"] == "ab" * 32
    rows = list(csv.DictReader(io.StringIO(outputs.stats_text(doc, "s.csv"))))
    assert [r["name"] for r in rows] == ["CSF", "GM", "WM"]
    assert float(rows[1]["volume_ml"]) == pytest.approx((labels == 2).sum() * vox_ml, abs=1e-4)
    assert json.loads(outputs.stats_text(doc, "s.json"))["labels"][2]["voxels"] == int((labels == 3).sum())
    assert rows[0]["contrast"] == "" and rows[0]["warnings"] == ""
    doc.update(contrast={"label": "MR T2-like", "confidence": 0.9}, warnings=["mask volume 2.4 L", "mask on the border"])
    rows = list(csv.DictReader(io.StringIO(outputs.stats_text(doc, "s.csv"))))
    assert {r["contrast"] for r in rows} == {"MR T2-like"} and rows[0]["warnings"] == "mask volume 2.4 L; mask on the border"


def test_qc_png_has_views_overlay_and_legend(t1):
    from PIL import Image as PILImage

    data = np.asarray(t1.data)[::2, ::2, ::2]  # 2 mm: the picture is the same size, the test 8x faster
    aff = t1.affine.copy()
    aff[:3, :3] *= 2
    t1 = Image(data, aff)
    labels = np.zeros(data.shape, np.uint8)
    labels[(data > 0) & (data < 130)] = 1
    labels[(data >= 130) & (data < 195)] = 2
    labels[data >= 195] = 3
    png = outputs.qc_png(t1, Image(labels, t1.affine), outputs.LABELS["tissue"], title="tissue")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pic = np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert pic.shape[0] >= 256 and pic.shape[1] > 3 * 200  # three views side by side + legend
    for value, (_, colour) in outputs.LABELS["tissue"].items():
        exact = (np.abs(pic - np.asarray(colour)).sum(axis=-1) == 0).sum()
        assert exact > 50, value  # outlines and legend swatch in the label's colour
    grey = (pic[..., 0] == pic[..., 1]) & (pic[..., 1] == pic[..., 2])
    assert (~grey).mean() > 0.1  # a coloured overlay covers a good part of the picture
    assert len(np.unique(pic.reshape(-1, 3), axis=0)) > 200  # image detail, not flat colours


def test_qc_single_ct_slice():
    from PIL import Image as PILImage

    hu = np.full((64, 64, 1), -1000.0, np.float32)
    hu[10:50, 10:50] = 40
    lab = (hu > -500).astype(np.uint8)
    png = outputs.qc_png(Image(hu, np.eye(4)), Image(lab, np.eye(4)), outputs.LABELS["ct-body"], ct=True)
    pic = PILImage.open(io.BytesIO(png))
    assert pic.height >= 256  # only the axial view: a single slice has no coronal/sagittal


def test_parse_labels():
    table = outputs.LABELS["tissue"]
    assert outputs.parse_labels("2,3", table) == [2, 3]
    assert outputs.parse_labels("wm, GM", table) == [2, 3]
    assert outputs.parse_labels(None, table) is None
    with pytest.raises(UsageError, match="known: 1=CSF"):
        outputs.parse_labels("4", table)


def test_probabilities_channels():
    probs = Image(np.random.default_rng(0).random((4, 5, 6, 3)).astype(np.float32), np.eye(4))
    out = outputs.probabilities_image(probs, [2, 3])
    assert out.shape == (4, 5, 6, 2) and np.array_equal(out.data[..., 0], probs.data[..., 1])

"""Findings files: every format written and read back, in world mm; empty files are valid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcli.detect.findings import Finding, Findings, format_findings, parse_findings, read_findings
from medcli.errors import InputError
from medcli.io.points import read_points


def sample() -> Findings:
    a = Finding([10.5, -20.25, 30.0], [6.5, -24.0, 26.0, 14.5, -16.5, 34.0], 8.1, 0.875, 0.278, "bright", [3.0, 4.5, 6.0])
    b = Finding([-40.0, 5.0, -12.5], [-43.0, 2.0, -15.5, -37.0, 8.0, -9.5], 6.0, 0.5, 0.11, "dark", [1.0, 2.0, 3.0])
    return Findings([a, b], {"name": "x.nii.gz", "shape": [10, 10, 10], "affine": np.eye(4).tolist(), "sha256": "0" * 64},
                    task="blob", method="log", threshold=0.3)


@pytest.mark.parametrize("fmt", ["json", "csv", "mrk.json", "fcsv"])
def test_round_trip(tmp_path, fmt):
    f = sample()
    p = tmp_path / f"f.{fmt}"
    p.write_text(format_findings(f, fmt, series="x"))
    g = read_findings(p)
    assert len(g) == 2
    for a, b in zip(f.items, g.items):
        assert np.allclose(a.center_ras, b.center_ras, atol=1e-3)
        if fmt in ("json", "mrk.json"):
            assert np.allclose(a.box_ras, b.box_ras, atol=1e-3)
        if fmt in ("json", "csv"):
            assert b.diameter_mm == pytest.approx(a.diameter_mm, abs=1e-3)
        if fmt != "mrk.json":
            assert b.score == pytest.approx(a.score, abs=1e-5)


def test_json_schema_fields():
    doc = json.loads(format_findings(sample(), "json"))
    assert doc["schema"] == "medcli.findings/1" and doc["n_findings"] == 2
    it = doc["findings"][0]
    for key in ("id", "center_ras_mm", "center_lps_mm", "box_ras_mm", "size_mm", "diameter_mm", "volume_ml", "score", "label", "voxel_ijk"):
        assert key in it
    assert it["center_lps_mm"] == [-10.5, 20.25, 30.0]
    assert it["size_mm"] == [8.0, 7.5, 8.0]


def test_csv_is_luna16_lps():
    text = format_findings(sample(), "csv", series="1.2.3")
    lines = text.splitlines()
    assert lines[0] == "seriesuid,coordX,coordY,coordZ,probability,diameter_mm"
    assert lines[1].startswith("1.2.3,-10.5,20.25,30.0,0.875,")


def test_slicer_roi_and_fcsv(tmp_path):
    doc = json.loads(format_findings(sample(), "mrk.json"))
    m = doc["markups"][0]
    assert m["type"] == "ROI" and m["roiType"] == "Box" and m["coordinateSystem"] == "LPS"
    assert m["center"] == [-10.5, 20.25, 30.0] and m["size"] == [8.0, 7.5, 8.0]
    p = tmp_path / "c.fcsv"
    p.write_text(format_findings(sample(), "fcsv"))
    pts = read_points(p)  # a plain Slicer point list for medcli.io.points too
    assert np.allclose(pts.ras[1], [-40.0, 5.0, -12.5])


@pytest.mark.parametrize("fmt", ["json", "csv", "mrk.json", "fcsv"])
def test_empty_findings_are_valid_files(tmp_path, fmt):
    p = tmp_path / f"e.{fmt}"
    p.write_text(format_findings(Findings([]), fmt))
    assert len(read_findings(p)) == 0


def test_luna_annotations_read_as_truth():
    g = parse_findings("seriesuid,coordX,coordY,coordZ,diameter_mm\ns1,-10,20,30,8\n", "csv")
    assert g.items[0].series == "s1" and np.allclose(g.items[0].center_ras, [10, -20, 30]) and g.items[0].diameter_mm == 8


def test_bad_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"a": 1}')
    with pytest.raises(InputError, match="findings"):
        read_findings(p)
    with pytest.raises(InputError, match="extension"):
        read_findings(tmp_path / "x.txt")

"""Point files: Slicer .fcsv (v5 and legacy), .mrk.json, medcli .json and .csv."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcli.errors import InputError, ProcessingError
from medcli.io.points import (
    Points,
    format_points,
    parse_points,
    read_points,
    write_points,
)
from tests.conftest import DATA

AFIDS = DATA / "afids-MNI152NLin2009bAsym.fcsv"
FORMATS = ["fcsv", "mrk.json", "json", "csv"]


@pytest.fixture(scope="module")
def afids() -> Points:
    return read_points(AFIDS)


def test_legacy_fcsv_read_as_ras(afids):
    # The bundled AFIDs file is Slicer 4.6 with CoordinateSystem = 0 (RAS): AC is at the origin's front.
    assert len(afids) == 32
    assert afids.labels[0] == "1" and afids.descriptions[0] == "AC" and afids.descriptions[1] == "PC"
    np.testing.assert_allclose(afids.ras[0], [-0.204861407692308, 2.72288076923077, -4.88105282051282])
    # PC is posterior to AC in RAS (y smaller), whatever the file's convention was.
    assert afids.ras[1, 1] < afids.ras[0, 1] - 20


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_format_identical(afids, fmt, tmp_path):
    dest = tmp_path / f"afids.{fmt}"
    write_points(afids, dest)
    back = read_points(dest)
    np.testing.assert_array_equal(back.ras, afids.ras)
    assert back.labels == afids.labels and back.descriptions == afids.descriptions


def test_chain_through_all_formats(afids, tmp_path):
    p = afids
    for fmt in FORMATS * 2:
        dest = tmp_path / f"x.{fmt}"
        write_points(p, dest, force=True)
        p = read_points(dest)
    np.testing.assert_array_equal(p.ras, afids.ras)


def test_fcsv_written_as_slicer5(afids):
    lines = format_points(afids, "fcsv").splitlines()
    assert lines[0].startswith("# Markups fiducial file version = 5.")
    assert lines[1] == "# CoordinateSystem = LPS"
    assert lines[2] == "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"
    cells = lines[3].split(",")
    assert len(cells) == 14 and cells[11] == "1" and cells[12] == "AC"
    # LPS: x and y negated, z kept
    assert float(cells[1]) == -afids.ras[0, 0] and float(cells[2]) == -afids.ras[0, 1] and float(cells[3]) == afids.ras[0, 2]


@pytest.mark.parametrize("header", ["1", "LPS"])
def test_fcsv_lps_headers(header):
    text = f"# Markups fiducial file version = 4.11\n# CoordinateSystem = {header}\n" "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n" "a,10,20,30,0,0,0,1,1,1,0,\"P, 1\",\"say \"\"hi\"\"\",\n"
    p = parse_points(text, "fcsv")
    np.testing.assert_array_equal(p.ras, [[-10, -20, 30]])
    assert p.labels == ["P, 1"] and p.descriptions == ['say "hi"']
    # a quoted label survives our own writer too
    assert parse_points(format_points(p, "fcsv"), "fcsv").labels == ["P, 1"]


def test_fcsv_ijk_refused():
    text = "# CoordinateSystem = 2\n1,1,2,3,0,0,0,1,1,1,0,a,,\n"
    with pytest.raises(InputError, match="IJK"):
        parse_points(text, "fcsv")


def test_markups_json_schema_fields(afids):
    doc = json.loads(format_points(afids, "mrk.json"))
    m = doc["markups"][0]
    assert doc["@schema"].endswith("markups-schema-v1.0.3.json#")
    assert m["type"] == "Fiducial" and m["coordinateSystem"] == "LPS" and m["coordinateUnits"] == "mm"
    cp = m["controlPoints"][0]
    assert cp["label"] == "1" and cp["description"] == "AC" and cp["positionStatus"] == "defined"
    np.testing.assert_array_equal(cp["position"], afids.lps[0])


def test_markups_json_ras_and_missing():
    doc = {"markups": [{"type": "Fiducial", "coordinateSystem": "RAS", "controlPoints": [
        {"label": "A", "position": [1, 2, 3]},
        {"label": "B", "position": [0, 0, 0], "positionStatus": "missing"},
    ]}]}
    p = parse_points(json.dumps(doc), "mrk.json")
    np.testing.assert_array_equal(p.ras[0], [1, 2, 3])
    assert p.missing.tolist() == [False, True]
    again = parse_points(format_points(p, "mrk.json"), "mrk.json")
    assert again.missing.tolist() == [False, True] and again.labels == ["A", "B"]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_confidence_and_both_systems(fmt):
    p = Points(np.array([[1.5, -2.0, 3.25], [np.nan] * 3]), ["a", "b"], ["x", ""], np.array([0.9, np.nan]))
    text = format_points(p, fmt)
    back = parse_points(text, fmt)
    np.testing.assert_array_equal(back.ras, p.ras)
    assert back.confidences[0] == 0.9 and np.isnan(back.confidences[1])
    if fmt == "json":
        item = json.loads(text)["points"][0]
        assert item["ras"] == [1.5, -2.0, 3.25] and item["lps"] == [-1.5, 2.0, 3.25]
    else:
        assert text.splitlines()[0] == "label,ras_x,ras_y,ras_z,lps_x,lps_y,lps_z,confidence,description"


def test_csv_lps_only_columns():
    p = parse_points("label,lps_x,lps_y,lps_z\nAC,1,2,3\n", "csv")
    np.testing.assert_array_equal(p.ras, [[-1, -2, 3]])


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_points(tmp_path / "none.fcsv")
    (tmp_path / "p.txt").write_text("1,2,3")
    with pytest.raises(InputError, match="extension"):
        read_points(tmp_path / "p.txt")
    with pytest.raises(InputError, match="ras_x"):
        parse_points("x,y,z\n1,2,3\n", "csv")
    with pytest.raises(InputError, match="malformed"):
        parse_points("# CoordinateSystem = LPS\n1,abc,2,3\n", "fcsv")
    with pytest.raises(InputError, match="no points"):
        parse_points("# CoordinateSystem = LPS\n", "fcsv")


def test_write_is_atomic_and_no_clobber(afids, tmp_path):
    dest = tmp_path / "a.fcsv"
    dest.write_text("keep")
    with pytest.raises(ProcessingError, match="exists"):
        write_points(afids, dest)
    assert dest.read_text() == "keep"
    assert [f.name for f in tmp_path.iterdir()] == ["a.fcsv"]

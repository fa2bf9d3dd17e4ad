"""medcli info: header facts on real files, JSON output, DICOM series listing."""

import json

import numpy as np
from dicomgen import oblique_affine, write_series


def test_info_json_on_bundled_t1(cli):
    r = cli("info", "sample:t1", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["shape"] == [197, 233, 189]
    assert doc["voxel_size_mm"] == [1.0, 1.0, 1.0]
    assert doc["orientation"] == "RAS"
    assert doc["min"] == 0 and doc["max"] == 255
    assert doc["affine"][0][3] == -98.0


def test_info_lists_several_dicom_series(cli, tmp_path):
    vol = (np.arange(8 * 9 * 4).reshape(8, 9, 4) % 200).astype(np.int16)
    aff = oblique_affine()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_series(tmp_path / "a", vol, aff, series_number=3, description="T1 axial", series_uid="1.2.3.3")
    write_series(tmp_path / "b", vol, aff, series_number=7, description="FLAIR", series_uid="1.2.3.7")
    r = cli("info", tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "2 DICOM series" in out and "T1 axial" in out and "FLAIR" in out and "1.2.3.7" in out
    r = cli("info", tmp_path, "--series", "7", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["shape"] == [8, 9, 4]
    np.testing.assert_allclose(np.array(doc["affine"]), aff, atol=1e-5)


def test_info_recognises_contrast_of_the_bundled_images(cli):
    r = cli("info", "sample:t1", "sample:ct", "--json")
    assert r.returncode == 0, r.stderr
    t1, ct = json.loads(r.stdout)
    assert (t1["contrast"]["contrast"], t1["contrast"]["skull"]) == ("t1", False), t1["contrast"]
    assert t1["contrast"]["confidence"] > 0.5
    assert ct["contrast"]["modality"] == "CT", ct["contrast"]
    r = cli("info", "sample:t1")
    assert "contrast     MR T1-like (" in r.stdout.decode()
    r = cli("info", "sample:t1", "--header-only", "--json")
    assert "contrast" not in json.loads(r.stdout)

"""report --dicom-sr: a TID 1500 measurement report of a DICOM series (an oblique, anisotropic series of the
real MNI T1 written with pydicom), read back with highdicom: evidence, frame of reference, coordinates, values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcli import io
from medcli.io.points import Points, write_points
from tests.dicomgen import oblique_affine, t1_block, write_series

hd = pytest.importorskip("highdicom", reason="highdicom (test extra) writes and reads DICOM SR")


def test_dicom_sr_round_trip(cli, scan_inputs, tmp_path):
    import pydicom

    t1 = io.read(str(scan_inputs["t1"]))
    series = tmp_path / "series"
    series.mkdir()
    write_series(series, t1_block(t1), oblique_affine())
    img = io.read(str(series))
    lab = img.with_data((np.asarray(img.data) > np.percentile(img.data, 60)).astype(np.uint8))
    io.write(lab, str(tmp_path / "lab.nii.gz"))
    ras = img.voxel_to_world(np.array([[30.0, 30.0, 10.0], [10.0, 50.0, 5.0]]))
    write_points(Points(ras, ["AC", "PC"], ["anterior commissure", "posterior commissure"]), tmp_path / "pts.fcsv")
    r = cli("report", str(series), "--with", str(tmp_path / "lab.nii.gz"), "--with", str(tmp_path / "pts.fcsv"),
            "-o", str(tmp_path / "r.json"), "--dicom-sr", str(tmp_path / "sr.dcm"))
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads((tmp_path / "r.json").read_text())
    ds = pydicom.dcmread(tmp_path / "sr.dcm")
    src = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.StudyInstanceUID == src.StudyInstanceUID
    refs = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == src.SeriesInstanceUID and len(refs.ReferencedSOPSequence) == len(list(series.iterdir()))
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    rois = sr.content.get_volumetric_roi_measurement_groups()
    assert len(rois) == 2
    for g, p in zip(rois, ras):
        assert g.roi.frame_of_reference_uid == src.FrameOfReferenceUID
        # DICOM patient coordinates are LPS: x and y negated; FL values hold ~1e-5 relative precision.
        assert np.allclose(g.roi.graphic_data[0], [-p[0], -p[1], p[2]], atol=0.01)
    groups = sr.content.get_image_measurement_groups()
    got = {g.finding_type.meaning: g.get_measurements()[0].value for g in groups}
    want = {r["name"]: r["volume_ml"] for r in doc["volumes"]["labels"]}
    want["intracranial volume"] = doc["volumes"]["intracranial_volume_ml"]  # a one-label map reads as a brain mask
    assert want["intracranial volume"] == pytest.approx(np.count_nonzero(lab.data) * np.prod(img.spacing) / 1000, abs=0.01)
    assert got == pytest.approx(want)


def test_dicom_sr_needs_dicom(cli, scan_inputs, tmp_path):
    r = cli("report", str(scan_inputs["t1"]), "-o", str(tmp_path / "r.json"), "--dicom-sr", str(tmp_path / "sr.dcm"))
    assert r.returncode == 3 and "needs a DICOM series" in r.stderr.decode()
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "sr.dcm").exists()

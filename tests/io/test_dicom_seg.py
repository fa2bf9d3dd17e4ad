"""DICOM SEG of a label map (``segment --dicom-seg``), read back with pydicom and highdicom.

Sources are real MNI T1 anatomy written as DICOM with an oblique, anisotropic
geometry (one file per slice, shuffled; and one enhanced multi-frame file with
shuffled frames). The SEG's pixels, mapped through its own plane positions,
orientation and pixel spacing to world coordinates, must land on exactly the
label map's voxels of each label (to 1e-3 mm); every frame must reference the
source image at its position; study, series and frame of reference must be the
source's.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest

from medcli import io
from medcli.errors import ProcessingError
from medcli.segment.outputs import LABELS
from tests.dicomgen import oblique_affine, t1_block, write_enhanced, write_series

hd = pytest.importorskip("highdicom", reason="highdicom (test extra) writes and reads DICOM SEG")
pydicom = pytest.importorskip("pydicom")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """An oblique series of the MNI T1 (24 shuffled files), the image read from it, and a 3-class label map on it."""
    d = tmp_path_factory.mktemp("seg_series")
    t1 = io.read("sample:t1")
    write_series(d / "s", t1_block(t1), oblique_affine())
    img = io.read(str(d / "s"))
    v = np.asarray(img.data)
    lab = np.zeros(img.shape, np.uint8)
    for value, q in ((1, 40), (2, 70), (3, 90)):
        lab[v > np.percentile(v, q)] = value
    return d, img, img.with_data(lab)


def seg_voxels(ds, labels) -> dict[int, np.ndarray]:
    """segment number -> the label map's voxel indices (sorted) that the SEG's pixels of that segment lie on.

    Independent of the writer: each pixel goes to world coordinates (LPS -> RAS) through the SEG's own
    geometry, then to voxel indices through the label map's affine; it must lie within 1e-3 mm of a voxel centre.
    """
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    ps = np.array(shared.PixelMeasuresSequence[0].PixelSpacing, float)
    inv = np.linalg.inv(labels.affine)
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    out: dict[int, list] = {}
    for fg, px in zip(ds.PerFrameFunctionalGroupsSequence, frames):
        ident = fg if "SegmentIdentificationSequence" in fg else shared  # one segment: in the shared group
        number = int(ident.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        ipp = np.array(fg.PlanePositionSequence[0].ImagePositionPatient, float)
        r, c = np.nonzero(px)
        lps = ipp + c[:, None] * ps[1] * iop[:3] + r[:, None] * ps[0] * iop[3:]
        ras = lps * [-1, -1, 1]
        vox = ras @ inv[:3, :3].T + inv[:3, 3]
        idx = np.rint(vox)
        mm = np.abs((vox - idx) * labels.spacing[:3]).max() if len(vox) else 0.0
        assert mm < 1e-3, f"segment {number}: a pixel lies {mm:.2g} mm from a voxel centre"
        out.setdefault(number, []).append(idx.astype(int))
    return {k: np.unique(np.concatenate(v), axis=0) for k, v in out.items()}


def want_voxels(labels, value) -> np.ndarray:
    return np.unique(np.argwhere(np.asarray(labels.data) == value), axis=0)


def test_seg_of_a_series_round_trip(series):
    from medcli.io.dicom_seg import seg_bytes

    d, img, lab = series
    ds = pydicom.dcmread(BytesIO(seg_bytes(lab, LABELS["tissue"], str(d / "s"), img.meta["dicom"]["series_uid"], algorithm="tissue")))
    sources = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in (d / "s").iterdir()}
    src = next(iter(sources.values()))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID and ds.StudyInstanceUID == src.StudyInstanceUID
    assert ds.PatientID == src.PatientID and ds.SeriesInstanceUID != src.SeriesInstanceUID
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == src.SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == {s.SOPInstanceUID for s in sources.values()}
    # One segment per label, named by the label table and coded in SNOMED CT.
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["CSF", "GM", "WM"]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in ds.SegmentSequence] == ["65216001", "389081007", "389080008"]
    # Each frame references the source image at its own position.
    by_uid = {s.SOPInstanceUID: np.array(s.ImagePositionPatient, float) for s in sources.values()}
    for fg in ds.PerFrameFunctionalGroupsSequence:
        uid = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert np.allclose(by_uid[uid], np.array(fg.PlanePositionSequence[0].ImagePositionPatient, float), atol=1e-3)
    # Geometry exact: the SEG's pixels are the label map's voxels, label by label.
    got = seg_voxels(ds, lab)
    for number in (1, 2, 3):
        assert np.array_equal(got[number], want_voxels(lab, number))
    # highdicom reads it back as the same segments.
    seg = hd.seg.Segmentation.from_dataset(ds)
    assert list(seg.segment_numbers) == [1, 2, 3]
    assert seg.get_source_image_uids()[0][1] == src.SeriesInstanceUID


def test_seg_of_an_enhanced_multiframe_source_with_a_label_subset(series, tmp_path):
    """One multi-frame file (shuffled frames, geometry per frame); --labels GM,WM: segments 1, 2 hold labels 2, 3."""
    from medcli.io.dicom_seg import seg_bytes

    d, img, lab = series
    path = write_enhanced(tmp_path / "enh.dcm", np.asarray(img.data, np.float64), img.affine)
    src = pydicom.dcmread(path)
    src.FrameOfReferenceUID = pydicom.uid.generate_uid()  # the generator leaves it out; a real scanner writes one
    src.save_as(path)
    enh = io.read(str(path))
    assert np.allclose(enh.affine, img.affine, atol=1e-4)
    subset = {v: LABELS["tissue"][v] for v in (2, 3)}
    ds = pydicom.dcmread(BytesIO(seg_bytes(enh.with_data(np.asarray(lab.data)), subset, str(path), enh.meta["dicom"]["series_uid"],
                                           algorithm="tissue")))
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["GM", "WM"]
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    got = seg_voxels(ds, enh)
    assert np.array_equal(got[1], want_voxels(lab, 2)) and np.array_equal(got[2], want_voxels(lab, 3))
    for fg in ds.PerFrameFunctionalGroupsSequence:  # frame references into the multi-frame source, at the right position
        ref = fg.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
        pos = src.PerFrameFunctionalGroupsSequence[int(ref.ReferencedFrameNumber) - 1].PlanePositionSequence[0].ImagePositionPatient
        assert np.allclose(np.array(pos, float), np.array(fg.PlanePositionSequence[0].ImagePositionPatient, float), atol=1e-3)


def test_seg_refuses_a_label_map_off_the_series_grid(series):
    from medcli.io.dicom_seg import seg_bytes

    d, img, lab = series
    shifted = lab.affine.copy()
    shifted[:3, 3] += 0.5 * lab.affine[:3, 0]  # half a voxel along i: another grid
    with pytest.raises(ProcessingError, match="not on the label map's voxel grid"):
        seg_bytes(type(lab)(np.asarray(lab.data), shifted), LABELS["tissue"], str(d / "s"), img.meta["dicom"]["series_uid"], algorithm="x")


def test_segment_dicom_seg_cli(cli, series, tmp_path):
    """medcli segment SERIES --task tissue --dicom-seg: the SEG holds the label map written with -o; a non-DICOM input is refused."""
    d, img, _ = series
    v = np.asarray(img.data)
    io.write(img.with_data((v > np.percentile(v, 30)).astype(np.uint8)), str(tmp_path / "mask.nii.gz"))
    r = cli("segment", str(d / "s"), "--task", "tissue", "--method", "classical", "--mask", str(tmp_path / "mask.nii.gz"),
            "-o", str(tmp_path / "t.nii.gz"), "--dicom-seg", str(tmp_path / "t_seg.dcm"))
    assert r.returncode == 0, r.stderr.decode()
    lab = io.read(str(tmp_path / "t.nii.gz"))
    ds = pydicom.dcmread(tmp_path / "t_seg.dcm")
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["CSF", "GM", "WM"]
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == img.meta["dicom"]["series_uid"]
    got = seg_voxels(ds, lab)
    for number in (1, 2, 3):
        assert np.array_equal(got[number], want_voxels(lab, number)), number
    assert ds.SegmentSequence[0].SegmentAlgorithmName.startswith("classical")

    r = cli("segment", "sample:t1", "--task", "tissue", "--method", "classical", "-o", str(tmp_path / "n.nii.gz"),
            "--dicom-seg", str(tmp_path / "n_seg.dcm"))
    assert r.returncode == 3 and "--dicom-seg needs a DICOM series" in r.stderr.decode()
    assert len(r.stderr.decode().strip().splitlines()) == 1
    assert not (tmp_path / "n.nii.gz").exists() and not (tmp_path / "n_seg.dcm").exists()


def test_seg_of_a_brain_mask_and_ct_lungs_codes(series):
    """The brain task's one label is SNOMED CT 'Brain'; the lungs' two are 'Lung' with a Right / Left modifier."""
    from medcli.io.dicom_seg import seg_bytes

    d, img, lab = series
    brain = img.with_data((np.asarray(lab.data) > 0).astype(np.uint8))
    ds = pydicom.dcmread(BytesIO(seg_bytes(brain, LABELS["brain"], str(d / "s"), img.meta["dicom"]["series_uid"], algorithm="deepbet")))
    (seg,) = ds.SegmentSequence
    assert (seg.SegmentLabel, seg.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("brain", "12738006")
    assert seg.SegmentAlgorithmName == "deepbet" and seg.SegmentationAlgorithmIdentificationSequence[0].AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert np.array_equal(seg_voxels(ds, brain)[1], want_voxels(brain, 1))
    lungs = img.with_data(np.where(np.asarray(lab.data) > 0, np.where(np.indices(img.shape)[0] < 32, 2, 1), 0).astype(np.uint8))
    ds = pydicom.dcmread(BytesIO(seg_bytes(lungs, LABELS["ct-lungs"], str(d / "s"), img.meta["dicom"]["series_uid"], algorithm="rules",
                                           learned=False)))
    types = [s.SegmentedPropertyTypeCodeSequence[0] for s in ds.SegmentSequence]
    assert [t.CodeValue for t in types] == ["39607008", "39607008"]
    assert [t.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning for t in types] == ["Right", "Left"]
    got = seg_voxels(ds, lungs)
    assert np.array_equal(got[1], want_voxels(lungs, 1)) and np.array_equal(got[2], want_voxels(lungs, 2))

"""Write real DICOM series with pydicom, with a known geometry, for the tests.

The geometry is the truth the reader must recover: each slice gets
ImagePositionPatient / ImageOrientationPatient / PixelSpacing computed from a
RAS+ affine (converted to DICOM's LPS), and stored values with a rescale
slope/intercept. Decimal strings keep 10 significant digits, far below the
1e-5 mm the tests ask for.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

LPS = np.diag([-1.0, -1.0, 1.0])


def rotation(deg_x: float, deg_y: float, deg_z: float = 0.0) -> np.ndarray:
    """Rotation matrix (about x, then y, then z) in degrees."""
    ax, ay, az = np.radians([deg_x, deg_y, deg_z])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique_affine(spacing=(0.9, 1.1, 2.5), deg=(20.0, 20.0, 0.0), origin=(-80.0, 95.0, -40.0)) -> np.ndarray:
    """A RAS+ affine with rotated, anisotropic axes (right-handed in LPS like scanners)."""
    aff = np.eye(4)
    aff[:3, :3] = rotation(*deg) @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def _ds(v: float) -> str:
    s = f"{float(v):.10g}"
    return s if len(s) <= 16 else f"{float(v):.8g}"


def write_series(
    folder: Path,
    volume: np.ndarray,
    affine: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    series_uid: str | None = None,
    series_number: int = 1,
    description: str = "test series",
    modality: str = "MR",
    shuffle: bool = True,
    positions: list[np.ndarray] | None = None,
    drop_position_tags: bool = False,
    seed: int = 0,
    acquisition: int = 1,
) -> list[Path]:
    """Write ``volume`` (i, j, k) as one file per slice k; returns the files.

    ``volume`` holds real-world values; they are stored as int16 ``round((v -
    intercept) / slope)``. ``positions`` overrides the IPP of each slice (to
    build gaps, irregular steps or tilt); file names are shuffled so the file
    order says nothing about the slice order.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS @ np.asarray(affine, float)[:3, :]
    dc = np.linalg.norm(lps[:, 0])
    dr = np.linalg.norm(lps[:, 1])
    row, col = lps[:, 0] / dc, lps[:, 1] / dr
    nk = volume.shape[2]
    if positions is None:
        positions = [lps[:, 3] + k * lps[:, 2] for k in range(nk)]
    series_uid = series_uid or generate_uid()
    study = generate_uid(entropy_srcs=["medcli-test-study"])
    frame_of_ref = generate_uid(entropy_srcs=["medcli-test-for"])
    stored = np.rint((np.asarray(volume, np.float64) - intercept) / slope)
    assert stored.min() >= -32768 and stored.max() <= 32767
    stored = stored.astype(np.int16)
    names = [f"IM{acquisition:02d}{n:05d}" for n in range(nk)]
    if shuffle:
        random.Random(seed).shuffle(names)
    files = []
    for k in range(nk):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_of_ref
        ds.Modality = modality
        ds.Manufacturer = "medcli tests"
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.InstanceNumber = (acquisition - 1) * nk + k + 1
        ds.AcquisitionNumber = acquisition
        ds.PatientName = "Test^Phantom"
        ds.PatientID = "0"
        if not drop_position_tags:
            ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
            ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([row, col])]
        ds.PixelSpacing = [_ds(dr), _ds(dc)]
        ds.SliceThickness = _ds(np.linalg.norm(lps[:, 2]))
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def write_enhanced(path: Path, volume: np.ndarray, affine: np.ndarray, *, slope=1.0, intercept=0.0, shuffle=True) -> Path:
    """Write ``volume`` as one enhanced multi-frame MR file (per-frame positions)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

    lps = LPS @ np.asarray(affine, float)[:3, :]
    dc, dr = np.linalg.norm(lps[:, 0]), np.linalg.norm(lps[:, 1])
    row, col = lps[:, 0] / dc, lps[:, 1] / dr
    nk = volume.shape[2]
    order = list(range(nk))
    if shuffle:
        random.Random(1).shuffle(order)
    stored = np.rint((np.asarray(volume, np.float64) - intercept) / slope).astype(np.int16)
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, sop
    ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.SeriesDescription = "MR", "medcli tests", 7, "enhanced"
    ds.NumberOfFrames = nk
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = [_ds(v) for v in np.concatenate([row, col])]
    pm = Dataset()
    pm.PixelSpacing = [_ds(dr), _ds(dc)]
    pm.SliceThickness = _ds(np.linalg.norm(lps[:, 2]))
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = _ds(slope), _ds(intercept), "US"
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelMeasuresSequence = Sequence([pm])
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        fg = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [_ds(v) for v in lps[:, 3] + k * lps[:, 2]]
        fg.PlanePositionSequence = Sequence([pp])
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(np.stack([stored[:, :, k].T for k in order])).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def t1_block(t1, shape=(64, 72, 24), start=(60, 70, 70)) -> np.ndarray:
    """A block of the real MNI T1 (so the tests see anatomy, not noise)."""
    sl = tuple(slice(s, s + n) for s, n in zip(start, shape))
    return np.asarray(t1.data[sl], np.float64)

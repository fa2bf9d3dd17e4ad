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


def write_enhanced(
    path: Path,
    volume: np.ndarray,
    affine: np.ndarray,
    *,
    slope=1.0,
    intercept=0.0,
    shuffle=True,
    echo_times: list[float] | None = None,
    b_values: list[float] | None = None,
    stacks: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> Path:
    """Write ``volume`` as one enhanced multi-frame MR file (per-frame positions).

    A 4D ``volume`` (i, j, k, n) gets one frame per slice and volume, each
    volume labelled by its ``echo_times`` (MREchoSequence) or ``b_values``
    (MRDiffusionSequence); ``stacks`` adds further stacks ``(volume, affine)``
    with their own StackID and orientation (a localizer-like object). Frames
    are stored in a shuffled order: the reader must use the functional groups.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

    vol4 = volume if volume.ndim == 4 else volume[..., None]
    all_stacks = [(vol4, affine)] + [(v if v.ndim == 4 else v[..., None], a) for v, a in (stacks or [])]
    frames_spec = []  # (stack index, k, volume index)
    for si, (v, _) in enumerate(all_stacks):
        frames_spec += [(si, k, n) for n in range(v.shape[3]) for k in range(v.shape[2])]
    if shuffle:
        random.Random(1).shuffle(frames_spec)
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
    ds.NumberOfFrames = len(frames_spec)
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = _ds(slope), _ds(intercept), "US"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, pixels = [], []
    for si, k, n in frames_spec:
        v, aff = all_stacks[si]
        lps = LPS @ np.asarray(aff, float)[:3, :]
        dc, dr = np.linalg.norm(lps[:, 0]), np.linalg.norm(lps[:, 1])
        fg = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [_ds(x) for x in lps[:, 3] + k * lps[:, 2]]
        fg.PlanePositionSequence = Sequence([pp])
        po = Dataset()
        po.ImageOrientationPatient = [_ds(x) for x in np.concatenate([lps[:, 0] / dc, lps[:, 1] / dr])]
        fg.PlaneOrientationSequence = Sequence([po])
        pm = Dataset()
        pm.PixelSpacing = [_ds(dr), _ds(dc)]
        pm.SliceThickness = _ds(np.linalg.norm(lps[:, 2]))
        fg.PixelMeasuresSequence = Sequence([pm])
        fc = Dataset()
        fc.InStackPositionNumber = k + 1
        if stacks:
            fc.StackID = str(si + 1)
        fg.FrameContentSequence = Sequence([fc])
        if echo_times is not None:
            echo = Dataset()
            echo.EffectiveEchoTime = echo_times[n]
            fg.MREchoSequence = Sequence([echo])
        if b_values is not None:
            diff = Dataset()
            diff.DiffusionBValue = b_values[n]
            fg.MRDiffusionSequence = Sequence([diff])
        frames.append(fg)
        stored = np.rint((np.asarray(v[:, :, k, n], np.float64) - intercept) / slope).astype(np.int16)
        pixels.append(stored.T)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(np.stack(pixels)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_planar(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    pixel_spacing: tuple[float, float] | None = None,
    imager_spacing: tuple[float, float] | None = None,
    sop_class: str = "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    headerless: bool = False,
) -> Path:
    """Write a 2D image without patient position: ``pixels`` is (rows, cols) or (rows, cols, 3), uint8/uint16.

    ``headerless`` writes the data set alone, with neither preamble nor meta
    header (as pre-Part 10 software did), implicit VR little endian.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(pixels)
    ds = Dataset()
    sop = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, 1
    ds.PatientName, ds.PatientID = "Test^Planar", "0"
    ds.Rows, ds.Columns = pixels.shape[:2]
    colour = pixels.ndim == 3
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if pixel_spacing is not None:
        ds.PixelSpacing = [_ds(v) for v in pixel_spacing]
    if imager_spacing is not None:
        ds.ImagerPixelSpacing = [_ds(v) for v in imager_spacing]
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if headerless:
        ds.save_as(path, implicit_vr=True, little_endian=True)
        return path
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def t1_block(t1, shape=(64, 72, 24), start=(60, 70, 70)) -> np.ndarray:
    """A block of the real MNI T1 (so the tests see anatomy, not noise)."""
    sl = tuple(slice(s, s + n) for s, n in zip(start, shape))
    return np.asarray(t1.data[sl], np.float64)


def compress_files(files: list[Path], syntax: str) -> None:
    """Re-encode each file in place with pydicom's encoders (RLE natively, JPEG 2000 / JPEG-LS through pylibjpeg)."""
    import pydicom

    for f in files:
        ds = pydicom.dcmread(f)
        ds.compress(syntax)
        ds.save_as(f, enforce_file_format=True)


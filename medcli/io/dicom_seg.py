"""A label map as a DICOM Segmentation (SEG, binary, one segment per label) of the series it was made from, with highdicom.

The SEG's frames are the source's frames: frame f of a source image holds, for
each label, the voxels of the label map at that frame's pixel positions. They
are found from the geometry of each frame (ImagePositionPatient,
ImageOrientationPatient, PixelSpacing) mapped through the label map's affine,
not from the order of files, so the reader's slice sorting, flips or a
multi-frame source change nothing. Each SEG frame references its source image
(DerivationImageSequence) and the SEG shares the series' study, patient and
FrameOfReferenceUID (copied by highdicom).

Labels are named by their table (``brain``, ``CSF``/``GM``/``WM``, ...) and
coded in SNOMED CT where a standard code exists, in medcli's local scheme
otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from medcli import __version__
from medcli.errors import ProcessingError
from medcli.image import Image

#: Codes of this producer for structures without a standard code here (as in the SR).
LOCAL_SCHEME = "99MEDCLI"
#: label name -> (category keyword, SNOMED CT type keyword) in pydicom's code dictionary.
CODES = {
    "brain": ("AnatomicalStructure", "Brain"),
    "CSF": ("BodySubstance", "CerebrospinalFluid"),
    "GM": ("Tissue", "GrayMatter"),
    "WM": ("Tissue", "WhiteMatter"),
    "body": ("AnatomicalStructure", "EntireBody"),
    "right lung": ("AnatomicalStructure", "Lung"),
    "left lung": ("AnatomicalStructure", "Lung"),
    "bone": ("Tissue", "Bone"),
    "subcutaneous fat": ("Tissue", "SubcutaneousTissue"),
    "visceral fat": ("Tissue", "AdiposeTissue"),
}
#: Laterality of a segment: a modifier of its property type (SNOMED CT Right / Left).
SIDES = {"right lung": "Right", "left lung": "Left"}
#: How far (voxels) a source pixel may lie from a voxel centre: DICOM decimal strings hold ~1e-6 relative precision.
TOLERANCE = 1e-2


def frame_geometry(ds) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(ImagePositionPatient, ImageOrientationPatient, PixelSpacing) of each frame of ``ds`` (LPS mm)."""

    def vec(v) -> np.ndarray | None:
        return None if v is None else np.asarray([float(x) for x in v], float)

    def group(fg, seq: str, kw: str):
        for g in (fg, shared):
            item = getattr(g, seq, None) if g is not None else None
            if item and kw in item[0]:
                return item[0].get(kw)
        return None

    shared = (getattr(ds, "SharedFunctionalGroupsSequence", None) or [None])[0]
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if per_frame is None:
        return [(vec(ds.ImagePositionPatient), vec(ds.ImageOrientationPatient), vec(ds.PixelSpacing))]
    return [
        (vec(group(fg, "PlanePositionSequence", "ImagePositionPatient")), vec(group(fg, "PlaneOrientationSequence", "ImageOrientationPatient")),
         vec(group(fg, "PixelMeasuresSequence", "PixelSpacing")))
        for fg in per_frame
    ]


def source_frames(labels: Image, sources: Sequence[Any]) -> tuple[np.ndarray, list]:
    """The label map resampled (exactly, by index) onto every frame of ``sources``: (frames, rows, columns),
    and each frame's geometry (:func:`frame_geometry`).

    Raises:
        ProcessingError: a frame's pixels are not voxels of the label map (another grid, or a mosaic series).
    """
    data = np.asarray(labels.data)
    inv = np.linalg.inv(np.asarray(labels.affine, float))
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    frames, geometry = [], []
    for ds in sources:
        rows, cols = int(ds.Rows), int(ds.Columns)
        for ipp, iop, ps in frame_geometry(ds):
            geometry.append((ipp, iop, ps))
            if ipp is None or iop is None or ps is None:
                raise ProcessingError("a source frame has no position, orientation or pixel spacing", ds.filename if hasattr(ds, "filename") else None)
            # Pixel (r, c) lies at IPP + c * PixelSpacing[1] * row cosine + r * PixelSpacing[0] * column cosine (LPS).
            origin = inv[:3, :3] @ (lps_to_ras @ ipp) + inv[:3, 3]
            along_c = inv[:3, :3] @ (lps_to_ras @ iop[:3]) * ps[1]
            along_r = inv[:3, :3] @ (lps_to_ras @ iop[3:]) * ps[0]
            r, c = np.mgrid[0:rows, 0:cols]
            vox = origin + c[..., None] * along_c + r[..., None] * along_r
            idx = np.rint(vox).astype(np.int64)
            if np.abs(vox - idx).max() > TOLERANCE or (idx < 0).any() or (idx >= np.array(data.shape[:3])).any():
                raise ProcessingError("the series' frames are not on the label map's voxel grid (a mosaic or reformatted series?)",
                                      str(getattr(ds, "filename", "")) or None)
            frames.append(data[idx[..., 0], idx[..., 1], idx[..., 2]])
    return np.stack(frames), geometry


def segmentation(labels: Image, table: Mapping[int, tuple[str, Any]], sources: Sequence[Any], *, algorithm: str, learned: bool = True,
                 series_number: int = 991, description: str = "medcli segment"):
    """A highdicom ``Segmentation`` (BINARY) of ``labels`` over the source series ``sources``.

    Args:
        labels: Label map on the grid the sources were read into.
        table: label value -> (name, colour); one segment per entry, in value order (segment numbers 1..N).
        sources: The series' datasets (:func:`medcli.io.dicom_derived.source_datasets`).
        algorithm: The model (or rules) that made the labels, named in each segment.
        learned: A trained network (AI) rather than rules (image processing).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    values = sorted(table)
    if not values:
        raise ProcessingError("no label to write as a DICOM SEG")
    stack, geometry = source_frames(labels, sources)
    lut = np.zeros(max(int(stack.max()), values[-1]) + 1, np.uint8)
    for number, v in enumerate(values, 1):
        lut[v] = number  # segment numbers run 1..N whatever the label values kept (--labels GM,WM -> 1, 2)
    family = codes.cid7162.ArtificialIntelligence if learned else codes.cid7162.MorphologicalOperations
    algo = hd.AlgorithmIdentificationSequence(name=algorithm[:64], family=family, version=__version__)
    descriptions = []
    for number, v in enumerate(values, 1):
        name, colour = table[v][0], table[v][1] if len(table[v]) > 1 else None
        category, kind = CODES.get(name, ("AnatomicalStructure", None))
        prop = getattr(codes.SCT, kind) if kind else hd.sr.CodedConcept(name[:16], LOCAL_SCHEME, name)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=getattr(codes.SCT, category),
            segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo,
            display_color=hd.color.CIELabColor.from_rgb(*colour) if colour else None,
        ))
        if name in SIDES:
            side = getattr(codes.SCT, SIDES[name])
            descriptions[-1].SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept(side.value, side.scheme_designator, side.meaning)]
    pixels = lut[stack]
    return hd.seg.Segmentation(
        source_images=[_shared_geometry(ds) for ds in sources], pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="medcli", manufacturer_model_name=algorithm[:64],
        software_versions=__version__, device_serial_number="none", series_description=description,
        omit_empty_frames=bool(pixels.any()),  # a SEG needs at least one frame
        # The geometry read above, given explicitly: a source may keep it per frame or shared, highdicom wants it shared.
        plane_orientation=hd.PlaneOrientationSequence("PATIENT", [float(x) for x in geometry[0][1]]),
        pixel_measures=hd.PixelMeasuresSequence([float(x) for x in geometry[0][2]], _thickness(sources[0], labels)),
        plane_positions=[hd.PlanePositionSequence("PATIENT", [float(x) for x in g[0]]) for g in geometry],
    )


def _shared_geometry(ds):
    """``ds``, or for a multi-frame source that keeps pixel measures or orientation per frame (valid DICOM), a copy
    with frame 1's in the shared group, where highdicom reads them (the frames' positions are given to it explicitly)."""
    import copy

    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if not per_frame:
        return ds
    out = copy.copy(ds)
    if "SharedFunctionalGroupsSequence" not in out or not out.SharedFunctionalGroupsSequence:
        from pydicom.dataset import Dataset

        out.SharedFunctionalGroupsSequence = [Dataset()]
    else:
        out.SharedFunctionalGroupsSequence = [copy.copy(out.SharedFunctionalGroupsSequence[0])]
    shared = out.SharedFunctionalGroupsSequence[0]
    for seq in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if seq not in shared and seq in per_frame[0]:
            setattr(shared, seq, per_frame[0][seq].value)
    return out


def _thickness(ds, labels: Image) -> float:
    """SliceThickness of the source, or the label map's slice spacing when the source has none at the top level."""
    t = getattr(ds, "SliceThickness", None)
    return float(t) if t not in (None, "") else float(labels.spacing[2])


def seg_bytes(labels: Image, table: Mapping[int, tuple[str, Any]], source: str, series_uid: str | None, **kw) -> bytes:
    """The DICOM SEG file (bytes) of ``labels`` over the series read from ``source`` (see :func:`segmentation`)."""
    from io import BytesIO

    from medcli.io.dicom_derived import source_datasets

    seg = segmentation(labels, table, source_datasets(source, series_uid, "--dicom-seg"), **kw)
    buf = BytesIO()
    seg.save_as(buf)
    return buf.getvalue()

"""The source of a derived DICOM object (``report --dicom-sr``, ``segment --dicom-seg``): the series' headers.

A derived object (Structured Report, Segmentation) references the instances
it was made from and copies their patient, study and frame of reference; this
module finds them again from the path the image was read from.
"""

from __future__ import annotations

from pathlib import Path

from medcli.errors import InputError

#: Patient/study attributes (type 2) a derived object copies from its source.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
         "AccessionNumber", "ReferringPhysicianName")


def source_datasets(source: str, series_uid: str | None, option: str, *, pixels: bool = False) -> list:
    """The headers of the series' files (a DICOM folder, one file or ``sample:NAME``).

    Args:
        source: What the image was read from.
        series_uid: The SeriesInstanceUID it was read as (``meta["dicom"]["series_uid"]``); None takes every series.
        option: The option that needs them (``--dicom-sr``), named in errors.
        pixels: Read the pixel data too (the default stops before it).

    Raises:
        InputError: no DICOM file of that series, or the series has no FrameOfReferenceUID.
    """
    import pydicom

    if source.startswith("sample:"):
        from medcli.samples import sample_path

        p = sample_path(source.split(":", 1)[1])
    else:
        p = Path(source)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    out = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=not pixels)
        except Exception:  # noqa: BLE001 - a non-DICOM file in the folder (README, DICOMDIR ...)
            continue
        if getattr(ds, "SeriesInstanceUID", None) and (series_uid is None or ds.SeriesInstanceUID == series_uid):
            for kw in TYPE2:  # type-2 attributes a writer may have left out: present and empty is valid
                if kw not in ds:
                    setattr(ds, kw, "")
            out.append(ds)
    if not out:
        raise InputError(f"{option} needs a DICOM series as IMAGE (the object references its files)", source)
    if not getattr(out[0], "FrameOfReferenceUID", None):
        raise InputError(f"{option}: the series has no FrameOfReferenceUID (3D coordinates need one)", source)
    return out

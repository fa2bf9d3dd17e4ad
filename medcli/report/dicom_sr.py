"""The report as a DICOM Structured Report (TID 1500 Measurement Report, Comprehensive 3D SR), with highdicom.

Written when the scan is a DICOM series: volumes per label (and the
intracranial volume) as measurement groups; each finding and landmark as a
volumetric ROI whose 3D point (LPS mm, DICOM's patient coordinates) lies in the
series' frame of reference, with its diameter, volume and score. The source
series is the SR's evidence (study, patient and frame of reference are
copied from it by highdicom).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from medcli import __version__

#: Codes of this producer for label names, which have no standard code here.
LOCAL_SCHEME = "99MEDCLI"


def measurement_report(doc: dict[str, Any], evidence: Sequence[Any]):
    """A highdicom ``Comprehensive3DSR`` of the report document ``doc`` (see the module docstring)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    ml = hd.sr.CodedConcept("mL", "UCUM", "milliliter")
    score_code = hd.sr.CodedConcept("score", LOCAL_SCHEME, "Detection score")
    unitless = hd.sr.CodedConcept("1", "UCUM", "no units")
    algo = hd.sr.AlgorithmIdentification(name="medcli", version=__version__)
    series_uid = evidence[0].SeriesInstanceUID
    foruid = evidence[0].FrameOfReferenceUID

    def local(name: str):
        return hd.sr.CodedConcept(str(name)[:16] or "x", LOCAL_SCHEME, str(name))

    def track(text: str):
        return hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=text)

    groups: list[Any] = []
    vol = doc.get("volumes") or {}
    rows = ([("intracranial volume", vol["intracranial_volume_ml"])] if vol.get("intracranial_volume_ml") else [])
    rows += [(r["name"], r["volume_ml"]) for r in vol.get("labels") or []]
    for name, v in rows:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=track(f"volume {name}"), finding_type=local(name), algorithm_id=algo,
            measurements=[hd.sr.Measurement(name=codes.SCT.Volume, value=float(v), unit=ml, algorithm_id=algo)],
        ))

    def point(ras: Sequence[float], name: str, finding_type, measurements):
        lps = np.array([[-float(ras[0]), -float(ras[1]), float(ras[2])]])
        surface = hd.sr.VolumeSurface(graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=lps, frame_of_reference_uid=foruid,
                                      source_series=hd.sr.SourceSeriesForSegmentation(series_uid))
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=track(name), referenced_volume_surface=surface, finding_type=finding_type, algorithm_id=algo,
            measurements=measurements or None,
        )

    for f in doc.get("findings") or []:
        if not all(math.isfinite(x) for x in f["center_ras_mm"]):
            continue
        ms = []
        if math.isfinite(f["diameter_mm"]):
            ms.append(hd.sr.Measurement(name=codes.SCT.Diameter, value=f["diameter_mm"], unit=codes.UCUM.Millimeter))
        if math.isfinite(f.get("volume_ml", float("nan"))):
            ms.append(hd.sr.Measurement(name=codes.SCT.Volume, value=f["volume_ml"], unit=ml))
        if math.isfinite(f["score"]):
            ms.append(hd.sr.Measurement(name=score_code, value=f["score"], unit=unitless))
        groups.append(point(f["center_ras_mm"], f"finding {f['id']}", codes.SCT.Lesion, ms))
    for p in doc.get("landmarks") or []:
        if all(math.isfinite(x) for x in p["ras_mm"]):
            groups.append(point(p["ras_mm"], f"landmark {p['label']}", local(p.get("description") or p["label"]), []))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure"),
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=list(evidence), content=report[0], series_instance_uid=generate_uid(), series_number=990,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="medcli", is_complete=True,
        series_description="medcli report (measurements; not a diagnosis)",
    )

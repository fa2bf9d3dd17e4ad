"""CT acquisition geometry and the sinogram file format (array + JSON sidecar).

A sinogram is stored as NIfTI or ``.npy`` next to a JSON sidecar with the same
stem (``scan.nii.gz`` -> ``scan.json``). Arrays:

* ``.npy``: ``(views, detectors)`` for one slice or ``(slices, views, detectors)``.
* NIfTI: ``(detectors, views)`` or ``(detectors, views, slices)`` (the same
  memory layout seen through NIfTI's column-major axes).

The sidecar's field names follow ASTRA's ``proj_geom`` where they overlap::

    {"Modality": "CT", "type": "parallel" | "fanflat",
     "DetectorCount": 183, "DetectorWidth": 0.66,        # mm at the detector
     "ProjectionAnglesDeg": [0.0, 3.0, ...]  or  "AngleStart": 0, "AngleStop": 180, "AngleCount": 60,
     "DistanceOriginSource": 500.0, "DistanceOriginDetector": 500.0,   # fanflat only, mm
     "ImageSize": [128, 128], "PixelSpacing": [0.66, 0.66],            # output grid
     "SlicePositions": [z0, z1, ...],  "Affine": [[...4x4...]],         # optional
     "Data": "line-integrals" | "counts", "Photons": 4096,              # counts need Photons (I0)
     "MuWater": 0.0192}                                                 # mm^-1

Angles are in degrees (ASTRA uses radians, hence the ``Deg`` suffix);
``AngleStop`` is exclusive. Conventions: the slice's first array axis is
``x``, the second ``y``, both centred on the grid centre; at angle ``theta``
the detector coordinate of a point is ``u = y cos(theta) - x sin(theta)``
(scikit-image's ``radon``) and the rays run along ``(cos theta, sin theta)``;
the fan-beam source sits at ``-DistanceOriginSource`` along the ray direction.
Detector bin ``k`` is centred at ``(k - (DetectorCount - 1) / 2) * DetectorWidth``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medcli.errors import InputError

#: Linear attenuation of water at about 70 keV (mm^-1): HU = 1000 (mu - MU_WATER) / MU_WATER.
MU_WATER = 0.0192
BEAMS = ("parallel", "fan")
_TYPES = {"parallel": "parallel", "fan": "fanflat", "fanflat": "fanflat"}


@dataclass
class CTGeometry:
    """One 2D CT acquisition, shared by every slice of a sinogram stack.

    Attributes:
        beam: ``parallel`` or ``fan`` (flat detector).
        angles: Projection angles in degrees.
        detectors: Number of detector bins.
        detector_width: Bin width in mm at the detector.
        image_size: Output grid (nx, ny).
        pixel_spacing: Output pixel size (dx, dy) in mm.
        source_origin: Fan beam: source to isocentre distance (mm).
        origin_detector: Fan beam: isocentre to detector distance (mm).
        slice_positions: z of each slice (mm), or None (1 mm apart).
        affine: Voxel-to-RAS affine of the output volume, or None (centred grid).
        data: ``line-integrals`` (post-log) or ``counts`` (photons per bin).
        photons: Unattenuated photons per bin (I0), when known.
        mu_water: Water's attenuation (mm^-1) for the HU scale.
    """

    beam: str
    angles: np.ndarray
    detectors: int
    detector_width: float
    image_size: tuple[int, int]
    pixel_spacing: tuple[float, float]
    source_origin: float = 0.0
    origin_detector: float = 0.0
    slice_positions: list[float] | None = None
    affine: np.ndarray | None = None
    data: str = "line-integrals"
    photons: float | None = None
    mu_water: float = MU_WATER
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def views(self) -> int:
        return len(self.angles)

    @property
    def magnification(self) -> float:
        """Detector / isocentre scale of a fan beam (1 for parallel beam)."""
        if self.beam != "fan":
            return 1.0
        return (self.source_origin + self.origin_detector) / self.source_origin

    def to_json(self) -> dict[str, Any]:
        """The sidecar dictionary (ASTRA names where they exist)."""
        d: dict[str, Any] = {
            "Modality": "CT",
            "type": _TYPES[self.beam],
            "DetectorCount": int(self.detectors),
            "DetectorWidth": float(self.detector_width),
            "ProjectionAnglesDeg": [round(float(a), 10) for a in self.angles],
            "ImageSize": [int(s) for s in self.image_size],
            "PixelSpacing": [float(s) for s in self.pixel_spacing],
            "Data": self.data,
            "MuWater": self.mu_water,
        }
        if self.beam == "fan":
            d["DistanceOriginSource"] = float(self.source_origin)
            d["DistanceOriginDetector"] = float(self.origin_detector)
        if self.photons:
            d["Photons"] = float(self.photons)
        if self.slice_positions is not None:
            d["SlicePositions"] = [float(z) for z in self.slice_positions]
        if self.affine is not None:
            d["Affine"] = np.asarray(self.affine, float).tolist()
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str | Path = "sidecar") -> "CTGeometry":
        """Parse and check a sidecar dictionary.

        Raises:
            InputError: a missing or invalid field, or a fan beam whose detector misses the field of view.
        """

        def need(key: str):
            if key not in d:
                raise InputError(f"CT sidecar lacks {key!r}", path)
            return d[key]

        kind = str(d.get("type", d.get("Beam", d.get("beam", "parallel")))).lower()
        if kind not in _TYPES:
            raise InputError(f"CT sidecar: type must be parallel or fanflat, not {kind!r}", path)
        beam = "fan" if _TYPES[kind] == "fanflat" else "parallel"
        if "ProjectionAnglesDeg" in d:
            angles = np.asarray(d["ProjectionAnglesDeg"], np.float64)
        elif "ProjectionAngles" in d:  # ASTRA's own field, radians
            angles = np.rad2deg(np.asarray(d["ProjectionAngles"], np.float64))
        elif "AngleCount" in d:
            n = int(d["AngleCount"])
            angles = float(d.get("AngleStart", 0.0)) + np.arange(n) * (
                float(d.get("AngleStop", 180.0 if beam == "parallel" else 360.0)) - float(d.get("AngleStart", 0.0))
            ) / max(n, 1)
        else:
            raise InputError("CT sidecar lacks the angles (ProjectionAnglesDeg, or AngleStart/AngleStop/AngleCount)", path)
        if angles.ndim != 1 or angles.size < 1 or not np.all(np.isfinite(angles)):
            raise InputError("CT sidecar: the angles must be a non-empty list of finite numbers", path)
        try:
            det = int(need("DetectorCount"))
            width = float(need("DetectorWidth"))
            spacing = d.get("PixelSpacing", d.get("PixelSize"))
            size = d.get("ImageSize")
            if spacing is None:
                spacing = [width / (1.0 if beam == "parallel" else 1.0)] * 2
            if np.isscalar(spacing):
                spacing = [spacing, spacing]
            if size is None:
                size = [int(det / math.sqrt(2))] * 2
            if np.isscalar(size):
                size = [size, size]
            geo = cls(
                beam=beam,
                angles=angles,
                detectors=det,
                detector_width=width,
                image_size=(int(size[0]), int(size[1])),
                pixel_spacing=(float(spacing[0]), float(spacing[1])),
                source_origin=float(d.get("DistanceOriginSource", 0.0)),
                origin_detector=float(d.get("DistanceOriginDetector", 0.0)),
                slice_positions=[float(z) for z in d["SlicePositions"]] if d.get("SlicePositions") is not None else None,
                affine=np.asarray(d["Affine"], float) if d.get("Affine") is not None else None,
                data=str(d.get("Data", "line-integrals")),
                photons=float(d["Photons"]) if d.get("Photons") else None,
                mu_water=float(d.get("MuWater", MU_WATER)),
            )
        except (TypeError, ValueError, IndexError) as e:
            raise InputError(f"CT sidecar: invalid value ({e})", path) from None
        geo.validate(path)
        return geo

    def validate(self, path: str | Path = "sidecar") -> None:
        """Raise a one-line InputError for a geometry that cannot be reconstructed."""
        if self.detectors < 2 or self.detector_width <= 0:
            raise InputError("CT sidecar: DetectorCount must be >= 2 and DetectorWidth > 0", path)
        if min(self.image_size) < 2 or min(self.pixel_spacing) <= 0:
            raise InputError("CT sidecar: ImageSize must be >= 2 and PixelSpacing > 0", path)
        if self.data not in ("line-integrals", "counts"):
            raise InputError(f"CT sidecar: Data must be line-integrals or counts, not {self.data!r}", path)
        if self.data == "counts" and not self.photons:
            raise InputError("CT sidecar: Data = counts needs Photons (the unattenuated counts I0)", path)
        if self.affine is not None and self.affine.shape != (4, 4):
            raise InputError("CT sidecar: Affine must be 4x4", path)
        if self.mu_water <= 0:
            raise InputError("CT sidecar: MuWater must be > 0", path)
        radius = 0.5 * math.hypot(self.image_size[0] * self.pixel_spacing[0], self.image_size[1] * self.pixel_spacing[1])
        if self.beam == "fan":
            if self.source_origin <= radius or self.origin_detector < 0:
                raise InputError(
                    f"CT sidecar: fan beam needs DistanceOriginSource > the field of view's radius ({radius:.1f} mm) "
                    "and DistanceOriginDetector >= 0", path)
            # The fan must cover the central disc inscribed in the grid (half its smaller side).
            half = 0.5 * (self.detectors - 1) * self.detector_width
            r_in = 0.5 * min(self.image_size[0] * self.pixel_spacing[0], self.image_size[1] * self.pixel_spacing[1])
            tan_need = r_in / math.sqrt(self.source_origin**2 - r_in**2)
            tan_have = half / (self.source_origin + self.origin_detector)
            if tan_have < tan_need * 0.98:
                raise InputError(
                    f"CT sidecar: the fan-beam detector ({self.detectors} x {self.detector_width:g} mm) misses the field "
                    f"of view: it sees {2 * math.degrees(math.atan(tan_have)):.1f} deg of fan, the {r_in:.0f} mm radius needs "
                    f"{2 * math.degrees(math.atan(tan_need)):.1f} deg", path)
        else:
            half = 0.5 * self.detectors * self.detector_width
            r_in = 0.5 * min(self.image_size[0] * self.pixel_spacing[0], self.image_size[1] * self.pixel_spacing[1])
            if half < r_in * 0.98:
                raise InputError(
                    f"CT sidecar: the detector ({half * 2:.1f} mm) is narrower than the field of view ({2 * r_in:.1f} mm)", path)

    def output_affine(self, slices: int) -> np.ndarray:
        """The output volume's affine: the sidecar's, else a grid centred on the isocentre."""
        if self.affine is not None:
            return np.asarray(self.affine, float).copy()
        dz = 1.0
        z0 = 0.0
        if self.slice_positions:
            z0 = float(self.slice_positions[0])
            if len(self.slice_positions) > 1:
                dz = float(self.slice_positions[1] - self.slice_positions[0]) or 1.0
        aff = np.diag([self.pixel_spacing[0], self.pixel_spacing[1], dz, 1.0])
        aff[0, 3] = -0.5 * (self.image_size[0] - 1) * self.pixel_spacing[0]
        aff[1, 3] = -0.5 * (self.image_size[1] - 1) * self.pixel_spacing[1]
        aff[2, 3] = z0
        return aff


@dataclass
class Sinogram:
    """A stack of 2D sinograms ``(slices, views, detectors)`` of line integrals (or counts) and its geometry."""

    data: np.ndarray
    geometry: CTGeometry

    def line_integrals(self) -> np.ndarray:
        """Post-log data (counts are converted with -log(max(c, 0.1) / I0), as LoDoPaB-CT does)."""
        if self.geometry.data == "counts":
            assert self.geometry.photons
            return -np.log(np.maximum(self.data, 0.1) / self.geometry.photons).astype(np.float32)
        return self.data.astype(np.float32, copy=False)


def sidecar_of(path: str | Path) -> Path:
    """``scan.nii.gz`` / ``scan.npy`` -> ``scan.json``."""
    p = Path(path)
    name = p.name
    for suf in (".nii.gz", ".nii", ".npy"):
        if name.lower().endswith(suf):
            return p.with_name(name[: -len(suf)] + ".json")
    return p.with_name(name + ".json")


def is_ct_sinogram(path: str | Path) -> bool:
    """True when ``path`` has a CT sidecar (or a CT geometry embedded in its NIfTI header)."""
    side = sidecar_of(path)
    if side.is_file():
        try:
            d = json.loads(side.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(d, dict) and (str(d.get("Modality", "")).upper() == "CT" or "DetectorCount" in d)
    if str(path).lower().endswith((".nii", ".nii.gz")) and Path(path).is_file():
        return _embedded_geometry(Path(path)) is not None
    return False


_ECODE = 6  # NIfTI "comment" extension: the sidecar travels inside the file through pipes


def _embedded_geometry(path: Path | None, nimg=None) -> dict | None:
    try:
        if nimg is None:
            import nibabel as nib

            nimg = nib.load(str(path))
        for ext in nimg.header.extensions:
            if ext.get_code() == _ECODE:
                text = ext.get_content()
                text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
                if text.startswith("medcli-ct-geometry "):
                    return json.loads(text[len("medcli-ct-geometry "):])
    except Exception:  # not our extension, or not NIfTI: no embedded geometry
        return None
    return None


def read_sinogram(source: str | Path, sidecar: str | Path | None = None) -> Sinogram:
    """Read a sinogram (NIfTI, ``.npy`` or ``-`` for a NIfTI on stdin) and its geometry.

    Raises:
        InputError: missing/invalid sidecar, a shape that disagrees with it, NaNs, negative counts.
    """
    import nibabel as nib

    src = str(source)
    embedded = None
    if src == "-":
        import gzip
        import sys

        raw = sys.stdin.buffer.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        try:
            nimg = nib.Nifti1Image.from_bytes(raw)
        except Exception as e:
            raise InputError(f"stdin is not a NIfTI sinogram ({e})", "-") from None
        arr = np.asarray(nimg.dataobj, np.float32)
        embedded = _embedded_geometry(None, nimg)
        layout = "nifti"
    else:
        path = Path(src)
        if not path.is_file():
            raise InputError("no such file", path)
        low = path.name.lower()
        try:
            if low.endswith(".npy"):
                arr = np.load(path, allow_pickle=False)
                layout = "npy"
            elif low.endswith((".nii", ".nii.gz")):
                nimg = nib.load(str(path))
                arr = np.asarray(nimg.dataobj, np.float32)
                embedded = _embedded_geometry(path, nimg)
                layout = "nifti"
            else:
                raise InputError("a CT sinogram must be NIfTI (.nii, .nii.gz) or .npy", path)
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"cannot read sinogram ({e})", path) from None
    side = Path(sidecar) if sidecar else (sidecar_of(src) if src != "-" else None)
    if side is not None and side.is_file():
        try:
            d = json.loads(side.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"invalid JSON sidecar ({e})", side) from None
        where: str | Path = side
    elif embedded is not None:
        d, where = embedded, src
    else:
        raise InputError(f"no CT geometry: the sidecar {side.name if side else 'SINOGRAM.json'} is missing", src)
    if not isinstance(d, dict):
        raise InputError("CT sidecar must be a JSON object", where)
    geo = CTGeometry.from_json(d, where)
    arr = np.asarray(arr, np.float32)
    if layout == "nifti":
        arr = np.squeeze(arr, axis=tuple(range(3, arr.ndim))) if arr.ndim > 3 else arr
        arr = arr.T if arr.ndim == 2 else np.transpose(arr, (2, 1, 0))
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"a sinogram is 2D (views, detectors) or a stack of them, not {arr.ndim}D", src)
    if arr.shape[1:] != (geo.views, geo.detectors):
        raise InputError(
            f"sinogram shape {arr.shape[1]} views x {arr.shape[2]} detectors disagrees with the sidecar "
            f"({geo.views} angles, DetectorCount {geo.detectors})", src)
    if geo.slice_positions is not None and len(geo.slice_positions) != arr.shape[0]:
        raise InputError(f"sidecar lists {len(geo.slice_positions)} SlicePositions for {arr.shape[0]} slices", where)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"sinogram holds {int(np.sum(~np.isfinite(arr)))} NaN/Inf values", src)
    if geo.data == "counts" and float(arr.min()) < 0:
        raise InputError(f"negative photon counts (min {float(arr.min()):g})", src)
    return Sinogram(arr, geo)


def _nifti(sino: Sinogram):
    import nibabel as nib

    arr = np.transpose(sino.data.astype(np.float32), (2, 1, 0))
    g = sino.geometry
    step = float(np.median(np.diff(g.angles))) if g.views > 1 else 1.0
    nimg = nib.Nifti1Image(arr, np.diag([g.detector_width, step, 1.0, 1.0]))
    text = "medcli-ct-geometry " + json.dumps(g.to_json())
    nimg.header.extensions.append(nib.nifti1.Nifti1Extension(_ECODE, text.encode()))
    nimg.header["descrip"] = b"medcli CT sinogram (detector, view, slice)"
    return nimg


def write_sinogram(sino: Sinogram, dest: str | Path, force: bool = False) -> None:
    """Write the sinogram (NIfTI, ``.npy`` or ``-``) and its JSON sidecar, both atomically.

    NIfTI files (and stdout) also carry the geometry in a header extension, so
    ``simulate ... -o - | recon -`` needs no sidecar file.
    """
    from medcli.io.safe import atomic_output, check_writable

    src = str(dest)
    if src == "-":
        import sys

        sys.stdout.buffer.write(_nifti(sino).to_bytes())
        sys.stdout.buffer.flush()
        return
    path = Path(src)
    side = sidecar_of(path)
    check_writable(path, force)
    check_writable(side, force)
    low = path.name.lower()
    if not low.endswith((".npy", ".nii", ".nii.gz")):
        raise InputError("a CT sinogram is written as .nii, .nii.gz or .npy", path)
    with atomic_output(path, force) as tmp, atomic_output(side, force) as tmp_side:
        if low.endswith(".npy"):
            with open(tmp, "wb") as f:
                np.save(f, sino.data.astype(np.float32))
        else:
            import nibabel as nib

            nib.save(_nifti(sino), str(tmp))
        tmp_side.write_text(json.dumps(sino.geometry.to_json(), indent=1) + "\n")


def default_detectors(image_size: Sequence[int], spacing: Sequence[float], detector_width: float, magnification: float = 1.0) -> int:
    """Bins that cover the grid's diagonal, odd so that the centre bin sits on the rotation axis."""
    diag = math.hypot(image_size[0] * spacing[0], image_size[1] * spacing[1]) * magnification
    n = int(math.ceil(diag / detector_width)) + 2
    return n + 1 - n % 2

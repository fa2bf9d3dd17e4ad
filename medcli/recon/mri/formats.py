"""K-space files: fastMRI HDF5, ISMRMRD HDF5, BART ``.cfl/.hdr`` and ``.npy``.

Every reader returns a :class:`KSpace`: complex data ``(slices, coils, ro, pe)``,
the sampling mask, and the affine of the image grid it reconstructs to. The
affine comes from, in order: the ``medcli_affine`` that ``recon simulate``
stores (so simulate -> recon returns the input grid exactly), the ISMRMRD
header's field of view and matrix (spacing = FOV / matrix, centred at the
isocentre; fastMRI headers hold no position or orientation), else 1 mm
voxels.

Example:
    >>> ks = read_kspace("file_brain_AXT2_200_2000019.h5")  # doctest: +SKIP
    >>> ks.data.shape  # doctest: +SKIP
    (16, 20, 640, 320)
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcli.errors import InputError, ProcessingError

NS = "http://www.ismrm.org/ISMRMRD"
#: Axis names of ``--layout`` (the order of the axes of a ``.npy`` array).
LAYOUT_AXES = ("slice", "coil", "ro", "pe")
DEFAULT_LAYOUTS = {2: "ro,pe", 3: "coil,ro,pe", 4: "slice,coil,ro,pe"}
#: ISMRMRD acquisition flag bit of noise-only readouts (ACQ_IS_NOISE_MEASUREMENT, 1-based 19).
_NOISE_FLAG = 1 << 18


@dataclass
class KSpace:
    """Cartesian k-space of a multi-slice scan and the grid its image lies on.

    Attributes:
        data: complex64 ``(slices, coils, ro, pe)``; unsampled points are 0.
        mask: bool ``(slices, ro, pe)``, True where k-space was sampled.
        affine: 4x4 voxel -> RAS+ mm affine of the output volume (axes ro, pe, slice),
            after the crop to ``recon_shape``.
        recon_shape: (ro, pe) of the output image (a centre crop of the FFT grid,
            e.g. fastMRI's 2x readout oversampling removed).
        meta: format, header fields, what the simulator recorded.
    """

    data: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    recon_shape: tuple[int, int]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def coils(self) -> int:
        return int(self.data.shape[1])

    @property
    def acceleration(self) -> float:
        """Points of the grid / points sampled (a full grid is 1)."""
        return float(self.mask.size / max(int(self.mask.sum()), 1))


def check(ks: KSpace, path: str) -> KSpace:
    """Refuse what no method could reconstruct: NaN/Inf, an empty mask, a mask of another shape."""
    if not np.all(np.isfinite(ks.data.view(np.float32))):
        n = int((~np.isfinite(ks.data)).sum())
        raise InputError(f"k-space has {n} NaN or Inf samples", path)
    if ks.mask.shape != (ks.data.shape[0],) + ks.data.shape[2:]:
        raise InputError(f"mask shape {ks.mask.shape[1:]} does not match the k-space grid {ks.data.shape[2:]}", path)
    empty = [i for i in range(ks.mask.shape[0]) if not ks.mask[i].any()]
    if empty:
        raise InputError(f"the sampling mask samples nothing (slice {empty[0]})", path)
    if not (1 <= ks.recon_shape[0] <= ks.data.shape[2] and 1 <= ks.recon_shape[1] <= ks.data.shape[3]):
        raise InputError(f"reconstruction matrix {ks.recon_shape} does not fit the k-space grid {ks.data.shape[2:]}", path)
    return ks


def mask_from_data(data: np.ndarray) -> np.ndarray:
    """Sampled = non-zero in some coil (acquired noise is never exactly 0)."""
    return np.any(data != 0, axis=1)


def broadcast_mask(mask: np.ndarray, shape: tuple[int, ...], path: str) -> np.ndarray:
    """A 1D (pe), 2D (ro, pe) or 3D (slices, ro, pe) mask as bool ``(slices, ro, pe)``."""
    s, _, ro, pe = shape
    m = np.asarray(mask).astype(bool)
    if m.ndim == 1:
        if m.size != pe:
            raise InputError(f"1D mask of {m.size} lines, k-space has {pe} phase-encoding lines", path)
        m = np.broadcast_to(m[None, :], (ro, pe))
    if m.ndim == 2:
        if m.shape != (ro, pe):
            raise InputError(f"mask shape {m.shape} does not match the k-space grid {(ro, pe)}", path)
        m = np.broadcast_to(m[None], (s, ro, pe))
    if m.shape != (s, ro, pe):
        raise InputError(f"mask shape {m.shape} does not match the k-space {(s, ro, pe)}", path)
    return np.ascontiguousarray(m)


def default_affine(spacing: tuple[float, float, float], shape: tuple[int, int, int]) -> np.ndarray:
    """Voxel -> mm with the grid centred on the isocentre (no position known)."""
    aff = np.diag([*map(float, spacing), 1.0])
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(shape, float) - 1) / 2)
    return aff


# -- dispatch ---------------------------------------------------------------------------------------


def kind_of(path: str) -> str | None:
    """'fastmri', 'ismrmrd', 'cfl', 'npy' (complex) for k-space files; None otherwise."""
    p = Path(path)
    low = p.name.lower()
    if low.endswith((".cfl", ".hdr")):
        return "cfl"
    if low.endswith(".npy"):
        try:
            arr = np.load(p, mmap_mode="r")
        except (OSError, ValueError):
            return None
        return "npy" if np.iscomplexobj(arr) else None
    if low.endswith((".h5", ".hdf5", ".mrd", ".ismrmrd")) or _is_hdf5(p):
        try:
            import h5py

            with h5py.File(p, "r") as f:
                if "kspace" in f:
                    return "fastmri"
                if "dataset" in f and "data" in f["dataset"]:
                    return "ismrmrd"
        except OSError:
            return None
    return None


def _is_hdf5(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def read_kspace(path: str, *, layout: str | None = None, mask: str | None = None) -> KSpace:
    """Read any supported k-space file (see the module docstring).

    Args:
        path: The file (``.h5``/``.mrd``, ``.cfl`` or ``.hdr``, ``.npy``).
        layout: Axis names of a ``.npy`` array, e.g. ``"coil,ro,pe"``.
        mask: A ``.npy`` file with the sampling mask (1D pe, 2D, or per slice); else
            the data's zeros (or the file's ``mask``) define it.

    Raises:
        InputError: unreadable, inconsistent or not k-space.
    """
    if not Path(path).exists() and not Path(path + ".cfl").exists():
        raise InputError("no such file", path)
    kind = kind_of(path)
    if kind == "fastmri":
        ks = read_fastmri(path)
    elif kind == "ismrmrd":
        ks = read_ismrmrd(path)
    elif kind == "cfl":
        ks = read_cfl(path)
    elif kind == "npy":
        ks = read_npy(path, layout)
    else:
        raise InputError("not k-space (fastMRI/ISMRMRD HDF5, BART .cfl, or complex .npy)", path)
    if mask is not None:
        try:
            m = np.load(mask)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read the mask ({e})", mask) from None
        ks.mask = broadcast_mask(m != 0, ks.data.shape, mask)
        ks.data = ks.data * ks.mask[:, None]
    return check(ks, path)


# -- fastMRI ----------------------------------------------------------------------------------------


def _xml_geometry(xml: str, path: str) -> dict[str, Any]:
    """Matrix and FOV of encodedSpace/reconSpace, and medcli's affine if stored, from ISMRMRD XML."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise InputError(f"ismrmrd_header is not XML ({e})", path) from None

    def find(*names: str) -> Any:
        node = root
        for n in names:
            node = node.find(f"{{{NS}}}{n}") if node is not None else None
        return node

    out: dict[str, Any] = {}
    for space in ("encodedSpace", "reconSpace"):
        m, f = find("encoding", space, "matrixSize"), find("encoding", space, "fieldOfView_mm")
        if m is not None:
            out[space + "_matrix"] = tuple(int(float(m.find(f"{{{NS}}}{a}").text)) for a in "xyz")
        if f is not None:
            out[space + "_fov"] = tuple(float(f.find(f"{{{NS}}}{a}").text) for a in "xyz")
    for up in root.iter(f"{{{NS}}}userParameterString"):
        if up.findtext(f"{{{NS}}}name") == "medcli_affine":
            out["affine"] = _parse_affine(up.findtext(f"{{{NS}}}value") or "", path)
    return out


def _parse_affine(text: str, path: str) -> np.ndarray:
    vals = [float(v) for v in re.split(r"[\s,]+", text.strip()) if v]
    if len(vals) != 16:
        raise InputError(f"stored affine has {len(vals)} numbers, not 16", path)
    return np.asarray(vals).reshape(4, 4)


def header_xml(ro: int, pe: int, slices: int, recon: tuple[int, int], affine: np.ndarray, extra: dict[str, str] | None = None) -> str:
    """A minimal ISMRMRD header: matrices, fields of view, medcli's affine (and simulation facts)."""
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    enc_fov = (ro * sp[0], pe * sp[1], sp[2])
    rec_fov = (recon[0] * sp[0], recon[1] * sp[1], sp[2])

    def space(name: str, mat: tuple[int, int, int], fov: tuple[float, ...]) -> str:
        m = "".join(f"<{a}>{v}</{a}>" for a, v in zip("xyz", mat))
        f = "".join(f"<{a}>{v:.6f}</{a}>" for a, v in zip("xyz", fov))
        return f"<{name}><matrixSize>{m}</matrixSize><fieldOfView_mm>{f}</fieldOfView_mm></{name}>"

    params = {"medcli_affine": " ".join(f"{v:.9g}" for v in affine.ravel()), **(extra or {})}
    ups = "".join(f"<userParameterString><name>{k}</name><value>{v}</value></userParameterString>" for k, v in params.items())
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<ismrmrdHeader xmlns="{NS}">'
        f"<encoding>{space('encodedSpace', (ro, pe, 1), enc_fov)}{space('reconSpace', (recon[0], recon[1], 1), rec_fov)}"
        f"<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{pe - 1}</maximum>"
        f"<center>{pe // 2}</center></kspace_encoding_step_1><slice><minimum>0</minimum><maximum>{slices - 1}</maximum>"
        f"<center>0</center></slice></encodingLimits><trajectory>cartesian</trajectory></encoding>"
        f"<userParameters>{ups}</userParameters></ismrmrdHeader>"
    )


def _geometry(geo: dict[str, Any], shape: tuple[int, ...], path: str) -> tuple[np.ndarray, tuple[int, int]]:
    """(affine, recon_shape) from header fields, checked against the data's shape."""
    s, _, ro, pe = shape
    enc = geo.get("encodedSpace_matrix")
    if enc is not None and (enc[0], enc[1]) != (ro, pe):
        raise InputError(f"header says the encoded matrix is {enc[0]}x{enc[1]}, the k-space is {ro}x{pe}", path)
    rec = geo.get("reconSpace_matrix")
    recon = (int(rec[0]), int(rec[1])) if rec is not None else (ro, pe)
    if recon[0] > ro or recon[1] > pe:
        raise InputError(f"header's reconstruction matrix {recon[0]}x{recon[1]} is larger than the k-space {ro}x{pe}", path)
    if "affine" in geo:
        return geo["affine"], recon
    fov = geo.get("reconSpace_fov")
    if fov is not None and all(v > 0 for v in fov):
        spacing = (fov[0] / recon[0], fov[1] / recon[1], fov[2])
    else:
        spacing = (1.0, 1.0, 1.0)
    return default_affine(spacing, (recon[0], recon[1], s)), recon


def read_fastmri(path: str) -> KSpace:
    """fastMRI HDF5: ``kspace`` (slices, coils, ro, pe) or (slices, ro, pe), ``ismrmrd_header``, optional ``mask``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            k = np.asarray(f["kspace"][()])
            mask = np.asarray(f["mask"][()]) if "mask" in f else None
            xml = f["ismrmrd_header"][()] if "ismrmrd_header" in f else None
            attr_aff = f.attrs.get("medcli_affine")
            meta = {k2: (v.item() if hasattr(v, "item") else v) for k2, v in f.attrs.items() if k2 != "medcli_affine"}
    except (OSError, KeyError) as e:
        raise InputError(f"cannot read fastMRI HDF5 ({e})", path) from None
    if not np.iscomplexobj(k):
        raise InputError(f"kspace is {k.dtype}, not complex", path)
    if k.ndim == 2:
        k = k[None, None]
    elif k.ndim == 3:
        k = k[:, None]
    elif k.ndim != 4:
        raise InputError(f"kspace has {k.ndim} dimensions; expected (slices, coils, ro, pe) or (slices, ro, pe)", path)
    k = k.astype(np.complex64, copy=False)
    geo = _xml_geometry(xml.decode() if isinstance(xml, bytes) else str(xml), path) if xml is not None else {}
    if attr_aff is not None:
        geo["affine"] = np.asarray(attr_aff, float).reshape(4, 4)
    affine, recon = _geometry(geo, k.shape, path)
    m = broadcast_mask(mask != 0, k.shape, path) if mask is not None else mask_from_data(k)
    return KSpace(k * m[:, None] if mask is not None else k, m, affine, recon, {"format": "fastmri", **meta})


def write_fastmri(ks: KSpace, dest: Path, extra: dict[str, str] | None = None, reference: np.ndarray | None = None) -> None:
    """fastMRI layout; ``reference`` (slices, ro, pe) is stored as ``reconstruction_rss`` as fastMRI does."""
    import h5py

    s, _, ro, pe = ks.data.shape
    with h5py.File(dest, "w") as f:
        f.create_dataset("kspace", data=ks.data.astype(np.complex64), compression="gzip", compression_opts=1)
        m = ks.mask
        if np.all(m == m[:1]) and np.all(m[0] == m[0, :1]):
            f.create_dataset("mask", data=m[0, 0].astype(np.float32))
        f.create_dataset("ismrmrd_header", data=header_xml(ro, pe, s, ks.recon_shape, ks.affine, extra).encode())
        if reference is not None:
            f.create_dataset("reconstruction_rss", data=reference.astype(np.float32), compression="gzip", compression_opts=1)
            f.attrs["max"] = float(reference.max())
        f.attrs["medcli_affine"] = ks.affine
        f.attrs["acquisition"] = "medcli simulate"
        for key, val in (extra or {}).items():
            f.attrs[key] = val


# -- ISMRMRD ----------------------------------------------------------------------------------------


def _ismrmrd():
    try:
        import ismrmrd
    except ImportError:
        raise ProcessingError("ISMRMRD files need the 'ismrmrd' package: pip install ismrmrd") from None
    return ismrmrd


def read_ismrmrd(path: str) -> KSpace:
    """ISMRMRD HDF5 (``/dataset/xml`` + ``/dataset/data`` acquisitions), Cartesian 2D multi-slice."""
    ismrmrd = _ismrmrd()
    try:
        ds = ismrmrd.Dataset(path, "dataset", create_if_needed=False)
    except Exception as e:  # noqa: BLE001 - the package raises bare Exceptions
        raise InputError(f"cannot open ISMRMRD dataset ({e})", path) from None
    try:
        xml = ds.read_xml_header()
        xml = xml.decode() if isinstance(xml, bytes) else str(xml)
        geo = _xml_geometry(xml, path)
        if "encodedSpace_matrix" not in geo:
            raise InputError("ISMRMRD header has no encodedSpace matrix", path)
        ro, pe, _ = geo["encodedSpace_matrix"]
        root = ET.fromstring(xml)
        centre = root.find(f".//{{{NS}}}kspace_encoding_step_1/{{{NS}}}center")
        shift = pe // 2 - (int(centre.text) if centre is not None else pe // 2)
        lines: list[tuple[int, int, np.ndarray]] = []
        for i in range(ds.number_of_acquisitions()):
            acq = ds.read_acquisition(i)
            if int(acq.flags) & _NOISE_FLAG:
                continue
            lines.append((int(acq.idx.slice), int(acq.idx.kspace_encode_step_1) + shift, np.asarray(acq.data)))
    finally:
        ds.close()
    if not lines:
        raise InputError("ISMRMRD dataset holds no imaging acquisitions", path)
    coils = {ln[2].shape[0] for ln in lines}
    if len(coils) > 1:
        raise InputError(f"acquisitions have different coil counts {sorted(coils)}", path)
    samples = {ln[2].shape[1] for ln in lines}
    if samples != {ro}:
        raise InputError(f"header says {ro} readout samples, acquisitions have {sorted(samples)}", path)
    nsl = max(ln[0] for ln in lines) + 1
    k = np.zeros((nsl, coils.pop(), ro, pe), np.complex64)
    m = np.zeros((nsl, ro, pe), bool)
    for sl, line, d in lines:
        if not 0 <= line < pe:
            raise InputError(f"phase-encoding step {line} outside the encoded matrix of {pe} lines", path)
        k[sl, :, :, line] = d
        m[sl, :, line] = True
    affine, recon = _geometry(geo, k.shape, path)
    return KSpace(k, m, affine, recon, {"format": "ismrmrd"})


def write_ismrmrd(ks: KSpace, dest: Path, extra: dict[str, str] | None = None) -> None:
    """One acquisition per sampled line and slice, with medcli's header."""
    ismrmrd = _ismrmrd()
    s, c, ro, pe = ks.data.shape
    ds = ismrmrd.Dataset(str(dest), "dataset", create_if_needed=True)
    try:
        ds.write_xml_header(header_xml(ro, pe, s, ks.recon_shape, ks.affine, extra))
        for sl in range(s):
            for line in np.flatnonzero(ks.mask[sl].any(axis=0)):
                acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(ks.data[sl, :, :, line]))
                acq.idx.slice = sl
                acq.idx.kspace_encode_step_1 = int(line)
                acq.center_sample = ro // 2
                ds.append_acquisition(acq)
    finally:
        ds.close()


# -- BART .cfl/.hdr ---------------------------------------------------------------------------------


def _cfl_base(path: str) -> str:
    return path[:-4] if path.lower().endswith((".cfl", ".hdr")) else path


def read_cfl(path: str) -> KSpace:
    """BART: dims (readout, phase 1, phase 2, coils, ..., slice at dim 13), complex64 column-major.

    Phase 2 > 1 is 3D k-space: it is inverse-transformed along phase 2 into
    slices first (so a mask must be the same on every partition).
    """
    base = _cfl_base(path)
    try:
        lines = Path(base + ".hdr").read_text().splitlines()
    except OSError as e:
        raise InputError(f"cannot read the BART header ({e.strerror})", base + ".hdr") from None
    dims, affine = None, None
    for i, ln in enumerate(lines):
        if ln.startswith("# Dimensions") and i + 1 < len(lines):
            dims = [int(v) for v in lines[i + 1].split()]
        if ln.startswith("# medcli affine") and i + 1 < len(lines):
            affine = _parse_affine(lines[i + 1], path)
    if not dims:
        raise InputError("BART header has no '# Dimensions' line", base + ".hdr")
    dims = (dims + [1] * 16)[:16]
    n = int(np.prod(dims))
    try:
        raw = np.fromfile(base + ".cfl", dtype=np.complex64)
    except OSError as e:
        raise InputError(f"cannot read the BART data ({e.strerror})", base + ".cfl") from None
    if raw.size != n:
        raise InputError(f"header says {dims[:4]} ({n} samples), the .cfl holds {raw.size}", base + ".cfl")
    arr = raw.reshape(dims, order="F")
    others = [d for i, d in enumerate(dims) if i not in (0, 1, 2, 3, 13) and d > 1]
    if others:
        raise InputError(f"BART dims beyond readout/phase/coil/slice are not supported: {dims}", path)
    arr = arr[:, :, :, :, 0, 0, 0, 0, 0, 0, 0, 0, 0, :, 0, 0]  # (ro, pe1, pe2, coil, slice)
    is3d = dims[2] > 1
    if is3d:
        if dims[13] > 1:
            raise InputError("both phase 2 (3D) and slices (dim 13) > 1", path)
        arr = ifftc(arr, axis=2)[..., 0]
    else:
        arr = arr[:, :, 0, :, :]
    k = np.ascontiguousarray(arr.transpose(3, 2, 0, 1)).astype(np.complex64)  # (slice, coil, ro, pe)
    m = mask_from_data(k)
    if affine is None:
        affine = default_affine((1.0, 1.0, 1.0), (k.shape[2], k.shape[3], k.shape[0]))
    return KSpace(k, m, affine, (k.shape[2], k.shape[3]), {"format": "cfl", "3d": is3d})


def ifftc(x: np.ndarray, axis: int) -> np.ndarray:
    from medcli.recon.mri.fft import ifftc as f

    return f(x, axis)


def cfl_parts(arr: np.ndarray, affine: np.ndarray | None = None) -> tuple[str, np.ndarray]:
    """The .hdr text and the column-major complex64 data of a BART file holding ``arr``."""
    hdr = "# Dimensions\n" + " ".join(str(d) for d in arr.shape) + "\n"
    if affine is not None:
        hdr += "# medcli affine\n" + " ".join(f"{v:.9g}" for v in affine.ravel()) + "\n"
    return hdr, np.asfortranarray(arr.astype(np.complex64))


def kspace_to_bart(ks: KSpace) -> np.ndarray:
    """(slice, coil, ro, pe) -> BART dims (ro, pe, 1, coil, 1 x 9, slice)."""
    s, c, ro, pe = ks.data.shape
    out = np.zeros((ro, pe, 1, c) + (1,) * 9 + (s,), np.complex64)
    out[:, :, 0, :, 0, 0, 0, 0, 0, 0, 0, 0, 0, :] = ks.data.transpose(2, 3, 1, 0)
    if s == 1:
        out = out[..., 0]
    return out


def save_cfl(arr: np.ndarray, dest: str, force: bool, affine: np.ndarray | None = None) -> list[str]:
    """Atomically write ``dest`` (.cfl or base name) as the .cfl/.hdr pair; returns the paths written."""
    from medcli.io.safe import atomic_output, check_writable

    base = _cfl_base(dest)
    hdr_text, data = cfl_parts(arr, affine)
    check_writable(base + ".cfl", force)
    check_writable(base + ".hdr", force)
    with atomic_output(base + ".cfl", force) as tmp:
        data.ravel(order="F").tofile(tmp)
    with atomic_output(base + ".hdr", force) as tmp:
        tmp.write_text(hdr_text)
    return [base + ".cfl", base + ".hdr"]


# -- .npy -------------------------------------------------------------------------------------------


def parse_layout(layout: str, ndim: int, path: str) -> list[int]:
    """``"coil,ro,pe"`` -> the permutation to (slice, coil, ro, pe), missing axes added as 1."""
    names = [n.strip().lower() for n in layout.split(",") if n.strip()]
    bad = [n for n in names if n not in LAYOUT_AXES]
    if bad or len(set(names)) != len(names) or "ro" not in names or "pe" not in names:
        raise InputError(f"--layout {layout!r}: name each axis once from {', '.join(LAYOUT_AXES)} (ro and pe required)", path)
    if len(names) != ndim:
        raise InputError(f"--layout names {len(names)} axes, the array has {ndim}", path)
    return names


def read_npy(path: str, layout: str | None) -> KSpace:
    """A complex ``.npy`` whose axes ``--layout`` names (default by rank: ro,pe / coil,ro,pe / slice,coil,ro,pe)."""
    try:
        arr = np.load(path)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read .npy ({e})", path) from None
    if arr.ndim not in DEFAULT_LAYOUTS:
        raise InputError(f".npy k-space has {arr.ndim} axes; 2 to 4 expected", path)
    names = parse_layout(layout or DEFAULT_LAYOUTS[arr.ndim], arr.ndim, path)
    for n in LAYOUT_AXES:
        if n not in names:
            arr = arr[..., None]
            names.append(n)
    k = np.ascontiguousarray(np.transpose(arr, [names.index(n) for n in LAYOUT_AXES])).astype(np.complex64)
    aff = default_affine((1.0, 1.0, 1.0), (k.shape[2], k.shape[3], k.shape[0]))
    return KSpace(k, mask_from_data(k), aff, (k.shape[2], k.shape[3]), {"format": "npy"})

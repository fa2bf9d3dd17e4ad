"""The other volume formats nibabel reads, and a one-line refusal for the non-volume ones.

==========================  ==========================================  =========================
format                      extensions                                  values
==========================  ==========================================  =========================
Philips PAR/REC             .PAR + .REC                                 display values (DV)
MINC 1 and 2                .mnc                                        scaled per slice (float64)
Analyze 7.5, NIfTI pairs    .hdr + .img (.gz)                           scl_slope/scl_inter applied
AFNI                        .HEAD + .BRIK (.gz, .bz2)                   BRICK_FLOAT_FACS applied
ECAT 7                      .v                                          scaled per frame (float64)
==========================  ==========================================  =========================

PAR/REC: nibabel's default and dcm2niix's choice, the *display value*
``DV = PV * RS + RI`` (what the scanner console shows), not the floating-point
value ``FP = DV / (RS * SS)``; ``medcli info`` says so. Quantitative work across
scans that needs FP should convert with nibabel's ``parrec2nii --scaling=fp``.

CIFTI-2 (``.dconn.nii``, ``.dtseries.nii`` ...), GIFTI (``.gii``), streamlines
(``.trk``, ``.tck``, ``.trx``) and FreeSurfer surface files hold no image
volume: they are refused with one line that names a tool that reads them.
"""

from __future__ import annotations

from pathlib import Path

from medcli.errors import InputError
from medcli.image import Image

#: Lower-case file-name ending -> (format key, name in messages).
_VOLUMES = {
    ".par": ("parrec", "PAR/REC"),
    ".rec": ("parrec", "PAR/REC"),
    ".mnc": ("minc", "MINC"),
    ".hdr": ("pair", "Analyze/NIfTI pair"),
    ".img": ("pair", "Analyze/NIfTI pair"),
    ".hdr.gz": ("pair", "Analyze/NIfTI pair"),
    ".img.gz": ("pair", "Analyze/NIfTI pair"),
    ".head": ("afni", "AFNI"),
    ".brik": ("afni", "AFNI"),
    ".brik.gz": ("afni", "AFNI"),
    ".brik.bz2": ("afni", "AFNI"),
    ".v": ("ecat", "ECAT"),
}

#: Data-file partners: a header without its data (or the reverse) is refused up front.
_PARTNERS = {
    ".par": (".rec",),
    ".rec": (".par",),
    ".hdr": (".img", ".img.gz"),
    ".hdr.gz": (".img.gz", ".img"),
    ".img": (".hdr",),
    ".img.gz": (".hdr.gz", ".hdr"),
    ".head": (".brik", ".brik.gz", ".brik.bz2"),
    ".brik": (".head",),
    ".brik.gz": (".head",),
    ".brik.bz2": (".head",),
}

_NOT_VOLUMES = {
    ".gii": "GIFTI surface data; read it with nibabel.gifti or Connectome Workbench",
    ".gii.gz": "GIFTI surface data; read it with nibabel.gifti or Connectome Workbench",
    ".gii.bz2": "GIFTI surface data; read it with nibabel.gifti or Connectome Workbench",
    ".trk": "TrackVis streamlines; read them with nibabel.streamlines, DIPY or MRtrix (tckconvert)",
    ".tck": "MRtrix streamlines; read them with nibabel.streamlines, DIPY or MRtrix (tckconvert)",
    ".trx": "TRX streamlines; read them with trx-python or DIPY",
    ".annot": "FreeSurfer surface annotation; read it with nibabel.freesurfer",
    ".label": "FreeSurfer surface label; read it with nibabel.freesurfer",
}

_CIFTI = "CIFTI-2 grayordinate data; use Connectome Workbench (wb_command -cifti-separate) or nibabel.cifti2"
_CIFTI_KINDS = ("dconn", "dtseries", "dscalar", "dlabel", "pconn", "ptseries", "pscalar", "plabel", "dpconn",
                "pdconn", "pconnseries", "pconnscalar", "dfan", "dfibersamp", "dfansamp", "fiberTEMP")  # fmt: skip


def _ending(path: Path, table: dict) -> str | None:
    name = path.name.lower()
    for end in sorted(table, key=len, reverse=True):
        if name.endswith(end) and len(name) > len(end):
            return end
    return None


def neuro_format(path: Path) -> tuple[str, str] | None:
    """``(key, name)`` of a nibabel volume format from the file name, or None.

    Raises:
        InputError: the file is a known non-volume format (CIFTI, GIFTI, streamlines).
    """
    end = _ending(path, _NOT_VOLUMES)
    if end:
        raise InputError(f"not an image volume ({_NOT_VOLUMES[end]})", path)
    name = path.name.lower()
    for kind in _CIFTI_KINDS:
        if name.endswith(f".{kind.lower()}.nii"):
            raise InputError(f"not an image volume ({_CIFTI})", path)
    end = _ending(path, _VOLUMES)
    return _VOLUMES[end] if end else None


def refuse_non_volume(nimg, path) -> None:
    """Refuse what nibabel opened but is no volume: CIFTI-2 (by class or NIfTI intent 3000-3099)."""
    if "cifti" in type(nimg).__name__.lower():
        raise InputError(f"not an image volume ({_CIFTI})", path)
    try:
        code = int(nimg.header["intent_code"])
    except Exception:  # not a NIfTI header
        code = 0
    if 3000 <= code < 3100:
        raise InputError(f"not an image volume ({_CIFTI})", path)


def _partner(path: Path) -> None:
    """Refuse a header without its data file (or data without its header) before nibabel tries."""
    end = _ending(path, _PARTNERS)
    if end is None:
        return
    stem = path.name[: -len(end)]
    siblings = {p.name.lower(): p for p in path.parent.iterdir()} if path.parent.is_dir() else {}
    for other in _PARTNERS[end]:
        if (stem + other).lower() in siblings:
            return
    other = _PARTNERS[end][0]
    want = stem + (other.upper() if path.name[-len(end):].isupper() else other)
    raise InputError(f"{'header' if end in ('.par', '.hdr', '.hdr.gz', '.head') else 'data file'} "
                     f"without its partner {want} (both files are needed)", path)


def read_neuro(path: Path, key: str, name: str) -> Image:
    """Read a PAR/REC, MINC, Analyze/NIfTI pair, AFNI or ECAT file through nibabel (lazy voxels)."""
    from medcli.io.nifti import read_nibabel

    _partner(path)

    def load(p: Path):
        import nibabel as nib

        if key == "parrec":
            from nibabel import parrec

            return parrec.load(str(p), scaling="dv", permit_truncated=False)
        if key == "ecat":
            from nibabel import ecat

            return ecat.load(str(p))
        if key == "pair" and str(p).lower().endswith((".img", ".img.gz")):
            hdr = p.parent / (p.name[: -len(".img")] + ".hdr") if str(p).lower().endswith(".img") else \
                p.parent / (p.name[: -len(".img.gz")] + ".hdr.gz")
            cand = [c for c in p.parent.iterdir() if c.name.lower() == hdr.name.lower()]
            p = cand[0] if cand else hdr
        return nib.load(str(p))

    img = read_nibabel(path, load=load, kind=name)
    if key == "parrec":
        img.meta["values"] = "Philips display values DV = PV*RS + RI (nibabel's default); not FP = DV/(RS*SS)"
    elif key in ("minc", "ecat") or img.meta.get("format") == "AFNIImage" and img.dtype.kind == "f":
        img.meta["values"] = "scale factors of the file applied (per slice/frame/sub-brick)"
    return img

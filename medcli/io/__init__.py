"""One I/O path for every command: :func:`read` and :func:`write`.

Formats are chosen by extension for outputs and by extension or content for
inputs:

==========================  ==========================  ========  ====================
format                      extensions                  write     library
==========================  ==========================  ========  ====================
NIfTI-1/2                   .nii, .nii.gz               yes       nibabel
MGH/MGZ                     .mgh, .mgz                  yes       nibabel
NRRD                        .nrrd, .nhdr                yes       SimpleITK
MetaImage                   .mha, .mhd                  yes       SimpleITK
DICOM                       folder, .dcm, no ext.       no        pydicom
Analyze 7.5 / NIfTI pair    .hdr + .img (.gz)           no        nibabel
Philips PAR/REC             .PAR + .REC                 no        nibabel (display values)
MINC 1 and 2                .mnc                        no        nibabel
AFNI                        .HEAD + .BRIK(.gz)          no        nibabel
ECAT 7                      .v                          no        nibabel
==========================  ==========================  ========  ====================

Values are never changed silently: scale factors (NIfTI scl_slope/scl_inter,
MINC, PAR/REC, AFNI, ECAT) are applied on reading; writers store the values
exactly (:mod:`medcli.io.values`): NIfTI keeps the raw integers and scale
factors of an unchanged scaled image, NRRD/MetaImage get a float type that
holds the values, MGH (float32 at most) warns with the numbers when it rounds.
CIFTI-2, GIFTI and streamlines (.trk/.tck/.trx) are no image volumes and are
refused in one line that names a tool for them (see :mod:`medcli.io.neuro`).

DICOM series are sorted by slice position along the slice normal, never by
file order; a series that is not one regular grid (missing slices, irregular
spacing, gantry tilt, mixed orientations) is refused with an InputError that
names the defect rather than resampled (see :mod:`medcli.io.dicom`).

``-`` reads a NIfTI-1/2 stream (gzipped or not) from stdin and writes an
uncompressed NIfTI-1 stream to stdout. ``sample:NAME`` reads a bundled sample
(see :mod:`medcli.samples`).

Example:
    >>> from medcli import io
    >>> img = io.read("sample:t1")  # doctest: +SKIP
    >>> io.write(img, "t1.nrrd", force=True)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from medcli.errors import InputError, ProcessingError
from medcli.image import Image
from medcli.io.safe import atomic_output, check_writable, os_error_to_input, suffixes

STDIO = "-"

#: Output extension -> format name.
WRITE_FORMATS = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".mgh": "mgh",
    ".mgz": "mgh",
    ".nrrd": "itk",
    ".nhdr": "itk",
    ".mha": "itk",
    ".mhd": "itk",
}

#: Refuse images larger than this unless MEDCLI_MAX_MEMORY says otherwise
#: (bytes of float32 voxels; a header claiming more is corrupt or absurd).
DEFAULT_MAX_BYTES = 16 * 1024**3


def max_bytes() -> int:
    env = os.environ.get("MEDCLI_MAX_MEMORY")
    if env:
        return parse_size(env)
    return DEFAULT_MAX_BYTES


def parse_size(text: str) -> int:
    """``'8G'`` -> 8 GiB in bytes; plain numbers are bytes."""
    text = text.strip().upper().rstrip("B")
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    if text and text[-1] in mult:
        return int(float(text[:-1]) * mult[text[-1]])
    return int(float(text))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def format_of(path: str | Path) -> str | None:
    """The write format of ``path`` from its extension, or None."""
    return WRITE_FORMATS.get(suffixes(path).lower())


def read(source: str | Path, *, series: str | None = None) -> Image:
    """Read an image from a file, a DICOM folder, ``-`` (stdin) or ``sample:NAME``.

    Args:
        source: Where to read from.
        series: DICOM SeriesInstanceUID or SeriesNumber, when a folder holds several.

    Raises:
        InputError: missing, unreadable, corrupt or absurd input (one-line message).
    """
    src = str(source)
    if src == STDIO:
        from medcli.io.stream import read_stdin

        return read_stdin()
    if src.startswith("sample:"):
        from medcli.samples import sample_path

        return read(sample_path(src[len("sample:"):]), series=series)
    path = Path(src)
    if not path.exists():
        raise InputError("no such file or directory", path)
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise InputError("permission denied", path)
    if path.is_dir():
        from medcli.io.dicom import read_dicom

        with reader_errors("DICOM", path):
            img = read_dicom(path, series=series)
        check_geometry(img, path)
        img.meta.setdefault("source", str(path))
        return img
    try:
        st = path.stat()
    except OSError as e:
        raise os_error_to_input(e, path) from e
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
        # A pipe given as a file name, e.g. bash's <(zcat scan.nii.gz): a NIfTI stream.
        from medcli.io.stream import image_from_bytes

        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise os_error_to_input(e, path) from e
        img = image_from_bytes(raw, str(path))
        check_geometry(img, path)
        return img
    if st.st_size == 0:
        raise InputError("empty file (0 bytes)", path)
    ext = suffixes(path).lower()
    from medcli.io.neuro import neuro_format

    # DICOM by content first: scanners name files anything, .img included
    other = None if _is_dicom(path) else neuro_format(path)  # also refuses CIFTI, GIFTI, streamlines by name
    if other:
        from medcli.io.neuro import read_neuro

        with reader_errors(other[1], path):
            img = read_neuro(path, *other)
    elif ext in (".nii", ".nii.gz", ".mgh", ".mgz"):
        from medcli.io.nifti import read_nibabel

        with reader_errors("NIfTI" if ext.startswith(".nii") else "MGH/MGZ", path):
            img = read_nibabel(path)
    elif ext in (".nrrd", ".nhdr", ".mha", ".mhd"):
        from medcli.io.itk import read_itk

        with reader_errors(ext.lstrip(".").upper(), path):
            img = read_itk(path)
    elif ext in (".dcm", ".ima", "") or _is_dicom(path):
        from medcli.io.dicom import read_dicom

        with reader_errors("DICOM", path):
            img = read_dicom(path, series=series)
    else:
        raise InputError(
            f"unknown image format {ext!r} (expected NIfTI, MGH, NRRD, MetaImage, DICOM, PAR/REC, MINC, "
            ".hdr/.img, AFNI .HEAD/.BRIK or ECAT .v)",
            path,
        )
    check_geometry(img, path)
    img.meta.setdefault("source", str(path))
    return img


@contextmanager
def reader_errors(kind: str, path: Path) -> Iterator[None]:
    """A reader's unforeseen exception on a corrupt file becomes a one-line InputError.

    Each reader words the defects it knows; this is the net under them for
    what a third-party parser raises on bytes nobody foresaw (found by
    ``scripts/fuzz_readers.py``): the user gets one line naming the file,
    never a traceback.
    """
    from medcli.errors import MedcliError

    try:
        yield
    except MedcliError:
        raise
    except MemoryError as e:
        raise InputError("not enough memory to read the header", path) from e
    except RecursionError as e:
        raise InputError(f"not a valid {kind} file (nested too deeply)", path) from e
    except Exception as e:  # noqa: BLE001 - see the docstring
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise InputError(f"not a valid {kind} file ({type(e).__name__}: {first})", path) from e


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return head[128:132] == b"DICM"
    except OSError:
        return False


def check_size(shape: tuple[int, ...], path: str | Path) -> None:
    """Refuse a header whose dimensions are absurd, before allocating anything."""
    if any(int(s) <= 0 for s in shape):
        raise InputError(f"invalid dimensions {tuple(int(s) for s in shape)} in header", path)
    need = float(np.prod([float(s) for s in shape])) * 4
    limit = max_bytes()
    if need > limit:
        raise InputError(
            f"header claims dimensions {tuple(int(s) for s in shape)}, which would need "
            f"{human_bytes(need)} of memory (limit {human_bytes(limit)}, set MEDCLI_MAX_MEMORY to raise it)",
            path,
        )


def check_geometry(img: Image, path: str | Path) -> None:
    """Refuse zero/negative voxel sizes, singular or non-finite affines."""
    aff = img.affine
    if not np.all(np.isfinite(aff)):
        raise InputError("affine contains NaN or Inf", path)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e300 in a header: refused below, not warned about
        sp = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    if not np.all(np.isfinite(sp)) or np.any(sp > 1e6):
        raise InputError(f"absurd voxel size {tuple(float(f'{s:.6g}') for s in sp)} mm in header", path)
    if np.any(sp <= 1e-9):
        raise InputError(f"zero voxel size {tuple(round(float(s), 6) for s in sp)} in header", path)
    if abs(np.linalg.det(aff[:3, :3])) < 1e-12 * float(np.prod(sp)):
        raise InputError("singular affine (voxel axes are not independent)", path)


def check_finite(img: Image, path: str | Path | None = None, allow: bool = False) -> Image:
    """Refuse NaN/Inf voxels; with ``allow``, replace them by 0 and warn."""
    data = img.data
    if not np.issubdtype(data.dtype, np.floating):
        return img
    bad = ~np.isfinite(data)
    n = int(bad.sum())
    if n == 0:
        return img
    where = path or img.meta.get("source", "input")
    if not allow:
        raise InputError(f"{n} voxels are NaN or Inf (fix the image, or set them to 0 first)", where)
    from medcli.runtime import log

    log.warning(f"{where}: {n} NaN/Inf voxels set to 0")
    fixed = np.where(bad, 0, data).astype(data.dtype)
    return img.with_data(fixed)


def check_3d(img: Image, path: str | Path | None = None, allow_4d: bool = True) -> None:
    """Refuse images that are not 3D (or 4D when ``allow_4d``)."""
    where = path or img.meta.get("source", "input")
    shape = img.shape
    if len(shape) < 3 or sum(s > 1 for s in shape[:3]) < 3:
        raise InputError(f"this command needs a 3D image, got shape {shape}", where)
    if len(shape) == 4 and not allow_4d and shape[3] > 1:
        raise InputError(f"this command needs a 3D image, got 4D shape {shape}", where)


def write(image: Image, dest: str | Path, *, force: bool = False, description: str | None = None) -> None:
    """Write ``image`` atomically to ``dest`` (``-`` for stdout).

    Raises:
        ProcessingError: unknown extension, output exists without ``force``,
            folder missing or read-only, disk full.
    """
    if description:
        image.meta["description"] = description
    if str(dest) == STDIO:
        from medcli.io.stream import write_stdout

        write_stdout(image)
        return
    fmt = format_of(dest)
    if fmt is None:
        raise ProcessingError(
            f"unknown output extension {suffixes(dest)!r} (use .nii.gz, .nii, .mgz, .nrrd, .nhdr, .mha or .mhd)", dest
        )
    check_writable(dest, force)
    if fmt in ("nifti", "mgh"):
        from medcli.io.nifti import write_nibabel as writer
    else:
        from medcli.io.itk import write_itk as writer
    if suffixes(dest).lower() in (".nhdr", ".mhd"):
        _write_detached(image, Path(dest), force, writer)
        return
    with atomic_output(dest, force) as tmp:
        writer(image, tmp)


def _write_detached(image: Image, dest: Path, force: bool, writer) -> None:
    """Header + data file pairs: write both in a private folder, then move both, header last.

    Two renames cannot be one atomic step: a kill between them leaves the new
    data file without its header, i.e. no output (the header is the name the
    user gave), which the next write replaces.
    """
    import shutil
    import tempfile

    tmpdir = Path(tempfile.mkdtemp(prefix=".medcli-", dir=dest.parent))
    try:
        writer(image, tmpdir / dest.name)
        files = sorted(tmpdir.iterdir(), key=lambda p: p.name == dest.name)  # header last
        for f in files:
            target = dest.parent / f.name
            if target.exists() and not force:
                raise ProcessingError("output exists (use --force to overwrite)", target)
        from medcli.io.safe import _fsync

        for f in files:
            _fsync(f)
        if dest.exists():
            # The old header goes first: killed between the renames, the output is then absent
            # (a data file without header), never the old header describing the new data.
            os.unlink(dest)
        for f in files:
            os.replace(f, dest.parent / f.name)
    except OSError as e:
        from medcli.io.safe import _os_error

        raise _os_error(e, dest) from e
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


__all__ = ["read", "write", "format_of", "check_finite", "check_3d", "check_size", "Image", "STDIO", "WRITE_FORMATS"]

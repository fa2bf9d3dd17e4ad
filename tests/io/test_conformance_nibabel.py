"""Conformance: every file in nibabel's installed test data through ``info`` and ``convert``.

Each file is either converted (to NIfTI, MGZ, NRRD and MetaImage) with its
geometry within 1e-5 mm of nibabel's own reading and its values exact (or
exactly nibabel's values rounded to float32), or refused in one line that names
the file and a reason. No internal error, no silent difference. DICOM files are
left to the pydicom conformance test.

``python tests/io/test_conformance_nibabel.py`` prints the counts (for the README).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medcli import io
from medcli.commands.convert import convert
from medcli.commands.info import format_text, image_info
from medcli.errors import MedcliError

NIB = Path(nib.__file__).parent
DATA_DIRS = ("tests/data", "nicom/tests/data", "gifti/tests/data", "externals/tests/data", "cifti2/tests/data")
SKIP_SUFFIXES = (".py", ".pyc", ".m", ".rst", ".dcm", ".dcm.gz")  # code, docs; DICOM: see the pydicom test
OUTPUTS = ("nii.gz", "mgz", "nrrd", "mha")


def data_files() -> list[Path]:
    files = []
    for d in DATA_DIRS:
        folder = NIB / d
        if folder.is_dir():
            files += [p for p in sorted(folder.iterdir())
                      if p.is_file() and not p.name.startswith(".") and not p.name.lower().endswith(SKIP_SUFFIXES)]
    return files


FILES = data_files()


def nibabel_reading(path: Path):
    """nibabel's own (affine, scaled array) of a volume file, or None when nibabel reads no volume from it."""
    try:
        if path.suffix.lower() == ".v":
            from nibabel import ecat

            nimg = ecat.load(str(path))
        else:
            nimg = nib.load(str(path))
        if "cifti" in type(nimg).__name__.lower() or not hasattr(nimg, "dataobj"):
            return None
        arr = np.asanyarray(nimg.dataobj)
    except Exception:  # noqa: BLE001 - nibabel does not read it as a volume either
        return None
    names = getattr(getattr(nimg.dataobj, "minc_file", None), "_dim_names", None)
    if names is not None and arr.ndim == 4 and not str(names[0]).endswith("space"):
        arr = np.moveaxis(arr, 0, -1)  # MINC time axis first; medcli's time axis is the 4th
    if arr.ndim == 5 and arr.shape[3] == 1:
        arr = arr.reshape(arr.shape[:3] + (-1,))
    return np.asarray(nimg.affine, float), arr


def same_values(got: np.ndarray, ref: np.ndarray) -> bool:
    """Exactly nibabel's values, or exactly their float32 rounding."""
    if got.shape != ref.shape:
        return False
    if np.array_equal(got, ref, equal_nan=got.dtype.kind == "f" and ref.dtype.kind == "f"):
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.array_equal(got.astype(np.float32), ref.astype(np.float32), equal_nan=True)) and (
            got.dtype == np.float32 or ref.dtype == np.float32 or np.array_equal(got, ref.astype(np.float32))
        )


def check_refusal(e: MedcliError, path: Path) -> str:
    msg = str(e)
    assert "\n" not in msg, f"refusal is not one line: {msg!r}"
    assert str(path) in msg, f"refusal does not name the file: {msg!r}"
    reason = msg.split(str(path), 1)[1].lstrip(": ")
    assert len(reason) > 10, f"refusal gives no reason: {msg!r}"
    return reason


def outcome(path: Path, tmp: Path) -> tuple[str, str]:
    """('converted'|'refused', detail) for one file; asserts on any difference with nibabel."""
    ref = nibabel_reading(path)
    try:
        format_text(image_info(str(path), stats=False))
        img = io.read(path)
        data = img.data
    except MedcliError as e:
        reason = check_refusal(e, path)
        if ref is not None and not path.name.lower().endswith((".dconn.nii",)):
            raise AssertionError(f"nibabel reads {path.name} as a volume, medcli refused it: {reason}")
        return "refused", reason
    assert ref is not None, f"medcli read {path.name}, nibabel reads no volume from it"
    ref_aff, ref_data = ref
    np.testing.assert_allclose(img.affine, ref_aff, atol=1e-5, err_msg=f"{path.name}: affine")
    assert same_values(data, ref_data), f"{path.name}: values differ from nibabel's ({data.dtype} vs {ref_data.dtype})"
    for ext in OUTPUTS:
        out = tmp / f"{path.name}.{ext}"
        io.write(convert(img), out)
        back = io.read(out)
        np.testing.assert_allclose(back.affine, ref_aff, atol=1e-5, err_msg=f"{path.name} -> {ext}: affine")
        got = back.data
        if ext == "mgz" and ref_data.ndim == 4 and ref_data.shape[3] == 1:
            got = got[..., None]  # MGH has no 4D with one frame
        assert same_values(got, ref_data), f"{path.name} -> {ext}: values differ from nibabel's"
    return "converted", f"{img.meta.get('format')} {img.dtype}"


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.parent.name}/{p.name}" for p in FILES])
def test_file_converts_exactly_or_is_refused_in_one_line(path, tmp_path):
    outcome(path, tmp_path)


def test_the_walk_covers_the_formats():
    """Not a vacuous walk: the data is there and each nibabel volume format converts."""
    names = {p.name for p in FILES}
    assert len(FILES) >= 90
    for must in ("functional.nii", "phantom_varscale.PAR", "minc2_4d.mnc", "minc1_4d.mnc", "example4d+orig.HEAD",
                 "scaled+tlrc.BRIK", "test.mgz", "tinypet.v", "example_nifti2.nii.gz", "row_major.dconn.nii"):
        assert must in names


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, args, code, expect",
    [
        ("phantom_varscale.PAR", ["convert", "-o", "{tmp}/p.nii.gz"], 0, ""),
        ("minc1_4d.mnc", ["convert", "-o", "{tmp}/m.mgz"], 0, ""),
        ("scaled+tlrc.HEAD", ["info", "--header-only"], 0, "scale factors"),
        ("row_major.dconn.nii", ["convert", "-o", "{tmp}/c.nii.gz"], 3, "not an image volume (CIFTI-2"),
        ("simple.trk", ["info"], 3, "not an image volume (TrackVis streamlines"),
        ("T1.PAR", ["info"], 3, "without its partner T1.REC"),
    ],
)
def test_real_cli(tmp_path, name, args, code, expect):
    path = NIB / "tests" / "data" / name
    cmd = [a.format(tmp=tmp_path) for a in args]
    r = subprocess.run([sys.executable, "-m", "medcli", cmd[0], str(path), *cmd[1:]], capture_output=True, text=True)
    assert r.returncode == code, r.stderr
    if code:
        assert len(r.stderr.strip().splitlines()) == 1 and str(path) in r.stderr and expect in r.stderr
    else:
        assert expect in r.stdout
        if "-o" in cmd:
            out = Path(cmd[cmd.index("-o") + 1])
            ref_aff, ref = nibabel_reading(path)
            back = io.read(out)
            assert same_values(back.data, ref) and np.allclose(back.affine, ref_aff, atol=1e-5)


def counts(tmp: Path) -> tuple[Counter, Counter]:
    kinds, reasons = Counter(), Counter()
    for p in FILES:
        kind, detail = outcome(p, tmp)
        kinds[kind] += 1
        if kind == "refused":
            import re

            reasons[re.sub(r"\(.*", "", re.sub(r"\S+\.(REC|img|BRIK|PAR|hdr)\b", "X", detail)).strip()] += 1
    return kinds, reasons


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as t:
        kinds, reasons = counts(Path(t))
    print(f"{len(FILES)} files (nibabel {nib.__version__} test data, DICOM excluded): "
          f"{kinds['converted']} converted exactly, {kinds['refused']} refused in one line")  # fmt: skip
    for r, n in reasons.most_common():
        print(f"  {n:3d}  {r}")

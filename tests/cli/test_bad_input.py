"""Bad input, end to end: exit code, one line on stderr naming the file and the problem,
no traceback, and no output file left behind.

Tests run as root in CI, where chmod does not stop anyone. The permission
tests therefore run the CLI under ``setpriv`` with CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH removed from the bounding set: root then obeys the
permission bits like any user, so the tests exercise the real kernel refusal
(not a mock). Without root they use chmod alone; a root without setpriv skips.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dicomgen import oblique_affine, t1_block, write_series
from ttyrun import run_on_tty
from medcli import io
from medcli.errors import InputError
from medcli.image import Image

SETPRIV = shutil.which("setpriv")


def assert_one_line(r, code: int, *fragments: str) -> str:
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("medcli: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def nifti(path: Path, data: np.ndarray, affine=None, **hdr) -> Path:
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    for k, v in hdr.items():
        img.header[k] = v
    nib.save(img, str(path))
    return path


def run_unprivileged(*args: str, cwd=None):
    """Run medcli so that the permission bits apply even to root."""
    cmd = [sys.executable, "-m", "medcli", *map(str, args)]
    if os.geteuid() == 0:
        if not SETPRIV:
            pytest.skip("running as root without setpriv: cannot make permissions bite")
        cmd = [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, capture_output=True, cwd=cwd, timeout=120)


# -- inputs ---------------------------------------------------------------------------------------


def test_missing_file(cli, tmp_path):
    r = cli("convert", tmp_path / "nope.nii.gz", "-o", tmp_path / "out.nii.gz")
    assert_one_line(r, 3, str(tmp_path / "nope.nii.gz"), "no such file or directory")
    assert list(tmp_path.iterdir()) == []


def test_directory_without_dicom(cli, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "notes.txt").write_text("no images here\n")
    r = cli("convert", d, "-o", tmp_path / "out.nii.gz")
    assert_one_line(r, 3, str(d), "no DICOM files found")
    assert not (tmp_path / "out.nii.gz").exists()


def test_unreadable_file_real_permissions(tmp_path, t1_path):
    src = tmp_path / "t1.nii.gz"
    shutil.copy(t1_path, src)
    src.chmod(0)
    r = run_unprivileged("convert", src, "-o", tmp_path / "out.nii")
    assert_one_line(r, 3, str(src), "permission denied")
    assert not (tmp_path / "out.nii").exists()


def test_unreadable_dicom_folder_real_permissions(tmp_path, t1):
    folder = tmp_path / "dicom"
    write_series(folder, t1_block(t1, shape=(16, 16, 3)), oblique_affine())
    folder.chmod(0o300)  # writable and searchable, but its listing cannot be read
    try:
        r = run_unprivileged("convert", folder, "-o", tmp_path / "out.nii")
    finally:
        folder.chmod(0o755)
    assert_one_line(r, 3, str(folder), "permission denied")
    assert not (tmp_path / "out.nii").exists()


def test_unreadable_file_code_path(monkeypatch, tmp_path, t1_path):
    # The same branch without the kernel: os.access says no.
    src = tmp_path / "t1.nii.gz"
    shutil.copy(t1_path, src)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if Path(p) == src else real(p, m, *a, **k))
    with pytest.raises(InputError, match="permission denied"):
        io.read(src)


def test_truncated_nii_gz(cli, tmp_path, t1_path):
    bad = tmp_path / "cut.nii.gz"
    raw = t1_path.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    r = cli("convert", bad, "-o", tmp_path / "out.nii")
    assert_one_line(r, 3, str(bad), "truncated")
    assert not (tmp_path / "out.nii").exists()


def test_truncated_uncompressed_nii(cli, tmp_path, t1_path):
    bad = tmp_path / "cut.nii"
    raw = gzip.decompress(t1_path.read_bytes())
    bad.write_bytes(raw[: len(raw) // 3])
    r = cli("convert", bad, "-o", tmp_path / "out.nrrd")
    assert_one_line(r, 3, str(bad), "truncated")
    assert not (tmp_path / "out.nrrd").exists()


def test_truncated_metaimage(cli, tmp_path):
    import SimpleITK as sitk

    good = tmp_path / "t.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((20, 20, 20), np.float32)), str(good))
    bad = tmp_path / "cut.mha"
    raw = good.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    r = cli("convert", bad, "-o", tmp_path / "out.nii")
    # MetaImage prints its complaint on stderr itself: it must come as part of the one line.
    assert_one_line(r, 3, str(bad), "file truncated or corrupt", "data not read completely")
    assert not (tmp_path / "out.nii").exists()


def test_text_file_named_nii(cli, tmp_path):
    bad = tmp_path / "notes.nii"
    bad.write_text("this is not an image, " * 40)
    r = cli("info", bad)
    assert_one_line(r, 3, str(bad), "not a valid NIfTI file")


def test_zero_byte_file(cli, tmp_path):
    bad = tmp_path / "empty.nii.gz"
    bad.touch()
    r = cli("convert", bad, "-o", tmp_path / "out.nii.gz")
    assert_one_line(r, 3, str(bad), "empty file (0 bytes)")
    assert not (tmp_path / "out.nii.gz").exists()


def _absurd_header(path: Path, shape) -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape(shape)
    hdr.set_sform(np.eye(4), 1)
    with open(path, "wb") as f:
        f.write(hdr.binaryblock + b"\0" * 4 + b"\0" * 4096)  # header, extension flag, a few voxels
    return path


def test_absurd_dimensions_refused_before_allocating(cli, tmp_path):
    bad = _absurd_header(tmp_path / "huge.nii", (30000, 30000, 30000))
    r = cli("convert", bad, "-o", tmp_path / "out.nii")
    line = assert_one_line(r, 3, str(bad), "(30000, 30000, 30000)", "would need 98.2 TiB of memory")
    assert "MEDCLI_MAX_MEMORY" in line
    assert not (tmp_path / "out.nii").exists()


def test_memory_limit_is_configurable(cli, tmp_path):
    # 1 GiB claimed: under the default limit, over a 100 MiB one, and the refusal
    # comes before any allocation (the file holds only 4 kB of voxels).
    bad = _absurd_header(tmp_path / "big.nii", (1024, 512, 512))
    r = cli("info", "--header-only", bad, env={"MEDCLI_MAX_MEMORY": "100M"})
    assert_one_line(r, 3, "would need 1.0 GiB of memory (limit 100.0 MiB")


def test_zero_voxel_size(cli, tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
    img.header.set_sform(None, 0)
    img.header.set_qform(None, 0)
    img.header["pixdim"][1:4] = (0.0, 1.0, 1.0)
    bad = tmp_path / "zero.nii"
    nib.save(img, str(bad))
    r = cli("convert", bad, "-o", tmp_path / "out.nii")
    assert_one_line(r, 3, str(bad), "zero voxel size")
    assert not (tmp_path / "out.nii").exists()


def test_negative_voxel_size_itk(cli, tmp_path):
    bad = tmp_path / "neg.mha"
    head = "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementSpacing = -1 1 1\nElementType = MET_UCHAR\n"
    bad.write_bytes((head + "ElementDataFile = LOCAL\n").encode() + bytes(64))
    r = cli("convert", bad, "-o", tmp_path / "out.nii")
    assert_one_line(r, 3, str(bad), "negative voxel size")


def test_singular_affine(cli, tmp_path):
    aff = np.eye(4)
    aff[:3, 2] = aff[:3, 0]  # the third axis runs along the first: no volume
    bad = nifti(tmp_path / "flat.nii", np.ones((4, 4, 4), np.float32), aff)
    r = cli("convert", bad, "-o", tmp_path / "out.nii")
    assert_one_line(r, 3, str(bad), "singular affine")
    assert not (tmp_path / "out.nii").exists()


def test_nan_inf_refused_by_default(cli, tmp_path):
    data = np.ones((5, 5, 5), np.float32)
    data[1, 2, 3] = np.nan
    data[0, 0, 0] = np.inf
    bad = nifti(tmp_path / "nan.nii.gz", data)
    r = cli("convert", bad, "-o", tmp_path / "out.nii.gz")
    assert_one_line(r, 3, str(bad), "2 voxels are NaN or Inf")
    assert not (tmp_path / "out.nii.gz").exists()


def test_qform_sform_disagree_warns_and_uses_sform(cli, tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    sform[:3, 3] = (10, 20, 30)
    img.header.set_sform(sform, 1)
    img.header.set_qform(np.eye(4), 1)
    src = tmp_path / "both.nii"
    nib.save(img, str(src))
    r = cli("convert", src, "-o", tmp_path / "out.nii")
    assert r.returncode == 0
    err = r.stderr.decode().strip().splitlines()
    assert err == [f"medcli: warning: {src}: qform and sform disagree; using the sform (as nibabel and FSL do)"]
    np.testing.assert_allclose(io.read(tmp_path / "out.nii").affine, sform)


TEST_COMMAND = '''
"""A test-only command that needs a 3D image (no real command needs one yet in this test)."""
from medcli.cli.command import command


@command("need3d", summary="Test command that needs a 3D image.", needs_3d=True)
def cli():
    return lambda image, job: image
'''


def test_2d_image_refused_by_3d_command_accepted_by_convert(cli, tmp_path):
    flat = nifti(tmp_path / "slice.nii", np.arange(64 * 64, dtype=np.int16).reshape(64, 64))
    (tmp_path / "need3d_cmd.py").write_text(TEST_COMMAND)
    runner = (
        "import sys; from medcli.cli import app; "
        "app.COMMANDS['need3d'] = ('need3d_cmd', 'test'); sys.argv[0] = 'medcli'; app.main(sys.argv[1:])"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    r = subprocess.run(
        [sys.executable, "-c", runner, "need3d", str(flat), "-o", str(tmp_path / "out.nii")], capture_output=True, env=env
    )
    assert_one_line(r, 3, str(flat), "this command needs a 3D image, got shape (64, 64)")
    assert not (tmp_path / "out.nii").exists()
    r = cli("convert", flat, "-o", tmp_path / "ok.nrrd")
    assert r.returncode == 0, r.stderr.decode()
    np.testing.assert_array_equal(io.read(tmp_path / "ok.nrrd").data[:, :, 0], io.read(flat).data)


def test_2d_image_refused_by_real_3d_commands(cli, tmp_path):
    """Every registered command that declares needs_3d refuses a 2D image the same way."""
    import importlib

    from medcli.cli.app import COMMANDS

    flat = nifti(tmp_path / "slice.nii", np.ones((32, 32), np.float32))
    needing = []
    for name, (module, _) in COMMANDS.items():
        try:
            spec = importlib.import_module(module).cli
        except ImportError:
            continue
        if getattr(spec, "needs_3d", False):
            needing.append(name)
    if not needing:
        pytest.skip("no registered command needs a 3D image yet")
    for name in needing[:2]:  # two are enough to show the engine does it, not the command
        r = cli(name, flat, "-o", tmp_path / f"{name}.nii.gz")
        assert_one_line(r, 3, str(flat), "this command needs a 3D image, got shape (32, 32)")
        assert not (tmp_path / f"{name}.nii.gz").exists()


def test_check_3d_directly():
    io.check_3d(Image(np.zeros((3, 4, 5)), np.eye(4)))
    io.check_3d(Image(np.zeros((3, 4, 5, 2)), np.eye(4)))
    with pytest.raises(InputError, match=r"needs a 3D image, got shape \(3, 4, 1\)"):
        io.check_3d(Image(np.zeros((3, 4, 1)), np.eye(4)), "x.nii")
    with pytest.raises(InputError, match="got 4D shape"):
        io.check_3d(Image(np.zeros((3, 4, 5, 2)), np.eye(4)), "x.nii", allow_4d=False)


@pytest.fixture(scope="module")
def two_series(tmp_path_factory, t1):
    folder = tmp_path_factory.mktemp("two")
    block = t1_block(t1, shape=(32, 32, 6))
    write_series(folder / "a", block, oblique_affine(), series_number=2, description="T1")
    write_series(folder / "b", block, oblique_affine(), series_number=3, description="T2")
    return folder


def test_dicom_folder_with_several_series(cli, two_series, tmp_path):
    r = cli("convert", two_series, "-o", tmp_path / "out.nii.gz")
    line = assert_one_line(r, 3, str(two_series), "2 DICOM series found", "--series")
    assert "#2 " in line and "'T1' (6 slices)" in line and "#3 " in line and "'T2' (6 slices)" in line
    assert not (tmp_path / "out.nii.gz").exists()


def test_dicom_without_position_tags(cli, t1, tmp_path):
    folder = tmp_path / "nopos"
    write_series(folder, t1_block(t1, shape=(32, 32, 4)), oblique_affine(), drop_position_tags=True)
    r = cli("convert", folder, "-o", tmp_path / "out.nii.gz")
    assert_one_line(r, 3, str(folder), "4 images without patient position", "cannot be stacked into a volume")
    assert not (tmp_path / "out.nii.gz").exists()


# -- outputs --------------------------------------------------------------------------------------


def test_unknown_output_extension(cli, tmp_path):
    r = cli("convert", "sample:t1", "-o", tmp_path / "out.xyz")
    assert_one_line(r, 4, str(tmp_path / "out.xyz"), "unknown output extension")
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(cli, tmp_path):
    r = cli("convert", "sample:t1", "-o", tmp_path / "no" / "such" / "out.nii.gz")
    assert_one_line(r, 4, str(tmp_path / "no" / "such"), "output folder does not exist")
    assert not (tmp_path / "no").exists()


def test_read_only_output_folder_real_permissions(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = run_unprivileged("convert", "sample:ct", "-o", ro / "out.nii.gz")
        assert_one_line(r, 4, str(ro), "output folder is not writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def _run_on_tty(*args: str, stdin_tty: bool = False, stdout_tty: bool = True):
    """Run medcli with a real terminal (a pty) as stdout and/or stdin."""
    return run_on_tty(*args, tty=("stdin",) * stdin_tty + ("stdout",) * stdout_tty)


def test_image_to_terminal_refused():
    r, shown = _run_on_tty("convert", "sample:ct", "-o", "-")
    assert_one_line(r, 4, "refusing to write image bytes to a terminal")
    assert shown == b""  # not one byte of the image reached the terminal


def test_no_output_with_terminal_stdout_is_usage_error():
    r, shown = _run_on_tty("convert", "sample:ct")
    assert_one_line(r, 2, "no output given")
    assert shown == b""


def test_stdin_terminal_refused(tmp_path):
    r, _ = _run_on_tty("convert", "-", "-o", tmp_path / "out.nii", stdin_tty=True, stdout_tty=False)
    assert_one_line(r, 3, "-: stdin is a terminal")
    assert not (tmp_path / "out.nii").exists()

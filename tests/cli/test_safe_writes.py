"""Nothing lost: no clobbering without --force, atomic replacement, no partial or
temporary file after a failure, an interruption (SIGTERM) or a full disk."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medcli import io
from medcli.errors import ProcessingError
from medcli.image import Image

FORMATS = [".nii.gz", ".nii", ".mgz", ".nrrd", ".mha", ".nhdr", ".mhd"]


def leftovers(folder: Path) -> list[str]:
    """Temporary files/folders medcli could have left (``.NAME.medcli-PID-tmp.EXT``, ``.medcli-XXXX/``)."""
    return sorted(p.name for p in folder.rglob("*") if ".medcli-" in p.name)


def assert_one_line(r, code: int, *fragments: str) -> str:
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert r.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, lines
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


# -- no clobbering, atomic replacement ------------------------------------------------------------


def test_existing_output_kept_without_force(cli, tmp_path):
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"precious")
    r = cli("convert", "sample:ct", "-o", out)
    assert_one_line(r, 4, str(out), "output exists (use --force to overwrite)")
    assert out.read_bytes() == b"precious"
    assert leftovers(tmp_path) == []


def test_force_replaces_atomically(cli, tmp_path):
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"old content")
    before = os.stat(out).st_ino
    with open(out, "rb") as reader:  # a reader holding the old file while it is replaced
        r = cli("convert", "sample:ct", "-o", out, "--force")
        assert r.returncode == 0, r.stderr.decode()
        # os.replace gives the name to a new, complete file; the old inode is never
        # truncated or rewritten in place, so the reader still sees all of it.
        assert reader.read() == b"old content"
    assert os.stat(out).st_ino != before
    assert io.read(out).shape == (128, 128, 1)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("ext", FORMATS)
def test_failure_mid_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, ext):
    """A writer that dies half way (after writing bytes) leaves the old output as it was."""
    out = tmp_path / f"out{ext}"
    io.write(Image(np.full((4, 5, 6), 7, np.int16), np.eye(4)), out)
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    import medcli.io.itk as itk
    import medcli.io.nifti as nifti

    def dying(real):
        def write(image, path):
            real(image, path)  # a complete file (or two) on disk...
            with open(path, "r+b") as f:
                f.truncate(10)  # ...then half of it goes, and the writer fails
            raise OSError(5, "Input/output error")

        return write

    monkeypatch.setattr(nifti, "write_nibabel", dying(nifti.write_nibabel))
    monkeypatch.setattr(itk, "write_itk", dying(itk.write_itk))
    with pytest.raises(ProcessingError, match="cannot write: Input/output error"):
        io.write(Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), out, force=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old
    assert leftovers(tmp_path) == []


# -- interruption ---------------------------------------------------------------------------------


def _wait_for(pred, proc, timeout=60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def test_sigterm_while_writing_large_image(tmp_path):
    """SIGTERM (e.g. a batch job's time limit) while a 16 MB .nii.gz is being compressed."""
    src = tmp_path / "noise.nii"
    noise = np.random.default_rng(0).random((160, 160, 160), dtype=np.float32)
    io.write(Image(noise, np.eye(4)), src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "medcli", "convert", str(src), "-o", str(out_dir / "noise.nii.gz"), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        started = _wait_for(lambda: leftovers(out_dir) != [], proc)
        assert started, "the temporary file never appeared (write too fast to interrupt?)"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip().splitlines()[-1] == "medcli: error: interrupted; no partial output was left"
    assert list(out_dir.iterdir()) == []


SLOW_WRITER = '''
"""Test-only: make the NIfTI writer slow (a slow network destination), then run medcli."""
import sys, time
import medcli.io.nifti as nifti

real = nifti.write_nibabel

def slow(image, path):
    real(image, path)
    sys.stderr.write("written, renaming soon\\n"); sys.stderr.flush()
    time.sleep(60)

nifti.write_nibabel = slow
from medcli.cli import app
sys.argv[0] = "medcli"
app.main(sys.argv[1:])
'''


@pytest.mark.parametrize("ext", [".nii", ".mgz"])
def test_sigterm_with_complete_temp_file_leaves_old_output(tmp_path, ext):
    """Interrupted after the temporary file is complete but before the rename: old output kept."""
    out = tmp_path / f"out{ext}"
    out.write_bytes(b"old")
    script = tmp_path / "slow.py"
    script.write_text(SLOW_WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), "convert", "sample:ct", "-o", str(out), "--force"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = proc.stderr.readline()
        assert b"written" in line
        assert len(leftovers(tmp_path)) == 1
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert b"interrupted; no partial output was left" in err
    assert out.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


# -- full disk ------------------------------------------------------------------------------------


def _limit_file_size(nbytes: int):
    def pre():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return pre


# One format per code path: nibabel+gzip, NRRD (whose writer does not say why it
# failed), MetaImage (which does), and a detached header/data pair.
@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha", ".nhdr"])
def test_file_size_limit(tmp_path, ext):
    """``ulimit -f`` (RLIMIT_FSIZE): the write fails with EFBIG; exit 4, one line, nothing left."""
    out = tmp_path / f"t1{ext}"
    r = subprocess.run(
        [sys.executable, "-m", "medcli", "convert", "sample:t1", "-o", str(out)],
        capture_output=True,
        preexec_fn=_limit_file_size(1024 * 1024),
        timeout=300,
    )
    assert_one_line(r, 4, "file too large", "nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_on_small_tmpfs(tmp_path):
    """A real full disk: a 1 MiB tmpfs (in a private mount namespace) and a 8.7 MB output."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a tmpfs")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m not permitted here (no private mount namespace)")
    disk = tmp_path / "disk"
    disk.mkdir()
    listing = tmp_path / "listing.txt"
    script = (
        'mount -t tmpfs -o size=1m tmpfs "$1" 2>/dev/null || exit 77\n'
        'printf old > "$1/t1.nii"\n'
        '"$2" -m medcli convert sample:t1 -o "$1/t1.nii" --force; rc=$?\n'
        'ls -A "$1" > "$3"; cat "$1/t1.nii" >> "$3"\n'
        "exit $rc\n"
    )
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(disk), sys.executable, str(listing)],
        capture_output=True,
        timeout=300,
    )
    if r.returncode == 77:
        pytest.skip("mount -t tmpfs not permitted here")
    assert_one_line(r, 4, "disk full", "nothing was written")
    assert listing.read_text() == "t1.nii\nold"  # the old file, whole, and nothing else

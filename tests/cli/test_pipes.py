"""'-' streams: images flow through real shell pipes, never onto a terminal."""

import gzip
import os
import pty
import shlex
import subprocess
import sys

import numpy as np
import pytest

from medcli import io
from ttyrun import run_on_tty


def sh(cmd: str, cwd, tmpdir=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, cwd=cwd, env=env, timeout=300)


MEDCLI = f"{shlex.quote(sys.executable)} -m medcli"


@pytest.fixture(scope="module")
def t1_nrrd(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe") / "t1.nrrd"
    subprocess.run([sys.executable, "-m", "medcli", "convert", "sample:t1", "-o", path], check=True)
    return path


def _same(a, b):
    assert a.shape == b.shape
    assert np.array_equal(np.asarray(a.data), np.asarray(b.data))
    assert a.data.dtype == b.data.dtype
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)


def test_two_stage_pipe_is_bit_exact_and_leaves_no_files(t1_nrrd, tmp_path):
    (tmp_path / "tmp").mkdir()
    r = sh(f"{MEDCLI} convert {t1_nrrd} -o - | {MEDCLI} convert - -o b.nii.gz", tmp_path, tmp_path / "tmp")
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.nii.gz", "tmp"]
    assert list((tmp_path / "tmp").iterdir()) == []
    _same(io.read(t1_nrrd), io.read(tmp_path / "b.nii.gz"))


def test_gzipped_stdin_is_read(t1_path, tmp_path):
    r = sh(f"{MEDCLI} convert - -o out.nrrd < {t1_path}", tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert t1_path.read_bytes()[:2] == b"\x1f\x8b"
    _same(io.read(t1_path), io.read(tmp_path / "out.nrrd"))


def test_uncompressed_stdin_through_cat(t1_path, tmp_path):
    (tmp_path / "t1.nii").write_bytes(gzip.decompress(t1_path.read_bytes()))
    r = sh(f"cat t1.nii | {MEDCLI} convert - --reorient LPS | {MEDCLI} convert - --reorient RAS -o back.nii", tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    _same(io.read(tmp_path / "t1.nii"), io.read(tmp_path / "back.nii"))


def test_without_output_a_pipe_gets_the_image(t1_path, tmp_path):
    r = sh(f"{MEDCLI} convert {t1_path} | head -c 352 | od -c | head -40", tmp_path)
    assert r.returncode == 0 and b"n   +   1" in r.stdout


def _on_terminal(*args: str) -> tuple[int, bytes]:
    """Run medcli with stdout on a pseudo-terminal; returns exit code and what reached the terminal."""
    r, seen = run_on_tty(*args)
    return r.returncode, seen + r.stderr


def test_image_bytes_never_go_to_a_terminal():
    code, seen = _on_terminal("convert", "sample:t1", "-o", "-")
    assert code == 4 and b"refusing to write image bytes to a terminal" in seen and b"n+1" not in seen
    code, seen = _on_terminal("convert", "sample:t1")
    assert code == 2 and b"no output given" in seen


def test_truncated_stream_is_an_input_error(t1_path, tmp_path):
    r = sh(f"head -c 100000 {t1_path} | {MEDCLI} convert - -o x.nii.gz", tmp_path)
    assert r.returncode == 3 and r.stderr.decode().startswith("medcli: error: -:")
    assert not (tmp_path / "x.nii.gz").exists()


def test_stdin_on_a_terminal_is_refused_not_awaited(tmp_path):
    main, sub = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "medcli", "convert", "-", "-o", tmp_path / "x.nii"], stdin=sub,
                           capture_output=True, timeout=60)
    finally:
        os.close(sub)
        os.close(main)
    assert p.returncode == 3
    assert p.stderr.decode().splitlines() == ["medcli: error: -: stdin is a terminal; pipe an image into '-' or give a file name"]


def test_forgotten_output_never_fills_a_log_file(tmp_path):
    r = sh(f"{MEDCLI} convert sample:t1 > job.log", tmp_path)
    assert r.returncode == 2 and b"no output given: use -o FILE (or -o - to write to stdout)" in r.stderr
    assert (tmp_path / "job.log").stat().st_size == 0
    r = sh(f"{MEDCLI} convert sample:t1 -o - > t1.nii", tmp_path)
    assert r.returncode == 0 and io.read(tmp_path / "t1.nii").shape == (197, 233, 189)

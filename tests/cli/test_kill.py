"""Killed at any moment, nothing lost: SIGKILL during ``convert`` never leaves a partial output.

SIGKILL cannot be caught, so nothing cleans up: the guarantee must come from
the write path itself (a temporary file in the destination folder, fsync,
then an atomic rename). What a kill may leave is the temporary file, always
named ``.NAME.medcli-PID@HOST-tmp.EXT`` (hidden; removed by the next medcli write
to the same output once its process is gone, see :func:`medcli.io.safe.atomic_output`).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from medcli import io
from medcli.image import Image
from medcli.io.safe import _HOST

pytestmark = pytest.mark.slow

FORMATS = (".nii.gz", ".nrrd", ".mha", ".mgz", ".nii", ".nhdr", ".mhd")
#: Data files of detached headers (.nhdr + .raw.gz, .mhd + .zraw): alone (no header) they are no output.
DATA_FILES = {".nhdr": "out.raw.gz", ".mhd": "out.zraw"}
KILLS = 50
WRITERS = 20


def _cmd(src, out, *extra):
    return [sys.executable, "-m", "medcli", "convert", str(src), "-o", str(out), "--threads", "1", *extra]


def _is_temp(name: str) -> bool:
    """``.NAME.medcli-PID@HOST-tmp.EXT`` files and ``.medcli-XXXX`` folders (detached pairs)."""
    return name.startswith(".") and ".medcli-" in name


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 5.6 MB float32 noise volume: incompressible, so gzip writes take a while."""
    folder = tmp_path_factory.mktemp("kill_src")
    data = np.random.default_rng(0).random((112, 112, 112), dtype=np.float32)
    src = folder / "noise.nii"
    io.write(Image(data, np.diag([0.9, 0.9, 1.1, 1.0])), src)
    old = folder / "old.nii"
    io.write(Image(data[::2, ::2, ::2].copy(), np.eye(4)), old)
    return src, data, io.read(old).data


def _durations(src, folder) -> dict[str, float]:
    out = {}
    for ext in FORMATS:
        t0 = time.monotonic()
        subprocess.run(_cmd(src, folder / f"t{ext}"), check=True, capture_output=True)
        out[ext] = time.monotonic() - t0
    return out


def test_sigkill_at_random_moments_leaves_no_partial_output(source, tmp_path):
    src, data, old_data = source
    durations = _durations(src, tmp_path)
    rng = random.Random(17)
    seen = set()
    outcomes = {"absent": 0, "complete": 0, "old kept": 0}
    for i in range(KILLS):
        ext = FORMATS[i % len(FORMATS)]
        folder = tmp_path / f"k{i}"
        folder.mkdir()
        out = folder / f"out{ext}"
        overwrite = i % 2 == 1
        if overwrite:  # an older output that --force replaces: it must survive a kill intact
            io.write(Image(old_data, np.eye(4)), out)
        proc = subprocess.Popen(_cmd(src, out, *(["--force"] if overwrite else [])),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.2, 1.05) * durations[ext])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        names = sorted(p.name for p in folder.iterdir())
        allowed = {out.name, DATA_FILES.get(ext)}
        assert all(n in allowed or _is_temp(n) for n in names), f"kill {i}: unexpected files {names}"
        if not out.exists():
            outcomes["absent"] += 1
            continue
        seen.add(ext)
        got = io.read(out)
        if overwrite and got.shape == old_data.shape:
            np.testing.assert_array_equal(got.data, old_data, err_msg=f"kill {i}: old output damaged")
            outcomes["old kept"] += 1
        else:
            np.testing.assert_array_equal(got.data, data, err_msg=f"kill {i}: output incomplete")
            outcomes["complete"] += 1
    # the kills landed on both sides of the rename (not all before the write began)
    assert outcomes["complete"] >= 3 and outcomes["absent"] + outcomes["old kept"] >= 10, outcomes
    assert len(seen) >= 4, seen


def test_next_write_removes_temp_files_of_killed_processes(source, tmp_path):
    src, data, _ = source
    out = tmp_path / "out.nii.gz"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.medcli-{dead.pid}@{_HOST}-tmp.nii.gz"
    stale.write_bytes(b"partial")
    subprocess.run(_cmd(src, out), check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]
    np.testing.assert_array_equal(io.read(out).data, data)


def test_twenty_writers_one_path_leave_one_complete_file(source, tmp_path):
    src, data, _ = source
    out = tmp_path / "same.nii.gz"
    procs = [subprocess.Popen(_cmd(src, out, "--force"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(WRITERS)]  # fmt: skip
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, [e.decode()[-300:] for e in errs if e]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.nii.gz"]
    np.testing.assert_array_equal(io.read(out).data, data)

"""``medcli recon`` on CT sinograms and ``medcli recon simulate --ct``, run as a user would."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcli import io


def psnr(ref: np.ndarray, test: np.ndarray) -> float:
    return float(10 * np.log10(2000.0**2 / np.mean((ref.astype(np.float64) - test) ** 2)))


def test_simulate_then_recon_returns_the_input_grid(cli, tmp_path):
    sino = tmp_path / "ct_sino.nii.gz"
    r = cli("recon", "simulate", "sample:ct", "--ct", "--views", "90", "-o", sino)
    assert r.returncode == 0, r.stderr.decode()
    side = json.loads((tmp_path / "ct_sino.json").read_text())
    assert side["type"] == "parallel" and len(side["ProjectionAnglesDeg"]) == 90 and side["DetectorCount"] % 2 == 1
    out = tmp_path / "ct.nii.gz"
    r = cli("recon", sino, "--method", "fbp", "--filter", "shepp-logan", "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""
    ref, got = io.read("sample:ct"), io.read(out)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-6)
    assert psnr(np.asarray(ref.data, np.float32), got.data) > 30


@pytest.mark.slow
def test_pipe_needs_no_sidecar_file(tmp_path):
    import subprocess
    import sys

    sim = subprocess.run([sys.executable, "-m", "medcli", "recon", "simulate", "sample:ct", "--ct", "--views", "60",
                          "--photons", "4096", "-o", "-"], capture_output=True)
    assert sim.returncode == 0, sim.stderr.decode()
    rec = subprocess.run([sys.executable, "-m", "medcli", "recon", "-", "--modality", "ct", "--method", "sart",
                          "--iterations", "2", "--units", "mu", "-o", tmp_path / "mu.nii.gz"], input=sim.stdout, capture_output=True)
    assert rec.returncode == 0, rec.stderr.decode()
    mu = io.read(tmp_path / "mu.nii.gz").data
    assert mu.shape == (128, 128, 1)
    assert 0.015 < float(np.median(mu)) < 0.025  # soft tissue around water's 0.0192 mm^-1


def test_missing_sidecar_is_one_line_and_writes_nothing(cli, tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((30, 65), np.float32))
    out = tmp_path / "x.nii.gz"
    r = cli("recon", tmp_path / "s.npy", "--modality", "ct", "-o", out)
    assert r.returncode == 3
    err = r.stderr.decode().strip()
    assert "sidecar s.json is missing" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bad_ct_options(cli, tmp_path):
    sino = tmp_path / "s.npy"
    assert cli("recon", "simulate", "sample:ct", "--ct", "--views", "20", "-o", sino).returncode == 0
    r = cli("recon", sino, "--method", "cs", "-o", tmp_path / "x.nii.gz")
    assert r.returncode == 2 and b"--method for CT" in r.stderr
    r = cli("recon", sino, "--method", "fbp", "--filter", "box", "-o", tmp_path / "x.nii.gz")
    assert r.returncode == 2 and b"--filter" in r.stderr
    assert not (tmp_path / "x.nii.gz").exists()


@pytest.mark.slow
def test_fan_beam_cli(cli, tmp_path):
    sino = tmp_path / "fan.npy"
    r = cli("recon", "simulate", "sample:ct", "--ct", "--beam", "fan", "--views", "180", "-o", sino)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads((tmp_path / "fan.json").read_text())["type"] == "fanflat"
    r = cli("recon", sino, "--method", "fbp", "-o", tmp_path / "fan.nii.gz")
    assert r.returncode == 0, r.stderr.decode()
    assert psnr(np.asarray(io.read("sample:ct").data, np.float32), io.read(tmp_path / "fan.nii.gz").data) > 28

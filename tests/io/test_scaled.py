"""Scaled integers (scl_slope/scl_inter) are read with their scaling and written without loss.

Regression for issue 17: nibabel's ``functional.nii`` (int16, slope/intercept)
came out of ``convert`` as its raw integers, values off by up to 1.0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medcli import io
from medcli.commands.convert import convert
from medcli.io.values import cast_report, storable

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
FORMATS = ("nii.gz", "nii", "mgz", "mgh", "nrrd", "nhdr", "mha", "mhd")


def _scaled_nifti(path: Path, raw_dtype=np.int16, slope=0.37, inter=10.5, low=-30000) -> np.ndarray:
    """An integer NIfTI with scale factors; returns nibabel's own float64 reading."""
    rng = np.random.default_rng(17)
    info = np.iinfo(raw_dtype)
    raw = rng.integers(max(info.min, low), min(info.max, 30000), size=(9, 8, 7), dtype=np.int64)
    if np.dtype(raw_dtype).itemsize >= 4:
        raw[0, 0, 0], raw[1, 0, 0] = 2**30 + 12345, -(2**30) - 7  # beyond float32's 24 bits
    nimg = nib.Nifti1Image(raw.astype(raw_dtype), np.diag([1.5, 2.0, 2.5, 1.0]))
    nimg.header.set_slope_inter(slope, inter)
    nimg.to_filename(str(path))
    return nib.load(str(path)).get_fdata()


def _expected(truth: np.ndarray, got: np.ndarray) -> np.ndarray:
    """nibabel's float64 values, as exact as ``got``'s float type can hold them."""
    return truth.astype(got.dtype)


@pytest.mark.parametrize("ext", FORMATS)
def test_functional_nii_converts_exactly_to_every_format(tmp_path, ext):
    src = NIBABEL_DATA / "functional.nii"
    truth = nib.load(str(src)).get_fdata()
    img = io.read(src)
    assert img.dtype == np.float32 and "scl_slope" in img.meta["values"]
    out = tmp_path / f"f.{ext}"
    io.write(convert(img), out)
    back = io.read(out).data
    np.testing.assert_array_equal(back, truth.astype(np.float32))
    # the bug was: the raw int16 (off by up to 1.0) written without scale factors
    assert np.abs(back - truth).max() < 1e-3 * np.abs(truth).max()


@pytest.mark.parametrize("ext", FORMATS)
def test_int16_slope_037_intercept_105_through_every_format(tmp_path, ext):
    src = tmp_path / "s.nii"
    truth = _scaled_nifti(src)
    out = tmp_path / f"o.{ext}"
    io.write(convert(io.read(src)), out)
    back = io.read(out).data
    np.testing.assert_array_equal(back, _expected(truth, back))


def test_nifti_output_keeps_raw_integers_and_scale_factors(tmp_path):
    src = tmp_path / "s.nii"
    _scaled_nifti(src)
    out = tmp_path / "o.nii.gz"
    io.write(io.read(src).reorient("LPS"), out)
    n = nib.load(str(out))
    assert n.get_data_dtype() == np.int16
    assert n.dataobj.slope == pytest.approx(0.37) and n.dataobj.inter == 10.5
    # a changed image is no longer raw * slope + inter: it is written as floats, unchanged
    img = io.read(src)
    changed = img.with_data(img.data + np.float32(0.01))
    io.write(changed, tmp_path / "c.nii.gz")
    n = nib.load(str(tmp_path / "c.nii.gz"))
    assert n.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asanyarray(n.dataobj), changed.data)


def test_int32_raw_reads_as_float64_and_mgh_says_it_rounds(tmp_path):
    src = tmp_path / "s32.nii"
    truth = _scaled_nifti(src, np.int32)
    img = io.read(src)
    assert img.dtype == np.float64
    np.testing.assert_array_equal(img.data, truth)
    io.write(img, tmp_path / "o.nii.gz")
    n = nib.load(str(tmp_path / "o.nii.gz"))
    assert n.get_data_dtype() == np.int32  # exact: raw integers + scale factors
    np.testing.assert_array_equal(io.read(tmp_path / "o.nii.gz").data, truth)
    # MGH holds float32 at most: the loss is stated, with the numbers
    stored = storable(img.data, "mgh")
    assert stored.data.dtype == np.float32 and "rounded" in stored.note and "largest change" in stored.note


def test_convert_dtype_warns_with_numbers_and_strict_refuses(tmp_path):
    src = NIBABEL_DATA / "functional.nii"
    run = [sys.executable, "-m", "medcli", "convert", str(src), "--dtype", "int16"]
    r = subprocess.run([*run, "-o", str(tmp_path / "a.nii")], capture_output=True, text=True)
    assert r.returncode == 0 and "21420 of 21420 voxels rounded (largest change 0.5" in r.stderr
    r = subprocess.run([*run, "--strict", "-o", str(tmp_path / "b.nii")], capture_output=True, text=True)
    assert r.returncode == 4 and not (tmp_path / "b.nii").exists()
    assert len(r.stderr.strip().splitlines()) == 1 and "--strict" in r.stderr and "rounded" in r.stderr
    r = subprocess.run(
        [*run[:-1], "uint8", "--strict", "-o", str(tmp_path / "c.nii")], capture_output=True, text=True
    )
    assert r.returncode == 4 and "clipped to 0..255 (values 629.826..5571.62)" in r.stderr
    # a lossless cast is silent
    img = io.read(tmp_path / "a.nii")
    r = subprocess.run(
        [sys.executable, "-m", "medcli", "convert", str(tmp_path / "a.nii"), "--dtype", "float32", "--strict",
         "-o", str(tmp_path / "d.nii")], capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0 and r.stderr == ""
    np.testing.assert_array_equal(io.read(tmp_path / "d.nii").data, img.data)


def test_cast_report_counts():
    rep = cast_report(np.array([0.5, 1.0, 2.25, -3.0, 70000.0]), np.dtype("int16"))
    assert (rep.rounded, rep.clipped, rep.largest) == (2, 1, 0.5)
    assert cast_report(np.array([1.0, 2.0 ** 30 + 1]), np.dtype("float32")).rounded == 1
    assert cast_report(np.array([1, 2], np.int16), np.dtype("float32")).lossless
    assert cast_report(np.array([np.nan, 1.0]), np.dtype("uint8")).nonfinite == 1


@pytest.mark.slow
def test_a_command_pipeline_keeps_scaled_values(tmp_path):
    """A processing command sees the scaled values (not the raw integers) and writes floats."""
    src = tmp_path / "s.nii"
    truth = _scaled_nifti(src, low=20000)
    out = tmp_path / "d.nii.gz"
    r = subprocess.run(
        [sys.executable, "-m", "medcli", "denoise", str(src), "-m", "nlmeans", "--sigma", "1", "-o", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = io.read(out).data
    assert got.dtype.kind == "f"
    # raw int16 values span 20000..30000; the scaled ones 7410..11110
    assert abs(float(got.mean()) - float(truth.mean())) < 50 and 7000 < got.min() and got.max() < 11200


def test_pipe_stream_keeps_raw_integers_and_scale_factors(tmp_path):
    """``convert scaled.nii -o - | ...``: the NIfTI stream carries the same raw integers and scale factors."""
    from medcli.io.stream import image_from_bytes, image_to_bytes

    src = tmp_path / "s.nii"
    truth = _scaled_nifti(src)
    raw = image_to_bytes(io.read(src))
    n = nib.Nifti1Image.from_bytes(raw)
    assert n.get_data_dtype() == np.int16 and n.dataobj.slope == pytest.approx(0.37)
    back = image_from_bytes(raw).data
    np.testing.assert_array_equal(back, truth.astype(np.float32))

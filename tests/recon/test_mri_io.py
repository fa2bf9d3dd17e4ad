"""MRI k-space files and geometry: known answers, round trips, every format read and written, bad input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medcli.image import Image
from medcli.recon.mri import formats
from medcli.recon.mri.fft import fft2c, ifft2c
from medcli.recon.mri.simulate import simulate_image

OBLIQUE = np.array([
    [0.9 * np.cos(0.3), -1.1 * np.sin(0.3), 0.0, -20.5],
    [0.9 * np.sin(0.3), 1.1 * np.cos(0.3), 0.0, 13.25],
    [0.0, 0.0, 2.5, -7.0],
    [0.0, 0.0, 0.0, 1.0],
])


@pytest.fixture(scope="module")
def small_t1(t1):
    """A real block of the MNI T1 (3 axial slices) on an oblique, anisotropic grid."""
    data = np.asarray(t1.data[40:88, 50:106, 98:101], np.float32)
    return Image(data, OBLIQUE)


def test_fully_sampled_single_coil_is_the_exact_inverse_fft(tmp_path, cli):
    rng = np.random.default_rng(0)
    img = (rng.normal(size=(2, 24, 30)) + 1j * rng.normal(size=(2, 24, 30))).astype(np.complex64)
    k = fft2c(img)
    np.testing.assert_allclose(ifft2c(k), img, atol=1e-5)
    np.save(tmp_path / "k.npy", k.transpose(1, 2, 0))
    r = cli("recon", tmp_path / "k.npy", "--layout", "ro,pe,slice", "-m", "zerofill", "-o", tmp_path / "x.nii.gz",
            "--complex", tmp_path / "c.nii.gz")
    assert r.returncode == 0, r.stderr.decode()
    out = nib.load(tmp_path / "x.nii.gz").get_fdata()
    assert out.shape == (24, 30, 2)
    np.testing.assert_allclose(out, np.abs(img).transpose(1, 2, 0), atol=1e-5)
    c = nib.load(tmp_path / "c.nii.gz").get_fdata()
    np.testing.assert_allclose(c[..., 0] + 1j * c[..., 1], img.transpose(1, 2, 0), atol=1e-5)


def test_simulate_then_recon_returns_the_input_grid(tmp_path, cli, small_t1):
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(small_t1.data, small_t1.affine), src)
    k = tmp_path / "k.h5"
    r = cli("recon", "simulate", src, "--coils", "4", "--accel", "1", "-o", k)
    assert r.returncode == 0, r.stderr.decode()
    r = cli("recon", k, "-m", "zerofill", "-o", tmp_path / "out.nii.gz")
    assert r.returncode == 0, r.stderr.decode()
    out = nib.load(tmp_path / "out.nii.gz")
    assert out.shape == small_t1.shape
    np.testing.assert_allclose(out.affine, OBLIQUE, atol=1e-5)
    # Fully sampled, noiseless, sum |S|^2 = 1: the root-sum-of-squares is the input.
    np.testing.assert_allclose(out.get_fdata(), small_t1.data, atol=1e-3 * small_t1.data.max())


@pytest.mark.slow
def test_poisson_disc_3d_round_trip_cs_beats_zerofill(tmp_path, cli, t1):
    """A 3D scan's 2D Poisson-disc mask: every plane of a real MNI block sampled over (phase 1, phase 2)."""
    import h5py

    from medcli.recon.mri.metrics import psnr, ssim

    aff = np.diag([1.0, 1.2, 1.5, 1.0])
    aff[:3, 3] = [-30.0, 12.5, 4.0]
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(t1.data[40:104, 50:114, 100:103], np.float32), aff), src)
    k = tmp_path / "k.h5"
    r = cli("recon", "simulate", src, "--coils", "8", "--accel", "4", "--pattern", "poisson", "--center", "0.12",
            "--snr", "40", "--seed", "3", "-o", k)
    assert r.returncode == 0, r.stderr.decode()
    with h5py.File(k, "r") as f:
        ref = np.asarray(f["reconstruction_rss"][()])
    ks = formats.read_kspace(str(k))
    assert not np.all(ks.mask == ks.mask[:, :1, :])  # a 2D pattern, not lines
    assert abs(ks.acceleration - 4) < 0.5
    scores = {}
    for method in ("zerofill", "cs"):
        r = cli("recon", k, "-m", method, "-o", tmp_path / f"{method}.nii.gz")
        assert r.returncode == 0, r.stderr.decode()
        out = nib.load(tmp_path / f"{method}.nii.gz")
        assert out.shape == (64, 64, 3)
        np.testing.assert_allclose(out.affine, aff, atol=1e-5)
        x = np.moveaxis(out.get_fdata(), 2, 0)
        scores[method] = (ssim(ref, x), psnr(ref, x))
    assert scores["cs"][0] > scores["zerofill"][0] + 0.015, scores
    assert scores["cs"][1] > scores["zerofill"][1] + 1.0, scores
    # The learned model knows only line masks: it falls back to cs with a warning.
    r = cli("recon", k, "-m", "learned", "-o", tmp_path / "l.nii.gz")
    assert r.returncode == 0 and "not 1D Cartesian" in r.stderr.decode()


@pytest.mark.parametrize("suffix", [".cfl", ".mrd"])
def test_simulated_bart_and_ismrmrd_files_keep_the_grid(tmp_path, small_t1, suffix):
    from medcli.recon.mri.methods import reconstruct_mri

    ks, _ = simulate_image(small_t1, coils=2, accel=1)
    path = tmp_path / f"k{suffix}"
    if suffix == ".cfl":
        formats.save_cfl(formats.kspace_to_bart(ks), str(path), False, ks.affine)
    else:
        formats.write_ismrmrd(ks, path)
    back = formats.read_kspace(str(path))
    np.testing.assert_allclose(back.affine, OBLIQUE, atol=1e-5)
    out = reconstruct_mri(back, "zerofill").image
    np.testing.assert_allclose(np.abs(out).transpose(1, 2, 0), small_t1.data, atol=1e-3 * small_t1.data.max())


def _ks(seed=0, slices=2, coils=3, ro=20, pe=16):
    rng = np.random.default_rng(seed)
    data = (rng.normal(size=(slices, coils, ro, pe)) + 1j * rng.normal(size=(slices, coils, ro, pe))).astype(np.complex64)
    mask = np.zeros((slices, ro, pe), bool)
    mask[:, :, ::2] = True
    mask[:, :, 6:10] = True
    data *= mask[:, None]
    return formats.KSpace(data, mask, OBLIQUE, (ro, pe))


@pytest.mark.parametrize("kind", ["fastmri", "ismrmrd", "cfl", "npy"])
def test_each_format_writes_and_reads_back(tmp_path, kind):
    ks = _ks()
    if kind == "fastmri":
        path = tmp_path / "k.h5"
        formats.write_fastmri(ks, path)
    elif kind == "ismrmrd":
        path = tmp_path / "k.mrd"
        formats.write_ismrmrd(ks, path)
    elif kind == "cfl":
        formats.save_cfl(formats.kspace_to_bart(ks), str(tmp_path / "k.cfl"), False, ks.affine)
        path = tmp_path / "k.cfl"
        hdr = (tmp_path / "k.hdr").read_text().splitlines()
        assert hdr[0] == "# Dimensions" and hdr[1].split()[:4] == ["20", "16", "1", "3"]
    else:
        path = tmp_path / "k.npy"
        np.save(path, ks.data.transpose(1, 0, 3, 2))  # coil, slice, pe, ro
    back = formats.read_kspace(str(path), layout="coil,slice,pe,ro" if kind == "npy" else None)
    np.testing.assert_array_equal(back.data, ks.data)
    np.testing.assert_array_equal(back.mask, ks.mask)
    if kind != "npy":
        np.testing.assert_allclose(back.affine, OBLIQUE, atol=1e-6)


def test_fastmri_header_geometry_without_medcli_affine(tmp_path):
    """A fastMRI-style file: 2x readout oversampling, FOV/matrix -> spacing, centre crop to reconSpace."""
    import h5py

    ks = _ks(ro=40, pe=16)
    xml = formats.header_xml(40, 16, 2, (20, 16), np.diag([0.5, 0.5, 3.0, 1.0]))
    xml = xml.replace("<userParameters>", "<!--").replace("</userParameters>", "-->")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["kspace"] = ks.data
        f["ismrmrd_header"] = xml.encode()
    back = formats.read_kspace(str(tmp_path / "f.h5"))
    assert back.recon_shape == (20, 16)
    np.testing.assert_allclose(np.diag(back.affine)[:3], [0.5, 0.5, 3.0])
    np.testing.assert_allclose(back.affine[:3, 3], -np.array([0.5 * 9.5, 0.5 * 7.5, 3.0 * 0.5]))


def _bad_h5(tmp_path, what):
    import h5py

    ks = _ks()
    if what == "nan":
        ks.data[0, 0, 0, 0] = np.nan
    if what == "empty":
        ks.mask[:] = False
    path = tmp_path / f"{what}.h5"
    formats.write_fastmri(ks, path)
    if what == "empty":
        with h5py.File(path, "a") as f:
            f["mask"][...] = 0
    if what == "header":
        with h5py.File(path, "a") as f:
            del f["ismrmrd_header"]
            del f.attrs["medcli_affine"]
            f["ismrmrd_header"] = formats.header_xml(24, 16, 2, (24, 16), OBLIQUE).encode()
    return path


@pytest.mark.parametrize("what,message", [
    ("nan", "NaN or Inf"),
    ("empty", "samples nothing"),
    ("header", "header says the encoded matrix is 24x16, the k-space is 20x16"),
])
def test_bad_kspace_is_one_line_error_and_no_output(tmp_path, cli, what, message):
    path = _bad_h5(tmp_path, what)
    out = tmp_path / "out.nii.gz"
    r = cli("recon", path, "-m", "zerofill", "-o", out)
    err = r.stderr.decode().strip()
    assert r.returncode == 3, err
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_inconsistent_coil_counts_are_refused(tmp_path):
    import ismrmrd

    xml = formats.header_xml(8, 6, 1, (8, 6), np.eye(4))
    ds = ismrmrd.Dataset(str(tmp_path / "c.mrd"), "dataset", create_if_needed=True)
    ds.write_xml_header(xml)
    for line, coils in ((0, 4), (1, 3)):
        acq = ismrmrd.Acquisition.from_array(np.ones((coils, 8), np.complex64))
        acq.idx.kspace_encode_step_1 = line
        ds.append_acquisition(acq)
    ds.close()
    with pytest.raises(formats.InputError, match=r"different coil counts \[3, 4\]"):
        formats.read_kspace(str(tmp_path / "c.mrd"))
    ks = _ks()
    np.save(tmp_path / "maps.npy", np.ones((2, 4, 20, 16), np.complex64))
    from medcli.commands.recon import _read_maps

    with pytest.raises(formats.InputError, match="coil maps of shape"):
        _read_maps(str(tmp_path / "maps.npy"), ks)


def test_mask_file_and_layout_errors(tmp_path):
    ks = _ks()
    np.save(tmp_path / "k.npy", ks.data)
    np.save(tmp_path / "m.npy", np.zeros(15))
    with pytest.raises(formats.InputError, match="1D mask of 15 lines, k-space has 16"):
        formats.read_kspace(str(tmp_path / "k.npy"), mask=str(tmp_path / "m.npy"))
    with pytest.raises(formats.InputError, match="--layout"):
        formats.read_kspace(str(tmp_path / "k.npy"), layout="slice,coil,ro,ro")


def test_simulated_kspace_records_its_sampling(small_t1):
    ks, ref = simulate_image(small_t1, coils=4, accel=4, center=0.08, pattern="equispaced", seed=1)
    lines = ks.mask[0].any(axis=0)
    assert 3.3 < lines.size / lines.sum() < 4.7
    centre = lines[lines.size // 2 - 2 : lines.size // 2 + 2]
    assert centre.all()
    np.testing.assert_allclose(ref.transpose(1, 2, 0), small_t1.data, rtol=1e-4, atol=1e-3)
    assert ks.acceleration == pytest.approx(lines.size / lines.sum())

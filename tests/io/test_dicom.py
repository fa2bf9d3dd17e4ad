"""DICOM series: exact oblique geometry whatever the file order, rescale, series choice, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dicomgen import LPS, oblique_affine, t1_block, write_enhanced, write_planar, write_series
from medcli import io
from medcli.errors import InputError
from medcli.io.dicom import read_dicom

PYDICOM_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


@pytest.fixture(scope="module")
def block(t1):
    return t1_block(t1)


@pytest.fixture(scope="module")
def oblique_series(tmp_path_factory, block):
    """Real T1 slices, rotated 20 degrees about two axes, 0.9x1.1x2.5 mm, slope 0.5, intercept -100."""
    folder = tmp_path_factory.mktemp("oblique")
    aff = oblique_affine()
    write_series(folder, block, aff, slope=0.5, intercept=-100.0, shuffle=True)
    return folder, aff, block


def test_oblique_shuffled_series_geometry_and_values(oblique_series):
    folder, truth, vol = oblique_series
    img = io.read(folder)
    assert img.shape == vol.shape
    np.testing.assert_allclose(img.affine, truth, atol=1e-5, rtol=0)
    assert img.dtype == np.float32  # a slope of 0.5 makes non-integer values possible
    stored = np.rint((vol + 100.0) / 0.5)
    np.testing.assert_array_equal(img.data, (stored * 0.5 - 100.0).astype(np.float32))
    d = img.meta["dicom"]
    assert (d["modality"], d["series_number"], d["slices"], d["series_description"]) == ("MR", 1, vol.shape[2], "test series")


def test_geometry_matches_simpleitk_gdcm(oblique_series):
    """An independent reader (ITK/GDCM) agrees on every voxel's world position."""
    import SimpleITK as sitk

    folder, _, _ = oblique_series
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
    ref = r.Execute()
    from medcli.io.itk import itk_geometry_to_affine

    ref_aff = itk_geometry_to_affine(ref.GetDirection(), ref.GetSpacing(), ref.GetOrigin(), 3)
    img = io.read(folder)
    np.testing.assert_allclose(img.affine, ref_aff, atol=1e-4)
    np.testing.assert_array_equal(img.data, sitk.GetArrayFromImage(ref).transpose(2, 1, 0))


def test_slice_vector_against_normal_is_sorted_along_normal(tmp_path, block):
    # Slices written in the direction opposite to row x column: the reader orders
    # them along the normal, so the slice axis flips and the world positions stay.
    aff = oblique_affine(deg=(-15.0, 25.0, 10.0))
    aff[:3, 2] *= -1
    write_series(tmp_path, block, aff)
    img = io.read(tmp_path)
    n = block.shape[2]
    flipped = aff.copy()
    flipped[:3, 3] = aff[:3, 3] + aff[:3, 2] * (n - 1)
    flipped[:3, 2] = -aff[:3, 2]
    np.testing.assert_allclose(img.affine, flipped, atol=1e-5)
    np.testing.assert_array_equal(img.data, block[:, :, ::-1].astype(img.dtype))


def test_integer_rescale_keeps_integers(tmp_path, block):
    write_series(tmp_path, block - 1024.0, oblique_affine(), slope=1.0, intercept=-1024.0, modality="CT")
    img = io.read(tmp_path)
    assert img.dtype.kind == "i"
    np.testing.assert_array_equal(img.data, block - 1024)


def test_single_slice_file_is_3d_with_slice_thickness():
    import pydicom

    img = io.read("sample:ct")
    assert img.shape == (128, 128, 1)
    np.testing.assert_allclose(img.spacing, (0.661468, 0.661468, 5.0), atol=1e-6)
    # IPP (-158.135803, -179.035797, -75.699997) LPS -> RAS
    np.testing.assert_allclose(img.origin, (158.135803, 179.035797, -75.699997), atol=1e-6)
    assert img.orientation == "LPS"
    from medcli.samples import sample_path

    ds = pydicom.dcmread(sample_path("ct"))
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    np.testing.assert_array_equal(img.data[:, :, 0], hu.T)
    assert img.meta["dicom"]["modality"] == "CT" and img.meta["dicom"]["manufacturer"] == "GE MEDICAL SYSTEMS"


def test_two_series_listed_then_chosen(tmp_path, block):
    a = block[:, :, :10]
    b = block[:, :, 10:16] * 0 + 7
    write_series(tmp_path / "s1", a, oblique_affine(), series_uid="1.2.826.0.1.3680043.9.1", series_number=3, description="T1 MPRAGE")
    write_series(tmp_path / "s2", b, np.diag([1.0, 1.0, 3.0, 1.0]), series_uid="1.2.826.0.1.3680043.9.2", series_number=5, description="FLAIR")
    (tmp_path / "README.txt").write_text("not a DICOM file\n")
    with pytest.raises(InputError) as e:
        io.read(tmp_path)
    msg = str(e.value)
    assert "2 DICOM series found" in msg and "--series" in msg
    assert "#3 1.2.826.0.1.3680043.9.1 'T1 MPRAGE' (10 slices)" in msg
    assert "#5 1.2.826.0.1.3680043.9.2 'FLAIR' (6 slices)" in msg
    assert io.read(tmp_path, series="3").shape == (64, 72, 10)
    img = io.read(tmp_path, series="1.2.826.0.1.3680043.9.2")
    assert img.shape == (64, 72, 6) and img.meta["dicom"]["series_description"] == "FLAIR"
    with pytest.raises(InputError, match="no DICOM series '9'"):
        io.read(tmp_path, series="9")
    from medcli.io.dicom import list_series

    listed = list_series(tmp_path)
    assert [(s["series_number"], s["series_description"], s["slices"]) for s in listed] == [(3, "T1 MPRAGE", 10), (5, "FLAIR", 6)]


def test_missing_slice_refused(tmp_path, block):
    files = write_series(tmp_path, block[:, :, :12], oblique_affine(), shuffle=False)
    files[5].unlink()
    with pytest.raises(InputError, match=r"missing slices: 1 slice\(s\) absent.*usual step 2\.5 mm"):
        read_dicom(tmp_path)


def test_irregular_spacing_refused(tmp_path, block):
    aff = oblique_affine()
    lps = LPS @ aff[:3, :]
    offsets = [0, 2.5, 5.0, 7.5, 10.7, 13.2, 15.7, 18.2]
    pos = [lps[:, 3] + o / 2.5 * lps[:, 2] for o in offsets]
    write_series(tmp_path, block[:, :, :8], aff, positions=pos)
    with pytest.raises(InputError, match="irregular slice spacing: steps from 2.5 to 3.2 mm"):
        read_dicom(tmp_path)


def test_gantry_tilt_refused(tmp_path, block):
    aff = np.diag([0.5, 0.5, 2.0, 1.0])
    lps = LPS @ aff[:3, :]
    # 15 degrees of tilt: each slice shifts 2*tan(15 deg) mm along the column direction.
    shift = 2.0 * np.tan(np.radians(15))
    pos = [lps[:, 3] + k * lps[:, 2] + k * shift * np.array([0, 1.0, 0]) for k in range(8)]
    write_series(tmp_path, block[:, :, :8], aff, positions=pos)
    with pytest.raises(InputError, match=r"gantry tilt: .*\(15.00 degrees"):
        read_dicom(tmp_path)


def test_missing_position_tags_refused(tmp_path, block):
    # A series of several files without positions cannot be stacked (one such file is a 2D image).
    write_series(tmp_path, block[:, :, :4], oblique_affine(), drop_position_tags=True)
    with pytest.raises(InputError, match=r"4 images without patient position .* cannot be stacked into a volume"):
        read_dicom(tmp_path)
    # Some slices with positions, some without: the series is damaged.
    write_series(tmp_path / "mixed", block[:, :, :4], oblique_affine(), series_uid="1.2.826.0.1.3680043.9.5")
    write_series(tmp_path / "mixed" / "b", block[:, :, 4:6], oblique_affine(), drop_position_tags=True, series_uid="1.2.826.0.1.3680043.9.5", acquisition=2)
    with pytest.raises(InputError, match=r"missing position tags .* in 2 of 6 slices"):
        read_dicom(tmp_path / "mixed")


def test_no_dicom_in_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "scan.bin").write_bytes(b"\0" * 300)
    with pytest.raises(InputError, match=r"no DICOM files found in this folder \(2 files searched\)"):
        io.read(tmp_path)


def test_repeated_positions_make_4d(tmp_path, block):
    aff = oblique_affine()
    uid = "1.2.826.0.1.3680043.9.77"
    write_series(tmp_path, block[:, :, :6], aff, series_uid=uid, acquisition=1)
    write_series(tmp_path, block[:, :, :6] + 1, aff, series_uid=uid, acquisition=2, seed=3)
    img = io.read(tmp_path)
    assert img.shape == (64, 72, 6, 2)
    np.testing.assert_allclose(img.affine, aff, atol=1e-5)
    np.testing.assert_array_equal(img.data[..., 0], block[:, :, :6])
    np.testing.assert_array_equal(img.data[..., 1], block[:, :, :6] + 1)


def test_enhanced_multiframe(tmp_path, block):
    aff = oblique_affine(deg=(10.0, -30.0, 5.0))
    write_enhanced(tmp_path / "enh.dcm", block[:, :, :9], aff, slope=2.0, intercept=-50.0)
    img = io.read(tmp_path / "enh.dcm")
    np.testing.assert_allclose(img.affine, aff, atol=1e-5)
    stored = np.rint((block[:, :, :9] + 50.0) / 2.0)
    np.testing.assert_array_equal(img.data, (stored * 2.0 - 50.0).astype(img.dtype))
    assert img.meta["dicom"]["series_number"] == 7


def test_legacy_multiframe_rtdose():
    import pydicom

    path = PYDICOM_FILES / "rtdose.dcm"
    ds = pydicom.dcmread(path)
    img = io.read(path)
    assert img.shape == (10, 10, 15)
    np.testing.assert_allclose(img.spacing, (10.0, 10.0, 5.0))
    np.testing.assert_allclose(img.origin, (-189.43125, -199.43125, -761.87))
    np.testing.assert_allclose(img.data, np.transpose(ds.pixel_array, (2, 1, 0)) * float(ds.DoseGridScaling), rtol=1e-6)


def test_cli_convert_dicom_to_nifti_and_info(cli, oblique_series, tmp_path):
    folder, truth, _ = oblique_series
    out = tmp_path / "t1.nii.gz"
    r = cli("convert", folder, "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    back = io.read(out)
    np.testing.assert_allclose(back.affine, truth, atol=1e-5)
    np.testing.assert_array_equal(back.data, io.read(folder).data)
    r = cli("info", folder, "--json", "--header-only")
    assert r.returncode == 0
    info = json.loads(r.stdout)
    assert info["dicom"]["slices"] == 24 and info["dicom"]["modality"] == "MR"
    r = cli("info", folder)
    assert "dicom series_description   test series" in r.stdout.decode()


def test_cli_series_option(cli, tmp_path, block):
    write_series(tmp_path / "a", block[:, :, :5], oblique_affine(), series_number=2, description="one")
    write_series(tmp_path / "b", block[:, :, :7], oblique_affine(), series_number=4, description="two")
    r = cli("convert", tmp_path, "-o", tmp_path / "x.nii.gz")
    assert r.returncode == 3 and not (tmp_path / "x.nii.gz").exists()
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "2 DICOM series found" in err[0] and "'two' (7 slices)" in err[0]
    r = cli("convert", tmp_path, "--series", "4", "-o", tmp_path / "x.nii.gz")
    assert r.returncode == 0, r.stderr.decode()
    assert io.read(tmp_path / "x.nii.gz").shape == (64, 72, 7)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
    ],
)
def test_other_transfer_syntaxes_match_pydicom(name):
    """Big-endian, RLE, JPEG-LS and JPEG 2000 go through pydicom's decoders; plain files through the byte view."""
    import pydicom

    ref = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm").pixel_array
    img = io.read(PYDICOM_FILES / name)
    assert img.dtype == np.int16 and img.data.dtype == np.int16  # native byte order
    np.testing.assert_array_equal(img.data[:, :, 0], ref.T)


def test_missing_decoder_names_syntax_and_package(tmp_path):
    """Without the plugins, one line names the transfer syntax and the package to install."""
    import subprocess
    import sys

    hide = "import sys; [sys.modules.__setitem__(m, None) for m in ('libjpeg', 'openjpeg', 'pylibjpeg', 'rle', 'jpeg_ls', 'gdcm')]"
    code = f"{hide}; sys.argv = ['medcli'] + sys.argv[1:]; from medcli.cli.app import main; main()"
    r = subprocess.run([sys.executable, "-c", code, "info", str(PYDICOM_FILES / "MR_small_jpeg_ls_lossless.dcm")], capture_output=True, text=True)
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [
        f"medcli: error: {PYDICOM_FILES / 'MR_small_jpeg_ls_lossless.dcm'}: cannot decode 'JPEG-LS Lossless Image Compression' "
        "pixel data: no decoder installed (pip install pylibjpeg pylibjpeg-libjpeg)"
    ]


def test_corrupt_compressed_data_is_one_line(cli, tmp_path):
    r = cli("convert", PYDICOM_FILES / "JPEG-lossy.dcm", "-o", tmp_path / "x.nii.gz")
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 3 and not (tmp_path / "x.nii.gz").exists()
    assert err[-1].startswith("medcli: error: ") and "cannot decode 'JPEG Extended (Process 2 and 4)' pixel data (" in err[-1]
    assert "Traceback" not in r.stderr.decode()


def test_headerless_file_read_with_warning(cli, tmp_path):
    pixels = np.arange(6 * 7, dtype=np.uint16).reshape(6, 7) * 3
    write_planar(tmp_path / "old.dcm", pixels, headerless=True, pixel_spacing=(0.4, 0.5))
    assert (tmp_path / "old.dcm").read_bytes()[128:132] != b"DICM"
    img = io.read(tmp_path / "old.dcm")
    np.testing.assert_array_equal(img.data, pixels.T)
    assert img.meta["dicom"]["part10_header"] is False
    # In a folder too, beside files that are not DICOM at all.
    (tmp_path / "notes.txt").write_text("(0008,0016) is a tag, this is not DICOM\n")
    r = cli("convert", tmp_path, "-o", tmp_path / "old.nii.gz")
    assert r.returncode == 0, r.stderr.decode()
    assert "no DICOM Part 10 header (preamble and meta information); read as implicit VR little endian" in r.stderr.decode()
    np.testing.assert_array_equal(io.read(tmp_path / "old.nii.gz").data, pixels.T)


def test_radiograph_without_position_is_2d(cli, tmp_path):
    """A DX with ImagerPixelSpacing only: 2D, its spacing, a warning; 3D commands refuse it in one line."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, (40, 30)).astype(np.uint16)
    path = write_planar(tmp_path / "chest.dcm", pixels, modality="DX", imager_spacing=(0.15, 0.2),
                        sop_class="1.2.840.10008.5.1.4.1.1.1.1")
    img = io.read(path)
    assert img.shape == (30, 40)
    np.testing.assert_allclose(img.affine, np.diag([-0.2, -0.15, 1.0, 1.0]))
    np.testing.assert_array_equal(img.data, pixels.T)
    r = cli("convert", path, "-o", tmp_path / "chest.nii.gz")
    assert r.returncode == 0, r.stderr.decode()
    assert "2D DX image without patient position" in r.stderr.decode() and "0.2 x 0.15 mm from ImagerPixelSpacing" in r.stderr.decode()
    import nibabel as nib

    out = nib.load(tmp_path / "chest.nii.gz")
    assert out.shape == (30, 40) and out.get_data_dtype() == np.uint16
    np.testing.assert_array_equal(np.asarray(out.dataobj), pixels.T)
    r = cli("info", path)
    assert r.returncode == 0 and "2D, no patient position" in r.stdout.decode() and "shape        30 x 40" in r.stdout.decode()


@pytest.mark.slow
def test_3d_command_refuses_2d_dicom_in_one_line(cli, tmp_path):
    pixels = np.arange(40 * 30, dtype=np.uint16).reshape(40, 30)
    path = write_planar(tmp_path / "chest.dcm", pixels, modality="DX", imager_spacing=(0.15, 0.2),
                        sop_class="1.2.840.10008.5.1.4.1.1.1.1")
    r = cli("denoise", path, "-o", tmp_path / "dn.nii.gz")
    assert r.returncode == 3 and not (tmp_path / "dn.nii.gz").exists()
    assert r.stderr.decode().strip().splitlines()[-1] == (
        f"medcli: error: {path}: this command needs a 3D image; this is a 2D image "
        "(Digital X-Ray Image Storage - For Presentation, shape (30, 40)) without patient position"
    )


def test_rgb_secondary_capture_is_a_colour_image(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 25, 3)).astype(np.uint8)
    path = write_planar(tmp_path / "shot.dcm", rgb, photometric="RGB", modality="OT", pixel_spacing=(0.5, 0.5))
    img = io.read(path)
    assert img.shape == (25, 20, 1, 3) and img.meta["color"] == "RGB"
    np.testing.assert_array_equal(img.data[:, :, 0, :], rgb.transpose(1, 0, 2))
    # NIfTI: components on the 5th axis with the vector intent; NRRD: a 3-component vector pixel.
    io.write(img, tmp_path / "shot.nii.gz")
    io.write(img, tmp_path / "shot.nrrd")
    import nibabel as nib
    import SimpleITK as sitk

    nimg = nib.load(tmp_path / "shot.nii.gz")
    assert nimg.shape == (25, 20, 1, 1, 3) and nimg.header.get_intent()[0] == "vector"
    np.testing.assert_array_equal(np.asarray(nimg.dataobj)[:, :, 0, 0, :], rgb.transpose(1, 0, 2))
    vec = sitk.ReadImage(str(tmp_path / "shot.nrrd"))
    assert vec.GetNumberOfComponentsPerPixel() == 3 and vec.GetSize() == (25, 20, 1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(vec)[0], rgb)
    for name in ("shot.nii.gz", "shot.nrrd"):
        back = io.read(tmp_path / name)
        assert back.shape == (25, 20, 1, 3)
        np.testing.assert_array_equal(back.data[:, :, 0, :], rgb.transpose(1, 0, 2))


def test_palette_colour_is_looked_up():
    import pydicom
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(PYDICOM_FILES / "examples_palette.dcm")
    ref = apply_color_lut(ds.pixel_array, ds)  # (rows, cols, 3) uint16
    img = io.read(PYDICOM_FILES / "examples_palette.dcm")
    assert img.shape == (800, 350, 1, 3) and img.dtype == np.uint16
    np.testing.assert_array_equal(img.data[:, :, 0, :], ref.transpose(1, 0, 2))


def test_enhanced_multi_echo_is_4d(tmp_path, block):
    aff = oblique_affine(deg=(5.0, -10.0, 15.0))
    vol = np.stack([block[:, :, :6] * f for f in (1.0, 0.7, 0.5)], axis=-1)
    write_enhanced(tmp_path / "me.dcm", vol, aff, echo_times=[30.0, 10.0, 20.0])
    img = io.read(tmp_path / "me.dcm")
    assert img.shape == (64, 72, 6, 3)
    np.testing.assert_allclose(img.affine, aff, atol=1e-5)
    # Volumes come in echo-time order, whatever the frame order in the file.
    np.testing.assert_array_equal(img.data, np.rint(vol[..., [1, 2, 0]]).astype(img.dtype))
    assert img.meta["dicom"]["echo_times_ms"] == [10.0, 20.0, 30.0]


def test_enhanced_diffusion_b_values(tmp_path, block):
    vol = np.stack([block[:, :, :4], block[:, :, :4] * 0.5], axis=-1)
    write_enhanced(tmp_path / "dwi.dcm", vol, oblique_affine(), b_values=[1000.0, 0.0])
    img = io.read(tmp_path / "dwi.dcm")
    assert img.shape == (64, 72, 4, 2) and img.meta["dicom"]["b_values"] == [0.0, 1000.0]
    np.testing.assert_array_equal(img.data[..., 0], np.rint(vol[..., 1]).astype(img.dtype))


def test_enhanced_object_with_two_stacks_lists_each(tmp_path, block):
    ax = oblique_affine(deg=(0.0, 0.0, 0.0))
    sag = oblique_affine(deg=(0.0, 90.0, 0.0))
    write_enhanced(tmp_path / "loc.dcm", block[:, :, :5], ax, stacks=[(block[:, :, 5:8], sag)])
    with pytest.raises(InputError, match=r"2 DICOM series found.*/stack-1 'enhanced \(stack 1\)' \(5 slices\).*/stack-2 'enhanced \(stack 2\)' \(3 slices\)"):
        io.read(tmp_path / "loc.dcm")
    img = io.read(tmp_path / "loc.dcm", series=_stack_uid(tmp_path / "loc.dcm", "2"))
    assert img.shape == (64, 72, 3)
    np.testing.assert_allclose(img.affine, sag, atol=1e-5)
    np.testing.assert_array_equal(img.data, block[:, :, 5:8])


def _stack_uid(path, stack):
    from medcli.io.dicom import list_series

    return next(s["series_uid"] for s in list_series(path) if s["series_uid"].endswith(f"/stack-{stack}"))


def test_non_image_objects_named_by_info_refused_by_convert(cli, tmp_path):
    names = ["rtplan.dcm", "test-SR.dcm", "waveform_ecg.dcm", "rtstruct.dcm"]
    r = cli("info", *[PYDICOM_FILES / n for n in names])
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert out.count("DICOM, no image: 1 object(s)") == 4
    for what in ("RT Plan Storage, modality RTPLAN", "Comprehensive SR Storage, modality SR 'Demonstration of SR Features'",
                 "12-lead ECG Waveform Storage, modality ECG", "RT Structure Set Storage, modality RTSTRUCT"):
        assert what in out
    r = cli("convert", PYDICOM_FILES / "rtplan.dcm", "-o", tmp_path / "x.nii.gz")
    assert r.returncode == 3 and not (tmp_path / "x.nii.gz").exists()
    assert r.stderr.decode().strip().splitlines() == [
        f"medcli: error: {PYDICOM_FILES / 'rtplan.dcm'}: not an image: DICOM RT Plan Storage object (modality RTPLAN); "
        "medcli reads images only"
    ]


def test_siemens_mosaic_unpacked_like_nibabel(tmp_path):
    """nibabel's Siemens DWI mosaics (pixels replaced by random values): slices, geometry and b-values."""
    import gzip
    import warnings

    import nibabel
    import pydicom

    data = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
    if not (data / "siemens_dwi_0.dcm.gz").exists():
        pytest.skip("nibabel's test data is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom.dicomwrappers import wrapper_from_data
    rng = np.random.default_rng(3)
    refs = []
    for b in (1000, 0):  # written in the reverse order: the reader sorts by acquisition
        raw = tmp_path / f"b{b}.dcm"
        raw.write_bytes(gzip.decompress((data / f"siemens_dwi_{b}.dcm.gz").read_bytes()))
        ds = pydicom.dcmread(raw)
        ds.PixelData = rng.integers(0, 4000, (ds.Rows, ds.Columns)).astype(np.uint16).tobytes()
        ds.save_as(tmp_path / f"IM{b:04d}", enforce_file_format=True)
        raw.unlink()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = wrapper_from_data(pydicom.dcmread(tmp_path / f"IM{b:04d}"))
            refs.append((b, w.get_data(), w.affine))  # nibabel: (rows, cols, slices) -> LPS
    img = io.read(tmp_path)
    assert img.shape == (128, 128, 48, 2) and img.meta["dicom"]["b_values"] == [0.0, 1000.0]
    swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])  # (cols, rows) <-> (rows, cols)
    for b, vol, aff in refs:
        t = 0 if b == 0 else 1
        np.testing.assert_array_equal(img.data[..., t], vol.transpose(1, 0, 2))
        np.testing.assert_allclose(img.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff @ swap, atol=1e-5)

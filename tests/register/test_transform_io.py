"""Transform files read back by SimpleITK and ANTsPy, and ANTs-written files applied by medcli."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medcli.errors import InputError, ProcessingError
from medcli.register.transform_io import read_transform, write_transform
from medcli.register.transforms import (
    AffineTransform,
    DisplacementField,
    TransformChain,
    warp_image,
)
from tests.register._interop import (
    LPS,
    ants_points,
    ants_syn,
    brain_points,
    bump_field,
    known_affine,
    rel_diff,
    sitk_points,
    t1_4mm,
    to_ants,
)

sitk = pytest.importorskip("SimpleITK")
ants = pytest.importorskip("ants")


@pytest.fixture(scope="module")
def t1():
    return t1_4mm()


@pytest.mark.parametrize("ext", [".mat", ".tfm"])
def test_affine_round_trip_and_simpleitk(ext, tmp_path, t1):
    t = known_affine()
    path = tmp_path / f"a{ext}"
    write_transform(t, path)
    back = read_transform(path)
    assert len(back) == 1
    np.testing.assert_allclose(back[0].matrix, t.matrix, atol=1e-12)
    np.testing.assert_allclose(back[0].center, t.center, atol=1e-12)
    pts = brain_points(t1)
    tx = sitk.ReadTransform(str(path))
    assert np.abs(sitk_points(tx, pts) - t.transform_points(pts)).max() < 1e-6


def test_mat_is_matlab_v4_with_ants_names(tmp_path):
    from scipy import io as sio

    path = tmp_path / "a.mat"
    write_transform(known_affine(), path)
    mat = sio.loadmat(str(path))
    assert mat["AffineTransform_double_3_3"].shape == (12, 1) and mat["fixed"].shape == (3, 1)
    # v4 files begin with the 4 int32 header words (type 0: little-endian double, full matrix)
    assert int.from_bytes(path.read_bytes()[:4], "little") == 0
    # ANTs' own reader: parameters and centre as written
    at = ants.read_transform(str(path))
    np.testing.assert_allclose(at.fixed_parameters, known_affine().center * LPS, atol=1e-4)


def test_affine_applied_by_ants(tmp_path, t1):
    t = known_affine()
    path = tmp_path / "a.mat"
    write_transform(t, path)
    fixed = to_ants(t1, tmp_path)
    theirs = ants.apply_transforms(fixed, fixed, [str(path)], interpolator="linear").numpy()
    ours = warp_image(t1, [t], t1).data
    assert rel_diff(ours, theirs) < 1e-3
    pts = brain_points(t1)
    assert np.abs(ants_points(pts, [path]) - t.transform_points(pts)).max() < 0.01


def test_field_nifti_header_is_itk(tmp_path, t1):
    path = tmp_path / "w.nii.gz"
    write_transform(bump_field(t1), path)
    nimg = nib.load(str(path))
    assert nimg.shape == t1.shape + (1, 3)
    assert nimg.header.get_intent()[0] == "vector" and nimg.get_data_dtype() == np.float32
    np.testing.assert_allclose(nimg.affine, t1.affine, atol=1e-4)
    # LPS in the file: x and y displacements negated
    u = bump_field(t1).displacements
    k = np.unravel_index(np.abs(u[..., 0]).argmax(), u.shape[:3])
    np.testing.assert_allclose(np.asarray(nimg.dataobj)[k][0], u[k] * LPS, rtol=1e-6)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_field_read_by_simpleitk(ext, tmp_path, t1):
    field = bump_field(t1)
    path = tmp_path / f"w{ext}"
    write_transform(field, path)
    back = read_transform(path)[0]
    assert isinstance(back, DisplacementField)
    np.testing.assert_allclose(back.displacements, field.displacements, atol=1e-6)
    tx = sitk.DisplacementFieldTransform(sitk.ReadImage(str(path), sitk.sitkVectorFloat64))
    pts = brain_points(t1)
    assert np.abs(sitk_points(tx, pts) - field.transform_points(pts)).max() < 0.01


def test_field_applied_by_ants(tmp_path, t1):
    field = bump_field(t1)
    path = tmp_path / "w.nii.gz"
    write_transform(field, path)
    fixed = to_ants(t1, tmp_path)
    theirs = ants.apply_transforms(fixed, fixed, [str(path)], interpolator="linear").numpy()
    assert rel_diff(warp_image(t1, [field], t1).data, theirs) < 1e-3
    pts = brain_points(t1)
    assert np.abs(ants_points(pts, [path]) - field.transform_points(pts)).max() < 0.01


def test_chain_of_field_and_affine_applied_by_ants(tmp_path, t1):
    chain = TransformChain([bump_field(t1), known_affine()])
    write_transform(chain[0], tmp_path / "w.nii.gz")
    write_transform(chain[1], tmp_path / "a.mat")
    fixed = to_ants(t1, tmp_path)
    files = [str(tmp_path / "w.nii.gz"), str(tmp_path / "a.mat")]
    theirs = ants.apply_transforms(fixed, fixed, files, interpolator="linear").numpy()
    assert rel_diff(warp_image(t1, chain, t1).data, theirs) < 1e-3
    pts = brain_points(t1)
    assert np.abs(ants_points(pts, files) - chain.transform_points(pts)).max() < 0.01


def test_ants_written_transforms_applied_identically(t1, tmp_path):
    reg, moving, _ = ants_syn()
    fwd = reg["fwdtransforms"]
    assert fwd[0].endswith("1Warp.nii.gz") and fwd[1].endswith("0GenericAffine.mat")
    chain = TransformChain([t for f in fwd for t in read_transform(f)])
    assert isinstance(chain[0], DisplacementField) and isinstance(chain[1], AffineTransform)
    assert chain[0].inverse_field is not None  # 1InverseWarp.nii.gz found beside the warp
    fixed = to_ants(t1, tmp_path)
    theirs = ants.apply_transforms(fixed, to_ants(moving, tmp_path), fwd, interpolator="linear").numpy()
    ours = warp_image(moving, chain, t1).data
    assert rel_diff(ours, theirs) < 1e-3
    pts = brain_points(t1)
    assert np.abs(ants_points(pts, fwd) - chain.transform_points(pts)).max() < 0.01
    # and the registration worked: the warped moving image is close to the fixed one
    assert np.corrcoef(ours.ravel(), t1.data.ravel())[0, 1] > 0.97


def test_composite_tfm_order_as_itk(tmp_path, t1):
    # ITK applies the last transform of a composite first.
    text = (
        "#Insight Transform File V1.0\n#Transform 0\nTransform: CompositeTransform_double_3_3\n"
        "#Transform 1\nTransform: AffineTransform_double_3_3\n"
        "Parameters: 0 -1 0 1 0 0 0 0 1 10 0 0\nFixedParameters: 0 0 0\n"
        "#Transform 2\nTransform: TranslationTransform_double_3_3\nParameters: 1 2 3\nFixedParameters:\n"
    )
    path = tmp_path / "c.tfm"
    path.write_text(text)
    chain = read_transform(path)
    pts = brain_points(t1, 10)
    np.testing.assert_allclose(chain.transform_points(pts), sitk_points(sitk.ReadTransform(str(path)), pts), atol=1e-9)


def test_composite_h5_with_field_as_itk(tmp_path, t1):
    """An HDF5 composite (antsRegistration --write-composite-transform, Slicer) of an affine and a field."""
    write_transform(bump_field(t1), tmp_path / "w.nii.gz")
    write_transform(known_affine(), tmp_path / "a.mat")
    comp = sitk.CompositeTransform(3)
    comp.AddTransform(sitk.ReadTransform(str(tmp_path / "a.mat")))
    comp.AddTransform(sitk.DisplacementFieldTransform(sitk.ReadImage(str(tmp_path / "w.nii.gz"), sitk.sitkVectorFloat64)))
    sitk.WriteTransform(comp, str(tmp_path / "Composite.h5"))
    chain = read_transform(tmp_path / "Composite.h5")
    assert [type(t) for t in chain] == [DisplacementField, AffineTransform]  # the field applies first
    pts = brain_points(t1)
    assert np.abs(chain.transform_points(pts) - sitk_points(comp, pts)).max() < 0.01


@pytest.mark.parametrize("kind", ["euler", "versor", "similarity"])
@pytest.mark.parametrize("ext", [".tfm", ".h5", ".mat"])
def test_rigid_types_written_by_itk(kind, ext, tmp_path, t1):
    c = (3.0, -5.0, 8.0)
    if kind == "euler":
        tx = sitk.Euler3DTransform(c, 0.1, -0.05, 0.2, (2.0, 3.0, -1.0))
    elif kind == "versor":
        tx = sitk.VersorRigid3DTransform((0.05, -0.1, 0.02, float(np.sqrt(1 - 0.0129))), (1.0, 2.0, 3.0), c)
    else:
        tx = sitk.Similarity3DTransform(1.1, (0.0, 0.0, 1.0), 0.3, (1.0, 2.0, 3.0), c)
    path = tmp_path / f"t{ext}"
    sitk.WriteTransform(tx, str(path))
    chain = read_transform(path)
    pts = brain_points(t1, 10)
    np.testing.assert_allclose(chain.transform_points(pts), sitk_points(tx, pts), atol=1e-6)


def test_bad_transforms(tmp_path, t1):
    with pytest.raises(InputError, match="no such file"):
        read_transform(tmp_path / "none.mat")
    p = tmp_path / "t2.tfm"
    p.write_text("#Insight Transform File V1.0\nTransform: AffineTransform_double_2_2\nParameters: 1 0 0 1 0 0\nFixedParameters: 0 0\n")
    with pytest.raises(InputError, match="2D transform"):
        read_transform(p)
    p = tmp_path / "junk.mat"
    p.write_bytes(b"not a matlab file at all")
    with pytest.raises(InputError):
        read_transform(p)
    img2 = tmp_path / "two.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 1, 2), np.float32), np.eye(4)), str(img2))
    with pytest.raises(InputError, match="3 components"):
        read_transform(img2)
    scalar = tmp_path / "scalar.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(scalar))
    with pytest.raises(InputError, match="not a displacement field"):
        read_transform(scalar)
    bs = sitk.BSplineTransformInitializer(sitk.Image(8, 8, 8, sitk.sitkFloat32), (4, 4, 4))
    sitk.WriteTransform(bs, str(tmp_path / "bs.tfm"))
    with pytest.raises(InputError, match="not supported"):
        read_transform(tmp_path / "bs.tfm")
    with pytest.raises(ProcessingError, match="displacement field cannot"):
        write_transform(bump_field(t1), tmp_path / "w.mat")
    with pytest.raises(ProcessingError, match="affine is written"):
        write_transform(known_affine(), tmp_path / "a.nii.gz")

"""NRRD/MetaImage: every ITK pixel type maps to the right dtype, vectors and 2D, LPS <-> RAS."""

from __future__ import annotations

import numpy as np
import pytest

from medcli import io
from medcli.errors import InputError
from medcli.io.itk import _PIXEL_DTYPES


def _sitk():
    import SimpleITK as sitk

    return sitk


SCALARS = [n for n in _PIXEL_DTYPES if "Vector" not in n and "Complex" not in n]


@pytest.mark.parametrize("name", SCALARS)
def test_scalar_pixel_types(name, tmp_path):
    sitk = _sitk()
    dtype = np.dtype(_PIXEL_DTYPES[name])
    arr = (np.arange(4 * 5 * 6) % 100).reshape(6, 5, 4).astype(dtype)  # (z, y, x)
    img = sitk.GetImageFromArray(arr)
    assert img.GetPixelID() == getattr(sitk, name)
    img.SetSpacing((0.5, 0.75, 2.0))
    sitk.WriteImage(img, str(tmp_path / "x.nrrd"))
    back = io.read(tmp_path / "x.nrrd")
    assert back.dtype == dtype and not back.is_loaded  # the header alone gives the dtype
    np.testing.assert_array_equal(back.data, arr.transpose(2, 1, 0))
    assert back.data.dtype == dtype
    np.testing.assert_allclose(back.spacing, (0.5, 0.75, 2.0))


def test_vector_image_becomes_channels_last(tmp_path):
    sitk = _sitk()
    arr = np.random.default_rng(0).random((6, 5, 4, 3)).astype(np.float32)  # (z, y, x, c)
    img = sitk.GetImageFromArray(arr, isVector=True)
    assert img.GetPixelID() == sitk.sitkVectorFloat32
    sitk.WriteImage(img, str(tmp_path / "v.mha"))
    back = io.read(tmp_path / "v.mha")
    assert back.shape == (4, 5, 6, 3) and back.dtype == np.float32
    np.testing.assert_array_equal(back.data, arr.transpose(2, 1, 0, 3))


def test_2d_image_gets_a_third_axis(tmp_path):
    sitk = _sitk()
    arr = np.arange(20, dtype=np.int16).reshape(4, 5)  # (y, x)
    img = sitk.GetImageFromArray(arr)
    img.SetOrigin((10.0, 20.0))
    sitk.WriteImage(img, str(tmp_path / "s.nrrd"))
    back = io.read(tmp_path / "s.nrrd")
    assert back.shape == (5, 4, 1)
    np.testing.assert_array_equal(back.data[:, :, 0], arr.T)
    np.testing.assert_allclose(back.origin, (-10.0, -20.0, 0.0))  # LPS -> RAS


def test_lps_origin_and_direction_become_ras(tmp_path):
    sitk = _sitk()
    img = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.uint8))
    img.SetOrigin((1.0, 2.0, 3.0))
    img.SetSpacing((1.0, 2.0, 3.0))
    sitk.WriteImage(img, str(tmp_path / "o.mha"))
    back = io.read(tmp_path / "o.mha")
    np.testing.assert_allclose(back.affine, [[-1, 0, 0, -1], [0, -2, 0, -2], [0, 0, 3, 3], [0, 0, 0, 1]])
    assert back.orientation == "LPS"


def test_truncated_data_is_input_error(tmp_path):
    sitk = _sitk()
    img = sitk.GetImageFromArray(np.random.default_rng(1).random((20, 20, 20)).astype(np.float32))
    sitk.WriteImage(img, str(tmp_path / "t.mha"), useCompression=False)
    raw = (tmp_path / "t.mha").read_bytes()
    (tmp_path / "t.mha").write_bytes(raw[: len(raw) // 2])
    lazy = io.read(tmp_path / "t.mha")  # the header is intact
    with pytest.raises(InputError, match="cannot read voxel data"):
        lazy.data  # noqa: B018

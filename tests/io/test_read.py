"""io.read dispatch: samples, named pipes, stdin streams, unknown formats, DICOM by content."""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest

from medcli import io
from medcli.errors import InputError
from medcli.io.stream import image_from_bytes, image_to_bytes


def test_samples(t1):
    assert t1.shape == (197, 233, 189) and t1.dtype == np.uint8
    ct = io.read("sample:ct")
    assert ct.meta["dicom"]["modality"] == "CT"
    with pytest.raises(InputError, match="unknown sample .*sample:t1"):
        io.read("sample:nope")


def test_named_pipe_is_read_as_a_nifti_stream(tmp_path, t1_path):
    """``medcli convert <(zcat scan.nii.gz)``: the name is a pipe, not a file with a size."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    payload = t1_path.read_bytes()

    def feed():
        with open(fifo, "wb") as f:
            f.write(payload)

    th = threading.Thread(target=feed)
    th.start()
    try:
        img = io.read(fifo)
    finally:
        th.join(timeout=30)
    ref = io.read(t1_path)
    np.testing.assert_array_equal(img.data, ref.data)
    np.testing.assert_allclose(img.affine, ref.affine)


def test_stream_round_trip_keeps_geometry_and_values(t1):
    from dicomgen import oblique_affine

    from medcli.image import Image

    img = Image(t1.data[::2, ::2, ::2].astype(np.float32) / 7, oblique_affine())
    back = image_from_bytes(image_to_bytes(img))
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)
    np.testing.assert_array_equal(back.data, img.data)


def test_truncated_stream():
    with pytest.raises(InputError, match="stream is not a NIfTI-1/2 image"):
        image_from_bytes(b"hello")
    with pytest.raises(InputError, match="empty stream"):
        image_from_bytes(b"")


def test_unknown_extension(tmp_path):
    f = tmp_path / "scan.png"
    f.write_bytes(b"\x89PNG" + bytes(100))
    with pytest.raises(InputError, match="unknown image format '.png'"):
        io.read(f)


def test_dicom_found_by_content_whatever_the_name(tmp_path):
    from medcli.samples import sample_path

    f = tmp_path / "IM_0001.img"
    shutil.copy(sample_path("mr"), f)
    img = io.read(f)
    assert img.shape == (64, 64, 1) and img.meta["dicom"]["modality"] == "MR"
    assert img.meta["source"] == str(f)


def test_folder_source_and_geometry_checked(tmp_path):
    from medcli.samples import sample_path

    shutil.copy(sample_path("ct"), tmp_path / "a")
    img = io.read(tmp_path)
    assert img.meta["source"] == str(tmp_path)
    assert img.shape == (128, 128, 1)


def test_header_only_reads_no_voxels(t1_path):
    img = io.read(t1_path)
    assert img.shape == (197, 233, 189) and not img.is_loaded

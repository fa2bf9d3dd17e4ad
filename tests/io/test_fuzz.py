"""A short seeded fuzz run over the readers (the long one: ``scripts/fuzz_readers.py``).

Mutated NIfTI, NRRD, MetaImage, MGH, DICOM, PAR/REC and MINC files must be
read or refused in one line: no other exception, no hang, no allocation for
an absurd header, no worker killed.
"""

from __future__ import annotations

import importlib.util
import time
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medcli import io
from medcli.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("fuzz_readers", ROOT / "scripts" / "fuzz_readers.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


def test_short_seeded_run_finds_nothing(tmp_path):
    res = fuzz.run_mutations(seed=20261129, cases=300, seconds=90, timeout=5.0, keep=tmp_path / "findings")
    assert res["cases"] >= 200
    assert not res["findings"], res["findings"][:5]
    total = Counter()
    for c in res["counts"].values():
        total.update(c)
    # the mutations reach both sides: files still read, and files refused for many reasons
    assert total["ok"] > 30 and total["refused"] > 60 and len(res["reasons"]) > 10
    assert {"nifti", "nifti_gz", "nrrd", "mha", "mgh", "mgz", "dicom"} <= set(res["counts"])


def test_mutations_are_reproducible():
    import random

    seeds = {"nifti": [bytes(range(256)) * 2]}
    a = [fuzz.mutate(seeds["nifti"][0], "nifti", random.Random(5)) for _ in range(3)]
    b = [fuzz.mutate(seeds["nifti"][0], "nifti", random.Random(5)) for _ in range(3)]
    assert a == b and any(x != seeds["nifti"][0] for x in a)


def _absurd_files(folder: Path) -> dict[str, Path]:
    big = (30000, 30000, 30000)
    n = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    raw = bytearray(n.to_bytes())
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw)))
    hdr.set_data_shape(big)
    files = {"nii": folder / "big.nii", "nrrd": folder / "big.nrrd", "mha": folder / "big.mha", "mgh": folder / "big.mgh"}
    files["nii"].write_bytes(hdr.binaryblock + b"\0" * 4 + bytes(16))
    files["nrrd"].write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 30000 30000 30000\nencoding: raw\n\n" + bytes(16))
    files["mha"].write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 30000 30000 30000\nElementType = MET_SHORT\n"
                             b"ElementDataFile = LOCAL\n" + bytes(16))  # fmt: skip
    m = bytearray(nib.MGHImage(np.zeros((2, 2, 2), np.float32), np.eye(4)).to_bytes())
    m[4:16] = np.array(big, ">i4").tobytes()
    files["mgh"].write_bytes(bytes(m))
    return files


@pytest.mark.parametrize("kind", ["nii", "nrrd", "mha", "mgh"])
def test_absurd_sizes_are_refused_before_any_allocation(tmp_path, kind, monkeypatch):
    monkeypatch.setenv("MEDCLI_MAX_MEMORY", "64M")
    path = _absurd_files(tmp_path)[kind]
    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"header claims dimensions \(30000, 30000, 30000\)"):
        io.read(path)
    assert time.monotonic() - t0 < 2.0

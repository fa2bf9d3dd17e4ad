"""CT tasks on CT-like phantoms with known anatomy, and on the real pydicom CT slice."""

from __future__ import annotations

import numpy as np
import pytest

from medcli.image import Image
from medcli.segment import ct

SPACING = (2.0, 2.0, 5.0)
SHAPE = (128, 110, 8)


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def phantom(kind: str, seed: int = 0):
    """A CT-like volume in HU and its true structures.

    An elliptic trunk (skin 2 mm, subcutaneous fat to 14 mm depth, muscle wall to
    24 mm, organs inside) lies on a carbon-fibre table (two 2 mm shells around
    foam, the top shell touching the back). ``chest`` adds two lungs with
    ribs against their walls, a vertebra (cortical ring + marrow), a contrast-filled aorta and a stomach gas
    bubble; ``abdomen`` adds two visceral fat pads. Gaussian noise of 15 HU.
    """
    rng = np.random.default_rng(seed)
    x = (np.arange(SHAPE[0]) - SHAPE[0] / 2 + 0.5) * SPACING[0]  # mm, +x = patient right (RAS)
    y = (np.arange(SHAPE[1]) - SHAPE[1] / 2 + 0.5 + 8) * SPACING[1]  # +y anterior
    X, Y = np.meshgrid(x, y, indexing="ij")
    a, b = 100.0, 70.0
    r = np.sqrt((X / a) ** 2 + (Y / b) ** 2)

    def inside(cx, cy, ra, rb):
        return ((X - cx) / ra) ** 2 + ((Y - cy) / rb) ** 2 <= 1

    def depth_ellipse(d):  # ellipse shrunk by d mm
        return inside(0, 0, a - d, b - d)

    hu = np.full(X.shape, -1000.0)
    body = depth_ellipse(0)
    hu[body] = 40.0  # skin
    sat_zone = depth_ellipse(2) & ~depth_ellipse(14)
    hu[sat_zone] = -100.0
    hu[depth_ellipse(14) & ~depth_ellipse(24)] = 50.0  # muscle wall
    hu[depth_ellipse(24)] = 35.0  # organs
    truth = {"body": body.copy(), "sat": sat_zone.copy()}
    # table: shells at the bottom of the body (y = -b), foam in between
    ybot = -b
    top_shell = (Y < ybot + 0.5) & (Y >= ybot - 2) & (np.abs(X) < 120)
    bottom_shell = (Y < ybot - 20) & (Y >= ybot - 22) & (np.abs(X) < 120)
    foam = (Y < ybot - 2) & (Y >= ybot - 20) & (np.abs(X) < 120)
    hu[foam & ~body] = -950.0
    hu[(top_shell | bottom_shell) & ~body] = 300.0
    truth["table"] = (foam | top_shell | bottom_shell) & ~body
    if kind == "chest":
        right = inside(45, 5, 32, 38)
        left = inside(-45, 5, 32, 38)
        hu[right | left] = -850.0
        ring_out, ring_in = inside(0, -40, 16, 16), inside(0, -40, 10, 10)
        hu[ring_out] = 700.0
        hu[ring_in] = 150.0  # marrow
        aorta = inside(-14, -18, 8, 8)
        hu[aorta] = 280.0  # iodinated contrast
        gas = inside(30, -40, 5, 5) & ~right
        hu[gas] = -1000.0
        # ribs: 4 mm bone disks against the lateral wall of each lung (lungs touch ribs)
        ribs = np.zeros_like(body)
        for side in (1, -1):
            for deg in (-40, 0, 40):
                t = np.deg2rad(deg)
                ribs |= inside(side * (45 + 36 * np.cos(t)), 5 + 42 * np.sin(t), 4, 4)
        hu[ribs] = 700.0
        truth.update(right=right, left=left, bone=(ring_out & ~ring_in) | ribs, aorta=aorta, gas=gas)
    else:
        vat = inside(-30, 0, 22, 15) | inside(35, -10, 18, 20)
        hu[vat] = -100.0
        truth["vat"] = vat
    vol = np.repeat(hu[:, :, None], SHAPE[2], axis=2) + rng.normal(0, 15, SHAPE)
    truth = {k: np.repeat(v[:, :, None], SHAPE[2], axis=2) for k, v in truth.items()}
    return Image(vol.astype(np.float32), np.diag(list(SPACING) + [1.0])), truth


def test_body_removes_table_and_fills_lungs():
    img, truth = phantom("chest")
    body = ct.segment_body(img).data
    assert body.dtype == np.uint8 and set(np.unique(body)) == {0, 1}
    assert dice(body, truth["body"]) > 0.98
    assert (body.astype(bool) & truth["table"]).sum() < 0.02 * truth["table"].sum()
    assert body[truth["right"]].all()  # lungs are holes of the body, filled


def test_body_without_postprocess_keeps_table():
    img, truth = phantom("chest")
    raw = ct.segment_body(img, postprocess=False).data
    assert raw[truth["table"]].mean() > 0.1  # the shells are above -500 HU
    assert dice(raw, truth["body"]) < dice(ct.segment_body(img).data, truth["body"])


def test_lungs_left_right_and_gas_excluded():
    img, truth = phantom("chest")
    lungs = ct.segment_lungs(img).data
    assert dice(lungs == 1, truth["right"]) > 0.95
    assert dice(lungs == 2, truth["left"]) > 0.95
    assert not lungs[truth["gas"]].any()


def test_air_walled_by_bone_is_not_lung():
    """A head: paranasal-sinus-like air pockets inside thick bone are not lungs, whatever their size."""
    img, _ = phantom("abdomen")
    hu = np.full(SHAPE, -1000.0)
    x = (np.arange(SHAPE[0]) - SHAPE[0] / 2) * SPACING[0]
    y = (np.arange(SHAPE[1]) - SHAPE[1] / 2) * SPACING[1]
    X, Y = np.meshgrid(x, y, indexing="ij")
    r = np.sqrt((X / 90) ** 2 + (Y / 100) ** 2)
    hu[r <= 1] = 40.0  # scalp and brain
    hu[(r <= 0.93) & (r > 0.85)] = 1000.0  # skull
    frontal = (np.abs(X) < 25) & (Y > 70) & (Y < 88)
    hu[frontal] = 1000.0  # thick frontal bone
    sinus = (np.abs(X - 8) < 10) & (Y > 74) & (Y < 84)  # 20 x 10 mm air pocket in it
    hu[sinus] = -1000.0
    head = Image((hu + np.random.default_rng(0).normal(0, 15, SHAPE)).astype(np.float32), img.affine)
    assert not ct.segment_lungs(head).data.any()


def test_real_head_ct_has_no_lungs():
    """pydicom's 512 x 512 head CT slice (JPEG 2000): frontal sinuses and mastoid cells are not lungs; body and skull are found."""
    from pydicom.data import get_testdata_file

    from medcli import io

    img = io.read(get_testdata_file("J2K_pixelrep_mismatch.dcm"))
    assert not ct.segment_lungs(img).data.any()
    body = ct.segment_body(img).data.astype(bool)
    bone = ct.segment_bone(img).data.astype(bool)
    area = float(np.prod(img.spacing[:2])) / 100.0  # cm^2 per voxel
    assert 150 < body.sum() * area < 400  # an adult head's cross-section
    assert bone.sum() > 0.03 * body.sum() and not (bone & ~body).any()


def test_lungs_in_lps_orientation():
    img, truth = phantom("chest")
    lps = img.reorient("LPS")
    lungs = Image(ct.segment_lungs(lps).data, lps.affine).reorient("RAS").data
    assert dice(lungs == 1, truth["right"]) > 0.95  # sides follow world x, not array order


def test_bone_ring_without_contrast_blob():
    img, truth = phantom("chest")
    bone = ct.segment_bone(img).data.astype(bool)
    assert dice(bone, truth["bone"]) > 0.9
    assert not bone[truth["aorta"]].any()  # 280 HU contrast is not bone
    assert not bone[truth["table"]].any()  # nor is the table


def test_fat_subcutaneous_and_visceral_volumes():
    img, truth = phantom("abdomen")
    fat = ct.segment_fat(img).data
    vox = float(np.prod(SPACING)) / 1000
    for label, key in ((1, "sat"), (2, "vat")):
        true_ml = truth[key].sum() * vox
        got_ml = (fat == label).sum() * vox
        assert abs(got_ml - true_ml) / true_ml < 0.10, (key, got_ml, true_ml)
        assert dice(fat == label, truth[key]) > 0.85


def test_axial_axis_follows_world_superior():
    aff = np.array([[0, 0, 2.0, 0], [2.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 0, 1]])
    assert ct.axial_axis(aff) == 1


def test_mr_image_refused(t1):
    from medcli.errors import InputError

    with pytest.raises(InputError, match="Hounsfield"):
        ct.segment_body(t1)


def test_sample_ct_hu_windows():
    from medcli import io

    img = io.read("sample:ct")
    hu = np.asarray(img.data, np.float32)[..., 0]
    assert hu.min() < -800  # the DICOM rescale is applied: air is near -1000 HU
    body = ct.segment_body(img).data[..., 0].astype(bool)
    bone = ct.segment_bone(img).data[..., 0].astype(bool)
    fat = ct.segment_fat(img).data[..., 0]
    assert 0.6 < body.mean() < 0.95  # a crop of the trunk with air at one corner
    assert (hu[~body] < -500).mean() > 0.95  # outside the outline is air
    assert bone.sum() > 500 and np.median(hu[bone]) > 400 and hu[bone].min() > 150
    assert (bone & ~body).sum() == 0 or (bone & ~body).sum() < 0.01 * bone.sum()
    assert (fat > 0).any() and np.median(hu[fat > 0]) < -30


def test_cli_ct_lungs_labels_and_table(cli, tmp_path):
    from medcli import io

    img, truth = phantom("chest")
    src = tmp_path / "chest.nii.gz"
    io.write(img, str(src))
    r = cli("segment", src, "--task", "ct-lungs", "-o", tmp_path / "lungs.nii.gz", "--labels-out", tmp_path / "lungs.ctbl")
    assert r.returncode == 0, r.stderr.decode()
    out = io.read(str(tmp_path / "lungs.nii.gz"))
    assert np.allclose(out.affine, img.affine, atol=1e-5)
    assert dice(out.data == 2, truth["left"]) > 0.95
    table = (tmp_path / "lungs.ctbl").read_text().splitlines()
    assert "1 right_lung 40 200 255 255" in table and "2 left_lung 255 80 200 255" in table


def test_cli_ct_task_rejects_probabilities(cli, tmp_path):
    r = cli("segment", "sample:ct", "--task", "ct-bone", "-o", tmp_path / "b.nii.gz", "--probabilities", tmp_path / "p.nii.gz")
    assert r.returncode == 2
    assert b"rule-based" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b.nii.gz").exists()

"""The learned detector's second stage: candidate patches, fine blobs, re-scoring, training labels (partial labels)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medcli.detect import fpr  # noqa: E402
from medcli.detect.findings import Finding, sphere_box  # noqa: E402


def oblique_affine(spacing=(1.0, 1.2, 1.5)) -> np.ndarray:
    a, b = 0.4, 0.25
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag(spacing)
    aff[:3, 3] = [-20.0, 13.0, 7.0]
    return aff


def sphere_image(shape, affine, centre_ras, diameter, value=1.0):
    ijk = np.indices(shape).reshape(3, -1).T
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    inside = np.linalg.norm(world - centre_ras, axis=1) < diameter / 2
    return inside.reshape(shape).astype(np.float32) * value


def finding(c, d=6.0, score=0.5):
    c = np.asarray(c, float)
    return Finding(c, sphere_box(c, d), d, score, 0.1, "lesion", np.zeros(3))


def test_patches_are_centred_on_the_world_point_on_an_oblique_grid():
    aff = oblique_affine()
    shape = (60, 50, 40)
    centre_vox = np.array([31.3, 24.6, 18.2])
    centre = aff[:3, :3] @ centre_vox + aff[:3, 3]
    x = sphere_image(shape, aff, centre, 8.0)
    # The first stage's heatmap on its own (2 mm, axis-aligned) grid: a ramp along world x.
    haff = np.diag([2.0, 2.0, 2.0, 1.0])
    haff[:3, 3] = [-40.0, -20.0, -30.0]
    heat = np.broadcast_to((np.arange(60) / 100.0)[:, None, None], (60, 50, 50)).astype(np.float32)
    src = fpr.PatchSource(x, np.ones(shape, bool), aff, (heat, haff))
    p = src.patches(np.stack([centre, centre + [12.0, 0, 0]]))
    assert p.shape == (2, 2 * len(fpr.SCALES_MM) + 1, fpr.PATCH, fpr.PATCH, fpr.PATCH)
    # The heatmap channel around each centre: its value at the centre's world x.
    for n, c in enumerate((centre, centre + [12.0, 0, 0])):
        want = (c[0] + 40.0) / 2.0 / 100.0
        assert p[n, -1, 11:13, 11:13, 11:13].mean() == pytest.approx(want, abs=1e-4)
    mid = fpr.PATCH // 2
    one_mm = p[0, 0]
    # The 8 mm sphere at 1 mm: bright in the middle, dark 6 samples (6 mm) away along every axis.
    assert one_mm[mid - 1:mid + 1, mid - 1:mid + 1, mid - 1:mid + 1].mean() > 0.9
    for ax in range(3):
        idx = [slice(mid - 1, mid + 1)] * 3
        idx[ax] = slice(mid + 5, mid + 7)
        assert one_mm[tuple(idx)].max() < 0.05
    # Its centre of mass is the patch centre (within half a sample) at 1 and 2 mm.
    for k in (0, 1):
        w = p[0, 2 * k]
        com = (np.indices(w.shape).reshape(3, -1) * w.ravel()).sum(1) / w.sum()
        assert np.abs(com - (fpr.PATCH - 1) / 2).max() < 0.5, (k, com)
    # 12 mm off the sphere: no sphere in the 1 mm view; the mask channel is 1 inside the image.
    assert p[1, 0, mid - 4:mid + 4, mid - 4:mid + 4, mid - 4:mid + 4].max() < 0.05 and p[0, 1, mid, mid, mid] == pytest.approx(1.0)


def test_fine_blobs_find_a_small_lesion_first_and_merge_with_stage_one():
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    shape = (40, 40, 40)
    rng = np.random.default_rng(0)
    x = 0.5 + 0.02 * rng.standard_normal(shape).astype(np.float32)
    c = np.array([17.0, 22.0, 20.0])
    x -= sphere_image(shape, aff, c, 4.0, 0.3)  # a dark 4 mm lesion
    blobs = fpr.fine_blobs(x, np.ones(shape, bool), aff, n_max=5)
    assert np.linalg.norm(blobs[0].center_ras - c) <= 1.0 and blobs[0].score > 2 * blobs[1].score
    merged = fpr.candidates([finding(c + [1.5, 0, 0])], blobs)
    assert len(merged) == len(blobs)  # the blob at c is the stage-1 finding already (1.5 mm < 3 mm)
    assert np.allclose(merged[0].center_ras, c + [1.5, 0, 0])


class CentreValue(torch.nn.Module):
    """A stand-in classifier whose logit is the patch's 1 mm centre intensity (known answers for rescore)."""

    def forward(self, x):
        m = x.shape[-1] // 2
        return 10 * (x[:, 0, m, m, m] - 0.5)[:, None]


def test_rescore_orders_suppresses_and_thresholds():
    aff = np.eye(4)
    shape = (50, 50, 50)
    x = np.zeros(shape, np.float32)
    # 3-voxel cubes: the patch's middle sample (half a voxel off each centre: P is even) lies inside each.
    for (i, j, k), v in (((10, 10, 10), 1.0), ((30, 30, 30), 0.8), ((34, 30, 30), 0.7), ((40, 12, 20), 0.45)):
        x[i - 1:i + 2, j - 1:j + 2, k - 1:k + 2] = v
    src = fpr.PatchSource(x, np.ones(shape, bool), aff, (np.zeros((2, 2, 2), np.float32), np.eye(4)))
    cands = [finding(p, 10.0, 0.1) for p in ([40, 12, 20], [34, 30, 30], [10, 10, 10], [30, 30, 30])]
    out = fpr.rescore(CentreValue(), src, cands, floor=0.3)
    # Best first; (34,30,30) lies within half a diameter (4 < 0.5 x 10) of the stronger (30,30,30): one lesion.
    assert [tuple(f.center_ras.astype(int)) for f in out] == [(10, 10, 10), (30, 30, 30), (40, 12, 20)]
    assert out[0].score == pytest.approx(1 / (1 + np.exp(-5.0)), rel=1e-5)
    assert fpr.rescore(CentreValue(), src, cands, floor=0.5, max_findings=1)[0].score > 0.99
    assert fpr.rescore(CentreValue(), src, [], floor=0.0) == []


def test_candidate_labels_follow_the_hit_rule_and_leave_unlabelled_lesions_out():
    from medcli.train.detection import candidate_labels

    pts = np.array([[0, 0, 0], [4.9, 0, 0], [5.5, 0, 0], [20, 0, 0], [30, 0, 0], [8, 0, 0]], float)
    centres = np.array([[0, 0, 0], [30, 0, 1.0]])
    radii = np.array([5.0, 5.0])
    lab = candidate_labels(pts, centres, radii, np.array([True, True]))
    assert lab.tolist() == [1, 1, -1, 0, 1, 0]
    # The second lesion unlabelled: its hit is neither lesion nor background.
    lab = candidate_labels(pts, centres, radii, np.array([True, False]))
    assert lab.tolist() == [1, 1, -1, 0, -1, 0]
    assert candidate_labels(pts, np.zeros((0, 3)), np.zeros(0), np.zeros(0, bool)).tolist() == [0] * 6


def test_network_starts_as_the_first_stage_and_has_its_size():
    net = fpr.FprNet3D()
    x = torch.randn(3, 2 * len(fpr.SCALES_MM) + 1, fpr.PATCH, fpr.PATCH, fpr.PATCH)
    x[:, -1] = torch.tensor([0.02, 0.3, 0.9])[:, None, None, None]
    out = net(x)
    assert out.shape == (3, 1)
    # At initialisation the correction is zero: the first stage's probability at the centre comes out.
    assert torch.allclose(torch.sigmoid(out[:, 0]), torch.tensor([0.02, 0.3, 0.9]), atol=1e-5)
    assert 1e5 < sum(p.numel() for p in net.parameters()) < 1e6


def test_two_stage_detect_with_an_identity_second_stage(tmp_path):
    """detect(second_stage=FOLDER): an untrained second stage (its correction is zero) keeps the first stage's finds."""
    import json

    from safetensors.torch import save_file

    from medcli.detect.api import detect
    from medcli.detect.evaluate import Scan, match
    from medcli.detect.synth import HELD_OUT, SPLIT_Y, lesion_case

    torch.manual_seed(0)
    save_file(fpr.FprNet3D().state_dict(), str(tmp_path / "model.safetensors"))
    from medcli.train.engine import sha256_file

    (tmp_path / "spec.json").write_text(json.dumps({"name": "fpr-identity", "task": "detection-fpr", "architecture": "fprnet3d",
                                                    "params": {"in_channels": 7, "widths": [16, 24, 48, 64]},
                                                    "sha256": sha256_file(tmp_path / "model.safetensors")}))
    case = lesion_case(np.random.default_rng(4248), "flair", HELD_OUT, spacing=(2.0, 2.0, 2.0), n_lesions=6, y_range=(SPLIT_Y, 1e9))
    ijk = np.indices(case.brain.shape).reshape(3, -1).T
    mask = case.brain & (case.image.voxel_to_world(ijk)[:, 1].reshape(case.brain.shape) >= SPLIT_Y)
    one = detect(case.image, task="brain-lesion", method="learned", mask=mask, threshold=0.2)
    two = detect(case.image, task="brain-lesion", method="learned", mask=mask, threshold=0.2, second_stage=str(tmp_path))
    assert two.findings.model["second_stage"]["name"] == "fpr-identity" and "second_stage" not in one.findings.model
    big = [t for t in case.truth if t.diameter_mm >= 6]
    hits = [len(match([Scan("x", d.findings.items, big)]).tp_scores) for d in (one, two)]
    assert hits[1] >= hits[0] - 1 and hits[1] >= 2, hits
    for f in two.findings.items:  # world centres and voxel indices agree
        assert np.abs(case.image.voxel_to_world(f.voxel_ijk)[0] - f.center_ras).max() < 0.01

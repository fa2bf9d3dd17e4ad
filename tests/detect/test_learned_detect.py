"""The trained detection models: loaded through the hub, finding known lesions in held-out anatomy, deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from medcli.detect.api import detect  # noqa: E402
from medcli.detect.evaluate import Scan, match  # noqa: E402
from medcli.detect.synth import HELD_OUT, SPLIT_Y, lesion_case  # noqa: E402
from medcli.image import Image  # noqa: E402


@pytest.fixture(scope="module")
def held_out():
    """A FLAIR-like brain with lesions in front of the split (anatomy no model trained on), held-out generator setting."""
    return lesion_case(np.random.default_rng(4248), "flair", HELD_OUT, spacing=(2.0, 2.0, 2.0), n_lesions=6, y_range=(SPLIT_Y, 1e9))


def front(case) -> np.ndarray:
    ijk = np.indices(case.brain.shape).reshape(3, -1).T
    return case.brain & (case.image.voxel_to_world(ijk)[:, 1].reshape(case.brain.shape) >= SPLIT_Y)


@pytest.mark.parametrize("name", ["detect-lesion"])
def test_models_load_through_the_hub(name):
    from medcli.engine.architectures import build
    from medcli.models import hub

    spec, state = hub.load(name)
    net = build(spec)
    net.load_state_dict(state)
    assert spec["task"] == "detection" and 1e5 < sum(p.numel() for p in net.parameters()) < 2e6
    assert spec["version"] == "1.2.0"  # the bundled weights' version (bumped with them)


def test_finds_known_lesions_in_held_out_anatomy(held_out):
    det = detect(held_out.image, task="brain-lesion", method="learned", mask=front(held_out))
    assert det.findings.model["name"] == "detect-lesion" and len(det.findings.model["sha256"]) == 64
    big = [t for t in held_out.truth if t.diameter_mm >= 6]
    assert len(big) == 4  # 9-23 mm
    froc = match([Scan("x", det.findings.items, big)])
    sens = len(froc.tp_scores) / len(big)
    assert sens >= 0.5, (sens, [round(t.diameter_mm, 1) for t in big])
    assert len(det.findings) <= len(held_out.truth) + 4
    for f in det.findings.items:
        assert np.all(f.box_ras[:3] <= f.center_ras) and np.all(f.center_ras <= f.box_ras[3:])
        assert np.abs(held_out.image.voxel_to_world(f.voxel_ijk)[0] - f.center_ras).max() < 0.01
    # The label map marks each finding at its centre.
    lab = np.asarray(det.labels.data)
    assert lab.max() == len(det.findings)


def test_deterministic_and_empty_image(held_out, tmp_path):
    a = detect(held_out.image, task="brain-lesion", method="learned", mask=front(held_out))
    b = detect(held_out.image, task="brain-lesion", method="learned", mask=front(held_out))
    assert [f.score for f in a.findings.items] == [f.score for f in b.findings.items]
    assert all(np.array_equal(x.center_ras, y.center_ras) for x, y in zip(a.findings.items, b.findings.items))
    # A lesion-free, featureless brain: a valid, empty findings file.
    flat = Image(np.where(held_out.brain, 0.7, 0.0).astype(np.float32), held_out.image.affine, {"source": "flat"})
    from medcli.detect.findings import format_findings

    det = detect(flat, task="brain-lesion", method="learned", mask=held_out.brain)
    doc = json.loads(format_findings(det.findings, "json"))
    assert doc["n_findings"] == 0 and doc["findings"] == [] and doc["method"] == "learned"


def test_peak_sizes_over_the_range_are_clipped_not_dropped():
    """A confident peak whose regressed size exceeds the searched range stays (clipped); one under it goes."""
    from medcli.detect.learned import peaks_to_findings

    heat = np.zeros((20, 20, 20), np.float32)
    heat[5, 5, 5], heat[14, 14, 14] = 0.9, 0.8
    sizes = np.full((4, 20, 20, 20), 10.0, np.float32)
    sizes[:, 5, 5, 5] = 55.0  # the size head's over-estimate of a large lesion
    sizes[:, 14, 14, 14] = 1.5
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    found = peaks_to_findings(heat, sizes, np.ones(heat.shape, bool), aff, 0.1, min_diameter=2.0, max_diameter=40.0)
    assert len(found) == 1 and found[0].score == pytest.approx(0.9)
    assert found[0].diameter_mm == pytest.approx(40.0)
    np.testing.assert_allclose(found[0].size_mm, 40.0, rtol=1e-5)
    np.testing.assert_allclose(found[0].center_ras, [10.0, 10.0, 10.0], atol=1e-6)

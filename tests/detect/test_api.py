"""``detect`` per task: default search regions, a known lesion found in a brain MR and a head CT."""

from __future__ import annotations

import numpy as np
import pytest

from medcli.detect.api import detect, skull_stripped_mask, task_mask
from medcli.detect.synth import lesion_case
from medcli.errors import InputError, ProcessingError


def with_ball(case, centre_vox, diameter, value):
    img = case.image
    ijk = np.argwhere(np.ones(img.shape, bool))
    world = img.voxel_to_world(ijk).reshape(img.shape + (3,))
    c = img.voxel_to_world(centre_vox)[0]
    data = np.asarray(img.data).copy()
    data[np.linalg.norm(world - c, axis=-1) <= diameter / 2] = value
    return img.with_data(data), c


@pytest.mark.parametrize("contrast,value", [("t2", 1.2), ("ct", 85.0)])
def test_known_lesion_is_the_top_finding(contrast, value):
    case = lesion_case(np.random.default_rng(7), contrast, spacing=(2.0, 2.0, 2.0), n_lesions=0)
    # A 14 mm ball in the deep white matter of the left centrum semiovale (MNI x=-30, y=-20, z=35).
    centre = np.round(case.image.world_to_voxel([-30.0, -20.0, 35.0])[0]).astype(int)
    img, c = with_ball(case, centre, 14.0, value)
    task = "ct-lesion" if contrast == "ct" else "brain-lesion"
    det = detect(img, task=task, method="log", threshold=0.1, max_findings=5)
    # Among the first three: small CSF pockets (T2) can outscore it, the LoG method's known weakness.
    near = [x for x in det.findings.items[:3] if np.linalg.norm(x.center_ras - c) < 2.0]
    assert near, [(x.score, x.center_ras) for x in det.findings.items[:3]]
    assert abs(near[0].diameter_mm - 14.0) < 3.0 and near[0].label == "bright"
    assert det.mask.sum() < det.mask.size  # searched in the brain / soft tissue, not everywhere


def test_default_masks():
    case = lesion_case(np.random.default_rng(3), "flair", spacing=(3.0, 3.0, 3.0), n_lesions=0)
    m = skull_stripped_mask(np.asarray(case.image.data))
    assert m is not None and (m & case.brain).sum() / case.brain.sum() > 0.97
    assert skull_stripped_mask(np.random.default_rng(0).random((20, 20, 20))) is None
    ct = lesion_case(np.random.default_rng(3), "ct", spacing=(3.0, 3.0, 3.0), n_lesions=0)
    soft = task_mask(ct.image, "ct-lesion")
    hu = np.asarray(ct.image.data)
    # No bone; at 3 mm the opening and the smoothing next to the skull cost the brain its rim.
    assert not soft[hu > 500].any() and soft[ct.brain].mean() > 0.5


def test_errors():
    case = lesion_case(np.random.default_rng(3), "t1", spacing=(3.0, 3.0, 3.0), n_lesions=0)
    with pytest.raises(InputError, match="empty"):
        detect(case.image, mask=np.zeros(case.image.shape, bool))
    with pytest.raises(ProcessingError, match="no learned model for --task blob"):
        detect(case.image, task="blob", method="learned")

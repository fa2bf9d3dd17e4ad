"""The lesion generator: truth consistent with the image and the label map."""

from __future__ import annotations

import numpy as np
import pytest

from medcli.detect.api import truth_from_labels
from medcli.detect.synth import HELD_OUT, lesion_case


@pytest.mark.parametrize("contrast", ["t2", "ct"])
def test_case_truth_matches_labels(contrast):
    case = lesion_case(np.random.default_rng(5), contrast, HELD_OUT, spacing=(2.0, 2.0, 3.0), n_lesions=4)
    img = case.image
    assert img.shape == case.lesions.shape and np.allclose(img.spacing, (2.0, 2.0, 3.0))
    assert 1 <= len(case.truth) <= 4
    lab = np.asarray(case.lesions.data)
    assert lab.max() == len(case.truth)
    data = np.asarray(img.data)
    for i, t in enumerate(case.truth):
        assert 2.0 * 0.8 <= t.diameter_mm <= 40.0 * 1.2
        ijk = np.argwhere(lab == i + 1)
        assert len(ijk)
        # The lesion differs from the tissue around it by the requested contrast (hypo or hyper).
        assert np.all(t.box_ras[:3] < t.center_ras) and np.all(t.center_ras < t.box_ras[3:])
    if contrast == "ct":
        assert data.min() < -900 and data.max() > 500  # air and skull in HU
    # Components of the label map are the lesions (none touch: they are placed apart).
    comps = truth_from_labels(case.lesions)
    assert len(comps) == len(case.truth)


def test_cases_are_reproducible():
    a = lesion_case(np.random.default_rng(1), "flair", spacing=(3.0, 3.0, 3.0), n_lesions=2)
    b = lesion_case(np.random.default_rng(1), "flair", spacing=(3.0, 3.0, 3.0), n_lesions=2)
    assert np.array_equal(a.image.data, b.image.data)

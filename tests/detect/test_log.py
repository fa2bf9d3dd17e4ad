"""The LoG/DoG detector on spheres at known world positions (oblique, anisotropic grid)."""

from __future__ import annotations

import numpy as np
import pytest

from medcli.detect.log import LogSettings, detect_blobs, sigmas_mm

from tests.detect._phantoms import sphere_phantom


@pytest.fixture(scope="module")
def found():
    img, spheres = sphere_phantom()
    f, heat, labels = detect_blobs(img, threshold=0.5, max_findings=10, heatmap=True)
    return img, spheres, f, heat, labels


def test_spheres_found_within_a_voxel(found):
    img, spheres, f, _, _ = found
    assert len(f) >= 3
    top = f[:3]
    vox = float(np.max(np.sqrt((img.affine[:3, :3] ** 2).sum(0))))
    for c, d, sign in spheres:
        dist = [np.linalg.norm(x.center_ras - c) for x in top]
        i = int(np.argmin(dist))
        assert dist[i] < vox, (c, dist)
        x = top[i]
        assert x.label == ("bright" if sign > 0 else "dark")
        assert abs(x.diameter_mm - d) < 0.12 * d + 1.0
        # The world box holds the sphere, within one voxel's world extent per side.
        ext = np.abs(img.affine[:3, :3]).sum(axis=1)
        assert np.all(x.box_ras[:3] <= c - d / 2 + 0.5) and np.all(x.box_ras[3:] >= c + d / 2 - 0.5)
        assert np.all(np.abs(x.size_mm - d) <= ext + 1.0), (x.size_mm, d, ext)
        assert abs(x.volume_ml * 1000 - np.pi / 6 * d**3) < 0.35 * np.pi / 6 * d**3
        # voxel_ijk and the centre agree (world -> voxel -> world).
        assert np.allclose(img.voxel_to_world(x.voxel_ijk)[0], x.center_ras, atol=0.01)
    # The spheres outscore everything else (noise).
    assert min(x.score for x in top) > 2 * max([x.score for x in f[3:]] or [0])


def test_labels_and_heatmap(found):
    img, _, f, heat, labels = found
    assert heat.shape == img.shape and labels.shape == img.shape
    for i, x in enumerate(f[:3]):
        ijk = tuple(np.round(x.voxel_ijk).astype(int))
        assert labels[ijk] == i + 1
        assert heat[ijk] > 0.5 * x.score


def test_min_diameter_and_max_findings():
    img, spheres = sphere_phantom()
    f, _, _ = detect_blobs(img, settings=LogSettings(min_diameter=9.0), threshold=0.5, max_findings=10)
    assert f and all(x.diameter_mm >= 9.0 for x in f)
    assert not any(np.linalg.norm(x.center_ras - spheres[1][0]) < 3 for x in f)  # the 6 mm sphere is gone
    f, _, _ = detect_blobs(img, threshold=0.5, max_findings=2)
    assert len(f) == 2


def test_mask_limits_the_search():
    img, spheres = sphere_phantom()
    mask = np.zeros(img.shape, bool)
    c = np.round(img.world_to_voxel(spheres[0][0])[0]).astype(int)
    mask[c[0] - 12 : c[0] + 12, c[1] - 12 : c[1] + 12, c[2] - 6 : c[2] + 6] = True
    f, _, _ = detect_blobs(img, mask, threshold=0.5, max_findings=10)
    assert len(f) >= 1 and np.linalg.norm(f[0].center_ras - spheres[0][0]) < 2.0
    assert all(np.linalg.norm(x.center_ras - spheres[2][0]) > 8 for x in f)


def test_sigmas_cover_the_diameter_range():
    s = sigmas_mm(LogSettings(min_diameter=2, max_diameter=40))
    assert s[0] * np.sqrt(3) * 2 < 2 and s[-1] * np.sqrt(3) * 2 > 40


def test_single_voxels_are_noise_but_small_cubes_are_found():
    from medcli.image import Image

    d = np.zeros((30, 30, 30), np.float32)
    d[15, 15, 15], d[5, 20, 9] = 1.0, -1.0  # one voxel: below 2.4 voxels across, not reported
    d[20:23, 5:8, 20:23] = 1.0  # 3 voxels across: 7.5 mm
    f, _, lab = detect_blobs(Image(d, np.diag([2.5, 2.5, 2.5, 1.0])), threshold=0.01)
    assert len(f) == 1 and f[0].label == "bright" and lab.max() == 1
    assert np.allclose(f[0].center_ras, [52.5, 15.0, 52.5], atol=1.0) and 5.0 < f[0].diameter_mm < 11.0

"""Left-right asymmetry re-scoring: the mirror plane of a tilted, shifted symmetric phantom, twins vs a lesion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medcli.detect.findings import Finding, sphere_box
from medcli.detect.symmetry import FLOOR, MIN_CORRELATION, Plane, asymmetry, mirror_plane, rescore

YAW = math.radians(5.0)
NORMAL = np.array([math.cos(YAW), math.sin(YAW), 0.0])
POINT = np.array([3.0, 0.0, 0.0])
TWINS = [np.array([25.0, 10.0, 0.0]), np.array([-25.0, 10.0, 0.0])]  # local frame: mirror images of each other
LESION = np.array([20.0, -25.0, 10.0])


def _to_world(local: np.ndarray) -> np.ndarray:
    # Local x along the plane's normal; the plane is local x = 0.
    rot = np.array([NORMAL, [-NORMAL[1], NORMAL[0], 0.0], [0.0, 0.0, 1.0]]).T
    return local @ rot.T + POINT


def _phantom(seed: int = 0):
    """A head symmetric about the tilted, shifted plane (smooth symmetric texture, two dark twin blobs) with one
    bright lesion on one side only; 2 mm grid. Returns (x, mask, affine)."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    shape = (64, 72, 56)
    affine[:3, 3] = -np.array(shape) + 1.0  # centred on the world origin
    ijk = np.indices(shape).reshape(3, -1).T
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    rot = np.array([NORMAL, [-NORMAL[1], NORMAL[0], 0.0], [0.0, 0.0, 1.0]]).T
    u = (world - POINT) @ rot  # local coordinates
    head = ((u / [55.0, 62.0, 48.0]) ** 2).sum(1) <= 1.0
    x = 0.6 + 0.2 * np.cos(u[:, 0] / 9.0) * np.cos(u[:, 1] / 7.0) * np.cos(u[:, 2] / 8.0)
    for c in TWINS:
        x[np.linalg.norm(u - c, axis=1) <= 4.0] = 0.1
    x[np.linalg.norm(u - LESION, axis=1) <= 5.0] = 1.2
    x = x + np.random.default_rng(seed).normal(0, 0.02, len(x))
    x = np.where(head, x, 0.0).reshape(shape).astype(np.float32)
    return x, head.reshape(shape), affine


def test_mirror_plane_of_a_tilted_shifted_head():
    x, mask, affine = _phantom()
    plane = mirror_plane(x, mask, affine)
    assert plane.correlation > 0.5  # noise and the one-sided lesion keep it below 1
    angle = math.degrees(math.acos(min(abs(float(plane.normal @ NORMAL)), 1.0)))
    assert angle < 1.5
    assert abs(float((plane.point - POINT) @ NORMAL)) < 1.0  # the plane passes within 1 mm of the true one


def test_twins_are_symmetric_the_lesion_is_not():
    x, mask, affine = _phantom()
    plane = mirror_plane(x, mask, affine)
    centres = np.array([_to_world(c) for c in (*TWINS, LESION)] + [POINT + [0.0, 0.0, 20.0]])
    a = asymmetry(x, affine, plane, centres, np.array([8.0, 8.0, 10.0, 6.0]))
    assert a[0] < 0.2 and a[1] < 0.2
    assert a[2] > 0.8
    assert np.isinf(a[3])  # on the midline: its own mirror, no evidence either way


def test_rescore_ranks_the_lesion_above_its_anatomical_mimics():
    x, mask, affine = _phantom()
    found = [Finding(_to_world(c), sphere_box(_to_world(c), d), d, s)
             for c, d, s in ((TWINS[0], 8.0, 0.9), (TWINS[1], 8.0, 0.8), (LESION, 10.0, 0.5))]
    out = rescore(found, x, mask, affine)
    assert np.allclose(out[0].center_ras, _to_world(LESION)) and out[0].score == pytest.approx(0.5)
    assert all(f.score < 0.9 * FLOOR * 1.3 for f in out[1:])  # twins: about FLOOR x their score


def test_no_plane_no_change():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 40, 40)).astype(np.float32)
    mask = np.ones(x.shape, bool)
    found = [Finding(np.array([10.0, 10.0, 10.0]), sphere_box(np.array([10.0, 10.0, 10.0]), 6.0), 6.0, 0.7)]
    plane = mirror_plane(x, mask, np.eye(4))
    assert plane.correlation < MIN_CORRELATION
    assert rescore(found, x, mask, np.eye(4))[0].score == 0.7


def test_reflect_is_an_involution():
    plane = Plane(NORMAL, POINT, 1.0)
    pts = np.random.default_rng(2).normal(size=(5, 3)) * 30
    assert np.allclose(plane.reflect(plane.reflect(pts)), pts)
    assert np.allclose((plane.reflect(pts) - POINT) @ NORMAL, -((pts - POINT) @ NORMAL))

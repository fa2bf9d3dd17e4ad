"""Sphere phantoms at known world positions on oblique, anisotropic grids."""

from __future__ import annotations

import numpy as np

from medcli.image import Image


def oblique_affine(spacing=(0.9, 1.1, 2.0), angles=(20.0, -15.0, 30.0), origin=(-50.0, 30.0, -20.0)) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    a = np.eye(4)
    a[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def sphere_phantom(shape=(100, 90, 50), affine=None, noise=0.02, seed=0):
    """Background 0.5, a bright 12 mm, a dark 6 mm and a bright 20 mm sphere; returns (image, [(centre, diameter, sign)])."""
    affine = oblique_affine() if affine is None else affine
    img = Image(np.zeros(shape, np.float32), affine)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    world = img.voxel_to_world(ijk).reshape(tuple(shape) + (3,))
    c0 = img.voxel_to_world(np.array(shape) // 2)[0]
    spheres = [(c0 + [10, 5, 3], 12.0, 1.0), (c0 + [-20, -10, 0], 6.0, -1.0), (c0 + [5, -25, -10], 20.0, 0.7)]
    data = np.full(shape, 0.5, np.float32)
    for c, d, v in spheres:
        data[np.linalg.norm(world - c, axis=-1) <= d / 2] = 0.5 + 0.4 * v
    data += np.random.default_rng(seed).normal(0, noise, shape).astype(np.float32)
    return img.with_data(data), spheres

"""Morphological clean-up of masks and label maps (scipy.ndimage), shared by every segment task.

Example:
    >>> import numpy as np
    >>> m = np.zeros((9, 9, 9), bool); m[1:4, 1:4, 1:4] = True; m[6, 6, 6] = True
    >>> int(largest_component(m).sum())
    27
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def largest_component(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """The largest connected component of a boolean mask (face connectivity by default)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask
    lab, n = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, connectivity))
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Fill holes in 3D, or slice by slice along ``axis`` (holes open in 3D but closed in each slice)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if axis is None:
        return ndimage.binary_fill_holes(mask)
    out = np.empty_like(mask)
    for i in range(mask.shape[axis]):
        sl = [slice(None)] * mask.ndim
        sl[axis] = i
        out[tuple(sl)] = ndimage.binary_fill_holes(mask[tuple(sl)])
    return out


def component_sizes(mask: np.ndarray, connectivity: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(component labels, size of each label) of a boolean mask; size[0] is the background."""
    from scipy import ndimage

    lab, _ = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, connectivity))
    return lab, np.bincount(lab.ravel())


def remove_small(mask: np.ndarray, min_voxels: int, connectivity: int = 1) -> np.ndarray:
    """Drop the connected components of a mask smaller than ``min_voxels``."""
    mask = np.asarray(mask, bool)
    if min_voxels <= 1 or not mask.any():
        return mask
    lab, sizes = component_sizes(mask, connectivity)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[lab]


def remove_islands(labels: np.ndarray, min_voxels: int, within: np.ndarray | None = None) -> np.ndarray:
    """Give each island of a label smaller than ``min_voxels`` the most frequent label around it.

    Unlike :func:`remove_small`, no voxel of ``within`` (default: all labelled
    voxels) becomes background: tissue label maps keep covering the brain.
    """
    from scipy import ndimage

    labels = np.asarray(labels).copy()
    if min_voxels <= 1:
        return labels
    region = labels > 0 if within is None else np.asarray(within, bool)
    for k in [int(v) for v in np.unique(labels[region]) if v > 0]:
        lab, sizes = component_sizes(labels == k)
        small = np.nonzero((sizes < min_voxels) & (np.arange(sizes.size) > 0))[0]
        if small.size == 0:
            continue
        objs = ndimage.find_objects(lab)
        for c in small:
            sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in objs[c - 1])
            island = lab[sl] == c
            ring = ndimage.binary_dilation(island) & ~island
            around = labels[sl][ring & region[sl]]
            around = around[(around != k) & (around > 0)]
            if around.size:
                labels[sl][island] = np.bincount(around).argmax()
    return labels


def keep_labels(labels: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """Zero every label not in ``keep``."""
    labels = np.asarray(labels)
    return np.where(np.isin(labels, list(keep)), labels, 0).astype(labels.dtype)

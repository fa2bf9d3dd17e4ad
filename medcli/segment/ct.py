"""CT structures from Hounsfield units and morphology: body, lungs, bone, fat.

No model: thresholds on HU (which CT scanners calibrate: air -1000, water 0)
and connectivity. Labels:

============  =====================================================
task          labels
============  =====================================================
``ct-body``   1 body (skin outline, holes filled, table removed)
``ct-lungs``  1 right lung, 2 left lung (both 1 if they cannot be told apart)
``ct-bone``   1 bone
``ct-fat``    1 subcutaneous fat, 2 visceral fat (inside the muscle wall)
============  =====================================================

Axial slices are the planes across the array axis closest to the world S axis,
so any orientation works.

Example:
    >>> from medcli import io
    >>> ct = io.read("sample:ct")  # doctest: +SKIP
    >>> body = segment_body(ct)  # doctest: +SKIP
    >>> body.data.max()  # doctest: +SKIP
    1
"""

from __future__ import annotations

import numpy as np

from medcli.errors import InputError
from medcli.image import Image
from medcli.segment.postprocess import fill_holes, largest_component, remove_small

#: HU windows, from the usual clinical ranges.
BODY_HU = -500.0
LUNG_HU = -400.0
BONE_HU = 250.0
#: Cortical bone reaches this; contrast-filled vessels and calcified specks mostly stay below.
BONE_PEAK_HU = 400.0
FAT_HU = (-190.0, -30.0)
#: Structures thinner than twice this (mm) in-plane are cut from the body outline (couch shells).
TABLE_MM = 2.5


def axial_axis(affine: np.ndarray) -> int:
    """The array axis that points most along world S (superior)."""
    rot = np.asarray(affine, float)[:3, :3]
    rot = rot / np.maximum(np.sqrt((rot**2).sum(axis=0)), 1e-12)
    return int(np.argmax(np.abs(rot[2])))


def hounsfield(image: Image) -> np.ndarray:
    """The image as float32 HU; refuses images that are clearly not HU-calibrated CT."""
    data = np.asarray(image.data, np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    lo, hi = float(data.min()), float(data.max())
    # CT in HU has air near -1000 (or padding below) and tissue above -100; MR and raw CT do not.
    if lo > -500 or hi < -100:
        raise InputError(
            f"values {lo:g}..{hi:g} are not Hounsfield units (CT has air at about -1000): "
            "is this a CT image with its DICOM rescale applied?",
            image.meta.get("source"),
        )
    return data


def _mm_disk(spacing, axis: int, radius_mm: float) -> np.ndarray:
    """A structuring element: a disk of ``radius_mm`` in the axial plane (one slice thick)."""
    sp = np.asarray(spacing, float)
    half = [0 if a == axis else int(np.floor(radius_mm / sp[a])) for a in range(3)]
    grids = np.meshgrid(*[np.arange(-h, h + 1) * sp[a] for a, h in enumerate(half)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2 + 1e-9


def _voxels(mm3: float, spacing) -> int:
    return max(1, int(round(mm3 / float(np.prod(spacing)))))


def body_mask(hu: np.ndarray, spacing, axis: int, postprocess: bool = True) -> np.ndarray:
    """Body outline: HU > -500, table cut off by an in-plane opening, largest component, holes filled per slice.

    The couch is carbon-fibre shells of 1-3 mm around foam, joined to the back
    by a thin contact: an opening with a 2.5 mm disk breaks shells and contact,
    while a trunk wall (skin, fat, muscle, ribs) is thicker than 5 mm and stays.
    """
    from scipy import ndimage

    body = hu > BODY_HU
    if postprocess:
        disk = _mm_disk(spacing, axis, TABLE_MM)
        core = largest_component(ndimage.binary_opening(body, disk))
        # Give back the skin corners the opening shaved off (not the table: it is gone from the core).
        body = ndimage.binary_dilation(core, disk) & body
        body = fill_holes(largest_component(body), axis=axis)
    return body


def segment_body(image: Image, postprocess: bool = True) -> Image:
    """Label 1 inside the body outline."""
    hu = hounsfield(image)
    body = body_mask(hu, image.spacing, axial_axis(image.affine), postprocess)
    return Image(body.astype(np.uint8), image.affine, dict(image.meta))


def segment_lungs(image: Image, postprocess: bool = True) -> Image:
    """Right lung 1, left lung 2: air (< -400 HU) enclosed by the body, the large components only.

    Air outside the body is excluded by the body outline (filled slice by slice,
    so lungs are inside it); bowel gas and small pockets by size: kept are the
    components of at least 10 % of the largest one (and of 5 mL, or 100 mm^2 on
    a single slice). Air walled in by bone (paranasal sinuses, mastoid air cells:
    more than half of a 2 mm shell around the component is bone) is not lung;
    lungs touch ribs over a small part of their surface only. Sides come from world x (RAS+: +x is the patient's right): a component is right or left by the side of
    the body's mid-sagittal plane its centre lies on; one component spanning both
    sides (lungs touching at the anterior junction) is split at that plane.
    """
    hu = hounsfield(image)
    axis = axial_axis(image.affine)
    body = body_mask(hu, image.spacing, axis, True)
    air = (hu < LUNG_HU) & body
    single = image.shape[axis] == 1
    if postprocess:
        from scipy import ndimage

        air = ndimage.binary_opening(air, _mm_disk(image.spacing, axis, 1.0))
        lab, sizes = _components(air)
        boxes = ndimage.find_objects(lab)
        sizes[0] = 0
        if sizes.max() > 0:
            area = float(np.prod([s for a, s in enumerate(image.spacing) if a != axis]))
            floor = 100.0 / area if single else _voxels(5000.0, image.spacing)
            min_size = max(0.10 * sizes.max(), floor)
            keep = sizes >= min_size
            keep[0] = False
            # Each test works in the component's box grown by the band (5 mm in-plane): the
            # dilations then cost the size of the component, not of the whole volume.
            grow = [0 if a == axis else int(np.ceil(5.0 / image.spacing[a])) + 1 for a in range(3)]
            for c in np.flatnonzero(keep):
                box = tuple(slice(max(sl.start - g, 0), sl.stop + g) for sl, g in zip(boxes[c - 1], grow))
                keep[c] = not _walled_by_bone(lab[box] == c, hu[box], image.spacing, axis)
            air = keep[lab]
        air = fill_holes(air, axis=axis)  # vessels inside the lung are lung
    # world x of every voxel, and the body's mid-sagittal x
    idx = np.indices(hu.shape).reshape(3, -1).T
    xw = (idx @ image.affine[0, :3] + image.affine[0, 3]).reshape(hu.shape)
    mid = float(xw[body].mean()) if body.any() else 0.0
    out = np.zeros(hu.shape, np.uint8)
    lab, sizes = _components(air)
    for c in range(1, sizes.size):
        comp = lab == c
        side_right = xw[comp] > mid
        frac = float(side_right.mean())
        if 0.2 < frac < 0.8:  # one component on both sides: split at the mid-plane
            out[comp & (xw > mid)] = 1
            out[comp & (xw <= mid)] = 2
        else:
            out[comp] = 1 if frac >= 0.5 else 2
    return Image(out, image.affine, dict(image.meta))


def _walled_by_bone(component: np.ndarray, hu: np.ndarray, spacing, axis: int) -> bool:
    """True when over 40 % of the in-plane band 1-5 mm around ``component`` is bone.

    (The first millimetre is skipped: mucosa and partial volume line a sinus wall.)
    """
    from scipy import ndimage

    near = ndimage.binary_dilation(component, _mm_disk(spacing, axis, 1.0))
    band = ndimage.binary_dilation(component, _mm_disk(spacing, axis, 5.0)) & ~near
    return bool(band.any()) and float(np.mean(hu[band] >= BONE_HU)) > 0.4


def _components(mask: np.ndarray):
    from scipy import ndimage

    lab, _ = ndimage.label(mask)
    return lab, np.bincount(lab.ravel())


def segment_bone(image: Image, postprocess: bool = True) -> Image:
    """Bone 1: HU > 250 inside the body; small blobs that never reach cortical density dropped.

    Components smaller than 0.5 mL (10 mm^2 on a single slice) are dropped, and
    so are components whose 99th percentile stays below 400 HU (iodinated
    contrast in vessels, calcified specks).
    """
    from scipy import ndimage

    hu = hounsfield(image)
    axis = axial_axis(image.affine)
    body = body_mask(hu, image.spacing, axis, True)
    bone = (hu > BONE_HU) & ndimage.binary_dilation(body, _mm_disk(image.spacing, axis, 2.0))
    if postprocess:
        # Close 1-voxel gaps in thin cortex, then drop dust and contrast-like blobs.
        bone = ndimage.binary_closing(bone, _mm_disk(image.spacing, axis, 1.0)) & (hu > BONE_HU - 100)
        single = image.shape[axis] == 1
        area = float(np.prod([s for a, s in enumerate(image.spacing) if a != axis]))
        min_vox = max(1, int(round(10.0 / area))) if single else _voxels(500.0, image.spacing)
        bone = remove_small(bone, min_vox)
        lab, sizes = _components(bone)
        if sizes.size > 1:
            p99 = ndimage.labeled_comprehension(hu, lab, np.arange(1, sizes.size), lambda v: np.percentile(v, 99), float, 0)
            keep = np.concatenate([[False], np.asarray(p99) >= BONE_PEAK_HU])
            bone = keep[lab]
    return Image(bone.astype(np.uint8), image.affine, dict(image.meta))


def segment_fat(image: Image, postprocess: bool = True) -> Image:
    """Subcutaneous fat 1 (between skin and the muscle wall) and visceral fat 2 (inside it).

    Per axial slice: fat is -190..-30 HU inside the body; the non-fat tissue
    under a 3 mm skin layer, closed by 5 mm to seal gaps in the muscle wall,
    separates the two. Subcutaneous fat is the fat connected to the skin layer
    without crossing that wall; the remaining fat is visceral.
    """
    from scipy import ndimage

    hu = hounsfield(image)
    axis = axial_axis(image.affine)
    body = body_mask(hu, image.spacing, axis, True)
    fat = (hu >= FAT_HU[0]) & (hu <= FAT_HU[1]) & body
    if postprocess:
        # Muscle at 1-2 mm voxels with CT noise dips into the fat window voxel by voxel:
        # a voxel is fat only if its 3x3 in-plane median is fat too (thin skin is not eaten).
        med = ndimage.median_filter(hu, size=[1 if a == axis else 3 for a in range(3)])
        fat &= (med >= FAT_HU[0]) & (med <= FAT_HU[1])
        area = float(np.prod([s for a, s in enumerate(image.spacing) if a != axis]))
        fat = remove_small(fat, max(3, int(round(10.0 / area))))
    out = np.zeros(hu.shape, np.uint8)
    skin_disk = _mm_disk(image.spacing, axis, 3.0)
    wall_disk = _mm_disk(image.spacing, axis, 5.0)
    for i in range(hu.shape[axis]):
        sl = [slice(None)] * 3
        sl[axis] = i
        sl = tuple(sl)
        b, f, h = body[sl], fat[sl], hu[sl]
        if not f.any():
            continue
        skin = b & ~ndimage.binary_erosion(b, _squeeze(skin_disk, axis), border_value=0)
        inner = b & ~skin
        wall = inner & ~f & (h > FAT_HU[1])
        wall = ndimage.binary_closing(wall, _squeeze(wall_disk, axis)) & inner
        reach = ndimage.binary_propagation(skin, mask=(f | skin) & ~wall)
        sat = f & reach
        out[sl][sat] = 1
        out[sl][f & ~sat] = 2
    return Image(out, image.affine, dict(image.meta))


def _squeeze(struct: np.ndarray, axis: int) -> np.ndarray:
    return np.take(struct, struct.shape[axis] // 2, axis=axis)


TASKS = {
    "ct-body": segment_body,
    "ct-lungs": segment_lungs,
    "ct-bone": segment_bone,
    "ct-fat": segment_fat,
}

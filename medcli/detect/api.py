"""``detect``: image in, findings out (the pure function behind ``medcli detect``).

Tasks set the search region and the intensity preparation:

* ``brain-lesion``: the brain. A skull-stripped image (a zero background around one
  object) is its own mask; otherwise the brain mask of :mod:`medcli.segment.brain`.
* ``ct-lesion``: CT in HU, clipped to a soft-tissue window; searched in the body
  (:func:`medcli.segment.ct.body_mask`) where soft tissue is (bone and air are
  left out, so that their edges do not read as blobs).
* ``blob``: any image, searched everywhere (or in ``--mask``).

Methods: ``log`` (classical multi-scale Laplacian of Gaussian, :mod:`medcli.detect.log`)
and ``learned`` (the dense CenterNet-style network of the task, :mod:`medcli.detect.learned`,
models in :data:`MODELS`). The default per task is the one that measured better
on the held-out benchmark (:data:`DEFAULT_METHOD`, tests/benchmarks/results/detect.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from medcli.detect.findings import Finding, Findings
from medcli.detect.log import LogSettings, detect_blobs
from medcli.errors import InputError
from medcli.image import Image

TASKS = ("brain-lesion", "ct-lesion", "blob")
METHODS = ("log", "learned")
#: Default thresholds: about one false positive per scan on the validation cases
#: (tests/benchmarks/bench_detect.py, seeds 1000+, default generator settings: 0.453 brain, 0.537 CT;
#: blob takes the brain's).
DEFAULT_THRESHOLD = {"brain-lesion": 0.45, "ct-lesion": 0.54, "blob": 0.45}
#: The learned model per task (one model for brain MR and head CT; blob: none, it has no trained notion of a lesion).
MODELS = {"brain-lesion": "detect-lesion", "ct-lesion": "detect-lesion"}
#: Default thresholds of the learned model: about one false positive per scan on the validation cases
#: (tests/benchmarks/bench_detect.py, behind the anatomy split; detect-lesion 1.2.0 with the left-right
#: asymmetry re-scoring: 0.284 brain, 0.401 CT).
LEARNED_THRESHOLD = {"brain-lesion": 0.284, "ct-lesion": 0.401}
#: Default method per task: the one with the higher CPM on the held-out benchmark
#: (tests/benchmarks/results/detect.md, session 8: brain learned 0.462 vs log 0.313; CT learned 0.424 vs log 0.384).
DEFAULT_METHOD = {"brain-lesion": "learned", "ct-lesion": "learned", "blob": "log"}
#: CT soft-tissue window (HU) the detector sees.
CT_WINDOW = (-100.0, 150.0)


@dataclass
class Detection:
    findings: Findings
    labels: Image
    heatmap: Image | None
    mask: np.ndarray


def skull_stripped_mask(data: np.ndarray) -> np.ndarray | None:
    """The non-zero region of an image whose background is exactly zero (a skull-stripped brain), else None."""
    nz = data != 0
    frac = float(nz.mean())
    if frac > 0.7 or frac < 0.02:
        return None
    from scipy import ndimage

    lab, n = ndimage.label(nz)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())[1:]
    if sizes.max() < 0.9 * nz.sum():
        return None
    return ndimage.binary_fill_holes(lab == (1 + int(sizes.argmax())))


def task_mask(image: Image, task: str) -> np.ndarray:
    """The default search region of ``task`` on the image grid."""
    data = np.asarray(image.data)
    if task == "brain-lesion":
        m = skull_stripped_mask(data)
        if m is not None:
            return m
        from medcli.segment.brain import extract_brain_checked

        return np.asarray(extract_brain_checked(image).mask.data) > 0
    if task == "ct-lesion":
        from scipy import ndimage

        from medcli.segment.ct import axial_axis, body_mask, hounsfield

        hu = hounsfield(image)
        body = body_mask(hu, image.spacing, axial_axis(image.affine))
        soft = ndimage.gaussian_filter(hu, 1.0) 
        soft = (soft > CT_WINDOW[0]) & (soft < CT_WINDOW[1]) & body
        return ndimage.binary_opening(soft, iterations=1)
    return np.ones(data.shape, bool)


@lru_cache(maxsize=4)
def learned_detector(model: str):
    """The task's network, loaded once per process."""
    from medcli.detect.learned import LearnedDetector

    return LearnedDetector(model)


def detect(image: Image, task: str = "brain-lesion", method: str | None = None, mask: np.ndarray | None = None,
           threshold: float | None = None, max_findings: int | None = 50, min_diameter: float = 2.0,
           max_diameter: float = 40.0, heatmap: bool = False, settings: LogSettings | None = None,
           model: str | None = None, mirror: bool | None = None, bilateral: bool = True) -> Detection:
    """Detect focal lesions in a 3D image.

    Args:
        image: 3D image (4D: the first volume).
        task: ``brain-lesion``, ``ct-lesion`` or ``blob``.
        method: ``log`` or ``learned`` (default: :data:`DEFAULT_METHOD` of the task).
        mask: Search region (boolean, image grid); default: the task's (:func:`task_mask`).
        threshold: Minimum score (default: :data:`DEFAULT_THRESHOLD`).
        max_findings: Keep at most this many (highest scores first).
        min_diameter, max_diameter: Diameter range searched (mm).
        heatmap: Also make the score map.
        model: Hub name or folder of the learned model (default: :data:`MODELS` of the task).
        mirror: Test-time left-right mirroring of the learned model (default: its spec's choice).
        bilateral: ``learned``: scores multiplied by the findings' left-right asymmetry (:mod:`medcli.detect.symmetry`:
            anatomy with a twin across the midline is scored down); False: the network's heatmap scores.

    Raises:
        InputError: an empty mask, a non-3D image.
        ProcessingError: ``learned`` for a task without a model.
    """
    from medcli.errors import ProcessingError, UsageError

    if task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}")
    method = method or DEFAULT_METHOD[task]
    if method == "learned" and model is None and task not in MODELS:
        raise ProcessingError(f"no learned model for --task {task}: use --method log (or --task brain-lesion|ct-lesion)")
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}")
    if min_diameter <= 0 or max_diameter <= min_diameter:
        raise UsageError("--min-diameter must be positive and below the largest diameter (40 mm)")
    data = np.asarray(image.data)
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim != 3 or sum(s > 1 for s in data.shape) < 3:
        raise InputError(f"detection needs a 3D image, got shape {data.shape}", image.meta.get("source"))
    if mask is None:
        mask = task_mask(image.with_data(data), task)
    mask = np.asarray(mask, bool)
    if mask.shape != data.shape:
        raise InputError(f"mask grid {mask.shape} does not match the image grid {data.shape}", image.meta.get("source"))
    if not mask.any():
        raise InputError("the search mask is empty", image.meta.get("source"))
    work = data.astype(np.float32)
    if method == "learned":
        return _detect_learned(image, work, mask, task, model or MODELS[task], threshold, max_findings, min_diameter,
                               max_diameter, heatmap, mirror, bilateral)
    if task == "ct-lesion":
        work = np.clip(work, *CT_WINDOW)
    s = replace(settings or LogSettings(), min_diameter=min_diameter, max_diameter=max_diameter)
    thr = DEFAULT_THRESHOLD[task] if threshold is None else float(threshold)
    found, heat, labels = detect_blobs(Image(work, image.affine), mask, s, threshold=thr, max_findings=max_findings, heatmap=heatmap)
    f = Findings(found, task=task, method=method, threshold=thr,
                 image={"name": str(image.meta.get("source", "")), "shape": list(data.shape),
                        "affine": [[round(float(v), 6) for v in row] for row in image.affine]})
    heat_img = Image(heat, image.affine) if heat is not None else None
    return Detection(f, Image(labels, image.affine), heat_img, mask)


def _detect_learned(image: Image, work: np.ndarray, mask: np.ndarray, task: str, model: str, threshold: float | None,
                    max_findings: int | None, min_diameter: float, max_diameter: float, heatmap: bool,
                    mirror: bool | None, bilateral: bool = True) -> Detection:
    from scipy import ndimage

    net = learned_detector(str(model))
    thr = LEARNED_THRESHOLD.get(task, 0.3) if threshold is None else float(threshold)
    found, heat, aff = net(work, image.affine, mask, task == "ct-lesion", CT_WINDOW, thr, max_findings, min_diameter, max_diameter,
                           mirror, bilateral)
    model_info = {"name": net.name, "sha256": net.sha256}
    for f in found:
        f.voxel_ijk = image.world_to_voxel(f.center_ras)[0]
    labels = outline_labels(found, image, mask)
    heat_img = None
    if heatmap:
        # Back to the input grid: input voxel -> world -> model-grid voxel.
        m = np.linalg.inv(aff) @ image.affine
        idx = np.indices(work.shape, dtype=np.float32).reshape(3, -1)
        coords = (m[:3, :3] @ idx + m[:3, 3:4]).reshape((3,) + work.shape)
        heat_img = Image(ndimage.map_coordinates(heat, coords, order=1, mode="nearest").astype(np.float32) * mask, image.affine)
    f = Findings(found, task=task, method="learned", threshold=thr, model=model_info,
                 image={"name": str(image.meta.get("source", "")), "shape": list(work.shape),
                        "affine": [[round(float(v), 6) for v in row] for row in image.affine]})
    return Detection(f, labels, heat_img, mask)


def outline_labels(found: list[Finding], image: Image, mask: np.ndarray) -> Image:
    """Label map (finding i = label i + 1): the ellipsoid inscribed in each finding's box, within the mask."""
    shape = mask.shape
    labels = np.zeros(shape, np.uint16)
    inv = np.linalg.inv(image.affine)
    for i, f in enumerate(found):
        corners = np.array([[f.box_ras[a], f.box_ras[1 + b], f.box_ras[2 + c]] for a in (0, 3) for b in (0, 3) for c in (0, 3)])
        vox = corners @ inv[:3, :3].T + inv[:3, 3]
        lo = np.maximum(np.floor(vox.min(0)).astype(int), 0)
        hi = np.minimum(np.ceil(vox.max(0)).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
        world = grid @ image.affine[:3, :3].T + image.affine[:3, 3]
        half = np.maximum((f.box_ras[3:] - f.box_ras[:3]) / 2, 1e-3)
        inside = (((world - f.center_ras) / half) ** 2).sum(-1) <= 1.0
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        sel = inside & mask[box] & (labels[box] == 0)
        if not sel.any():  # smaller than a voxel: its nearest voxel
            p = tuple(int(np.clip(round(v), 0, n - 1)) for v, n in zip(f.voxel_ijk, shape))
            labels[p] = labels[p] or i + 1
            continue
        labels[box][sel] = i + 1
    return Image(labels, image.affine)


def truth_from_labels(labels: Image, min_voxels: int = 1) -> list[Finding]:
    """One lesion per connected component of a label map (centroid, box, equivalent diameter, volume)."""
    from scipy import ndimage

    data = np.asarray(labels.data)
    if data.ndim == 4:
        data = data[..., 0]
    lab, n = ndimage.label(data > 0, structure=np.ones((3, 3, 3)))
    out = []
    vox_ml = abs(np.linalg.det(labels.affine[:3, :3])) / 1000.0
    half = 0.5 * np.abs(labels.affine[:3, :3]).sum(axis=1)
    for i, sl in enumerate(ndimage.find_objects(lab)):
        if sl is None:
            continue
        idx = np.argwhere(lab[sl] == i + 1) + [s.start for s in sl]
        if len(idx) < min_voxels:
            continue
        world = labels.voxel_to_world(idx)
        vol = len(idx) * vox_ml
        c = idx.mean(0)
        out.append(Finding(labels.voxel_to_world(c)[0], np.concatenate([world.min(0) - half, world.max(0) + half]),
                           (6 * vol * 1000 / np.pi) ** (1 / 3), 1.0, vol, "lesion", c))
    return out

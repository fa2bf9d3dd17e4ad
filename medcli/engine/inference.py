"""The inference engine shared by every learned command (see docs/ARCHITECTURE.md).

:func:`predict` takes one network (or several: folds, averaged), its *spec* and
an image in any orientation and voxel size, and returns the network's outputs
(class probabilities, last axis = classes) on the input grid:

1. **Model space**: reorient to the spec's ``orientation`` (exact, no
   interpolation) and resample to its ``spacing`` (spline ``interpolation``,
   edges extended as nnU-Net and HD-BET do).
2. **Normalisation** from ``normalization``: ``zscore`` (optionally over
   non-zero voxels), ``percentile`` clip then z-score, ``minmax`` or ``none``.
3. **Sliding windows** of ``patch_size`` with ``overlap``, blended with a
   Gaussian importance map (nnU-Net) so that patch borders leave no seams; or,
   with ``patch_size: None``, the whole volume at once padded to
   ``divisible_by``/``min_size`` (HD-BET, instance-norm models trained on whole
   volumes). Patches are batched; batch and patch size respect ``max_memory``.
4. **Test-time augmentation** (``tta``): average over mirrorings along
   ``tta_axes``; **ensembles**: average of the folds' probabilities.
5. **Back to the input grid**: linear (or, with ``output_interpolation: 0``,
   nearest) resampling of the probabilities, or the exact inverse
   reorientation when no resampling happened.

Spec keys (all optional except those the model needs)::

    spacing: [1.5, 1.5, 1.5]      # mm; absent = keep the input's voxel size
    orientation: RAS              # absent = keep the input's axis order
    interpolation: 3              # spline order of the input resampling (cubic output clipped to the input range)
    output_interpolation: 1       # back to the input grid: 1 linear, 0 nearest (as tools that resize label maps)
    output_resize: exact          # or nominal: HD-BET's resize by the nominal spacing ratio + centre pad
    normalization: {method: percentile, low: 0.5, high: 99.5, nonzero: false}
    patch_size: [128, 128, 128]   # None = whole volume
    divisible_by: 16              # whole-volume padding
    min_size: [128, 128, 128]
    pad_value: 0.0                # after normalisation
    activation: softmax           # softmax | sigmoid | none (network already outputs probabilities)
    tta_axes: [0, 1, 2]
    memory_per_voxel: 400         # bytes of activations per input voxel, for the memory bound

Example:
    >>> import torch
    >>> from medcli import io
    >>> net = torch.nn.Conv3d(1, 2, 1)
    >>> spec = {"spacing": [2, 2, 2], "patch_size": [64, 64, 64]}
    >>> probs = predict(net, spec, io.read("sample:t1"))  # doctest: +SKIP
    >>> probs.shape  # doctest: +SKIP
    (197, 233, 189, 2)
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np

from medcli.errors import ProcessingError, UsageError
from medcli.image import Image, grid_with_spacing

#: Activation memory per input voxel per patch when the spec does not say (a 3D U-Net
#: with 32 base filters keeps ~100 float32 feature maps at full resolution while running).
DEFAULT_MEMORY_PER_VOXEL = 400
#: Default memory budget of one forward pass.
DEFAULT_MAX_MEMORY = 2 * 1024**3


def predict(
    model,
    spec: dict[str, Any],
    image: Image,
    *,
    overlap: float = 0.5,
    tta: bool = False,
    batch_size: int | None = None,
    max_memory: int | str | None = None,
    device=None,
    deterministic: bool = False,
) -> Image:
    """Run a network (or a fold ensemble) on an image; outputs on the input grid.

    Args:
        model: A torch module, or a list of modules whose outputs are averaged.
        spec: The model's inference spec (see the module docstring).
        image: 3D image, or 4D with input channels on the last axis.
        overlap: Fraction of a patch shared by neighbouring windows (0 <= overlap < 1).
        tta: Average over mirrored inputs along ``spec['tta_axes']``.
        batch_size: Patches per forward pass (default: as many as ``max_memory`` allows, at most 4).
        max_memory: Bytes (or ``'4G'``) that one forward pass may use.
        device: Torch device or name (default: ``--device``).
        deterministic: Deterministic algorithms and fixed seeds (reproducible on GPU).

    Returns:
        A 4D float32 image on the input grid, last axis = output channels.

    Example:
        >>> import torch
        >>> img = Image(np.random.rand(20, 20, 20).astype(np.float32), np.eye(4))
        >>> out = predict(torch.nn.Identity(), {"activation": "none", "patch_size": [8, 8, 8]}, img)
        >>> out.shape
        (20, 20, 20, 1)
    """
    from medcli.runtime import configure_torch, torch_device

    torch = configure_torch()
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if not models:
        raise UsageError("predict needs at least one model")
    if not 0 <= overlap < 1:
        raise UsageError(f"overlap must be in [0, 1), not {overlap}")
    dev = device if isinstance(device, torch.device) else torch_device(device)
    spec = inference_spec(spec)
    if deterministic:
        set_deterministic(True)
    work, to_input = to_model_space(image, spec)
    x = normalize(work.data, spec.get("normalization"))
    x = np.moveaxis(x, -1, 0) if x.ndim == 4 else x[None]  # channels first
    for m in models:
        m.eval().to(dev)
    budget = _parse_memory(max_memory)
    probs = sliding_window(
        models, x, spec, overlap=overlap, tta=tta, batch_size=batch_size, max_memory=budget, device=dev
    )
    out = np.moveaxis(probs, 0, -1)  # channels last
    return to_input(Image(out, work.affine, dict(image.meta)))


def inference_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The flat inference settings of a spec: its ``input`` table (registry form) over top-level keys.

    Accepts the registry spellings ``normalisation`` and ``mirror_axes`` for
    ``normalization`` and ``tta_axes``.
    """
    flat = {k: v for k, v in spec.items() if k != "input"}
    flat.update(spec.get("input") or {})
    for alias, key in (("normalisation", "normalization"), ("mirror_axes", "tta_axes")):
        if alias in flat and key not in flat:
            flat[key] = flat.pop(alias)
    return flat


# --------------------------------------------------------------------------- geometry


def to_model_space(image: Image, spec: dict[str, Any]):
    """The image in the model's orientation and spacing, and the function that maps outputs back.

    Returns:
        ``(work, to_input)``: the image in model space and a function taking a
        model-space image (any number of trailing channels) onto ``image``'s grid.
    """
    orientation = spec.get("orientation")
    oriented = image.reorient(orientation) if orientation else image

    def unorient(data: np.ndarray, meta: dict) -> Image:
        res = Image(data, oriented.affine, meta)
        res = res.reorient(image.orientation) if orientation else res
        return Image(res.data, image.affine, meta)

    spacing = spec.get("spacing")
    if spacing is None or np.allclose(oriented.spacing, np.broadcast_to(spacing, (3,)), atol=1e-6):
        return oriented, lambda out: unorient(out.data, out.meta)
    affine, shape = grid_with_spacing(oriented.affine, oriented.shape[:3], spacing)
    order = int(spec.get("interpolation", 3))
    data = resample_array(oriented.data, oriented.affine, affine, shape, order=order)
    if order > 1:
        # Cubic splines overshoot at sharp edges (e.g. skull-stripped borders); clip to the input's
        # range as skimage.transform.resize (HD-BET, nnU-Net) does.
        lo, hi = float(np.nanmin(oriented.data)), float(np.nanmax(oriented.data))
        np.clip(data, lo, hi, out=data)
    resampled = Image(data, affine, dict(image.meta))
    out_order = int(spec.get("output_interpolation", 1))

    nominal = spec.get("output_resize") == "nominal"

    def back_resample(out: Image) -> Image:
        if nominal:
            return unorient(nominal_resize(out.data, spacing, oriented.spacing, oriented.shape[:3], out_order), out.meta)
        # The model grid is a pure rescaling of the oriented input grid (same field of view), so
        # a grid-mode zoom maps it back exactly; nearest ties then break as skimage's resize does.
        return unorient(zoom_to(out.data, oriented.shape[:3], order=out_order), out.meta)

    return resampled, back_resample


def nominal_resize(data: np.ndarray, model_spacing, spacing, shape, order: int = 0) -> np.ndarray:
    """HD-BET's way back to the input grid: resize by the *nominal* spacing ratio, then centre-pad/crop.

    ``round(n_model * model_spacing / spacing)`` differs from the input size by
    up to a voxel when the model grid's true spacing is not exactly
    ``model_spacing``; HD-BET then pads or crops symmetrically. This shifts the
    output by up to half a model voxel at the far border; medcli reproduces it
    only for models whose spec asks (``output_resize: nominal``) so that their
    masks match the original tool's.
    """
    ratio = np.broadcast_to(np.asarray(model_spacing, float), (3,)) / np.asarray(spacing, float)
    target = [int(np.round(r * n)) for r, n in zip(ratio, data.shape[:3])]
    out = zoom_to(data, target, order=order)
    for ax, (have, want) in enumerate(zip(target, shape)):
        if have < want:
            pad = [(0, 0)] * out.ndim
            pad[ax] = ((want - have) // 2, want - have - (want - have) // 2)
            out = np.pad(out, pad)
        elif have > want:
            cut = (have - want) // 2
            out = np.take(out, np.arange(cut, cut + want), axis=ax)
    return out


def zoom_to(data: np.ndarray, shape: Sequence[int], order: int = 1) -> np.ndarray:
    """Resize a 3D (+ channels) array to ``shape`` with voxel edges aligned (``grid_mode``), edges extended."""
    from scipy import ndimage

    vols = data[..., None] if data.ndim == 3 else data
    factors = [t / s for t, s in zip(shape, vols.shape[:3])]
    out = np.empty(tuple(int(s) for s in shape) + (vols.shape[-1],), np.float32)
    for c in range(vols.shape[-1]):
        out[..., c] = ndimage.zoom(
            np.asarray(vols[..., c], np.float32), factors, order=order, mode="nearest", grid_mode=True
        )
    return out[..., 0] if data.ndim == 3 else out


def resample_array(data: np.ndarray, src_affine, dst_affine, dst_shape: Sequence[int], order: int = 1) -> np.ndarray:
    """Resample ``data`` (3D or 3D + channels) from one grid to another, extending edges.

    Unlike constant padding, ``nearest`` edge extension keeps the outermost voxels
    (whose centres fall just outside the other grid's outer centres) at their
    true value, as nnU-Net and HD-BET (``skimage.transform.resize(mode='edge')``) do.
    """
    from scipy import ndimage

    vox = np.linalg.inv(np.asarray(src_affine, float)) @ np.asarray(dst_affine, float)
    vols = data[..., None] if data.ndim == 3 else data
    out = np.empty(tuple(int(s) for s in dst_shape) + (vols.shape[-1],), np.float32)
    for c in range(vols.shape[-1]):
        out[..., c] = ndimage.affine_transform(
            np.asarray(vols[..., c], dtype=np.float32),
            vox[:3, :3],
            vox[:3, 3],
            output_shape=tuple(int(s) for s in dst_shape),
            order=order,
            mode="nearest",
        )
    return out[..., 0] if data.ndim == 3 else out


# --------------------------------------------------------------------------- intensities


def normalize(data: np.ndarray, how: dict[str, Any] | str | None) -> np.ndarray:
    """Intensity normalisation from a spec entry (per channel when 4D).

    ``zscore``: (x - mean) / std; ``percentile``: clip to the ``low``/``high``
    percentiles, then z-score; ``minmax``: to [0, 1] between those percentiles
    (default 0/100); ``none``. With ``nonzero: true`` statistics come from
    non-zero voxels only (skull-stripped inputs) and zeros stay zero.

    Example:
        >>> [round(float(v), 3) for v in normalize(np.array([1.0, 2.0, 3.0]), "zscore")]
        [-1.225, 0.0, 1.225]
    """
    if how is None:
        how = {"method": "none"}
    if isinstance(how, str):
        how = {"method": how}
    method = how.get("method", "none")
    x = np.asarray(data, dtype=np.float32)
    if method == "none":
        return x.copy()
    if x.ndim == 4:
        return np.stack([normalize(x[..., c], how) for c in range(x.shape[-1])], axis=-1)
    x = np.nan_to_num(x)
    sel = x != 0 if how.get("nonzero") else np.ones(x.shape, bool)
    if not sel.any():
        sel = np.ones(x.shape, bool)
    vals = x[sel]
    if method in ("percentile", "minmax"):
        dlo, dhi = (0.5, 99.5) if method == "percentile" else (0.0, 100.0)
        lo, hi = np.percentile(vals, [float(how.get("low", dlo)), float(how.get("high", dhi))])
        x = np.clip(x, lo, hi)
        if method == "minmax":
            out = (x - lo) / max(float(hi - lo), 1e-8)
            return np.where(sel, out, 0).astype(np.float32) if how.get("nonzero") else out.astype(np.float32)
        vals = x[sel]
    elif method != "zscore":
        raise ProcessingError(f"unknown normalization method {method!r} in model spec")
    mean, std = float(vals.mean()), float(vals.std())
    out = (x - mean) / max(std, 1e-8)
    if how.get("nonzero"):
        out = np.where(sel, out, 0)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- sliding windows


def gaussian_weights(patch: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """nnU-Net's importance map: a Gaussian centred on the patch, sigma = patch / 8, min > 0."""
    from scipy import ndimage

    tmp = np.zeros(tuple(patch), np.float32)
    tmp[tuple(p // 2 for p in patch)] = 1
    g = ndimage.gaussian_filter(tmp, [p * sigma_scale for p in patch], mode="constant", cval=0)
    g = g / g.max()
    # Zero weights at corners would make voxels covered only there undefined.
    g[g == 0] = g[g > 0].min()
    return g.astype(np.float32)


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start offsets of windows of ``patch`` covering ``size`` with at least ``overlap`` shared."""
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1 - overlap)))
    n = math.ceil((size - patch) / step) + 1
    # Spread the windows evenly so the last one ends exactly at the border.
    return [int(round(i * (size - patch) / (n - 1))) for i in range(n)]


def padded_shape(shape: Sequence[int], divisible_by: int | Sequence[int] = 1, min_size=None) -> tuple[int, ...]:
    """The smallest shape >= ``shape`` (and ``min_size``) that is a multiple of ``divisible_by``."""
    div = np.broadcast_to(np.asarray(divisible_by, int), (len(shape),))
    out = [int(math.ceil(s / d) * d) for s, d in zip(shape, div)]
    if min_size is not None:
        out = [max(o, int(m)) for o, m in zip(out, np.broadcast_to(min_size, (len(shape),)))]
    return tuple(out)


def mirrored(net, x, axes: Sequence[int] = (2, 3, 4)):
    """Average of ``activation(net(x))`` over all 2^k mirrorings along ``axes`` (k = len(axes)).

    ``x`` is a torch tensor (N, C, ...); ``net`` must already return probabilities.
    """
    total = None
    count = 0
    for k in range(len(axes) + 1):
        for flip in itertools.combinations(axes, k):
            inp = x.flip(flip) if flip else x
            y = _first(net(inp))
            y = y.flip(flip) if flip else y
            total = y if total is None else total + y
            count += 1
    return total / count


def _first(y):
    # Deep-supervision networks return several outputs, full resolution first.
    return y[0] if isinstance(y, (list, tuple)) else y


def _activate(y, activation: str):
    import torch

    if activation == "softmax":
        return torch.softmax(y, 1)
    if activation == "sigmoid":
        return torch.sigmoid(y)
    if activation == "none":
        return y
    raise ProcessingError(f"unknown activation {activation!r} in model spec")


def sliding_window(
    models: list,
    x: np.ndarray,
    spec: dict[str, Any],
    *,
    overlap: float = 0.5,
    tta: bool = False,
    batch_size: int | None = None,
    max_memory: int | None = None,
    device=None,
) -> np.ndarray:
    """Blended patch-wise outputs (C_out, X, Y, Z) of ``models`` on a channels-first array."""
    from medcli.runtime import progress

    import torch

    shape = x.shape[1:]
    activation = spec.get("activation", "softmax")
    tta_axes = tuple(int(a) + 2 for a in spec.get("tta_axes", (0, 1, 2))) if tta else ()
    pad_value = float(spec.get("pad_value", 0.0))
    budget = max_memory or DEFAULT_MAX_MEMORY
    per_voxel = float(spec.get("memory_per_voxel", DEFAULT_MEMORY_PER_VOXEL))
    if spec.get("patch_size") is None:
        patch = padded_shape(shape, spec.get("divisible_by", 1), spec.get("min_size"))
        whole = True
        need = per_voxel * float(np.prod(patch))
        if need > budget:
            from medcli.runtime import log

            # A whole-volume model cannot be tiled without changing its outputs: warn, do not shrink.
            log.warning(f"this model runs on the whole volume; it may need ~{need / 1024**3:.1f} GiB (budget {budget / 1024**3:.1f} GiB)")
    else:
        patch = tuple(int(p) for p in np.broadcast_to(spec["patch_size"], (3,)))
        patch = fit_patch(patch, budget, per_voxel, int(spec.get("divisible_by", 16)))
        whole = False
    full = tuple(max(s, p) for s, p in zip(shape, patch))
    # Pad at the upper end (HD-BET's convention) so that voxel (0, 0, 0) keeps its index.
    xp = np.full((x.shape[0],) + full, pad_value, np.float32)
    xp[(slice(None),) + tuple(slice(0, s) for s in shape)] = x
    starts = list(itertools.product(*(window_starts(f, p, overlap) for f, p in zip(full, patch))))
    weight = np.ones(patch, np.float32) if whole or len(starts) == 1 else gaussian_weights(patch)
    if batch_size is None:
        batch_size = int(max(1, min(4, budget // max(1.0, per_voxel * float(np.prod(patch))))))
    acc = None
    norm = np.zeros(full, np.float32)
    w_t = torch.from_numpy(weight).to(device)
    with torch.inference_mode(), progress(len(starts), "patches") as advance:
        for b in range(0, len(starts), batch_size):
            group = starts[b : b + batch_size]
            sl = [tuple(slice(s, s + p) for s, p in zip(st, patch)) for st in group]
            batch = torch.from_numpy(np.stack([xp[(slice(None),) + s] for s in sl])).to(device)
            out = None
            for m in models:

                def run(inp, m=m):
                    return _activate(_first(m(inp)), activation)

                y = mirrored(run, batch, tta_axes) if tta_axes else run(batch)
                out = y if out is None else out + y
            out = (out / len(models)) * w_t
            out_np = out.float().cpu().numpy()
            if acc is None:
                acc = np.zeros((out_np.shape[1],) + full, np.float32)
            for i, s in enumerate(sl):
                acc[(slice(None),) + s] += out_np[i]
                norm[s] += weight
            advance(len(group))
    acc /= norm[None]
    return acc[(slice(None),) + tuple(slice(0, s) for s in shape)]


def fit_patch(patch: tuple[int, ...], budget: int, per_voxel: float, divisible_by: int = 16) -> tuple[int, ...]:
    """Shrink the largest patch axis (keeping multiples of ``divisible_by``) until one patch fits ``budget``."""
    p = list(patch)
    while per_voxel * float(np.prod(p)) > budget:
        i = int(np.argmax(p))
        smaller = max(divisible_by, (p[i] // 2) // divisible_by * divisible_by)
        if smaller >= p[i]:
            break
        p[i] = smaller
    return tuple(p)


def _parse_memory(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    from medcli.io import parse_size

    try:
        return parse_size(str(value))
    except ValueError as e:
        raise UsageError(f"max_memory: cannot read {value!r} as a size such as 4G") from e


def deterministic_algorithms(on: bool = True, warn_only: bool = True) -> bool:
    """Switch torch's deterministic algorithms on or off; returns whether they were on before.

    ``torch.use_deterministic_algorithms`` sets the same flag but first imports the compiler
    (``torch._inductor.config``, to set its own copy of the switch): about 1.4 s of CPU per process that never
    compiles anything. The compiler's switch is therefore set only when the compiler is already loaded.
    """
    import sys

    import torch

    was = torch.are_deterministic_algorithms_enabled()
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = on
    torch._C._set_deterministic_algorithms(on, warn_only=warn_only)
    return was


def set_deterministic(on: bool = True, seed: int = 0) -> None:
    """Deterministic torch algorithms and fixed seeds (bitwise-reproducible runs, also on GPU)."""
    import os
    import random

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    deterministic_algorithms(on)
    torch.backends.cudnn.benchmark = not on
    torch.backends.cudnn.deterministic = on
    if on:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

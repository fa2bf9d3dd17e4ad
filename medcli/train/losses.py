"""Losses of the training engine, chosen by the recipe's ``[loss]`` section.

Segmentation losses take logits ``(N, C, ...)`` and integer targets
``(N, ...)``; voxels equal to ``ignore_index`` (partially labelled data)
contribute nothing. Regression losses take outputs and targets of the same
shape. Output priors (R1) are added to any segmentation loss; weight decay
(R2) is the optimiser's.

=================  =============================================================
name               use
=================  =============================================================
``ce``             cross-entropy (``class_weights``, ``label_smoothing``)
``dice``           soft Dice over the classes present in the batch
``dice_ce``        Dice + cross-entropy (nnU-Net's default)
``focal``          focal loss, ``focal_gamma`` (down-weights easy voxels)
``gce``            generalised cross-entropy, ``gce_q`` (robust to label noise;
                   Zhang & Sabuncu 2018)
``l1`` ``l2``      regression
``ssim``           1 - SSIM (local structure) + 0.1 L1, for image-to-image models
=================  =============================================================

Priors: ``tv_weight`` (total variation of the probability maps: smooth,
compact labels) and ``volume_prior = {class = K, fraction = F, weight = W}``
(the mean predicted fraction of class K pulled towards F).

Example:
    >>> import torch
    >>> loss = make_loss({"name": "dice_ce", "tv_weight": 0.01})
    >>> logits = torch.zeros(2, 3, 8, 8, requires_grad=True)
    >>> value = loss(logits, torch.zeros(2, 8, 8, dtype=torch.long))
    >>> value.backward()
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

SEGMENTATION = ("ce", "dice", "dice_ce", "focal", "gce")
REGRESSION = ("l1", "l2", "ssim")


def _valid(target: torch.Tensor, ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(target with ignored voxels set to 0, float mask of the voxels that count)."""
    if ignore_index is None:
        return target, torch.ones_like(target, dtype=torch.float32)
    mask = target != ignore_index
    return torch.where(mask, target, torch.zeros_like(target)), mask.float()


def _onehot(target: torch.Tensor, n: int) -> torch.Tensor:
    return F.one_hot(target, n).movedim(-1, 1).float()


def cross_entropy(logits, target, *, weights=None, smoothing=0.0, ignore_index=None):
    t, mask = _valid(target, ignore_index)
    ce = F.cross_entropy(logits, t, weight=weights, reduction="none", label_smoothing=smoothing)
    if weights is not None:
        # Weighted mean, as torch's own reduction does.
        w = weights[t] * mask
        return (ce * mask).sum() / w.sum().clamp_min(1e-6)
    return (ce * mask).sum() / mask.sum().clamp_min(1.0)


def soft_dice(logits, target, *, weights=None, ignore_index=None, eps=1e-5):
    """1 - mean soft Dice over classes present in the batch (batch Dice, nnU-Net style)."""
    n = logits.shape[1]
    t, mask = _valid(target, ignore_index)
    prob = logits.softmax(1) * mask.unsqueeze(1)
    onehot = _onehot(t, n) * mask.unsqueeze(1)
    dims = (0,) + tuple(range(2, logits.ndim))
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    present = onehot.sum(dims) > 0
    w = present.float() if weights is None else weights * present.float()
    return 1 - (dice * w).sum() / w.sum().clamp_min(1e-6)


def focal(logits, target, *, gamma=2.0, weights=None, ignore_index=None):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true) ** gamma."""
    t, mask = _valid(target, ignore_index)
    logp = F.log_softmax(logits, 1).gather(1, t.unsqueeze(1)).squeeze(1)
    loss = -((1 - logp.exp()) ** gamma) * logp
    if weights is not None:
        loss = loss * weights[t]
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def generalised_ce(logits, target, *, q=0.7, weights=None, ignore_index=None):
    """Generalised cross-entropy (1 - p_true ** q) / q: between CE (q -> 0) and MAE (q = 1).

    Bounded per voxel, so a wrong label cannot dominate the gradient the way
    it does with cross-entropy.
    """
    t, mask = _valid(target, ignore_index)
    p = logits.softmax(1).gather(1, t.unsqueeze(1)).squeeze(1).clamp_min(1e-7)
    loss = (1 - p**q) / q
    if weights is not None:
        loss = loss * weights[t]
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def total_variation(prob: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring probabilities (R1 output prior)."""
    tv = prob.new_zeros(())
    for d in range(2, prob.ndim):
        tv = tv + prob.diff(dim=d).abs().mean()
    return tv


def volume_prior(prob: torch.Tensor, cls: int, fraction: float) -> torch.Tensor:
    """Squared difference between the predicted fraction of class ``cls`` and ``fraction``."""
    return (prob[:, cls].mean() - fraction) ** 2


def ssim_loss(out: torch.Tensor, target: torch.Tensor, window: int = 7) -> torch.Tensor:
    """1 - SSIM with a uniform window (dynamic range from the target) + 0.1 L1."""
    pool = F.avg_pool2d if out.ndim == 4 else F.avg_pool3d
    rng = (target.amax() - target.amin()).clamp_min(1e-6)
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    pad = window // 2
    kw = dict(kernel_size=window, stride=1, padding=pad, count_include_pad=False)
    mx, my = pool(out, **kw), pool(target, **kw)
    vx = pool(out * out, **kw) - mx**2
    vy = pool(target * target, **kw) - my**2
    cxy = pool(out * target, **kw) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return 1 - ssim.mean() + 0.1 * (out - target).abs().mean()


def make_loss(cfg: dict[str, Any] | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss the recipe's ``[loss]`` section describes.

    Raises:
        ValueError: unknown loss name or setting.
    """
    cfg = dict(cfg or {})
    name = cfg.pop("name", "dice_ce")
    weights = cfg.pop("class_weights", None)
    w = torch.tensor(weights, dtype=torch.float32) if weights else None
    ignore = cfg.pop("ignore_index", None)
    smoothing = float(cfg.pop("label_smoothing", 0.0))
    gamma = float(cfg.pop("focal_gamma", 2.0))
    q = float(cfg.pop("gce_q", 0.7))
    tv = float(cfg.pop("tv_weight", 0.0))
    vol = cfg.pop("volume_prior", None)
    dice_weight = float(cfg.pop("dice_weight", 1.0))
    if cfg:
        raise ValueError(f"unknown [loss] setting(s): {', '.join(sorted(cfg))}")
    if name in REGRESSION:
        if name == "l1":
            return lambda out, target: (out - target).abs().mean()
        if name == "l2":
            return lambda out, target: ((out - target) ** 2).mean()
        return ssim_loss
    if name not in SEGMENTATION:
        raise ValueError(f"unknown loss {name!r} (known: {', '.join(SEGMENTATION + REGRESSION)})")

    def base(logits, target):
        if name == "ce":
            return cross_entropy(logits, target, weights=w, smoothing=smoothing, ignore_index=ignore)
        if name == "dice":
            return soft_dice(logits, target, weights=w, ignore_index=ignore)
        if name == "dice_ce":
            return dice_weight * soft_dice(logits, target, weights=w, ignore_index=ignore) + cross_entropy(
                logits, target, weights=w, smoothing=smoothing, ignore_index=ignore
            )
        if name == "focal":
            return focal(logits, target, gamma=gamma, weights=w, ignore_index=ignore)
        return generalised_ce(logits, target, q=q, weights=w, ignore_index=ignore)

    def loss(logits, target):
        value = base(logits, target)
        if tv or vol:
            prob = logits.softmax(1)
            if tv:
                value = value + tv * total_variation(prob)
            if vol:
                value = value + float(vol.get("weight", 1.0)) * volume_prior(prob, int(vol["class"]), float(vol["fraction"]))
        return value

    return loss

"""Training of the dense 3D lesion detector (``[model] task = "detection"`` recipes).

Samples are 3D patches at 2 mm cut from the MNI anatomy *behind*
:data:`medcli.detect.synth.SPLIT_Y` (the benchmark's lesions all lie in front of
it), rendered by :func:`medcli.detect.synth.lesion_case` with its training
setting (:data:`~medcli.detect.synth.TRAINING`): T1-, T2-, FLAIR-like, head CT,
or domain-randomised contrasts (random tissue means, texture and drift from
:func:`medcli.train.synth.render_slab`), with long-tailed lesions whose
intensity is independent of the tissue, and mimics (bright and dark vessels,
CSF-like sheets) that are never labelled: the hard negatives. Patches are
mirrored and their axes permuted at random, and some are blurred along one axis
(thick slices).

Targets (CenterNet): a Gaussian bump at each lesion's centre (1 at its nearest
voxel, sigma growing with the lesion), and its box size per axis and diameter
(log mm) near the centre. The loss is the penalty-reduced focal loss on the
heatmap (the imbalance: a handful of centre voxels against 64 000 others) plus
an L1 loss on the sizes.

**Partial labels**: with ``unlabelled = q`` each lesion is, with probability q,
left unlabelled, as in data sets where half of the lesions are not annotated.
Its region (dilated) is masked out of the loss: it is neither taught as a
lesion nor as background. Lesions under ``min_labelled_mm`` are masked the same
way (a lesion of one or two voxels is as faint as the noise).

The loop (checkpoints, resume, best-on-validation export, logs) is the
engine's (:func:`medcli.train.engine.train`): :func:`task_hooks` plugs in the
batches, the loss with its two parts (logged as columns) and the validation,
which runs the detector on whole 2 mm brains made with the generator's *default*
setting (not the training one) and scores the LUNA16 CPM inside the training
half of the anatomy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Patch side (voxels) and spacing (mm) of the training patches.
PATCH = 40
SPACING = 2.0
#: Linear learning-rate warm-up (steps): without normalisation layers, Adam's first full-size steps
#: move every layer at once and can blow the heatmap up (all voxels "centres").
WARMUP = 30


def _sigma_vox(diameter_mm: float) -> float:
    return max(1.0, 0.2 * diameter_mm / SPACING)


def _training_box(rng: np.random.Generator, probs: np.ndarray, affine: np.ndarray, patch: int, split_y: float):
    """A random patch box of the 2 mm anatomy entirely behind ``split_y``, centred on brain."""
    shape = np.array(probs.shape[1:])
    # Last voxel index whose centre (and half voxel) is behind the split along y.
    y_last = int(np.floor((split_y - SPACING / 2 - affine[1, 3]) / affine[1, 1]))
    hi = shape.copy()
    hi[1] = min(hi[1], y_last + 1)
    for _ in range(100):
        lo = np.array([rng.integers(0, max(int(hi[i]) - patch, 0) + 1) for i in range(3)])
        c = np.minimum(lo + patch // 2, shape - 1)
        if probs[0][tuple(c)] < 0.5:
            break
    return tuple(slice(int(a), int(min(a + patch, hi[i]))) for i, a in enumerate(lo))


def _soft_mask(img: np.ndarray, head: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """CT search region as ``detect --task ct-lesion`` makes it: smoothed HU inside the soft-tissue window, in the head."""
    from scipy import ndimage

    soft = ndimage.gaussian_filter(img, 1.0)
    soft = (soft > window[0]) & (soft < window[1]) & head
    return ndimage.binary_opening(soft, iterations=1)


def detection_sample(rng: np.random.Generator, patch: int = PATCH, contrasts: tuple[str, ...] = ("t1", "t2", "flair", "random"),
                     unlabelled: float = 0.0, thick_prob: float = 0.3, split_y: float | None = None,
                     channels: int = 2, min_labelled_mm: float = 0.0) -> dict[str, np.ndarray]:
    """One training patch and its targets.

    Returns:
        ``x`` (channels, P, P, P) input (image, mask, scale-space channels: :func:`medcli.detect.learned.model_input`); ``heat`` (P, P, P) centre targets; ``size`` (4, P, P, P)
        log sizes (3 axes, diameter); ``size_w`` (P, P, P) where the sizes are taught; ``weight`` (P, P, P)
        where the heatmap is taught (0 outside the dilated mask and around unlabelled lesions).
    """
    from scipy import ndimage

    from medcli.detect.api import CT_WINDOW
    from medcli.detect.learned import model_input
    from medcli.detect.synth import SPLIT_Y, TRAINING, anatomy, lesion_case

    split_y = SPLIT_Y if split_y is None else split_y
    probs, affine = anatomy((SPACING,) * 3)
    contrast = str(contrasts[int(rng.integers(len(contrasts)))])
    box = _training_box(rng, probs, affine, patch, split_y)
    case = lesion_case(rng, contrast, TRAINING, spacing=(SPACING,) * 3, box=box)
    img = np.asarray(case.image.data, np.float32)
    ct = contrast == "ct"
    mask = _soft_mask(img, case.brain, CT_WINDOW) if ct else case.brain.copy()
    if not mask.any():
        mask = case.brain.copy()
    # Thick slices along one axis (as a 3 mm or 5 mm acquisition resampled to 2 mm).
    if rng.random() < thick_prob:
        sig = [0.0, 0.0, 0.0]
        sig[int(rng.integers(3))] = 0.4246 * rng.uniform(3.0, 6.0) / SPACING
        img = ndimage.gaussian_filter(img, sig, mode="nearest")
    lab = np.asarray(case.lesions.data)
    # Pad a patch cut short by the volume's faces.
    pad = [(0, patch - s) for s in img.shape]
    if any(p[1] for p in pad):
        img = np.pad(img, pad, mode="edge")
        mask = np.pad(mask, pad)
        lab = np.pad(lab, pad)
    x = model_input(img, mask, ct, CT_WINDOW, channels, SPACING)
    shape = mask.shape
    heat = np.zeros(shape, np.float32)
    size = np.zeros((4,) + shape, np.float32)
    size_w = np.zeros(shape, np.float32)
    weight = ndimage.binary_dilation(mask, iterations=2).astype(np.float32)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    for i, f in enumerate(case.truth):
        # Lesions under ``min_labelled_mm`` (about two voxels: as faint as the noise) are masked like
        # unlabelled ones: taught as lesions they only teach the network to fire on noise.
        if (unlabelled > 0 and rng.random() < unlabelled) or f.diameter_mm < min_labelled_mm:
            region = lab == i + 1
            grow = max(2, int(round(0.3 * f.diameter_mm / SPACING)))
            region = ndimage.binary_dilation(region, iterations=grow)
            weight[region] = 0.0
            continue
        c = np.asarray(f.voxel_ijk, float)
        s = _sigma_vox(f.diameter_mm)
        g = np.exp(-0.5 * ((grid - c[:, None, None, None].astype(np.float32)) ** 2).sum(0) / s**2)
        near = tuple(int(np.clip(round(v), 0, n - 1)) for v, n in zip(c, shape))
        g[near] = 1.0
        heat = np.maximum(heat, g)
        sel = g >= 0.5
        box_size = f.box_ras[3:] - f.box_ras[:3]
        size[:3, sel] = np.log(np.maximum(box_size, 1.0) / 10.0)[:, None]
        size[3, sel] = np.log(max(f.diameter_mm, 1.0) / 10.0)
        size_w[sel] = 1.0
    # Mirror and permute the axes (the sizes follow their axes).
    nx = len(x)
    arrays = [*x, heat, size[0], size[1], size[2], size[3], size_w, weight]
    for ax in range(3):
        if rng.random() < 0.5:
            arrays = [np.flip(a, ax) for a in arrays]
    perm = rng.permutation(3)
    arrays = [np.transpose(a, perm) for a in arrays]
    arrays[nx + 1:nx + 4] = [arrays[nx + 1 + int(p)] for p in perm]
    out = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    return {"x": np.stack(out[:nx]), "heat": out[nx], "size": np.stack(out[nx + 1:nx + 5]), "size_w": out[nx + 5],
            "weight": out[nx + 6]}


def focal_loss(logit, target, weight, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss, summed over taught voxels, divided by the number of centres + patches."""
    import torch

    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = (target >= 1.0 - 1e-6).float() * weight
    neg = (1.0 - pos) * weight
    pos_loss = -torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = -torch.log(1 - p) * p**alpha * (1 - target) ** beta * neg
    # Per centre, as CenterNet, plus one per patch: a batch with a single centre does not weigh 6x another.
    return (pos_loss.sum() + neg_loss.sum()) / (pos.sum() + logit.shape[0])


def detection_loss(out, batch: dict[str, Any], size_weight: float = 1.0):
    """(total, {"heat": heatmap part, "size": size part}) of a batch."""
    heat = focal_loss(out[:, 0], batch["heat"], batch["weight"])
    w = batch["size_w"]
    l1 = (out[:, 1:] - batch["size"]).abs().mean(1) * w
    size = l1.sum() / w.sum().clamp(min=1.0)
    return heat + size_weight * size, {"heat": heat, "size": size}


def _batch(seed: int, step: int, n: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The batch of ``step``: sample ``b`` drawn from ``default_rng([seed, step, b])``, as the engine's loader."""
    import torch

    samples = [detection_sample(np.random.default_rng([seed, step, b]), **settings) for b in range(n)]
    return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}


def task_hooks(recipe: dict[str, Any], validate: bool):
    """What detection plugs into the engine's loop: its batches, loss (heat and size parts) and CPM validation."""
    from medcli.train.engine import TaskHooks

    t = recipe["train"]
    settings = dict(recipe["data"].get("settings") or {})
    settings.setdefault("patch", int((t.get("patch") or [PATCH])[0]))
    settings["channels"] = int(recipe["model"]["params"].get("in_channels", 2))
    if "contrasts" in settings:
        settings["contrasts"] = tuple(settings["contrasts"])
    seed, n = int(t["seed"]), int(t["batch"])
    size_weight = float(recipe["loss"].get("size_weight", 1.0))

    def batches(first: int, last: int):
        for step in range(first, last + 1):
            b = _batch(seed, step, n, settings)
            yield b["x"], b

    return TaskHooks(batches, lambda out, b: detection_loss(out, b, size_weight),
                     Validator(recipe, settings.get("contrasts")) if validate else None, warmup=WARMUP)


# -- validation -------------------------------------------------------------------------------------


def validation_cases(n: int, seed: int, contrasts: tuple[str, ...], split_y: float | None = None):
    """``n`` whole 2 mm brains (default generator setting, lesions behind the split) and their search masks."""
    from medcli.detect.synth import SPLIT_Y, LesionConfig, lesion_case

    split_y = SPLIT_Y if split_y is None else split_y
    out = []
    for i in range(n):
        con = contrasts[i % len(contrasts)]
        rng = np.random.default_rng(seed + i)
        case = lesion_case(rng, con, LesionConfig(), spacing=(SPACING,) * 3, n_lesions=None if i % 5 != 4 else 0,
                           y_range=(-1e9, split_y))
        out.append((f"{con}-{seed + i}", case))
    return out


def case_mask(case, split_y: float | None = None, behind: bool = True) -> np.ndarray:
    """A case's search region (brain; CT: the soft-tissue head), limited to one side of the split."""
    from medcli.detect.api import CT_WINDOW
    from medcli.detect.synth import SPLIT_Y

    split_y = SPLIT_Y if split_y is None else split_y
    img = np.asarray(case.image.data, np.float32)
    m = _soft_mask(img, case.brain, CT_WINDOW) if case.contrast == "ct" else case.brain.copy()
    ijk = np.indices(m.shape).reshape(3, -1).T
    y = (ijk @ case.image.affine[:3, :3].T + case.image.affine[:3, 3])[:, 1].reshape(m.shape)
    return m & ((y < split_y) if behind else (y >= split_y))


def validate(model, cases, device, floor: float = 0.05) -> tuple[float, list[dict[str, Any]]]:
    """CPM of the model on the validation cases (and a row per case)."""
    from medcli.detect.api import CT_WINDOW
    from medcli.detect.evaluate import Scan, match
    from medcli.detect.learned import model_input, peaks_to_findings, predict_maps

    was = model.training
    model.eval()
    scans, rows = [], []
    for name, case, mask in cases:
        x = model_input(np.asarray(case.image.data, np.float32), mask, case.contrast == "ct", CT_WINDOW,
                        model.stem[0].in_channels, SPACING)
        heat, sizes = predict_maps(model, x, device)
        pred = peaks_to_findings(heat, sizes, mask, case.image.affine, floor, 60)
        scans.append(Scan(name, pred, case.truth))
        rows.append({"case": name, "lesions": len(case.truth), "findings": len(pred)})
    model.train(was)
    froc = match(scans)
    cpm = float(froc.cpm())
    for r in rows:
        r["score"] = cpm
    return cpm, rows


class Validator:
    """The recipe's validation cases (``[validation] samples``, ``seed``, contrasts), scored by :func:`validate`."""

    def __init__(self, recipe: dict[str, Any], train_contrasts: tuple[str, ...] | None = None):
        v = recipe["validation"]
        vcon = tuple((v.get("settings") or {}).get("contrasts") or train_contrasts or ("t1", "t2", "flair"))
        vcon = tuple(c for c in vcon if c != "random") or ("t1",)
        self.cases = [(n, c, case_mask(c)) for n, c in validation_cases(int(v["samples"]), int(v["seed"]), vcon)]

    def __call__(self, model, device) -> tuple[float, list[dict[str, Any]]]:
        return validate(model, self.cases, device)

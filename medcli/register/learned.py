"""Learned deformable registration (SynthMorph-style): the pure function behind ``medcli register --method learned``.

Stages:

1. **Affine**: the classical rigid -> affine fit of :func:`medcli.register.methods.register`
   (``kind="affine"``), which also gives the moving image resampled on the fixed grid.
2. **Network**: both images, each scaled to its 0.5-99.5th foreground percentile and
   clipped to 0-1, are smoothed and sampled on a 4 mm RAS grid of 40 x 48 x 40 voxels
   around the fixed image's intensity centre of mass; the bundled ``register`` model
   (a 3D U-Net trained on synthetic pairs of random contrasts, :mod:`medcli.train.registration`)
   returns a stationary velocity field ``v`` there, and ``exp(v)`` (scaling and squaring)
   is interpolated to the fixed grid: a diffeomorphism whatever the network says.
3. **Refinement** (optional, ``refine_levels``): the classical SyN stage
   (:func:`medcli.register.methods.fit_syn`) run for a few iterations on the moving image
   already warped by the network; its field is composed with the network's.

The chain is the one of classical SyN, ``[DisplacementField, AffineTransform]``
(fixed -> moving points), so that every writer, ``register apply`` and the
tests treat both methods alike.

References:
    Hoffmann M, Billot B, Greve DN, Iglesias JE, Fischl B, Dalca AV. SynthMorph:
    learning contrast-invariant registration without acquired images. IEEE TMI 2022.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

from medcli.engine.inference import deterministic_algorithms
from medcli.image import Image
from medcli.register import grid as G
from medcli.register import methods
from medcli.register.transforms import DisplacementField, TransformChain

#: The hub's name of the learned registration model.
MODEL = "register"
#: What ``medcli register --method auto`` runs: the method that measured better on
#: tests/benchmarks/results/register_learned.md (GM/WM Dice, mono- and multi-modal).
AUTO = "classical"  # hybrid: T1 0.960/0.963 vs 0.959/0.957, but the same short SyN from zero beat it (card)
#: The classical SyN levels run after the network when refining: ``(spacing mm, iterations)``.
REFINE_LEVELS: tuple[tuple[float, int], ...] = ((4.0, 20), (2.0, 20))


@lru_cache(maxsize=2)
def load_model(name: str = MODEL, device: str = "cpu"):
    """``(network, spec, sha256)`` of a registration model from the hub (weights checked by sha256)."""
    from medcli.engine.architectures import build
    from medcli.models import hub

    torch = G.torch()
    spec, state = hub.load(name)
    net = build(spec)
    net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    net.eval().to(device)
    files = spec.get("files") or []
    sha = files[0].get("sha256", "") if files else spec.get("sha256", "")
    return net, spec, sha


def _net_grid(spec: dict[str, Any], centre: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    inp = spec.get("input", {})
    spacing = float(inp.get("spacing", [4.0])[0])
    shape = tuple(int(s) for s in inp.get("shape", (40, 48, 40)))
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = np.asarray(centre, float) - spacing * (np.array(shape) - 1) / 2
    return aff, shape


def on_net_grid(vol, affine: np.ndarray, net_aff: np.ndarray, shape, presmooth_mm: float = 1.9):
    """A normalised ``(1, 1, X, Y, Z)`` volume (clipped to 0-1), smoothed and sampled on the network grid."""
    torch = G.torch()
    vox = np.sqrt((affine[:3, :3] ** 2).sum(0))
    sm = G.smooth(vol.clamp(0, 1), presmooth_mm / vox)
    m = torch.tensor(np.linalg.inv(affine) @ net_aff, dtype=torch.float32, device=vol.device)
    return G.sample(sm, G.transform_vox(m, G.identity(shape, vol.device))).clamp(0, 1)


def predict_velocity(net, spec: dict[str, Any], moving_n, fixed_n, affine: np.ndarray, centre: np.ndarray):
    """The network's velocity field ``(1, 3, *shape)`` (voxels of the network grid) and that grid's affine.

    ``moving_n`` and ``fixed_n`` are normalised ``(1, 1, X, Y, Z)`` volumes on one grid (``affine``):
    the moving image already affinely aligned with the fixed one.
    """
    torch = G.torch()
    net_aff, shape = _net_grid(spec, centre)
    x = torch.cat([on_net_grid(moving_n, affine, net_aff, shape), on_net_grid(fixed_n, affine, net_aff, shape)], 1)
    with torch.inference_mode():
        v = net(x)
    return v.clone(), net_aff


def compose(outer, inner, fixed: Image, device) -> np.ndarray:
    """``x -> x + inner(x) + outer(x + inner(x))``: two RAS mm displacement arrays on the fixed grid composed.

    ``inner`` is applied first (its displacement moves the point at which ``outer`` is read).
    """
    torch = G.torch()
    shape = fixed.shape[:3]
    out_t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(outer, -1, 0)))[None].to(device)
    lin_inv = torch.tensor(np.linalg.inv(fixed.affine[:3, :3]), dtype=torch.float32, device=device)
    res = np.empty_like(inner)
    for x0, x1, ident in methods.slabs(shape, device):
        r = torch.from_numpy(inner[x0:x1]).to(device)[None]
        pos = ident + r @ lin_inv.T
        res[x0:x1] = (r + G.sample(out_t, pos, padding="border").permute(0, 2, 3, 4, 1))[0].cpu().numpy()
    return res


def _metric_value(measure, fix_n, img_n, weight, affine: np.ndarray) -> float:
    """Similarity of two normalised volumes on the fixed grid, on its 2 mm level (as the classical stats)."""
    f2, _ = G.level(fix_n, affine, 2.0)
    m2, _ = G.level(img_n, affine, 2.0)
    w2, _ = G.level(weight, affine, 2.0, 0.0)
    return -float(measure(f2, m2, (w2 > 0.5).float()))


def register_learned(
    moving: Image,
    fixed: Image,
    *,
    metric: str = "auto",
    moving_mask: np.ndarray | None = None,
    fixed_mask: np.ndarray | None = None,
    seed: int = 0,
    device: Any = "cpu",
    refine_levels: tuple[tuple[float, int], ...] = (),
    model: str = MODEL,
    options: methods.Options | None = None,
    want_jacobian: bool = False,
    log=None,
) -> methods.Result:
    """Register ``moving`` onto ``fixed``: classical affine, then the learned velocity field (then optionally SyN).

    Args:
        moving: The image to align (3D).
        fixed: The reference (3D); outputs live on its grid.
        metric: Metric of the classical stages (see :func:`medcli.register.methods.register`).
        moving_mask: Boolean array on the moving grid.
        fixed_mask: Boolean array on the fixed grid.
        seed: Seed of the affine stages' point samples.
        device: Torch device.
        refine_levels: Classical SyN levels ``(spacing mm, iterations)`` run after the
            network (empty: the network's field alone).
        model: Hub name or folder of the registration model.
        options: Classical stage tuning (its ``syn_levels`` are replaced by ``refine_levels``).
        want_jacobian: Also return the log Jacobian determinant map.
        log: Callable taking progress lines.

    Returns:
        :class:`medcli.register.methods.Result` with the chain ``[DisplacementField, AffineTransform]``.
    """
    torch = G.torch()
    t0 = time.perf_counter()
    opts = options or methods.Options()
    dev = torch.device(device)
    net, spec, sha = load_model(model, str(dev))
    aff = methods.register(
        moving, fixed, kind="affine", metric=metric, moving_mask=moving_mask, fixed_mask=fixed_mask, seed=seed, device=device,
        options=opts, log=log,
    )
    affine = aff.chain[-1]
    A = affine.matrix
    mov = moving if moving.ndim == 3 else moving.with_data(np.asarray(moving.data)[..., 0])
    fix = fixed if fixed.ndim == 3 else fixed.with_data(np.asarray(fixed.data)[..., 0])
    was_det = deterministic_algorithms(True)
    try:
        fn = methods.normalise(fix.data, fixed_mask)
        if fixed_mask is not None:
            fn = np.where(fixed_mask, fn, 0.0).astype(np.float32)
        mn = methods.normalise(mov.data, moving_mask)
        if moving_mask is not None:
            mn = np.where(moving_mask, mn, 0.0).astype(np.float32)
        mov_n = mov.with_data(mn.astype(np.float32))
        F = G.volume(fn, dev)
        W = G.volume(fixed_mask.astype(np.float32) if fixed_mask is not None else (G.smooth(F, 2.0)[0, 0].cpu().numpy() > 0.05), dev)
        with torch.no_grad():
            Ma = G.volume(methods.warp_moving(mov_n, A, fix, None, dev), dev)
        centre = methods.centre_of_mass(np.clip(fn, 0, 1), fix.affine)
        v, net_aff = predict_velocity(net, spec, Ma, F, fix.affine, centre)
        squarings = int(spec.get("input", {}).get("squarings", 6))
        with torch.no_grad():
            u = methods.field_to_fixed(G.expmap(v, squarings), net_aff, fix, dev)
            u_inv = methods.field_to_fixed(G.expmap(-v, squarings), net_aff, fix, dev)
        if log:
            log(f"learned field: largest displacement {float(np.sqrt((u ** 2).sum(-1)).max()):.2f} mm")
        syn_metric = metric if metric != "auto" else (
            "ncc" if aff.stats["contrast_correlation"] > methods.SAME_CONTRAST_CORRELATION else "mi"
        )
        if refine_levels:
            with torch.no_grad():
                Ml = G.volume(methods.warp_moving(mov_n, A, fix, u, dev), dev)
            ref_opts = replace(opts, syn_levels=tuple(refine_levels))
            Fp, Mp, Wp = methods.Pyramid(F, fix.affine), methods.Pyramid(Ml, fix.affine), methods.Pyramid(W, fix.affine, smooth=False)
            vr, vr_aff = methods.fit_syn(Fp, Mp, Wp, np.eye(4), syn_metric, ref_opts, log)
            del Fp, Mp, Wp, Ml
            with torch.no_grad():
                r = methods.field_to_fixed(G.expmap(vr, ref_opts.squarings), vr_aff, fix, dev)
                r_inv = methods.field_to_fixed(G.expmap(-vr, ref_opts.squarings), vr_aff, fix, dev)
                # Refinement first, then the network's field: x -> x + r -> (..) + u -> A(..).
                u, u_inv = compose(u, r, fix, dev), compose(r_inv, u_inv, fix, dev)
        stats: dict[str, Any] = {
            "type": "syn",
            "method": "learned" + ("+refine" if refine_levels else ""),
            "model": {"name": model, "sha256": sha},
            "metric": syn_metric,
            "affine_metric": aff.stats["affine_metric"],
            "contrast_correlation": aff.stats["contrast_correlation"],
        }
        measure = methods.loss_fn(syn_metric, on_grid=True, radius=opts.ncc_radius, bins=opts.syn_mi_bins)
        with torch.no_grad():
            stats["metric_before"] = _metric_value(measure, F, G.volume(methods.warp_moving(mov_n, np.eye(4), fix, None, dev), dev), W, fix.affine)
            stats["metric_after"] = _metric_value(measure, F, G.volume(methods.warp_moving(mov_n, A, fix, u, dev), dev), W, fix.affine)
            lin_inv = torch.tensor(np.linalg.inv(fix.affine[:3, :3]), dtype=torch.float32, device=dev)
            det = G.jacobian_determinant(torch.einsum("ij,xyzj->ixyz", lin_inv, torch.from_numpy(u).to(dev))[None])
            stats["folded_fraction"] = float((det <= 0).float().mean())
            stats["jacobian_min"] = float(det.min())
            stats["jacobian_max"] = float(det.max())
            log_jac = fix.with_data(torch.log(det.clamp_min(1e-6)).cpu().numpy().astype(np.float32)) if want_jacobian else None
            del det
            warped = methods.warp_moving(mov, A, fix, u, dev)
        fwd = DisplacementField(fix.with_data(u), fix.with_data(u_inv))
        stats["seconds"] = round(time.perf_counter() - t0, 3)
        out = Image(warped.astype(np.float32), fix.affine, dict(mov.meta))
        return methods.Result(
            chain=TransformChain([fwd, affine]), inverse=TransformChain([affine.inverse(), fwd.inverse()]), warped=out, stats=stats,
            log_jacobian=log_jac,
        )
    finally:
        deterministic_algorithms(was_det)

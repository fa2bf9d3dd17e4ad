"""Rigid, affine and diffeomorphic registration in torch (the pure functions behind ``medcli register``).

Stages, each initialising the next (``kind="syn"`` runs all three):

1. **Initialisation**: the moving image's intensity centre of mass is put on
   the fixed image's (ANTs' ``--initial-moving-transform [F,M,1]``).
2. **Rigid, then affine**: a 4x4 ``A = A0 . T(c + t) . L . T(-c)`` about the
   fixed centre ``c`` (``L`` a rotation ``exp(skew(r))``, or a general matrix for
   affine), fitted by Adam with a cosine-decaying step on a multi-resolution
   pyramid (4, 2, 1 mm by default) on random point samples of the fixed grid
   (seeded, hence reproducible). Metric: Mattes MI, squared global
   correlation, or MSE.
3. **Diffeomorphic** (SyN-like, log-domain greedy): a stationary velocity
   field ``v`` on the fixed grid, ``phi = exp(v)`` by scaling and squaring, so
   ``phi`` is a diffeomorphism and ``exp(-v)`` its inverse. Each iteration
   takes the metric's gradient with respect to the displacement, smooths it
   (the "fluid" Gaussian), steps ``v`` so that the largest update is ``step``
   voxels, then smooths ``v`` (the "elastic" Gaussian; the regulariser on the
   field). Levels of 4 and 2 mm by default: the 1 mm level did not pay on the
   benchmark (tests/benchmarks/results/register.md); its displacement is
   interpolated to the fixed grid.

The resulting chain maps fixed to moving points (see
:mod:`medcli.register.transforms`): ``[DisplacementField, AffineTransform]``
for SyN, ``[AffineTransform]`` otherwise.

Determinism: the only random numbers are the point samples of the affine
stages (``seed``); every torch operation used is deterministic on CPU for a
given thread count (``torch.use_deterministic_algorithms`` is switched on
while registering).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medcli.engine.inference import deterministic_algorithms
from medcli.errors import InputError
from medcli.image import Image
from medcli.register import grid as G
from medcli.register.metrics import LocalNCC, loss_fn
from medcli.register.transforms import (
    AffineTransform,
    DisplacementField,
    TransformChain,
)

KINDS = ("rigid", "affine", "syn")
METRIC_CHOICES = ("auto", "ncc", "mi", "mse")

#: Pearson correlation of the fixed and the affinely aligned moving image where
#: both show the head (normalised intensity > 0.1), above which ``--metric auto`` takes them for one
#: contrast and uses local NCC (T1 vs T1: 0.9; T1 vs T2-like: < 0; see tests).
SAME_CONTRAST_CORRELATION = 0.5


@dataclass
class Options:
    """Tuning of the stages (the defaults are what the benchmark measured)."""

    affine_levels: tuple[tuple[float, int], ...] = ((4.0, 80), (2.0, 40), (1.0, 20))
    affine_samples: int = 60000
    affine_lr: float = 0.02
    syn_levels: tuple[tuple[float, int], ...] = ((4.0, 30), (2.0, 15))
    syn_step: float = 0.5
    step_quantile: float = 0.95  # the step is set on this quantile of the gradient norms (tests: 0.95 beat the max)
    fluid_sigma: float = 1.7
    elastic_sigma: float = 0.7
    ncc_radius: int = 4  # 9-voxel windows: GM/WM Dice .9640/.9679 vs .9616/.9633 (radius 3) and .9581/.9559 (2)
    # MI of the diffeomorphic stage (T2-like onto T1, 1 mm benchmark case): 24 bins GM/WM Dice .9550/.9701,
    # 32 bins .9535/.9700, 64 bins .9471/.9690; fewer, wider bins give a smoother dense gradient
    syn_mi_bins: int = 24
    squarings: int | None = None  # None: as many as the field's largest velocity needs
    exp_max_step: float = 0.5  # voxels: the largest first step of scaling and squaring


@dataclass
class Result:
    """What :func:`register` returns."""

    chain: TransformChain
    inverse: TransformChain
    warped: Image
    stats: dict[str, Any] = field(default_factory=dict)
    log_jacobian: Image | None = None


def keep_freed_memory() -> None:
    """Ask glibc to reuse freed large blocks instead of unmapping them.

    Registration allocates and frees tensors of 35-100 MB hundreds of times;
    by default glibc hands each back to the kernel and page-faults it in again
    at the next allocation, which cost a 1 mm affine run as much kernel time
    as computation (10 of 20 CPU seconds). Blocks up to 1 GB now come from the
    heap and stay there. A no-op where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, (1 << 31) - 1)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def normalise(data: np.ndarray, mask: np.ndarray | None = None, source: str | None = None) -> np.ndarray:
    """Intensities scaled so that the 0.5th..99.5th percentile of the foreground spans 0..1 (``source``: for errors)."""
    d = np.asarray(data, np.float32)
    vals = d[mask] if mask is not None else d[d > d.min()]
    if vals.size == 0:
        raise InputError("the image is constant: nothing to register", source)
    lo, hi = np.percentile(vals[:: max(1, vals.size // 200000)], [0.5, 99.5])
    if hi <= lo:
        # Scaled as any other image, a flat foreground lands at 0 with the background below it: no mass to centre
        # on, a NaN transform and an all-zero output that exited 0.
        raise InputError("the image has a single intensity over its background (a binary mask?): "
                         "registration needs the anatomy's contrast", source)
    return (d - lo) / (hi - lo)


def world_box(img: Image) -> tuple[np.ndarray, np.ndarray]:
    s = img.shape[:3]
    corners = np.array([[i, j, k] for i in (0, s[0] - 1) for j in (0, s[1] - 1) for k in (0, s[2] - 1)], float)
    w = img.voxel_to_world(corners)
    return w.min(0), w.max(0)


def check_inputs(moving: Image, fixed: Image, moving_mask: np.ndarray | None, fixed_mask: np.ndarray | None) -> None:
    """Refuse inputs registration cannot handle (one-line errors, before any work)."""
    for img, what in ((fixed, "fixed"), (moving, "moving")):
        src = img.meta.get("source", what)
        if img.ndim != 3 and not (img.ndim == 4 and img.shape[3] == 1):
            raise InputError(f"the {what} image must be 3D, got shape {img.shape}", src)
        if sum(s > 1 for s in img.shape[:3]) < 3:
            raise InputError(f"the {what} image must be 3D, got shape {img.shape} (a 2D slice)", src)
        if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img.data).all():
            raise InputError(f"the {what} image has NaN or Inf voxels", src)
    for m, img, what in ((moving_mask, moving, "--mask"), (fixed_mask, fixed, "--fixed-mask")):
        if m is not None and m.shape != img.shape[:3]:
            raise InputError(f"{what} has shape {m.shape}, its image {img.shape[:3]}")
        if m is not None and not m.any():
            raise InputError(f"{what} is empty")
    lo_f, hi_f = world_box(fixed)
    lo_m, hi_m = world_box(moving)
    if (np.minimum(hi_f, hi_m) - np.maximum(lo_f, lo_m) <= 0).any():
        raise InputError(
            "the fixed and moving fields of view do not overlap in world coordinates "
            f"(fixed {np.round(lo_f)}..{np.round(hi_f)} mm, moving {np.round(lo_m)}..{np.round(hi_m)} mm)",
            moving.meta.get("source"),
        )


def centre_of_mass(vol: np.ndarray, affine: np.ndarray) -> np.ndarray:
    w = np.clip(vol, 0, None).astype(np.float64)
    total = w.sum()
    idx = [np.arange(s, dtype=np.float64) for s in w.shape]
    c = [float((w.sum(axis=tuple(a for a in range(3) if a != ax)) * idx[ax]).sum() / total) for ax in range(3)]
    return affine[:3, :3] @ np.array(c) + affine[:3, 3]


def _rotation(r, torch):
    z = torch.zeros((), dtype=r.dtype, device=r.device)
    k = torch.stack([torch.stack([z, -r[2], r[1]]), torch.stack([r[2], z, -r[0]]), torch.stack([-r[1], r[0], z])])
    return torch.linalg.matrix_exp(k)


def pyramid(schedule, affine: np.ndarray):
    """The ``(spacing, iterations)`` levels of a schedule that an image of this voxel size has.

    Levels finer than the image are clamped to its voxel size, and repeats dropped.
    """
    finest = float(np.sqrt((affine[:3, :3] ** 2).sum(0)).min())
    done: set[float] = set()
    for spacing, iters in schedule:
        spacing = max(float(spacing), finest)
        if spacing not in done:
            done.add(spacing)
            yield spacing, iters


class Pyramid:
    """The resolution levels of one volume, each built once per registration.

    Smoothing and resampling a 1 mm brain costs about a second; the rigid,
    affine and deformable stages share their levels instead of rebuilding them.
    """

    def __init__(self, vol, affine: np.ndarray, smooth: bool = True):
        self.vol, self.affine, self.smooth = vol, affine, smooth
        self._levels: dict[float, tuple] = {}

    def at(self, spacing: float):
        """``(tensor, affine)`` of the level with this voxel size."""
        if spacing not in self._levels:
            self._levels[spacing] = G.level(self.vol, self.affine, spacing, None if self.smooth else 0.0)
        return self._levels[spacing]


class CosineAdam:
    """Adam under a cosine-annealed learning rate (to 0 after ``iters`` steps), in plain tensor operations.

    The arithmetic of ``torch.optim.Adam`` (default betas and eps) and of ``CosineAnnealingLR``'s recursive form,
    so results are bit-identical to them; written out because the first ``torch.optim`` step imports the compiler
    (``torch._dynamo``): about 1.4 s of CPU in every process that registers, more than a short affine fit itself.
    """

    def __init__(self, params: list, lr: float, iters: int, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        torch = G.torch()
        self.params, self.lr, self.iters, self.betas, self.eps = params, float(lr), int(iters), betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self) -> None:
        """One Adam step from the parameters' gradients (cleared afterwards), then the next learning rate."""
        torch = G.torch()
        b1, b2 = self.betas
        self.t += 1
        bc1, bc2 = 1 - b1 ** float(self.t), 1 - b2 ** float(self.t)
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v):
                g = p.grad
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.addcdiv_(m, (v.sqrt() / bc2**0.5).add_(self.eps), value=-(self.lr / bc1))
                p.grad = None
        e, n = self.t, self.iters
        if e <= n:
            self.lr = (1 + math.cos(math.pi * e / n)) / (1 + math.cos(math.pi * (e - 1) / n)) * self.lr


def fit_affine(
    Fp: Pyramid, Mp: Pyramid, Wp: Pyramid, A0: np.ndarray, centre: np.ndarray, kind: str, metric: str, opts: Options, gen, log=None
) -> np.ndarray:
    """Fit a rigid or affine ``A`` (fixed world -> moving world) on a pyramid; returns the 4x4."""
    torch = G.torch()
    dev = Fp.vol.device
    dt = torch.float64
    A_prev = torch.tensor(A0, dtype=dt, device=dev)
    c = torch.tensor(centre, dtype=dt, device=dev)
    radius = 50.0  # mm: a rotation of 1 rad moves the cortex about this far; puts t and r on one scale
    r = torch.zeros(3, dtype=dt, device=dev, requires_grad=True)
    t = torch.zeros(3, dtype=dt, device=dev, requires_grad=True)
    b = torch.zeros(3, 3, dtype=dt, device=dev, requires_grad=True)
    params = [r, t] + ([b] if kind == "affine" else [])
    loss = loss_fn(metric, on_grid=False)

    def matrix():
        L = _rotation(r, torch)
        if kind == "affine":
            L = L @ (torch.eye(3, dtype=dt, device=dev) + b)
        D = torch.eye(4, dtype=dt, device=dev)
        D = D.clone()
        Dl = torch.cat([torch.cat([L, (c + radius * t - L @ c)[:, None]], 1), D[3:]], 0)
        return A_prev @ Dl

    for spacing, iters in pyramid(opts.affine_levels, Fp.affine):
        Fl, fl_aff = Fp.at(spacing)
        Ml, ml_aff = Mp.at(spacing)
        Wl, _ = Wp.at(spacing)
        cand = torch.nonzero(Wl[0, 0].reshape(-1) > 0.5).reshape(-1)
        if cand.numel() > opts.affine_samples:
            pick = torch.randperm(cand.numel(), generator=gen)[: opts.affine_samples].to(dev)
            cand = cand[pick].sort().values
        shape = Fl.shape[2:]
        # C-order indices by hand: torch.unravel_index's argument check imports sympy (about 0.8 s per process)
        ijk = torch.stack([cand // (shape[1] * shape[2]), cand // shape[2] % shape[1], cand % shape[2]], -1).float()
        pts = ijk @ torch.tensor(fl_aff[:3, :3].T, dtype=torch.float32, device=dev) + torch.tensor(
            fl_aff[:3, 3], dtype=torch.float32, device=dev
        )
        fvals = Fl.reshape(-1)[cand]
        ones = torch.ones_like(fvals)
        m_inv = torch.tensor(np.linalg.inv(ml_aff), dtype=dt, device=dev)
        opt = CosineAdam(params, opts.affine_lr * min(1.0, spacing / 4.0), iters)
        for _ in range(iters):
            mv = G.transform_vox((m_inv @ matrix()).float(), pts)[None]
            mvals = G.sample(Ml, mv)[0, 0]
            w = ones * G.inside(mv, Ml.shape[2:])[0, 0]
            value = loss(fvals, mvals, w)
            value.backward()
            opt.step()
        if log:
            log(f"{kind} {spacing:g} mm: {metric} {float(value.detach()):.4f}")
    with torch.no_grad():
        return matrix().cpu().numpy()


def fit_syn(Fp: Pyramid, Mp: Pyramid, Wp: Pyramid, A: np.ndarray, metric: str, opts: Options, log=None):
    """Fit the stationary velocity field; returns ``(v, level_affine)`` (voxel units of the last level)."""
    torch = G.torch()
    dev = Fp.vol.device
    loss = loss_fn(metric, on_grid=True, radius=opts.ncc_radius, bins=opts.syn_mi_bins)
    v = None
    v_aff = None
    for spacing, iters in pyramid(opts.syn_levels, Fp.affine):
        Fl, fl_aff = Fp.at(spacing)
        Ml, ml_aff = Mp.at(spacing)
        Wl = (Wp.at(spacing)[0] > 0.5).float()
        shape = Fl.shape[2:]
        if v is None:
            v = torch.zeros((1, 3) + tuple(shape), dtype=torch.float32, device=dev)
        else:
            v = G.resample_field(v, v_aff, fl_aff, shape)
        v_aff = fl_aff
        Gm = torch.tensor(np.linalg.inv(ml_aff) @ A @ fl_aff, dtype=torch.float32, device=dev)
        ident = G.identity(shape, dev)
        # Local NCC: the fixed image's window statistics once per level, the gradient in closed form; the
        # weight is the fixed head (the moving image reads 0 outside its field of view).
        ncc = LocalNCC(Fl, Wl, opts.ncc_radius) if metric == "ncc" else None
        for it in range(iters):
            with torch.no_grad():
                d = G.expmap(v, opts.squarings, opts.exp_max_step)
            d.requires_grad_(True)
            mv = G.transform_vox(Gm, ident + d.permute(0, 2, 3, 4, 1))
            warped = G.sample(Ml, mv)
            if ncc is not None:
                value, g_m = ncc(warped.detach())
                # the vector-Jacobian product as the gradient of a scalar: grad_outputs= makes torch import
                # its symbolic-shape checker (sympy), about 0.8 s of CPU per registering process; same numbers
                (g,) = torch.autograd.grad((warped * g_m).sum(), d)
            else:
                w = Wl * G.inside(mv, Ml.shape[2:])
                value = loss(Fl, warped, w)
                (g,) = torch.autograd.grad(value, d)
            with torch.no_grad():
                g = G.smooth(g, opts.fluid_sigma)
                mag = g.pow(2).sum(1, keepdim=True).sqrt()
                if opts.step_quantile >= 1.0:
                    norm = mag.amax()
                else:  # a few outlying gradients must not shrink every other voxel's step
                    sub = mag.reshape(-1)[:: max(1, mag.numel() // 200000)]
                    norm = G.quantile(sub, opts.step_quantile)
                step = opts.syn_step * (1.0 - 0.5 * it / max(iters - 1, 1))
                update = g * (step / (norm + 1e-12))
                update = update * (step / (mag * (step / (norm + 1e-12))).clamp_min(step))
                v = G.smooth(v - update, opts.elastic_sigma)
        if log:
            log(f"syn {spacing:g} mm: {metric} {float(value.detach()):.4f}")
    return v, v_aff


def slabs(shape, device, n: int = 24):
    """Voxel coordinates of a grid in slabs of ``n`` planes along the first axis: ``(x0, x1, ident)``.

    The full-resolution stages work slab by slab so that a 1 mm brain needs a
    few tens of MB of coordinates at a time, not several 100 MB arrays.
    """
    for x0 in range(0, shape[0], n):
        x1 = min(shape[0], x0 + n)
        ident = G.identity((x1 - x0, shape[1], shape[2]), device)
        ident[..., 0] += x0
        yield x0, x1, ident


def field_to_fixed(d, d_aff: np.ndarray, fixed: Image, device) -> np.ndarray:
    """A voxel-unit displacement on a level grid as RAS mm displacements on the fixed grid ``(X, Y, Z, 3)``."""
    torch = G.torch()
    shape = fixed.shape[:3]
    m = torch.tensor(np.linalg.inv(d_aff) @ fixed.affine, dtype=torch.float32, device=device)
    lin = torch.tensor(d_aff[:3, :3], dtype=torch.float32, device=device)
    out = np.empty(tuple(shape) + (3,), np.float32)
    for x0, x1, ident in slabs(shape, device):
        dv = G.sample(d, G.transform_vox(m, ident), padding="border")
        out[x0:x1] = torch.einsum("ij,bjxyz->bxyzi", lin, dv)[0].cpu().numpy()
    return out


def warp_moving(moving: Image, A: np.ndarray, fixed: Image, u: np.ndarray | None, device) -> np.ndarray:
    """The moving image (linear) at ``A(x + u(x))`` for every fixed voxel ``x``."""
    torch = G.torch()
    raw = G.volume(np.asarray(moving.data, np.float32), device)
    to_world = torch.tensor(fixed.affine, dtype=torch.float32, device=device)
    to_moving = torch.tensor(np.linalg.inv(moving.affine) @ A, dtype=torch.float32, device=device)
    shape = fixed.shape[:3]
    out = np.empty(shape, np.float32)
    for x0, x1, ident in slabs(shape, device):
        world = G.transform_vox(to_world, ident)
        if u is not None:
            world = world + torch.from_numpy(u[x0:x1]).to(device)[None]
        out[x0:x1] = G.sample(raw, G.transform_vox(to_moving, world))[0, 0].cpu().numpy()
    return out


def correlation(a, b, w) -> float:
    n = w.sum()
    am, bm = (a * w).sum() / n, (b * w).sum() / n
    ac, bc = (a - am) * w, (b - bm) * w
    return float((ac * bc).sum() / ((ac * ac).sum().sqrt() * (bc * bc).sum().sqrt() + 1e-12))


def register(
    moving: Image,
    fixed: Image,
    *,
    kind: str = "syn",
    metric: str = "auto",
    moving_mask: np.ndarray | None = None,
    fixed_mask: np.ndarray | None = None,
    seed: int = 0,
    device: Any = "cpu",
    options: Options | None = None,
    want_jacobian: bool = False,
    log=None,
) -> Result:
    """Register ``moving`` onto ``fixed``.

    Args:
        moving: The image to align (3D).
        fixed: The reference (3D); outputs live on its grid.
        kind: ``rigid``, ``affine`` or ``syn`` (rigid -> affine -> diffeomorphic).
        metric: ``auto`` (affine stages: Mattes MI; diffeomorphic stage: local NCC
            when the affinely aligned images correlate above
            :data:`SAME_CONTRAST_CORRELATION`, else MI), ``ncc``, ``mi`` or ``mse``.
        moving_mask: Boolean array on the moving grid; only its voxels count.
        fixed_mask: Boolean array on the fixed grid; only its voxels count.
        seed: Seed of the affine stages' point samples.
        device: Torch device.
        options: Stage tuning (:class:`Options`).
        want_jacobian: Also return the log Jacobian determinant map (SyN).
        log: Callable taking progress lines.

    Returns:
        :class:`Result` with the chain (fixed -> moving points), its inverse, the
        warped moving image on the fixed grid (float32) and statistics.
    """
    import torch

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if metric not in METRIC_CHOICES:
        raise ValueError(f"metric must be one of {METRIC_CHOICES}")
    opts = options or Options()
    t0 = time.perf_counter()
    keep_freed_memory()
    mov = moving if moving.ndim == 3 else moving.with_data(np.asarray(moving.data)[..., 0])
    fix = fixed if fixed.ndim == 3 else fixed.with_data(np.asarray(fixed.data)[..., 0])
    check_inputs(mov, fix, moving_mask, fixed_mask)
    dev = torch.device(device)
    was_det = deterministic_algorithms(True)
    try:
        gen = torch.Generator().manual_seed(int(seed))
        fn = normalise(fix.data, fixed_mask, fix.meta.get("source"))
        mn = normalise(mov.data, moving_mask, mov.meta.get("source"))
        if moving_mask is not None:
            mn = np.where(moving_mask, mn, 0.0).astype(np.float32)
        F, M = G.volume(fn, dev), G.volume(mn, dev)
        # Where the metric is evaluated: the fixed mask, else the fixed image's head (not the air around it).
        F_w = G.volume(fixed_mask.astype(np.float32) if fixed_mask is not None else (G.smooth(F, 2.0)[0, 0].cpu().numpy() > 0.05), dev)
        c_f = centre_of_mass(np.where(fixed_mask, fn, 0) if fixed_mask is not None else fn, fix.affine)
        c_m = centre_of_mass(mn, mov.affine)
        A = AffineTransform.from_translation(c_m - c_f).matrix
        affine_metric = "mi" if metric == "auto" else metric
        Fp, Mp, Wp = Pyramid(F, fix.affine), Pyramid(M, mov.affine), Pyramid(F_w, fix.affine, smooth=False)
        A = fit_affine(Fp, Mp, Wp, A, c_f, "rigid", affine_metric, opts, gen, log)
        if kind in ("affine", "syn"):
            A = fit_affine(Fp, Mp, Wp, A, c_f, "affine", affine_metric, opts, gen, log)
        affine = AffineTransform(A, center=c_f)
        # The decision of --metric auto, and the before/after measurements, on a common 2 mm grid.
        F2, f2_aff = Fp.at(2.0)
        M2, m2_aff = Mp.at(2.0)
        W2 = (Wp.at(2.0)[0] > 0.5).float()
        ident2 = G.identity(F2.shape[2:], dev)

        def warped2(matrix, d=None):
            g = torch.tensor(np.linalg.inv(m2_aff) @ matrix @ f2_aff, dtype=torch.float32, device=dev)
            vox = ident2 if d is None else ident2 + d.permute(0, 2, 3, 4, 1)
            mv = G.transform_vox(g, vox)
            return G.sample(M2, mv), W2 * G.inside(mv, M2.shape[2:])

        with torch.no_grad():
            wa, wwa = warped2(A)
            # Tissue contrast only: where both images show the head, not the head-vs-air edge both share.
            rho = correlation(F2, wa, wwa * (F2 > 0.1) * (wa > 0.1))
        syn_metric = metric if metric != "auto" else ("ncc" if rho > SAME_CONTRAST_CORRELATION else "mi")
        report_metric = syn_metric if kind == "syn" else affine_metric
        measure = loss_fn(report_metric, on_grid=True, radius=opts.ncc_radius, bins=opts.syn_mi_bins)
        with torch.no_grad():
            w0, ww0 = warped2(np.eye(4))
            before = -float(measure(F2, w0, ww0))
        chain = TransformChain([affine])
        inverse = TransformChain([affine.inverse()])
        stats: dict[str, Any] = {
            "type": kind,
            "metric": report_metric,
            "affine_metric": affine_metric,
            "contrast_correlation": round(rho, 4),
            "metric_before": before,
        }
        log_jac = None
        u = None
        if kind == "syn":
            v, v_aff = fit_syn(Fp, Mp, Wp, A, syn_metric, opts, log)
            del F, M, F_w, Fp, Mp, Wp
            with torch.no_grad():
                d = G.expmap(v, opts.squarings, opts.exp_max_step)
                d_inv = G.expmap(-v, opts.squarings, opts.exp_max_step)
                wl, wwl = warped2(A, G.resample_field(d, v_aff, f2_aff, F2.shape[2:]))
                after = -float(measure(F2, wl, wwl))
                u = field_to_fixed(d, v_aff, fix, dev)
                u_inv = field_to_fixed(d_inv, v_aff, fix, dev)
                lin_inv = torch.tensor(np.linalg.inv(fix.affine[:3, :3]), dtype=torch.float32, device=dev)
                det = G.jacobian_determinant(torch.einsum("ij,xyzj->ixyz", lin_inv, torch.from_numpy(u).to(dev))[None])
                stats["folded_fraction"] = float((det <= 0).float().mean())
                stats["jacobian_min"] = float(det.min())
                stats["jacobian_max"] = float(det.max())
                if want_jacobian:
                    log_jac = fix.with_data(torch.log(det.clamp_min(1e-6)).cpu().numpy().astype(np.float32))
                del det
            fwd = DisplacementField(fix.with_data(u), fix.with_data(u_inv))
            chain = TransformChain([fwd, affine])
            inverse = TransformChain([affine.inverse(), fwd.inverse()])
        else:
            with torch.no_grad():
                wl, wwl = warped2(A)
                after = -float(measure(F2, wl, wwl))
            stats["folded_fraction"] = 0.0 if np.linalg.det(A[:3, :3]) > 0 else 1.0
        with torch.no_grad():
            warped = warp_moving(mov, A, fix, u, dev)
        stats["metric_after"] = after
        stats["seconds"] = round(time.perf_counter() - t0, 3)
        out = Image(warped.astype(np.float32), fix.affine, dict(mov.meta))
        return Result(chain=chain, inverse=inverse, warped=out, stats=stats, log_jacobian=log_jac)
    finally:
        deterministic_algorithms(was_det)

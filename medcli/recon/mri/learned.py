"""The learned reconstruction (``--method learned``): an unrolled network, and its training data.

:class:`UnrolledNet` refines a TV-regularised SENSE result (the ``cs`` method's
algorithm and lambda, with the model's own ``cs_iterations``) by a fixed number
of unrolled cascades, each with its own small CNN R_t and step eta_t (ESPIRiT
maps as MoDL uses them instead of a learned sensitivity network):

    x_0 = CS-TV(y),   g_t = A^H (A x_t - y),   x_{t+1} = x_t - eta_t g_t + u_t R_t(|x_t|, conj(u_t) g_t)

with u_t = x_t / |x_t| (VarNet-style gradient data consistency). The CNN sees
only phase-free features and its output is turned back by u_t, so a global or
smooth phase (the arbitrary phase of the ESPIRiT maps, the object's own)
changes nothing but the output's phase. Its last conv and every eta start at
zero: the untrained network returns its CS start exactly. The correction is
kept to the maps' support (the image is zero where no coil sees it, as cs).

The network's input is one packed real tensor so that the training engine
(:mod:`medcli.train.engine`) handles it like any image model: channels
[Re y_c, Im y_c, Re S_c, Im S_c] for every coil and the mask (and, in training,
the precomputed first iterate); coils that are all zero change nothing, so
batches with fewer coils are padded with them.

:func:`cs_training_pair` simulates that input exactly as run time makes it
(ESPIRiT maps estimated from the undersampled k-space, the CS-TV first iterate,
noisy data, calibration regions of realistic width) from axial slices of the
MNI T1, tissue-contrast renderings of its GM/WM/CSF maps and, optionally,
random ellipse phantoms. Slices ``HELD_OUT`` (and a margin) are never drawn:
the tests and the benchmark measure on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported only where a network runs (the CLI starts faster without it)
    import torch

    from medcli.recon.mri.formats import KSpace

#: Axial slices (third voxel axis of sample:t1) kept out of training, with a 5-slice margin on each side.
HELD_OUT = (95, 125)
TRAIN_MARGIN = 5
DEFAULT_MODEL = "recon-mri"


@lru_cache(maxsize=1)
def _slices_for_training() -> tuple[int, ...]:
    """Axial slices outside the held-out slab (and its margin) with at least 10 % of the plane in the head."""
    lo, hi = HELD_OUT[0] - TRAIN_MARGIN, HELD_OUT[1] + TRAIN_MARGIN
    t1 = _volumes()[0]
    return tuple(z for z in range(t1.shape[2]) if not lo <= z < hi and np.mean(t1[:, :, z] > 0.1) > 0.1)


def unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Packed (B, 4C+1, H, W) -> k (B, C, H, W) complex, maps (B, C, H, W) complex, mask (B, H, W).

    A packed tensor of 4C+3 channels also carries the first iterate (its last two channels, Re and Im):
    returned as a fourth item (None otherwise). Training data carry it precomputed (it is a fixed function
    of the data, no gradient flows through it); at run time the network computes it.
    """
    import torch

    first = None
    if (x.shape[1] - 3) % 4 == 0:
        first = torch.complex(x[:, -2], x[:, -1])
        x = x[:, :-2]
    c = (x.shape[1] - 1) // 4
    k = torch.complex(x[:, :c], x[:, c : 2 * c])
    s = torch.complex(x[:, 2 * c : 3 * c], x[:, 3 * c : 4 * c])
    return k, s, x[:, 4 * c], first


def _build() -> type:
    """The torch module classes (defined here so that importing this module does not import torch)."""
    import torch
    from torch import nn

    from medcli.recon.mri.methods import adjoint, normal_op

    class Regulariser(nn.Module):
        """A CNN on phase-free features of the image, conv-LeakyReLU layers, last conv to 2 channels (zero init)."""

        def __init__(self, features: int, layers: int):
            super().__init__()
            mods: list[nn.Module] = []
            ch = 3  # |x|, Re and Im of u* g
            for _ in range(layers - 1):
                mods += [nn.Conv2d(ch, features, 3, padding=1), nn.LeakyReLU(0.1)]
                ch = features
            last = nn.Conv2d(ch, 2, 3, padding=1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.net = nn.Sequential(*mods, last)

        def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            """Correction of ``x`` from |x| and u* g (g the data-consistency gradient), turned back by u = x/|x|."""
            mag = x.abs()
            u = torch.where(mag > 1e-6, x / mag.clamp_min(1e-6), torch.ones_like(x))
            rg = u.conj() * g
            d = self.net(torch.stack([mag, rg.real, rg.imag], 1))
            return u * torch.complex(d[:, 0], d[:, 1])

    class UnrolledNet(nn.Module):
        """The CS-TV start and ``cascades`` refining cascades (see the module docstring).

        The start is ``cs_iterations`` primal-dual steps at lambda = ``cs_lambda`` x max |A^H y|: exactly
        what ``medcli recon -m cs --reg tv --iterations N`` returns (fewer than its default 50 leave the
        cascades time to run within the cs time).
        """

        def __init__(self, cascades: int = 3, features: int = 16, layers: int = 5, cs_iterations: int = 50,
                     cs_lambda: float = 0.008, dc: str = "refine"):
            super().__init__()
            if dc != "refine":  # versions 1-2 (CG data consistency) are gone with their weights
                raise ValueError(f"dc {dc!r} is not supported (only 'refine', recon-mri 3.0 and later)")
            self.cascades = nn.ModuleList([Regulariser(features, layers) for _ in range(cascades)])
            self.steps = nn.Parameter(torch.zeros(cascades))
            self.cs_iterations, self.cs_lambda = cs_iterations, cs_lambda

        def first_iterate(self, k: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            """The CS-TV start (no gradient: a fixed function of the data)."""
            from medcli.recon.mri.methods import cs_tv

            with torch.no_grad():
                lam = self.cs_lambda * adjoint(k, maps, mask).abs().amax(dim=(-2, -1), keepdim=True)
                return cs_tv(k, maps, mask, lam, self.cs_iterations)

        def reconstruct(self, k: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor,
                        first: torch.Tensor | None = None) -> torch.Tensor:
            """Complex image (B, H, W) from k-space (B, C, H, W), maps and mask (B, H, W) (and the first iterate)."""
            aty = adjoint(k, maps, mask)
            x = self.first_iterate(k, maps, mask) if first is None else first
            support = (maps.abs().sum(1) > 0).to(x.dtype)
            aha = normal_op(maps, mask)  # A^H A with the FFT shifts folded (the solvers' operator)
            for eta, reg in zip(self.steps, self.cascades):
                g = aha(x) - aty
                x = x - eta * g + support * reg(x, g)
            return x

        def forward(self, packed: torch.Tensor) -> torch.Tensor:
            """Magnitude (B, 1, H, W) of the reconstruction of a packed input (see :func:`unpack`): what training scores."""
            k, maps, mask, first = unpack(packed)
            return self.reconstruct(k, maps, mask, first).abs()[:, None]

    return UnrolledNet


def UnrolledNet(**params: Any) -> torch.nn.Module:  # noqa: N802 - the architecture registry builds models by calling this
    """Build the :class:`UnrolledNet` torch module (torch imported only here)."""
    return _build()(**params)


# -- training data ----------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The MNI T1 (99th percentile of the head = 1) and its GM, WM and CSF maps (0-1), read once per process."""
    from medcli import io

    t1 = np.asarray(io.read("sample:t1").data, np.float32)
    gm = np.asarray(io.read("sample:gm").data, np.float32) / 255.0
    wm = np.asarray(io.read("sample:wm").data, np.float32) / 255.0
    csf = np.clip((t1 > 0) - gm - wm, 0, 1).astype(np.float32)
    return t1 / float(np.percentile(t1[t1 > 0], 99)), gm, wm, csf


def ellipse_phantom(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random piecewise-constant (size, size) object of ellipses, Shepp-Logan-like but never that phantom.

    An outer ellipse (the "head"), half the time with a bright rim (a "skull" up to 1.5 x brighter than
    the inside, the kind of object the 3.0 model darkened), and 3-12 inner ellipses of random size,
    orientation and signed intensity. Drawn on a 2x finer grid and averaged down, so edges carry partial
    volume as a continuous object's do. Maximum 1.
    """
    n = 2 * size
    y, x = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")

    def inside(cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
        return (u / a) ** 2 + (v / b) ** 2 <= 1

    a, b = rng.uniform(0.55, 0.95, size=2)
    cx, cy, angle = *rng.uniform(-0.05, 0.05, size=2), rng.uniform(0, np.pi)
    img = np.zeros((n, n))
    inner = rng.uniform(0.1, 0.8)
    if rng.uniform() < 0.5:  # a bright rim around the inside
        img[inside(cx, cy, a, b, angle)] = inner * rng.uniform(1.2, 1.5) if rng.uniform() < 0.7 else rng.uniform(0.2, 1.0)
        t = rng.uniform(0.85, 0.95)
        a, b = a * t, b * t
    img[inside(cx, cy, a, b, angle)] = inner
    for _ in range(int(rng.integers(3, 13))):
        r = rng.uniform(0, 0.8)
        phi = rng.uniform(0, 2 * np.pi)
        ea, eb = rng.uniform(0.02, 0.35, size=2)
        e = inside(cx + r * a * np.cos(phi), cy + r * b * np.sin(phi), ea, eb, rng.uniform(0, np.pi))
        img[e] += rng.uniform(-0.6, 0.6) * inner
    img = np.clip(img, 0, None).reshape(size, 2, size, 2).mean((1, 3))
    return (img / max(float(img.max()), 1e-6)).astype(np.float32)


def training_image(rng: np.random.Generator, size: int, phantoms: float = 0.0) -> np.ndarray:
    """A real (size, size) object to simulate k-space from.

    With probability ``phantoms`` an :func:`ellipse_phantom` (so that non-brain, piecewise-constant
    objects are not out of distribution); otherwise a random crop of an axial MNI T1 training slice
    (flipped, transposed), its intensities gamma-warped, or (30 % of those) its GM/WM/CSF maps rendered
    with random tissue intensities (another contrast).
    """
    if phantoms and rng.uniform() < phantoms:  # no draw at 0: the brain-only stream of 3.0 stays as it was
        return ellipse_phantom(rng, size)
    t1, gm, wm, csf = _volumes()
    z = int(rng.choice(_slices_for_training()))
    if rng.uniform() < 0.3:  # another contrast: random tissue intensities
        mu = rng.uniform(0.1, 1.0, size=3)
        img = mu[0] * gm[:, :, z] + mu[1] * wm[:, :, z] + mu[2] * csf[:, :, z]
    else:
        img = t1[:, :, z] ** rng.uniform(0.7, 1.4)
    img = np.clip(img, 0, None)
    if rng.uniform() < 0.5:
        img = img[::-1]
    if rng.uniform() < 0.5:
        img = img.T
    h, w = img.shape
    pad = max(size - h, size - w, 0)
    if pad:
        img = np.pad(img, pad // 2 + 1)
        h, w = img.shape
    for _ in range(20):  # a crop of mostly background has no scale to learn from: draw again
        i0, j0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop = img[i0 : i0 + size, j0 : j0 + size]
        if np.mean(crop > 0.1 * img.max()) > 0.25:
            break
    return np.ascontiguousarray(crop).astype(np.float32)


def cs_training_pair(rng: np.random.Generator, size: int = 128, max_coils: int = 10, coils: tuple[int, int] = (6, 10),
                     accel: tuple[float, float] = (3.0, 9.0), snr: tuple[float, float] = (20.0, 100.0),
                     acs_width: tuple[float, float] = (128.0, 256.0), cs_iterations: int = 50,
                     cs_lambda: float = 0.008, phantoms: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One training pair (packed input, target magnitude), made as run time makes the network's input.

    The object (:func:`training_image`, ``phantoms`` its share of ellipse phantoms) times smooth coil maps
    (random ring), with a random smooth phase (half the time), is Fourier transformed, undersampled by a
    1D random (60 %) or equispaced mask at R in ``accel`` whose fully sampled centre has fastMRI's 0.32 / R
    of a ``acs_width`` wide matrix (so the calibration region has the width a 4x / 8x scan of 128-256
    lines has: about 10-20 / 5-10 lines), and always corrupted by noise (SNR in ``snr``). The coil maps
    packed are ESPIRiT's, estimated from that undersampled k-space (as ``medcli recon`` does), not the
    true ones; the packed first iterate is the CS-TV image (``cs_iterations``, ``cs_lambda``: those of the
    model's params) the network starts from at run time. Target: the object's magnitude (what the
    benchmark's reference, the RSS of the fully sampled noiseless coil images, equals). Input and target
    are divided by :func:`input_scale`, as at run time.
    """
    import torch

    from medcli.recon.mri.espirit import espirit_maps
    from medcli.recon.mri.fft import fft2c
    from medcli.recon.mri.methods import adjoint, cs_tv
    from medcli.recon.mri.simulate import coil_maps, line_mask, smooth_phase

    img = training_image(rng, size, phantoms)
    nc = int(rng.integers(coils[0], coils[1] + 1))
    maps = coil_maps((size, size), nc, rng)
    obj = img.astype(np.complex64)
    if rng.uniform() < 0.5:
        obj = obj * np.exp(1j * smooth_phase((size, size), rng))
    r = float(rng.uniform(*accel))
    pattern = "random" if rng.uniform() < 0.6 else "equispaced"
    lines = max(int(round(rng.uniform(*acs_width) * 0.32 / r)), 4)
    m = line_mask(size, r, lines / size, pattern, rng)
    mask = np.broadcast_to(m[None, :], (size, size)).astype(np.float32)
    k = fft2c(maps * obj[None])
    fg = img > 0.1 * img.max()
    sigma = float(img[fg].mean()) / rng.uniform(*snr) if fg.any() else 0.0
    k = k + (rng.normal(scale=sigma / np.sqrt(2), size=k.shape) + 1j * rng.normal(scale=sigma / np.sqrt(2), size=k.shape))
    k = (k * mask[None]).astype(np.complex64)
    kt = torch.from_numpy(k)
    esp = espirit_maps(kt, mask > 0)
    scale = input_scale(k, esp.numpy(), mask)
    kt, mt = (kt / scale)[None], torch.from_numpy(mask)[None]
    with torch.no_grad():
        lam = cs_lambda * float(adjoint(kt, esp[None], mt).abs().max())
        first = cs_tv(kt, esp[None], mt, lam, cs_iterations)[0].numpy()
    kp = np.zeros((max_coils, size, size), np.complex64)
    sp = np.zeros((max_coils, size, size), np.complex64)
    kp[:nc], sp[:nc] = k / scale, esp.numpy()
    packed = np.concatenate([kp.real, kp.imag, sp.real, sp.imag, mask[None], first.real[None], first.imag[None]])
    return packed.astype(np.float32), (img / scale)[None].astype(np.float32)


@lru_cache(maxsize=1)
def _cs_bank(count: int, seed: int, settings: tuple) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pairs of :func:`cs_training_pair` drawn once per process (ESPIRiT + CS cost more than a step)."""
    from medcli.runtime import log

    rng = np.random.default_rng(seed)
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    dropped = 0
    while len(pairs) < count:
        pair = cs_training_pair(rng, **dict(settings))
        if _usable(*pair):
            pairs.append(pair)
        else:
            dropped += 1
    if dropped:
        log.warning(f"training bank: {dropped} degenerate pairs drawn again (no ESPIRiT maps, or not finite)")
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _usable(x: np.ndarray, y: np.ndarray) -> bool:
    """A packed pair run time would reconstruct: finite, with ESPIRiT maps on >= 1 % of the plane.

    Run time refuses data whose maps are (almost) empty (``methods.estimate_maps``), so such a pair
    never reaches the network there; in training its scale (a percentile of a zero image) is the
    1e-12 floor and the loss can overflow (recipes/recon_mri_v33.toml's first run: NaN at step 8; its rerun, with
    the one degenerate pair of that bank drawn again, trained).
    """
    c = (x.shape[0] - 3) // 4
    coverage = float(np.mean(np.abs(x[2 * c : 4 * c]).sum(0) > 0))
    return bool(np.isfinite(x).all() and np.isfinite(y).all() and coverage >= 0.01)


def cs_training_bank(rng: np.random.Generator, bank: int = 300, bank_seed: int = 1, **settings: Any) -> tuple[np.ndarray, np.ndarray]:
    """A pair of a bank of ``bank`` :func:`cs_training_pair` pairs, times a random global phase.

    The phase is an exact augmentation (k-space, first iterate and image all turn with it, the
    magnitude target does not). Since 3.0 the network is invariant to it by construction (its CNNs see
    phase-free features; tested), so it changes the loss only by rounding; it stays so that the
    recipes' draws (3.0, 4.0) remain reproducible.
    """
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in settings.items()))  # hashable
    xs, ys = _cs_bank(bank, bank_seed, frozen)
    i = int(rng.integers(len(xs)))
    x = xs[i].copy()
    c = (x.shape[0] - 3) // 4
    turn = np.exp(1j * rng.uniform(0, 2 * np.pi))
    for re, im in ((slice(0, c), slice(c, 2 * c)), (slice(-2, -1), slice(-1, None))):
        z = (x[re] + 1j * x[im]) * turn
        x[re], x[im] = z.real, z.imag
    return x, ys[i].copy()


def input_scale(k: np.ndarray, maps: np.ndarray, mask: np.ndarray) -> float:
    """The 99th percentile of |A^H y| (numpy): inputs are divided by it, outputs multiplied."""
    from medcli.recon.mri.fft import ifft2c

    x = np.abs((np.conj(maps) * ifft2c(k * mask[None])).sum(0))
    return max(float(np.percentile(x, 99)), 1e-12)


# -- run time -----------------------------------------------------------------------------------------


@dataclass
class Learned:
    """A loaded model and its spec, ready to reconstruct slices."""

    net: Any
    spec: dict[str, Any]
    provenance: dict[str, Any]

    def run(self, k: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Complex image (1, ro, pe) of one slice: k (1, C, ro, pe), maps alike, mask (1, ro, pe), on the model's device.

        The data are scaled as in training (:func:`input_scale`) and the image scaled back.
        """
        import torch

        scale = input_scale(k[0].cpu().numpy(), maps[0].cpu().numpy(), mask[0].cpu().numpy())
        with torch.inference_mode():
            x = self.net.reconstruct(k / scale, maps, mask)
        return x * scale


def is_line_mask(mask: np.ndarray) -> bool:
    """Every phase-encoding line of a (slices, ro, pe) mask fully sampled or not at all (1D Cartesian undersampling)."""
    return bool(np.all(mask == mask[:, :1, :]))


def load_if_fits(ks: KSpace, model: str | None, device: Any) -> tuple[Learned | None, str]:
    """The learned model when its training range covers the data, else ``(None, why)`` (the caller falls back to cs).

    Args:
        ks: The k-space to reconstruct (its mask, acceleration and coil count are checked).
        model: Hub name or model folder; None: the registered ``recon-mri``.
        device: torch device to put the network on.
    """
    import torch

    from medcli.engine.architectures import build
    from medcli.models import hub

    name = model or DEFAULT_MODEL
    try:
        spec, state = hub.load(name)
    except Exception as e:  # noqa: BLE001 - a missing or unreadable model is a fallback to cs, not a failure
        return None, f"model {name!r} could not be loaded: {e}"
    why = _misfit(ks, spec.get("input", {}))
    if why:
        return None, why
    net = build(spec)
    net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    net.eval().to(device)
    files = spec.get("files") or [{}]
    prov = {"Name": spec.get("name", name), "SHA256": spec.get("sha256") or files[0].get("sha256")}
    return Learned(net, spec, prov), ""


def _misfit(ks: KSpace, spec_input: dict[str, Any]) -> str:
    """Why the data lie outside the model's training range (mask kind, acceleration, coils), or "" when they fit."""
    lo, hi = spec_input.get("accelerations", [0, float("inf")])
    clo, chi = spec_input.get("coils", [1, 10**6])
    if not is_line_mask(ks.mask):
        return "the mask is not 1D Cartesian (the model was trained on line masks)"
    if not lo <= ks.acceleration <= hi:
        return f"acceleration {ks.acceleration:.2f} outside the model's training range {lo}-{hi}"
    if not clo <= ks.coils <= chi:
        return f"{ks.coils} coils outside the model's training range {clo}-{chi}"
    return ""

"""The learned reconstruction (``--method learned``): an unrolled network, and its training data.

:class:`UnrolledNet` refines the ``cs`` method's own result (TV-regularised
SENSE, the same iterations and lambda as ``medcli recon -m cs``) by a fixed
number of unrolled cascades, each with its own small CNN R_t and step eta_t
(ESPIRiT maps as MoDL uses them instead of a learned sensitivity network):

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

:func:`cs_training_pair` simulates that input from axial slices of the MNI T1
and tissue-contrast renderings of its GM/WM/CSF maps exactly as run time makes
it: ESPIRiT maps estimated from the undersampled k-space, the CS-TV first
iterate, noisy data, calibration regions of realistic width. Slices
``HELD_OUT`` (and a margin) are never drawn: the tests and the benchmark
measure on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

#: Axial slices (third voxel axis of sample:t1) kept out of training, with a 5-slice margin on each side.
HELD_OUT = (95, 125)
TRAIN_MARGIN = 5
DEFAULT_MODEL = "recon-mri"


def _slices_for_training() -> list[int]:
    """Axial slices outside the held-out slab (and its margin) with at least 10 % of the plane in the head."""
    lo, hi = HELD_OUT[0] - TRAIN_MARGIN, HELD_OUT[1] + TRAIN_MARGIN
    t1 = _volumes()[0]
    return [z for z in range(t1.shape[2]) if not lo <= z < hi and np.mean(t1[:, :, z] > 0.1) > 0.1]


def unpack(x):
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


def _build():
    import torch
    from torch import nn

    from medcli.recon.mri.methods import adjoint, normal

    class Regulariser(nn.Module):
        """A CNN on phase-free features of the image, conv-LeakyReLU layers, last conv to 2 channels (zero init)."""

        def __init__(self, features: int, layers: int):
            super().__init__()
            mods: list[nn.Module] = []
            ch = 3
            for _ in range(layers - 1):
                mods += [nn.Conv2d(ch, features, 3, padding=1), nn.LeakyReLU(0.1)]
                ch = features
            last = nn.Conv2d(ch, 2, 3, padding=1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.net = nn.Sequential(*mods, last)

        def forward(self, x, g):
            """Correction of ``x`` from |x| and u* g (g the data-consistency gradient), turned back by u = x/|x|."""
            mag = x.abs()
            u = torch.where(mag > 1e-6, x / mag.clamp_min(1e-6), torch.ones_like(x))
            rg = u.conj() * g
            d = self.net(torch.stack([mag, rg.real, rg.imag], 1))
            return u * torch.complex(d[:, 0], d[:, 1])

    class UnrolledNet(nn.Module):
        """The CS-TV start and ``cascades`` refining cascades (see the module docstring).

        ``cs_iterations`` primal-dual steps at lambda = ``cs_lambda`` x max |A^H y|: those of the ``cs``
        method, so that the start is exactly what ``medcli recon -m cs`` returns.
        """

        def __init__(self, cascades: int = 3, features: int = 16, layers: int = 5, cs_iterations: int = 50,
                     cs_lambda: float = 0.008, dc: str = "refine"):
            super().__init__()
            if dc != "refine":  # versions 1-2 (CG data consistency) are gone with their weights
                raise ValueError(f"dc {dc!r} is not supported (only 'refine', recon-mri 3.x)")
            self.cascades = nn.ModuleList([Regulariser(features, layers) for _ in range(cascades)])
            self.steps = nn.Parameter(torch.zeros(cascades))
            self.cs_iterations, self.cs_lambda = cs_iterations, cs_lambda

        def first_iterate(self, k, maps, mask):
            """The CS-TV start (no gradient: a fixed function of the data)."""
            from medcli.recon.mri.methods import cs_tv

            with torch.no_grad():
                lam = self.cs_lambda * adjoint(k, maps, mask).abs().amax(dim=(-2, -1), keepdim=True)
                return cs_tv(k, maps, mask, lam, self.cs_iterations)

        def reconstruct(self, k, maps, mask, first=None):
            """Complex image (B, H, W) from k-space (B, C, H, W), maps and mask (B, H, W) (and the first iterate)."""
            aty = adjoint(k, maps, mask)
            x = self.first_iterate(k, maps, mask) if first is None else first
            support = (maps.abs().sum(1) > 0).to(x.dtype)
            for eta, reg in zip(self.steps, self.cascades):
                g = normal(x, maps, mask) - aty
                x = x - eta * g + support * reg(x, g)
            return x

        def forward(self, packed):
            k, maps, mask, first = unpack(packed)
            return self.reconstruct(k, maps, mask, first).abs()[:, None]

    return UnrolledNet


def UnrolledNet(**params: Any):  # noqa: N802 - the architecture registry builds models by calling this
    """Build the :class:`UnrolledNet` torch module (torch imported only here)."""
    return _build()(**params)


# -- training data ----------------------------------------------------------------------------------

_CACHE: dict[str, Any] = {}


def _volumes():
    if "t1" not in _CACHE:
        from medcli import io

        t1 = np.asarray(io.read("sample:t1").data, np.float32)
        gm = np.asarray(io.read("sample:gm").data, np.float32) / 255.0
        wm = np.asarray(io.read("sample:wm").data, np.float32) / 255.0
        csf = np.clip((t1 > 0) - gm - wm, 0, 1).astype(np.float32)
        _CACHE["t1"] = (t1 / float(np.percentile(t1[t1 > 0], 99)), gm, wm, csf)
    return _CACHE["t1"]


def training_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A real (size, size) object: a random crop of an axial MNI T1 training slice (flipped, transposed),
    its intensities gamma-warped, or (30 %) its GM/WM/CSF maps rendered with random tissue intensities
    (another contrast)."""
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
                     acs_width: tuple[float, float] = (128.0, 256.0), cs_iterations: int = 20,
                     cs_lambda: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """One pair for the ``dc="cs"`` network, made as run time makes its input (what the 1.0 model lacked).

    The object (:func:`training_image`) times smooth coil maps (random ring), with a random smooth phase
    (half the time), is Fourier transformed, undersampled by a 1D random (60 %) or equispaced mask at R in
    ``accel`` whose fully sampled centre has fastMRI's 0.32 / R of a ``acs_width`` wide matrix (so the
    calibration region has the width a 4x / 8x scan of 128-256 lines has: about 10-20 / 5-10 lines),
    and always corrupted by noise (SNR in ``snr``). The coil maps packed are then ESPIRiT's, estimated from
    that undersampled k-space (as ``medcli recon`` does), not the true ones; and the packed first iterate is
    the CS-TV image the network starts from at run time. Target: the object's magnitude (what the
    benchmark's reference, the RSS of the fully sampled noiseless coil images, equals).
    """
    import torch

    from medcli.recon.mri.espirit import espirit_maps
    from medcli.recon.mri.fft import fft2c
    from medcli.recon.mri.methods import adjoint, cs_tv
    from medcli.recon.mri.simulate import coil_maps, line_mask, smooth_phase

    img = training_image(rng, size)
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
    rng = np.random.default_rng(seed)
    pairs = [cs_training_pair(rng, **dict(settings)) for _ in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def cs_training_bank(rng: np.random.Generator, bank: int = 300, bank_seed: int = 1, **settings: Any) -> tuple[np.ndarray, np.ndarray]:
    """A pair of a bank of ``bank`` :func:`cs_training_pair` pairs, times a random global phase.

    The phase is an exact augmentation (k-space, first iterate and image all turn with it, the
    magnitude target does not) that the CNN, acting on (Re, Im), must learn to be indifferent to.
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

    def run(self, k, maps, mask):
        """Complex image (1, ro, pe) of one slice (torch tensors on the model's device)."""
        import torch

        scale = input_scale(k[0].cpu().numpy(), maps[0].cpu().numpy(), mask[0].cpu().numpy())
        with torch.inference_mode():
            x = self.net.reconstruct(k / scale, maps, mask)
        return x * scale


def is_line_mask(mask: np.ndarray) -> bool:
    """Every phase-encoding line fully sampled or not at all (1D Cartesian undersampling)."""
    return bool(np.all(mask == mask[:, :1, :]))


def load_if_fits(ks, model: str | None, device) -> tuple[Learned | None, str]:
    """The model when its training range covers the data (else None and why)."""
    from medcli.models import hub

    name = model or DEFAULT_MODEL
    try:
        spec = hub.spec(name) if model is None else None
    except Exception as e:  # noqa: BLE001 - no registry entry: no learned model
        return None, f"model {name!r} unavailable: {e}"
    rng = (spec or {}).get("input", {}) if spec else {}
    if spec is not None:
        why = _misfit(ks, rng)
        if why:
            return None, why
    from medcli.engine.architectures import build

    try:
        spec, state = hub.load(name)
    except Exception as e:  # noqa: BLE001 - missing weights are a fallback, not a failure
        return None, f"model {name!r} could not be loaded: {e}"
    why = _misfit(ks, spec.get("input", {}))
    if why:
        return None, why
    import torch

    net = build(spec)
    net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    net.eval().to(device)
    prov = {"Name": spec.get("name", name), "SHA256": spec.get("sha256") or _sha(spec)}
    return Learned(net, spec, prov), ""


def _sha(spec: dict[str, Any]) -> str | None:
    files = spec.get("files") or []
    return files[0].get("sha256") if files else None


def _misfit(ks, spec_input: dict[str, Any]) -> str:
    lo, hi = spec_input.get("accelerations", [0, float("inf")])
    clo, chi = spec_input.get("coils", [1, 10**6])
    r = ks.acceleration
    if not is_line_mask(ks.mask):
        return "the mask is not 1D Cartesian (the model was trained on line masks)"
    if not lo <= r <= hi:
        return f"acceleration {r:.2f} outside the model's training range {lo}-{hi}"
    if not clo <= ks.coils <= chi:
        return f"{ks.coils} coils outside the model's training range {clo}-{chi}"
    return ""

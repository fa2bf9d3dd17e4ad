"""The learned reconstruction (``--method learned``): an unrolled network, and its training data.

:class:`UnrolledNet` alternates, for a fixed number of cascades, a gradient
step on data consistency with a small residual CNN on the complex image (two
channels), each cascade with its own weights and step size (VarNet-style, with
ESPIRiT maps as MoDL uses them instead of a learned sensitivity network):

    x_{t+1} = x_t - eta_t A^H (A x_t - y) + CNN_t(x_t),   x_0 = A^H y

The network's input is one packed real tensor so that the training engine
(:mod:`medcli.train.engine`) handles it like any image model: channels
[Re y_c, Im y_c, Re S_c, Im S_c] for every coil and the mask; coils that are
all zero change nothing, so batches with fewer coils are padded with them.

:func:`training_pair` simulates that input from axial slices of the MNI T1
(random crops, flips, gamma, tissue-contrast mixtures, random smooth phase,
4-12 coils at random positions, 1D random or equispaced masks at 3-9x with
fastMRI's centre fraction 0.32 / R, noise at random SNR). Slices
``HELD_OUT`` (and a margin) are never drawn: the tests and the benchmark
measure on them.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """Packed (B, 4C+1, H, W) -> k (B, C, H, W) complex, maps (B, C, H, W) complex, mask (B, H, W)."""
    import torch

    c = (x.shape[1] - 1) // 4
    k = torch.complex(x[:, :c], x[:, c : 2 * c])
    s = torch.complex(x[:, 2 * c : 3 * c], x[:, 3 * c : 4 * c])
    return k, s, x[:, 4 * c]


def pack(k, maps, mask):
    import torch

    return torch.cat([k.real, k.imag, maps.real, maps.imag, mask[:, None]], 1)


def _build():
    import torch
    from torch import nn

    from medcli.recon.mri.methods import adjoint, normal

    class Regulariser(nn.Module):
        """A residual CNN on (real, imag): conv-ReLU layers, last conv back to 2 channels (zero init)."""

        def __init__(self, features: int, layers: int):
            super().__init__()
            mods: list[nn.Module] = []
            ch = 2
            for _ in range(layers - 1):
                mods += [nn.Conv2d(ch, features, 3, padding=1), nn.LeakyReLU(0.1)]
                ch = features
            last = nn.Conv2d(ch, 2, 3, padding=1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.net = nn.Sequential(*mods, last)

        def forward(self, x):
            z = torch.stack([x.real, x.imag], 1)
            d = self.net(z)
            return torch.complex(d[:, 0], d[:, 1])

    class UnrolledNet(nn.Module):
        """Unrolled data consistency + CNN regulariser (see the module docstring).

        ``dc="gradient"``: x <- x - eta (A^H A x - A^H y) + CNN(x) (VarNet-style).
        ``dc="cg"``: MoDL: start from CG-SENSE (``cg_init`` iterations), then per cascade
        z = x + CNN(x) and x = argmin ||A x - y||^2 + mu ||x - z||^2 by ``cg_iterations`` of CG
        (exact data consistency; the aliasing of 1D undersampling is unfolded by the coils, which
        a few gradient steps cannot do). ``steps`` holds eta or mu per cascade.
        """

        def __init__(self, cascades: int = 6, features: int = 24, layers: int = 4, dc: str = "gradient",
                     cg_iterations: int = 6, cg_init: int = 10):
            super().__init__()
            self.cascades = nn.ModuleList([Regulariser(features, layers) for _ in range(cascades)])
            self.steps = nn.Parameter(torch.full((cascades,), 0.5))
            self.dc, self.cg_iterations, self.cg_init = dc, cg_iterations, cg_init

        def reconstruct(self, k, maps, mask):
            """Complex image (B, H, W) from k-space (B, C, H, W), maps and mask (B, H, W)."""
            from medcli.recon.mri.methods import conjugate_gradient

            aty = adjoint(k, maps, mask)
            if self.dc == "gradient":
                x = aty
                for eta, reg in zip(self.steps, self.cascades):
                    x = x - eta * (normal(x, maps, mask) - aty) + reg(x)
                return x
            x = conjugate_gradient(lambda v: normal(v, maps, mask), aty, aty, self.cg_init)
            for mu_raw, reg in zip(self.steps, self.cascades):
                mu = mu_raw.abs() + 0.05
                z = x + reg(x)
                x = conjugate_gradient(lambda v: normal(v, maps, mask) + mu * v, aty + mu * z, z, self.cg_iterations)
            return x

        def forward(self, packed):
            return self.reconstruct(*unpack(packed)).abs()[:, None]

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


def support(image: np.ndarray) -> np.ndarray:
    """Where ESPIRiT finds signal: the object (above 5 % of its maximum), holes filled, dilated 4 pixels."""
    from scipy import ndimage

    obj = np.abs(image) > 0.05 * np.abs(image).max()
    obj = ndimage.binary_fill_holes(obj)
    return ndimage.binary_dilation(obj, iterations=4)


def training_pair(rng: np.random.Generator, size: int = 112, max_coils: int = 12, coils: tuple[int, int] = (4, 12),
                  accel: tuple[float, float] = (3.0, 9.0), snr: tuple[float, float] = (15.0, 80.0),
                  held_out: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One (packed input, target magnitude) pair; see the module docstring.

    ``held_out=True`` draws from the held-out slices instead (validation only).
    """
    from medcli.recon.mri.simulate import coil_maps, line_mask, smooth_phase
    from medcli.recon.mri.fft import fft2c

    t1, gm, wm, csf = _volumes()
    zs = list(range(*HELD_OUT)) if held_out else _slices_for_training()
    z = int(rng.choice(zs))
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
    img = np.ascontiguousarray(crop).astype(np.float32)
    nc = int(rng.integers(coils[0], coils[1] + 1))
    maps = coil_maps((size, size), nc, rng)
    obj = img.astype(np.complex64)
    if rng.uniform() < 0.5:
        obj = obj * np.exp(1j * smooth_phase((size, size), rng))
    r = float(rng.uniform(*accel))
    pattern = "random" if rng.uniform() < 0.6 else "equispaced"
    m = line_mask(size, r, 0.32 / r, pattern, rng)
    mask = np.broadcast_to(m[None, :], (size, size)).astype(np.float32)
    k = fft2c(maps * obj[None])
    if rng.uniform() < 0.7:
        fg = img > 0.1 * img.max()
        sigma = float(img[fg].mean()) / rng.uniform(*snr) if fg.any() else 0.0
        k = k + (rng.normal(scale=sigma / np.sqrt(2), size=k.shape) + 1j * rng.normal(scale=sigma / np.sqrt(2), size=k.shape))
    k = (k * mask[None]).astype(np.complex64)
    maps = maps * support(img)[None]
    scale = input_scale(k, maps, mask)
    kp = np.zeros((max_coils, size, size), np.complex64)
    sp = np.zeros((max_coils, size, size), np.complex64)
    kp[:nc], sp[:nc] = k / scale, maps
    packed = np.concatenate([kp.real, kp.imag, sp.real, sp.imag, mask[None]]).astype(np.float32)
    return packed, (img / scale)[None].astype(np.float32)


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

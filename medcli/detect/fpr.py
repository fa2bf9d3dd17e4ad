"""Second stage of the learned detector: false-positive reduction on small multi-scale patches.

The classic two-stage design of computer-aided detection (as the LUNA16 systems,
Setio et al. 2017): the first stage (the dense 2 mm heatmap of
:mod:`medcli.detect.learned`) proposes many candidates with high recall, and a
second, small 3D classifier looks at each candidate closely and re-scores it.
The first stage ranks lesions of 6 mm and more below its strongest false peaks
(vessels, sulci, noise); a classifier that sees each candidate at 1 mm, with the
context of a coarser view, tells them apart better than a dense map can afford to.

Candidates (:func:`candidates`): the first stage's heatmap peaks above a low
floor, and the strongest fine-scale blobs of the image (a difference of
Gaussians at 1-1.6 mm, both polarities: the small lesions the 2 mm heatmap is
blind to), merged within 3 mm.

Patches (:meth:`PatchSource.patches`): ``P^3`` samples around each candidate
along the image's own voxel axes at :data:`SCALES_MM` (1 mm: the lesion itself;
2 mm and 4 mm: its surroundings, up to 96 mm for the largest lesions), each
anti-aliased from the image whatever its grid, the normalised image and the
search mask of each scale as channels, and the first stage's heatmap at 2 mm.

The network (:class:`FprNet3D`): three strided levels and a global pooling to a
*correction* of the first stage's logit at the candidate (the heatmap channel's
centre): it starts as the first stage's ranking (its last layer is zero at
initialisation) and learns what the dense map gets wrong, which a CPU budget
can teach far sooner than a classifier from scratch (tried first: after 164
steps it ranked candidates worse than the first stage alone). Its probability
is the finding's new score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medcli.detect.findings import Finding, same_lesion, sphere_box
from medcli.detect.log import spacing_of

#: Patch side (samples) and the sample spacing (mm) of each of its scales.
PATCH = 24
SCALES_MM = (1.0, 2.0, 4.0)
#: Fine-scale candidate blobs: Gaussian sigmas (mm) of the difference, how many per scan, and the
#: merge distance (mm) below which a fine blob is the first stage's candidate already.
FINE_SIGMAS_MM = (1.0, 1.6)
FINE_MAX = 40
MERGE_MM = 3.0
#: First-stage candidates: heatmap floor and count (high recall: the second stage sorts them out).
STAGE1_FLOOR = 0.03
STAGE1_MAX = 60


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(cout),
                         nn.LeakyReLU(0.1, inplace=True))


class FprNet3D(nn.Module):
    """Patch classifier: (N, C, P, P, P) multi-scale patches -> (N, 1) lesion logits.

    The last channel is the first stage's heatmap (probabilities, 2 mm samples): the output is its logit
    at the patch centre plus the network's correction.

    Args:
        in_channels: Image and mask per scale, then the heatmap.
        widths: Channels at P, P/2, P/4, P/8.
    """

    def __init__(self, in_channels: int = 2 * len(SCALES_MM) + 1, widths: tuple[int, ...] = (16, 24, 48, 64)):
        super().__init__()
        w = list(widths)
        layers = [_block(in_channels, w[0], 1)]
        for i in range(1, len(w)):
            layers += [_block(w[i - 1], w[i], 2), _block(w[i], w[i], 1)]
        self.features = nn.Sequential(*layers)
        # Mean and max pooling: a small lesion is a few strong voxels, a large one a broad response.
        self.head = nn.Sequential(nn.Linear(2 * w[-1], 32), nn.LeakyReLU(0.1, inplace=True), nn.Linear(32, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        c = x.shape[-1] // 2
        # The heatmap at the centre: the mean of the 2x2x2 middle samples (P is even: none lies on it).
        p = x[:, -1, c - 1:c + 1, c - 1:c + 1, c - 1:c + 1].mean((1, 2, 3)).clamp(1e-4, 1 - 1e-4)
        prior = torch.log(p / (1 - p))[:, None]
        return prior + self.head(torch.cat([f.mean((2, 3, 4)), f.amax((2, 3, 4))], 1))


class PatchSource:
    """Normalised image (and mask) of one scan, pre-smoothed per scale, to cut candidate patches from.

    Args:
        x: Normalised image (:func:`medcli.detect.log.normalise`) on its own grid.
        mask: Search mask on the same grid.
        affine: Voxel-to-world matrix.
        heat: The first stage's heatmap (probabilities) on its own grid, and that grid's affine.
    """

    def __init__(self, x: np.ndarray, mask: np.ndarray, affine: np.ndarray, heat: tuple[np.ndarray, np.ndarray]):
        from scipy import ndimage

        self.heat = np.asarray(heat[0], np.float32)
        # Image voxel -> heatmap voxel.
        self.to_heat = np.linalg.inv(np.asarray(heat[1], float)) @ np.asarray(affine, float)
        self.affine = np.asarray(affine, float)
        self.inv = np.linalg.inv(self.affine)
        self.sp = spacing_of(self.affine)
        self.levels = []
        m = mask.astype(np.float32)
        for s in SCALES_MM:
            # Anti-aliasing: a Gaussian of the sample spacing's footprint, where it is coarser than the voxel.
            sig = np.sqrt(np.maximum((s / self.sp) ** 2 - 1.0, 0.0)) * 0.4246
            if np.any(sig > 0.05):
                self.levels.append((ndimage.gaussian_filter(x, sig, mode="nearest"), ndimage.gaussian_filter(m, sig, mode="nearest")))
            else:
                self.levels.append((x, m))

    def patches(self, centres_ras: np.ndarray, patch: int = PATCH) -> np.ndarray:
        """(N, 2 * scales + 1, P, P, P) patches around world centres, along the image's voxel axes."""
        from scipy import ndimage

        centres = np.atleast_2d(np.asarray(centres_ras, float))
        out = np.zeros((len(centres), 2 * len(SCALES_MM) + 1, patch, patch, patch), np.float32)
        off = np.arange(patch, dtype=np.float64) - (patch - 1) / 2.0
        for n, c in enumerate(centres):
            v = self.inv[:3, :3] @ c + self.inv[:3, 3]
            for k, (s, (img, m)) in enumerate(zip(SCALES_MM, self.levels)):
                axes = [v[a] + off * s / self.sp[a] for a in range(3)]
                grid = np.meshgrid(*axes, indexing="ij")
                out[n, 2 * k] = ndimage.map_coordinates(img, grid, order=1, mode="nearest")
                out[n, 2 * k + 1] = ndimage.map_coordinates(m, grid, order=1, mode="constant", cval=0.0)
                if s == 2.0:
                    g = np.stack(grid).reshape(3, -1)
                    hv = (self.to_heat[:3, :3] @ g + self.to_heat[:3, 3:4]).reshape((3,) + grid[0].shape)
                    out[n, -1] = ndimage.map_coordinates(self.heat, hv, order=1, mode="nearest")
        return out


def fine_blobs(x: np.ndarray, mask: np.ndarray, affine: np.ndarray, n_max: int = FINE_MAX) -> list[Finding]:
    """The strongest small blobs (either polarity) of a normalised image inside the mask, strongest first.

    A difference of Gaussians at :data:`FINE_SIGMAS_MM` (the scale of 2-5 mm lesions), its local
    extrema of absolute value in the mask; score the absolute response, diameter 2 sqrt(3) sigma.
    """
    from scipy import ndimage

    sp = spacing_of(affine)
    s0, s1 = FINE_SIGMAS_MM
    g0 = ndimage.gaussian_filter(x, np.maximum(s0 / sp, 0.3), mode="nearest")
    g1 = ndimage.gaussian_filter(x, np.maximum(s1 / sp, 0.5), mode="nearest")
    r = np.abs(g0 - g1) * mask
    peak = (r > 0) & (r >= ndimage.maximum_filter(r, size=3, mode="constant"))
    idx = np.argwhere(peak)
    if not len(idx):
        return []
    vals = r[tuple(idx.T)]
    order = np.argsort(-vals, kind="stable")[:n_max]
    d = 2 * np.sqrt(3.0) * np.sqrt(s0 * s1)
    out = []
    for i in order:
        ijk = idx[i].astype(float)
        c = affine[:3, :3] @ ijk + affine[:3, 3]
        out.append(Finding(c, sphere_box(c, d), d, float(vals[i]), np.pi / 6 * d**3 / 1000.0, "lesion", ijk))
    return out


def candidates(stage1: list[Finding], fine: list[Finding]) -> list[Finding]:
    """The first stage's findings, then each fine blob farther than :data:`MERGE_MM` from all of them."""
    out = list(stage1)
    cs = np.array([f.center_ras for f in stage1]).reshape(-1, 3)
    for f in fine:
        if not len(cs) or np.min(np.linalg.norm(cs - f.center_ras, axis=1)) > MERGE_MM:
            out.append(f)
            cs = np.vstack([cs, f.center_ras])
    return out


def classify(model: nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Lesion probabilities of patches (N, C, P, P, P)."""
    probs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            probs.append(torch.sigmoid(model(torch.from_numpy(x[i:i + batch]))[:, 0]).numpy())
    return np.concatenate(probs) if probs else np.zeros(0, np.float32)


def rescore(model: nn.Module, source: PatchSource, found: list[Finding], floor: float = 0.0,
            max_findings: int | None = None, min_diameter: float = 0.0) -> list[Finding]:
    """Candidates re-scored by the classifier, suppressed (a weaker one within half the larger diameter of a
    stronger one is the same lesion), at least ``floor``, best first."""
    if not found:
        return []
    p = classify(model, source.patches(np.array([f.center_ras for f in found])))
    out: list[Finding] = []
    for i in np.argsort(-p, kind="stable"):
        f = found[int(i)]
        if p[i] < floor or f.diameter_mm < min_diameter:
            continue
        if same_lesion(f.center_ras, f.diameter_mm, ((g.center_ras, g.diameter_mm) for g in out)):
            continue
        f.score = float(p[i])
        out.append(f)
        if max_findings is not None and len(out) >= max_findings:
            break
    return out


class Rescorer:
    """A trained second-stage model from the hub (name or folder)."""

    def __init__(self, model: str):
        from medcli.cli.runtime import configure_torch
        from medcli.engine.architectures import build
        from medcli.models import hub

        configure_torch()
        self.spec, state = hub.load(model)
        self.net = build(self.spec)
        self.net.load_state_dict(state)
        self.net.eval()
        self.name = str(self.spec.get("name", model))
        files: list[dict[str, Any]] = self.spec.get("files") or [{}]
        self.sha256 = str(self.spec.get("sha256") or files[0].get("sha256", ""))

"""The learned method: an affine start, then a matching network on a patch around each landmark.

1. **Affine start**: the subject is registered affinely onto the set's template
   (:func:`medcli.register.methods.register`, ``kind="affine"``, a short schedule:
   :data:`medcli.landmarks.atlas.AFFINE` with a brain mask, :data:`AFFINE_NO_MASK`
   without; the network corrects what it leaves). This gives, for each
   template landmark ``p``, a map from template millimetres to the subject.
2. **Patches in the template's frame**: for each landmark a cube of
   :data:`PATCH` ^3 voxels of :data:`PATCH_MM` mm centred on ``p`` is sampled
   from the *subject* through that affine map (trilinear). The patch therefore
   looks like the template around ``p``, up to the residual (non-linear) shape
   difference and the affine's error: a few millimetres.
3. **Learned matching** (:class:`MatchNet`, one network for every landmark): the
   subject's patch and the template's patch around ``p`` go through small
   convolutional feature extractors; the template's central features are
   correlated with the subject's at every shift within :data:`SEARCH` voxels,
   giving a heatmap over shifts whose soft-argmax (the expected shift under its
   softmax) is the offset ``o`` of the landmark from ``p`` in template
   millimetres. The subject point is the affine map of ``p + o``
   (:data:`PASSES` rounds).

Each landmark's confidence is the share of the heatmap's mass within
:data:`CONFIDENCE_RADIUS_MM` of the soft-argmax (a concentrated, single peak
gives 1; a spread one gives little). Like the atlas method's, it is a measure of
agreement, not a calibrated probability.

The network is trained with ``medcli train recipes/landmarks.toml``
(:mod:`medcli.train.landmarks`) on the template and its landmarks under random
transforms and domain-randomised contrasts; it is shipped through the hub as
``landmarks-afids``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from medcli.errors import InputError
from medcli.image import Image
from medcli.landmarks.atlas import (
    AFFINE,
    Detection,
    check_head,
    check_image,
    check_tissue,
    found,
    subject_mask,
    warped_mask,
)
from medcli.landmarks.sets import LandmarkSet

#: The hub name of the AFIDs heatmap model.
MODEL = "landmarks-afids"
#: Side of a patch in voxels, and their size (mm): a 30 mm cube.
PATCH = 20
PATCH_MM = 1.5
#: The affine start on a skull-stripped image (no brain mask): one 4 mm level. :data:`AFFINE`'s 2 mm level (used with a
#: brain mask, where it took the T2 skull-on 3 mm-slice head from 1.56 to 1.02 mm) gains nothing there (T1, T2-like,
#: 4 mm slices, PD-like: 0.65/0.64/0.59/1.25 vs 0.65/0.69/0.59/1.14 mm) and left the flat PD-like case's head check at
#: |r| 0.295, under its 0.3 threshold.
AFFINE_NO_MASK: dict[str, Any] = {"affine_levels": ((4.0, 60),), "affine_samples": 20000}
#: Rounds of the network (each re-centres the patch on the previous answer); measured on the benchmark cases:
#: one pass 0.61/0.69/0.57 mm (T1/T2-like/4 mm), two 0.73/0.92/0.73 (the answer drifts), affine alone 0.76/0.78/0.64.
PASSES = 1
CONFIDENCE_RADIUS_MM = 3.0


def patch_offsets(patch: int = PATCH, spacing: float = PATCH_MM) -> np.ndarray:
    """(P^3, 3) offsets (mm) of a patch's voxel centres from its centre, axis order x, y, z (C order)."""
    r = (np.arange(patch, dtype=np.float64) - (patch - 1) / 2.0) * spacing
    g = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1)
    return g.reshape(-1, 3)


def standardise(x):
    """Each channel of each patch (N, C, P, P, P) to zero mean and unit standard deviation (contrast and bias scale drop out)."""
    dims = tuple(range(2, x.ndim))
    m = x.mean(dim=dims, keepdim=True)
    s = x.std(dim=dims, keepdim=True)
    return (x - m) / (s + 1e-3)


#: Largest shift (voxels of the patch) the matching searches: +-7.5 mm; the template's crop is P - 2 SEARCH.
SEARCH = 5


def heatmap_offsets(search: int = SEARCH, spacing: float = PATCH_MM) -> np.ndarray:
    """(S^3, 3) shifts (mm) of the correlation heatmap's cells, S = 2 search + 1, C order."""
    return patch_offsets(2 * search + 1, spacing)


def _build_net():
    import torch
    from torch import nn

    class Extractor(nn.Module):
        """Features = the standardised intensity in channel 0 + a learned residual (zero at initialisation).

        Starting from the intensity itself makes the untrained network a plain normalised cross-correlation
        (block matching) of subject and template; training only has to learn what improves on it (other
        contrasts, thick slices, noise), which it does in far fewer steps than from random features.
        """

        def __init__(self, cin: int, c: int):
            super().__init__()
            self.net = nn.Sequential(nn.Conv3d(cin, c, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv3d(c, c, 3, padding=1), nn.LeakyReLU(0.1),
                                     nn.Conv3d(c, c, 3, padding=1))
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)
            self.c = c

        def forward(self, x):
            pad = torch.zeros((x.shape[0], self.c - 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
            return self.net(x) + torch.cat([x[:, :1], pad], 1)

    def extractor(cin, c):
        return Extractor(cin, c)

    class MatchNet(nn.Module):
        """Learned local matching: patches (N, 2, P, P, P) -> heatmap logits (N, S, S, S) over shifts.

        Channel 0 is the subject's patch, channel 1 the template's patch around the same landmark. Two small
        convolutional feature extractors (one per side, so that the subject's may learn any contrast's
        mapping onto the template's T1 features) turn them into ``features`` channels; the template's
        central crop (P - 2 SEARCH voxels) is correlated, as a normalised cross-correlation of the feature
        vectors, with the subject's features at every shift within SEARCH voxels; a learned gain turns the
        correlations into logits.

        Args:
            features: Feature channels.
            search: Largest shift in voxels.
        """

        def __init__(self, features: int = 8, search: int = SEARCH):
            super().__init__()
            self.search = int(search)
            self.f_subject = extractor(1, int(features))
            self.f_template = extractor(1, int(features))
            self.gain = nn.Parameter(torch.tensor(10.0))

        def forward(self, x):
            x = standardise(x)
            n = x.shape[0]
            # Polarity: a subject whose patch anti-correlates with the template's (T2, PD: CSF bright) is flipped,
            # so that the intensity path of the features matches in every contrast from the start.
            sign = torch.where((x[:, :1] * x[:, 1:2]).mean(dim=(1, 2, 3, 4), keepdim=True) < 0, -1.0, 1.0)
            fs = self.f_subject(x[:, :1] * sign)
            ft = self.f_template(x[:, 1:2])
            s = self.search
            k = ft[:, :, s:-s, s:-s, s:-s]
            k = k - k.mean(dim=(1, 2, 3, 4), keepdim=True)
            k = k / (k.pow(2).sum(dim=(1, 2, 3, 4), keepdim=True).sqrt() + 1e-6)
            c = fs.shape[1]
            fs_c = fs - fs.mean(dim=(1, 2, 3, 4), keepdim=True)
            num = torch.nn.functional.conv3d(fs_c.reshape(1, n * c, *fs.shape[2:]), k, groups=n)[0]
            ones = torch.ones((1, 1) + tuple(k.shape[2:]), dtype=x.dtype, device=x.device)
            energy = torch.nn.functional.conv3d(fs_c.pow(2).sum(1, keepdim=True), ones)[:, 0]
            return self.gain * num / (energy.sqrt() + 1e-6)

    return MatchNet


def MatchNet(**params):
    """Build the landmark matching network (torch is imported only when a model is built)."""
    return _build_net()(**params)


def soft_argmax(logits, offsets):
    """Expected shift (N, 3) mm and the heatmap probabilities (N, S^3) of logits (N, S, S, S).

    Args:
        logits: (N, S, S, S) network output.
        offsets: (S^3, 3) tensor, the cells' shifts in mm.
    """
    import torch

    prob = torch.softmax(logits.reshape(logits.shape[0], -1), dim=1)
    return prob @ offsets, prob


def sample_patches(data: np.ndarray, affine: np.ndarray, to_subject: Callable[[np.ndarray], np.ndarray], centres: np.ndarray,
                   patch: int = PATCH, spacing: float = PATCH_MM) -> np.ndarray:
    """Patches (N, P, P, P) of the subject at template points ``centres + offsets``, carried by ``to_subject``."""
    from scipy import ndimage

    offs = patch_offsets(patch, spacing)
    pts = (centres[:, None, :] + offs[None]).reshape(-1, 3)
    ras = to_subject(pts)
    vox = np.linalg.solve(affine, np.c_[ras, np.ones(len(ras))].T)[:3]
    vals = ndimage.map_coordinates(data, vox, order=1, mode="constant", cval=0.0, prefilter=False)
    return vals.reshape(len(centres), patch, patch, patch).astype(np.float32)


def load_model(device: Any = "cpu"):
    """The hub's landmark model (weights checked by sha256) and its spec, in eval mode."""
    from medcli.models import hub

    spec, state = hub.load(MODEL)
    net = MatchNet(**spec.get("params", {}))
    net.load_state_dict(state)
    net.eval().to(device)
    return net, spec


def reference_patches(template: Image, points: np.ndarray) -> np.ndarray:
    """(N, P, P, P): the template around each of its landmarks (the network's second channel)."""
    return sample_patches(np.asarray(template.data, np.float32), template.affine, lambda x: x, np.asarray(points, np.float64))


def refine(net, data: np.ndarray, affine: np.ndarray, to_subject: Callable[[np.ndarray], np.ndarray], template_points: np.ndarray,
           reference: np.ndarray, passes: int = PASSES, device: Any = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Template-frame positions (N, 3) of the landmarks after ``passes`` rounds of the network, and confidences.

    ``reference``: :func:`reference_patches` of the template at ``template_points``.
    """
    import torch

    offs = torch.tensor(heatmap_offsets(), dtype=torch.float32, device=device)
    ref = torch.from_numpy(np.asarray(reference, np.float32))[:, None].to(device)
    pos = np.asarray(template_points, np.float64).copy()
    conf = np.zeros(len(pos))
    with torch.inference_mode():
        for _ in range(max(1, passes)):
            x = torch.from_numpy(sample_patches(data, affine, to_subject, pos))[:, None].to(device)
            o, prob = soft_argmax(net(torch.cat([x, ref], 1)), offs)
            near = (torch.cdist(o[:, None, :], offs[None])[:, 0] <= CONFIDENCE_RADIUS_MM).float()
            conf = (prob * near).sum(1).cpu().numpy()
            pos = pos + o.cpu().numpy().astype(np.float64)
    return pos, conf


def detect_learned(
    image: Image,
    lset: LandmarkSet,
    *,
    mask: np.ndarray | None = None,
    skull: str = "auto",
    template: Image | None = None,
    seed: int = 0,
    device: Any = "cpu",
    model: Any = None,
    reference: Image | None = None,
    log: Callable[[str], None] | None = None,
) -> Detection:
    """The landmarks of ``lset`` on ``image``: affine start, then the matching network's refinement.

    Args:
        image: A 3D head image (any MR contrast, skull on or off).
        lset: The landmark set; its points must be the ones the model was trained on.
        mask: Brain mask on the image's grid (the affine start uses it; no brain extraction then).
        skull: ``auto`` (recognise), ``on`` (extract the brain for the affine start) or ``off``.
        template: The set's template already read (2 mm is enough: the affine runs at 4 and 2 mm).
        seed: Seed of the affine stage's point samples.
        device: Torch device.
        model: ``(net, spec)`` from :func:`load_model` (loaded here when ``None``).
        reference: The set's template at its own (1 mm) grid, whose patches the network matches (read when ``None``).
        log: Callable taking progress lines.

    Returns:
        :class:`~medcli.landmarks.atlas.Detection`.
    """
    from medcli import io
    from medcli.register.methods import Options, register

    src = image.meta.get("source")
    image = check_image(image, src)
    net, spec = model if model is not None else load_model(device)
    n_model = int(spec.get("params", {}).get("landmarks", 32))
    if len(lset.points) != n_model or spec.get("input", {}).get("set", lset.name) != lset.name:
        raise InputError(f"--method learned knows the {spec.get('input', {}).get('set', 'afids')} set ({n_model} points), "
                         f"not {lset.name!r}: use --method atlas")
    mask, warnings = subject_mask(image, mask, skull, device, log)
    tmpl = template if template is not None else io.read(lset.template)
    opts = Options(**(AFFINE if mask is not None else AFFINE_NO_MASK))
    res = register(image, tmpl, kind="affine", moving_mask=mask, seed=seed, device=device, options=opts, log=log)
    t_data, w_data = np.asarray(tmpl.data, np.float32), np.asarray(res.warped.data, np.float32)
    w_mask = warped_mask(image, mask, res.chain, tmpl)
    eta = check_tissue(t_data, w_data, lset, src, w_mask, min(tmpl.spacing))
    rho = check_head(t_data, w_data, lset, src, w_mask)
    data = np.asarray(image.data, np.float32)
    ref = reference_patches(reference if reference is not None else io.read(lset.template), lset.points.ras)
    pos, conf = refine(net, data, image.affine, res.chain.transform_points, lset.points.ras, ref, device=device)
    pts = found(image, lset, res.chain.transform_points(pos), conf, warnings)
    stats = dict(res.stats, head_correlation=round(rho, 4), tissue_match=round(eta, 4), model=f"{spec.get('name', MODEL)} {spec.get('version', '')}".strip())
    return Detection(points=pts, warnings=warnings, stats=stats)

"""Applying transforms to images, label maps and points: the functions behind ``medcli register apply``.

Direction, once and for all. A registration of MOVING onto FIXED produces the
*pull* mapping ``fixed point -> moving point`` (ITK, ANTs, and
:mod:`medcli.register.transforms`): it is what resampling needs, since every
output voxel asks where to read the moving image.

* **Images and label maps** are resampled through the pull chain as given.
* **Points** placed on the moving image must land on the same anatomy in the
  fixed image, so they go through the *inverse* chain (the reason ANTs users
  pass ``invtransforms`` with ``whichtoinvert=[True, False]`` to
  ``apply_transforms_to_points``). medcli does this internally: an affine is
  inverted exactly; a displacement field uses the inverse warp written beside
  it (``PREFIX1InverseWarp.nii.gz`` of ANTs, ``PREFIX_inverse_warp.nii.gz`` of
  medcli) when there is one, as ANTs does, and otherwise is inverted at each
  point by the fixed-point iteration ``x <- y - u(x)`` (converges for every
  diffeomorphic field whose displacement gradient stays below 1).

``[T,1]`` in a transform list (and ``--invert`` for the whole list) takes the
inverse of T, as in ``antsApplyTransforms -t [T,1]``: the same command then
carries images and points in the other direction.

Example:
    >>> from medcli.register.transforms import AffineTransform
    >>> steps = [Step(AffineTransform.from_translation([5.0, 0.0, 0.0]))]
    >>> import numpy as np
    >>> points_to_fixed(steps, np.zeros((1, 3))).tolist()  # moving point -> fixed
    [[-5.0, 0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medcli.errors import InputError
from medcli.image import Image
from medcli.register.transforms import (
    AffineTransform,
    DisplacementField,
    Transform,
    TransformChain,
    _grid_points,
    sample_like_itk,
    warp_image,
)

IMAGE_INTERPOLATIONS = ("linear", "bspline", "lanczos", "nearest")
LABEL_INTERPOLATIONS = ("smooth", "linear", "nearest")


@dataclass
class Step:
    """One transform of a list, possibly used inverted (ANTs' ``[T,1]``)."""

    transform: Transform
    inverted: bool = False

    def pull(self) -> Transform:
        """The fixed -> moving mapping this step contributes to image resampling."""
        return self.transform.inverse() if self.inverted else self.transform

    def push(self, points: np.ndarray) -> np.ndarray:
        """Points carried the other way (moving -> fixed): the inverse of :meth:`pull`."""
        if self.inverted:
            return self.transform.transform_points(points)
        return invert_points(self.transform, points)


def parse_transform_arg(arg: str) -> tuple[str, bool]:
    """``T`` or ANTs' ``[T,1]`` / ``[T,0]`` -> ``(path, inverted)``."""
    text = arg.strip()
    if text.startswith("[") and text.endswith("]"):
        path, _, flag = text[1:-1].rpartition(",")
        if not path or flag.strip() not in ("0", "1"):
            raise InputError("write an inverted transform as [FILE,1] (ANTs syntax)", arg)
        return path.strip(), flag.strip() == "1"
    return text, False


def load_steps(args: Sequence[str], invert: bool = False) -> list[Step]:
    """Read transform files in ANTs ``-t`` order into steps (fixed -> moving application order).

    Args:
        args: Files, each optionally as ``[FILE,1]`` to use its inverse.
        invert: Invert the whole list (reverse it and flip each step).
    """
    from medcli.register.transform_io import read_transform

    steps: list[Step] = []
    for arg in args:
        path, inverted = parse_transform_arg(arg)
        chain = list(read_transform(path))
        # An inverted composite file is its elements inverted in reverse order.
        steps += [Step(t, True) for t in reversed(chain)] if inverted else [Step(t) for t in chain]
    if invert:
        steps = [Step(s.transform, not s.inverted) for s in reversed(steps)]
    return steps


def pull_chain(steps: Sequence[Step]) -> TransformChain:
    """The fixed -> moving chain that resamples images."""
    return TransformChain(s.pull() for s in steps)


def points_to_fixed(steps: Sequence[Step], points: np.ndarray) -> np.ndarray:
    """Carry moving-space points ``(N, 3)`` (RAS mm) to fixed space; NaN rows stay NaN."""
    p = np.atleast_2d(np.asarray(points, dtype=np.float64)).copy()
    ok = np.isfinite(p).all(axis=1)
    q = p[ok]
    for s in reversed(steps):
        q = s.push(q)
    p[ok] = q
    return p


def invert_points(t: Transform, points: np.ndarray, iterations: int = 100, tol: float = 1e-5) -> np.ndarray:
    """The points ``x`` with ``t(x) = y`` for each ``y`` in ``points`` (moving -> fixed)."""
    if isinstance(t, AffineTransform):
        return t.inverse().transform_points(points)
    if t.inverse_field is not None:
        return DisplacementField(t.inverse_field).transform_points(points)
    y = np.atleast_2d(np.asarray(points, dtype=np.float64))
    x = y - (t.transform_points(y) - y)  # first guess: x = y - u(y)
    for _ in range(iterations):
        new = y - (t.transform_points(x) - x)
        step = np.abs(new - x).max() if len(x) else 0.0
        x = new
        if step < tol:
            break
    residual = np.linalg.norm(t.transform_points(x) - y, axis=1) if len(x) else np.zeros(0)
    if residual.size and residual.max() > 0.01:
        from medcli.runtime import log

        # A field this steep is not invertible everywhere (folded): say where the points are unreliable.
        log.warning(f"the warp could not be inverted to 0.01 mm at {int((residual > 0.01).sum())} of {len(x)} points "
                    f"(worst {residual.max():.2f} mm); the field may fold there")
    return x


# -- images ---------------------------------------------------------------------------------------


def warp(image: Image, steps: Sequence[Step], reference: Image, interpolation: str = "linear", fill: float = 0.0) -> Image:
    """Resample an intensity image (3D or 4D, volume by volume) onto ``reference``.

    ``linear``, ``nearest`` and ``bspline`` (cubic B-spline, prefiltered) run in
    SciPy with ITK's border rule; ``lanczos`` is ITK's windowed-sinc
    (``sitkLanczosWindowedSinc``, radius 3) through SimpleITK.
    """
    if interpolation not in IMAGE_INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {IMAGE_INTERPOLATIONS}")
    chain = pull_chain(steps)
    if interpolation != "lanczos":
        return warp_image(image, chain, reference, interpolation, fill)
    vox = moving_voxels(image, chain, reference)
    data = image.data
    vols = data[..., None] if data.ndim == 3 else data.reshape(data.shape[:3] + (-1,))
    out = np.stack([_lanczos(vols[..., t], vox, reference.shape[:3], fill) for t in range(vols.shape[-1])], -1)
    out = out.reshape(tuple(reference.shape[:3]) + data.shape[3:])
    return Image(out.astype(np.float32), reference.affine, dict(image.meta))


def moving_voxels(moving: Image, chain: TransformChain, reference: Image) -> np.ndarray:
    """Continuous moving-image voxel coordinates ``(3, N)`` read by each reference voxel."""
    return moving.world_to_voxel(chain.transform_points(_grid_points(reference))).T


def _lanczos(volume: np.ndarray, vox: np.ndarray, shape: Sequence[int], fill: float) -> np.ndarray:
    """ITK's Lanczos resampling at given voxel coordinates, done in index space.

    Both grids get unit spacing and no rotation, and the pull mapping becomes a
    displacement field in moving voxel units on the reference index grid: no
    world geometry crosses into ITK, so no LPS conversion can go wrong here.
    """
    import SimpleITK as sitk

    moving = sitk.GetImageFromArray(np.ascontiguousarray(volume.astype(np.float32).transpose(2, 1, 0)))
    ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    disp = (vox.T - ijk).reshape(tuple(shape) + (3,)).transpose(2, 1, 0, 3)
    field = sitk.GetImageFromArray(np.ascontiguousarray(disp), isVector=True)
    ref = sitk.Image([int(s) for s in shape], sitk.sitkFloat32)
    tx = sitk.DisplacementFieldTransform(field)
    out = sitk.Resample(moving, ref, tx, sitk.sitkLanczosWindowedSinc, float(fill), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


# -- label maps -----------------------------------------------------------------------------------


def warp_labels(
    labels: Image, steps: Sequence[Step], reference: Image, interpolation: str = "smooth", sigma: float = 0.5
) -> Image:
    """Resample a label map (3D or 4D) onto ``reference``; labels are never mixed.

    Args:
        labels: Integer label map (0 = background).
        steps: The transforms.
        reference: Output grid.
        interpolation: ``nearest``; ``linear``: each label's indicator
            interpolated linearly and the largest wins (ANTs' GenericLabel);
            ``smooth``: the same on indicators smoothed with a Gaussian of
            ``sigma`` moving voxels first, which keeps thin structures that
            nearest breaks up. Measured on the MNI GM/WM maps (labels where
            the probability exceeds 1/2) through a rotation, 3 % scaling and
            a warp, against the probability map carried the same way: GM
            Dice .961 nearest, .976 linear, .981 smooth (sigma 0.5) at 1 mm;
            .922, .947, .950 for 2 mm labels onto 1 mm; sigma 1.0 is worse.
        sigma: Gaussian sigma in moving-image voxels for ``smooth``.

    Returns:
        The label map on the reference grid, with the input's integer dtype.
    """
    if interpolation not in LABEL_INTERPOLATIONS:
        raise ValueError(f"label interpolation must be one of {LABEL_INTERPOLATIONS}")
    data = np.asarray(labels.data)
    if data.dtype.kind == "f":
        if not np.array_equal(data, np.round(data)):
            raise InputError("--labels needs integer labels; this image has fractional values", labels.meta.get("source"))
        data = data.astype(np.int32)
    chain = pull_chain(steps)
    if interpolation == "nearest":
        return warp_image(Image(data, labels.affine, dict(labels.meta)), chain, reference, "nearest")
    vox = moving_voxels(labels, chain, reference)
    vols = data[..., None] if data.ndim == 3 else data.reshape(data.shape[:3] + (-1,))
    out = np.stack(
        [_argmax_labels(vols[..., t], vox, sigma if interpolation == "smooth" else 0.0) for t in range(vols.shape[-1])], -1
    )
    out = out.reshape(tuple(reference.shape[:3]) + data.shape[3:]).astype(data.dtype)
    meta = dict(labels.meta)
    meta.setdefault("intent", "label")
    return Image(out, reference.affine, meta)


def _argmax_labels(volume: np.ndarray, vox: np.ndarray, sigma: float) -> np.ndarray:
    """Per-label interpolation: the label whose (smoothed) indicator is largest at each point.

    Each label is interpolated only where its bounding box (grown by the
    smoothing support) reaches, so that a map of hundreds of labels costs
    about as much as the few labels covering each point.
    """
    from scipy import ndimage

    n = vox.shape[1]
    best = np.zeros(n, np.float32)  # background competes with its own indicator below
    winner = np.zeros(n, volume.dtype)
    values = np.unique(volume)
    margin = int(np.ceil(3 * sigma)) + 2
    shape = np.array(volume.shape)
    for v in values:
        mask = volume == v
        if v == 0:
            ind = mask.astype(np.float32)
            lo = np.zeros(3, int)
        else:
            idx = np.argwhere(mask)
            lo = np.maximum(idx.min(0) - margin, 0)
            hi = np.minimum(idx.max(0) + margin + 1, shape)
            ind = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float32)
        if sigma > 0:
            ind = ndimage.gaussian_filter(ind, sigma, mode="nearest")
        local = vox - lo[:, None]
        sel = ((local >= -0.5) & (local < np.array(ind.shape)[:, None] - 0.5)).all(axis=0)
        if v != 0 and not sel.any():
            continue
        val = np.zeros(n, np.float32)
        # Outside the moving image everything is background.
        val[sel] = sample_like_itk(ind, local[:, sel], 1, 1.0 if v == 0 else 0.0)
        if v == 0:
            val[~sel] = 1.0
        better = val > best
        best[better] = val[better]
        winner[better] = v
    return winner

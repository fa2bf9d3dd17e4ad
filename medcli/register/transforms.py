"""Spatial transforms of medcli registration, and resampling an image through them.

Conventions (the contract between the registration algorithms and the
transform readers/writers in :mod:`medcli.register.transform_io`):

* All coordinates are **RAS+ world millimetres** (the :class:`~medcli.image.Image`
  convention). Conversion to ITK's LPS happens only in the file writers/readers.
* Every transform maps a point of the **fixed** (reference) space to the
  corresponding point of the **moving** space: the ITK/ANTs "pull" convention,
  the direction in which an image is resampled (for each output voxel, where do
  I read the moving image?). :class:`AffineTransform` holds that 4x4 matrix as
  ITK stores it (after RAS<->LPS conversion). Points that a user places on the
  moving image move to the fixed space with the *inverse* chain.
* :class:`DisplacementField` is an :class:`Image` on the fixed grid whose data
  is ``(X, Y, Z, 3)`` RAS mm displacements: ``x -> x + u(x)``. Outside its grid
  the displacement is zero (as in ITK). It may carry its inverse (SyN-style
  registrations integrate the negated velocity field), else :meth:`inverse`
  computes one by fixed-point iteration.
* :class:`TransformChain` is a list in ANTs ``transformlist`` order, the order
  of ``antsApplyTransforms -t Warp -t Affine`` and of ANTsPy's
  ``fwdtransforms``: ``[warp, affine]`` maps a fixed point ``x`` to
  ``affine(warp(x))``, i.e. the elements are applied to a fixed-space point
  from first to last.

Example:
    >>> import numpy as np
    >>> from medcli.register.transforms import AffineTransform
    >>> t = AffineTransform.from_translation([1.0, 2.0, 3.0])
    >>> t.transform_points(np.zeros((1, 3))).tolist()
    [[1.0, 2.0, 3.0]]
    >>> t.inverse().transform_points(np.array([[1.0, 2.0, 3.0]])).tolist()
    [[0.0, 0.0, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence, Union

import numpy as np

from medcli.image import Image

INTERPOLATIONS = ("linear", "nearest", "bspline")


@dataclass
class AffineTransform:
    """A 4x4 homogeneous matrix mapping fixed RAS mm to moving RAS mm.

    Attributes:
        matrix: The 4x4 matrix (last row ``0 0 0 1``).
        center: ITK's centre of rotation (RAS mm), kept only so that a written
            ``.mat`` carries the ``fixed`` parameters a user expects; it does not
            change the mapping, which ``matrix`` fully defines.
    """

    matrix: np.ndarray
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float64).reshape(4, 4).copy()
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3).copy()

    @classmethod
    def identity(cls) -> "AffineTransform":
        return cls(np.eye(4))

    @classmethod
    def from_translation(cls, t: Sequence[float]) -> "AffineTransform":
        m = np.eye(4)
        m[:3, 3] = np.asarray(t, float)
        return cls(m)

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """Map fixed-space points ``(N, 3)`` to moving space."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        return p @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def inverse(self) -> "AffineTransform":
        return AffineTransform(np.linalg.inv(self.matrix), self.center)

    def compose(self, first: "AffineTransform") -> "AffineTransform":
        """``self`` after ``first``: the single affine ``x -> self(first(x))``."""
        return AffineTransform(self.matrix @ first.matrix, first.center)


class DisplacementField:
    """A dense displacement field on the fixed grid: ``x -> x + u(x)`` in RAS mm.

    Args:
        field: Image whose data is ``(X, Y, Z, 3)`` float displacements in RAS mm
            (its affine is the fixed grid).
        inverse_field: The inverse mapping's displacements on the same grid, if
            the registration produced it (``x -> x + w(x)`` with
            ``w(x) = -u(x + w(x))``).
    """

    def __init__(self, field: Image, inverse_field: Image | None = None):
        data = np.asarray(field.data)
        if data.ndim == 5 and data.shape[3] == 1:  # ITK files: (X, Y, Z, 1, 3)
            data = data[:, :, :, 0, :]
        if data.ndim != 4 or data.shape[3] != 3:
            raise ValueError(f"a displacement field has shape (X, Y, Z, 3), got {data.shape}")
        self.field = Image(np.ascontiguousarray(data, dtype=np.float32), field.affine, dict(field.meta))
        self.inverse_field = inverse_field

    @property
    def displacements(self) -> np.ndarray:
        """The ``(X, Y, Z, 3)`` RAS mm displacement array."""
        return self.field.data

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """Map fixed-space points ``(N, 3)`` to moving space (``x + u(x)``, trilinear)."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        return p + _sample_vectors(self.field, p)

    def inverse(self, iterations: int = 30) -> "DisplacementField":
        """The inverse field (stored, or by fixed-point iteration ``w = -u(x + w)``)."""
        if self.inverse_field is not None:
            return DisplacementField(self.inverse_field, self.field)
        grid = _grid_points(self.field)
        w = -self.displacements.reshape(-1, 3).astype(np.float64)
        for _ in range(iterations):
            w = -_sample_vectors(self.field, grid + w)
        inv = self.field.with_data(w.reshape(self.displacements.shape).astype(np.float32))
        return DisplacementField(inv, self.field)


Transform = Union[AffineTransform, DisplacementField]


class TransformChain(list):
    """Transforms in ANTs ``transformlist`` order (``[warp, affine]``).

    A fixed-space point ``x`` maps to moving space as ``t[-1](...t[1](t[0](x)))``.
    """

    def __init__(self, transforms: Iterable[Transform] = ()):
        super().__init__(transforms)

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """Map fixed-space points ``(N, 3)`` (RAS mm) to moving space."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        for t in self:
            p = t.transform_points(p)
        return p

    def inverse(self) -> "TransformChain":
        """The chain mapping moving-space points to fixed space (raises if a field has no inverse)."""
        return TransformChain(t.inverse() for t in reversed(self))


def as_chain(transform: Transform | Sequence[Transform]) -> TransformChain:
    if isinstance(transform, (AffineTransform, DisplacementField)):
        return TransformChain([transform])
    return TransformChain(transform)


def _grid_points(image: Image) -> np.ndarray:
    """World RAS coordinates ``(N, 3)`` of every voxel of ``image``, C order."""
    shape = image.shape[:3]
    ijk = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    return image.voxel_to_world(ijk)


def _sample_vectors(field: Image, points: np.ndarray) -> np.ndarray:
    """Trilinear sample of a vector image ``(X, Y, Z, C)`` at world points; zero outside."""
    vox = field.world_to_voxel(points).T
    data = field.data
    return np.stack([sample_like_itk(data[..., c], vox, 1, 0.0) for c in range(data.shape[-1])], -1).astype(np.float64)


def sample_like_itk(volume: np.ndarray, vox: np.ndarray, order: int, fill: float) -> np.ndarray:
    """Interpolate ``volume`` at voxel coordinates ``vox`` (3, N) with ITK's boundary rule.

    ITK (and so ANTs, SimpleITK, Slicer) counts a point as inside the image up
    to half a voxel beyond the outer voxel centres and clamps the interpolation
    to the edge there (B-splines: mirrors); farther out it uses ``fill`` (zero
    displacement for a field). Matching this rule is what makes medcli's warped images equal to
    ``antsApplyTransforms``' at the field-of-view border.
    """
    from scipy import ndimage

    n = np.asarray(volume.shape[:3], dtype=np.float64)[:, None]
    inside = ((vox >= -0.5) & (vox < n - 0.5)).all(axis=0)
    # ITK's B-spline coefficients use mirror boundaries; linear/nearest clamp to the edge.
    mode = "mirror" if order > 1 else "nearest"
    out = ndimage.map_coordinates(volume, vox, order=order, mode=mode, prefilter=order > 1)
    out[~inside] = fill
    return out


def warp_image(
    moving: Image,
    chain: Transform | Sequence[Transform],
    reference: Image,
    interpolation: str = "linear",
    fill: float = 0.0,
) -> Image:
    """Resample ``moving`` onto ``reference``'s grid through ``chain``.

    Each reference voxel reads the moving image at ``chain(x)`` (fixed -> moving,
    see the module docstring). 4D moving images are resampled volume by volume.

    Args:
        moving: The image to resample.
        chain: One transform or a list in ANTs ``transformlist`` order.
        reference: Output grid (the fixed image); its voxels are not read.
        interpolation: ``linear``, ``nearest`` (label maps) or ``bspline`` (cubic).
        fill: Value outside the moving image's field of view.

    Returns:
        The resampled image on the reference grid, float32 (``nearest`` keeps the dtype).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    shape = reference.shape[:3]
    pts = as_chain(chain).transform_points(_grid_points(reference))
    vox = moving.world_to_voxel(pts).T
    order = {"linear": 1, "nearest": 0, "bspline": 3}[interpolation]
    data = moving.data
    vols = data[..., None] if data.ndim == 3 else data.reshape(data.shape[:3] + (-1,))
    out_dtype = vols.dtype if order == 0 else np.float32
    out = np.empty((int(np.prod(shape)), vols.shape[-1]), out_dtype)
    for t in range(vols.shape[-1]):
        v = vols[..., t] if order == 0 else vols[..., t].astype(np.float32, copy=False)
        out[:, t] = sample_like_itk(v, vox, order, fill)
    out = out.reshape(tuple(shape) + ((vols.shape[-1],) if data.ndim > 3 else ()))
    if data.ndim > 3:
        out = out.reshape(tuple(shape) + data.shape[3:])
    return Image(out, reference.affine, dict(moving.meta))

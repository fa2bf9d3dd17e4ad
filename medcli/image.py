"""The one image type of medcli.

An :class:`Image` is a voxel array (3D, or 4D with the last axis for time,
diffusion directions or channels), a 4x4 affine that maps voxel indices to
RAS+ millimetres (the NIfTI convention, whatever the file format), and a small
metadata dictionary that must survive a round trip (description, intent,
source format, DICOM series information, label table, ...).

The array may be lazy: readers hand over a callable and the voxels are read on
first access to :attr:`Image.data`, so that ``medcli info`` on a 2 GB file
reads only its header.

Example:
    >>> import numpy as np
    >>> from medcli.image import Image
    >>> img = Image(np.zeros((4, 5, 6), np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
    >>> img.spacing
    (2.0, 2.0, 3.0)
    >>> img.orientation
    'RAS'
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

ArrayLike = np.ndarray

_AXIS_LABELS = {0: ("L", "R"), 1: ("P", "A"), 2: ("I", "S")}


class Image:
    """A voxel array with its RAS+ millimetre geometry and metadata.

    Args:
        data: The voxel array, or a callable returning it on first use (lazy).
        affine: 4x4 voxel-to-RAS+ matrix in millimetres.
        meta: Metadata that writers keep where the format allows.
        shape: Required when ``data`` is lazy, so the header can be inspected
            without reading voxels.
        dtype: Dtype of the lazy array, for the same reason.
    """

    def __init__(
        self,
        data: ArrayLike | Callable[[], ArrayLike],
        affine: ArrayLike,
        meta: dict[str, Any] | None = None,
        *,
        shape: Sequence[int] | None = None,
        dtype: Any = None,
    ):
        self.affine = np.asarray(affine, dtype=np.float64).copy()
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        self.meta: dict[str, Any] = dict(meta or {})
        if callable(data):
            if shape is None:
                raise ValueError("a lazy image needs its shape")
            self._loader: Callable[[], ArrayLike] | None = data
            self._data: ArrayLike | None = None
            self._shape = tuple(int(s) for s in shape)
            self._dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.float32)
        else:
            arr = np.asarray(data)
            if arr.ndim not in (2, 3, 4):
                raise ValueError(f"an image has 2 to 4 dimensions, got {arr.ndim}")
            self._loader = None
            self._data = arr
            self._shape = arr.shape
            self._dtype = arr.dtype

    # -- voxels -------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The voxel array (read on first access when lazy)."""
        if self._data is None:
            assert self._loader is not None
            from medcli.errors import InputError, MedcliError

            where = self.meta.get("source")
            try:
                arr = np.asarray(self._loader())
            except MedcliError:
                raise
            except MemoryError as e:
                raise InputError(f"not enough memory to read the voxels ({self._human_nbytes()})", where) from e
            except Exception as e:  # noqa: BLE001 - a reader's failure is a property of the file
                raise InputError(f"cannot read voxel data ({type(e).__name__}: {str(e)[:160]})", where) from e
            if arr.shape != self._shape:
                raise InputError(f"voxel data has shape {arr.shape}, the header says {self._shape}", where)
            self._data, self._loader = arr, None
            self._dtype = arr.dtype
        return self._data

    def _human_nbytes(self) -> str:
        n = float(self.nbytes)
        for unit in ("B", "KiB", "MiB", "GiB"):
            if n < 1024:
                return f"{n:.1f} {unit}"
            n /= 1024
        return f"{n:.1f} TiB"

    @property
    def is_loaded(self) -> bool:
        return self._data is not None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        s = tuple(self._shape[:3])
        return s + (1,) * (3 - len(s))  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self._shape)) * self._dtype.itemsize

    # -- geometry -----------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in millimetres along the three array axes."""
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Three-letter code of the direction each array axis increases to (RAS+)."""
        return "".join(orientation_codes(self.affine))

    def voxel_to_world(self, ijk: ArrayLike) -> np.ndarray:
        """Map voxel indices (N, 3) to RAS+ millimetres (N, 3)."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_voxel(self, xyz: ArrayLike) -> np.ndarray:
        """Map RAS+ millimetres (N, 3) to continuous voxel indices (N, 3)."""
        xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        inv = np.linalg.inv(self.affine)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    # -- derived images -----------------------------------------------------
    def with_data(self, data: ArrayLike, **meta: Any) -> "Image":
        """A new image on the same grid with other voxels (and updated metadata)."""
        data = np.asarray(data)
        if data.shape[:3] != self.shape[:3]:
            raise ValueError(f"data shape {data.shape} does not match grid {self.shape[:3]}")
        m = dict(self.meta)
        m.update(meta)
        return Image(data, self.affine, m)

    def copy(self) -> "Image":
        return Image(self.data.copy(), self.affine, dict(self.meta))

    def reorient(self, code: str = "RAS") -> "Image":
        """The same image with its array axes permuted/flipped to ``code``.

        No interpolation happens: voxels are only moved, so ``reorient`` and its
        inverse are exact. The world coordinates of every voxel are unchanged.
        """
        code = code.upper()
        if sorted(_axis_of(c) for c in code) != [0, 1, 2] or len(code) != 3:
            raise ValueError(f"not an orientation code: {code!r}")
        if code == self.orientation:
            return self
        cur = orientation_codes(self.affine)
        perm, flips = [], []
        for target in code:
            axis = _axis_of(target)
            src = [i for i, c in enumerate(cur) if _axis_of(c) == axis][0]
            perm.append(src)
            flips.append(cur[src] != target)
        data = self.data
        extra = list(range(3, data.ndim))
        data = np.transpose(data, perm + extra)
        aff = self.affine.copy()
        aff[:3, :3] = self.affine[:3, perm]
        shape = data.shape
        for ax, flip in enumerate(flips):
            if flip:
                data = np.flip(data, axis=ax)
                # voxel i becomes n-1-i: shift origin to the old last voxel
                aff[:3, 3] = aff[:3, 3] + aff[:3, ax] * (shape[ax] - 1)
                aff[:3, ax] = -aff[:3, ax]
        return Image(np.ascontiguousarray(data), aff, dict(self.meta))

    def resample_to(
        self,
        target: "Image | tuple[ArrayLike, Sequence[int]]",
        order: int = 1,
        fill: float = 0.0,
    ) -> "Image":
        """Resample onto another grid (an image, or an ``(affine, shape)`` pair).

        Args:
            target: The grid to resample onto.
            order: Spline order (0 nearest for labels, 1 linear, 3 cubic).
            fill: Value outside the input's field of view.
        """
        from scipy import ndimage

        if isinstance(target, Image):
            taff, tshape = target.affine, target.shape[:3]
        else:
            taff, tshape = np.asarray(target[0], float), tuple(target[1])
        vox = np.linalg.inv(self.affine) @ taff  # target voxel -> source voxel
        src = self.data
        vols = src[..., None] if src.ndim == 3 else src.reshape(src.shape[:3] + (-1,))
        out = np.empty(tuple(tshape) + (vols.shape[-1],), np.float32 if order else vols.dtype)
        for t in range(vols.shape[-1]):
            v = vols[..., t]
            if order:
                v = v.astype(np.float32, copy=False)
            out[..., t] = ndimage.affine_transform(
                v, vox[:3, :3], vox[:3, 3], output_shape=tuple(tshape), order=order, mode="constant", cval=fill
            )
        out = out[..., 0] if src.ndim == 3 else out.reshape(tuple(tshape) + src.shape[3:])
        return Image(out, taff, dict(self.meta))

    def resample(self, spacing: float | Sequence[float], order: int = 1) -> "Image":
        """Resample to another voxel size, covering the same field of view."""
        target_affine, shape = grid_with_spacing(self.affine, self.shape[:3], spacing)
        return self.resample_to((target_affine, shape), order=order)

    def __repr__(self) -> str:
        sp = "x".join(f"{s:g}" for s in self.spacing)
        return f"Image(shape={self.shape}, dtype={self.dtype}, spacing={sp} mm, orientation={self.orientation})"


def grid_with_spacing(
    affine: ArrayLike, shape: Sequence[int], spacing: float | Sequence[float]
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A grid with the given voxel size that covers the same field of view.

    The field of view is the box spanned by the voxel *edges*, so the new grid's
    first voxel centre sits half a new voxel inside the old first edge.
    """
    affine = np.asarray(affine, float)
    old = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    new = np.broadcast_to(np.asarray(spacing, float), (3,))
    extent = old * np.asarray(shape[:3], float)
    new_shape = np.maximum(1, np.round(extent / new)).astype(int)
    new = extent / new_shape  # exact cover of the same field of view
    direction = affine[:3, :3] / old
    out = np.eye(4)
    out[:3, :3] = direction * new
    first_edge = affine[:3, 3] - direction @ (old / 2)
    out[:3, 3] = first_edge + direction @ (new / 2)
    return out, tuple(int(s) for s in new_shape)  # type: ignore[return-value]


def orientation_codes(affine: ArrayLike) -> tuple[str, str, str]:
    """Closest RAS+ axis code for each array axis (like nibabel's aff2axcodes)."""
    rot = np.asarray(affine, float)[:3, :3]
    rot = rot / np.maximum(np.sqrt((rot**2).sum(axis=0)), 1e-12)
    codes: list[str] = [""] * 3
    used: set[int] = set()
    # Greedy on the largest absolute cosine so that oblique axes get distinct labels.
    order = np.dstack(np.unravel_index(np.argsort(-np.abs(rot), axis=None), rot.shape))[0]
    for world, vox in order:
        if codes[vox] or world in used:
            continue
        codes[vox] = _AXIS_LABELS[int(world)][int(rot[world, vox] > 0)]
        used.add(int(world))
    return tuple(codes)  # type: ignore[return-value]


def _axis_of(code: str) -> int:
    for axis, labels in _AXIS_LABELS.items():
        if code in labels:
            return axis
    raise ValueError(f"not an axis code: {code!r}")

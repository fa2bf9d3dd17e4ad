"""Bias-field (intensity inhomogeneity) correction: N4 and a learned one-pass model.

The pure functions behind ``medcli biascorrect``. A bias field is a smooth
multiplicative field ``b``: the scanner measures ``b * true``. Both methods
estimate ``b`` (up to a global scale, which no method can know) and return
``image / b``.

* ``n4`` -- N4ITK (Tustison 2010) through SimpleITK, run on a shrunken copy
  of the image inside a foreground mask, the field then evaluated at full
  resolution from its B-spline control points. The defaults (shrink factor,
  fitting levels, iterations) are the best trade-off of the sweep in
  ``tests/benchmarks/results/enhance.md``.
* ``learned`` -- a small 3D U-Net that sees the image at 4 mm and predicts the
  log field in one pass; the prediction is upsampled with cubic splines, so
  the field is smooth by construction. Trained on the MNI T1 under random
  deformations and on synthetic tissue contrasts with random smooth fields
  (``recipes/biasfield.toml``).

Example:
    >>> from medcli import io
    >>> from medcli.enhance.bias import biascorrect
    >>> t1 = io.read("sample:t1")  # doctest: +SKIP
    >>> corrected, field = biascorrect(t1, method="n4")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medcli.image import Image

METHODS = ("n4", "learned")

#: N4 defaults, chosen by the sweep of tests/benchmarks/enhance/bias.py.
N4_DEFAULTS = {"shrink": 6, "levels": 3, "iterations": 50, "spline_distance": 200.0}


def n4(
    data: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    mask: np.ndarray | None = None,
    shrink: int = N4_DEFAULTS["shrink"],
    levels: int = N4_DEFAULTS["levels"],
    iterations: int = N4_DEFAULTS["iterations"],
    spline_distance: float = N4_DEFAULTS["spline_distance"],
    convergence: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """N4 bias correction of a 3D array.

    Args:
        data: 3D image (positive where there is tissue).
        spacing: Voxel size in mm (the B-spline grid is set in mm).
        mask: Voxels that drive the fit; default :func:`foreground_mask`.
        shrink: Downsampling factor for the fit (the field is smooth, so
            fitting at 4 mm loses nothing and is ~30x faster than at 1 mm).
        levels: B-spline fitting levels (each doubles the control grid).
        iterations: Maximum iterations per level.
        spline_distance: Control-point spacing of the first level in mm (each
            further level halves it: 200 mm and 4 levels end at 25 mm, as ANTs
            recommends for brain MR).
        convergence: Convergence threshold of each level.

    Returns:
        ``(corrected, field)`` as float32 arrays; ``field`` has geometric mean
        1 in the mask, so ``corrected`` keeps the input's intensity scale.
    """
    import SimpleITK as sitk

    from medcli.cli.runtime import configure_itk
    from medcli.enhance.masks import foreground_mask

    configure_itk(sitk)
    x = np.nan_to_num(np.asarray(data, np.float32))
    if mask is None:
        mask = foreground_mask(x)
    mask = np.asarray(mask, bool) & (x > 0)
    if mask.sum() < 100:
        raise ValueError("the foreground mask has fewer than 100 positive voxels")
    # SimpleITK arrays are (z, y, x): transpose so that spacing matches axes.
    img = sitk.GetImageFromArray(x.T.copy())
    img.SetSpacing(tuple(float(s) for s in spacing[:3]))
    msk = sitk.GetImageFromArray(mask.T.astype(np.uint8).copy())
    msk.CopyInformation(img)
    small, small_mask = img, msk
    if shrink > 1:
        small = sitk.Shrink(img, [int(shrink)] * 3)
        small_mask = sitk.Shrink(msk, [int(shrink)] * 3)
    f = sitk.N4BiasFieldCorrectionImageFilter()
    f.SetMaximumNumberOfIterations([int(iterations)] * int(levels))
    f.SetConvergenceThreshold(convergence)
    extent = np.asarray(small.GetSize()) * np.asarray(small.GetSpacing())
    # A cubic B-spline with n spans has n + 3 control points.
    f.SetNumberOfControlPoints([max(1, int(np.ceil(e / spline_distance))) + 3 for e in extent])
    f.Execute(small, small_mask)
    log_field = sitk.GetArrayFromImage(f.GetLogBiasFieldAsImage(img)).T.astype(np.float32)
    log_field -= float(np.mean(log_field[mask]))
    field = np.exp(log_field)
    return (x / field).astype(np.float32), field.astype(np.float32)


def biascorrect(
    image: Image,
    method: str = "n4",
    mask: np.ndarray | None = None,
    **options,
) -> tuple[Image, Image]:
    """Correct the bias field of an image.

    Args:
        image: 3D image, or a 4D series (one field from the mean volume,
            applied to every volume: the coil does not move between volumes).
        method: ``n4`` or ``learned``.
        mask: Foreground that drives the estimate; default automatic.
        options: Method settings (``shrink``, ``levels``, ``iterations`` for N4).

    Returns:
        ``(corrected, field)`` images on the input grid, float32.
    """
    from medcli.errors import ProcessingError, UsageError

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    data = np.asarray(image.data, np.float32)
    bad = ~np.isfinite(data)
    data = np.where(bad, 0, data)
    ref = data if data.ndim == 3 else data.reshape(data.shape[:3] + (-1,)).mean(axis=3)
    if mask is not None and np.asarray(mask).shape != ref.shape:
        raise ProcessingError(f"mask shape {np.asarray(mask).shape} does not match the image grid {ref.shape}")
    if not (ref > 0).any():
        raise ProcessingError("the image has no positive voxels: nothing to correct", image.meta.get("source"))
    try:
        if method == "n4":
            _, field = n4(ref, image.spacing, mask, **options)
        else:
            from medcli.enhance.learned import BiasModel

            model = BiasModel.load(options.pop("model", "biasfield"))
            field = model(ref, image.spacing, mask=mask)
    except ValueError as e:
        raise ProcessingError(str(e), image.meta.get("source")) from e
    f = field if data.ndim == 3 else field.reshape(field.shape + (1,) * (data.ndim - 3))
    out = data / f
    if bad.any():
        out = np.where(bad, np.nan, out)
    return image.with_data(out.astype(np.float32)), image.with_data(field.astype(np.float32))


__all__ = ["n4", "biascorrect", "METHODS", "N4_DEFAULTS"]

"""Transforms on disk in the formats ANTs, ITK, SimpleITK and 3D Slicer read.

======================  ===============================================  =========
file                    content                                          library
======================  ===============================================  =========
``.mat``                ITK/ANTs MATLAB v4 file: ``AffineTransform_      scipy.io
                        double_3_3`` (9 matrix + 3 translation
                        parameters) and ``fixed`` (the centre)
``.tfm`` / ``.txt``     ITK text transform (``#Insight Transform File``)  own parser
``.nii`` / ``.nii.gz``  ITK displacement field: 5D ``(X, Y, Z, 1, 3)``,   nibabel
                        vector intent, LPS mm displacements on the
                        fixed grid (``1Warp.nii.gz`` of ANTs)
``.nrrd`` ``.mha``      the same field as an ITK vector image            SimpleITK
``.h5`` ``.hdf5``       ITK HDF5 transform (Slicer's default; read only)  SimpleITK
======================  ===============================================  =========

Every file stores ITK's *pull* mapping in LPS millimetres, which is also the
convention of :mod:`medcli.register.transforms` (fixed point -> moving point),
only in RAS. The conversion happens in :func:`_flip_matrix` (matrices) and
:func:`_flip_vectors` (points and displacements) and nowhere else: with
``F = diag(-1, -1, 1)``, ``M_lps = F M_ras F`` and ``u_lps = F u_ras``.

ITK's affine parameters: ``y = A (x - c) + t + c``; ``A`` row by row, ``t``
the translation parameters and ``c`` the centre (``fixed``). ANTs writes the
centre of the fixed image's mass there; the mapping is the same for any ``c``.

A composite ITK transform file ``[T0, T1, ...]`` maps ``x -> T0(T1(...(x)))``
(the last transform is applied first, ITK's stack order); medcli's
:class:`~medcli.register.transforms.TransformChain` lists transforms in the
order they are applied to a fixed point, so reading reverses the list.

Example:
    >>> from medcli.register.transforms import AffineTransform
    >>> write_transform(AffineTransform.from_translation([1, 2, 3]), "t.mat")  # doctest: +SKIP
    >>> read_transform("t.mat")[0].matrix[:3, 3]  # doctest: +SKIP
    array([1., 2., 3.])
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from medcli.errors import InputError, ProcessingError
from medcli.image import Image
from medcli.io.safe import atomic_output, os_error_to_input
from medcli.register.transforms import (
    AffineTransform,
    DisplacementField,
    Transform,
    TransformChain,
)

_F = np.diag([-1.0, -1.0, 1.0, 1.0])

#: ITK transform types stored as a 3x3 matrix + translation (12 parameters, centre as fixed parameters).
_MATRIX_TYPES = ("AffineTransform", "MatrixOffsetTransformBase", "Rigid3DTransform", "ScalableAffineTransform")
AFFINE_SUFFIXES = (".mat", ".tfm", ".txt")
FIELD_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
SITK_TRANSFORM_SUFFIXES = (".h5", ".hdf5", ".hdf")


def _flip_matrix(m: np.ndarray) -> np.ndarray:
    """A 4x4 point mapping between RAS and LPS (its own inverse)."""
    return _F @ np.asarray(m, float) @ _F


def _flip_vectors(v: np.ndarray) -> np.ndarray:
    """Points or displacements ``(..., 3)`` between RAS and LPS (its own inverse)."""
    v = np.asarray(v)
    return v * np.array([-1.0, -1.0, 1.0], dtype=v.dtype if v.dtype.kind == "f" else np.float64)


def _suffix(path: str | Path) -> str:
    name = str(path).lower()
    for suf in FIELD_SUFFIXES + AFFINE_SUFFIXES + SITK_TRANSFORM_SUFFIXES:
        if name.endswith(suf):
            return suf
    return Path(str(path)).suffix.lower()


# -- parameters <-> matrix ----------------------------------------------------------------------


def affine_to_itk(t: AffineTransform) -> tuple[np.ndarray, np.ndarray]:
    """ITK's ``(parameters[12], fixed[3])`` in LPS for an affine (RAS, fixed -> moving)."""
    m = _flip_matrix(t.matrix)
    c = _flip_vectors(t.center)
    a, offset = m[:3, :3], m[:3, 3]
    translation = offset - c + a @ c
    return np.concatenate([a.ravel(), translation]), c


def affine_from_itk(params: np.ndarray, fixed: np.ndarray | None, what: str = "") -> AffineTransform:
    """The affine of ITK's 12 parameters and centre (LPS) as a RAS :class:`AffineTransform`."""
    params = np.asarray(params, float).ravel()
    if params.size != 12:
        raise ValueError(f"{what or 'affine'}: 12 parameters expected (3D), got {params.size}")
    c = np.zeros(3) if fixed is None or np.asarray(fixed).size == 0 else np.asarray(fixed, float).ravel()[:3]
    a = params[:9].reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = params[9:] + c - a @ c
    return AffineTransform(_flip_matrix(m), _flip_vectors(c))


# -- reading -------------------------------------------------------------------------------------


def read_transform(path: str | Path) -> TransformChain:
    """Read a transform file as a chain (fixed -> moving, RAS), in application order.

    A displacement field gets its inverse attached when the file beside it is
    found (ANTs ``PREFIX1InverseWarp.nii.gz`` next to ``PREFIX1Warp.nii.gz``,
    medcli ``PREFIX_inverse_warp.nii.gz`` next to ``PREFIX_warp.nii.gz``).

    Raises:
        InputError: missing file, unknown format, a transform that is not 3D,
            or of a kind medcli cannot apply (e.g. a B-spline transform).
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or directory", path)
    suf = _suffix(p)
    try:
        if suf == ".mat":
            return TransformChain([_read_mat(p)])
        if suf in (".tfm", ".txt"):
            return _read_tfm(p)
        if suf in FIELD_SUFFIXES:
            field = read_displacement_field(p)
            inv = inverse_warp_path(p)
            if inv is not None:
                field.inverse_field = read_displacement_field(inv).field
            return TransformChain([field])
        if suf in SITK_TRANSFORM_SUFFIXES:
            return _read_with_sitk(p)
    except InputError:
        raise
    except OSError as e:
        raise os_error_to_input(e, path) from e
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise InputError(f"not a readable 3D transform ({str(e)[:160]})", path) from e
    raise InputError(
        "unknown transform extension (.mat, .tfm, .txt, .h5 affine; .nii.gz, .nii, .nrrd, .mha displacement field)", path
    )


def inverse_warp_path(path: str | Path) -> Path | None:
    """The inverse warp file written beside a forward warp, if it exists."""
    p = Path(path)
    name = p.name
    for fwd, inv in (("1Warp.", "1InverseWarp."), ("_warp.", "_inverse_warp."), ("Warp.", "InverseWarp.")):
        if fwd in name and "Inverse" not in name and "_inverse" not in name:
            cand = p.with_name(name.replace(fwd, inv, 1))
            if cand.exists():
                return cand
    return None


def _read_mat(path: Path) -> AffineTransform:
    from scipy import io as sio

    try:
        mat = sio.loadmat(str(path))
    except Exception as e:
        raise InputError(f"not a MATLAB transform file ({type(e).__name__})", path) from e
    names = [k for k in mat if not k.startswith("__") and k != "fixed"]
    if not names:
        raise InputError("no transform parameters in the .mat file", path)
    name = names[0]
    kind, dims = _itk_type(name)
    if dims != (3, 3):
        raise InputError(f"{name} is a {dims[0]}D transform; medcli applies 3D transforms", path)
    if kind not in _MATRIX_TYPES:
        # ANTs writes only the affine family to .mat; anything else goes through ITK itself.
        return _single_linear(_read_with_sitk(path), path)
    return affine_from_itk(mat[name], mat.get("fixed"), name)


def _itk_type(name: str) -> tuple[str, tuple[int, ...]]:
    """``AffineTransform_double_3_3`` -> ``("AffineTransform", (3, 3))``."""
    m = re.match(r"^([A-Za-z0-9]+?)_(?:double|float)_(\d)(?:_(\d))?$", name.strip())
    if not m:
        return name.strip(), (3, 3)
    dims = tuple(int(d) for d in m.groups()[1:] if d)
    return m.group(1), dims if len(dims) == 2 else dims * 2


def _read_tfm(path: Path) -> TransformChain:
    text = path.read_text(errors="replace")
    if "Transform:" not in text:
        raise InputError("not an ITK text transform file (no 'Transform:' line)", path)
    blocks: list[dict[str, str]] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "Transform":
            blocks.append({"Transform": value.strip()})
        elif key in ("Parameters", "FixedParameters") and blocks:
            blocks[-1][key] = value.strip()
    transforms: list[Transform] = []
    for b in blocks:
        kind, dims = _itk_type(b["Transform"])
        if kind == "CompositeTransform":
            continue
        if dims[0] != 3:
            raise InputError(f"{b['Transform']} is a {dims[0]}D transform; medcli applies 3D transforms", path)
        params = np.array(b.get("Parameters", "").split(), float)
        fixed = np.array(b.get("FixedParameters", "").split(), float)
        if kind in _MATRIX_TYPES:
            transforms.append(affine_from_itk(params, fixed, b["Transform"]))
        elif kind == "TranslationTransform":
            transforms.append(AffineTransform(_flip_matrix(_translation(params))))
        elif kind == "IdentityTransform":
            transforms.append(AffineTransform.identity())
        else:  # Euler, versor, similarity, ...: ITK knows their parameterisations
            return _read_with_sitk(path)
    if not transforms:
        raise InputError("no transform in the file", path)
    return TransformChain(reversed(transforms))


def _translation(params: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = np.asarray(params, float).ravel()[:3]
    return m


def _read_with_sitk(path: Path) -> TransformChain:
    """Any transform file ITK reads (HDF5, Euler/versor types) through SimpleITK."""
    import SimpleITK as sitk

    try:
        tx = sitk.ReadTransform(str(path))
    except RuntimeError as e:
        raise InputError(f"ITK cannot read this transform ({str(e).strip().splitlines()[-1][:160]})", path) from e
    return TransformChain(_from_sitk(tx, path))


def _from_sitk(tx, path: Path) -> list[Transform]:
    """medcli transforms (application order) from a SimpleITK transform."""
    import SimpleITK as sitk

    if tx.GetDimension() != 3:
        raise InputError(f"a {tx.GetDimension()}D transform; medcli applies 3D transforms", path)
    tx = tx.Downcast() if hasattr(tx, "Downcast") else tx
    name = tx.GetName()
    if name == "CompositeTransform":
        comp = sitk.CompositeTransform(tx)
        parts = [comp.GetNthTransform(i) for i in range(comp.GetNumberOfTransforms())]
        out: list[Transform] = []
        for t in reversed(parts):  # ITK applies the last one first
            out.extend(_from_sitk(t, path))
        return out
    if name == "DisplacementFieldTransform":
        f = sitk.DisplacementFieldTransform(tx).GetDisplacementField()
        return [DisplacementField(_sitk_vector_image(f))]
    if not tx.IsLinear():
        raise InputError(f"{name} is not supported (affine transforms and displacement fields are)", path)
    # A linear transform is its images of the origin and the unit vectors (exact).
    probe = np.vstack([np.zeros(3), np.eye(3)])
    mapped = np.array([tx.TransformPoint(tuple(map(float, q))) for q in probe])
    m = np.eye(4)
    m[:3, 3] = mapped[0]
    m[:3, :3] = (mapped[1:] - mapped[0]).T
    center = np.asarray(tx.GetFixedParameters()[:3], float) if len(tx.GetFixedParameters()) >= 3 else np.zeros(3)
    return [AffineTransform(_flip_matrix(m), _flip_vectors(center))]


def _single_linear(chain: TransformChain, path: Path) -> AffineTransform:
    if len(chain) != 1 or not isinstance(chain[0], AffineTransform):
        raise InputError("expected one affine transform", path)
    return chain[0]


def _sitk_vector_image(img) -> Image:
    """A SimpleITK 3-component LPS displacement image as a RAS ``(X, Y, Z, 3)`` field image."""
    import SimpleITK as sitk

    from medcli.io.itk import itk_geometry_to_affine

    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 3:
        raise ValueError(f"a displacement field has 3 components on a 3D grid, got {img.GetNumberOfComponentsPerPixel()} on {img.GetDimension()}D")
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0, 3)  # (z, y, x, c) -> (x, y, z, c)
    aff = itk_geometry_to_affine(img.GetDirection(), img.GetSpacing(), img.GetOrigin(), 3)
    return Image(np.ascontiguousarray(_flip_vectors(arr.astype(np.float32))), aff, {"intent": "vector"})


def read_displacement_field(path: str | Path) -> DisplacementField:
    """An ITK/ANTs displacement field file (LPS mm) as a RAS :class:`DisplacementField`.

    Raises:
        InputError: the file is not a 3-component vector image on a 3D grid.
    """
    p = Path(path)
    if _suffix(p) in (".nii", ".nii.gz"):
        import nibabel as nib

        try:
            nimg = nib.load(str(p))
            data = np.asarray(nimg.dataobj, dtype=np.float32)
        except Exception as e:
            raise InputError(f"cannot read the displacement field ({type(e).__name__}: {str(e)[:120]})", path) from e
        intent = nimg.header.get_intent()[0]
        if data.ndim == 5 and data.shape[3] == 1:
            data = data[:, :, :, 0, :]
        elif not (data.ndim == 4 and intent == "vector"):
            raise InputError(
                f"not a displacement field: shape {data.shape} (ITK fields are (X, Y, Z, 1, 3) with vector intent)", path
            )
        if data.shape[-1] != 3:
            raise InputError(f"a 3D displacement field has 3 components, this one has {data.shape[-1]}", path)
        return DisplacementField(Image(_flip_vectors(data), nimg.affine, {"intent": "vector", "source": str(p)}))
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as e:
        raise InputError(f"cannot read the displacement field ({str(e).strip().splitlines()[-1][:120]})", path) from e
    try:
        return DisplacementField(_sitk_vector_image(sitk.Cast(img, sitk.sitkVectorFloat32)))
    except (ValueError, RuntimeError) as e:
        raise InputError(f"not a displacement field: {str(e)[:160]}", path) from e


# -- writing -------------------------------------------------------------------------------------


def write_transform(transform: Transform | TransformChain, path: str | Path, *, force: bool = False) -> None:
    """Write an affine (``.mat``, ``.tfm``, ``.txt``) or a displacement field (``.nii.gz`` ...).

    A chain of affines is composed into one affine. Written atomically.

    Raises:
        ProcessingError: unknown extension, a field to an affine format or an
            affine to a field format, an existing output without ``force``.
    """
    suf = _suffix(path)
    t = _single(transform, path)
    if suf in AFFINE_SUFFIXES:
        if not isinstance(t, AffineTransform):
            raise ProcessingError("a displacement field cannot be written as an affine (.mat/.tfm): use .nii.gz", path)
        write_affine(t, path, force=force)
    elif suf in FIELD_SUFFIXES:
        if not isinstance(t, DisplacementField):
            raise ProcessingError("an affine is written as .mat or .tfm, not as an image", path)
        write_displacement_field(t, path, force=force)
    else:
        raise ProcessingError("unknown transform extension (.mat, .tfm, .txt for affines; .nii.gz, .nii, .nrrd, .mha for fields)", path)


def _single(transform: Transform | TransformChain, path: str | Path) -> Transform:
    if isinstance(transform, (AffineTransform, DisplacementField)):
        return transform
    items = list(transform)
    if items and all(isinstance(t, AffineTransform) for t in items):
        out = items[0]
        for t in items[1:]:
            out = t.compose(out)
        return out
    if len(items) == 1:
        return items[0]
    raise ProcessingError("one file holds one transform: write the field and the affine separately", path)


def write_affine(t: AffineTransform, path: str | Path, *, force: bool = False) -> None:
    """Write an affine as an ITK/ANTs ``.mat`` (MATLAB v4) or ITK text ``.tfm``/``.txt``."""
    params, fixed = affine_to_itk(t)
    with atomic_output(path, force) as tmp:
        if _suffix(path) == ".mat":
            from scipy import io as sio

            # MATLAB v4, double, column vectors: byte for byte what ITK's MatlabTransformIO writes.
            sio.savemat(str(tmp), {"AffineTransform_double_3_3": params.reshape(-1, 1), "fixed": fixed.reshape(-1, 1)}, format="4")
        else:
            tmp.write_text(
                "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
                f"Parameters: {' '.join(_g(v) for v in params)}\nFixedParameters: {' '.join(_g(v) for v in fixed)}\n"
            )


def _g(v: float) -> str:
    return repr(float(v))


def gzip_fast(data: bytes) -> bytes:
    """gzip bytes at the fastest level: ISA-L when installed (``isal``), else zlib.

    A 1 mm brain's displacement field is about 90 MB of float32 that deflate
    barely shrinks; zlib's level 1 spent 2.6 CPU s on each (forward and inverse),
    a tenth of a whole ``register`` run, ISA-L 0.2 s. Any gzip reader reads both.
    """
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a dependency; a stripped install still writes
        import gzip

        return gzip.compress(data, compresslevel=1, mtime=0)
    return igzip.compress(data, compresslevel=1, mtime=0)


def write_displacement_field(field: DisplacementField | Image, path: str | Path, *, force: bool = False) -> None:
    """Write a field as ITK reads it: LPS displacements, 5D ``(X, Y, Z, 1, 3)``, vector intent (NIfTI)."""
    img = field.field if isinstance(field, DisplacementField) else field
    lps = _flip_vectors(np.asarray(img.data, dtype=np.float32))
    if _suffix(path) in (".nii", ".nii.gz"):
        import nibabel as nib

        nimg = nib.Nifti1Image(np.ascontiguousarray(lps[:, :, :, None, :]), img.affine)
        hdr = nimg.header
        hdr.set_sform(img.affine, code=1)
        hdr.set_qform(img.affine, code=1)
        hdr.set_xyzt_units("mm", "sec")
        hdr.set_intent("vector")
        hdr["descrip"] = b"medcli displacement field (LPS mm)"
        with atomic_output(path, force) as tmp:
            if _suffix(path) == ".nii.gz":
                Path(tmp).write_bytes(gzip_fast(nimg.to_bytes()))
            else:
                nimg.to_filename(str(tmp))
        return
    import SimpleITK as sitk

    from medcli.io.itk import _quiet_stderr

    sp = np.asarray(img.spacing)
    vec = sitk.GetImageFromArray(np.ascontiguousarray(lps.transpose(2, 1, 0, 3)), isVector=True)
    vec.SetSpacing(tuple(sp.tolist()))
    vec.SetDirection(tuple((_F[:3, :3] @ (img.affine[:3, :3] / sp)).ravel().tolist()))
    vec.SetOrigin(tuple((_F[:3, :3] @ img.affine[:3, 3]).tolist()))
    with atomic_output(path, force) as tmp, _quiet_stderr():
        sitk.WriteImage(vec, str(tmp), True)

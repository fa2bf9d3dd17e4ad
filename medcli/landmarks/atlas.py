"""The atlas method: register the subject with the set's template, carry the template's landmarks over.

Direction (the part that is easy to get wrong): the subject is the *moving*
image and the template the *fixed* one. :func:`medcli.register.methods.register`
returns the chain that maps a fixed-space point to the moving-space point on the
same anatomy (ITK's pull convention), so the template's landmarks land on the
subject by applying that chain to them directly: no inverse field, no
fixed-point inversion, and the deformation is estimated on the template's grid,
where the landmarks are.

The bundled template (``sample:t1``) is skull-stripped. A head with its skull
is first brain-extracted with :mod:`medcli.segment.brain` (or the user's
``--mask`` is used), so that scalp and skull do not pull the brain out of place;
whether the skull is on is recognised by :mod:`medcli.segment.contrast`, which
also refuses images that are not heads.

Two checks after registration refuse a non-head image in one line (both methods): the affine stage's result must
show the template's tissues (:func:`check_tissue`, a correlation ratio: the diffeomorphic stage can bend texture into
the brain's outline, an affine map cannot), and the registered image must correlate with the template over its brain
(:func:`check_head`).

The diffeomorphic registration runs on the template's *landmark box* only (:func:`landmark_box`: the landmarks'
bounding box and :data:`BOX_MARGIN_MM` around it), not on the whole template: the deformation is only ever read at
the landmarks, and the box is about a quarter of the template's voxels (2 mm: 56 x 79 x 50 of 98 x 116 x 94), which
is where the method's time went. The non-head check after the affine stage still looks at the whole template.

Each landmark gets a confidence: the Pearson correlation of the template and the
registered subject in a cube of :data:`CONFIDENCE_RADIUS_MM` around the landmark
(clipped to 0..1; a T2 subject correlates negatively with a T1 template, so the
absolute value is taken across contrasts). It says how well the anatomy around
the point matched, not a calibrated probability. A landmark that lands outside the
subject's field of view is reported missing (NaN) with a warning, never clamped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medcli.errors import InputError, ProcessingError
from medcli.image import Image
from medcli.io.points import Points
from medcli.landmarks.sets import LandmarkSet

SKULL = ("auto", "on", "off")
#: Half side of the cube (mm) in which the per-landmark confidence is measured.
CONFIDENCE_RADIUS_MM = 6.0
#: Below this |Pearson r| of the template and the registered image over the template's brain,
#: the image is taken for something else than a head (measured: T1 0.9+, T2-like 0.5+, a box or noise < 0.2).
MIN_HEAD_CORRELATION = 0.3
#: Below this correlation ratio (eta squared: the share of the subject's variance over the template's brain that the
#: template's intensity explains, in :data:`TISSUE_BINS` bins; :func:`check_tissue`) after the *affine* stage, the
#: image is taken for something else than a head. The diffeomorphic stage can bend a textured non-head image into the
#: brain's outline (|r| after it: smooth random texture 0.43-0.46, a body MR volume 0.42, noise in a head-sized
#: ellipsoid 0.31, all above :data:`MIN_HEAD_CORRELATION`), but an affine map cannot invent the tissue pattern; eta
#: squared, unlike r, also accepts contrasts that are not monotone in the T1 template's (PD, FLAIR). Measured after
#: the affine stage (2 mm): bench_landmarks' 12 heads 0.50-0.96 (skull-stripped 0.95-0.96, skull-on 0.50-0.54),
#: bench_brain_contrast's 8 skull-on heads 0.30-0.73 (lowest: PD 1 mm 0.30, T2 with 4 mm slices 0.31, FLAIR with
#: 5 mm slices 0.34), 3 more held-out T2 skull-on heads (1, 3, 5 mm slices) 0.56-0.78; non-heads 0.001-0.09 (smooth
#: texture, noise, each alone and in a head-sized ellipsoid, the 3D Shepp-Logan phantom, a body CT and a body MR
#: volume: the highest). The threshold sits about halfway (geometric) between 0.09 and 0.30.
MIN_TISSUE_MATCH = 0.17
TISSUE_BINS = 16
#: Smoothing (Gaussian sigma, mm) of both images before :func:`check_tissue`, and the subject's foreground there
#: (a share of its 99th percentile over the template's brain).
TISSUE_SMOOTH_MM = 2.0
FOREGROUND = 0.05
#: The affine stages of the atlas method, and of the learned one when a brain mask is used (skull on; a
#: :class:`medcli.register.methods.Options` subset): 4 and 2 mm levels on
#: 10 000 point samples. Measured on bench_landmarks' six cases against register's default (4/2/1 mm, 60 000):
#: atlas 0.36/0.40/0.56/0.45 mm vs 0.37/0.39/0.60/0.46 on the skull-stripped ones at 2.5 s less CPU; against the
#: learned method's former 4 mm-only start (20 000 samples): 0.65/0.64/0.59/1.25/0.91/1.02 vs 0.65/0.69/0.59/1.14/
#: 0.90/1.56 mm (the T2 skull-on head with 3 mm slices is the one the 2 mm level rescues), 0.5 s less CPU. On the
#: 1 mm template (atlas's default grid; SyN stops at 2 mm either way): T1 0.26 vs 0.26 mm, T2-like 0.35 vs 0.31, 5 s less CPU.
AFFINE: dict[str, Any] = {"affine_levels": ((4.0, 40), (2.0, 20)), "affine_samples": 10000}
#: Margin (mm) of :func:`landmark_box` around the landmarks' bounding box (the AFIDs': 69 x 116 x 56 mm on the
#: template). Chosen on validation cases made like bench_landmarks' 2 mm skull-stripped ones but from other random
#: transforms (not the benchmark's): mean radial error over 4 cases / CPU s, whole template 0.444 mm / 70 s, brain
#: box + 8 mm 0.418 / 46, landmark box + 15 mm 0.361 / 21, + 20 mm 0.349 / 28, + 25 mm 0.376 / 28, + 30 mm 0.374 / 32.
#: More precise as well as faster: the SyN's step size is set on a quantile of the gradient over the grid, and over
#: the box that quantile is the deep anatomy's, not the cortex's.
BOX_MARGIN_MM = 20.0


@dataclass
class Detection:
    """What :func:`detect_atlas` returns."""

    points: Points
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def check_image(image: Image, source: str | None = None) -> Image:
    """The image as 3D (a 4D image of one volume is accepted); one-line errors otherwise."""
    data = np.asarray(image.data)
    if data.ndim == 4 and data.shape[3] == 1:
        image = image.with_data(data[..., 0])
    elif data.ndim != 3:
        raise InputError(f"landmarks need a 3D head image, got shape {tuple(data.shape)}", source)
    if sum(s > 1 for s in image.shape[:3]) < 3:
        raise InputError(f"landmarks need a 3D head image, got shape {tuple(image.shape)} (a 2D slice)", source)
    return image


def outside(image: Image, ras: np.ndarray) -> np.ndarray:
    """Boolean (N,): points outside the image's field of view (beyond half a voxel of its edge voxels)."""
    vox = image.world_to_voxel(ras)
    shape = np.array(image.shape[:3], float)
    return ~((vox >= -0.5) & (vox <= shape - 0.5)).all(axis=1)


def local_similarity(a: np.ndarray, b: np.ndarray, affine: np.ndarray, ras: np.ndarray, radius_mm: float) -> np.ndarray:
    """|Pearson r| of ``a`` and ``b`` (same grid) in a cube around each point (NaN where flat or off the grid)."""
    vox = np.rint(np.linalg.solve(affine, np.c_[ras, np.ones(len(ras))].T).T[:, :3]).astype(int)
    sp = np.sqrt((affine[:3, :3] ** 2).sum(0))
    r = np.maximum(1, np.rint(radius_mm / sp).astype(int))
    out = np.full(len(ras), np.nan)
    for i, c in enumerate(vox):
        lo, hi = np.maximum(c - r, 0), np.minimum(c + r + 1, a.shape)
        if (hi <= lo).any():
            continue
        sl = tuple(slice(x, y) for x, y in zip(lo, hi))
        x, y = a[sl].ravel().astype(float), b[sl].ravel().astype(float)
        x, y = x - x.mean(), y - y.mean()
        den = np.sqrt((x * x).sum() * (y * y).sum())
        if den > 0:
            out[i] = abs(float((x * y).sum() / den))
    return out


def brain_mask_for(image: Image, skull: str, device: Any = None, log: Callable[[str], None] | None = None) -> tuple[np.ndarray | None, list[str]]:
    """The subject's brain mask when its skull is on (``None`` when it is off), and warnings.

    ``skull="auto"`` recognises the image first (and refuses one that is not a head).
    """
    warnings: list[str] = []
    if skull == "off":
        return None, warnings
    seen = None
    if skull == "auto":
        from medcli.segment.contrast import describe, recognise

        seen = recognise(image, device=device)
        if log:
            log(f"recognised {describe(seen)}")
        if seen["region"] == "other body part" and seen["region_confidence"] > 0.5:
            raise InputError(
                f"the image does not look like a head ({seen['region']}, {seen['region_confidence']:.2f}): "
                "landmarks need a head MR image", image.meta.get("source"),
            )
        if seen["modality"] == "CT":
            warnings.append("the image looks like CT: the atlas landmarks were validated on MR only")
        if not seen["skull"]:
            return None, warnings
    from medcli.segment.brain import extract_brain_checked

    res = extract_brain_checked(image, device=device, contrast=seen)
    return np.asarray(res.mask.data) > 0, warnings + res.warnings


def detect_atlas(
    image: Image,
    lset: LandmarkSet,
    *,
    mask: np.ndarray | None = None,
    skull: str = "auto",
    template: Image | None = None,
    reference: Image | None = None,
    seed: int = 0,
    device: Any = "cpu",
    options: Any = None,
    log: Callable[[str], None] | None = None,
) -> Detection:
    """The landmarks of ``lset`` on ``image`` by registration with the set's template (its :func:`landmark_box`).

    Args:
        image: A 3D head image (any MR contrast, skull on or off).
        lset: The landmark set (:func:`medcli.landmarks.sets.load_set`).
        mask: Brain mask on the image's grid; when given, no brain extraction is run.
        skull: ``auto`` (recognise), ``on`` (extract the brain) or ``off`` (register the image as it is).
        template: The set's template image already read, on the grid the registration should run on (e.g.
            resampled coarser for speed; :func:`atlas_template` resamples only the landmark box). The registration
            uses its :func:`landmark_box`.
        reference: The set's whole template (the non-head check's view of the brain; default ``template``).
        seed: Seed of the registration's affine stages.
        device: Torch device.
        options: :class:`medcli.register.methods.Options` for the registration (default: register's, with the
            :data:`AFFINE` stages).
        log: Callable taking progress lines.

    Returns:
        :class:`Detection`: the points (RAS mm, confidence per point, NaN where outside
        the field of view), warnings and registration statistics.
    """
    from medcli import io
    from medcli.register.methods import Options, register
    from medcli.register.transforms import TransformChain, warp_image

    if skull not in SKULL:
        raise ValueError(f"skull must be one of {SKULL}")
    src = image.meta.get("source")
    image = check_image(image, src)
    mask, warnings = subject_mask(image, mask, skull, device, log)
    if template is None:
        template = reference if reference is not None else io.read(lset.template)
    tmpl = landmark_box(template, lset.points.ras)
    opts = options if options is not None else Options(**AFFINE)
    res = register(image, tmpl, kind="syn", moving_mask=mask, seed=seed, device=device, options=opts, log=log)
    t_data, w_data = np.asarray(tmpl.data, np.float32), np.asarray(res.warped.data, np.float32)
    coarse, affine = coarse_grid(reference if reference is not None else template), TransformChain([res.chain[-1]])
    eta = check_tissue(np.asarray(coarse.data, np.float32), np.asarray(warp_image(image, affine, coarse).data), lset, src,
                       warped_mask(image, mask, affine, coarse), min(coarse.spacing))
    stats = dict(res.stats, head_correlation=round(check_head(t_data, w_data, lset, src), 4), tissue_match=round(eta, 4))
    ras = res.chain.transform_points(lset.points.ras)
    conf = local_similarity(t_data, w_data, tmpl.affine, lset.points.ras, CONFIDENCE_RADIUS_MM)
    return Detection(points=found(image, lset, ras, conf, warnings), warnings=warnings, stats=stats)


def landmark_box(template: Image, points: np.ndarray, margin_mm: float = BOX_MARGIN_MM) -> Image:
    """The voxels of ``template`` whose centres lie within ``margin_mm`` of the bounding box of ``points`` (RAS mm).

    A crop (no resampling), clipped to the template's grid. Cropping a crop with the same points and margin, or its
    resampling that covers the same field of view (:func:`atlas_template`), returns it whole.

    Example:
        >>> t = Image(np.zeros((50, 50, 50), np.float32), np.eye(4))
        >>> landmark_box(t, np.array([[10.0, 20, 30], [12, 24, 31]]), margin_mm=5).shape
        (13, 15, 12)
    """
    vox = template.world_to_voxel(np.asarray(points, np.float64))
    m = margin_mm / np.asarray(template.spacing, np.float64)
    eps = 1e-3  # voxel centres on the box's face stay in whatever the rounding of the grid's affine
    lo = np.maximum(np.ceil(vox.min(0) - m - eps).astype(int), 0)
    hi = np.minimum(np.floor(vox.max(0) + m + eps).astype(int) + 1, template.shape[:3])
    if (hi <= lo).any():
        raise ValueError("the landmarks' box is outside the template's grid")
    aff = template.affine.copy()
    aff[:3, 3] = template.voxel_to_world(lo[None].astype(np.float64))[0]
    data = np.asarray(template.data)[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    return Image(np.ascontiguousarray(data), aff, dict(template.meta))


def atlas_template(reference: Image, lset: LandmarkSet, mm: float) -> Image:
    """The template the atlas method registers on, at ``mm``: :func:`landmark_box` of ``reference``, resampled.

    Only the box is resampled (a few hundredths of a second, against 0.2-0.3 CPU s for the whole 1 mm template).
    """
    box = landmark_box(reference, lset.points.ras)
    return box if np.allclose(reference.spacing, mm) else box.resample(mm)


def subject_mask(image: Image, mask: np.ndarray | None, skull: str, device: Any = None,
                 log: Callable[[str], None] | None = None) -> tuple[np.ndarray | None, list[str]]:
    """The user's ``--mask`` checked against the image, else :func:`brain_mask_for`; and warnings."""
    if mask is None:
        return brain_mask_for(image, skull, device, log)
    mask = np.asarray(mask) > 0
    if mask.shape != image.shape[:3]:
        raise InputError(f"--mask has shape {mask.shape}, the image {image.shape[:3]}")
    if not mask.any():
        raise InputError("--mask is empty")
    return mask, []


def _abs_r(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """|Pearson r| of ``a`` and ``b`` over ``where`` (0 where ``b`` is flat there)."""
    return abs(float(np.corrcoef(a[where], b[where])[0, 1])) if b[where].std() > 0 else 0.0


def correlation_ratio(a: np.ndarray, b: np.ndarray, where: np.ndarray, bins: int = TISSUE_BINS) -> float:
    """Eta squared of ``b`` on ``a`` over ``where``: the share of ``b``'s variance explained by ``a``'s quantile bin.

    1 when ``b`` is any function of ``a`` (monotone or not: T1, T2, PD and FLAIR are all functions of the tissue the
    T1 template shows), about 0 when it is unrelated (0 where ``b`` is flat there).

    Example:
        >>> a = np.linspace(0, 1, 1000)
        >>> round(correlation_ratio(a, (a - 0.5) ** 2, a >= 0), 2), correlation_ratio(a, np.ones(1000), a >= 0)
        (0.98, 0.0)
    """
    x, y = a[where].astype(np.float64), b[where].astype(np.float64)
    ss = float(((y - y.mean()) ** 2).sum())
    if ss <= 0:
        return 0.0
    k = np.searchsorted(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]), x)
    n = np.bincount(k, minlength=bins)
    means = np.bincount(k, y, minlength=bins) / np.maximum(n, 1)
    return 1.0 - float(((y - means[k]) ** 2).sum()) / ss


def _brain_views(t_data: np.ndarray, subject_brain: np.ndarray | None) -> list[np.ndarray]:
    """Where the head checks look: the template's brain, and its part in ``subject_brain`` (see :func:`check_head`).

    The brain is the template's tissue above a fifth of its 99th percentile; the second view only where it keeps at
    least half of that brain.
    """
    brain = t_data > 0.2 * np.percentile(t_data, 99)
    views = [brain]
    if subject_brain is not None and (brain & subject_brain).sum() >= 0.5 * brain.sum():
        views.append(brain & subject_brain)
    return views


def check_head(t_data: np.ndarray, w_data: np.ndarray, lset: LandmarkSet, source: str | None,
               subject_brain: np.ndarray | None = None) -> float:
    """|Pearson r| of the template and the registered subject over the template's brain; refuses a non-head.

    The brain is the template's tissue above a fifth of its 99th percentile: its faint rim (partial volume with
    the background) is left out, because a skull-stripped PD or T2 image is bright right up to its edge and that
    step, not the anatomy, would decide the correlation (PD-like case: |r| 0.21 with the rim, 0.98 without).

    ``subject_brain`` (a skull-on head's brain mask on the template's grid; the learned method's affine start
    passes it) adds a second view, the subject's brain within the template's, and the larger |r| counts: the
    scalp, skull and bright CSF that an affine start leaves inside the template's brain are not what the template
    shows, and on a T2 head with 4 mm slices they decided the correlation (bench_brain_contrast's head 5, its true
    brain mask: |r| 0.43 over the template's brain, 0.47 over both; with the brain model's mask 0.36 vs 0.46, and
    0.13 vs 0.35 after the former 4 mm-only affine start, a refused run), while a FLAIR-like brain (GM > WM > CSF,
    not monotone in the T1 template) needs its dark CSF rim against the background (heads 3 and 7: 0.41/0.39 over
    the template's brain, 0.20/0.22 over both). The second view is used only where it keeps at least half of the
    template's brain, so that a mask that landed elsewhere cannot pick a small region that happens to match.
    """
    rho = max(_abs_r(t_data, w_data, v) for v in _brain_views(t_data, subject_brain))
    if not rho >= MIN_HEAD_CORRELATION:
        raise ProcessingError(
            f"the image does not match the {lset.name} template after registration (|r| = {rho:.2f} over its brain, "
            f"expected >= {MIN_HEAD_CORRELATION}): is it a head MR image?", source,
        )
    return rho


def check_tissue(t_data: np.ndarray, a_data: np.ndarray, lset: LandmarkSet, source: str | None,
                 subject_brain: np.ndarray | None = None, voxel_mm: float = 2.0) -> float:
    """Correlation ratio of the *affinely* registered subject on the template over its brain; refuses a non-head.

    ``a_data`` is the subject through the affine stage only, on the template's grid (``t_data``, voxels of
    ``voxel_mm``); ``subject_brain`` adds the same second view as in :func:`check_head`. See
    :data:`MIN_TISSUE_MATCH` for why the affine stage. Both images are smoothed by :data:`TISSUE_SMOOTH_MM` first:
    what the affine leaves is a real head's residual (non-linear) misalignment of fine structure, not a sign of
    another object. Each view is then narrowed to the subject's foreground (above :data:`FOREGROUND` of its 99th
    percentile there) less the smoothing kernel's reach, where the subject's own edge against its background cannot
    enter: eta squared does not see scale, and the faint ramp that smoothing draws inside an object's edge follows the
    template's brain outline whatever the object is (a constant box in the head's outline: 0.73 with the edge, 0.02
    without). Measured at 2 mm on bench_landmarks' cases: T1 0.96, T2-like 0.96, PD-like 0.96 (0.27 unsmoothed,
    with the edge), skull-on T1 0.50; textured non-heads 0.001-0.09 (see :data:`MIN_TISSUE_MATCH`).
    """
    from scipy import ndimage

    sigma = TISSUE_SMOOTH_MM / float(voxel_mm)
    reach = int(4.0 * sigma + 0.5)  # scipy's kernel radius (truncate=4), per axis: a cube
    ts, ws = (ndimage.gaussian_filter(np.asarray(x, np.float32), sigma) for x in (t_data, a_data))
    eta = 0.0
    for v in _brain_views(t_data, subject_brain):
        fg = a_data > FOREGROUND * np.percentile(a_data[v], 99)
        fg = v & ndimage.binary_erosion(fg, np.ones((3, 3, 3), bool), iterations=reach) if reach else v & fg
        eta = max(eta, correlation_ratio(ts, ws, fg) if fg.any() else 0.0)
    if not eta >= MIN_TISSUE_MATCH:
        raise ProcessingError(
            f"the image does not show the {lset.name} template's tissues after affine registration (eta^2 = {eta:.2f} "
            f"over its brain, expected >= {MIN_TISSUE_MATCH}): is it a head MR image?", source,
        )
    return eta


def coarse_grid(template: Image, mm: float = 2.0) -> Image:
    """``template`` subsampled (every k-th voxel, no interpolation) to about ``mm``: where :func:`check_tissue` looks."""
    k = max(1, round(mm / min(template.spacing)))
    if k == 1:
        return template
    aff = template.affine.copy()
    aff[:3, :3] = aff[:3, :3] * k
    return Image(np.asarray(template.data)[::k, ::k, ::k], aff)


def warped_mask(image: Image, mask: np.ndarray | None, chain: Any, template: Image) -> np.ndarray | None:
    """The subject's brain mask carried onto the template's grid through ``chain`` (``None`` without a mask).

    Only the checks of the affine stage use it: through the atlas method's diffeomorphic chain on the 1 mm
    template the warp costs seconds, and after that registration the check is far from its threshold.
    """
    if mask is None:
        return None
    from medcli.register.transforms import warp_image

    return np.asarray(warp_image(image.with_data(mask.astype(np.float32)), chain, template).data) >= 0.5


def found(image: Image, lset: LandmarkSet, ras: np.ndarray, conf: np.ndarray, warnings: list[str]):
    """The set's points at ``ras`` with confidences; those outside the field of view missing (NaN), with a warning."""
    out = outside(image, ras)
    if out.any():
        names = [lset.points.descriptions[i] or lset.points.labels[i] for i in np.flatnonzero(out)]
        warnings.append(f"{int(out.sum())} landmark(s) outside the field of view, reported missing: {', '.join(names)}")
        ras[out] = np.nan
        conf[out] = np.nan
    pts = lset.points.moved(ras)
    pts.confidences = np.round(conf, 4)
    return pts

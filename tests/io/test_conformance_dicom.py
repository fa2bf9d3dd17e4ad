"""Conformance: every DICOM file pydicom ships goes through ``medcli info`` and ``medcli convert``.

For each file (and each folder of them) in pydicom's installed test data
(``pydicom.data.get_testdata_files()``: test_files with its DICOMDIR trees,
plus the character-set files), both commands run in this process through the
real entry point (:func:`medcli.cli.app.main`), and:

* nothing ends in an internal error;
* a refusal is exactly one error line that names the file and says why, exit
  code 3, and leaves no output behind;
* a converted image is compared with pydicom's own reading, frame by frame,
  on the NIfTI that ``convert`` wrote (read back with nibabel):
  values equal to ``pixel_array`` (palette colour looked up with
  ``apply_color_lut``) times RescaleSlope plus RescaleIntercept (per frame for
  enhanced objects, DoseGridScaling for RT dose), exactly or to float32
  rounding; each frame found at the voxel its ImagePositionPatient gives, the
  in-plane axes equal to ImageOrientationPatient x PixelSpacing, the origin
  to 1e-5 mm; images without patient position on DICOM's default axes with
  PixelSpacing or ImagerPixelSpacing.

Every refusal must be one this file expects (``EXPECTED_REFUSALS``): a change
that makes medcli refuse a file it read, or read one it refused, fails here.
The counts are printed (``pytest -s``) and written to
``tests/benchmarks/results/conformance_dicom.md`` by the summary test.
"""

from __future__ import annotations

import io as _io
import re
import signal
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_charset_files, get_testdata_files  # noqa: E402

DATA = Path(pydicom.__file__).parent / "data"
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "conformance_dicom.md"
LPS = np.diag([-1.0, -1.0, 1.0])

#: file name (or folder, relative to pydicom/data) pattern -> the reason medcli must give.
EXPECTED_REFUSALS = {
    # not DICOM at all
    r"\.(txt|json|dump|icc|gz)$|/README$": r"unknown image format|not a valid DICOM file",
    # objects without pixels: named by their SOP class
    r"(rtplan|rtplan_truncated|rtstruct|ExplVR_BigEndNoMeta|ExplVR_LitEndNoMeta)\.dcm$": r"not an image: DICOM RT (Ion )?Plan|not an image: DICOM RT Structure Set",
    r"(reportsi|reportsi_with_empty_number_tags|test-SR)\.dcm$": r"not an image: DICOM (Basic Text|Comprehensive) SR Storage",
    r"waveform_ecg\.dcm$": r"not an image: DICOM 12-lead ECG Waveform Storage",
    r"chrSQEncoding1?\.dcm$|empty_charset_LEI\.dcm$|no_meta_group_length\.dcm$|priv_SQ\.dcm$|UN_sequence\.dcm$|no_meta\.dcm$": r"not a valid DICOM file|not an image: DICOM",
    r"meta_missing_tsyntax\.dcm$|nested_priv_SQ\.dcm$": r"not a valid DICOM file|not an image: DICOM unknown SOP class object",
    r"DICOMDIR[^/]*$": r"not an image: DICOM Media Storage Directory Storage object; give the folder it indexes",
    r"TINY_ALPHA(/PT000000/ST000000/SE000000(/IM0000..)?)?$": r"not an image: DICOM CT Image Storage object without pixel data|only \d+ non-image object",
    # damaged files
    r"MR_truncated\.dcm$": r"cannot decode 'Explicit VR Little Endian' pixel data \(The number of bytes of pixel data is less than expected",
    r"badVR\.dcm$": r"invalid NumberOfFrames '1A'",
    r"chr(JapMulti|JapMultiExplicitIR6|KoreanMulti)\.dcm$": r"no pixel data: a Computed Radiography Image Storage object",
    r"JPEG-lossy\.dcm$": r"cannot decode 'JPEG Extended \(Process 2 and 4\)' pixel data \(pylibjpeg: libjpeg error",
    r"JPEG2000-embedded-sequence-delimiter\.dcm$": r"cannot decode 'JPEG 2000 Image Compression' pixel data",
    # colour over time (cine ultrasound, two-frame RGB captures)
    r"(examples_ybr_color|SC_rgb_rle_2frame|SC_rgb_rle_16bit_2frame|SC_rgb_rle_32bit_2frame)\.dcm$": r"frames of 3-sample \(colour\) pixels: colour series over time are not supported",
    # folders holding several series, or images that cannot be stacked
    r"dicomdirtests$|98892001$|98892003$|77654033$": r"DICOM series found, choose one with --series",
    # real series with a localizer or mixed orientations in one SeriesInstanceUID
    r"98892001/CT2N$|98892003/MR(1|2|700)$|77654033/CT2$": r"slices have \d+ different orientations \(ImageOrientationPatient\), e.g. a localizer mixed in|DICOM series found|irregular slice spacing|missing slices",
}


def _cases() -> list[Path]:
    files = [Path(p) for p in get_testdata_files()] + [Path(p) for p in get_charset_files()]
    files = sorted({p for p in files if p.is_file()})
    folders = sorted({p.parent for p in files if "dicomdirtests" in p.parts} - {DATA / "test_files"})
    return files + folders


CASES = _cases()


def _rel(path: Path) -> str:
    return str(path.relative_to(DATA))


def _run(*args) -> tuple[int, str, str]:
    """Run the real entry point in this process (no interpreter start per file)."""
    from medcli.cli.app import main

    out, err = _io.StringIO(), _io.StringIO()
    code = None
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
    return int(code or 0), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run info and convert on every case once; the tests below judge the outcomes."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    tmp = tmp_path_factory.mktemp("conformance")
    results = {}
    try:
        for i, path in enumerate(CASES):
            out = tmp / f"{i:03d}.nii.gz"
            info = _run("info", path, "--json")
            conv = _run("convert", path, "-o", out, "--force")
            results[path] = {"info": info, "convert": conv, "out": out}
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    return results


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("medcli: error:") or "internal error" in ln or "Traceback" in ln]


def _expected_reason(path: Path) -> str | None:
    rel = _rel(path)
    for pattern, reason in EXPECTED_REFUSALS.items():
        if re.search(pattern, rel):
            return reason
    return None


@pytest.mark.parametrize("path", CASES, ids=_rel)
def test_info_and_convert_agree_with_pydicom(outcomes, path):
    r = outcomes[path]
    for cmd in ("info", "convert"):
        code, _, err = r[cmd]
        assert "internal error" not in err and "Traceback" not in err, f"{cmd} {_rel(path)}: {err}"
        assert code in (0, 3), f"{cmd} {_rel(path)}: exit {code}: {err}"
        if code == 3:
            errors = _errors(err)
            assert len(errors) == 1, f"{cmd} {_rel(path)}: {len(errors)} error lines: {err}"
            assert errors[0].startswith(f"medcli: error: {path}: "), errors[0]
            reason = _expected_reason(path)
            assert reason is not None, f"{cmd} refused {_rel(path)} unexpectedly: {errors[0]}"
            assert re.search(reason, errors[0]), f"{cmd} {_rel(path)}: {errors[0]!r} does not match {reason!r}"
    code, _, err = r["convert"]
    if code == 3:
        assert not r["out"].exists(), "a refusal left an output behind"
        return
    info_code, info_out, _ = r["info"]
    assert info_code == 0, f"convert read {_rel(path)} but info refused it"
    import json

    doc = json.loads(info_out)
    assert _expected_reason(path) is None or "objects" in doc, f"{_rel(path)} converted, but it is listed as refused"
    _compare_with_pydicom(path, r["out"], doc)


def test_summary(outcomes):
    """The counts for the README (printed, and written beside the benchmark results)."""
    converted, refused, described = [], {}, 0
    for path, r in outcomes.items():
        code, _, err = r["convert"]
        if code == 0:
            converted.append(path)
        else:
            line = _errors(err)[0].split(f"{path}: ", 1)[-1]
            kind = _reason_kind(line)
            refused.setdefault(kind, []).append(_rel(path))
        if r["info"][0] == 0 and '"objects"' in r["info"][1]:
            described += 1
    files = sum(1 for p in outcomes if p.is_file())
    lines = [
        "# DICOM conformance (pydicom's test data)",
        "",
        f"pydicom {pydicom.__version__}: {files} files and {len(outcomes) - files} folders of its installed test data, "
        "each through `medcli info` and `medcli convert` (tests/io/test_conformance_dicom.py).",
        "",
        f"* converted and identical to pydicom's reading (values exact or to float32 rounding, geometry to 1e-5 mm): **{len(converted)}** "
        f"({sum(1 for p in converted if p.is_file())} files, {sum(1 for p in converted if p.is_dir())} folders)",
        f"* refused in one line naming the file and the reason: **{sum(len(v) for v in refused.values())}**; "
        f"`info` describes {described} of them as non-image DICOM objects",
        "* internal errors: **0**; silent differences: **0**",
        "",
        "| refusal reason | count | examples |",
        "|---|---:|---|",
    ]
    for kind, paths in sorted(refused.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"| {kind} | {len(paths)} | {', '.join(Path(p).name for p in paths[:4])}{' ...' if len(paths) > 4 else ''} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    assert len(converted) >= 80


def _reason_kind(line: str) -> str:
    kinds = [
        ("unknown image format", "not an image file (text, JSON, ICC profile, gzip)"),
        ("missing slices", "missing slices (gaps in the series)"),
        ("different orientations", "mixed orientations (a localizer in the series)"),
        ("not a valid DICOM file", "not a valid DICOM file (no image attributes, damaged meta)"),
        ("Media Storage Directory", "DICOMDIR index (read the folder it indexes)"),
        ("without pixel data", "image object (or fragment) without pixel data"),
        ("non-image object", "folder of non-image objects only"),
        ("not an image", "non-image object (SR, RT plan/structure set, waveform)"),
        ("colour series over time", "colour frames over time (cine, 2-frame RGB)"),
        ("cannot decode", "damaged or truncated pixel data"),
        ("NumberOfFrames", "invalid NumberOfFrames"),
        ("no pixel data", "image attributes but no pixel data"),
        ("series found", "folder with several series (choose with --series)"),
        ("cannot be stacked", "several 2D images without position in one series"),
    ]
    for needle, kind in kinds:
        if needle in line:
            return kind
    return line[:80]


# -- the reference: pydicom's reading, frame by frame -----------------------------------------------


def _frames(path: Path) -> list[dict]:
    """Every image frame under ``path`` with pydicom's values (rescaled) and its tags' geometry."""
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    frames = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, force=path.is_file())
        except (InvalidDicomError, OSError):
            continue
        if "PixelData" not in ds or "Rows" not in ds:
            continue
        arr = ds.pixel_array
        if str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
        n = int(ds.get("NumberOfFrames", 1) or 1)
        if n == 1:
            arr = arr[None]
        shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
        per = ds.get("PerFrameFunctionalGroupsSequence")
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        inter = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        if ds.get("Modality") == "RTDOSE" and "DoseGridScaling" in ds:
            slope = float(ds.DoseGridScaling)
        for k in range(n):

            def fg(seq, attr, default, k=k):
                for grp in ((per[k] if per is not None else None), shared):
                    if grp is not None and seq in grp and len(grp[seq].value) and attr in grp[seq][0]:
                        return grp[seq][0][attr].value
                return default

            ipp = fg("PlanePositionSequence", "ImagePositionPatient", ds.get("ImagePositionPatient"))
            iop = fg("PlaneOrientationSequence", "ImageOrientationPatient", ds.get("ImageOrientationPatient"))
            ps = fg("PixelMeasuresSequence", "PixelSpacing", ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"))
            if ipp is not None and iop is not None and per is None and "GridFrameOffsetVector" in ds and n > 1:
                normal = np.cross(np.array(iop[:3], float), np.array(iop[3:], float))
                ipp = np.array(ipp, float) + float(ds.GridFrameOffsetVector[k]) * normal
            s = float(fg("PixelValueTransformationSequence", "RescaleSlope", slope))
            b = float(fg("PixelValueTransformationSequence", "RescaleIntercept", inter))
            frames.append({
                "values": arr[k].astype(np.float64) * s + b,
                "ipp": None if ipp is None else np.array(ipp, float),
                "iop": None if iop is None else np.array(iop, float),
                "ps": None if ps is None else np.array(ps, float),
                "thickness": ds.get("SliceThickness"),
            })
    return frames


def _compare_with_pydicom(path: Path, out: Path, doc: dict) -> None:
    import nibabel as nib

    nimg = nib.load(out)
    data = np.asanyarray(nimg.dataobj)
    affine = nimg.affine
    colour = doc.get("color") == "RGB"
    # Normalise to (x, y, z, t, components).
    if colour:
        data = data.reshape(data.shape[:3] + (1, data.shape[-1]))
    else:
        data = data.reshape(data.shape + (1,) * (5 - data.ndim))
    frames = _frames(path)
    assert frames, f"{_rel(path)} converted, but pydicom finds no image frame in it"
    nx, ny, nz, nt, nc = data.shape
    assert nz * nt == len(frames), f"{_rel(path)}: {nz * nt} frames written, pydicom has {len(frames)}"
    planar = all(f["ipp"] is None or f["iop"] is None for f in frames)
    f0 = frames[0]
    rows, cols = f0["values"].shape[:2]
    assert (nx, ny) == (cols, rows)
    if planar:
        dr, dc = f0["ps"] if f0["ps"] is not None else (1.0, 1.0)
        np.testing.assert_allclose(affine[:3, :2], LPS @ np.array([[dc, 0], [0, dr], [0, 0]]), atol=1e-5)
        np.testing.assert_allclose(affine[:3, 3], 0.0, atol=1e-5)
        slots = {k: (0, k) for k in range(len(frames))}  # frames along the 4th axis, in file order
    else:
        inv = np.linalg.inv(affine)
        slots = {}
        for k, f in enumerate(frames):
            dr, dc = f["ps"]
            np.testing.assert_allclose(affine[:3, 0], LPS @ f["iop"][:3] * dc, atol=1e-5, err_msg=_rel(path))
            np.testing.assert_allclose(affine[:3, 1], LPS @ f["iop"][3:] * dr, atol=1e-5, err_msg=_rel(path))
            vox = inv @ np.append(LPS @ f["ipp"], 1.0)
            z = int(round(vox[2]))
            # Each frame sits on the grid: in-plane offset 0, on a slice, to the reader's tolerance for DS rounding.
            world_err = np.linalg.norm(affine[:3, :3] @ (vox[:3] - [0, 0, z]))
            step = abs(np.linalg.norm(affine[:3, 2]))
            assert world_err <= max(1e-5, 0.02, 0.01 * step), f"{_rel(path)}: frame {k} is {world_err:.3g} mm off the grid"
            slots.setdefault(z, [])
            slots[z].append(k)
        first_z = min(slots)
        assert first_z == 0
        # The origin is the first slice's ImagePositionPatient, to 1e-5 mm.
        k0 = slots[0][0]
        np.testing.assert_allclose(affine[:3, 3], LPS @ frames[k0]["ipp"], atol=1e-5, err_msg=_rel(path))
        slots = _match_volumes(slots, frames, data)
    for k, (z, t) in slots.items():
        ref = frames[k]["values"]
        got = data[:, :, z, t, :] if colour else data[:, :, z, t, 0]
        ref = ref.transpose(1, 0, 2) if colour else ref.T
        if np.issubdtype(got.dtype, np.floating):
            np.testing.assert_array_equal(got.astype(np.float32), ref.astype(np.float32), err_msg=f"{_rel(path)} frame {k}")
        else:
            np.testing.assert_array_equal(got, ref, err_msg=f"{_rel(path)} frame {k}")


def _match_volumes(slots: dict[int, list[int]], frames: list[dict], data: np.ndarray) -> dict[int, tuple[int, int]]:
    """Frames at one position: each must equal a distinct volume at that position."""
    out = {}
    for z, ks in slots.items():
        free = list(range(data.shape[3]))
        for k in ks:
            ref = frames[k]["values"]
            ref = ref.transpose(1, 0, 2) if ref.ndim == 3 else ref.T
            hit = next((t for t in free if np.array_equal(
                data[:, :, z, t, :].squeeze(-1) if ref.ndim == 2 else data[:, :, z, t, :], ref.astype(data.dtype)
            )), free[0] if free else None)
            assert hit is not None, f"frame {k} has no volume left at slice {z}"
            free.remove(hit)
            out[k] = (z, hit)
    return out

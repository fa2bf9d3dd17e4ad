"""Benchmark: DICOM series reading of medcli against SimpleITK (ITK + GDCM).

Both read the same series, written in this run with pydicom from the real MNI152
T1 (every slice, 197 x 233 pixels) with a known geometry, so the true world
position of every voxel is known:

* ``oblique``: rotated 20 degrees about two axes, 0.9 x 1.1 x 2.5 mm, files
  shuffled, RescaleSlope 0.5 / RescaleIntercept -100.
* ``enhanced``: the same volume as one enhanced multi-frame file, frames shuffled.
* ``missing slice``: the oblique series with one file deleted.
* ``gantry tilt``: 1 x 1 x 2 mm axial slices, each shifted 2 tan(15 deg) mm in-plane.
* ``CT_small``: pydicom's single CT slice (the bundled ``sample:ct``).
* ``JPEG 2000`` / ``RLE``: the oblique series re-encoded losslessly (pydicom's
  encoders), decoded by pydicom's plugins (medcli) and GDCM (SimpleITK).
* ``enhanced multi-echo``: 3 echoes of 16 slices in one enhanced file (4D).
* ``Siemens DWI mosaic``: nibabel's two DWI mosaics (b = 0, 1000), pixels
  replaced by random values; the truth is nibabel's CSA-based geometry.

Quality: the largest distance (mm) between where a reader puts a voxel centre
(its affine) and where the DICOM tags put it, over the 4 in-plane corner voxels of every slice, and
whether the voxel values equal the stored values times slope plus intercept.
A reader that refuses a series it cannot represent exactly scores "refused",
which is what medcli intends for missing slices and gantry tilt. Time: wall
seconds to get the array (median of 3), ratio medcli / SimpleITK.

Run: ``python tests/benchmarks/bench_dicom.py [--quick]`` (``--quick``: 48
slices instead of 189). Writes ``tests/benchmarks/results/dicom.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from dicomgen import LPS, compress_files, oblique_affine, write_enhanced, write_series  # noqa: E402

from medcli import io  # noqa: E402
from medcli.errors import MedcliError  # noqa: E402

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "dicom.md"


def corners(shape) -> np.ndarray:
    """The 4 in-plane corner voxels of every slice (a wrong slice position anywhere shows)."""
    return np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in range(shape[2])], float)


def true_world(positions_lps, row, col, dr, dc, ijk) -> np.ndarray:
    """World (RAS) of voxel centres straight from the tags: IPP of slice k + i*row*dc + j*col*dr."""
    out = []
    for i, j, k in ijk:
        p = positions_lps[int(k)] + i * dc * row + j * dr * col
        out.append(LPS @ p)
    return np.array(out)


def read_medcli(path: Path):
    img = io.read(path)
    return img.affine, img.data


def read_sitk(path: Path):
    import SimpleITK as sitk

    from medcli.io.itk import itk_geometry_to_affine

    if path.is_dir():
        r = sitk.ImageSeriesReader()
        r.SetFileNames(r.GetGDCMSeriesFileNames(str(path)))
        img = r.Execute()
    else:
        img = sitk.ReadImage(str(path))
    aff = itk_geometry_to_affine(img.GetDirection(), img.GetSpacing(), img.GetOrigin(), img.GetDimension())
    arr = sitk.GetArrayFromImage(img)
    arr = arr.transpose(tuple(range(arr.ndim))[::-1])
    return aff, arr


def timed(fn, path, repeats=3):
    times, result, error = [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            result = fn(path)
        except MedcliError as e:
            error = e.message.split(":")[0]
        except RuntimeError as e:  # ITK
            error = str(e).strip().splitlines()[-1][:60]
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result, error


def build_cases(work: Path, quick: bool):
    t1 = io.read("sample:t1").data
    nk = 48 if quick else t1.shape[2]
    z0 = (t1.shape[2] - nk) // 2
    vol = t1[:, :, z0 : z0 + nk].astype(np.float64)
    cases = []

    aff = oblique_affine(spacing=(0.9, 1.1, 2.5))
    lps = LPS @ aff[:3, :]
    dc, dr = np.linalg.norm(lps[:, 0]), np.linalg.norm(lps[:, 1])
    row, col = lps[:, 0] / dc, lps[:, 1] / dr
    pos = [lps[:, 3] + k * lps[:, 2] for k in range(nk)]
    expect = np.rint((vol + 100) / 0.5) * 0.5 - 100
    files = write_series(work / "oblique", vol, aff, slope=0.5, intercept=-100.0)
    cases.append(("oblique", work / "oblique", (pos, row, col, dr, dc), expect))

    write_enhanced(work / "enhanced.dcm", vol, aff, slope=0.5, intercept=-100.0)
    cases.append(("enhanced multi-frame", work / "enhanced.dcm", (pos, row, col, dr, dc), expect))

    files = write_series(work / "missing", vol, aff, slope=0.5, intercept=-100.0, shuffle=False)
    gone = nk // 2
    files[gone].unlink()
    kept = [p for k, p in enumerate(pos) if k != gone]
    cases.append(("missing slice", work / "missing", (kept, row, col, dr, dc), np.delete(expect, gone, axis=2)))

    from pydicom.uid import JPEG2000Lossless, RLELossless

    for label, syntax in (("JPEG 2000 lossless", JPEG2000Lossless), ("RLE lossless", RLELossless)):
        folder = work / label.split()[0]
        compress_files(write_series(folder, vol, aff, slope=0.5, intercept=-100.0), syntax)
        cases.append((label, folder, (pos, row, col, dr, dc), expect))

    echoes = np.stack([vol[:, :, :16] * f for f in (1.0, 0.8, 0.6)], axis=-1)
    write_enhanced(work / "multiecho.dcm", echoes, aff, slope=0.5, intercept=-100.0, echo_times=[10.0, 20.0, 30.0])
    cases.append(("enhanced multi-echo (4D)", work / "multiecho.dcm", (pos[:16], row, col, dr, dc),
                  np.rint((echoes + 100) / 0.5) * 0.5 - 100))

    mosaic = _mosaic_case(work / "mosaic")
    if mosaic is not None:
        cases.append(mosaic)

    tilt_aff = np.diag([1.0, 1.0, 2.0, 1.0])
    tl = LPS @ tilt_aff[:3, :]
    shift = 2.0 * np.tan(np.radians(15))
    tpos = [tl[:, 3] + k * tl[:, 2] + k * shift * np.array([0, 1.0, 0]) for k in range(nk)]
    write_series(work / "tilt", vol, tilt_aff, positions=tpos)
    cases.append(("gantry tilt 15 deg", work / "tilt", (tpos, tl[:, 0], tl[:, 1], 1.0, 1.0), vol))

    import pydicom

    from medcli.samples import sample_path

    ds = pydicom.dcmread(sample_path("ct"))
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    ps = [float(v) for v in ds.PixelSpacing]
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    hu = (ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).T[:, :, None]
    cases.append(("CT_small (1 slice)", sample_path("ct"), ([ipp], iop[:3], iop[3:], ps[0], ps[1]), hu))
    return cases


def _mosaic_case(folder: Path):
    """nibabel's Siemens DWI mosaics with random pixels; truth = nibabel's own (CSA-based) reading."""
    import warnings

    import nibabel
    import pydicom

    data = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
    if not (data / "siemens_dwi_0.dcm.gz").exists():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom.dicomwrappers import wrapper_from_data
    folder.mkdir()
    rng = np.random.default_rng(3)
    vols, aff = [], None
    for b in (0, 1000):
        ds = pydicom.dcmread(_gunzip(data / f"siemens_dwi_{b}.dcm.gz", folder / f"raw{b}"))
        ds.PixelData = rng.integers(0, 4000, (ds.Rows, ds.Columns)).astype(np.uint16).tobytes()
        ds.save_as(folder / f"IM{b:04d}", enforce_file_format=True)
        (folder / f"raw{b}").unlink()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = wrapper_from_data(pydicom.dcmread(folder / f"IM{b:04d}"))
            vols.append(w.get_data().transpose(1, 0, 2).astype(np.float64))  # (rows, cols) -> (cols, rows)
            aff = w.affine  # (row index, column index, slice) -> LPS
    n = vols[0].shape[2]
    pos = [aff[:3, 3] + k * aff[:3, 2] for k in range(n)]
    dr, dc = np.linalg.norm(aff[:3, 0]), np.linalg.norm(aff[:3, 1])
    return ("Siemens DWI mosaic x2", folder, (pos, aff[:3, 1] / dc, aff[:3, 0] / dr, dr, dc), np.stack(vols, axis=-1))


def _gunzip(src: Path, dest: Path) -> Path:
    import gzip

    dest.write_bytes(gzip.decompress(src.read_bytes()))
    return dest


def quality(result, error, truth, expect):
    if error:
        return f"refused ({error})", ""
    aff, arr = result
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    pos, row, col, dr, dc = truth
    shape = expect.shape
    ijk = corners(shape[:3])
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    err = np.max(np.linalg.norm(world - true_world(pos, row, col, dr, dc, ijk), axis=1))
    same = arr.shape == shape and np.array_equal(arr.astype(np.float64), expect)
    return f"{err:.2g} mm", "yes" if same else ("no" if arr.shape == shape else f"no ({arr.shape})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import SimpleITK as sitk

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, truth, expect in build_cases(Path(tmp), args.quick):
            tm, rm, em = timed(read_medcli, path)
            ts, rs, es = timed(read_sitk, path)
            qm, vm = quality(rm, em, truth, expect)
            qs, vs = quality(rs, es, truth, expect)
            ratio = f"{tm / ts:.2f}" if not (em or es) else ""
            rows.append((name, qm, vm, qs, vs, f"{tm:.2f}", f"{ts:.2f}", ratio))
            print(f"{name:22s} medcli {qm:>28s} {vm:4s} {tm:6.2f}s | SimpleITK {qs:>28s} {vs:4s} {ts:6.2f}s", flush=True)
    header = (
        "| series | medcli position error | medcli values exact | SimpleITK position error | SimpleITK values exact "
        "| medcli s | SimpleITK s | time ratio |"
    )
    lines = [
        "# DICOM series reading: medcli vs SimpleITK (ITK/GDCM)",
        "",
        f"Generated by `python tests/benchmarks/bench_dicom.py{' --quick' if args.quick else ''}` on "
        f"{platform.machine()} ({platform.processor() or 'cpu'}), SimpleITK {sitk.Version_VersionString()}. "
        "Series written from the real MNI152 T1 (enhanced: frames stored in shuffled order); position error = largest distance between an in-plane corner voxel's "
        "centre (of every slice) by the reader's affine and by the DICOM tags. Time: median of 3 reads (header + voxels).",
        "",
        header,
        "|" + "---|" * 8,
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

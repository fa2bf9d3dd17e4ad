"""Benchmark: ``medcli register apply`` against ANTsPy's ``apply_transforms`` and ``apply_transforms_to_points``.

The case: the bundled MNI T1 (1 mm) is the fixed image. A known pull transform
``R = [warp, affine]`` (a smooth random displacement field on a 2 mm grid, up
to 6 mm, then a 6 degree rotation, 3 % scaling and a 7 mm translation) is
written as ANTs writes a registration (``truth_1Warp.nii.gz``,
``truth_0GenericAffine.mat``), and the moving image is made so that ``R`` is
exactly its registration onto the template (the template resampled through
``R``'s inverse). Then, as a user would, in whole runs (a fresh process each,
one thread each):

* **image**: the moving T1 onto the template, linear; medcli's output against
  ANTsPy's (max difference relative to the image maximum; issue target 1e-3);
* **labels**: the moving image's GM/WM label map onto the template, against the
  template's own labels (Dice): medcli ``smooth``/``linear``/``nearest`` vs
  ANTs ``genericLabel``/``nearestNeighbor``;
* **points**: the 32 AFIDs placed on the moving image (``R`` applied to the
  template's AFIDs: exact) carried back to the template, error against the
  template's AFIDs: medcli with the inverse warp beside the warp and without
  it (per-point inversion), ANTsPy with ``invtransforms`` and
  ``whichtoinvert=[True, False]`` (the documented way; the inverse warp file is
  the one medcli wrote, as ``medcli register`` does), and ANTsPy with the
  forward list (the classic mistake the issue names).

Run: ``python tests/benchmarks/bench_register_apply.py [--quick]``.
Writes ``tests/benchmarks/results/register_apply.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from medcli import io  # noqa: E402
from medcli.io.points import read_points, write_points  # noqa: E402
from medcli.register.transform_io import write_transform  # noqa: E402
from medcli.register.transforms import AffineTransform, DisplacementField, TransformChain, warp_image  # noqa: E402

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "register_apply.md"
AFIDS = ROOT / "medcli" / "data" / "afids-MNI152NLin2009bAsym.fcsv"
ENV = {"OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "MKL_NUM_THREADS": "1"}


def medcli() -> str:
    exe = Path(sys.executable).parent / "medcli"
    return shlex.quote(str(exe)) if exe.exists() else f"{shlex.quote(sys.executable)} -m medcli"


def run(cmd: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env={**os.environ, **ENV}, capture_output=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{r.stderr.decode()[-1500:]}")
    return dt


def ants_script(work: Path, name: str, body: str) -> str:
    """A python script run as a whole process (imports included), like a user's."""
    path = work / f"{name}.py"
    path.write_text("import ants, numpy as np, pandas as pd\n" + textwrap.dedent(body))
    return f"{shlex.quote(sys.executable)} {path.name}"


def make_case(work: Path) -> dict:
    from scipy import ndimage
    from scipy.spatial.transform import Rotation

    fixed = io.read("sample:t1")
    io.write(fixed, work / "fixed.nii.gz")
    grid = fixed.resample(2)
    rng = np.random.default_rng(2026)
    u = np.stack([ndimage.gaussian_filter(rng.normal(size=grid.shape), 5.0) for _ in range(3)], -1)
    u *= 6.0 / np.linalg.norm(u, axis=-1).max()
    warp = DisplacementField(grid.with_data(u.astype(np.float32)))
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", [6.0, -4.0, 5.0], degrees=True).as_matrix() * 1.03
    m[:3, 3] = [4.0, -3.0, 5.0]
    affine = AffineTransform(m, center=np.array([0.0, -18.0, 18.0]))
    truth = TransformChain([warp, affine])
    write_transform(warp, work / "truth_1Warp.nii.gz")
    write_transform(affine, work / "truth_0GenericAffine.mat")
    # The same files with the inverse warp beside them (as medcli register and antsRegistration write).
    (work / "inv").mkdir()
    write_transform(warp, work / "inv" / "truth_1Warp.nii.gz")
    write_transform(affine, work / "inv" / "truth_0GenericAffine.mat")
    inv_warp = warp.inverse(iterations=50)
    write_transform(inv_warp, work / "inv" / "truth_1InverseWarp.nii.gz")
    back = TransformChain([affine.inverse(), inv_warp])  # moving -> fixed, for making the moving data
    io.write(warp_image(fixed, back, fixed), work / "moving.nii.gz")
    # labels: the template's GM/WM (probability > 1/2), and the moving image's from the probabilities carried along
    gm, wm = io.read("sample:gm"), io.read("sample:wm")
    gm, wm = gm.with_data(gm.data.astype(np.float32) / 255), wm.with_data(wm.data.astype(np.float32) / 255)

    def labels(g, w):
        lab = np.zeros(g.shape, np.int16)
        lab[g.data > 0.5] = 1
        lab[w.data > 0.5] = 2
        return lab

    fixed_labels = labels(gm, wm)
    io.write(gm.with_data(fixed_labels), work / "fixed_labels.nii.gz")
    io.write(gm.with_data(labels(warp_image(gm, back, gm), warp_image(wm, back, gm))), work / "moving_labels.nii.gz")
    # points: the template's AFIDs, and where they are on the moving image (R is the pull map: exact)
    afids = read_points(AFIDS)
    moving_pts = afids.moved(truth.transform_points(afids.ras))
    write_points(moving_pts, work / "moving_afids.fcsv")
    write_points(moving_pts, work / "inv" / "moving_afids.fcsv")
    return {"fixed_labels": fixed_labels, "afids": afids.ras}


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    return float(2 * (x & y).sum() / (x.sum() + y.sum()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one run per case")
    ap.add_argument("-n", type=int, default=None, help="runs per case (median time)")
    args = ap.parse_args()
    n = args.n or (1 if args.quick else 3)
    m = medcli()
    t_files = "-t truth_1Warp.nii.gz -t truth_0GenericAffine.mat"
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="medcli-bench-apply-") as tmp:
        work = Path(tmp)
        case = make_case(work)

        def timed(cmd: str, cwd: Path = work) -> float:
            return statistics.median(run(cmd, cwd) for _ in range(n))

        # -- image ------------------------------------------------------------------------------
        t_m = timed(f"{m} register apply moving.nii.gz {t_files} -r fixed.nii.gz -o img_medcli.nii.gz --threads 1 --force")
        t_a = timed(ants_script(work, "img", """
            f = ants.image_read('fixed.nii.gz'); mv = ants.image_read('moving.nii.gz')
            out = ants.apply_transforms(f, mv, ['truth_1Warp.nii.gz', 'truth_0GenericAffine.mat'], interpolator='linear')
            ants.image_write(out, 'img_ants.nii.gz')
        """))
        a, b = io.read(work / "img_medcli.nii.gz").data, io.read(work / "img_ants.nii.gz").data
        rel = float(np.abs(a - b).max() / np.abs(b).max())
        fixed = io.read(work / "fixed.nii.gz").data
        r_m, r_a = np.corrcoef(a.ravel(), fixed.ravel())[0, 1], np.corrcoef(b.ravel(), fixed.ravel())[0, 1]
        rows.append(["T1 image, linear", f"r = {r_m:.4f} with the template", f"r = {r_a:.4f}",
                     f"max rel. diff {rel:.1e}", f"{t_m:.1f}", f"{t_a:.1f}", f"{t_m / t_a:.2f}"])

        # -- labels -----------------------------------------------------------------------------
        truth = case["fixed_labels"]
        ants_labels = {"smooth": "genericLabel", "nearest": "nearestNeighbor", "linear": None}
        for method in ("smooth", "linear", "nearest"):
            out = f"lab_{method}.nii.gz"
            t_m = timed(f"{m} register apply moving_labels.nii.gz --labels -n {method} {t_files} -r fixed_labels.nii.gz -o {out} --threads 1 --force")
            d_m = io.read(work / out).data
            peer = ants_labels[method]
            if peer:
                t_a = timed(ants_script(work, f"lab_{peer}", f"""
                    f = ants.image_read('fixed_labels.nii.gz'); mv = ants.image_read('moving_labels.nii.gz')
                    out = ants.apply_transforms(f, mv, ['truth_1Warp.nii.gz', 'truth_0GenericAffine.mat'], interpolator='{peer}')
                    ants.image_write(out, 'lab_ants_{peer}.nii.gz')
                """))
                d_a = np.rint(io.read(work / f"lab_ants_{peer}.nii.gz").data).astype(np.int16)
                peer_q = f"{peer}: GM {dice(d_a, truth, 1):.4f}, WM {dice(d_a, truth, 2):.4f}"
                tt = (f"{t_a:.1f}", f"{t_m / t_a:.2f}")
            else:
                peer_q, tt = "", ("", "")
            rows.append([f"GM/WM labels, {method}", f"GM {dice(d_m, truth, 1):.4f}, WM {dice(d_m, truth, 2):.4f}",
                         peer_q, "Dice against the template's labels", f"{t_m:.1f}", *tt])

        # -- points -----------------------------------------------------------------------------
        afids = case["afids"]

        def err(path: Path) -> tuple[float, float]:
            e = np.linalg.norm(read_points(path).ras - afids, axis=1)
            return float(e.mean()), float(e.max())

        t_solo = timed(f"{m} register apply moving_afids.fcsv {t_files} -o afids_medcli.fcsv --threads 1 --force")
        e_solo = err(work / "afids_medcli.fcsv")
        t_inv = timed(f"{m} register apply moving_afids.fcsv {t_files} -o afids_medcli.fcsv --threads 1 --force", work / "inv")
        e_inv = err(work / "inv" / "afids_medcli.fcsv")
        body = """
            from medcli.io.points import read_points, write_points
            p = read_points('moving_afids.fcsv')
            df = pd.DataFrame(p.lps, columns=['x', 'y', 'z'])
            out = ants.apply_transforms_to_points(3, df, {lst}, whichtoinvert={inv})
            write_points(p.moved(out[['x', 'y', 'z']].to_numpy() * np.array([-1.0, -1.0, 1.0])), '{dest}', force=True)
        """
        t_a = timed(ants_script(work / "inv", "pts", body.format(
            lst="['truth_0GenericAffine.mat', 'truth_1InverseWarp.nii.gz']", inv="[True, False]", dest="afids_ants.fcsv")), work / "inv")
        e_a = err(work / "inv" / "afids_ants.fcsv")
        timed(ants_script(work / "inv", "pts_fwd", body.format(
            lst="['truth_1Warp.nii.gz', 'truth_0GenericAffine.mat']", inv="None", dest="afids_ants_fwd.fcsv")), work / "inv")
        e_fwd = err(work / "inv" / "afids_ants_fwd.fcsv")
        agree = float(np.abs(read_points(work / "inv" / "afids_medcli.fcsv").ras - read_points(work / "inv" / "afids_ants.fcsv").ras).max())
        rows.append(["32 AFIDs moving -> template, inverse warp beside", f"mean {e_inv[0]:.4f} mm, max {e_inv[1]:.4f}",
                     f"invtransforms: mean {e_a[0]:.4f} mm, max {e_a[1]:.4f}", f"medcli - ANTsPy max {agree:.1e} mm",
                     f"{t_inv:.1f}", f"{t_a:.1f}", f"{t_inv / t_a:.2f}"])
        rows.append(["32 AFIDs, no inverse warp (per-point inversion)", f"mean {e_solo[0]:.5f} mm, max {e_solo[1]:.5f}",
                     f"fwdtransforms (wrong way): mean {e_fwd[0]:.1f} mm", "", f"{t_solo:.1f}", "", ""])

    head = ["case", "medcli", "ANTsPy", "comparison", "medcli s", "ANTsPy s", "time ratio"]
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows])
    import ants

    text = (
        "# register apply vs ANTsPy\n\n"
        f"Whole runs (fresh process, one thread each), median of {n}; {platform.processor() or platform.machine()}, "
        f"ANTsPy {ants.__version__}. Fixed: bundled MNI T1 1 mm; transform: known smooth warp (2 mm grid, up to 6 mm) "
        "and affine written as ANTs files; the moving data made so that it is the exact registration. "
        "Made by `python tests/benchmarks/bench_register_apply.py`.\n\n" + table + "\n"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: ``medcli recon`` (MRI) vs SigPy and BART on the same undersampled k-space.

Data (made here, never seen in training):
* held-out axial slices of the bundled MNI T1 (``medcli.recon.mri.learned.HELD_OUT``), k-space
  written by ``medcli recon simulate`` (8 coils, SNR 40);
* the real MR slice of ``sample:mr`` (pydicom's MR_small, 64 x 64), the same way;
* a Shepp-Logan phantom whose k-space is computed on a 4x finer grid and cropped (no inverse crime:
  the data are not made by the reconstruction's own discrete model).

Conditions: 1D random masks at 4x (8 % centre) and 8x (4 % centre), equispaced 4x (8 % centre).
Metrics as fastMRI computes them against the fully sampled root-sum-of-squares image: SSIM per
slice (data range = volume maximum), PSNR, NMSE; time per slice (one thread for every tool).

Peers: SigPy (``EspiritCalib`` + ``SenseRecon`` / ``L1WaveletRecon`` / ``TotalVariationRecon``,
each CS method at its best lambda of a grid) and BART (``ecalib`` + ``pics``, l1-wavelet and TV,
best lambda of the same grid; skipped when ``bart`` is not on PATH). medcli's CS uses its
``--lambda auto`` (no oracle). Equal iterations: SENSE 20, CS 50.

Run:  python tests/benchmarks/bench_recon_mri.py [--quick]   (writes tests/benchmarks/results/recon_mri.md)
      python tests/benchmarks/bench_recon_mri.py --phantom-time | --maps   (printed only: cs vs BART time, ESPIRiT vs ecalib)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from medcli import io  # noqa: E402
from medcli.errors import ProcessingError  # noqa: E402
from medcli.image import Image  # noqa: E402
from medcli.recon.mri import formats, methods  # noqa: E402
from medcli.recon.mri.fft import fft2c, ifft2c  # noqa: E402
from medcli.recon.mri.learned import HELD_OUT  # noqa: E402
from medcli.recon.mri.metrics import nmse, psnr, ssim  # noqa: E402
from medcli.recon.mri.simulate import coil_maps  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "benchmarks" / "results" / "recon_mri.md"
CACHE = Path(tempfile.gettempdir()) / "bench_recon_mri_cache.json"
CONDITIONS = [("4x random", 4, 0.08, "random"), ("8x random", 8, 0.04, "random"), ("4x equispaced", 4, 0.08, "equispaced")]
SNR = 40.0
GRID = (0.001, 0.002, 0.004)  # lambda / max |A^H y| for the peers' CS
BART_FAILED: list = []  # BART runs that failed (reported)
SIGPY_MAPS: list = []  # which maps SigPy got, per slice (reported)
ITS = {"sense": 10, "cs": 50}


def medcli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "medcli", *args]


def shepp_logan(n: int) -> np.ndarray:
    """The modified Shepp-Logan phantom (Toft) on an n x n grid."""
    ellipses = [(1, .69, .92, 0, 0, 0), (-.8, .6624, .874, 0, -.0184, 0), (-.2, .11, .31, .22, 0, -18),
                (-.2, .16, .41, -.22, 0, 18), (.1, .21, .25, 0, .35, 0), (.1, .046, .046, 0, .1, 0),
                (.1, .046, .046, 0, -.1, 0), (.1, .046, .023, -.08, -.605, 0), (.1, .023, .023, 0, -.606, 0),
                (.1, .023, .046, .06, -.605, 0)]
    y, x = np.meshgrid(np.linspace(1, -1, n), np.linspace(-1, 1, n), indexing="ij")
    img = np.zeros((n, n))
    for a, ea, eb, x0, y0, phi in ellipses:
        t = np.deg2rad(phi)
        xr, yr = (x - x0) * np.cos(t) + (y - y0) * np.sin(t), -(x - x0) * np.sin(t) + (y - y0) * np.cos(t)
        img[(xr / ea) ** 2 + (yr / eb) ** 2 <= 1] += a
    return img


def phantom_kspace(n: int, accel: float, center: float, pattern: str, seed: int) -> tuple[formats.KSpace, np.ndarray]:
    """Shepp-Logan on a 4n grid x smooth coils, FFT, central n x n of k-space (no inverse crime), mask, noise."""
    from medcli.recon.mri.simulate import line_mask

    big = 4 * n
    obj = shepp_logan(big)
    maps = coil_maps((big, big), 8)
    kbig = fft2c(maps * obj[None])
    c0 = big // 2 - n // 2
    k = kbig[:, c0 : c0 + n, c0 : c0 + n] / 4.0  # 4x4 fewer samples, same image scale (orthonormal FFT)
    ref = np.sqrt((np.abs(ifft2c(k)) ** 2).sum(0))
    rng = np.random.default_rng(seed)
    fg = ref > 0.1 * ref.max()
    sigma = ref[fg].mean() / SNR
    k = k + rng.normal(scale=sigma / np.sqrt(2), size=k.shape) + 1j * rng.normal(scale=sigma / np.sqrt(2), size=k.shape)
    m = line_mask(n, accel, center, pattern, rng)
    mask = np.broadcast_to(m[None, :], (n, n))
    k = (k * mask[None]).astype(np.complex64)
    return formats.KSpace(k[None], np.ascontiguousarray(mask[None]), np.eye(4), (n, n)), ref[None].astype(np.float32)


def simulate_with_cli(image: Image, work: Path, name: str, accel: float, center: float, pattern: str, seed: int):
    src = work / f"{name}.nii.gz"
    if not src.exists():
        io.write(image, src, force=True)
    dest = work / f"{name}_{accel}_{pattern}.h5"
    r = subprocess.run(medcli_cmd("recon", "simulate", str(src), "--coils", "8", "--accel", str(accel), "--center", str(center),
                                  "--pattern", pattern, "--snr", str(SNR), "--seed", str(seed), "-o", str(dest), "-f"),
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    import h5py

    with h5py.File(dest, "r") as f:
        ref = np.asarray(f["reconstruction_rss"][()])
    return dest, formats.read_kspace(str(dest)), ref


def datasets(work: Path, quick: bool):
    t1 = io.read("sample:t1")
    zs = list(range(HELD_OUT[0] + 5, HELD_OUT[1], 10 if not quick else 30))
    vol = np.stack([np.asarray(t1.data[:, :, z], np.float32) for z in zs], -1)
    aff = t1.affine.copy()
    t1_slices = Image(vol, aff)
    mr = io.read("sample:mr")
    mr_img = Image(np.asarray(mr.data, np.float32), mr.affine)
    return [("MNI T1 held-out", t1_slices), ("sample:mr", mr_img)], zs


def sigpy_maps(y: np.ndarray, mask: np.ndarray, ref: np.ndarray, calib: int):
    """Coil maps for SigPy: its ESPIRiT with the ACS width or its default 24, or medcli's ESPIRiT.

    (SigPy's calibration region is square; with fewer than 24 centre lines its default takes in
    unsampled lines, with the ACS width it has few rows and crops the object. The best of the three,
    judged by SigPy's SENSE against the reference, is used for every SigPy method: an oracle in
    SigPy's favour, so that its solvers are compared, not only its calibration.)
    """
    import sigpy.mri as mr

    from medcli.recon.mri.espirit import espirit_maps

    best = None
    for width in sorted({calib, 24}) + ["medcli"]:
        t0 = time.perf_counter()
        if width == "medcli":
            mps = espirit_maps(torch.from_numpy(y), mask).numpy()
        else:
            try:
                mps = mr.app.EspiritCalib(y, calib_width=width, show_pbar=False).run()
            except ValueError:  # SigPy's 6-wide kernel does not fit a narrower calibration region
                continue
        dt = time.perf_counter() - t0
        x = np.abs(mr.app.SenseRecon(y, mps, lamda=0, max_iter=ITS["sense"], show_pbar=False).run())
        q = ssim(ref[None], x[None], float(ref.max()))
        if best is None or q > best[0]:
            best = (q, mps, dt, width)
    SIGPY_MAPS.append(best[3])
    return best[1], best[2]


def peer_sigpy(ks: formats.KSpace, calib: int, ref: np.ndarray):
    import sigpy.mri as mr

    out: dict[str, tuple[np.ndarray, float]] = {}
    for s in range(ks.data.shape[0]):
        y = ks.data[s]
        mps, t_cal = sigpy_maps(y, ks.mask[s], ref[s], calib)
        base = float(np.abs((mps.conj() * ifft2c(y)).sum(0)).max())
        runs = {"sense": [(None, lambda: mr.app.SenseRecon(y, mps, lamda=0, max_iter=ITS["sense"], show_pbar=False).run())]}
        runs["cs wavelet"] = [(f, (lambda f=f: mr.app.L1WaveletRecon(y, mps, f * base, max_iter=ITS["cs"], show_pbar=False).run())) for f in GRID]
        runs["cs tv"] = [(f, (lambda f=f: mr.app.TotalVariationRecon(y, mps, f * base, max_iter=ITS["cs"], show_pbar=False).run())) for f in GRID]
        for name, variants in runs.items():
            for f, fn in variants:
                t0 = time.perf_counter()
                x = np.abs(fn())
                key = f"{name}@{f}" if f else name
                imgs, t = out.get(key, ([], 0.0))
                out[key] = (imgs + [x], t + time.perf_counter() - t0 + t_cal)
    return {k: (np.stack(v[0]), v[1] / ks.data.shape[0]) for k, v in out.items()}


def peer_bart(ks: formats.KSpace, calib: int, work: Path):
    if shutil.which("bart") is None:
        return {}
    out: dict[str, tuple[list, float]] = {}
    for s in range(ks.data.shape[0]):
        k = ks.data[s].transpose(1, 2, 0)[:, :, None, :]  # (ro, pe, 1, coils)
        base = str(work / "bk")
        hdr, data = formats.cfl_parts(k)
        Path(base + ".hdr").write_text(hdr)
        data.ravel(order="F").tofile(base + ".cfl")
        t0 = time.perf_counter()
        r = subprocess.run(["bart", "ecalib", "-m1", "-r", f"24:{calib}:1", base, base + "_maps"], capture_output=True)
        if r.returncode:  # BART aborts on calibration regions narrower than its 6-wide kernel
            BART_FAILED.append(f"ecalib exit {r.returncode} with a {calib}-line calibration region")
            return {}
        t_cal = time.perf_counter() - t0
        mps = _read_cfl(base + "_maps").reshape(k.shape[0], k.shape[1], k.shape[3]).transpose(2, 0, 1)
        scale = float(np.abs((mps.conj() * ifft2c(ks.data[s])).sum(0)).max())
        runs = [("sense", None, ["-l2", "-r", "0"], ITS["sense"])]
        runs += [("cs wavelet", f, ["-R", f"W:3:0:{f * scale}"], ITS["cs"]) for f in GRID]
        runs += [("cs tv", f, ["-R", f"T:3:0:{f * scale}"], ITS["cs"]) for f in GRID]
        for name, f, opts, its in runs:
            t0 = time.perf_counter()
            subprocess.run(["bart", "pics", "-w", "1", "-i", str(its), *opts, base, base + "_maps", base + "_x"], check=True, capture_output=True)
            x = np.abs(_read_cfl(base + "_x")).reshape(ks.data.shape[2:])
            key = f"{name}@{f}" if f else name
            imgs, t = out.get(key, ([], 0.0))
            out[key] = (imgs + [x], t + time.perf_counter() - t0 + t_cal)
    return {k: (np.stack(v[0]), v[1] / ks.data.shape[0]) for k, v in out.items()}


def _read_cfl(base: str) -> np.ndarray:
    dims = [int(v) for v in Path(base + ".hdr").read_text().splitlines()[1].split()]
    return np.fromfile(base + ".cfl", np.complex64).reshape(dims, order="F")


def run_medcli(ks: formats.KSpace, learned_only: bool = False, only: list | None = None, model: str | None = None):
    runs = [("zerofill", dict(method="zerofill")), ("sense", dict(method="sense", iterations=ITS["sense"])),
            ("cs wavelet", dict(method="cs", reg="wavelet", iterations=ITS["cs"])),
            ("cs tv", dict(method="cs", reg="tv", iterations=ITS["cs"])), ("learned", dict(method="learned", model=model))]
    out = {}
    for name, kw in runs[-1:] if learned_only else [r for r in runs[:-1] if only is None or r[0] in only]:
        t0 = time.perf_counter()
        try:
            res = methods.reconstruct_mri(ks, **kw)
        except ProcessingError as e:  # e.g. a calibration region too narrow for ESPIRiT: reported, not scored
            print(f"medcli {name}: {e}", file=sys.stderr)
            continue
        dt = (time.perf_counter() - t0) / ks.data.shape[0]
        if name == "learned" and res.method != "learned":
            continue
        out[name] = (np.abs(res.image), dt)
    return out


def cli_time(path: Path, method: str, work: Path) -> float:
    """A whole run of the command (read, reconstruct, write NIfTI), seconds."""
    t0 = time.perf_counter()
    r = subprocess.run(medcli_cmd("recon", str(path), "-m", method, "-o", str(work / "cli.nii.gz"), "-f", "--threads", "1"),
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    return time.perf_counter() - t0


def score(ref: np.ndarray, x: np.ndarray) -> tuple[float, float, float]:
    return ssim(ref, x), psnr(ref, x), nmse(ref, x)


def best_of(results: dict, ref: np.ndarray, name: str):
    """The entry (score, time, lambda) of a method: the best lambda of the grid for CS."""
    keys = [k for k in results if k == name or k.startswith(name + "@")]
    if not keys:
        return None
    scored = [(score(ref, results[k][0]), results[k][1], k.split("@")[1] if "@" in k else "") for k in keys]
    return max(scored, key=lambda r: r[0][0])


def _bart_calib(y: np.ndarray, calib: int, work: Path) -> float:
    """Write one slice for BART and time ``ecalib`` + ``pics`` l1-wavelet (50 iterations), as :func:`peer_bart`."""
    k = y.transpose(1, 2, 0)[:, :, None, :]
    base = str(work / "tk")
    hdr, data = formats.cfl_parts(k)
    Path(base + ".hdr").write_text(hdr)
    data.ravel(order="F").tofile(base + ".cfl")
    t0 = time.perf_counter()
    subprocess.run(["bart", "ecalib", "-m1", "-r", f"24:{calib}:1", base, base + "_maps"], check=True, capture_output=True)
    subprocess.run(["bart", "pics", "-w", "1", "-i", str(ITS["cs"]), "-R", "W:3:0:0.01", base, base + "_maps", base + "_x"],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def phantom_times(reps: int = 6) -> None:
    """medcli ``cs --reg wavelet`` (ESPIRiT included) vs BART ``ecalib`` + ``pics`` on the phantom, interleaved.

    Timings on the shared machine are only comparable side by side: each repetition runs both,
    and the medians' ratio is printed (markdown rows).
    """
    from medcli.recon.mri.espirit import calibration_region

    work = Path(tempfile.mkdtemp(prefix="bench_recon_mri_t_"))
    print("| condition | medcli cs wavelet s | BART ecalib + pics s | ratio |\n|---|---|---|---|")
    for cname, accel, center, pattern in CONDITIONS:
        ks, _ = phantom_kspace(128, accel, center, pattern, seed=11)
        calib = calibration_region(ks.mask[0])[1]
        if calib.stop - calib.start < 6:  # BART's ecalib aborts on calibration regions narrower than its kernel
            continue
        ours, theirs = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            methods.reconstruct_mri(ks, "cs", reg="wavelet", iterations=ITS["cs"])
            ours.append(time.perf_counter() - t0)
            theirs.append(_bart_calib(ks.data[0], calib.stop - calib.start, work))
        a, b = float(np.median(ours)), float(np.median(theirs))
        print(f"| {cname} | {a:.3f} | {b:.3f} | {a / b:.2f} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


def compare_maps() -> None:
    """medcli cs (wavelet, tv) with medcli's ESPIRiT at its defaults, at BART's ``ecalib`` defaults, and BART's maps.

    BART keeps singular values above sqrt(t) of the largest (t = 0.001: 0.0316) and crops at 0.8; medcli (as
    SigPy) keeps those above 0.02 and crops at 0.95. Data: the phantom and two MNI training slices (80, 140;
    not held out), 4x random and equispaced (BART's ecalib aborts on the phantom's 5-line 8x centre).
    """
    from medcli.recon.mri.espirit import calibration_region, espirit_maps
    from medcli.recon.mri.simulate import simulate_slices

    work = Path(tempfile.mkdtemp(prefix="bench_recon_mri_m_"))
    t1 = io.read("sample:t1").data
    print("| condition | data | maps | map support | cs wavelet SSIM | cs tv SSIM |\n|---|---|---|---|---|---|")
    for cname, accel, center, pattern in (CONDITIONS[0], CONDITIONS[2]):
        sets = [("phantom", *phantom_kspace(128, accel, center, pattern, seed=11))]
        for z in (80, 140):
            img = np.asarray(t1[:, :, z], np.float32)[None]
            k, m, r = simulate_slices(img, coils=8, accel=accel, center=center, pattern=pattern, snr=SNR, seed=z)
            sets.append((f"MNI slice {z}", formats.KSpace(k, m, np.eye(4), img.shape[1:]), r))
        for dname, ks, ref in sets:
            y, mask = ks.data[0], ks.mask[0]
            calib = calibration_region(mask)[1]
            variants = {"medcli (0.02, crop 0.95)": espirit_maps(torch.from_numpy(y), mask).numpy(),
                        "medcli at BART's (0.0316, crop 0.8)": espirit_maps(torch.from_numpy(y), mask, thresh=0.001**0.5, crop=0.8).numpy()}
            if shutil.which("bart"):
                _bart_calib(y, calib.stop - calib.start, work)
                variants["BART ecalib"] = _read_cfl(str(work / "tk_maps")).reshape(y.shape[1], y.shape[2], y.shape[0]).transpose(2, 0, 1)
            for name, mps in variants.items():
                mps = mps[None].astype(np.complex64)
                q = [ssim(ref, np.abs(methods.reconstruct_mri(ks, "cs", reg=reg, iterations=ITS["cs"], maps=mps).image)) for reg in methods.REGS]
                print(f"| {cname} | {dname} | {name} | {float((np.abs(mps).sum(1) > 0).mean()):.3f} | {q[0]:.4f} | {q[1]:.4f} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phantom-time", action="store_true", help="only time medcli cs vs BART on the phantom, interleaved (printed)")
    ap.add_argument("--maps", action="store_true", help="only compare coil maps (medcli's ESPIRiT settings vs BART's), printed")
    ap.add_argument("--quick", action="store_true", help="fewer slices (a smoke run)")
    ap.add_argument("--skip-learned", action="store_true", help="no learned rows (the model is still training)")
    ap.add_argument("--reuse", action="store_true", help="reuse the cached classical and peer results; recompute learned")
    ap.add_argument("--redo", nargs="*", default=[], help="with --reuse: medcli methods to recompute (e.g. sense); they replace the cached rows")
    ap.add_argument("--model", default=None, help="learned model (hub name or run folder; default: the registered recon-mri)")
    args = ap.parse_args()
    if args.phantom_time or args.maps:
        phantom_times() if args.phantom_time else compare_maps()
        return
    work = Path(tempfile.mkdtemp(prefix="bench_recon_mri_"))
    data, zs = datasets(work, args.quick)
    lines = [
        "# recon (MRI): medcli vs SigPy and BART",
        "",
        f"Data: held-out axial slices {zs} of the MNI T1 (197 x 233) and the real 64 x 64 slice of `sample:mr`, "
        "k-space by `medcli recon simulate` (8 coils, SNR 40), plus a Shepp-Logan phantom whose k-space comes from "
        "a 4x finer grid (no inverse crime). Metrics against the fully sampled root-sum-of-squares image, as fastMRI: "
        "SSIM (per slice, data range = volume max), PSNR (dB), NMSE. Time: seconds per slice, one thread, in-process "
        "(SigPy has no command line; BART: its commands). SigPy/BART CS: best lambda of "
        f"{list(GRID)} x max|A^H y|; medcli CS: `--lambda auto`. Iterations: SENSE {ITS['sense']}, CS {ITS['cs']}. "
        f"SigPy {__import__('sigpy').__version__}; BART {_bart_version()}; machine: shared 2-core CPU.",
        "",
    ]
    if args.reuse:
        lines += ["This file was written by a `--reuse` pass: the peers' rows (and their times) come from the first pass; "
                  f"medcli's learned{' and ' + ', '.join(args.redo) if args.redo else ''} rows were recomputed in this one. "
                  "Times of the two passes were taken under different loads of the shared machine: compare them "
                  "within a pass (medcli with medcli, SigPy with BART) more than across.", ""]
    import json

    cache = json.loads(CACHE.read_text()) if args.reuse and CACHE.exists() else {}
    summary = {}
    mni: dict = {}  # (condition, method) -> medcli's (scores, s/slice, lambda) on the held-out MNI slices
    for cname, accel, center, pattern in CONDITIONS:
        lines += [f"## {cname} ({int(center * 100)} % centre)", "",
                  "| data | method | medcli SSIM | PSNR | NMSE | s/slice | SigPy SSIM | PSNR | s/slice | BART SSIM | PSNR | s/slice |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        sets = [(name, *simulate_with_cli(img, work, name.replace(" ", "_").replace(":", "_"), accel, center, pattern, seed=11))
                for name, img in data]
        sets.append(("phantom", None, *phantom_kspace(128, accel, center, pattern, seed=11)))
        for dname, path, ks, ref in sets:
            from medcli.recon.mri.espirit import calibration_region

            key = f"{cname}|{dname}"
            if key not in cache:  # the classical methods and the peers (a later --reuse run redoes only learned)
                calib = calibration_region(ks.mask[0])[1]
                calib = calib.stop - calib.start  # fully sampled centre lines (at most 24)
                ours = run_medcli(ks)
                sig = peer_sigpy(ks, calib, ref)
                bart = peer_bart(ks, calib, work)
                cache[key] = {m: {"o": best_of(ours, ref, m), "s": best_of(sig, ref, m) if m != "zerofill" else None,
                                  "b": best_of(bart, ref, m) if m != "zerofill" else None}
                              for m in ("zerofill", "sense", "cs wavelet", "cs tv")}
                meta = cache.setdefault("_meta", {"sigpy_maps": [], "bart_failed": []})
                meta["sigpy_maps"], meta["bart_failed"] = list(map(str, SIGPY_MAPS)), BART_FAILED
                CACHE.write_text(json.dumps(cache))
            entries = dict(cache[key])
            if args.redo:
                ours = run_medcli(ks, only=args.redo)
                for m in args.redo:
                    entries[m] = {**entries[m], "o": best_of(ours, ref, m)}  # None: medcli refused (reported on stderr)
                cache[key] = entries  # a later --reuse pass keeps the recomputed rows (e.g. after a change to cs)
                CACHE.write_text(json.dumps(cache))
            if not args.skip_learned:
                entries["learned"] = {"o": best_of(run_medcli(ks, learned_only=True, model=args.model), ref, "learned"), "s": None, "b": None}
            for mname, e in entries.items():
                o, sg, b = e["o"], e["s"], e["b"]
                if o is None:
                    continue
                row = f"| {dname} | {mname} | {o[0][0]:.4f} | {o[0][1]:.2f} | {o[0][2]:.4f} | {o[1]:.2f} |"
                row += f" {sg[0][0]:.4f} | {sg[0][1]:.2f} | {sg[1]:.2f}{_lam(sg)} |" if sg else " | | |"
                row += f" {b[0][0]:.4f} | {b[0][1]:.2f} | {b[1]:.2f}{_lam(b)} |" if b else " | | |"
                lines.append(row)
                print(row, flush=True)
                if dname == "MNI T1 held-out":
                    mni[(cname, mname)] = o
                if dname != "sample:mr":  # BART's ecalib aborts on its 3-5 line calibration region: not in the means
                    summary.setdefault((cname, mname), []).append((o, sg, b))
        lines.append("")
    lines += ["## Summary (mean over MNI T1 and phantom, where every tool ran; sample:mr in the tables above)", "", "| condition | method | medcli SSIM | SigPy SSIM | BART SSIM | medcli s/slice | SigPy s/slice | BART s/slice |",
              "|---|---|---|---|---|---|---|---|"]
    for (cname, mname), rows in summary.items():
        def mean(idx, j, k=0):
            vals = [r[idx][j][k] if k is not None else r[idx][j] for r in rows if r[idx] is not None]
            return f"{np.mean(vals):.4f}" if vals else "-"

        o_ssim, s_ssim, b_ssim = mean(0, 0), mean(1, 0), mean(2, 0)
        o_t = f"{np.mean([r[0][1] for r in rows]):.2f}"
        s_t = f"{np.mean([r[1][1] for r in rows if r[1]]):.2f}" if any(r[1] for r in rows) else "-"
        b_t = f"{np.mean([r[2][1] for r in rows if r[2]]):.2f}" if any(r[2] for r in rows) else "-"
        lines.append(f"| {cname} | {mname} | {o_ssim} | {s_ssim} | {b_ssim} | {o_t} | {s_t} | {b_t} |")
    lines += _target_table(mni)
    from collections import Counter

    meta = cache.get("_meta", {"sigpy_maps": [], "bart_failed": []})
    lines += ["", f"SigPy's coil maps (best SENSE of its ESPIRiT at the ACS width, at 24, or medcli's ESPIRiT), per slice: "
              f"{dict(Counter(meta['sigpy_maps']))}."]
    if meta["bart_failed"]:
        lines += [f"BART failed on {len(meta['bart_failed'])} data sets: {sorted(set(meta['bart_failed']))}."]
    # Whole command-line runs, for the record (imports, ESPIRiT, file I/O included).
    first = next(p for _, p, _, _ in sets if p is not None)
    lines += ["", "Whole runs of `medcli recon` on the last MNI T1 file (" + str(len(zs)) + " slices, one thread): " +
              ", ".join(f"{m} {cli_time(first, m, work):.1f} s" for m in ("zerofill", "sense", "cs", "learned")) + ".", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-(len(summary) + 6):]))
    shutil.rmtree(work, ignore_errors=True)


def _target_table(mni: dict) -> list[str]:
    """The issue's learned target on the held-out MNI slices: SSIM gain over medcli's best CS, time vs cs tv."""
    rows = ["", "## Learned vs the best CS on the held-out MNI T1 slices (the issue's target: +0.03 SSIM at 4x, +0.05 at 8x, in at most the CS time)", "",
            "| condition | learned SSIM | best CS SSIM | gain | target | time learned / cs tv |", "|---|---|---|---|---|---|"]
    for cname in dict.fromkeys(c for c, _ in mni):
        if (cname, "learned") not in mni:
            continue
        learned = mni[(cname, "learned")]
        best = max(("cs wavelet", "cs tv"), key=lambda m: mni[(cname, m)][0][0] if (cname, m) in mni else -1)
        cs = mni[(cname, best)]
        target = 0.05 if cname.startswith("8x") else 0.03
        gain = learned[0][0] - cs[0][0]
        ratio = learned[1] / mni[(cname, "cs tv")][1]
        rows.append(f"| {cname} | {learned[0][0]:.4f} | {cs[0][0]:.4f} ({best}) | {gain:+.4f} | +{target:.2f} ({'met' if gain >= target else f'missed by {target - gain:.3f}'}) | {ratio:.2f} |")
    return rows


def _lam(entry) -> str:
    return f" (λ {entry[2]})" if entry[2] else ""


def _bart_version() -> str:
    if shutil.which("bart") is None:
        return "not installed (skipped)"
    return subprocess.run(["bart", "version"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()

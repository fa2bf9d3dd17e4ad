"""Benchmark: ``medcli recon`` (CT) against scikit-image's ``iradon`` / ``iradon_sart``.

Data: real CT slices (pydicom's CT_small = ``sample:ct``, and the two 512x512 head slices
J2K_pixelrep_mismatch.dcm and 693_J2KI.dcm, 4x4 block-averaged) and the modified Shepp-Logan
phantom (scikit-image, 400 -> 127 pixels; HU = 1250 (v - 0.2), air where v < 0.05), all cropped to 127x127 so
that the rotation centre is a pixel centre for both tools. None of them was used to train the
learned model (it saw only synthetic slices). Sinograms come from ``medcli.recon.ct.simulate_ct``
(parallel beam, 3x finer grid, 1000 / 180 / 60 views; with and without Poisson noise of 4096
photons per bin); both tools reconstruct the same sinogram. Metrics in the body mask (reference
> -900 HU, holes filled, dilated 2 px): PSNR with the reference's range in the mask, SSIM (map
averaged over the mask). Times: in-process wall seconds on one thread (the reconstruction call
only, projector set-up included; not the CLI start-up), the best of ``--repeat`` for FBP and, at 60 views
(where the learned method's time is compared with the iterative methods'), for the iterative and learned
methods; one run at 180 views. The methods of one condition run in interleaved rounds (and medcli's and
iradon's FBP on the large grids alternate), so that a change of the machine's load hits them alike. The learned method (recon-ct 2.x) starts from osem+TV with 5
iterations; that start is a row of its own, so the network's gain is the difference.

Run: ``python tests/benchmarks/bench_recon_ct.py [--quick] [--model runs/recon_ct]``; writes
``tests/benchmarks/results/recon_ct.md``. On a loaded machine, ``--conditions 60:4096 --reuse
tests/benchmarks/results/recon_ct.md`` re-runs one acquisition and keeps the other rows of the earlier run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

warnings.filterwarnings("ignore")
RESULTS = Path(__file__).parent / "results" / "recon_ct.md"
SIZE = 127


def images() -> dict[str, tuple[np.ndarray, float]]:
    """name -> (HU slice 127x127, pixel size mm)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    from medcli import io

    out = {}
    ct = io.read("sample:ct")
    out["CT_small (thorax, 0.66 mm)"] = (np.asarray(ct.data, np.float32)[:SIZE, :SIZE, 0], float(ct.spacing[0]))
    for name, label in (("J2K_pixelrep_mismatch.dcm", "head 1 (1.72 mm)"), ("693_J2KI.dcm", "head 2 (1.91 mm)")):
        d = pydicom.dcmread(get_testdata_file(name))
        hu = d.pixel_array.astype(np.float32) * float(d.get("RescaleSlope", 1)) + float(d.get("RescaleIntercept", 0))
        hu = np.maximum(hu, -1000).reshape(128, 4, 128, 4).mean((1, 3))[:SIZE, :SIZE]
        out[label] = (hu.T.copy(), 4 * float(d.PixelSpacing[0]))
    ph = resize(shepp_logan_phantom(), (SIZE, SIZE), order=1, anti_aliasing=True)
    # skull (1.0) -> +1000 HU, brain (0.2) -> water, air outside
    out["Shepp-Logan (1 mm)"] = (np.where(ph < 0.05, -1000.0, 1250 * (ph - 0.2)).astype(np.float32), 1.0)
    return out


def body_mask(ref: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    m = ndimage.binary_fill_holes(ref > -900)
    return ndimage.binary_dilation(m, iterations=2)


def scores(ref: np.ndarray, test: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import structural_similarity

    rng = float(ref[mask].max() - ref[mask].min())
    mse = float(np.mean((ref[mask].astype(np.float64) - test[mask]) ** 2))
    _, smap = structural_similarity(ref.astype(np.float64), test.astype(np.float64), data_range=rng, full=True)
    return 10 * np.log10(rng**2 / mse), float(smap[mask].mean())


def timed(fn, repeat: int = 1):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CT_small and Shepp-Logan only, 180 and 60 views")
    ap.add_argument("--model", default=None, help="learned model (hub name or folder; default: recon-ct if registered)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--conditions", nargs="+", default=None, metavar="VIEWS:PHOTONS",
                    help="run only these acquisitions (e.g. 60:4096, 180:0) and, with --reuse, take every other row")
    ap.add_argument("--reuse", default=None, metavar="RESULTS.md",
                    help="rows of the conditions not run (and the large-grid FBP table) from this earlier results file")
    args = ap.parse_args()

    import torch
    from skimage.transform import iradon, iradon_sart

    from medcli.image import Image
    from medcli.recon.ct import reconstruct_ct, simulate_ct

    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]  # timings move with the machine's load: the results say what it was
    learned_ok = True
    try:
        from medcli.recon.ct.learned import PostProcessor

        PostProcessor.load(args.model)
    except Exception as e:  # no model yet: the classical rows still run
        print(f"learned: skipped ({e})", file=sys.stderr)
        learned_ok = False

    imgs = images()
    if args.quick:
        imgs = {k: v for k, v in imgs.items() if k.startswith(("CT_small", "Shepp"))}
    conditions = [(v, ph) for v in ((180, 60) if args.quick else (1000, 180, 60)) for ph in (None, 4096)]
    if args.conditions:
        conditions = [(int(v), int(ph) or None) for v, ph in (c.split(":") for c in args.conditions)]
    old_rows, old_timing = reused(args.reuse) if args.reuse else ([], [])
    rows = []
    for name, (hu, pixel) in imgs.items():
        affine = np.diag([pixel, pixel, 1.0, 1.0])
        image = Image(hu[:, :, None], affine)
        mask = body_mask(hu)
        for views, photons in conditions:
            sino = simulate_ct(image, views=views, photons=photons, seed=views)
            g = sino.geometry
            sk_sino = sino.line_integrals()[0].T.astype(np.float64)
            o = (g.detectors - SIZE) // 2

            def sk_hu(mu_px: np.ndarray, crop: bool = False) -> np.ndarray:
                mu = mu_px[o : o + SIZE, o : o + SIZE] if crop else mu_px
                return 1000 * (mu / g.pixel_spacing[0] - g.mu_water) / g.mu_water

            def ours(method, **kw):
                return reconstruct_ct(sino, method, **kw).data[..., 0]

            cond = f"{views} views, " + ("no noise" if photons is None else f"{photons} photons")
            cands = [
                ("medcli fbp ram-lak", lambda: ours("fbp"), args.repeat),
                ("skimage iradon ramp", lambda: sk_hu(iradon(sk_sino, theta=g.angles, output_size=SIZE, filter_name="ramp", circle=False)), args.repeat),
                ("medcli fbp hann", lambda: ours("fbp", filter="hann"), args.repeat),
                ("skimage iradon hann", lambda: sk_hu(iradon(sk_sino, theta=g.angles, output_size=SIZE, filter_name="hann", circle=False)), args.repeat),
            ]
            if views <= 180:
                it_rep = args.repeat if views == 60 else 1

                def sk_sart(n=2):
                    x = None
                    for _ in range(n):
                        x = iradon_sart(sk_sino, theta=g.angles, image=x)
                    return sk_hu(x, crop=True)

                cands += [
                    ("medcli sart (2 it)", lambda: ours("sart", iterations=2), it_rep),
                    ("skimage iradon_sart (2 it)", sk_sart, it_rep),
                    ("medcli sirt (100 it)", lambda: ours("sirt"), 1),
                    ("medcli sart+tv (5 it)", lambda: ours("sart", reg="tv", lam=20.0), it_rep),
                    ("medcli osem+tv (10 it)", lambda: ours("osem", reg="tv", lam=20.0, photons=photons or 1e6), it_rep),
                    # the TV weight that scored best (mean PSNR) on 8 synthetic training-like slices at 60 views,
                    # 4096 photons (recon_ct_compare.py --synthetic 8): the peer tuned without the test images
                    ("medcli osem+tv (10 it, lambda 40)", lambda: ours("osem", reg="tv", lam=40.0, photons=photons or 1e6), it_rep),
                ]
                if learned_ok:
                    # the learned method's start alone (what the network adds is the difference), and learned,
                    # timed like the iterative methods it competes with (the best of several runs leaves out the
                    # network's first-call set-up, as the iterative methods' is left out by the earlier rows)
                    cands += [
                        ("medcli osem+tv (5 it, learned's start)",
                         lambda: ours("osem", reg="tv", lam=20.0, iterations=5, photons=photons or 1e6), it_rep),
                        ("medcli learned", lambda: ours("learned", model=args.model), it_rep),
                    ]
            # interleaved rounds (every method still due a repeat runs once per round), best of each: a change
            # of the machine's load hits all methods of a condition alike, and their time ratios stay comparable
            best, outs = {label: np.inf for label, _, _ in cands}, {}
            for r in range(max(rep for _, _, rep in cands)):
                for label, fn, rep in cands:
                    if r < rep:
                        outs[label], t = timed(fn)
                        best[label] = min(best[label], t)
            for label, _, _ in cands:
                out, secs = outs[label], best[label]
                p, s = scores(hu, out, mask)
                rows.append((name, cond, label, p, s, secs))
                print(f"{name:28s} {cond:26s} {label:28s} PSNR {p:6.2f}  SSIM {s:.4f}  {secs:7.2f} s", flush=True)
    timing = old_timing if args.conditions else [] if args.quick else fbp_timing(args.repeat + 2)
    if old_rows:  # the earlier run's rows of the conditions not run here, in their place
        done = {(r[0], r[1]) for r in rows}
        rows = [r for r in old_rows if (r[0], r[1]) not in done] + rows
        order = {(n, c): i for i, (n, c) in enumerate(dict.fromkeys((r[0], r[1]) for r in old_rows + rows))}
        rows.sort(key=lambda r: order[(r[0], r[1])])
    write(rows, args, timing, (load_start, os.getloadavg()[0]))
    return 0


def reused(path: str) -> tuple[list[tuple], list[tuple]]:
    """The result rows and the large-grid FBP rows of an earlier results file (``--reuse``)."""
    rows, timing = [], []
    for line in Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[3].replace(".", "").isdigit() and " views" in cells[1]:
            rows.append((cells[0], cells[1], cells[2], float(cells[3]), float(cells[4]), float(cells[5])))
        elif len(cells) == 5 and cells[0].endswith("views") and cells[1].replace(".", "").isdigit():
            timing.append((cells[0], float(cells[1]), float(cells[2]), float(cells[4])))
    return rows, timing


def fbp_timing(repeat: int) -> list[tuple[str, float, float, float]]:
    """FBP on larger grids, where the time is the back-projection's (not set-up): (case, medcli s, skimage s, max |diff| HU).

    The sinogram is the noise-free projection of head 1 at 2x2 / full resolution (one projector pass,
    no oversampling: only the time and the agreement of the two FBPs matter here).
    """
    import pydicom
    import torch
    from pydicom.data import get_testdata_file
    from skimage.transform import iradon

    from medcli.recon.ct import Sinogram, reconstruct_ct
    from medcli.recon.ct.projector import Projector
    from medcli.recon.ct.simulate import hu_to_mu, make_geometry

    d = pydicom.dcmread(get_testdata_file("J2K_pixelrep_mismatch.dcm"))
    full = np.maximum(d.pixel_array.astype(np.float32), -1000)
    out = []
    for n, views, hu in ((255, 1000, full.reshape(256, 2, 256, 2).mean((1, 3))[:255, :255]), (511, 720, full[:511, :511])):
        px = 0.431 * 512 / (n + 1)
        geo = make_geometry((n, n), (px, px), views)
        p = Projector(geo).forward(torch.as_tensor(hu_to_mu(hu))[None]).numpy()
        sino = Sinogram(p, geo)
        # interleaved (medcli, iradon, medcli, ...), best of each: a change of load hits both alike
        t_ours = t_sk = np.inf
        for _ in range(repeat):
            ours, t = timed(lambda: reconstruct_ct(sino, "fbp").data[..., 0])
            t_ours = min(t_ours, t)
            theirs, t = timed(lambda: iradon(p[0].T.astype(np.float64), theta=geo.angles, output_size=n, filter_name="ramp",
                                             circle=False))
            t_sk = min(t_sk, t)
        theirs = 1000 * (theirs / px - geo.mu_water) / geo.mu_water
        case = f"{n}x{n}, {views} views"
        out.append((case, t_ours, t_sk, float(np.abs(ours - theirs).max())))
        print(f"fbp timing {case}: medcli {t_ours:.3f} s, skimage {t_sk:.3f} s, ratio {t_ours / t_sk:.2f}, "
              f"max |diff| {out[-1][3]:.3f} HU", flush=True)
    return out


def write(rows, args, timing=(), load=None) -> None:
    by = {(r[0], r[1], r[2]): r for r in rows}
    lines = [
        "# recon (CT): medcli vs scikit-image",
        "",
        "Generated by `python tests/benchmarks/bench_recon_ct.py" + (" --quick" if args.quick else "")
        + (f" --conditions {' '.join(args.conditions)}" if args.conditions else "")
        + (f" --reuse {args.reuse}" if args.reuse else "") + "`. "
        "Parallel beam, sinograms from `medcli recon simulate --ct` (3x finer grid; Poisson noise of 4096 photons "
        "per bin, LoDoPaB-CT's model); both tools reconstruct the same sinogram. PSNR (dB, reference range in the "
        "body mask) and SSIM in the body mask; seconds on one thread, in-process, projector set-up included."
        + (f" One-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end." if load else "")
        + (f" Learned model: `{args.model}`." if args.model else "")
        + (f" Re-run here: {', '.join(args.conditions)} (views:photons); every other row, and the large-grid FBP table, "
           f"is from `{args.reuse}` as it was before this run." if args.conditions and args.reuse else ""),
        "",
        "| image | acquisition | method | PSNR | SSIM | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {c} | {m} | {p:.2f} | {s:.4f} | {t:.3f} |" for n, c, m, p, s, t in rows]
    if timing:
        lines += ["", "## FBP time on larger grids (ram-lak, one thread, medcli and iradon interleaved, best of each)", "",
                  "| grid | medcli (s) | skimage iradon (s) | ratio | max abs difference (HU) |", "|---|---|---|---|---|"]
        lines += [f"| {c} | {a:.3f} | {b:.3f} | {a / b:.2f} | {d:.3f} |" for c, a, b, d in timing]
    lines += ["", "## Targets", ""]
    summary = []
    keys = list(dict.fromkeys((r[0], r[1]) for r in rows))
    for flt, skf in (("ram-lak", "ramp"), ("hann", "hann")):
        d = [by[k + (f"medcli fbp {flt}",)][3] - by[k + (f"skimage iradon {skf}",)][3] for k in keys]
        t = [by[k + (f"medcli fbp {flt}",)][5] / by[k + (f"skimage iradon {skf}",)][5] for k in keys]
        summary.append(f"* fbp {flt} vs iradon {skf}: PSNR difference {min(d):+.2f} to {max(d):+.2f} dB "
                       f"(target >= -0.2), time ratio {min(t):.2f}-{max(t):.2f} (median {np.median(t):.2f}; target <= 0.5)")
    sk = [k for k in keys if k + ("medcli sart (2 it)",) in by]
    if sk:
        d = [by[k + ("medcli sart (2 it)",)][3] - by[k + ("skimage iradon_sart (2 it)",)][3] for k in sk]
        t = [by[k + ("medcli sart (2 it)",)][5] / by[k + ("skimage iradon_sart (2 it)",)][5] for k in sk]
        summary.append(f"* sart vs iradon_sart, 2 iterations each: PSNR {min(d):+.2f} to {max(d):+.2f} dB (target >= 0), "
                       f"time ratio {min(t):.2f}-{max(t):.2f}")
        d = [by[k + ("medcli sirt (100 it)",)][3] - by[k + ("skimage iradon_sart (2 it)",)][3] for k in sk]
        summary.append(f"* sirt (100 it) vs iradon_sart (2 it): PSNR {min(d):+.2f} to {max(d):+.2f} dB")
    low = [k for k in keys if k[1] == "60 views, 4096 photons" and k + ("medcli learned",) in by]
    if low:
        iters = ("medcli sart (2 it)", "medcli sirt (100 it)", "medcli sart+tv (5 it)", "medcli osem+tv (10 it)",
                 "medcli osem+tv (10 it, lambda 40)")
        for k in low:
            le = by[k + ("medcli learned",)]
            best = max((by[k + (m,)] for m in iters), key=lambda r: r[3])
            fb = max(by[k + ("medcli fbp ram-lak",)][3], by[k + ("medcli fbp hann",)][3])
            start = by.get(k + ("medcli osem+tv (5 it, learned's start)",))
            gain = f", {le[3] - start[3]:+.2f} dB over its start" if start else ""
            summary.append(f"* learned, {k[0]}, 60 views low dose: {le[3] - by[k + ('medcli fbp ram-lak',)][3]:+.2f} dB over fbp ram-lak "
                           f"({le[3] - fb:+.2f} over the better fbp window), {le[3] - best[3]:+.2f} dB over the best iterative "
                           f"({best[2]}){gain}, time {le[5]:.2f} s vs {best[5]:.2f} s, ratio {le[5] / best[5]:.2f} "
                           f"(targets +3, +1, <= 1)")
    for c, a, b, _ in timing:
        summary.append(f"* fbp time on {c}: {a / b:.2f} of iradon's (target <= 0.5)")
    lines += summary + [""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())

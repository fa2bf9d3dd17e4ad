"""Compare recon-ct candidates (and the iterative methods' settings) on the CT benchmark's 60-view, low-dose sinograms.

The images, body mask and score are ``bench_recon_ct.py``'s (CT_small, the two head slices, Shepp-Logan;
60 parallel views, 4096 photons per bin); the noise seed 60 is the benchmark's, other seeds give the spread.
Each sinogram's start (5-iteration OS-SPS + TV and FBP) is computed once and shared by every model, so the
rows differ only in the network. No timings here (``bench_recon_ct.py`` times the shipped method).

* ``--models A B ...``: folders or hub names; each is scored alone, and with ``--tta 4 8`` under 4 or 8
  test-time transforms (flips and turns, as the training windows were augmented; outputs averaged); with two or more,
  the mean of all models' outputs ("ensemble") as well.
* ``--lambdas`` / ``--iterations``: a grid of osem+TV and sart+TV settings (the iterative peers' tuning).
* ``--synthetic N``: instead of the benchmark's images, N synthetic training-like slices (stage 3's validation
  settings, a seed no bank or validation set uses), to choose the iterative settings without the test images.

Run: ``OMP_NUM_THREADS=1 nice -n 10 python tests/benchmarks/recon_ct_compare.py --models recon-ct runs/x --seeds 60 1 2``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_recon_ct import body_mask, images, scores  # noqa: E402


def synthetic(count: int) -> dict[str, tuple[np.ndarray, float]]:
    """``count`` synthetic slices drawn as stage 3's validation draws them (127x127, like the benchmark's)."""
    from medcli.recon.ct.learned import synthetic_ct_slice

    rng = np.random.default_rng(20261299)
    kw = dict(body_prob=0.25, fill_prob=0.25, random_prob=0.3, clutter_prob=0.7, fov_max=1.7, holder_prob=0.4)
    out = {}
    for i in range(count):
        hu, pixel = synthetic_ct_slice(rng, 127, **kw)
        out[f"syn{i}"] = (hu.astype(np.float32), float(pixel))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=[])
    ap.add_argument("--tta", nargs="*", type=int, default=[], choices=(2, 4, 8),
                    help="also score each model under these numbers of test-time flips / turns")
    ap.add_argument("--seeds", nargs="+", type=int, default=[60])
    ap.add_argument("--lambdas", nargs="*", type=float, default=[], help="TV weights (HU) of an iterative grid")
    ap.add_argument("--iterations", nargs="*", type=int, default=[10], help="osem iterations of the grid")
    ap.add_argument("--synthetic", type=int, default=0, help="score on N synthetic slices instead")
    ap.add_argument("--sart-iterations", nargs="*", type=int, default=[5], help="sart iterations of the grid")
    args = ap.parse_args()

    import torch

    from medcli.image import Image
    from medcli.recon.ct import reconstruct_ct, simulate_ct
    from medcli.recon.ct.learned import PostProcessor, start_inputs
    from medcli.recon.ct.projector import Projector

    torch.set_num_threads(1)
    nets = {m: PostProcessor.load(m) for m in args.models}
    table: dict[str, dict[str, list[float]]] = {}

    def put(label: str, name: str, value: float) -> None:
        table.setdefault(label, {}).setdefault(name, []).append(value)

    for name, (hu, pixel) in (synthetic(args.synthetic) if args.synthetic else images()).items():
        short = name.split(" (")[0]
        mask = body_mask(hu)
        image = Image(hu[:, :, None], np.diag([pixel, pixel, 1.0, 1.0]))
        for seed in args.seeds:
            sino = simulate_ct(image, views=60, photons=4096, seed=seed)
            outs = {}
            if nets:
                first = next(iter(nets.values()))
                with torch.inference_mode():
                    p = torch.as_tensor(sino.line_integrals())
                    x = start_inputs(p, Projector(sino.geometry), 4096.0, first.spec.get("input", {})).numpy()
                put("start (osem+TV 5 it)", short, scores(hu, 1000 * x[0, 0], mask)[0])
                for m, net in nets.items():
                    outs[m] = 1000 * net(x)[0]
                    put(m, short, scores(hu, outs[m], mask)[0])
                    for n in args.tta:
                        outs[f"{m} x{n}"] = 1000 * net(x, transforms=n)[0]
                        put(f"{m} x{n}", short, scores(hu, outs[f"{m} x{n}"], mask)[0])
                if len(nets) > 1:
                    for suffix in [""] + [f" x{n}" for n in args.tta]:
                        mean = np.mean([outs[m + suffix] for m in nets], 0)
                        put("ensemble" + suffix, short, scores(hu, mean, mask)[0])
            for lam in args.lambdas:
                for it in args.iterations:
                    out = reconstruct_ct(sino, "osem", reg="tv", lam=lam, iterations=it, photons=4096).data[..., 0]
                    put(f"osem+TV {it} it, lambda {lam:g}", short, scores(hu, out, mask)[0])
                for it in args.sart_iterations:
                    out = reconstruct_ct(sino, "sart", reg="tv", lam=lam, iterations=it).data[..., 0]
                    put(f"sart+TV {it} it, lambda {lam:g}", short, scores(hu, out, mask)[0])
            print(f"done {short} seed {seed}", file=sys.stderr, flush=True)

    names = list(dict.fromkeys(n for row in table.values() for n in row))
    print(f"PSNR (dB) in the body mask, 60 views, 4096 photons, seeds {args.seeds} (mean over seeds; per seed in brackets)")
    print("| candidate | " + " | ".join(names) + " | mean |")
    print("|---|" + "---|" * (len(names) + 1))
    for label, row in table.items():
        cells = []
        for n in names:
            v = row.get(n, [])
            cells.append(f"{np.mean(v):.2f}" + (f" ({' / '.join(f'{a:.2f}' for a in v)})" if len(v) > 1 else "") if v else "")
        mean = np.mean([np.mean(v) for v in row.values()])
        print(f"| {label} | " + " | ".join(cells) + f" | {mean:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

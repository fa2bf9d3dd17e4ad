"""Settings of smore's self-supervised fine-tune, side by side on tuning heads (issue 18).

Data: the 96^3 skull-on block of HELD_OUT heads 90006 / 90007 (the tuning heads: never the benchmark
heads 90001-90004 nor the hub-test head 90005, so that a choice made here is measured elsewhere),
box-averaged to 4 and 6 mm along the last axis. Each variant overrides keyword arguments of
``train_smore`` (``edge``, ``patch``, ``batch``, ``steps``, ``lr``) inside one in-process ``superres()``
call (default ``smore``, the bundled model as warm start, one thread); ``edge0.5`` is the default.
Metric: PSNR over non-air voxels, gain over cubic in dB; process CPU seconds of each call.

Only when a variant helps both tuning heads is it measured once on the benchmark heads and the template
(``--heads 90001,90002,90003,90004 --template whole``).

Usage::

    python tests/benchmarks/enhance/smore_settings.py [--heads 90006,90007] [--thickness 4,6]
        [--variants edge0.5,edge0.75,...] [--template none|block|whole]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE))

from superres_models import datasets, timed

from medcli.enhance import degrade
from medcli.enhance import superres as sr
from medcli.image import Image

#: Variants at about the default's CPU (400 steps of 8 patches of 48^2 pixels); a callable maps the
#: slice thickness (the factor, at 1 mm in-plane) to its arguments.
VARIANTS: dict[str, dict | Callable[[int], dict]] = {
    "edge0.5": {"edge": 0.5},
    "edge0.75": {"edge": 0.75},
    "p64b4": {"edge": 0.5, "patch": 64, "batch": 4},  # more context, 16384 vs 18432 pixels a step
    "lr3e-4": {"edge": 0.5, "lr": 3e-4},
    "s800b4": {"edge": 0.5, "steps": 800, "batch": 4},  # twice the steps, half the batch
    "edge0.75s800b4": {"edge": 0.75, "steps": 800, "batch": 4},
    "edge0.75below5": lambda k: {"edge": 0.75 if k < 5 else 0.5},  # session 8: edge 0.75 at 4 mm only
}


def run(heads: list[int], thickness: tuple[int, ...], names: list[str], template: str = "none") -> None:
    """Print one line per (image, thickness, variant): gain over cubic and CPU seconds."""
    import torch

    torch.set_num_threads(1)
    orig = sr.train_smore
    try:
        for image, ref in datasets(heads, template):
            for k in thickness:
                n = ref.shape[2] // k * k
                clean = Image(ref.data[:, :, :n], ref.affine)
                thick = degrade.thick_slices(clean, k, axis=2, profile="box")
                base = degrade.psnr(clean.data, np.asarray(sr.superres(thick, "cubic", 1.0).data, np.float32))
                for name in names:
                    v = VARIANTS[name]
                    # Override after the caller's arguments, so edge=SMORE_EDGE is replaced too.
                    sr.train_smore = lambda *a, _kw=v(k) if callable(v) else v, **kw: orig(*a, **{**kw, **_kw})
                    out, secs = timed(sr.superres, thick, "smore", 1.0)
                    p = degrade.psnr(clean.data, np.asarray(out.data, np.float32))
                    print(f"{image} {k} mm {name}: {p - base:+.3f} dB ({secs:.0f} CPU s)", flush=True)
    finally:
        sr.train_smore = orig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", default="90006,90007", help="HELD_OUT tuning head seeds")
    ap.add_argument("--thickness", default="4,6")
    ap.add_argument("--template", default="none", choices=("block", "whole", "none"),
                    help="also the template's 96^3 block or the whole template (first), as superres_models.py")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"any of {', '.join(VARIANTS)}")
    args = ap.parse_args(argv)
    run([int(s) for s in args.heads.split(",") if s], tuple(int(k) for k in args.thickness.split(",")), args.variants.split(","),
        args.template)


if __name__ == "__main__":
    main()

"""Settings of smore's self-supervised fine-tune, side by side on tuning heads (issue 18).

Data: the 96^3 skull-on block of HELD_OUT heads 90006 / 90007 (the tuning heads: never the benchmark
heads 90001-90004 nor the hub-test head 90005, so that a choice made here is measured elsewhere),
box-averaged to 4 and 6 mm along the last axis. Each variant overrides keyword arguments of
``train_smore`` (``edge``, ``patch``, ``batch``, ``steps``, ``lr``) inside one in-process ``superres()``
call (default ``smore``, the bundled model as warm start, one thread); ``edge0.5`` is the default.
Metric: PSNR over non-air voxels, gain over cubic in dB; process CPU seconds of each call.

Usage::

    python tests/benchmarks/enhance/smore_settings.py [--heads 90006,90007] [--thickness 4,6]
        [--variants edge0.5,edge0.75,...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE))

from denoise import skull_on_head
from superres_models import timed

from medcli.enhance import degrade
from medcli.enhance import superres as sr
from medcli.image import Image

#: Variants at about the default's CPU (400 steps of 8 patches of 48^2 pixels).
VARIANTS: dict[str, dict] = {
    "edge0.5": {"edge": 0.5},
    "edge0.75": {"edge": 0.75},
    "p64b4": {"edge": 0.5, "patch": 64, "batch": 4},  # more context, 16384 vs 18432 pixels a step
    "lr3e-4": {"edge": 0.5, "lr": 3e-4},
    "s800b4": {"edge": 0.5, "steps": 800, "batch": 4},  # twice the steps, half the batch
    "edge0.75s800b4": {"edge": 0.75, "steps": 800, "batch": 4},
}


def run(heads: list[int], thickness: tuple[int, ...], names: list[str]) -> None:
    """Print one line per (head, thickness, variant): gain over cubic and CPU seconds."""
    import torch

    torch.set_num_threads(1)
    orig = sr.train_smore
    try:
        for s in heads:
            ref = skull_on_head(True, s)
            for k in thickness:
                n = ref.shape[2] // k * k
                clean = Image(ref.data[:, :, :n], ref.affine)
                thick = degrade.thick_slices(clean, k, axis=2, profile="box")
                base = degrade.psnr(clean.data, np.asarray(sr.superres(thick, "cubic", 1.0).data, np.float32))
                for name in names:
                    # Override after the caller's arguments, so edge=SMORE_EDGE is replaced too.
                    sr.train_smore = lambda *a, _kw=VARIANTS[name], **kw: orig(*a, **{**kw, **_kw})
                    out, secs = timed(sr.superres, thick, "smore", 1.0)
                    p = degrade.psnr(clean.data, np.asarray(out.data, np.float32))
                    print(f"head {s} {k} mm {name}: {p - base:+.3f} dB ({secs:.0f} CPU s)", flush=True)
    finally:
        sr.train_smore = orig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", default="90006,90007", help="HELD_OUT tuning head seeds")
    ap.add_argument("--thickness", default="4,6")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"any of {', '.join(VARIANTS)}")
    args = ap.parse_args(argv)
    run([int(s) for s in args.heads.split(",")], tuple(int(k) for k in args.thickness.split(",")), args.variants.split(","))


if __name__ == "__main__":
    main()

"""Choose the harmonize default under scanner drift on validation renderings, not on the benchmark's.

The drift benchmark (``tests/benchmarks/enhance/harmonize.py --drift``) scores
``biascorrect | harmonize`` on pairs of ``degrade.DRIFT_SCANNERS`` renderings
(seeds 300+). This script scores the same methods on pairs of OTHER renderings:
the scanners of ``medcli.train.synth.DRIFT_VALIDATION`` (other gamma exponents,
sigmoid centres and widths, gains, noise, slices) plus a plain reference
scanner, with noise/bias seeds 700+, on the MNI T1 at 2 mm; and it compares the
learned method's refinement likelihoods (``REFINE_LIKELIHOOD`` of
``medcli.segment.tissue``: one Gaussian per tissue, or a histogram per
tissue). Per pair: the ratio of each method's tissue-mean distance to
z-scoring's (the benchmark's metric and target: <= 0.30, never above Nyul).

Run: ``python scripts/validate_harmonize_drift.py`` (prints one line per method).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "benchmarks" / "enhance"))


def main() -> int:
    import harmonize as bench  # tests/benchmarks/enhance/harmonize.py: the benchmark's anatomy and metric

    from medcli.enhance import degrade
    from medcli.enhance import harmonize as H
    from medcli.enhance.bias import biascorrect
    from medcli.segment import tissue
    from medcli.train.synth import DRIFT_VALIDATION

    img, brain, labels = bench.anatomy(True)
    scanners = {"reference (validation)": degrade.Drift(bias=0.3, rician=2)}
    scanners.update({n: degrade.Drift(**p) for n, p in DRIFT_VALIDATION.items()})
    scans = {}
    for i, (name, drift) in enumerate(scanners.items()):
        raw = degrade.drift_render(img, drift, rng=700 + i, mask=brain)
        scans[name] = biascorrect(raw, "n4", mask=brain)[0]
    pairs = list(itertools.combinations(scanners, 2))
    methods = {
        "zscore": lambda x: H.zscore(x, brain).data,
        "nyul (shipped standard)": lambda x: H.nyul(x, None, brain).data,
    }
    for lik in ("gaussian", "histogram"):
        def learned(x, lik=lik):
            old = tissue.REFINE_LIKELIHOOD
            tissue.REFINE_LIKELIHOOD = lik
            try:
                return H.learned(x, brain).data
            finally:
                tissue.REFINE_LIKELIHOOD = old
        methods[f"learned ({lik} refinement)"] = learned
    dist = {}
    for method, fn in methods.items():
        out = {n: np.asarray(fn(x)) for n, x in scans.items()}
        dist[method] = [bench.distance(out[a], out[b], labels) for a, b in pairs]
        print(f"{method}: done", file=sys.stderr, flush=True)
    z, nyul = dist["zscore"], dist["nyul (shipped standard)"]
    print(f"{len(pairs)} validation pairs of {len(scanners)} scanners (MNI T1 2 mm, seeds 700+)")
    for method, d in dist.items():
        ratios = [a / max(b, 1e-12) for a, b in zip(d, z)]
        worst = int(np.argmax(ratios))
        held = sum(r <= 0.30 and a <= n + 1e-12 for r, a, n in zip(ratios, d, nyul))
        print(f"{method:34s} worst ratio {ratios[worst]:.3f} ({' vs '.join(pairs[worst])}), mean distance "
              f"{np.mean(d):.4f}, target met on {held} of {len(pairs)} pairs")
        print("    " + ", ".join(f"{r:.3f}" for r in ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

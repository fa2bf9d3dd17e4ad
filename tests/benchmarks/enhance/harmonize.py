"""Benchmark section: intensity harmonisation across simulated scanners.

Data: the MNI152 2009a T1 (bundled, 1 mm; ``--quick``: every other voxel, 2 mm)
rendered by pairs of simulated scanners (``medcli.enhance.degrade``:
``scanner_response`` severity 1 = random non-linear response + gain + offset +
blur, a 30 % smooth bias field, 2 % Rician noise; seeds below). Two pipelines:
``biascorrect`` (N4, ``medcli.enhance.bias``) then each harmonisation method
(the target pipeline), and each method on the uncorrected renderings. Every
method gets the same brain mask (T1 > 0).

Metric: for each pair, the RMS difference of the CSF/GM/WM mean intensities
(tissues from the MNI probability maps: GM > 0.7, WM > 0.9, CSF = brain with
GM, WM < 0.1), divided by the mean WM-CSF contrast; ``ratio`` is that
distance over the distance after medcli's z-score in the same pipeline
(the target: <= 0.30).

Peers, same images and mask, same run: ``intensity-normalization`` 3.x
(Reinhold et al. 2019: ZScoreNormalizer, WhiteStripeNormalizer,
NyulNormalizer fitted on the same standard training scans as medcli) and
``skimage.exposure.match_histograms`` for histogram matching.

Drift pairs (issue 18): the same anatomy rendered by the named, explicit
scanners of ``medcli.enhance.degrade.DRIFT_SCANNERS`` (gamma exponents
0.5-1.6, a sigmoid response, gains 0.5-2, offsets, bias 0.2-0.4, Rician
1-5 %, 3 mm slices; ``issue-18`` is the issue's gamma 0.65 + gain/offset +
bias + 2 % Rician), ``biascorrect n4 | harmonize``, every method on every
pair of :data:`DRIFT_PAIRS`; the target per pair: ratio <= 0.30 and never
above Nyul with the shipped standard. ``--drift``: that table only (written
to ``tests/benchmarks/results/harmonize_drift.md``).

Run alone: ``python tests/benchmarks/enhance/harmonize.py [--quick] [--drift]`` (writes
``tests/benchmarks/results/harmonize.md``); ``tests/benchmarks/bench_enhance.py``
imports :func:`run`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from medcli import io  # noqa: E402
from medcli.enhance import degrade  # noqa: E402
from medcli.enhance import harmonize as H  # noqa: E402
from medcli.image import Image  # noqa: E402

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "harmonize.md"
TISSUES = ("csf", "gm", "wm")
PAIRS = [(101, 102), (103, 104), (105, 106), (107, 108)]
TRAIN_SEEDS = (201, 202, 203)  # scans the Nyul standards are fitted on (not the test renderings)
DRIFT_RESULTS = ROOT / "tests" / "benchmarks" / "results" / "harmonize_drift.md"
#: Pairs of degrade.DRIFT_SCANNERS renderings of the same anatomy.
DRIFT_PAIRS = [
    ("reference", "issue-18 (gamma 0.65)"),
    ("reference", "gamma 1.6"),
    ("issue-18 (gamma 0.65)", "gamma 1.6"),
    ("gamma 0.5", "sigmoid"),
    ("issue-18 (gamma 0.65)", "sigmoid"),
    ("reference", "gamma 0.8, 5 %, 3 mm"),
    ("reference", "PD-like (gamma 0.8)"),
    ("PD-like (gamma 0.8)", "FLAIR-like (gamma 1.3)"),
]
#: Scanners of the first six pairs, in the order of their noise/bias seeds (300 + index); scanners
#: added later take the next seeds, so that the earlier renderings stay the same images.
DRIFT_SEED_ORDER = ("gamma 0.5", "gamma 0.8, 5 %, 3 mm", "gamma 1.6", "issue-18 (gamma 0.65)", "reference", "sigmoid",
                    "PD-like (gamma 0.8)", "FLAIR-like (gamma 1.3)")


def anatomy(quick: bool):
    t1 = io.read("sample:t1")
    sub = (slice(None, None, 2),) * 3 if quick else (slice(None),) * 3
    d = np.asarray(t1.data, np.float32)[sub]
    gm = np.asarray(io.read("sample:gm").data, np.float32)[sub] / 255
    wm = np.asarray(io.read("sample:wm").data, np.float32)[sub] / 255
    aff = t1.affine.copy()
    if quick:
        aff[:3, :3] *= 2
    brain = d > 0
    labels = {"csf": brain & (gm < 0.1) & (wm < 0.1), "gm": gm > 0.7, "wm": wm > 0.9}
    return Image(d, aff), brain, labels


def tissue_probs(quick: bool) -> np.ndarray:
    """CSF, GM, WM probabilities (3, ...) on the grid of :func:`anatomy` (the PD-/FLAIR-like renderings need them)."""
    sub = (slice(None, None, 2),) * 3 if quick else (slice(None),) * 3
    brain = np.asarray(io.read("sample:t1").data)[sub] > 0
    gm = np.asarray(io.read("sample:gm").data, np.float32)[sub] / 255 * brain
    wm = np.asarray(io.read("sample:wm").data, np.float32)[sub] / 255 * brain
    return np.stack([np.clip(brain - gm - wm, 0, 1), gm, wm]).astype(np.float32)


def render(img: Image, seed: int) -> Image:
    g = np.random.default_rng(seed)
    x = degrade.scanner_response(img.data, g, severity=1.0, spacing=img.spacing)
    x = x * degrade.bias_field(x.shape, 0.3, g, spacing=img.spacing)
    return img.with_data(degrade.add_rician(x, 2, rng=g))


def distance(a: np.ndarray, b: np.ndarray, labels) -> float:
    ma = np.array([a[labels[t]].mean() for t in TISSUES])
    mb = np.array([b[labels[t]].mean() for t in TISSUES])
    contrast = 0.5 * (abs(ma[2] - ma[0]) + abs(mb[2] - mb[0]))
    return float(np.sqrt(np.mean((ma - mb) ** 2)) / contrast)


def _learned_available() -> bool:
    try:
        from medcli.segment.tissue import load_model

        load_model(H.LEARNED_MODEL)
        return True
    except Exception as e:  # noqa: BLE001 - report, do not fail the benchmark
        print(f"harmonize: learned model unavailable ({e})", file=sys.stderr)
        return False


def run(quick: bool = False) -> list[dict]:
    """Rows: pipeline, method, tool, mean distance, ratio to medcli z-score (same pipeline), seconds per scan."""
    from medcli.enhance.bias import biascorrect

    img, brain, labels = anatomy(quick)
    pairs = PAIRS
    raw = {seed: render(img, seed) for seed in sorted({s for p in pairs for s in p} | set(TRAIN_SEEDS))}
    t0 = time.perf_counter()
    corrected = {seed: biascorrect(x, "n4", mask=brain)[0] for seed, x in raw.items()}
    n4_time = (time.perf_counter() - t0) / len(corrected)
    rows = []
    for pipeline, scans in (("biascorrect n4 | harmonize", corrected), ("harmonize (bias left in)", raw)):
        rows += _rows(pipeline, scans, pairs, img, brain, labels)
    rows.append({"section": "harmonize", "pipeline": "biascorrect n4", "method": "(N4 alone, per scan)", "tool": "medcli",
                 "distance": float("nan"), "seconds": n4_time, "ratio_vs_zscore": float("nan"), "target_met": None})
    for r in rows:
        r["data"] = f"MNI152 T1 {'2 mm' if quick else '1 mm'}, {len(pairs)} scanner pairs"
    return rows + run_drift(quick)


def _rows(pipeline, scans, pairs, img, brain, labels) -> list[dict]:
    train = [scans[s] for s in TRAIN_SEEDS]

    methods: dict[tuple[str, str], callable] = {}
    methods[("zscore", "medcli")] = lambda x: H.zscore(x, brain).data
    methods[("whitestripe", "medcli")] = lambda x: H.whitestripe(x, brain)[0].data
    standard = H.fit_nyul(train, [brain] * len(train))
    methods[("nyul (fit on 3 scans)", "medcli")] = lambda x: H.nyul(x, standard, brain).data
    methods[("nyul (shipped standard)", "medcli")] = lambda x: H.nyul(x, None, brain).data
    methods[("histmatch to MNI T1", "medcli")] = lambda x: H.histmatch(x, img, brain, brain).data
    if _learned_available():
        methods[("learned (tissue posteriors)", "medcli")] = lambda x: H.learned(x, brain).data
    try:
        import intensity_normalization as inorm
        from intensity_normalization.normalizers.individual.whitestripe import WhiteStripeNormalizer
        from intensity_normalization.normalizers.individual.zscore import ZScoreNormalizer
        from intensity_normalization.normalizers.population.nyul import NyulNormalizer

        peer = f"intensity-normalization {inorm.__version__}"
        wrap = inorm.create_image
        pmask = wrap(brain)

        def arr(out) -> np.ndarray:
            return np.asarray(out.get_data() if hasattr(out, "get_data") else out, np.float32)

        methods[("zscore", peer)] = lambda x: arr(ZScoreNormalizer().fit_transform(wrap(x.data), pmask))
        methods[("whitestripe", peer)] = lambda x: arr(WhiteStripeNormalizer().fit_transform(wrap(x.data), pmask))
        nyul_peer = NyulNormalizer()
        nyul_peer.fit_population([wrap(t.data) for t in train], [pmask] * len(train))
        methods[("nyul (fit on 3 scans)", peer)] = lambda x: arr(nyul_peer.transform(wrap(x.data), pmask))
    except ImportError as e:
        print(f"harmonize: intensity-normalization not installed ({e}): pip install intensity-normalization", file=sys.stderr)
    try:
        import skimage
        from skimage.exposure import match_histograms

        def sk_match(x):
            out = np.asarray(x.data, np.float32).copy()
            out[brain] = match_histograms(x.data[brain], img.data[brain])
            return out

        methods[("histmatch to MNI T1", f"scikit-image {skimage.__version__}")] = sk_match
    except ImportError:
        pass

    rows = []
    for (method, tool), fn in methods.items():
        dists, secs = [], []
        for a, b in pairs:
            t0 = time.perf_counter()
            ha = fn(scans[a])
            hb = fn(scans[b])
            secs.append((time.perf_counter() - t0) / 2)
            dists.append(distance(np.asarray(ha), np.asarray(hb), labels))
        rows.append({"section": "harmonize", "pipeline": pipeline, "method": method, "tool": tool,
                     "distance": float(np.mean(dists)), "per_pair": [round(d, 4) for d in dists],
                     "seconds": float(np.mean(secs))})
    base = next(r["distance"] for r in rows if r["method"] == "zscore" and r["tool"] == "medcli")
    for r in rows:
        r["ratio_vs_zscore"] = r["distance"] / base
        r["target_met"] = r["ratio_vs_zscore"] <= 0.30
        peer = [p for p in rows if p["method"] == r["method"] and p["tool"] != "medcli"]
        if r["tool"] == "medcli" and peer:
            r["time_ratio_vs_peer"] = r["seconds"] / max(peer[0]["seconds"], 1e-9)
    return rows


def drift_methods(img: Image, brain: np.ndarray) -> dict[str, callable]:
    """medcli's harmonisation methods, each ``Image -> array`` with the benchmark's brain mask."""
    methods = {
        "zscore": lambda x: H.zscore(x, brain).data,
        "whitestripe": lambda x: H.whitestripe(x, brain)[0].data,
        "nyul (shipped standard)": lambda x: H.nyul(x, None, brain).data,
        "histmatch to MNI T1": lambda x: H.histmatch(x, img, brain, brain).data,
    }
    if _learned_available():
        methods["learned (tissue posteriors)"] = lambda x: H.learned(x, brain).data
    return methods


def run_drift(quick: bool = False) -> list[dict]:
    """Rows of the drift table: per method, the distance and ratio to z-score on every pair of DRIFT_PAIRS."""
    from medcli.enhance.bias import biascorrect

    img, brain, labels = anatomy(quick)
    probs = tissue_probs(quick)
    used = {n for p in DRIFT_PAIRS for n in p}
    names = [n for n in DRIFT_SEED_ORDER if n in used]
    scans = {}
    for n in names:
        seed = 300 + DRIFT_SEED_ORDER.index(n)
        raw = degrade.drift_render(img, degrade.DRIFT_SCANNERS[n], rng=seed, mask=brain, tissues=probs)
        scans[n] = biascorrect(raw, "n4", mask=brain)[0]
    rows = []
    for method, fn in drift_methods(img, brain).items():
        t0 = time.perf_counter()
        out = {n: np.asarray(fn(x)) for n, x in scans.items()}
        secs = (time.perf_counter() - t0) / len(scans)
        dists = [distance(out[a], out[b], labels) for a, b in DRIFT_PAIRS]
        rows.append({"section": "harmonize-drift", "pipeline": "biascorrect n4 | harmonize", "method": method,
                     "tool": "medcli", "per_pair": dists, "distance": float(np.mean(dists)), "seconds": secs})
    z = next(r for r in rows if r["method"] == "zscore")["per_pair"]
    nyul = next(r for r in rows if r["method"].startswith("nyul"))["per_pair"]
    for r in rows:
        r["ratios"] = [d / max(b, 1e-12) for d, b in zip(r["per_pair"], z)]
        r["worst_ratio"] = max(r["ratios"])
        r["target_met"] = all(q <= 0.30 for q in r["ratios"]) and all(d <= n + 1e-12 for d, n in zip(r["per_pair"], nyul))
        r["data"] = f"MNI152 T1 {'2 mm' if quick else '1 mm'}, {len(DRIFT_PAIRS)} drift pairs"
    return rows


def drift_markdown(rows: list[dict]) -> str:
    pairs = [f"{a} vs {b}" for a, b in DRIFT_PAIRS]
    lines = [
        f"### harmonize under drift: {rows[0]['data']}, biascorrect n4 | harmonize",
        "",
        "Ratio of each method's tissue-mean distance to z-score's, per pair (target: <= 0.30 on every pair "
        "and never above Nyul with the shipped standard).",
        "",
        "| method | " + " | ".join(pairs) + " | worst ratio | mean distance | target met | s / scan |",
        "|---|" + "---:|" * (len(pairs) + 4),
    ]
    for r in rows:
        cells = " | ".join(f"{q:.3f} ({d:.3f})" for q, d in zip(r["ratios"], r["per_pair"]))
        lines.append(f"| {r['method']} | {cells} | {r['worst_ratio']:.3f} | {r['distance']:.4f} | "
                     f"{'yes' if r['target_met'] else 'no'} | {r['seconds']:.2f} |")
    lines += ["", "Cells: ratio to z-score (distance). Renderings: medcli.enhance.degrade.DRIFT_SCANNERS, "
              "noise/bias seeds 300 + index in DRIFT_SEED_ORDER. Times: wall seconds on a shared, heavily loaded "
              "2-core CPU (run under nice)."]
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], quick: bool) -> str:
    drift = [r for r in rows if r.get("section") == "harmonize-drift"]
    rows = [r for r in rows if r.get("section") != "harmonize-drift"]
    return _markdown(rows, quick) + ("\n" + drift_markdown(drift) if drift else "")


def _markdown(rows: list[dict], quick: bool) -> str:
    lines = [
        f"### harmonize: {rows[0]['data']}",
        "",
        "| pipeline | method | tool | tissue-mean distance (per pair) | ratio to z-score (target <= 0.30) | s / scan | time vs peer |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "" if np.isnan(r["ratio_vs_zscore"]) else f"{r['ratio_vs_zscore']:.3f}" + (" ✓" if r["target_met"] else "")
        dist = "" if np.isnan(r["distance"]) else f"{r['distance']:.4f} ({', '.join(f'{d:.3f}' for d in r['per_pair'])})"
        tr = f"{r['time_ratio_vs_peer']:.2f}x" if "time_ratio_vs_peer" in r else ""
        lines.append(f"| {r['pipeline'].replace('|', chr(92) + '|')} | {r['method']} | {r['tool']} | {dist} | {ratio} | {r['seconds']:.2f} | {tr} |")
    lines += ["", "Distance: RMS difference of CSF/GM/WM means between two scanner renderings of the same brain, "
              "relative to the WM-CSF contrast; lower is better. Times: wall seconds on a shared 2-core CPU."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the T1 at 2 mm (every other voxel) instead of 1 mm")
    ap.add_argument("--drift", action="store_true", help="the drift pairs only (writes harmonize_drift.md)")
    args = ap.parse_args(argv)
    if args.drift:
        text = drift_markdown(run_drift(args.quick))
        print(text)
        DRIFT_RESULTS.write_text(f"# harmonize drift benchmark{' (--quick, 2 mm)' if args.quick else ''}\n\n" + text)
        return
    rows = run(args.quick)
    text = markdown(rows, args.quick)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# harmonize benchmark{' (--quick)' if args.quick else ''}\n\n" + text)


if __name__ == "__main__":
    main()

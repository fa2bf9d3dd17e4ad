"""Benchmark: tissue segmentation (CSF/GM/WM) of medcli against ANTs Atropos.

Held-out cases are renderings of the MNI152 2009a template whose reference is
its own GM/WM probability maps (hard labels by argmax of CSF = 1 - GM - WM,
GM, WM inside the brain = T1 > 0):

* ``T1 1mm``: the real template T1.
* ``T2-like`` / ``PD-like`` / ``FLAIR-like``: an intensity mapping written for this benchmark
  (NOT medcli's training generator): literature-like relative tissue signals
  mixed by the partial-volume probabilities, times a smooth multiplicative
  texture, plus 2 % Rician noise.
* ``T1 4mm slices``: the T1 block-averaged to 4 mm through-plane (reference: the
  block-averaged probability maps).
* ``T1 9% noise``: Rician noise of sigma = 9 % of the WM intensity.

Every method gets the same brain mask (the template's brain) and runs on the
same images in the same run: medcli classical (GMM + Potts MRF), medcli learned
(when a "tissue" model is available: the network refined by a GMM + MRF with
the network as prior), the network alone (its argmax, to show what each part
brings) and ``ants.atropos`` (k-means init, MRF
[0.2, 1x1x1]). Times are wall seconds of one process with the threads of the
machine.

Drift cases (issue 18, ``--drift``): the T1 rendered by the named scanners of
``medcli.enhance.degrade.DRIFT_SCANNERS`` (gamma 0.5-1.6 and sigmoid responses,
gain, offset, bias 0.2-0.4, Rician 1-5 %, 3 mm slices, PD- and FLAIR-like
contrasts rendered from the tissue maps with the T1's texture), no bias correction
beyond each method's own; CSF, GM and WM Dice, the change from the
``reference`` scanner (gamma 1, 30 % bias, 2 % noise; for a thick-slice scanner the
reference scanner at the same slice thickness, so that d is the drift and not the
partial volume of thick slices) and whether each method is at least Atropos on every tissue. Writes
``tests/benchmarks/results/segment_drift.md``; ``--drift --quick``: the
reference, the issue's gamma 0.65 and the gamma 1.6 and sigmoid scanners.

Run: ``python tests/benchmarks/bench_segment.py [--quick] [--drift]``
(``--quick``: the T1 and T2-like cases only). Writes
``tests/benchmarks/results/segment.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from medcli import io  # noqa: E402
from medcli.image import Image  # noqa: E402

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "segment.md"
DRIFT_RESULTS = ROOT / "tests" / "benchmarks" / "results" / "segment_drift.md"
#: degrade.DRIFT_SCANNERS names of the --drift --quick set.
DRIFT_QUICK = ("reference", "issue-18 (gamma 0.65)", "gamma 1.6", "sigmoid")
#: The scanners' order for their noise/bias seeds (400 + index): the --drift --quick set, then the rest
#: in the order they were added (new scanners go last, so that earlier renderings keep their seeds).
NETWORK_ONLY = "medcli network only"

#: Relative tissue signals (CSF, GM, WM). T2w at 3 T, TE ~ 100 ms, and a proton-density
#: weighting with its usual residual T2 weighting; from the ranges quoted in MRI textbooks
#: (e.g. Bernstein/King/Zhou, "Handbook of MRI Pulse Sequences"; Wansapura et al. 1999).
#: FLAIR (T2 with the CSF signal nulled): dark CSF, GM brighter than WM.
CONTRASTS = {"T2-like": (1.00, 0.55, 0.40), "PD-like": (1.00, 0.83, 0.70), "FLAIR-like": (0.15, 1.00, 0.75)}


def reference(block: int = 1):
    """(t1 Image, tissue probabilities (3, ...), brain mask, hard labels) on the 1 mm or a thick-slice grid."""
    t1 = io.read("sample:t1")
    brain = t1.data > 0
    gm = io.read("sample:gm").data / 255.0
    wm = io.read("sample:wm").data / 255.0
    csf = np.clip(1.0 - gm - wm, 0, 1)
    probs = np.stack([csf, gm, wm]).astype(np.float32) * brain
    data = t1.data.astype(np.float32)
    affine = t1.affine
    if block > 1:
        data, affine = thick_slices(data, affine, block)
        probs = np.stack([thick_slices(p, t1.affine, block)[0] for p in probs])
        brain = thick_slices(brain.astype(np.float32), t1.affine, block)[0] > 0.5
    labels = (np.argmax(probs, 0) + 1).astype(np.uint8)
    labels[~brain] = 0
    return Image(data, affine), probs, brain, labels


def thick_slices(data: np.ndarray, affine: np.ndarray, block: int):
    """Average ``block`` slices along the third axis; the affine keeps the slab centres exact."""
    n = data.shape[2] // block
    out = data[:, :, : n * block].reshape(data.shape[0], data.shape[1], n, block).mean(axis=3)
    aff = affine.copy()
    aff[:3, 2] = affine[:3, 2] * block
    aff[:3, 3] = affine[:3, 3] + affine[:3, 2] * (block - 1) / 2.0
    return out.astype(np.float32), aff


def rician(data: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sqrt((data + rng.normal(0, sigma, data.shape)) ** 2 + rng.normal(0, sigma, data.shape) ** 2).astype(np.float32)


def render(probs: np.ndarray, brain: np.ndarray, means, seed: int = 1, noise: float = 0.02) -> np.ndarray:
    """Partial-volume mixture of tissue signals x smooth texture, plus Rician noise (fraction of the brightest tissue)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = np.tensordot(np.asarray(means, np.float32), probs, axes=1)
    tex = ndimage.gaussian_filter(rng.normal(0, 1, probs.shape[1:]).astype(np.float32), 2.0)
    tex /= tex.std() + 1e-9
    img = img * (1.0 + 0.03 * tex) * brain * 100.0
    return rician(img, noise * 100.0 * max(means), seed + 1)


def cases(quick: bool = False):
    """name -> (Image, brain mask, reference labels)."""
    t1, probs, brain, labels = reference()
    out = {"T1 1mm": (t1, brain, labels)}
    for name, means in CONTRASTS.items():
        out[name] = (Image(render(probs, brain, means), t1.affine), brain, labels)
        if quick:
            return out
    wm_level = float(np.median(t1.data[labels == 3]))
    out["T1 9% noise"] = (Image(rician(t1.data, 0.09 * wm_level, 7), t1.affine), brain, labels)
    thick, _, tbrain, tlabels = reference(block=4)
    out["T1 4mm slices"] = (thick, tbrain, tlabels)
    return out


def drift_cases(quick: bool = False, scanners: tuple[str, ...] = ()):
    """name -> (Image, brain mask, reference labels): the T1 rendered by each drift scanner.

    The noise/bias seed of a scanner is 400 + its index in the --drift --quick
    set, then in DRIFT_SCANNERS, so a subset run renders the same images.
    """
    from medcli.enhance import degrade

    t1, probs, brain, labels = reference()
    order = list(DRIFT_QUICK) + [n for n in degrade.DRIFT_SCANNERS if n not in DRIFT_QUICK]
    names = scanners or (DRIFT_QUICK if quick else tuple(order))
    out = {}
    for name in names:
        if name not in degrade.DRIFT_SCANNERS:
            raise SystemExit(f"unknown scanner {name!r}: one of {', '.join(degrade.DRIFT_SCANNERS)}")
        img = degrade.drift_render(t1, degrade.DRIFT_SCANNERS[name], rng=400 + order.index(name), mask=brain, tissues=probs)
        out[f"T1 {name}"] = (img, brain, labels)
    return out


def _by_case(rows) -> dict[str, dict]:
    """Result rows grouped as case -> method -> row."""
    by_case: dict[str, dict] = {}
    for r in rows:
        by_case.setdefault(r[0], {})[r[1]] = r
    return by_case


def reference_case(case: str) -> str:
    """The reference-scanner case a drift case is compared with: the one at the same slice thickness."""
    from medcli.enhance import degrade

    drift = degrade.DRIFT_SCANNERS.get(case.removeprefix("T1 "))
    if drift is not None and drift.slice_mm:
        return f"T1 reference, {drift.slice_mm:g} mm"
    return "T1 reference"


def drift_table(rows, methods) -> str:
    """CSF/GM/WM per drift case, change from the reference scanner, and >= Atropos on every tissue."""
    by_case = _by_case(rows)
    lines = [
        "# segment --task tissue under scanner drift (issue 18)",
        "",
        "Dice against the MNI152 2009a maps; the T1 rendered by medcli.enhance.degrade.DRIFT_SCANNERS (seeds 400 + "
        "index). d = change from the same method on the reference scanner at the same slice thickness "
        "(target: >= -0.03 on every tissue); "
        ">= Atropos on CSF, GM and WM is the second target. Written by `tests/benchmarks/bench_segment.py --drift`.",
        "",
        "| case | method | CSF | GM | WM | d CSF | d GM | d WM | >= Atropos (CSF/GM/WM) | CPU (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    held = {m: [] for m in methods}
    for case, res in by_case.items():
        atropos = res.get("ANTs Atropos")
        for m in methods:
            if m not in res:
                continue
            _, _, c, g, w, _, cpu = res[m]
            ref = by_case.get(reference_case(case), {}).get(m)
            d = [x - y for x, y in zip((c, g, w), ref[2:5])] if ref else [0.0] * 3
            ok = atropos is None or m == "ANTs Atropos" or all(x >= y for x, y in zip((c, g, w), atropos[2:5]))
            good = all(x >= -0.03 for x in d) and ok
            held[m].append((case, good))
            beat = "" if m == "ANTs Atropos" else ("yes" if ok else "no")
            lines.append(f"| {case} | {m} | {c:.3f} | {g:.3f} | {w:.3f} | {d[0]:+.3f} | {d[1]:+.3f} | {d[2]:+.3f} | {beat} | {cpu:.1f} |")
    lines.append("")
    for m in methods:
        if m == "ANTs Atropos":
            continue
        missed = [c for c, good in held[m] if not good]
        lines.append(f"* {m}: both targets met on {len(held[m]) - len(missed)} of {len(held[m])} cases"
                     + (f" (missed: {', '.join(missed)})" if missed else ""))
    return "\n".join(lines) + "\n"


def dice(a: np.ndarray, b: np.ndarray, k: int) -> float:
    x, y = a == k, b == k
    s = x.sum() + y.sum()
    return float(2.0 * (x & y).sum() / s) if s else 1.0


_NETWORK: dict = {}
#: Folder where the network's probabilities are kept between runs (``--network-cache``; None: this process only).
NETWORK_CACHE: Path | None = None


def _cached_network(image: Image, brain: np.ndarray, model: str, device=None) -> np.ndarray:
    """The network's probabilities, once per image and model (variants that differ in the refinement share them).

    With :data:`NETWORK_CACHE`, also on disk (float32: a cached run gives the same labels), keyed by the image, mask
    and weights: a later run that changes only the refinement reuses them (one network pass per case on a loaded
    machine).
    """
    import hashlib

    from medcli.segment import tissue

    key = (id(image), model)
    if key not in _NETWORK:
        _NETWORK.clear()
        path = None
        if NETWORK_CACHE is not None:
            h = hashlib.sha1(np.ascontiguousarray(image.data, np.float32).tobytes())
            h.update(np.packbits(brain).tobytes())
            h.update(learned_sha(model).encode())
            path = NETWORK_CACHE / f"{h.hexdigest()}.npy"
        if path is not None and path.exists():
            _NETWORK[key] = np.load(path)
            # The row that loads it is charged the network's time of the run that computed it.
            _CACHED_TIME[:] = [float(t) for t in path.with_suffix(".time").read_text().split()]
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            _NETWORK[key] = tissue.__dict__["_learned_probabilities_uncached"](image, brain, model, device)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, _NETWORK[key])
                path.with_suffix(".time").write_text(f"{time.perf_counter() - t0} {time.process_time() - c0}")
    return _NETWORK[key]


#: (wall, CPU) seconds of a network run read from NETWORK_CACHE, not yet charged to a result row.
_CACHED_TIME: list[float] = [0.0, 0.0]


def _take_cached_time() -> tuple[float, float]:
    wall, cpu = _CACHED_TIME
    _CACHED_TIME[:] = [0.0, 0.0]
    return wall, cpu


def run_medcli(image: Image, brain: np.ndarray, method: str, model: str = "tissue", likelihood: str | None = None) -> np.ndarray:
    """medcli's labels; ``likelihood`` overrides the learned method's refinement (REFINE_LIKELIHOOD, and with a
    ``+pv`` / ``-pv`` suffix REFINE_PARTIAL_VOLUME on / off)."""
    from medcli.segment import tissue

    if "_learned_probabilities_uncached" not in tissue.__dict__:
        tissue._learned_probabilities_uncached = tissue.learned_probabilities
        tissue.learned_probabilities = _cached_network
    old = tissue.REFINE_LIKELIHOOD, tissue.REFINE_PARTIAL_VOLUME
    lik, _, pv = (likelihood or "").partition("+")
    if not pv and lik.endswith("-pv"):
        lik, pv = lik[:-3], "off"
    tissue.REFINE_LIKELIHOOD = lik or old[0]
    tissue.REFINE_PARTIAL_VOLUME = old[1] if not pv else pv == "pv"
    try:
        labels, _ = tissue.segment_tissue(image, method=method, model=model, mask=Image(brain.astype(np.uint8), image.affine))
    finally:
        tissue.REFINE_LIKELIHOOD, tissue.REFINE_PARTIAL_VOLUME = old
    return labels.data


def variant_name(model: str, likelihood: str) -> str:
    """Row name of a learned variant (``--variants``): the model and refinement it ran with."""
    return f"medcli learned [{model}, {likelihood}]"


def parse_variants(text: str) -> list[tuple[str, str]]:
    """``MODEL:LIKELIHOOD;...`` -> [(model, likelihood)] (learned variants measured beside the shipped methods)."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(";"))):
        model, _, lik = item.rpartition(":")
        if lik not in ("gaussian", "histogram", "gaussian+pv", "histogram+pv", "gaussian-pv", "histogram-pv") or not model:
            raise SystemExit(f"--variants item {item!r} is not MODEL:gaussian|histogram[+pv|-pv]")
        out.append((model, lik))
    return out


def run_network(image: Image, brain: np.ndarray, model: str) -> np.ndarray:
    """The tissue network's own labels (argmax inside the brain), without the intensity refinement."""
    from medcli.segment.tissue import learned_probabilities

    probs = learned_probabilities(image, brain, model)
    seg = np.zeros(brain.shape, np.uint8)
    seg[brain] = np.argmax(probs[:, brain], axis=0) + 1
    return seg


def run_atropos(image: Image, brain: np.ndarray) -> np.ndarray:
    """ANTs Atropos with k-means init and an MRF, labels renamed by intensity order like medcli's depth rule would."""
    import ants

    img = ants.from_numpy(image.data.astype(np.float32), spacing=image.spacing)
    msk = ants.from_numpy(brain.astype(np.float32), spacing=image.spacing)
    sp = "x".join("1" for _ in range(3))
    res = ants.atropos(a=img, x=msk, i="kmeans[3]", m=f"[0.2,{sp}]", c="[5,0]")
    seg = res["segmentation"].numpy().astype(np.uint8)  # 1..3 by increasing mean intensity
    return seg


def name_atropos(seg: np.ndarray, brain: np.ndarray, spacing) -> np.ndarray:
    """Atropos labels clusters by intensity; give it the same contrast-agnostic naming as medcli (fair to T2/PD)."""
    from medcli.segment.classical import assign_by_depth

    post = np.stack([(seg == k).astype(np.float32) for k in (1, 2, 3)])
    perm = assign_by_depth(post, brain, spacing)
    out = np.zeros_like(seg)
    for tissue, cluster in enumerate(perm):
        out[seg == cluster + 1] = tissue + 1
    return out


def learned_available(model: str) -> bool:
    try:
        from medcli.models import hub

        if Path(model).exists():
            hub.load(model)
        else:
            hub.spec(model)
        return True
    except Exception:  # noqa: BLE001 - not shipped yet
        return False


def learned_sha(model: str) -> str:
    """sha256 of the weights the run loaded (a training folder changes as it goes: say which one was measured)."""
    from medcli.segment.tissue import load_model

    spec, _ = load_model(model)
    files = spec.get("files") or []
    return (files[0].get("sha256") if files else spec.get("sha256")) or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="T1 and T2-like only")
    ap.add_argument("--drift", action="store_true", help="the drift-scanner cases instead (writes segment_drift.md)")
    ap.add_argument("--scanners", default="", help="with --drift: ';'-separated DRIFT_SCANNERS names (appends to segment_drift.md)")
    ap.add_argument("--model", default="tissue", help="learned tissue model: registry name or trained folder (runs/tissue)")
    ap.add_argument("--variants", default="", help="extra learned rows, 'MODEL:gaussian|histogram[+pv|-pv];...' (a candidate "
                    "model or refinement measured beside the shipped methods; +pv / -pv: partial-volume CSF boundaries on / off)")
    ap.add_argument("--no-classical", action="store_true", help="leave out the classical method (its code is unchanged)")
    ap.add_argument("--methods", default="", help="';'-separated row names to run (shards of one run: the unchanged "
                    "methods in one process, the learned one in another, merged with --merge)")
    ap.add_argument("--cases", default="", help="without --drift: ';'-separated case names (shards of the main table)")
    ap.add_argument("--rows-out", default="", help="also save the result rows as JSON (shards of a --drift run)")
    ap.add_argument("--merge", nargs="*", default=None, help="with --drift: write segment_drift.md from the JSON rows of shards")
    ap.add_argument("--network-cache", default="", help="folder that keeps the tissue network's probabilities between runs "
                    "(a re-run that changes only the refinement skips the network; its CPU time is then the refinement's)")
    args = ap.parse_args(argv)
    global NETWORK_CACHE
    NETWORK_CACHE = Path(args.network_cache) if args.network_cache else None
    if args.merge:
        import json

        rows, methods = [], []
        for f in args.merge:
            part = json.loads(Path(f).read_text())
            rows += [tuple(r) for r in part["rows"]]
            methods += [m for m in part["methods"] if m not in methods]
        # Shards by method: the table's usual order whatever the order of the files (the peer last).
        methods.sort(key=lambda m: (m == "ANTs Atropos", m == NETWORK_ONLY))
        notes = "".join(dict.fromkeys(json.loads(Path(f).read_text())["notes"] for f in args.merge))
        how = (f"\nRun: `python tests/benchmarks/bench_segment.py{' --drift' if args.drift else ''}` in {len(args.merge)} shards "
               f"(`{'--scanners' if args.drift else '--cases'} ...` and/or `--methods ... --rows-out`, then `--merge`), "
               "under nice on a shared, heavily loaded 2-core machine (times are not comparable).\n")
        target = DRIFT_RESULTS if args.drift else RESULTS
        target.write_text((drift_table(rows, methods) if args.drift else format_table(rows, methods)) + notes + how)
        print(target.read_text())
        return 0
    learned = ["medcli learned", NETWORK_ONLY] if learned_available(args.model) else []
    if args.drift:
        # The network alone is a diagnostic of the main table; drift runs keep to the shipped methods.
        learned = learned[:1]
    variants = {variant_name(m, lik): (m, lik) for m, lik in parse_variants(args.variants)}
    methods = ([] if args.no_classical else ["medcli classical"]) + learned + list(variants) + ["ANTs Atropos"]
    only = [m.strip() for m in args.methods.split(";") if m.strip()]
    if only:
        unknown = set(only) - set(methods)
        if unknown:
            raise SystemExit(f"unknown method(s) {sorted(unknown)}: one of {', '.join(methods)}")
        methods = [m for m in methods if m in only]
    rows = []
    scanners = tuple(n.strip() for n in args.scanners.split(";") if n.strip())
    chosen = drift_cases(args.quick, scanners) if args.drift else cases(args.quick)
    wanted = [c.strip() for c in args.cases.split(";") if c.strip()]
    if wanted and not args.drift:
        unknown = set(wanted) - set(chosen)
        if unknown:
            raise SystemExit(f"unknown case(s) {sorted(unknown)}: one of {', '.join(chosen)}")
        chosen = {k: v for k, v in chosen.items() if k in wanted}
    for name, (image, brain, ref) in chosen.items():
        for method in methods:
            t0, c0 = time.perf_counter(), time.process_time()
            if method == "ANTs Atropos":
                seg = name_atropos(run_atropos(image, brain), brain, image.spacing)
            elif method == NETWORK_ONLY:
                seg = run_network(image, brain, args.model)
            elif method in variants:
                seg = run_medcli(image, brain, "learned", *variants[method])
            else:
                seg = run_medcli(image, brain, method.split()[1], args.model)
            extra = _take_cached_time()
            dt, cpu = time.perf_counter() - t0 + extra[0], time.process_time() - c0 + extra[1]
            d = [dice(seg, ref, k) for k in (1, 2, 3)]
            rows.append((name, method, *d, dt, cpu))
            print(f"{name:14s} {method:17s} CSF {d[0]:.3f} GM {d[1]:.3f} WM {d[2]:.3f} {dt:6.1f} s wall {cpu:6.1f} s cpu", flush=True)
    table = drift_table(rows, methods) if args.drift else format_table(rows, methods)
    if "medcli learned" in methods:
        table += f"\nmedcli learned = model {args.model!r}, weights sha256 {learned_sha(args.model)}.\n"
    for model in dict.fromkeys(m for m, _ in variants.values()):
        table += f"\nmedcli learned [{model}, ...] = weights sha256 {learned_sha(model)}.\n"
    print()
    print(table)
    if args.rows_out:
        import json

        notes = table[table.index("\nmedcli learned"):] if "\nmedcli learned" in table else ""
        Path(args.rows_out).write_text(json.dumps({"rows": rows, "methods": methods, "notes": notes}))
        return 0
    if args.drift and scanners:
        previous = DRIFT_RESULTS.read_text() if DRIFT_RESULTS.exists() else ""
        DRIFT_RESULTS.write_text(previous + f"\n## More scanners: `--drift --scanners '{args.scanners}'`\n\n" + table.split("\n", 2)[2])
        print(f"appended to {DRIFT_RESULTS}", file=sys.stderr)
    elif args.drift:
        note = " (--quick: 4 of the scanners)" if args.quick else ""
        DRIFT_RESULTS.write_text(table + f"\nRun: `python tests/benchmarks/bench_segment.py --drift{' --quick' if args.quick else ''}`{note}, "
                                 "under nice on a shared, heavily loaded 2-core machine (times are not comparable).\n")
        print(f"wrote {DRIFT_RESULTS}", file=sys.stderr)
    elif not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(table)
        print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


def format_table(rows, methods) -> str:
    import os

    lines = [
        "# segment --task tissue: medcli vs ANTs Atropos",
        "",
        "Dice against the MNI152 2009a GM/WM maps (argmax of CSF/GM/WM), same brain mask for every method, "
        f"same images in one run; {os.cpu_count()} CPU cores shared with other jobs, so CPU seconds (all threads of "
        "the process) compare methods better than wall seconds. Written by tests/benchmarks/bench_segment.py.",
        "",
        "| case | method | CSF | GM | WM | wall (s) | CPU (s) | GM - Atropos | WM - Atropos | CPU / Atropos |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_case = _by_case(rows)
    for case, res in by_case.items():
        ref = res.get("ANTs Atropos")
        for m in methods:
            if m not in res:
                continue
            _, _, c, g, w, t, cpu = res[m]
            if ref and m != "ANTs Atropos":
                extra = f"{g - ref[3]:+.3f} | {w - ref[4]:+.3f} | {cpu / ref[6]:.2f}"
            else:
                extra = " | | "
            lines.append(f"| {case} | {m} | {c:.3f} | {g:.3f} | {w:.3f} | {t:.1f} | {cpu:.1f} | {extra} |")
    lines += ["", "Targets (issue #4): on every case GM and WM Dice >= Atropos's, GM >= 0.80 and WM >= 0.85.", ""]
    for m in methods:
        if m == "ANTs Atropos":
            continue
        met = [case for case, res in by_case.items() if m in res and _meets(res[m], res.get("ANTs Atropos"))]
        missed = [case for case, res in by_case.items() if m in res and case not in met]
        lines.append(f"* {m}: met on {len(met)} of {len(met) + len(missed)} cases" + (f" (missed: {', '.join(missed)})" if missed else ""))
    from medcli.segment.tissue import DEFAULT_METHOD

    lines += ["", f"Default method (`DEFAULT_METHOD` in medcli/segment/tissue.py): **{DEFAULT_METHOD}**."]
    return "\n".join(lines) + "\n"


def _meets(row, atropos) -> bool:
    _, _, _, g, w, _, _ = row
    ok = g >= 0.80 and w >= 0.85
    return ok and (atropos is None or (g >= atropos[3] and w >= atropos[4]))


if __name__ == "__main__":
    sys.exit(main())

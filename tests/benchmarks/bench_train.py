"""Benchmark: the training engine and the tissue model it trained, with ANTs Atropos beside it.

Measures, in one run on this machine:

* **training throughput**: patches per second of ``medcli train recipes/tissue.toml``
  (a fresh short run, the recipe's workers and threads), and of the shipped run (its log);
* **time to target**: wall time of the shipped run until every held-out case reached
  GM >= 0.80 and WM >= 0.85 Dice (from its validation log: every 6th axial slice);
* **the model**: size of the safetensors, parameters, inference time on a 1 mm brain and
  on 4 mm slices through :func:`medcli.engine.inference.predict` (resampling included);
* **quality**: Dice of GM and WM on the held-out renderings of the MNI template
  (:func:`medcli.train.synth.tissue_validation_cases`: real T1, deformed T1, T2-like,
  PD-like, 4 mm slices, 9 % Rician noise), whole volumes, beside ANTs Atropos (k-means
  init, MRF, clusters named as in ``bench_segment.py``) given the reference brain mask.

Run: ``python tests/benchmarks/bench_train.py [--quick] [--model DIR] [--atropos CASES]``
(``--quick``: T1 and PD-like only, 5 training steps; Atropos runs on T1, PD-like and the
noisy case unless ``--atropos all``). Writes ``tests/benchmarks/results/train.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "train.md"
LOGS = ROOT / "medcli" / "models" / "logs"
TARGET = {"GM": 0.80, "WM": 0.85}


def throughput(steps: int) -> float:
    """Patches per second of a fresh short run of the tissue recipe (median over steps after warm-up)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "medcli", "train", str(ROOT / "recipes" / "tissue.toml"), f"train.steps={steps}",
             "train.validate_every=0", f"train.checkpoint_every={steps}", f"output.dir={tmp}/run", "-q"],
            check=True, cwd=ROOT,
        )
        with open(Path(tmp) / "run" / "log.csv") as f:
            rows = list(csv.DictReader(f))
    return float(np.median([float(r["samples_per_s"]) for r in rows[2:] or rows]))


def run_log(folder: Path) -> tuple[list[dict], list[dict]]:
    """(log rows, validation rows) of the shipped run: the model folder's, else medcli/models/logs."""
    for log, val in ((folder / "log.csv", folder / "validation.csv"), (LOGS / "tissue.csv", LOGS / "tissue_validation.csv")):
        if log.exists() and val.exists():
            with open(log) as f, open(val) as g:
                return list(csv.DictReader(f)), list(csv.DictReader(g))
    return [], []


def time_to_target(log: list[dict], val: list[dict]) -> str:
    by_step: dict[int, list[dict]] = {}
    for r in val:
        by_step.setdefault(int(r["step"]), []).append(r)
    seconds = {int(r["step"]): float(r["seconds"]) for r in log}
    best = None
    for step in sorted(by_step):
        gm = min(float(r["dice_2"]) for r in by_step[step])
        wm = min(float(r["dice_3"]) for r in by_step[step])
        if best is None or gm + wm > best[1] + best[2]:
            best = (step, gm, wm)
        if gm >= TARGET["GM"] and wm >= TARGET["WM"]:
            return f"{seconds.get(step, float('nan')) / 60:.0f} min (step {step})"
    if best is None:
        return "no validation log"
    return f"not reached in {max(seconds) if seconds else 0} steps (best step {best[0]}: min GM {best[1]:.3f}, min WM {best[2]:.3f})"


def load_model(ref: str):
    from medcli.engine.architectures import build
    from medcli.models import hub

    spec, state = hub.load(ref)
    net = build(spec)
    net.load_state_dict(state)
    return spec, net.eval()


def predict_labels(net, spec, image) -> tuple[np.ndarray, float]:
    from medcli.engine.inference import predict

    t0 = time.perf_counter()
    probs = predict(net, spec, image)
    return probs.data.argmax(-1), time.perf_counter() - t0


def atropos_labels(image, brain) -> np.ndarray | None:
    try:
        from bench_segment import name_atropos, run_atropos
    except Exception:  # noqa: BLE001 - peer not installed, or bench_segment not there
        return None
    return name_atropos(run_atropos(image, brain), brain, image.spacing)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="tissue", help="model name or folder (default: the bundled tissue model)")
    ap.add_argument("--atropos", default="T1,PD-like,T1 Rician 9 %",
                    help="held-out cases Atropos also runs on, comma-separated ('all', or '' for none)")
    args = ap.parse_args(argv)

    from medcli import io
    from medcli.image import Image
    from medcli.train.synth import tissue_maps, tissue_validation_cases
    from medcli.train.validate import dice

    spec, net = load_model(args.model)
    folder = Path(spec.get("folder") or ROOT / "medcli" / "models" / "weights")
    weights = [Path(spec["folder"]) / f["name"] for f in spec["files"]] if spec.get("folder") else []
    if not weights:
        weights = [ROOT / "medcli" / "models" / "weights" / f["name"] for f in spec.get("files", [])]
    size = sum(p.stat().st_size for p in weights if p.exists())
    n_params = sum(p.numel() for p in net.parameters())
    threads = os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))

    t1 = io.read("sample:t1")
    _, t_1mm = predict_labels(net, spec, t1)
    nz = t1.shape[2] // 4 * 4
    thick = t1.data[..., :nz].astype(np.float32).reshape(t1.shape[0], t1.shape[1], nz // 4, 4).mean(-1)
    aff = t1.affine.copy()
    aff[:3, 2] *= 4
    aff[:3, 3] += t1.affine[:3, 2] * 1.5
    _, t_4mm = predict_labels(net, spec, Image(thick, aff))

    maps = tissue_maps()
    lo = np.maximum(maps.brain_box[0] - 8, 0)
    shift = np.eye(4)
    shift[:3, 3] = lo
    crop_affine = maps.affine @ shift
    rows = []
    for name, img, ref in tissue_validation_cases():
        if args.quick and name not in ("T1", "PD-like"):
            continue
        image = Image(img, crop_affine)
        pred, seconds = predict_labels(net, spec, image)
        row = {"case": name, "medcli": dice(pred, ref, [2, 3]), "medcli_s": seconds}
        if args.atropos == "all" or name in args.atropos.split(","):
            t0 = time.perf_counter()
            seg = atropos_labels(image, ref > 0)
            if seg is not None:
                row["atropos"] = dice(seg, ref, [2, 3])
                row["atropos_s"] = time.perf_counter() - t0
        rows.append(row)
        print(name, row, file=sys.stderr)

    log, val = run_log(folder)
    shipped_rate = float(np.median([float(r["samples_per_s"]) for r in log])) if log else float("nan")
    fresh_rate = throughput(5 if args.quick else 20)
    lines = [
        "# medcli train: throughput, time to target, and the tissue model beside ANTs Atropos",
        "",
        f"Machine: {os.cpu_count()} CPU cores (shared), OMP_NUM_THREADS={threads}. Model `{args.model}`:"
        f" {spec['architecture']} {spec['params']}, {n_params / 1e3:.0f} k parameters, {size / 1e6:.2f} MB safetensors.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| training throughput, fresh run of recipes/tissue.toml | {fresh_rate:.1f} patches/s (128x128, batch 8) |",
        f"| training throughput, shipped run (median of its log) | {shipped_rate:.1f} patches/s |",
        f"| shipped run: steps, wall time | {len(log)} steps, {float(log[-1]['seconds']) / 60 if log else float('nan'):.0f} min |",
        f"| time to target (every case GM >= 0.80, WM >= 0.85) | {time_to_target(log, val)} |",
        f"| inference, 1 mm brain 197x233x189 (resampling included) | {t_1mm:.1f} s |",
        f"| inference, 4 mm axial slices -> 1 mm -> back | {t_4mm:.1f} s |",
        "",
        "Held-out renderings of the MNI template (whole volumes, brain box), Dice GM / WM:",
        "",
        "| case | medcli GM | medcli WM | Atropos GM | Atropos WM | GM - Atropos | WM - Atropos | medcli s | Atropos s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r.get("atropos")
        m = r["medcli"]
        if a:
            lines.append(f"| {r['case']} | {m[0]:.3f} | {m[1]:.3f} | {a[0]:.3f} | {a[1]:.3f} | {m[0] - a[0]:+.3f} | "
                         f"{m[1] - a[1]:+.3f} | {r['medcli_s']:.1f} | {r['atropos_s']:.1f} |")
        else:
            lines.append(f"| {r['case']} | {m[0]:.3f} | {m[1]:.3f} | - | - | - | - | {r['medcli_s']:.1f} | - |")
    lines += [
        "",
        "Limit: the held-out cases share the training anatomy (one labelled brain exists offline); they differ "
        "in contrast model, deformation, resolution and noise, not in subject.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Two superres models side by side on the template and on held-out skull-on heads (issue 18).

Data: 96^3 blocks, as ``bench_enhance.py --quick --sections superres`` makes them: the MNI152 T1 block
through ventricles and cortex (the template; the training anatomy of every superres model) and the
block through skull, scalp and cortex of held-out synthetic skull-on T1 heads
(``medcli.train.heads.HELD_OUT``, noise-free; seed 90001 is the benchmark head, 90002-90004 are the
heads on which the previous session measured the gap). No superres model is trained on a HELD_OUT
head. ``--template whole``: the whole 197x233x189 template instead of its block. Thick slices: box average of 4 or 6 slices along the last axis (``degrade.thick_slices``).

Runs: ``superres()`` in this process, one thread, interleaved per image: cubic, then ``learned`` and
``smore`` (the default, 400 steps) with the reference model and with the candidate. Metric: PSNR over
non-air voxels, gain over cubic (targets +2.0 dB at 4 mm, +1.5 dB at 6 mm); process CPU seconds
of each call (the machine is shared, so compare the ratios within one run).

Usage::

    python tests/benchmarks/enhance/superres_models.py --candidate runs/superres_heads \\
        [--reference superres] [--heads 90001,90002,90003,90004] [--template block|whole|none]
        [--methods learned,smore] [--output FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from denoise import HEAD_SEED, clean_t1, skull_on_head

from medcli.enhance import degrade
from medcli.enhance.superres import superres
from medcli.image import Image

TARGET = {4: 2.0, 6: 1.5}


def datasets(heads: list[int], template: str = "block") -> list[tuple[str, Image]]:
    """(name, true 1 mm image): the template (``block``, ``whole`` or ``none``), then each head's block."""
    out = [(f"MNI152 T1 (template, {template})", clean_t1(template == "block"))] if template != "none" else []
    for s in heads:
        tag = "benchmark head" if s == HEAD_SEED else "head"
        out.append((f"{tag} {s}", skull_on_head(True, s)))
    return out


def timed(fn, *args, **kwargs):
    """(result, process CPU seconds) of one call."""
    t0 = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t0


def run(candidate: str, reference: str, heads: list[int], thickness=(4, 6), template: str = "block",
        methods=("learned", "smore")) -> list[dict]:
    """One row per (image, thickness, method, model): PSNR, gain over cubic, CPU seconds."""
    import torch

    torch.set_num_threads(1)
    rows = []
    for name, ref in datasets(heads, template):
        for k in thickness:
            n = ref.shape[2] // k * k
            clean = Image(ref.data[:, :, :n], ref.affine)
            thick = degrade.thick_slices(clean, k, axis=2, profile="box")
            cub, cub_s = timed(superres, thick, "cubic", 1.0)
            base = degrade.psnr(clean.data, np.asarray(cub.data, np.float32))
            rows.append({"data": name, "mm": k, "method": "cubic", "model": "", "psnr": base, "gain": 0.0, "cpu": cub_s})
            print(f"{name} {k} mm cubic: {base:.2f} dB PSNR, {cub_s:.1f} CPU s", file=sys.stderr, flush=True)
            for method in methods:
                for tag, model in (("reference", reference), ("candidate", candidate)):
                    if model == "none":  # the reference's numbers are already known (smore is deterministic)
                        continue
                    out, secs = timed(superres, thick, method, 1.0, model=model)
                    p = degrade.psnr(clean.data, np.asarray(out.data, np.float32))
                    rows.append({"data": name, "mm": k, "method": method, "model": tag, "psnr": p, "gain": p - base, "cpu": secs})
                    print(f"{name} {k} mm {method} {tag}: {p - base:+.2f} dB, {secs:.1f} CPU s", file=sys.stderr, flush=True)
    return rows


def _gain(get: dict, method: str, model: str, mm: int) -> str:
    r = get.get((method, model))
    if r is None:
        return ""
    mark = "" if method != "smore" else (" ✓" if r["gain"] >= TARGET[mm] else " ✗")
    return f"{r['gain']:+.2f}{mark}"


def markdown(rows: list[dict], candidate: str, reference: str) -> str:
    lines = [
        (f"Reference model: `{reference}`; candidate: `{candidate}`. Gain over cubic in dB (targets +2.0 at 4 mm, +1.5 at 6 mm); "
         "CPU: seconds of the call, and the candidate's over the reference's."),
        "",
        "| data | slices | cubic PSNR | learned ref | learned cand | smore ref (default) | smore cand | smore CPU s ref / cand (ratio) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    keys = list(dict.fromkeys((r["data"], r["mm"]) for r in rows))
    for data, mm in keys:
        get = {(r["method"], r["model"]): r for r in rows if r["data"] == data and r["mm"] == mm}


        sr, sc = get.get(("smore", "reference")), get.get(("smore", "candidate"))
        cpu = f"{sr['cpu']:.1f} / {sc['cpu']:.1f} ({sc['cpu'] / max(sr['cpu'], 1e-9):.2f}x)" if sr and sc else ""
        lines.append(f"| {data} | {mm} mm | {get[('cubic', '')]['psnr']:.2f} | {_gain(get, 'learned', 'reference', mm)} | {_gain(get, 'learned', 'candidate', mm)} "
                     f"| {_gain(get, 'smore', 'reference', mm)} | {_gain(get, 'smore', 'candidate', mm)} | {cpu} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate", required=True, help="model folder or registry name of the new model")
    ap.add_argument("--reference", default="superres",
                    help="the model to compare with (default: the bundled one; none: the candidate alone)")
    ap.add_argument("--heads", default="90001,90002,90003,90004", help="HELD_OUT head seeds")
    ap.add_argument("--thickness", default="4,6")
    ap.add_argument("--methods", default="learned,smore", help="network methods to compare")
    ap.add_argument("--template", default="block", choices=("block", "whole", "none"),
                    help="the template's 96^3 block, the whole template, or none (to split a run over processes)")
    ap.add_argument("--output", help="also write the table to this file")
    args = ap.parse_args(argv)
    heads = [int(s) for s in args.heads.split(",") if s]
    rows = run(args.candidate, args.reference, heads, tuple(int(k) for k in args.thickness.split(",")), args.template, tuple(args.methods.split(",")))
    text = markdown(rows, args.candidate, args.reference)
    print(text)
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()

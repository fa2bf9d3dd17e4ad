"""Helpers of tests/hpc: a real one-node SLURM cluster on loopback, a small cohort, helpers.

The cluster is ``scripts/slurm_local.sh`` (Debian's slurmctld, slurmd, slurm-client and munge),
started once per session in a temporary folder and stopped at the end. A cluster that is
already running (``SLURM_CONF`` set and ``scontrol ping`` answering) is used as it is.
Tests that need it skip, saying what to install, where the SLURM programs are missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
BIN = str(Path(sys.executable).parent)
SBIN = ("/usr/sbin", "/sbin")
INSTALL = "apt-get install -y slurmctld slurmd slurm-client munge"
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}

# The loopback model server of tests/models (Range, counting, slow transfers on demand).
if str(ROOT / "tests" / "models") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "models"))
import hub_server  # noqa: E402

server = hub_server.server  # the fixture, re-exported for tests/hpc


def which(prog: str) -> str | None:
    return shutil.which(prog) or shutil.which(prog, path=os.pathsep.join(SBIN))


def job_env(conf: str | None, **extra: str) -> dict[str, str]:
    """The submitting shell's environment: medcli on PATH, no inherited SLURM/SBATCH settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "MEDCLI_"))}
    env["PATH"] = os.pathsep.join([BIN, env.get("PATH", ""), *SBIN])
    env["OMP_NUM_THREADS"] = "1"
    if conf:
        env["SLURM_CONF"] = conf
    env.update(extra)
    return env


@dataclass
class Task:
    """One array task (or a plain job) as ``scontrol show job`` reports it."""

    job_id: int
    index: int | None
    state: str
    exit_code: int
    signal: int
    start: str


@dataclass
class Cluster:
    conf: str | None

    def env(self, **extra: str) -> dict[str, str]:
        return job_env(self.conf, **extra)

    def run(self, *args, cwd=None, env=None, check=True, timeout=60) -> subprocess.CompletedProcess:
        r = subprocess.run([str(a) for a in args], cwd=cwd, env=env or self.env(), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))}: exit {r.returncode}: {r.stderr}")
        return r

    def sbatch(self, *args, cwd, env: dict | None = None) -> int:
        """Submit; returns the job id. Options on the command line override the script's #SBATCH lines."""
        r = self.run("sbatch", "--parsable", *args, cwd=cwd, env=env)
        return int(r.stdout.strip().split(";")[0])

    def tasks(self, job_id: int) -> list[Task]:
        r = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        out = []
        for line in r.stdout.splitlines():
            f = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobState" not in f:
                continue
            code, sig = (f.get("ExitCode", "0:0") + ":0").split(":")[:2]
            idx = f.get("ArrayTaskId")
            out.append(Task(int(f["JobId"]), int(idx) if idx and idx.isdigit() else None, f["JobState"], int(code), int(sig), f.get("StartTime", "")))
        return out

    def wait(self, job_id: int, timeout: float = 180) -> dict[int | None, Task]:
        """Poll scontrol (there is no sacct without accounting) until every task has ended."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            tasks = self.tasks(job_id)
            # Pending array tasks show as one PENDING record with a range ('3-4'), never as done.
            if tasks and all(t.state in DONE for t in tasks):
                return {t.index: t for t in tasks}
            time.sleep(0.3)
        self.run("scancel", job_id, check=False)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s: {self.tasks(job_id)}")


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port > 60000:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two free consecutive ports on 127.0.0.1")


def missing_programs() -> str | None:
    """Why a loopback cluster cannot run here (None: it can)."""
    missing = [p for p in ("sbatch", "squeue", "scontrol", "scancel", "slurmctld", "slurmd", "munged", "mungekey") if not which(p)]
    return f"SLURM programs missing ({', '.join(missing)}): {INSTALL}" if missing else None


@contextmanager
def local_cluster(cpus: int = 8):
    """A one-node cluster of ``cpus`` CPUs from scripts/slurm_local.sh, stopped on exit."""
    # A short path: the MUNGE socket lives there and UNIX socket paths are limited to 107 bytes.
    state = Path(tempfile_dir()) / f"slurm-{os.getpid()}"
    env = job_env(None, SLURM_LOCAL_PORT=str(_free_port_pair()), SLURM_LOCAL_CPUS=str(cpus))
    try:
        r = subprocess.run(["bash", SCRIPT, "start", state], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/slurm_local.sh start failed (exit {r.returncode}):\n{r.stderr}")
        yield Cluster(r.stdout.strip().split("=", 1)[1])
    finally:
        subprocess.run(["bash", SCRIPT, "stop", state], env=env, capture_output=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm():
    """A running SLURM cluster: the one SLURM_CONF names if it answers, else a fresh loopback one."""
    conf = os.environ.get("SLURM_CONF")
    if conf and which("scontrol") and subprocess.run([which("scontrol"), "ping"], env=job_env(conf), capture_output=True).returncode == 0:
        yield Cluster(conf)
        return
    why = missing_programs()
    if why:
        pytest.skip(why)
    try:
        with local_cluster() as cluster:
            yield cluster
    except RuntimeError as e:
        pytest.fail(str(e))


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


@pytest.fixture(scope="session")
def small_t1():
    """The bundled MNI T1 at 4 mm (49 x 58 x 47): scheduler tests are about the scheduler."""
    from medcli import io

    return io.read("sample:t1").resample(4.0)


def write_cohort(folder: Path, image, n: int, prefix: str = "sub-") -> list[Path]:
    """``n`` distinct scans (intensity scaled per subject, so hashes differ)."""
    from medcli import io

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i:02d}.nii.gz"
        io.write(image.with_data((image.data * (1 + 0.02 * i)).astype("float32")), p, force=True)
        paths.append(p)
    return paths


def write_list(path: Path, inputs: list[Path]) -> Path:
    path.write_text("# one scan per line\n" + "".join(f"{p}\n" for p in inputs))
    return path


def task_log(folder: Path, name: str, job_id: int, index: int) -> str:
    """The log of an array task written by ``--output=logs/%x_%A_%a.log``."""
    return (folder / "logs" / f"{name}_{job_id}_{index}.log").read_text()


def handled(log: str) -> list[str]:
    """Inputs a medcli -v log says it processed ('IN -> OUT (1.2 s)')."""
    return re.findall(r"^medcli: (\S+) -> \S+ \([\d.]+ s\)$", log, flags=re.M)


def registry_without_bundled(dest: Path, name: str, url: str) -> Path:
    """A MEDCLI_REGISTRY file: model ``name`` as registered, but downloaded from ``url`` (not bundled)."""
    entry = tomllib.loads((ROOT / "medcli" / "models" / "registry.toml").read_text())["models"][name]
    for f in entry.get("files", []):
        f.pop("bundled", None)
        f["urls"] = [url]
    lines = ["schema = 1"]

    def table(prefix: str, d: dict) -> None:
        lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {hub_server._toml(v)}" for k, v in d.items() if not isinstance(v, (dict, list)) or (isinstance(v, list) and not any(isinstance(x, dict) for x in v)))
        for k, v in d.items():
            if isinstance(v, dict):
                table(f'{prefix}.{k}' if re.fullmatch(r"[\w-]+", str(k)) else f'{prefix}."{k}"', v)
        for k, v in d.items():
            if isinstance(v, list) and any(isinstance(x, dict) for x in v):
                for x in v:
                    lines.append(f"[[{prefix}.{k}]]")
                    lines.extend(f"{kk} = {hub_server._toml(vv)}" for kk, vv in x.items())

    table(f"models.{name}", entry)
    dest.write_text("\n".join(lines) + "\n")
    return dest

"""The shipped examples: the SLURM array script with SLURM faked (tests/hpc submits it for real), the Snakefile's plan."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medcli import io

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = str(Path(sys.executable).parent)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_", "SGE_", "LSB_"))}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def raw(tmp_path_factory, t1):
    d = tmp_path_factory.mktemp("raw")
    for i in range(3):
        io.write(t1, d / f"sub-0{i}.nrrd")
        io.write(t1, d / f"sub-0{i}.nii.gz")
    return d


def test_slurm_script_is_a_plain_bash_script():
    text = (EXAMPLES / "slurm_array.sh").read_text()
    assert subprocess.run(["bash", "-n", EXAMPLES / "slurm_array.sh"]).returncode == 0
    assert re.search(r"^#SBATCH --array=0-\d+$", text, re.M), "the documented convention is a 0-based array"
    assert "--list" in text and "SLURM_ARRAY_TASK_ID" in text


@pytest.mark.slow  # three array tasks of real conversions
def test_slurm_array_tasks_cover_the_list(tmp_path, raw, t1):
    (tmp_path / "inputs.txt").write_text("# three scans\n" + "".join(f"{raw / f'sub-0{i}.nrrd'}\n" for i in range(3)))
    for task in ("1", "0"):
        env = _env(SLURM_ARRAY_TASK_ID=task, SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX="1", SLURM_CPUS_PER_TASK="1",
                   CHUNK="2", LIST="inputs.txt", OUT="out")
        r = subprocess.run(["bash", EXAMPLES / "slurm_array.sh"], cwd=tmp_path, env=env, capture_output=True)
        assert r.returncode == 0, r.stderr.decode()
        assert b"warning" not in r.stderr  # the array covers the list
        # -v: the log names each input this task handled (what to resubmit after a failure)
        assert r.stderr.decode().count(" -> ") == (1 if task == "1" else 2)
        done = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
        assert done == (["sub-02.nii.gz"] if task == "1" else ["sub-00.nii.gz", "sub-01.nii.gz", "sub-02.nii.gz"])
    out = io.read(tmp_path / "out" / "sub-01.nii.gz")
    assert np.array_equal(out.data, t1.data) and np.allclose(out.affine, t1.affine, atol=1e-5)
    assert (tmp_path / "out" / "sub-01.json").is_file()
    # Resubmitting skips what exists; a too-short array is warned about.
    env = _env(SLURM_ARRAY_TASK_ID="0", SLURM_ARRAY_TASK_MAX="0", CHUNK="2", LIST="inputs.txt", OUT="out")
    r = subprocess.run(["bash", EXAMPLES / "slurm_array.sh"], cwd=tmp_path, env=env, capture_output=True)
    assert r.returncode == 0 and "the SLURM array ends at 0 but there are 2 chunks" in r.stderr.decode()


def test_snakefile_plans_the_pipeline(tmp_path, raw, t1):
    """The DAG of examples/Snakefile (a dry run); tests/hpc/test_snakemake.py runs it for real."""
    snakemake = os.environ.get("MEDCLI_SNAKEMAKE") or shutil.which("snakemake")
    if not snakemake:
        pytest.skip("snakemake is not installed (pip install snakemake; .ci/run installs it)")
    (tmp_path / "raw").mkdir()
    for i in range(2):
        shutil.copy(raw / f"sub-0{i}.nii.gz", tmp_path / "raw" / f"s0{i}.nii.gz")
    r = subprocess.run([snakemake, "-n", "--cores", "1", "-s", EXAMPLES / "Snakefile"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, flags=re.M))
    assert counts == {"all": "1", "preprocess": "2", "segment": "2", "qc": "2", "total": "7"}, r.stdout

"""The shipped examples run: the SLURM array script (without SLURM) and the Snakefile's rules."""

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
        assert r.stderr == b""  # no warning: the array covers the list
        done = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
        assert done == (["sub-02.nii.gz"] if task == "1" else ["sub-00.nii.gz", "sub-01.nii.gz", "sub-02.nii.gz"])
    out = io.read(tmp_path / "out" / "sub-01.nii.gz")
    assert np.array_equal(out.data, t1.data) and np.allclose(out.affine, t1.affine, atol=1e-5)
    assert (tmp_path / "out" / "sub-01.json").is_file()
    # Resubmitting skips what exists; a too-short array is warned about.
    env = _env(SLURM_ARRAY_TASK_ID="0", SLURM_ARRAY_TASK_MAX="0", CHUNK="2", LIST="inputs.txt", OUT="out")
    r = subprocess.run(["bash", EXAMPLES / "slurm_array.sh"], cwd=tmp_path, env=env, capture_output=True)
    assert r.returncode == 0 and "the SLURM array ends at 0 but there are 2 chunks" in r.stderr.decode()


class _Files(str):
    """What Snakemake puts in {input}/{output}: all paths joined, and named ones as attributes."""

    def __new__(cls, named: dict[str, str], plain: list[str]):
        self = super().__new__(cls, " ".join(plain + list(named.values())))
        self.__dict__.update(named)
        return self


def snakefile_rules(text: str) -> dict[str, dict]:
    """The rules of a (simple) Snakefile: their input, output, threads and shell strings."""
    rules = {}
    for block in re.split(r"^rule ", text, flags=re.M)[1:]:
        name, body = block.split(":", 1)
        rule: dict = {}
        for key, value in re.findall(r"^    (\w+):(.*?)(?=^    \w+:|\Z)", body, flags=re.M | re.S):
            named = dict(re.findall(r'(\w+)="([^"]*)"', value))
            plain = [s for s in re.findall(r'(?<![=\w])"([^"]*)"', value) if s not in named.values()]
            rule[key] = (named, plain) if key != "threads" else int(value.strip())
        rules[name.strip()] = rule
    return rules


@pytest.mark.slow  # runs medcli three times
def test_snakefile_rules_run(tmp_path, raw, t1):
    text = (EXAMPLES / "Snakefile").read_text()
    rules = snakefile_rules(text)
    assert set(rules) == {"all", "convert", "info"}
    (tmp_path / "raw").mkdir()
    shutil.copy(raw / "sub-00.nrrd", tmp_path / "raw" / "s01.nrrd")
    for name in ("convert", "info"):  # the order of the DAG
        rule = rules[name]

        def files(key):
            named, plain = rule[key]
            fill = lambda p: p.replace("{subject}", "s01")  # noqa: E731
            return _Files({k: fill(v) for k, v in named.items()}, [fill(p) for p in plain])

        inp, out = files("input"), files("output")
        for path in out.split():
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)  # as Snakemake does
        cmd = rule["shell"][1][0].format(input=inp, output=out, threads=rule.get("threads", 1))
        r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=_env(), capture_output=True)
        assert r.returncode == 0, f"{cmd}: {r.stderr.decode()}"
        for path in out.split():
            assert (tmp_path / path).is_file(), path
    out = io.read(tmp_path / "nifti" / "s01_T1w.nii.gz")
    assert out.orientation == "RAS" and np.array_equal(out.data, t1.data)
    import json

    assert json.loads((tmp_path / "qc" / "s01_info.json").read_text())["shape"] == [197, 233, 189]
    if shutil.which("snakemake"):
        r = subprocess.run(["snakemake", "-n", "-s", EXAMPLES / "Snakefile"], cwd=tmp_path, capture_output=True)
        assert r.returncode == 0, r.stderr.decode()

"""examples/Snakefile run for real: on this machine (--cores 2), and submitted to the loopback SLURM cluster.

The pipeline per subject: ``biascorrect | harmonize --method zscore`` (a pipe, no intermediate
file) -> ``segment --task brain --stats`` -> ``info --json`` of the mask.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from slurm_cluster import EXAMPLES, job_env, write_cohort

pytestmark = pytest.mark.slow  # three medcli pipelines, twice

SNAKEFILE = EXAMPLES / "Snakefile"


def _snakemake() -> str:
    exe = os.environ.get("MEDCLI_SNAKEMAKE") or shutil.which("snakemake")
    if not exe:
        pytest.skip("snakemake is not installed (pip install snakemake snakemake-executor-plugin-cluster-generic; .ci/run does)")
    return exe


def _run(args: list, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([_snakemake(), "-s", SNAKEFILE, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _planned(r: subprocess.CompletedProcess) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, flags=re.M) if k != "total"}


def _outputs(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for d in ("prep", "seg", "qc") for p in sorted((root / d).glob("*"))}


@pytest.fixture
def cohort(tmp_path, small_t1):
    write_cohort(tmp_path / "raw", small_t1, 2)
    return tmp_path


def _check_results(root: Path, subjects: list[str]) -> None:
    for s in subjects:
        side = json.loads((root / "prep" / f"{s}.json").read_text())
        assert side["Command"] == "harmonize" and side["Parameters"]["method"] == "zscore"
        vols = json.loads((root / "seg" / f"{s}_volumes.json").read_text())
        assert vols["model"] and 1000 < vols["intracranial_volume_ml"] < 2500, vols  # a brain-sized mask
        info = json.loads((root / "qc" / f"{s}_brain_info.json").read_text())
        info = info[0] if isinstance(info, list) else info
        assert info["shape"] == [49, 58, 47]


def test_snakefile_runs_and_rebuilds_only_the_branch_of_a_deleted_intermediate(cohort):
    env = job_env(None)
    _run(["--cores", "2", "-q"], cohort, env)
    _check_results(cohort, ["sub-00", "sub-01"])
    before = _outputs(cohort)
    assert len(before) == 2 * 5

    # The preprocessed image of sub-01 is lost: its branch (preprocess, segment, qc) is rebuilt,
    # because the regenerated image is newer than what was made from it; sub-00 is left alone.
    (cohort / "prep" / "sub-01.nii.gz").unlink()
    plan = _run(["--cores", "2", "--dry-run"], cohort, env)
    assert _planned(plan) == {"all": 1, "preprocess": 1, "segment": 1, "qc": 1}, plan.stdout
    assert "subject=sub-00" not in plan.stdout and "subject=sub-01" in plan.stdout
    _run(["--cores", "2", "-q"], cohort, env)
    after = _outputs(cohort)
    assert after.keys() == before.keys()
    changed = sorted(k for k in after if after[k] != before[k])
    assert changed == sorted(k for k in before if "sub-01" in k), changed  # the whole branch of sub-01, nothing else
    _check_results(cohort, ["sub-01"])


def test_snakefile_on_slurm_without_accounting(slurm, cohort):
    """Each rule's job goes through sbatch; its state comes from scontrol (examples/slurm_status.sh), not sacct."""
    (cohort / "logs").mkdir()
    (cohort / "raw" / "sub-01.nii.gz").unlink()  # one subject: three jobs in a chain are the point here
    env = slurm.env()
    _run(["--executor", "cluster-generic", "--jobs", "4", "-q", "--seconds-between-status-checks", "1",
          "--cluster-generic-submit-cmd", "sbatch --parsable --cpus-per-task {threads} --mem 1G --output logs/%j.log",
          "--cluster-generic-status-cmd", EXAMPLES / "slurm_status.sh"], cohort, env)
    _check_results(cohort, ["sub-00"])
    logs = sorted((cohort / "logs").glob("*.log"))
    assert len(logs) == 3, logs  # preprocess, segment and qc: three SLURM jobs, each after the one it needs
    for log in logs:
        task = slurm.tasks(int(log.stem))
        assert [t.state for t in task] == ["COMPLETED"], task

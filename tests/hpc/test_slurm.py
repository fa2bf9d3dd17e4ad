"""medcli's job arrays submitted for real to a one-node SLURM cluster (scripts/slurm_local.sh).

What is checked is what goes wrong on clusters: array ranges, chunking, the environment a task
gets, partial failures and resubmission, tasks killed mid-write, compute nodes without internet,
many tasks starting at once, and what the logs say.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from slurm_cluster import EXAMPLES, ROOT, handled, hub_server, registry_without_bundled, task_log, write_cohort, write_list
from medcli import io

pytestmark = pytest.mark.slow  # real daemons and real jobs: ~1-2 minutes in all

WEIGHTS = ROOT / "medcli" / "models" / "weights"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prepare(tmp_path: Path, inputs: list[Path]) -> None:
    write_list(tmp_path / "inputs.txt", inputs)
    (tmp_path / "logs").mkdir(exist_ok=True)


def _partial_files(folder: Path) -> list[str]:
    """Temporary files of medcli's atomic writes ('.NAME.medcli-PID-tmp.nii.gz')."""
    return sorted(p.name for p in folder.iterdir() if ".medcli-" in p.name) if folder.is_dir() else []


def test_array_covers_the_list_in_chunks(slurm, tmp_path, small_t1):
    inputs = write_cohort(tmp_path / "raw", small_t1, 9)
    _prepare(tmp_path, inputs)
    env = slurm.env(LIST="inputs.txt", OUT="out", CHUNK="2")
    # 9 scans in chunks of 2: tasks 0..4. Command-line options override the script's #SBATCH lines.
    job = slurm.sbatch("--array=0-4", "--cpus-per-task=1", "--mem=500M", EXAMPLES / "slurm_array.sh", cwd=tmp_path, env=env)
    tasks = slurm.wait(job)
    assert sorted(tasks) == [0, 1, 2, 3, 4]
    assert all(t.state == "COMPLETED" and t.exit_code == 0 for t in tasks.values()), tasks
    seen = []
    for i in range(5):
        log = task_log(tmp_path, "medcli", job, i)
        assert "warning" not in log, log
        assert handled(log) == [str(p) for p in inputs[2 * i : 2 * i + 2]], log
        seen += handled(log)
    assert sorted(seen) == sorted(map(str, inputs))  # every input exactly once, by exactly one task
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [p.name for p in inputs]
    assert _partial_files(out) == []
    for src in inputs:
        side = json.loads((out / src.name.replace(".nii.gz", ".json")).read_text())
        assert side["Command"] == "convert" and side["Sources"] == [{"Path": str(src), "SHA256": _sha256(src)}]
    got, ref = io.read(out / inputs[3].name), io.read(inputs[3])
    assert np.array_equal(got.data, ref.data) and np.allclose(got.affine, ref.affine, atol=1e-5)

    # The classic mistake: --array=1-N. Chunk 0 is never run, and every task's log says so.
    env = slurm.env(LIST="inputs.txt", OUT="out1", CHUNK="2")
    job = slurm.sbatch("--array=1-5", "--cpus-per-task=1", "--mem=500M", EXAMPLES / "slurm_array.sh", cwd=tmp_path, env=env)
    tasks = slurm.wait(job)
    assert sorted(tasks) == [1, 2, 3, 4, 5] and all(t.state == "COMPLETED" for t in tasks.values())
    for i in range(1, 6):
        log = task_log(tmp_path, "medcli", job, i)
        assert "warning: the SLURM array starts at 1, so chunks 0..0 are never run: submit --array=0-4" in log, log
    assert "array index 5 (chunk 2) is past the end of 9 inputs" in task_log(tmp_path, "medcli", job, 5)
    assert sorted(p.name for p in (tmp_path / "out1").glob("*.nii.gz")) == [p.name for p in inputs[2:]]


def test_a_bad_input_fails_its_task_with_5_and_a_resubmission_does_only_the_rest(slurm, tmp_path, small_t1):
    inputs = write_cohort(tmp_path / "raw", small_t1, 8)
    inputs[5].write_bytes(b"not an image\n")  # e.g. a truncated transfer
    _prepare(tmp_path, inputs)
    env = slurm.env(LIST="inputs.txt", OUT="out", CHUNK="2")
    args = ("--array=0-3", "--cpus-per-task=1", "--mem=500M", EXAMPLES / "slurm_array.sh")
    job = slurm.sbatch(*args, cwd=tmp_path, env=env)
    tasks = slurm.wait(job)
    assert (tasks[2].state, tasks[2].exit_code) == ("FAILED", 5), tasks
    assert all(tasks[i].state == "COMPLETED" and tasks[i].exit_code == 0 for i in (0, 1, 3)), tasks
    log = task_log(tmp_path, "medcli", job, 2)
    assert f"1 of 2 inputs failed ({inputs[5]}); the other 1 were written" in log and handled(log) == [str(inputs[4])]
    out = tmp_path / "out"
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert sorted(n for n in written if n.endswith(".nii.gz")) == sorted(p.name for p in inputs if p != inputs[5])
    assert _partial_files(out) == []

    # The input is fixed (copied again); the same array is resubmitted: only it is processed.
    write_cohort(tmp_path / "fixed", io.read(inputs[4]), 1)[0].replace(inputs[5])
    job = slurm.sbatch(*args, cwd=tmp_path, env=env)
    tasks = slurm.wait(job)
    assert all(t.state == "COMPLETED" and t.exit_code == 0 for t in tasks.values()), tasks
    done = [handled(task_log(tmp_path, "medcli", job, i)) for i in range(4)]
    assert done == [[], [], [str(inputs[5])], []]
    assert {n: (out / n).stat().st_mtime_ns for n in written} == written  # nothing rewritten
    assert (out / inputs[5].name).is_file() and (out / inputs[5].name.replace(".nii.gz", ".json")).is_file()


def test_a_task_killed_mid_write_leaves_no_partial_output_and_the_resubmission_completes(slurm, tmp_path):
    # 1 mm float scans: each write takes long enough (compression) to be caught in the act.
    inputs = write_cohort(tmp_path / "raw", io.read("sample:t1"), 3)
    _prepare(tmp_path, inputs)
    env = slurm.env(LIST="inputs.txt", OUT="out", CHUNK="3")
    args = ("--array=0-0", "--cpus-per-task=1", "--mem=1G", EXAMPLES / "slurm_array.sh")
    job = slurm.sbatch(*args, cwd=tmp_path, env=env)
    out, caught, end = tmp_path / "out", [], time.monotonic() + 120
    while not caught and time.monotonic() < end and not all(t.state in ("COMPLETED", "FAILED") for t in slurm.tasks(job)):
        caught = _partial_files(out)
        time.sleep(0.01)
    assert caught, "the task ended before a write could be caught"
    slurm.run("scancel", job)  # SIGTERM (then SIGKILL after KillWait), as at a time limit
    tasks = slurm.wait(job)
    assert tasks[0].state == "CANCELLED", tasks
    assert _partial_files(out) == [], "a temporary file outlived the killed task"
    present = sorted(out.glob("*.nii.gz"))
    assert len(present) < 3
    for p in present:  # whatever is there is whole
        assert np.array_equal(io.read(p).data, io.read(tmp_path / "raw" / p.name).data)

    job = slurm.sbatch(*args, cwd=tmp_path, env=env)
    assert slurm.wait(job)[0].state == "COMPLETED"
    log = task_log(tmp_path, "medcli", job, 0)
    assert handled(log) == [str(p) for p in inputs if p.name not in {q.name for q in present}]
    for src in inputs:
        assert np.array_equal(io.read(out / src.name).data, io.read(src).data)
        assert (out / src.name.replace(".nii.gz", ".json")).is_file()
    assert _partial_files(out) == []


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return hub_server.snapshot(folder)


def test_weights_pulled_on_the_login_node_serve_an_offline_learned_array(slurm, server, tmp_path, small_t1):
    """`models pull` on the login side; compute tasks offline, read-only site cache; model loaded once per task."""
    weights = WEIGHTS / "tissue.safetensors"
    server.served.files["/tissue.safetensors"] = weights.read_bytes()
    reg = registry_without_bundled(tmp_path / "registry.toml", "tissue", server.url("/tissue.safetensors"))
    site = tmp_path / "site"
    login = slurm.env(MEDCLI_HOME=str(site), MEDCLI_REGISTRY=str(reg), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    r = subprocess.run(["medcli", "models", "pull", "tissue"], env=login, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(server.served.gets("/tissue.safetensors")) == 1
    for root, dirs, files in os.walk(site):  # what the admin does: a read-only site folder
        for n in files + dirs:
            os.chmod(Path(root) / n, 0o555 if n in dirs else 0o444)
    before = _snapshot(site)

    inputs = write_cohort(tmp_path / "raw", small_t1, 3)
    _prepare(tmp_path, inputs)
    node_home = tmp_path / "node-home"  # the compute node's own cache: must stay empty
    env = slurm.env(LIST="inputs.txt", OUT="tissue", CHUNK="2", MEDCLI_OFFLINE="1", MEDCLI_MODELS_PATH=str(site),
                    MEDCLI_HOME=str(node_home), MEDCLI_REGISTRY=str(reg))
    job = slurm.sbatch("--array=0-1", "--cpus-per-task=1", "--mem=2G", EXAMPLES / "slurm_segment.sh", cwd=tmp_path, env=env)
    tasks = slurm.wait(job, timeout=300)
    logs = [task_log(tmp_path, "medcli-tissue", job, i) for i in (0, 1)]
    assert all(t.state == "COMPLETED" for t in tasks.values()), (tasks, logs)
    for log, n in zip(logs, (2, 1)):
        assert len(handled(log)) == n, log
        assert log.count("loading tissue model tissue") == 1, log  # once per task, not per image
        assert "device: cpu (--device auto: torch sees no GPU; --threads 1)" in log, log
    sha = _sha256(weights)
    for src in inputs:
        side = json.loads((tmp_path / "tissue" / src.name.replace(".nii.gz", "_dseg.json")).read_text())
        assert side["Model"] == "tissue" and side["ModelSha256"] == sha
        vols = json.loads((tmp_path / "tissue" / src.name.replace(".nii.gz", "_volumes.json")).read_text())
        assert {v["name"] for v in vols["labels"]} == {"CSF", "GM", "WM"}
    assert _snapshot(site) == before  # nothing written to the site folder
    assert not any(p.is_file() for p in node_home.rglob("*")) if node_home.exists() else True
    assert len(server.served.gets("/tissue.safetensors")) == 1  # compute nodes never asked


def test_eight_tasks_starting_at_once_download_a_missing_model_once(slurm, server, tmp_path, small_t1):
    data = (WEIGHTS / "denoise.safetensors").read_bytes()
    server.served.files["/denoise.safetensors"] = data
    # ~10 s for the transfer: tasks that start meanwhile must wait for it, not start their own.
    server.served.rules["/denoise.safetensors"] = hub_server.Rule(delay=10 / (len(data) / 65536))
    reg = registry_without_bundled(tmp_path / "registry.toml", "denoise", server.url("/denoise.safetensors"))
    inputs = write_cohort(tmp_path / "raw", small_t1, 8)
    _prepare(tmp_path, inputs)
    (tmp_path / "out").mkdir()
    env = slurm.env(MEDCLI_HOME=str(tmp_path / "shared-cache"), MEDCLI_REGISTRY=str(reg), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    cmd = "medcli denoise --method learned --list inputs.txt -o out/{stem}.nii.gz --sidecar -v"
    job = slurm.sbatch("--array=0-7", "--cpus-per-task=1", "--mem=1G", "--job-name=dn", "--output=logs/%x_%A_%a.log", "--wrap", cmd,
                       cwd=tmp_path, env=env)
    tasks = slurm.wait(job, timeout=300)
    logs = [task_log(tmp_path, "dn", job, i) for i in range(8)]
    assert sorted(tasks) == list(range(8)) and all(t.state == "COMPLETED" for t in tasks.values()), (tasks, logs)
    assert len({t.start for t in tasks.values()}) <= 2, "the eight tasks did not start together"
    assert len(server.served.gets("/denoise.safetensors")) == 1  # exactly one transfer
    assert server.served.sent["/denoise.safetensors"] == len(data)
    assert sum("another process is downloading it; waiting" in log for log in logs) >= 1, logs
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == [p.name for p in inputs]
    cached = list((tmp_path / "shared-cache" / "models" / "denoise").glob("*/denoise.safetensors"))
    assert len(cached) == 1 and cached[0].read_bytes() == data

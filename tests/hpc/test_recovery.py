"""What a resubmitted or GPU array task relies on, checked without a scheduler (fast)."""

from __future__ import annotations

import json
import logging

from medcli import runtime
from medcli.cli import options


def test_skip_existing_completes_an_input_whose_side_outputs_a_killed_run_left(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    # A task killed after writing --stats but before its label map (the last file it writes).
    stale = out / "ct_volumes.json"
    stale.write_text("{")
    args = ["segment", "sample:ct", "--task", "ct-body", "-o", out / "ct.nii.gz", "--stats", stale, "--sidecar"]
    r = cli(*args)
    assert r.returncode != 0 and b"exists" in r.stderr  # never overwritten without being asked
    assert not (out / "ct.nii.gz").exists() and stale.read_text() == "{"

    r = cli(*args, "--skip-existing")  # the resubmission: this input's output is missing, so it is redone
    assert r.returncode == 0, r.stderr
    assert f"{stale}: left by an interrupted run (its output {out / 'ct.nii.gz'} is missing); replaced" in r.stderr.decode()
    assert json.loads(stale.read_text())["labels"][0]["name"] == "body"
    assert (out / "ct.json").is_file()

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    r = cli(*args, "--skip-existing")  # now complete: skipped, nothing replaced
    assert r.returncode == 0 and r.stderr == b""
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_device_defaults_to_auto_which_picks_the_cpu_here_and_says_so(monkeypatch):
    assert dict((n, d) for n, _, d in options.COMMON)["device"] == "auto"
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: records.append(rec.getMessage())
    monkeypatch.setattr(runtime, "_device_logged", [])
    monkeypatch.setattr(runtime.state, "threads", 3)
    monkeypatch.setattr(runtime.state, "device", "auto")
    runtime.log.addHandler(handler)
    level = runtime.log.level
    runtime.log.setLevel(logging.INFO)
    try:
        picked = runtime.torch_device("auto")
        assert runtime.torch_device() == picked
    finally:
        runtime.log.removeHandler(handler)
        runtime.log.setLevel(level)
    import torch

    if torch.cuda.is_available():  # a GPU node (a --gres=gpu:1 task)
        assert picked.type == "cuda" and records[0].startswith("device: cuda (--device auto: ")
    else:  # this machine, CI
        assert picked.type == "cpu"
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert records == ["device: cpu (--device auto: torch sees no GPU; --threads 3)"]
    assert len(records) == 1  # once per process, not once per image

"""report --run: segment's brain and tissue analyses and detect in one process, on the MNI T1."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_run_all_on_t1(cli, tmp_path):
    r = cli("report", "sample:t1", "--run", "brain,tissue,detect", "-o", str(tmp_path / "r.json"), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads((tmp_path / "r.json").read_text())
    vol = doc["volumes"]
    icv = vol["intracranial_volume_ml"]
    assert 1300 < icv < 2300  # the MNI152 head (larger than an average adult's)
    rows = {r["name"]: r for r in vol["labels"]}
    assert set(rows) == {"CSF", "GM", "WM"}
    # Tissue is segmented inside the brain mask found once: its classes fill that mask.
    assert sum(r["volume_ml"] for r in rows.values()) == pytest.approx(icv, rel=0.03)
    assert rows["WM"]["volume_ml"] > 300 and rows["GM"]["volume_ml"] > 400
    from medcli.models import hub

    prov = {p["model"]: p["sha256"] for p in doc["provenance"] if p["model"]}
    assert prov["tissue"] == hub.spec("tissue")["files"][0]["sha256"]
    assert any(m.startswith("deepbet") for m in prov)
    # detect ran inside that mask: findings listed (maybe none on a template), and said in words.
    assert "findings" in doc and any("focal finding" in s["text"] for s in doc["narrative"])
    assert {m["model"] for m in doc["models"] if m.get("trained_on")} >= {"tissue"}


def test_run_all_fits_the_modality():
    """--run all: brain analyses for an MR head; lesion detection only for a CT (it would extract a 'brain' from it)."""
    from medcli import io
    from medcli.commands.report import _fitting, _parse_run

    tasks = _parse_run("all")
    assert _fitting(tasks, io.read("sample:t1"))[0] == tasks
    fit, rec = _fitting(tasks, io.read("sample:ct"))
    assert fit == ["detect"] and rec["modality"] == "CT"

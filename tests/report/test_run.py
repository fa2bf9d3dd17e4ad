"""report --run: segment's brain and tissue analyses, detect and landmarks in one process, on the MNI T1."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.slow
def test_run_all_on_t1(cli, tmp_path):
    """--run all on an MR head runs the four analyses (one run, as they share the brain mask; a few CPU minutes)."""
    r = cli("report", "sample:t1", "--run", "all", "-o", str(tmp_path / "r.json"), "-o", str(tmp_path / "r.html"), "-o", str(tmp_path / "r.md"),
            timeout=1800)  # minutes of CPU: generous for a loaded machine
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads((tmp_path / "r.json").read_text())
    _check_landmarks(doc, (tmp_path / "r.html").read_text(), (tmp_path / "r.md").read_text())
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


def _check_landmarks(doc, html: str, md: str) -> None:
    """--run landmarks on the AFIDs template itself: the points come back where the set puts them, and the
    table, the narrative and the provenance of the HTML and Markdown show them."""
    from markupsafe import escape

    from medcli.landmarks.sets import load_set

    lset = load_set("afids")
    pts = doc["landmarks"]
    assert [p["description"] for p in pts] == lset.points.descriptions and {p["source"] for p in pts} == {"--run landmarks"}
    err = np.linalg.norm(np.array([p["ras_mm"] for p in pts]) - lset.points.ras, axis=1)
    assert np.median(err) < 1.0 and err.max() < 3.0  # the image is the set's template: registration near identity
    conf = [p["confidence"] for p in pts]
    assert all(c is not None and 0 < c <= 1 for c in conf)
    sentence = next(s for s in doc["narrative"] if s["ref"] == "landmarks")
    assert sentence["text"] == f"32 landmarks were placed, median confidence {np.median(conf):.2f}."
    assert any(p["step"].startswith("landmarks (afids, atlas") for p in doc["provenance"])
    # HTML: the sentence links to the table, whose rows hold the JSON's numbers (1 decimal) and confidences.
    assert f'<a href="#landmarks">{sentence["text"]}</a>' in html
    table = html[html.index('id="landmarks"'):]
    table = table[:table.index("</table>")]
    for p in pts:
        cells = "".join(f'<td class="n">{x:,.1f}</td>' for x in p["ras_mm"]) + f'<td class="n">{p["confidence"]:.2f}</td>'
        assert f'<th scope="row">{escape(p["label"])}</th><td>{escape(p["description"])}</td>{cells}' in table, p
    ac = pts[0]
    assert f"| {ac['label']} | AC | " + " | ".join(f"{x:,.1f}" for x in ac["ras_mm"]) + f" | {ac['confidence']:.2f} |" in md


def test_run_all_fits_the_modality():
    """--run all: brain analyses for an MR head; lesion detection only for a CT (it would extract a 'brain' from it)."""
    from medcli import io
    from medcli.commands.report import _fitting, _parse_run

    tasks = _parse_run("all")
    assert _fitting(tasks, io.read("sample:t1"))[0] == tasks
    fit, rec = _fitting(tasks, io.read("sample:ct"))
    assert fit == ["detect"] and rec["modality"] == "CT"


def test_shared_brain_is_what_the_separate_commands_use():
    """--run shares the brain step's mask with tissue, detect and landmarks; on a skull-stripped image they get its
    non-zero region instead, as the separate commands take there (so --run reports the same numbers)."""
    import numpy as np

    from medcli import io
    from medcli.commands.report import shared_brain
    from medcli.segment.tissue import brain_mask

    t1 = io.read("sample:t1")  # skull-stripped: zero background
    step = t1.with_data(np.ones(t1.shape, np.uint8))  # a brain step's (here: everything) mask
    got = np.asarray(shared_brain(t1, step).data) > 0
    assert np.array_equal(got, brain_mask(t1, None)[0]) and 0.1 < got.mean() < 0.5
    noise = np.abs(np.random.default_rng(0).normal(0, 5, t1.shape)).astype(np.float32)
    noisy = t1.with_data(np.asarray(t1.data, np.float32) + noise)  # no constant background: the brain step's mask is kept
    assert np.array_equal(np.asarray(shared_brain(noisy, step).data), np.asarray(step.data))


@pytest.mark.slow
def test_run_landmarks_on_a_head_with_its_skull_uses_the_learned_method(cli, tmp_path):
    """--run landmarks picks what ``medcli landmarks --method auto`` picks: learned on a head with its skull, with
    the brain step's mask (no second extraction), its model and sha256 in the provenance table."""
    import nibabel as nib

    from medcli.landmarks.sets import load_set
    from medcli.models import hub
    from medcli.train.heads import TRAINING, synth_head, with_config

    cfg = with_config(TRAINING, rotation=0.0, scale=0.0, elastic=0.0, ghost=0.0)
    h = synth_head(np.random.default_rng(3), "t1", spacing=3.0, cfg=cfg, skull=True, slice_mm=3.0)
    nib.save(nib.Nifti1Image(h.image.astype(np.float32), h.affine), tmp_path / "head.nii.gz")
    r = cli("report", tmp_path / "head.nii.gz", "--run", "brain,landmarks", "-o", str(tmp_path / "r.json"), timeout=900)
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads((tmp_path / "r.json").read_text())
    step = next(p for p in doc["provenance"] if str(p["step"]).startswith("landmarks"))
    assert step["step"].startswith("landmarks (afids, learned")
    assert step["sha256"] == hub.spec("landmarks-afids")["files"][0]["sha256"]
    truth = load_set("afids").points.ras  # the head is the template's brain, not moved
    pred = np.array([p["ras_mm"] if p["ras_mm"] is not None else [np.nan] * 3 for p in doc["landmarks"]], float)
    assert np.nanmean(np.linalg.norm(pred - truth, axis=1)) < 1.5

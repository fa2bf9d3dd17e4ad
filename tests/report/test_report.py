"""medcli report on the MNI T1: inputs recognised by content, numbers carried exactly, pictures
inline, refusals of files of other images, and the cohort page."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from medcli import io
from medcli.errors import InputError
from medcli.image import Image
from medcli.report.inputs import recognise
from tests.report.conftest import AFIDS


@pytest.fixture(scope="module")
def t1(scan_inputs):
    return io.read(str(scan_inputs["t1"]))


def test_recognised_by_content(scan_inputs, t1):
    from medcli.files import sha256_of

    sha = sha256_of(str(scan_inputs["t1"]))
    kinds = {k: recognise(str(scan_inputs[k]), t1, sha).kind for k in ("labels", "stats", "stats_csv", "sidecar", "findings", "landmarks")}
    assert kinds == {"labels": "labels", "stats": "seg_stats", "stats_csv": "seg_stats", "sidecar": "sidecar",
                     "findings": "findings", "landmarks": "landmarks"}


def test_segment_warnings_in_a_stats_csv_reach_the_report(scan_inputs, t1, tmp_path):
    """segment --stats x.csv carries the brain step's warnings; the report keeps them visible."""
    import json

    from medcli.segment.outputs import stats_text

    doc = json.loads(scan_inputs["stats"].read_text())
    doc["warnings"] = ["mask volume 2.4 L is outside 0.8-2.2 L"]
    (tmp_path / "s.csv").write_text(stats_text(doc, "s.csv"))
    assert recognise(str(tmp_path / "s.csv"), t1).data["warnings"] == doc["warnings"]


def test_files_of_another_image_refused(scan_inputs, t1, tmp_path):
    # A label map of a 2 mm image of the same head: another grid.
    lab = io.read(str(scan_inputs["labels"]))
    half = Image(np.asarray(lab.data)[::2, ::2, ::2], lab.affine @ np.diag([2, 2, 2, 1]))
    io.write(half, str(tmp_path / "other.nii.gz"))
    with pytest.raises(InputError, match="another grid"):
        recognise(str(tmp_path / "other.nii.gz"), t1)
    doc = json.loads(scan_inputs["findings"].read_text())
    doc["image"]["sha256"] = "0" * 64
    (tmp_path / "f.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="another image"):
        recognise(str(tmp_path / "f.json"), t1, "1" * 64)
    doc["schema"] = "medcli.findings/9"
    (tmp_path / "f9.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="unknown schema version 'medcli.findings/9'"):
        recognise(str(tmp_path / "f9.json"), t1)
    (tmp_path / "far.fcsv").write_text(scan_inputs["landmarks"].read_text().replace(",0.", ",900.", 1))
    with pytest.raises(InputError, match="outside the image"):
        recognise(str(tmp_path / "far.fcsv"), t1)
    side = json.loads(scan_inputs["sidecar"].read_text())
    side["Sources"][0]["SHA256"] = "2" * 64
    (tmp_path / "s.json").write_text(json.dumps(side))
    with pytest.raises(InputError, match="another image"):
        recognise(str(tmp_path / "s.json"), t1, "1" * 64)


def _report(cli, scan_inputs, tmp_path, *extra):
    args = ["report", str(scan_inputs["t1"])]
    for k in ("labels", "stats", "sidecar", "findings", "landmarks"):
        args += ["--with", str(scan_inputs[k])]
    r = cli(*args, "-o", str(tmp_path / "r.html"), "-o", str(tmp_path / "r.json"), "-o", str(tmp_path / "r.md"), *extra)
    assert r.returncode == 0, r.stderr.decode()
    return (tmp_path / "r.html").read_text(), json.loads((tmp_path / "r.json").read_text()), (tmp_path / "r.md").read_text()


def test_report_numbers_and_narrative(cli, scan_inputs, tmp_path):
    page, doc, md = _report(cli, scan_inputs, tmp_path)
    stats = json.loads(scan_inputs["stats"].read_text())
    vol = {r["name"]: r for r in doc["volumes"]["labels"]}
    for r in stats["labels"]:
        assert vol[r["name"]]["volume_ml"] == pytest.approx(r["volume_ml"])
        assert vol[r["name"]]["percent_icv"] == pytest.approx(100 * r["volume_ml"] / stats["intracranial_volume_ml"], abs=0.01)
    icv = stats["intracranial_volume_ml"]
    assert doc["volumes"]["intracranial_volume_ml"] == pytest.approx(icv, abs=0.01)
    text = " ".join(s["text"] for s in doc["narrative"])
    assert f"Intracranial volume {icv:,.0f} mL." in text
    gm = vol["GM"]
    assert f"Grey matter {gm['volume_ml']:,.0f} mL ({gm['percent_icv']:.0f} % of intracranial volume)" in text
    # The largest finding (12 mm, score 0.93) was put in left white matter: side and tissue from the label map.
    assert "Two focal findings were detected; the largest measures 12 mm, in the left hemisphere white matter (score 0.93)" in text
    assert "not a diagnosis" in text and "diagnos" not in text.replace("not a diagnosis", "")
    # Every sentence links to an element with that id, and that element shows the number.
    for s in doc["narrative"]:
        assert f'href="#{s["ref"]}"' in page and f'id="{s["ref"]}"' in page
    row = re.search(r'<tr id="vol-GM">(.*?)</tr>', page, re.S).group(1)
    assert f"{gm['volume_ml']:,.1f}" in row
    # Provenance carries the model and its sha256; the card says what it was trained on.
    assert "ab" * 32 in page and "ICBM 2009a MNI152" in page
    assert len(doc["landmarks"]) == 32 and len(doc["findings"]) == 2
    assert "| GM |" in md and "Intracranial volume" in md


def test_html_self_contained_and_small(cli, scan_inputs, tmp_path):
    page, _, _ = _report(cli, scan_inputs, tmp_path)
    assert len(page.encode()) < 2_000_000
    assert not re.search(r'(src|href)="(?!data:|#)', page), "a reference outside the page"
    assert "<script" not in page and "@import" not in page and "url(" not in page
    imgs = re.findall(r'<img src="data:image/(webp|png);base64,([^"]+)" alt="([^"]+)"', page)
    assert len(imgs) == 3 + 2  # mosaics: tissue, findings, landmarks; two finding crops
    from PIL import Image as PILImage
    import io as _io

    for fmt, b64, alt in imgs:
        pic = PILImage.open(_io.BytesIO(base64.b64decode(b64)))
        assert pic.width > 50 and len(alt) > 20
        assert np.asarray(pic.convert("L")).std() > 10  # not blank
    assert "@media print" in page and 'name="viewport"' in page and '<html lang="en">' in page


def test_refusals_one_line_no_output(cli, scan_inputs, tmp_path):
    doc = json.loads(scan_inputs["findings"].read_text())
    doc["schema"] = "medcli.findings/7"
    (tmp_path / "f.json").write_text(json.dumps(doc))
    r = cli("report", str(scan_inputs["t1"]), "--with", str(scan_inputs["labels"]), "--with", str(tmp_path / "f.json"), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 3 and len(r.stderr.decode().strip().splitlines()) == 1 and "unknown schema version" in r.stderr.decode()
    assert not (tmp_path / "r.html").exists()
    r = cli("report", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 3 and len(r.stderr.decode().strip().splitlines()) == 1
    r = cli("report", str(scan_inputs["t1"]), "-o", str(tmp_path / "r.pdf"))
    assert r.returncode == 2 and ".html, .md or .json" in r.stderr.decode()


def test_register_stats_in_report(scan_inputs, t1, tmp_path):
    from medcli.files import sha256_of
    from medcli.report.api import scan_report

    sha = sha256_of(str(scan_inputs["t1"]))
    doc = {"moving": str(scan_inputs["t1"]), "fixed": "sample:t1", "type": "affine", "metric": "mattes",
           "metric_before": -0.41, "metric_after": -0.62, "folded_fraction": 0.0, "seconds": 3.0}
    (tmp_path / "reg.json").write_text(json.dumps(doc))
    item = recognise(str(tmp_path / "reg.json"), t1, sha)
    assert item.kind == "register_stats"
    with pytest.raises(InputError, match="registration of other images"):
        recognise(str(tmp_path / "reg.json"), t1, "3" * 64)
    out = scan_report(t1, "t1", [item], ["md", "json"], sha256=sha)
    assert "Registration (affine, mattes) changed the similarity from -0.410 to -0.620." in out["md"]
    assert json.loads(out["json"])["registration"][0]["metric_after"] == -0.62


def test_landmarks_with_confidence_and_missing_points(t1):
    """landmarks' own output (confidence per point, NaN where outside the field of view): narrative, HTML and Markdown."""
    from medcli.io.points import read_points
    from medcli.report.api import scan_report
    from medcli.report.inputs import Item

    pts = read_points(str(AFIDS))
    ras = pts.ras.copy()
    ras[[3, 7]] = np.nan
    conf = np.linspace(0.5, 0.9, len(pts))
    conf[[3, 7]] = np.nan
    moved = pts.moved(ras)
    moved.confidences = conf
    out = scan_report(t1, "t1", [Item("landmarks", "--run landmarks", moved)], ["html", "md", "json"])
    doc = json.loads(out["json"])
    want = float(np.median(np.delete(conf, [3, 7])))
    sentence = f"30 of 32 landmarks were placed (2 outside the field of view), median confidence {want:.2f}."
    assert [s["text"] for s in doc["narrative"] if s["ref"] == "landmarks"] == [sentence]
    assert f'<a href="#landmarks">{sentence}</a>' in out["html"]
    assert doc["landmarks"][3]["confidence"] is None and doc["landmarks"][0]["confidence"] == pytest.approx(0.5)
    first = doc["landmarks"][0]
    cells = "".join(f'<td class="n">{x:,.1f}</td>' for x in first["ras_mm"]) + '<td class="n">0.50</td>'
    assert cells in out["html"]
    assert f"| {first['label']} | {first['description']} | " + " | ".join(f"{x:,.1f}" for x in first["ras_mm"]) + " | 0.50 |" in out["md"]


def test_side_from_the_landmarks_midsagittal_plane(scan_inputs, t1, tmp_path):
    """With right/left landmark pairs the side of a finding comes from their mid-sagittal plane (it follows a head
    off the image's centre), without them from the brain's centre in the label map."""
    from medcli.files import sha256_of
    from medcli.io.points import read_points
    from medcli.report.build import build
    from medcli.report.inputs import Item

    sha = sha256_of(str(scan_inputs["t1"]))
    doc = json.loads(scan_inputs["findings"].read_text())
    c = [6.0, -20.0, 20.0]  # 6 mm right of the MNI midline
    doc["findings"][0].update(center_ras_mm=c, box_ras_mm=[x - 3 for x in c] + [x + 3 for x in c])
    (tmp_path / "f.json").write_text(json.dumps(doc))
    items = [recognise(str(scan_inputs["labels"]), t1, sha), recognise(str(tmp_path / "f.json"), t1, sha)]
    plain = build(t1, "t1", items, sha)
    assert plain["findings"][0]["where"].startswith("right hemisphere")
    assert plain["side_from"] == "the centre of the brain in the label map"
    pts = read_points(str(AFIDS))
    for shift, side in ((12.0, "left"), (-12.0, "right")):  # the head's midline 12 mm right (left) of the finding's x
        moved = build(t1, "t1", items + [Item("landmarks", "afids", pts.moved(pts.ras + [shift, 0.0, 0.0]))], sha)
        assert moved["findings"][0]["where"].startswith(f"{side} hemisphere"), (shift, moved["findings"][0]["where"])
        assert moved["side_from"] == "the mid-sagittal plane of 11 right/left landmark pairs"


def test_brain_task_stats_give_the_icv_not_a_structure(scan_inputs, t1, tmp_path):
    """segment --task brain --stats (one label 'brain'): read as the intracranial volume, as its label map is."""
    from medcli.files import sha256_of
    from medcli.report.build import build
    from medcli.segment.outputs import LABELS, statistics, stats_text

    brain = np.asarray(t1.data) > 0
    stats = statistics(Image(brain.astype(np.uint8), t1.affine), LABELS["brain"], brain=brain, model="deepbet", sha256="cd" * 32)
    (tmp_path / "brain_stats.json").write_text(stats_text(stats, "x.json"))
    sha = sha256_of(str(scan_inputs["t1"]))
    doc = build(t1, "t1", [recognise(str(tmp_path / "brain_stats.json"), t1, sha)], sha)
    assert doc["volumes"]["labels"] == []
    assert doc["volumes"]["intracranial_volume_ml"] == pytest.approx(brain.sum() * np.prod(t1.spacing) / 1000, abs=0.01)
    assert doc["provenance"][0]["model"] == "deepbet"

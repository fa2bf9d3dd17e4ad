"""``medcli landmarks`` and ``medcli landmarks eval`` as a user runs them (exit codes, one-line errors, files)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medcli.image import Image
from medcli.io.points import Points, read_points, write_points
from medcli.landmarks.sets import load_set


def one_line(stderr: bytes) -> str:
    lines = [x for x in stderr.decode().strip().splitlines() if x.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_unknown_method_is_a_clear_error(cli, tmp_path):
    r = cli("landmarks", "sample:t1", "--method", "magic", "-o", tmp_path / "p.fcsv")
    assert r.returncode == 2
    assert "--method must be one of auto, atlas, learned" in one_line(r.stderr)
    assert not (tmp_path / "p.fcsv").exists()


@pytest.mark.slow
def test_learned_end_to_end(cli, tmp_path):
    """--method learned on a translated 2 mm template: JSON on stdout with 32 points near the truth, model in provenance."""
    from medcli import io
    from medcli.register.transforms import AffineTransform, TransformChain, warp_image

    shift = np.array([-4.0, 6.0, 3.0])
    t = io.read("sample:t1").resample(2.0)
    io.write(warp_image(t, TransformChain([AffineTransform.from_translation(-shift)]), t), tmp_path / "subj.nii.gz")
    r = cli("landmarks", tmp_path / "subj.nii.gz", "--method", "learned", "--skull", "off", "-o", "-", "--threads", "1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["points"]) == 32
    ras = np.array([p["ras"] for p in doc["points"]], float)
    err = np.linalg.norm(ras - (load_set("afids").points.ras + shift), axis=1)
    assert err.mean() < 1.5, err


def test_2d_image_and_bad_output(cli, tmp_path):
    from medcli import io

    t = io.read("sample:t1")
    io.write(Image(np.asarray(t.data)[:, :, 90:91], t.affine), tmp_path / "slice.nii.gz")
    r = cli("landmarks", tmp_path / "slice.nii.gz", "-o", tmp_path / "p.fcsv")
    assert r.returncode == 3 and "3D" in one_line(r.stderr)
    r = cli("landmarks", "sample:t1", "-o", tmp_path / "p.txt")
    assert r.returncode != 0 and "point file" in one_line(r.stderr)
    r = cli("landmarks", "sample:t1", "--set", "nope", "-o", tmp_path / "p.fcsv")
    assert r.returncode == 2 and "unknown landmark set" in one_line(r.stderr)


def test_eval_table_and_json(cli, tmp_path):
    truth = load_set("afids").points
    shift = np.zeros_like(truth.ras)
    shift[:, 0] = np.arange(32) * 0.1  # landmark k off by 0.1 k mm
    write_points(truth, tmp_path / "truth.fcsv")
    write_points(truth.moved(truth.ras + shift), tmp_path / "pred.mrk.json")
    r = cli("landmarks", "eval", tmp_path / "pred.mrk.json", tmp_path / "truth.fcsv")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "mean radial error 1.55" in out and "AC" in out
    r = cli("landmarks", "eval", tmp_path / "pred.mrk.json", tmp_path / "truth.fcsv", "--json", "-o", tmp_path / "e.json")
    assert r.returncode == 0 and r.stdout == b""
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["n"] == 32 and abs(doc["mean_mm"] - 1.55) < 1e-9 and abs(doc["landmarks"][31]["error_mm"] - 3.1) < 1e-9
    r = cli("landmarks", "eval", tmp_path / "nothing.fcsv", tmp_path / "truth.fcsv")
    assert r.returncode == 3 and len(r.stderr.decode().strip().splitlines()) == 1


@pytest.mark.slow
def test_end_to_end_translation(cli, tmp_path):
    """A translated template at 3 mm: every AFID moved by the translation, in every output, QC written."""
    from medcli import io
    from medcli.register.transforms import AffineTransform, TransformChain, warp_image

    shift = np.array([5.0, 3.0, -4.0])
    t = io.read("sample:t1").resample(3.0)
    io.write(warp_image(t, TransformChain([AffineTransform.from_translation(-shift)]), t), tmp_path / "subj.nii.gz")
    r = cli("landmarks", tmp_path / "subj.nii.gz", "--skull", "off", "--spacing", "3", "-o", tmp_path / "p.fcsv",
            "--qc", tmp_path / "qc.png", "--threads", "1")
    assert r.returncode == 0, r.stderr
    pred = read_points(tmp_path / "p.fcsv")
    truth = load_set("afids").points
    err = np.linalg.norm(pred.ras - (truth.ras + shift), axis=1)
    # default schedule on the 3 mm template: measured mean 0.69, max 2.82 mm
    assert err.mean() < 1.0 and err.max() < 3.5, err
    assert (tmp_path / "qc.png").read_bytes()[:4] == b"\x89PNG"
    assert "# CoordinateSystem = LPS" in (tmp_path / "p.fcsv").read_text()
    write_points(Points(truth.ras + shift, truth.labels, truth.descriptions), tmp_path / "truth.csv")
    r = cli("landmarks", "eval", tmp_path / "p.fcsv", tmp_path / "truth.csv", "--json")
    assert r.returncode == 0 and abs(json.loads(r.stdout)["mean_mm"] - err.mean()) < 1e-3
    # no overwrite without --force
    r = cli("landmarks", tmp_path / "subj.nii.gz", "-o", tmp_path / "p.fcsv")
    assert r.returncode != 0 and "exists" in r.stderr.decode()


@pytest.mark.slow
def test_auto_uses_learned_on_a_head_with_its_skull(cli, tmp_path):
    """--method auto (default) picks learned where its skull is on (it measured better there) and says so."""
    from medcli.train.heads import TRAINING, synth_head, with_config

    cfg = with_config(TRAINING, rotation=0.0, scale=0.0, elastic=0.0, ghost=0.0)
    h = synth_head(np.random.default_rng(3), "t1", spacing=3.0, cfg=cfg, skull=True, slice_mm=3.0)
    import nibabel as nib

    nib.save(nib.Nifti1Image(h.image.astype(np.float32), h.affine), tmp_path / "head.nii.gz")
    r = cli("landmarks", tmp_path / "head.nii.gz", "-o", tmp_path / "p.fcsv", "--sidecar", "--threads", "1")
    assert r.returncode == 0, r.stderr
    sidecar = json.loads((tmp_path / "p.fcsv.json").read_text())
    assert sidecar["Landmarks"]["Method"] == "learned"
    s = load_set("afids")
    err = np.linalg.norm(read_points(tmp_path / "p.fcsv").ras - s.points.ras, axis=1)
    assert np.nanmean(err) < 1.5, err

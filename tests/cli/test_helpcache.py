"""The help cache: the same bytes as a fresh render, and stale as soon as a source changes."""

from __future__ import annotations

import json

from medcli.cli import helpcache


def test_cached_help_is_the_rendered_help(cli, tmp_path):
    env = {"MEDCLI_HOME": str(tmp_path), "COLUMNS": "90"}
    fresh = cli("convert", "--help", env={**env, "MEDCLI_HELP_CACHE": "0"})
    assert fresh.returncode == 0 and not (tmp_path / "help").exists()
    first = cli("convert", "--help", env=env)  # renders and records
    records = list((tmp_path / "help").glob("*.json"))
    assert len(records) == 1
    doc = json.loads(records[0].read_text())
    assert any(p.endswith("commands/convert.py") for p in doc["sources"])
    second = cli("convert", "--help", env=env)  # served from the record
    assert first.stdout == second.stdout == fresh.stdout
    assert b"Examples" in second.stdout
    # Another width is another key: rendered anew, not the 90-column text.
    narrow = cli("convert", "--help", env={**env, "COLUMNS": "60"})
    assert len(list((tmp_path / "help").glob("*.json"))) == 2
    assert max(len(line) for line in narrow.stdout.decode().splitlines()) <= 60


def test_edited_source_makes_the_record_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCLI_HOME", str(tmp_path))
    src = tmp_path / "decl.py"
    src.write_text("x = 1\n")
    helpcache.store(("info",), "help text\n")
    record = next((tmp_path / "help").glob("*.json"))
    doc = json.loads(record.read_text())
    doc["sources"][str(src)] = helpcache._stamp(str(src))
    record.write_text(json.dumps(doc))
    assert helpcache.lookup(("info",)) == "help text\n"
    src.write_text("x = 22\n")  # another size: stale
    assert helpcache.lookup(("info",)) is None
    monkeypatch.setenv("MEDCLI_HELP_CACHE", "0")
    src.write_text("x = 1\n")
    assert helpcache.lookup(("info",)) is None


def test_only_plain_help_requests_are_cached():
    assert helpcache.request(["segment", "--help"]) == ("segment",)
    assert helpcache.request(["models", "list", "-h"]) == ("models", "list")
    assert helpcache.request(["--help"]) is None
    assert helpcache.request(["convert", "in.nii.gz", "--help"]) is None
    assert helpcache.request(["convert", "--quiet", "--help"]) is None

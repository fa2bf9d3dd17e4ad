"""The hub against a loopback server: download, resume, integrity, errors, locking, offline, import, site folders."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest

from medcli.errors import ProcessingError
from medcli.models import hub

from hub_server import Rule, sha256, snapshot, write_registry

DATA = os.urandom(300_000) + b"end"  # odd size: not a multiple of the 64 KiB chunks


def register(tmp_path, monkeypatch, server, data=DATA, name="synth", fname="synth.bin", **file_keys):
    """Serve ``data`` at /fname and register it as model ``name``; returns the file entry."""
    server.served.files["/" + fname] = data
    f = {"name": fname, "sha256": sha256(data), "size": len(data), "urls": [server.url("/" + fname)], **file_keys}
    reg = write_registry(tmp_path / f"{name}.toml", {name: {"files": [f]}})
    monkeypatch.setenv("MEDCLI_REGISTRY", str(reg))
    return f


def cached(name="synth", fname="synth.bin") -> Path:
    return hub.cache_dir() / name / "1.0" / fname


def test_download_and_verify(hub_env, tmp_path, monkeypatch, server):
    register(tmp_path, monkeypatch, server)
    [p] = hub.fetch("synth")
    assert p == cached() and p.read_bytes() == DATA
    assert server.served.gets("/synth.bin") == [None]
    assert server.served.sent["/synth.bin"] == len(DATA)
    # Present and verified: no second transfer, and no leftovers beside it.
    assert hub.fetch("synth") == [p]
    assert len(server.served.gets("/synth.bin")) == 1
    assert sorted(x.name for x in p.parent.iterdir() if not x.name.endswith(".lock")) == ["synth.bin"]
    row = next(r for r in hub.list_models() if r["name"] == "synth")
    assert row["cached"] and not row["bundled"] and row["size"] == len(DATA)


def test_resume_after_cut_connection(hub_env, tmp_path, monkeypatch, server):
    register(tmp_path, monkeypatch, server)
    server.served.rules["/synth.bin"] = Rule(cut_after=100_000)
    [p] = hub.fetch("synth")
    assert p.read_bytes() == DATA
    ranges = server.served.gets("/synth.bin")
    assert ranges == [None, "bytes=100000-"], ranges
    # The first 100000 bytes were not sent again.
    assert server.served.sent["/synth.bin"] == len(DATA)


def test_server_ignoring_range_restarts_cleanly(hub_env, tmp_path, monkeypatch, server):
    register(tmp_path, monkeypatch, server)
    server.served.rules["/synth.bin"] = Rule(cut_after=50_000, ignore_range=True)
    [p] = hub.fetch("synth")
    assert p.read_bytes() == DATA  # not the first 50000 bytes twice


def test_wrong_sha256_installs_nothing(hub_env, tmp_path, monkeypatch, server):
    f = register(tmp_path, monkeypatch, server)
    bad = dict(f, sha256="0" * 64)
    monkeypatch.setenv("MEDCLI_REGISTRY", str(write_registry(tmp_path / "bad.toml", {"synth": {"files": [bad]}})))
    with pytest.raises(ProcessingError, match="sha256 mismatch"):
        hub.fetch("synth")
    folder = cached().parent
    assert not cached().exists()
    assert not list(folder.glob("*.part")), "the bad .part must be removed"


def test_truncated_download_is_never_installed(hub_env, tmp_path, monkeypatch, server):
    register(tmp_path, monkeypatch, server)
    server.served.rules["/synth.bin"] = Rule(cut_after=1000, cuts=99)  # every attempt is cut
    with pytest.raises(ProcessingError, match="cut after"):
        hub.fetch("synth")
    assert not cached().exists()
    assert len(server.served.gets("/synth.bin")) == 3  # MEDCLI_DOWNLOAD_RETRIES
    # What arrived is kept as .part for the next attempt, which resumes it.
    server.served.rules["/synth.bin"] = Rule()
    [p] = hub.fetch("synth")
    assert p.read_bytes() == DATA and server.served.gets("/synth.bin")[-1] == "bytes=3000-"


def test_redirect_is_followed_and_range_kept(hub_env, tmp_path, monkeypatch, server):
    register(tmp_path, monkeypatch, server)
    server.served.files["/real/synth.bin"] = DATA
    server.served.rules["/synth.bin"] = Rule(redirect="/real/synth.bin")
    server.served.rules["/real/synth.bin"] = Rule(cut_after=70_000)
    [p] = hub.fetch("synth")
    assert p.read_bytes() == DATA
    assert server.served.gets("/real/synth.bin") == [None, "bytes=70000-"]


def test_unwritable_cache_is_one_line_exit_4(hub_env, tmp_path, monkeypatch, server, cli):
    register(tmp_path, monkeypatch, server)
    (tmp_path / "afile").write_text("")
    env = {**hub_env, "MEDCLI_REGISTRY": os.environ["MEDCLI_REGISTRY"], "MEDCLI_HOME": str(tmp_path / "afile" / "home")}
    r = cli("models", "pull", "synth", env=env)
    assert r.returncode == 4 and r.stderr.decode().count("\n") == 1 and b"model cache" in r.stderr, r.stderr
    assert server.served.requests == []


def test_mirror_url_is_tried_first(hub_env, tmp_path, monkeypatch, server):
    register(tmp_path, monkeypatch, server)
    server.served.files["/mirror/synth.bin"] = DATA
    monkeypatch.setenv("MEDCLI_MODEL_URL", server.url("/mirror"))
    hub.fetch("synth")
    assert len(server.served.gets("/mirror/synth.bin")) == 1 and server.served.gets("/synth.bin") == []


def test_next_url_after_404(hub_env, tmp_path, monkeypatch, server):
    f = register(tmp_path, monkeypatch, server)
    two = dict(f, urls=[server.url("/gone.bin"), server.url("/synth.bin")])
    monkeypatch.setenv("MEDCLI_REGISTRY", str(write_registry(tmp_path / "two.toml", {"synth": {"files": [two]}})))
    [p] = hub.fetch("synth")
    assert p.read_bytes() == DATA and server.served.gets("/gone.bin") == [None]


def test_404_is_one_line_exit_4(hub_env, tmp_path, monkeypatch, server, cli):
    register(tmp_path, monkeypatch, server)
    server.served.rules["/synth.bin"] = Rule(status=404)
    r = cli("models", "pull", "synth", env={**hub_env, "MEDCLI_REGISTRY": os.environ["MEDCLI_REGISTRY"]})
    err = r.stderr.decode()
    assert r.returncode == 4, err
    assert err.count("\n") == 1 and "HTTP 404" in err and "Traceback" not in err
    assert r.stdout == b""
    assert len(server.served.gets("/synth.bin")) == 1  # a 404 is not retried


def test_timeout_is_one_line_exit_4(hub_env, tmp_path, monkeypatch, server, cli):
    register(tmp_path, monkeypatch, server)
    server.served.rules["/synth.bin"] = Rule(stall=3)
    env = {**hub_env, "MEDCLI_REGISTRY": os.environ["MEDCLI_REGISTRY"], "MEDCLI_DOWNLOAD_TIMEOUT": "0.3", "MEDCLI_DOWNLOAD_RETRIES": "2"}
    r = cli("models", "pull", "synth", env=env)
    err = r.stderr.decode()
    assert r.returncode == 4, err
    assert err.count("\n") == 1 and "within 0.3 s" in err and "Traceback" not in err
    assert len(server.served.gets("/synth.bin")) == 2  # retried, then gave up
    assert not cached().exists()


def _pull(_):
    [p] = hub.fetch("synth")
    return str(p), p.stat().st_size


def test_twenty_processes_make_one_transfer(hub_env, tmp_path, monkeypatch, server):
    data = os.urandom(1 << 20)
    register(tmp_path, monkeypatch, server, data=data)
    server.served.rules["/synth.bin"] = Rule(delay=0.01)  # ~0.2 s transfer: the others arrive while it runs
    with mp.get_context("fork").Pool(20) as pool:
        results = pool.map(_pull, range(20), chunksize=1)
    assert {r for r in results} == {(str(cached()), len(data))}
    assert len(server.served.gets("/synth.bin")) == 1
    assert server.served.sent["/synth.bin"] == len(data)
    assert cached().read_bytes() == data


def test_offline_message(hub_env, tmp_path, monkeypatch, server, cli):
    register(tmp_path, monkeypatch, server)
    env = {**hub_env, "MEDCLI_REGISTRY": os.environ["MEDCLI_REGISTRY"], "MEDCLI_OFFLINE": "1"}
    r = cli("models", "pull", "synth", env=env)
    err = r.stderr.decode()
    assert r.returncode == 4
    assert err.count("\n") == 1
    for hint in ("MEDCLI_OFFLINE", "medcli models pull synth", "medcli models import", "MEDCLI_MODELS_PATH"):
        assert hint in err, (hint, err)
    assert server.served.requests == []


def test_import_recognises_files_by_hash(hub_env, tmp_path, monkeypatch, server, cli):
    register(tmp_path, monkeypatch, server)
    drop = tmp_path / "usb"
    drop.mkdir()
    (drop / "0.model").write_bytes(DATA)  # upstream name, not the registry's
    (drop / "notes.txt").write_text("not a model")
    env = {**hub_env, "MEDCLI_REGISTRY": os.environ["MEDCLI_REGISTRY"], "MEDCLI_OFFLINE": "1"}
    r = cli("models", "import", drop, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == [str(cached())]
    assert cached().read_bytes() == DATA
    assert hub.fetch("synth") == [cached()] and server.served.requests == []
    # A file that matches nothing is refused as bad input.
    r = cli("models", "import", drop / "notes.txt", env=env)
    assert r.returncode == 3 and b"nothing to import" in r.stderr


def test_read_only_site_folder_is_used_and_never_written(hub_env, tmp_path, monkeypatch, server, cli):
    register(tmp_path, monkeypatch, server)
    site = tmp_path / "site"
    (site / "synth").mkdir(parents=True)
    (site / "synth" / "synth.bin").write_bytes(DATA)
    os.chmod(site / "synth" / "synth.bin", 0o444)
    os.chmod(site / "synth", 0o555)
    before = snapshot(site)
    monkeypatch.setenv("MEDCLI_MODELS_PATH", f"{tmp_path / 'missing'}{os.pathsep}{site}")
    try:
        assert hub.fetch("synth") == [site / "synth" / "synth.bin"]
        assert hub.path("synth") == site / "synth"
        env = {**hub_env, "MEDCLI_REGISTRY": os.environ["MEDCLI_REGISTRY"], "MEDCLI_MODELS_PATH": os.environ["MEDCLI_MODELS_PATH"]}
        for args in (("pull", "synth"), ("list",), ("verify",), ("rm", "synth")):
            r = cli("models", *args, env=env)
            assert r.returncode == 0, (args, r.stderr)
        assert snapshot(site) == before
        assert server.served.requests == []
        assert not cached().exists()
    finally:
        os.chmod(site / "synth", 0o755)


def test_verify_detects_corruption_and_pull_repairs(hub_env, tmp_path, monkeypatch, server, cli):
    register(tmp_path, monkeypatch, server)
    [p] = hub.fetch("synth")
    env = {**hub_env, "MEDCLI_REGISTRY": os.environ["MEDCLI_REGISTRY"]}
    r = cli("models", "verify", env=env)
    line = next(l for l in r.stdout.decode().splitlines() if l.endswith(str(p)))
    assert r.returncode == 0 and line.split()[:3] == ["ok", "synth", "synth.bin"]
    raw = bytearray(p.read_bytes())
    raw[12345] ^= 0xFF  # one flipped bit, same size
    p.write_bytes(bytes(raw))
    r = cli("models", "verify", env=env)
    assert r.returncode == 4
    bad = [l.split() for l in r.stdout.decode().splitlines() if l.startswith("CORRUPT")]
    assert bad == [["CORRUPT", "synth", "synth.bin", str(p)]], r.stdout.decode()
    assert "medcli models rm synth" in r.stderr.decode() and r.stderr.decode().count("\n") == 1
    # The corrupt copy is never used: the next fetch downloads a good one in its place.
    assert hub.fetch("synth") == [p] and p.read_bytes() == DATA
    assert len(server.served.gets("/synth.bin")) == 2


def test_rm_only_touches_the_cache(hub_env, tmp_path, monkeypatch, server):
    register(tmp_path, monkeypatch, server)
    hub.fetch("synth")
    assert hub.rm("synth") == [hub.cache_dir() / "synth"]
    assert not cached().exists() and hub.rm("synth") == []


def test_progress_bar_only_on_a_terminal(hub_env, tmp_path, monkeypatch, server):
    import subprocess
    import sys

    from ttyrun import run_on_tty

    register(tmp_path, monkeypatch, server, data=os.urandom(1 << 20))
    server.served.rules["/synth.bin"] = Rule(delay=0.02)
    env = {**os.environ, "MEDCLI_REGISTRY": os.environ["MEDCLI_REGISTRY"], "COLUMNS": "100"}
    r, seen = run_on_tty("models", "pull", "synth", tty=("stderr",), env=env, timeout=60)
    assert r.returncode == 0
    assert r.stdout.decode() == f"{cached()}\n"  # stdout: data only
    assert b"synth/synth.bin" in seen and b"MB" in seen, seen[-500:]
    # Off a terminal (stderr is a pipe): no bar at all.
    hub.rm("synth")
    r = subprocess.run([sys.executable, "-m", "medcli", "models", "pull", "synth"], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stderr == b""

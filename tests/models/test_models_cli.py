"""``medcli models`` as a user runs it: list, info, path, help, usage errors; help stays light."""

from __future__ import annotations

import json

from medcli.models import hub


def test_list_table_and_json(hub_env, cli):
    r = cli("models", "list", env=hub_env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "TASK", "VERSION", "SIZE", "LICENCE", "STATUS"]
    hd = next(l for l in lines if l.startswith("hdbet "))
    assert hd.split()[-4:] == ["312.1", "MiB", "Apache-2.0", "remote"]
    assert r.stderr == b""
    rows = json.loads(cli("models", "list", "--json", env=hub_env).stdout)
    by = {r["name"]: r for r in rows}
    assert by["hdbet"]["size"] == 327219095 and by["hdbet"]["folds"] == 5 and not by["hdbet"]["cached"]
    for name, m in hub.registry().items():
        if all(f.get("bundled") for f in m.get("files", []) + m.get("folds", [])):
            assert by[name]["bundled"] and by[name]["cached"], name


def test_info_path_and_errors(hub_env, cli):
    r = cli("models", "info", "hdbet", env=hub_env)
    out = r.stdout.decode()
    assert r.returncode == 0 and "doi:10.1002/hbm.24750" in out and "hdbet-4.model" in out and "# HD-BET" in out
    spec = json.loads(cli("models", "info", "hdbet", "--json", env=hub_env).stdout)
    assert spec["architecture"] == "hdbet" and spec["labels"] == {"0": "background", "1": "brain"}
    r = cli("models", "path", "hdbet", env=hub_env)
    assert r.stdout.decode().strip() == f"{hub_env['MEDCLI_HOME']}/models/hdbet/1.0"
    r = cli("models", env=hub_env)
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1
    r = cli("models", "pull", "hdbet", "--folds", "7", env={**hub_env, "MEDCLI_OFFLINE": "1"})
    assert r.returncode == 2 and b"no fold 7" in r.stderr


def test_help_does_not_import_torch(hub_env, cli):
    code = "import sys; from medcli.cli.app import main; sys.argv=['medcli','models','list']\ntry:\n    main()\nexcept SystemExit: pass\nprint('torch' in sys.modules, 'numpy' in sys.modules, file=sys.stderr)"
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, env={**__import__("os").environ, **hub_env})
    assert r.stderr.decode().strip().splitlines()[-1] == "False False", r.stderr
    r = cli("models", "pull", "--help", env=hub_env)
    assert r.returncode == 0 and b"--folds" in r.stdout

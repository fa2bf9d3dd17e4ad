"""The CLI as a user meets it: help, version, exit codes, one-line errors."""

import os
import subprocess
import sys

import pytest

from medcli.cli.app import COMMANDS, _available

HEAVY = {"torch", "SimpleITK", "scipy"}
REGISTERED = [name for name, (module, _) in COMMANDS.items() if _available(module)]


def _imported(*args: str) -> set[str]:
    # The help cache off: the point is what rendering the help imports, not what printing a record does.
    env = {**os.environ, "MEDCLI_HELP_CACHE": "0"}
    probe = subprocess.run([sys.executable, "-X", "importtime", "-m", "medcli", *args], capture_output=True, text=True, env=env)
    assert probe.returncode == 0, probe.stderr[-2000:]
    return {ln.rstrip().split("|")[-1].strip() for ln in probe.stderr.splitlines() if ln.startswith("import time:")}


def test_help_lists_commands_and_imports_nothing_heavy(cli):
    r = cli("--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "convert" in out and "Exit codes" in out
    for name in REGISTERED:
        assert name in out
    assert not _imported("--help") & HEAVY
    # The root help is plain click: rich (and its 30 modules) is not needed for it.
    assert "rich" not in _imported("--help")


@pytest.mark.parametrize("name", REGISTERED)
def test_command_help_imports_nothing_heavy(name):
    heavy = _imported(name, "--help") & HEAVY
    assert not heavy, f"'medcli {name} --help' imports {sorted(heavy)}: move them inside functions"


def test_version(cli):
    from medcli import __version__

    r = cli("--version")
    assert r.returncode == 0 and r.stdout.decode().strip() == f"medcli {__version__}"


def test_unknown_option_is_usage_error(cli):
    r = cli("convert", "sample:t1", "--bogus")
    assert r.returncode == 2
    assert r.stderr.decode().startswith("medcli: error:")
    assert "Traceback" not in r.stderr.decode()


def test_missing_file_one_line(cli, tmp_path):
    r = cli("convert", tmp_path / "nope.nii.gz", "-o", tmp_path / "out.nii.gz")
    assert r.returncode == 3
    lines = r.stderr.decode().strip().splitlines()
    assert lines == [f"medcli: error: {tmp_path / 'nope.nii.gz'}: no such file or directory"]
    assert not (tmp_path / "out.nii.gz").exists()


def test_unknown_command_suggests_the_closest(cli):
    r = cli("convrt", "sample:t1")
    assert r.returncode == 2
    assert r.stderr.decode().splitlines() == ["medcli: error: no such command 'convrt'; did you mean 'convert'?"]
    r = cli("frobnicate")
    assert r.returncode == 2 and "see 'medcli --help'" in r.stderr.decode()


def test_registered_but_unwritten_command_is_unknown_not_a_crash():
    launcher = (
        "import sys; from medcli.cli import app; app.COMMANDS['ghost'] = ('medcli_no_such_module', 'x'); app.main(['ghost'])"
    )
    r = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True)
    assert r.returncode == 2 and "no such command 'ghost'" in r.stderr

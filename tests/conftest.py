"""Shared fixtures: run the installed CLI as a user would, and real sample images."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "medcli" / "data"


def run_cli(*args: str, input: bytes | None = None, env: dict | None = None, cwd=None, timeout=600):
    """Run ``python -m medcli ARGS`` in a subprocess; returns CompletedProcess (bytes)."""
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "2")
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "medcli", *map(str, args)],
        input=input,
        capture_output=True,
        env=e,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def t1_path() -> Path:
    return DATA / "mni152_t1_1mm.nii.gz"


@pytest.fixture(scope="session")
def t1():
    from medcli import io

    img = io.read(DATA / "mni152_t1_1mm.nii.gz")
    img.data  # noqa: B018
    return img


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: the suite shares its CPUs, and OpenMP threads that wait on each other are slower than one."""
    from medcli.runtime import state

    saved = state.threads
    state.threads = 1
    yield
    state.threads = saved

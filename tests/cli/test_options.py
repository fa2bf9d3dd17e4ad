"""Shared options mean the same in every command: threads, device, -q/-v, --debug, help."""

import re

import pytest

from tests.cli._probe import run_probe

THREADS = """
    from medcli.cli.command import command

    @command("probe", summary="Report thread settings.", batch=False)
    def cli():
        import os, sys
        from medcli.runtime import configure_torch
        torch = configure_torch()
        import SimpleITK as sitk
        from threadpoolctl import threadpool_info
        blas = {i["num_threads"] for i in threadpool_info()}
        itk = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sys.stdout.write(f"{torch.get_num_threads()} {os.environ['OMP_NUM_THREADS']} {itk} {max(blas)}\\n")
"""


@pytest.mark.slow  # imports torch in a fresh process
@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--threads", "1"], {"OMP_NUM_THREADS": "2"}, "1 1 1 1"),
        ([], {"SLURM_CPUS_PER_TASK": "1", "OMP_NUM_THREADS": "2"}, "1 1 1 1"),
        (["--threads", "2"], {"SLURM_CPUS_PER_TASK": "1"}, "2 2 2 2"),
    ],
)
def test_threads_reach_torch_itk_and_blas(tmp_path, args, env, expected):
    r = run_probe(tmp_path, THREADS, *args, env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().split() == expected.split()


def test_threads_must_be_positive(cli):
    r = cli("convert", "sample:t1", "-o", "x.nii.gz", "--threads", "0")
    assert r.returncode == 2 and "--threads" in r.stderr.decode()


def test_help_text_brackets_are_not_rich_markup(tmp_path):
    body = """
        from typing import Annotated
        import typer
        from medcli.cli.command import command

        @command(
            "probe",
            summary="Brackets [like these] stay.",
            examples=[("Probe twice", "medcli probe --level 0.2")],
            references=["Doe J, et al. A [bracketed] title. J Imaging 2020;1:1-10."],
            batch=False,
        )
        def cli(level: Annotated[float, typer.Option(help="Range [0, 1] and [bold]text[/bold].")] = 0.5):
            pass
    """
    r = run_probe(tmp_path, body, "--help")
    flat = " ".join(re.sub("[╭╮╰╯─│]", " ", r.stdout.decode()).split())
    assert "Brackets [like these] stay." in flat and "Range [0, 1] and [bold]text[/bold]." in flat
    assert "FLOAT" in flat
    assert "Examples Probe twice $ medcli probe --level 0.2" in flat
    assert "References Doe J, et al. A [bracketed] title. J Imaging 2020;1:1-10." in flat


@pytest.mark.slow  # imports torch
def test_cuda_without_gpu_is_a_one_line_usage_error(cli, tmp_path):
    r = cli("convert", "sample:t1", "-o", tmp_path / "x.nii.gz", "--device", "cuda:0")
    if r.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert r.returncode == 2
    assert r.stderr.decode().splitlines() == ["medcli: error: --device cuda:0: no CUDA device is available (use --device cpu)"]
    assert not (tmp_path / "x.nii.gz").exists()


def test_bad_device_name(cli, tmp_path):
    r = cli("convert", "sample:t1", "-o", tmp_path / "x.nii.gz", "--device", "gpu")
    assert r.returncode == 2 and "expected auto, cpu, cuda, cuda:N or mps" in r.stderr.decode()


BOOM = """
    from medcli.cli.command import command

    @command("probe", summary="Fail.", batch=False)
    def cli():
        from medcli.runtime import log
        log.warning("a warning")
        log.info("an info line")
        raise ZeroDivisionError("boom")
"""


def test_internal_error_traceback_only_with_debug(tmp_path):
    r = run_probe(tmp_path, BOOM)
    err = r.stderr.decode()
    assert r.returncode == 1
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "medcli: error: internal error: ZeroDivisionError: boom (rerun with --debug for the traceback)"
    r = run_probe(tmp_path, BOOM, "--debug")
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr.decode()


def test_quiet_leaves_only_errors_and_verbose_adds_info(tmp_path):
    plain = run_probe(tmp_path, BOOM).stderr.decode().splitlines()
    assert plain[0] == "medcli: warning: a warning" and "medcli: an info line" not in plain
    quiet = run_probe(tmp_path, BOOM, "-q").stderr.decode().splitlines()
    assert quiet == [plain[-1]]
    verbose = run_probe(tmp_path, BOOM, "-v").stderr.decode().splitlines()
    assert "medcli: an info line" in verbose


def test_quiet_batch_prints_nothing_on_success(cli, tmp_path):
    r = cli("convert", "sample:t1", "-o", tmp_path / "t1.nii", "-q", "-v")
    assert r.returncode == 0 and r.stderr == b"" and r.stdout == b""
    r = cli("convert", "sample:t1", "-o", tmp_path / "t1b.nii", "-v")
    assert r.returncode == 0 and "sample:t1 ->" in r.stderr.decode()


def test_command_help_is_readable(cli):
    r = cli("convert", "--help", env={"COLUMNS": "100"})
    out = r.stdout.decode()
    assert r.returncode == 0
    assert "<bool>" not in out and "<str>" not in out and "<list" not in out
    for panel in ("Output and batch", "Common", "Examples"):
        assert panel in out
    assert "$ medcli convert a.nrrd -o - | medcli convert - -o b.nii.gz" in out
    flat = " ".join(out.replace("│", " ").split())
    assert "default: (SLURM_CPUS_PER_TASK, else OMP_NUM_THREADS, else all cores)" in flat
    assert "(e.g. out/{stem}_mask.nii.gz)" in flat
    plain = cli("convert", "--help", env={"TYPER_USE_RICH": "0"}).stdout.decode()
    assert "-f, --force  " in plain and "$ medcli convert dicom_dir/ -o scan.nii.gz" in plain


def test_no_progress_bar_or_colour_when_stderr_is_not_a_terminal(cli, tmp_path):
    r = cli("convert", "sample:t1", "sample:wm", "-o", tmp_path / "{stem}.nii", "-v")
    err = r.stderr.decode()
    assert r.returncode == 0 and err.splitlines()[0].startswith("medcli: sample:t1 -> ")
    assert "\x1b[" not in err and "\r" not in err


def test_progress_is_a_no_op_without_a_terminal():
    from medcli import runtime

    with runtime.progress(3, "x") as advance:
        for _ in range(3):
            advance()
    assert runtime.progress_enabled() is False  # pytest captures stderr


def test_progress_bar_on_a_terminal_unless_quiet(tmp_path):
    import os

    from ttyrun import run_on_tty

    def stderr_on_terminal(*args: str) -> bytes:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
        return run_on_tty(*args, tty=("stderr",), env=env)[1]

    seen = stderr_on_terminal("convert", "sample:wm", "sample:gm", "-o", str(tmp_path / "{stem}.nii"))
    assert b"convert" in seen and b"2/2" in seen
    quiet = stderr_on_terminal("convert", "sample:wm", "sample:gm", "-o", str(tmp_path / "{stem}.nii"), "-f", "-q")
    assert quiet == b""


def test_configure_torch_flushes_subnormal_floats():
    # Subnormals made an HD-BET fold 30x slower on x86; configure_torch must switch them off.
    from medcli.runtime import configure_torch

    torch = configure_torch()
    assert torch.tensor([1e-40], dtype=torch.float32).item() == 0.0

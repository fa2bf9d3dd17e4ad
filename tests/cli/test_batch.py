"""The batch engine end to end with `convert` on real files: templates, lists, arrays, resume, failures."""

import json
import os

import numpy as np
import pytest

from medcli import io
from medcli.cli.command import plan
from medcli.commands.convert import cli as convert_spec
from medcli.errors import UsageError
from tests.cli._probe import run_probe

ARRAY_VARS = ("SLURM_ARRAY_TASK_ID", "PBS_ARRAY_INDEX", "PBS_ARRAYID", "SGE_TASK_ID", "LSB_JOBINDEX", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, t1):
    """The bundled T1 as NIfTI, NRRD, MetaImage and MGZ, and one corrupt file."""
    d = tmp_path_factory.mktemp("batch_in")
    names = ["a.nii.gz", "b.nrrd", "c.mha", "d.mgz"]
    for n in names:
        io.write(t1, d / n)
    (d / "bad.nii.gz").write_bytes(b"\x1f\x8b" + os.urandom(2000))
    return d


def env_without_arrays(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ARRAY_VARS}
    env.update(extra)
    return env


def test_corrupt_input_in_the_middle(cli, inputs, tmp_path, t1):
    srcs = [inputs / "a.nii.gz", inputs / "bad.nii.gz", inputs / "b.nrrd", inputs / "c.mha"]
    r = cli("convert", *srcs, "-o", tmp_path / "{stem}_{index}.nii", env=env_without_arrays())
    err = r.stderr.decode().splitlines()
    assert r.returncode == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_0.nii", "b_2.nii", "c_3.nii"]
    assert err[0].startswith(f"medcli: error: {inputs / 'bad.nii.gz'}:")
    assert err[-1] == f"medcli: error: 1 of 4 inputs failed ({inputs / 'bad.nii.gz'}); the other 3 were written"
    for p in tmp_path.iterdir():
        out = io.read(p)
        assert np.array_equal(out.data, t1.data)
        np.testing.assert_allclose(out.affine, t1.affine, atol=1e-5)
    assert "Traceback" not in r.stderr.decode()


def test_list_with_output_column_and_slurm_array(cli, inputs, tmp_path):
    lst = tmp_path / "list.tsv"
    lst.write_text(
        "# input<TAB>output\n"
        f"{inputs / 'a.nii.gz'}\t{tmp_path / 'first.nii'}\n"
        f"{inputs / 'b.nrrd'},{tmp_path / 'second.nii'}\n"
        f"{inputs / 'c.mha'}\n"
        f"{inputs / 'd.mgz'}\n"
    )
    env = env_without_arrays(SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX="1")
    r = cli("convert", "--list", lst, "--chunk", "2", "-o", tmp_path / "{stem}.nii", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in tmp_path.glob("*.nii")) == ["c.nii", "d.nii"]
    r = cli("convert", "--list", lst, "--chunk", "2", "-o", tmp_path / "{stem}.nii", env=dict(env, SLURM_ARRAY_TASK_ID="0"))
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in tmp_path.glob("*.nii")) == ["c.nii", "d.nii", "first.nii", "second.nii"]
    assert io.read(tmp_path / "second.nii").meta["description"].startswith("medcli ")


def test_skip_existing_resumes_and_force_overwrites(cli, inputs, tmp_path):
    srcs = [inputs / "a.nii.gz", inputs / "b.nrrd"]
    (tmp_path / "a.nii").write_bytes(b"not touched")
    r = cli("convert", *srcs, "-o", tmp_path / "{stem}.nii", env=env_without_arrays())
    assert r.returncode == 4 and "output exists (use --force to overwrite)" in r.stderr.decode()
    assert not (tmp_path / "b.nii").exists()  # checked before any work
    r = cli("convert", *srcs, "-o", tmp_path / "{stem}.nii", "--skip-existing", env=env_without_arrays())
    assert r.returncode == 0 and (tmp_path / "a.nii").read_bytes() == b"not touched" and (tmp_path / "b.nii").exists()
    r = cli("convert", *srcs, "-o", tmp_path / "{stem}.nii", "-f", env=env_without_arrays())
    assert r.returncode == 0 and io.read(tmp_path / "a.nii").shape == (197, 233, 189)


def test_output_folder_keeps_names(cli, inputs, tmp_path):
    r = cli("convert", inputs / "b.nrrd", inputs / "c.mha", "-o", str(tmp_path) + "/")
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.nrrd", "c.mha"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["x.nii", "y.nii", "-o", "one.nii.gz"], "2 inputs but one output 'one.nii.gz'"),
        (["a/x.nii", "b/x.nii", "-o", "out/{stem}.nii"], "two inputs would write the same output 'out/x.nii'"),
        (["-", "-", "-o", "{index}.nii"], "stdin ('-') can be read only once"),
        (["x.nii", "y.nii", "-o", "-"], "several inputs cannot all go to stdout"),
        (["x.nii", "-o", "{nope}.nii"], "bad output template '{nope}.nii'"),
        ([], "no input given"),
    ],
)
def test_bad_batch_usage_is_exit_2(cli, tmp_path, argv, message):
    r = cli("convert", *argv, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr.decode() and len(r.stderr.decode().splitlines()) == 1


# -- the array-index convention, without processes ------------------------------------------------


def _plan(monkeypatch, env, **common):
    for var in ARRAY_VARS:
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    base = {"inputs": None, "output": "out/{stem}_{index}.nii.gz", "force": False, "chunk": 1, "array_index": None}
    base.update(common)
    return [(j.source, j.output) for j in plan(convert_spec, base)]


@pytest.fixture
def listfile(tmp_path):
    p = tmp_path / "inputs.txt"
    p.write_text("".join(f"s{i}.nii\n" for i in range(5)))
    return str(p)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLURM_ARRAY_TASK_ID": "0"}, ["s0", "s1"]),
        ({"SLURM_ARRAY_TASK_ID": "2"}, ["s4"]),
        ({"PBS_ARRAY_INDEX": "1"}, ["s2", "s3"]),
        ({"SGE_TASK_ID": "1"}, ["s0", "s1"]),  # SGE counts from 1
        ({"LSB_JOBINDEX": "2"}, ["s2", "s3"]),  # so does LSF
        ({"LSB_JOBINDEX": "0"}, ["s0", "s1", "s2", "s3", "s4"]),  # LSF: not an array job
        ({}, ["s0", "s1", "s2", "s3", "s4"]),
    ],
)
def test_array_index_from_scheduler(monkeypatch, listfile, env, expected):
    jobs = _plan(monkeypatch, env, list_file=listfile, chunk=2)
    assert [s.removesuffix(".nii") for s, _ in jobs] == expected
    # {index} is the position in the whole list, whichever task runs it.
    assert all(out == f"out/{s.removesuffix('.nii')}_{s[1]}.nii.gz" for s, out in jobs)


def test_explicit_array_index_wins_and_env_needs_a_list(monkeypatch, listfile):
    assert _plan(monkeypatch, {"SLURM_ARRAY_TASK_ID": "0"}, list_file=listfile, array_index=3) == [("s3.nii", "out/s3_3.nii.gz")]
    # Without --list, a command inside an array job processes what it was given.
    assert len(_plan(monkeypatch, {"SLURM_ARRAY_TASK_ID": "1"}, inputs=["x.nii", "y.nii"])) == 2
    assert _plan(monkeypatch, {}, list_file=listfile, array_index=9) == []


def test_slurm_array_mistakes_are_warned(monkeypatch, listfile, caplog):
    from medcli.runtime import log

    log.propagate = True
    try:
        env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "3"}
        _plan(monkeypatch, env, list_file=listfile)
    finally:
        log.propagate = False
    text = caplog.text
    assert "starts at 1, so chunks 0..0 are never run: submit --array=0-4" in text
    assert "ends at 3 but there are 5 chunks" in text


def test_usage_errors_in_process(monkeypatch):
    with pytest.raises(UsageError, match="can be read only once"):
        _plan(monkeypatch, {}, inputs=["-"], list_file="-")


# -- heavy state once per process ----------------------------------------------------------------

FACTORY = """
    from medcli.cli.command import command

    @command("probe", summary="Count factory and step calls.")
    def cli():
        with open("factory.log", "a") as f:
            f.write("factory\\n")
        def step(image, job):
            with open("factory.log", "a") as f:
                f.write(f"step {job.index}\\n")
            job.provenance["Model"] = {"Name": "probe-model", "SHA256": "0" * 64}
            job.provenance["Seed"] = 7
            return image
        return step
"""


def test_step_factory_runs_once_for_many_inputs(tmp_path, inputs):
    srcs = [inputs / "b.nrrd", inputs / "c.mha", inputs / "d.mgz"]
    r = run_probe(tmp_path, FACTORY, *srcs, "-o", "{stem}.nii", "--sidecar", env={})
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "factory.log").read_text().splitlines() == ["factory", "step 0", "step 1", "step 2"]
    side = json.loads((tmp_path / "c.json").read_text())
    assert side["Model"] == {"Name": "probe-model", "SHA256": "0" * 64} and side["Seed"] == 7


def test_list_from_stdin(cli, tmp_path):
    r = cli("convert", "--list", "-", "-o", tmp_path / "{index}_{stem}.nii", input=b"sample:wm\n\n# a comment\nsample:gm\n")
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0_wm.nii", "1_gm.nii"]
    assert np.array_equal(io.read(tmp_path / "1_gm.nii").data, io.read("sample:gm").data)

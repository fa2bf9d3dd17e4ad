"""Every written image says which medcli made it; --sidecar writes the full story as JSON."""

import hashlib
import json
import shutil

import nibabel as nib

from medcli import __version__

STAMP = f"medcli {__version__} convert"


def test_header_description_in_every_format(cli, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"sample:t1\t{tmp_path / name}\n" for name in ("t1.nii.gz", "t1.nrrd", "t1.mha", "t1.nhdr")))
    r = cli("convert", "--list", lst, "--dtype", "int16")
    assert r.returncode == 0, r.stderr.decode()
    descrip = nib.load(tmp_path / "t1.nii.gz").header["descrip"].tobytes().rstrip(b"\0").decode()
    assert descrip == STAMP
    for name in ("t1.nrrd", "t1.mha", "t1.nhdr"):
        head = (tmp_path / name).read_bytes()[:4000]
        assert STAMP.encode() in head, name
    info = cli("info", tmp_path / "t1.mha", "--json", "--header-only")
    assert json.loads(info.stdout)["description"] == STAMP


def test_sidecar_records_command_inputs_and_parameters(cli, tmp_path, t1_path):
    src = tmp_path / "sub-01_T1w.nii.gz"
    shutil.copy(t1_path, src)
    r = cli("convert", src, "-o", tmp_path / "out" / "sub-01_T1w.nrrd", "--reorient", "LPS", "--sidecar", cwd=tmp_path)
    assert r.returncode == 4 and "output folder does not exist" in r.stderr.decode()
    (tmp_path / "out").mkdir()
    r = cli("convert", src, "-o", tmp_path / "out" / "sub-01_T1w.nrrd", "--reorient", "LPS", "--sidecar", cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads((tmp_path / "out" / "sub-01_T1w.json").read_text())
    assert doc["GeneratedBy"][0]["Name"] == "medcli" and doc["GeneratedBy"][0]["Version"] == __version__
    assert doc["Command"] == "convert"
    assert doc["CommandLine"].startswith(f"medcli convert {src} -o ") and doc["CommandLine"].endswith("--reorient LPS --sidecar")
    assert doc["Sources"] == [{"Path": str(src), "SHA256": hashlib.sha256(src.read_bytes()).hexdigest()}]
    assert doc["Parameters"] == {"dtype": None, "reorient": "LPS", "strict": False}
    assert doc["Seed"] is None
    assert 0 < doc["DurationSeconds"] < 600
    # An existing sidecar is an existing output: refused before any work unless --force.
    (tmp_path / "out" / "sub-01_T1w.nrrd").unlink()
    r = cli("convert", src, "-o", tmp_path / "out" / "sub-01_T1w.nrrd", "--sidecar")
    assert r.returncode == 4 and "sub-01_T1w.json: output exists" in r.stderr.decode()
    assert not (tmp_path / "out" / "sub-01_T1w.nrrd").exists()

"""Inputs of reports made on the bundled MNI T1: a tissue label map (from the bundled GM/WM maps),
its ``segment --stats``, a sidecar, findings written by ``medcli.detect``'s own writer, AFIDs landmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medcli import io
from medcli.image import Image

DATA = Path(__file__).resolve().parents[2] / "medcli" / "data"
T1 = DATA / "mni152_t1_1mm.nii.gz"
AFIDS = DATA / "afids-MNI152NLin2009bAsym.fcsv"


@pytest.fixture(scope="session")
def scan_inputs(tmp_path_factory) -> dict[str, Path]:
    """Files other commands write for the MNI T1 (real label map from the bundled tissue maps)."""
    from medcli.files import sha256_of
    from medcli.detect.findings import Finding, Findings, format_findings
    from medcli.segment.outputs import LABELS, statistics, stats_text

    d = tmp_path_factory.mktemp("report_inputs")
    t1 = io.read(str(T1))
    gm = np.asarray(io.read(str(DATA / "mni152_gm_1mm.nii.gz")).data, np.float32)
    wm = np.asarray(io.read(str(DATA / "mni152_wm_1mm.nii.gz")).data, np.float32)
    brain = np.asarray(t1.data) > 0
    lab = np.where(brain, 1, 0).astype(np.uint8)  # CSF: brain voxels that are neither GM nor WM
    lab[(gm >= wm) & (gm > 127)] = 2
    lab[(wm > gm) & (wm > 127)] = 3
    labels = Image(lab, t1.affine)
    io.write(labels, str(d / "tissue.nii.gz"))
    stats = statistics(labels, LABELS["tissue"], brain=brain, model="tissue", sha256="ab" * 32, source=str(T1))
    (d / "tissue_stats.json").write_text(stats_text(stats, "x.json"))
    (d / "tissue_stats.csv").write_text(stats_text(stats, "x.csv"))
    sidecar = {"GeneratedBy": [{"Name": "medcli"}], "Command": "segment", "CommandLine": "medcli segment t1 --task tissue",
               "Sources": [{"Path": str(T1), "SHA256": sha256_of(str(T1))}], "Task": "tissue", "Model": "tissue", "ModelSha256": "ab" * 32}
    (d / "tissue.json").write_text(json.dumps(sidecar))
    # Two findings in the left hemisphere white matter (RAS x < 0), written by detect's writer.
    wm_vox = np.argwhere((lab == 3))
    left = wm_vox[t1.voxel_to_world(wm_vox)[:, 0] < -20]
    c1, c2 = t1.voxel_to_world(left[[len(left) // 3, 2 * len(left) // 3]])
    items = [Finding(c1, np.r_[c1 - 6, c1 + 6], 12.0, score=0.93, volume_ml=0.9), Finding(c2, np.r_[c2 - 3, c2 + 3], 6.0, score=0.71)]
    f = Findings(items, image={"name": T1.name, "shape": list(t1.shape), "sha256": sha256_of(str(T1))}, task="brain-lesion", method="log")
    (d / "findings.json").write_text(format_findings(f, "json"))
    return {"t1": T1, "labels": d / "tissue.nii.gz", "stats": d / "tissue_stats.json", "stats_csv": d / "tissue_stats.csv",
            "sidecar": d / "tissue.json", "findings": d / "findings.json", "landmarks": AFIDS, "dir": d, "c1": c1}

"""Run medcli with an extra command registered, to look inside a running command.

The probe command is a real module on disk, registered in COMMANDS exactly as
the commands of medcli are, so it goes through the same declaration, shared
options and batch engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def run_probe(tmp_path: Path, body: str, *args: str, env: dict | None = None, name: str = "probe"):
    """Write ``body`` as module ``medcli_probe_<name>`` and run ``medcli <name> ARGS``."""
    module = f"medcli_probe_{name}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    launcher = (
        "import sys; sys.path.insert(0, sys.argv[1]); from medcli.cli import app; "
        f"app.COMMANDS[{name!r}] = ({module!r}, 'probe'); app.main(sys.argv[2:])"
    )
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "2")
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_ARRAY_TASK_ID", "PBS_ARRAY_INDEX", "SGE_TASK_ID", "LSB_JOBINDEX"):
        e.pop(var, None)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", launcher, str(tmp_path), name, *map(str, args)],
        capture_output=True,
        env=e,
        cwd=tmp_path,
        timeout=300,
    )

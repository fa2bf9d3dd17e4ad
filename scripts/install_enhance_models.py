"""Install trained enhancement models into the package (weights + registry entry).

After ``medcli train recipes/superres.toml`` (or biasfield, denoise), copy
the run's ``model.safetensors`` to ``medcli/models/weights/NAME.safetensors``
and write (or refresh) the ``[models.NAME]`` table of
``medcli/models/registry.toml`` from the run's ``spec.json``, with the new
sha256 and size. Run from the repository root:

    python scripts/install_enhance_models.py superres runs/superres
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "medcli" / "models" / "registry.toml"
WEIGHTS = ROOT / "medcli" / "models" / "weights"


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML here")


def block(name: str, spec: dict, sha: str, size: int) -> str:
    lines = [f"[models.{name}]"]
    for key in ("version", "task", "summary", "architecture", "licence", "citation"):
        lines.append(f"{key} = {toml_value(spec[key])}")
    lines.append(f'card = "cards/{name}.md"')
    for table in ("params", "input"):
        if spec.get(table):
            lines += ["", f"[models.{name}.{table}]"]
            lines += [f"{k} = {toml_value(v)}" for k, v in spec[table].items()]
    # Image-to-image models have no labels; the table is there because every entry has one.
    lines += ["", f"[models.{name}.labels]"] + [f"{k} = {toml_value(v)}" for k, v in (spec.get("labels") or {}).items()]
    lines += ["", f"[[models.{name}.files]]", f'name = "{name}.safetensors"', f'sha256 = "{sha}"', f"size = {size}",
              "bundled = true"]
    return "\n".join(lines) + "\n"


def main(name: str, run: str) -> None:
    run_dir = Path(run)
    spec = json.loads((run_dir / "spec.json").read_text())
    dest = WEIGHTS / f"{name}.safetensors"
    shutil.copyfile(run_dir / "model.safetensors", dest)
    data = dest.read_bytes()
    sha, size = hashlib.sha256(data).hexdigest(), len(data)
    text = REGISTRY.read_text()
    new = block(name, spec, sha, size)
    # Our table runs from its header to the next top-level [models.X] header (or the end).
    pattern = re.compile(rf"^\[models\.{re.escape(name)}\]\n.*?(?=^\[models\.(?!{re.escape(name)}[.\]])|\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda m: new + ("\n" if m.group(0).endswith("\n\n") else ""), text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + new
    REGISTRY.write_text(text)
    print(f"{name}: {dest} sha256 {sha} ({size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

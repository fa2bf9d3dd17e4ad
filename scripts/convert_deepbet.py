"""Convert deepbet's TorchScript weights to medcli safetensors (run once, by maintainers).

deepbet (MIT, Fisch et al. 2024) ships ``model.pt`` (brain mask at 256^3) and
``bbox_model.pt`` (coarse mask at 128^3) as TorchScript. This script loads
each TorchScript file once, copies its parameters into
:class:`medcli.engine.deepbet.DeepBetNet` (``strict=True``), checks that both
give the same output on the bundled MNI152 T1 (max abs diff < 1e-4), and
writes ``medcli/models/weights/deepbet{,_bbox}.safetensors``. medcli itself
never executes TorchScript.

Usage:
    python scripts/convert_deepbet.py [--src DIR] [--out DIR] [--skip-check]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcli.engine.deepbet import DeepBetNet  # noqa: E402

MODELS = {"deepbet": ("model.pt", 256), "deepbet_bbox": ("bbox_model.pt", 128)}


def default_src() -> Path:
    import deepbet.utils

    return Path(deepbet.utils.DATA_PATH) / "models"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def real_input(size: int) -> torch.Tensor:
    """The bundled T1, resampled and normalised exactly as deepbet feeds its models."""
    from medcli import io
    from medcli.segment.brain import deepbet_normalize

    x = torch.from_numpy(io.read("sample:t1").reorient("RAS").data.astype(np.float32))
    x = F.interpolate(x[None, None], (size,) * 3, mode="nearest-exact")[0, 0]
    low, high = x.quantile(0.005), x.quantile(0.995)
    return deepbet_normalize(x, low, high)[None, None]


def convert(src: Path, out: Path, check: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name, (fname, size) in MODELS.items():
        path = src / fname
        scripted = torch.jit.load(str(path), map_location="cpu").eval()
        state = {k: v.detach().clone().contiguous() for k, v in scripted.state_dict().items()}
        net = DeepBetNet().eval()
        net.load_state_dict(state, strict=True)
        if check:
            x = real_input(size)
            with torch.no_grad():
                ref = scripted(x.clone())
                got = net(x.clone())
            diff = float((ref - got).abs().max())
            print(f"{name}: max abs diff vs TorchScript on MNI152 T1 at {size}^3 = {diff:.2e}")
            if not diff < 1e-4:
                raise SystemExit(f"{name}: port differs from TorchScript ({diff:.3g} >= 1e-4)")
        meta = {
            "architecture": "deepbet",
            "source": f"deepbet 1.0.2 data/models/{fname}",
            "source_sha256": sha256(path),
            "license": "MIT (deepbet, Fisch et al. 2024)",
        }
        dest = out / f"{name}.safetensors"
        save_file(state, str(dest), metadata=meta)
        print(f"wrote {dest} sha256={sha256(dest)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=None, help="folder holding model.pt and bbox_model.pt")
    ap.add_argument("--out", type=Path, default=ROOT / "medcli" / "models" / "weights")
    ap.add_argument("--skip-check", action="store_true")
    args = ap.parse_args()
    convert(args.src or default_src(), args.out, check=not args.skip_check)


if __name__ == "__main__":
    main()

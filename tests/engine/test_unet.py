"""The U-Net: shapes in 2D and 3D, slice-wise volumes, size, registry build."""

import pytest

torch = pytest.importorskip("torch")

from medcli.engine.architectures import build  # noqa: E402
from medcli.engine.unet import UNet, pad_multiple  # noqa: E402


@pytest.mark.parametrize("dim,shape", [(2, (2, 1, 32, 24)), (3, (1, 1, 16, 16, 8))])
def test_output_shape_and_logits(dim, shape):
    net = UNet(dim=dim, in_channels=1, out_channels=3, features=(4, 8, 16))
    y = net(torch.randn(*shape))
    assert y.shape == (shape[0], 3) + shape[2:]
    assert torch.isfinite(y).all()


def test_volume_through_a_2d_net_equals_slice_by_slice():
    torch.manual_seed(0)
    net = UNet(dim=2, in_channels=1, out_channels=4, features=(4, 8, 16)).eval()
    x = torch.randn(1, 1, 13, 11, 5)  # sizes not multiples of 4: padded inside
    with torch.no_grad():
        vol = net(x)
        ref = []
        for k in range(5):
            s = torch.nn.functional.pad(x[..., k], (0, 1, 1, 2))  # pad_multiple((13, 11), 4)
            ref.append(net(s)[:, :, 1:14, 0:11])
    assert pad_multiple((13, 11), 4) == [(1, 2), (0, 1)]
    assert torch.allclose(vol, torch.stack(ref, -1), atol=1e-5)


def test_residual_identity_at_init_and_channel_check():
    net = UNet(dim=2, in_channels=1, out_channels=1, features=(4, 8), residual=True)
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)
    x = torch.randn(1, 1, 16, 16)
    assert torch.allclose(net(x), x)
    with pytest.raises(ValueError):
        UNet(dim=2, in_channels=1, out_channels=2, residual=True)


def test_default_is_small_enough_for_cpu():
    net = UNet(dim=3, in_channels=1, out_channels=4)
    mb = net.n_parameters() * 4 / 1e6
    assert 1 < mb < 25  # a few MB of safetensors


def test_registered_as_unet():
    net = build({"architecture": "unet", "params": {"dim": 2, "in_channels": 1, "out_channels": 2, "features": [4, 8]}})
    assert isinstance(net, UNet)

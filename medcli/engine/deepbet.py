"""The deepbet network (LinkNet3d), written from the published TorchScript graph.

deepbet (Fisch et al. 2024, MIT licence) ships two TorchScript files with the
same architecture: a *bbox* model run on a 128^3 resampling of the whole head,
and the main model run on a 256^3 resampling of the brain's bounding box. Both
are LinkNet-style encoder/decoders: a 7^3 stride-2 stem and a max-pool, four
residual stages, four lightweight decoders added to the encoder features, and
two transposed convolutions back to full resolution, ending in a 2-class
softmax. Instance norms have no affine parameters and every ReLU is in place.

Parameter names match the original module tree (``init.0.weight``,
``down1.block1.downsample.0.weight``, ...), so the converted safetensors load
with ``strict=True``. ``scripts/convert_deepbet.py`` checks that this module
reproduces the TorchScript outputs to < 1e-4 on a real T1.

Example:
    >>> import torch
    >>> net = DeepBetNet().eval()
    >>> with torch.no_grad():
    ...     net(torch.zeros(1, 1, 64, 64, 64)).shape
    torch.Size([1, 2, 64, 64, 64])
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.InstanceNorm3d:
    # deepbet's instance norms carry neither affine parameters nor running stats.
    return nn.InstanceNorm3d(channels, affine=False, track_running_stats=False)


class Block(nn.Module):
    """Residual block: conv-norm-relu-conv-norm, plus a 1x1 strided projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv3d(cin, cout, 3, stride, 1, bias=False),
            _norm(cout),
            nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, 1, 1, bias=False),
            _norm(cout),
        )
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, 0, bias=False), _norm(cout))
        else:
            self.downsample = None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        y = self.double_conv(x)
        y += residual  # in place, as the original: one less full-size buffer per block
        return self.act(y)


class Down(nn.Module):
    """An encoder stage: two residual blocks, the first one possibly strided."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.block1 = Block(cin, cout, stride)
        self.block2 = Block(cout, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(x))


class Up(nn.Module):
    """A LinkNet decoder: 1x1 squeeze to cin/4, 3^3 transposed conv (x``stride``), 1x1 expand."""

    def __init__(self, cin: int, cout: int, stride: int = 2):
        super().__init__()
        mid = cin // 4
        self.conv1 = nn.Sequential(nn.Conv3d(cin, mid, 1, 1, 0, bias=False), _norm(mid), nn.ReLU(inplace=True))
        self.tp_conv = nn.Sequential(
            nn.ConvTranspose3d(mid, mid, 3, stride, 1, output_padding=stride - 1, bias=False),
            _norm(mid),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(nn.Conv3d(mid, cout, 1, 1, 0, bias=False), _norm(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.tp_conv(self.conv1(x)))


class DeepBetNet(nn.Module):
    """deepbet's LinkNet3d: 1 input channel, ``n_classes`` softmax outputs.

    Spatial input sizes must be multiples of 32 (the stem, the pool and three
    strided stages each halve the size). deepbet runs it at 128^3 and 256^3.

    Args:
        in_channels: Input channels (1 for deepbet).
        n_classes: Output classes (2: background, brain).
        filters: Channels of the four encoder stages.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, filters: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        f = list(filters)
        self.init = nn.Sequential(
            nn.Conv3d(in_channels, f[0], 7, 2, 3, bias=False), _norm(f[0]), nn.ReLU(inplace=True), nn.MaxPool3d(3, 2, 1)
        )
        self.down0 = Down(f[0], f[0], 1)
        self.down1 = Down(f[0], f[1], 2)
        self.down2 = Down(f[1], f[2], 2)
        self.down3 = Down(f[2], f[3], 2)
        self.up0 = Up(f[3], f[2])
        self.up1 = Up(f[2], f[1])
        self.up2 = Up(f[1], f[0])
        self.up3 = Up(f[0], f[0], stride=1)  # down0 does not downsample
        half = f[0] // 2
        self.tp_conv1 = nn.Sequential(
            nn.ConvTranspose3d(f[0], half, 3, 2, 1, output_padding=1), _norm(half), nn.ReLU(inplace=True)
        )
        self.conv = nn.Sequential(nn.Conv3d(half, half, 3, 1, 1), _norm(half), nn.ReLU(inplace=True))
        self.tp_conv2 = nn.ConvTranspose3d(half, n_classes, 2, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.init(x)
        e1 = self.down0(e0)
        e2 = self.down1(e1)
        e3 = self.down2(e2)
        e4 = self.down3(e3)
        d = self.up0(e4)
        d += e3
        d = self.up1(d)
        d += e2
        d = self.up2(d)
        d += e1
        d = self.up3(d)
        d += e0
        y = self.tp_conv2(self.conv(self.tp_conv1(d)))
        return torch.softmax(y, 1)

"""CenterNet-style dense 3D lesion detector: a centre heatmap and per-voxel box sizes.

A small four-level encoder-decoder (batch normalisation: at inference its
running statistics make it a fixed per-channel affine map, so a training patch
and a whole volume see the same arithmetic) whose full-resolution output has
``1 + 4`` channels:

* channel 0: the centre heatmap logit (a lesion's centre is a peak; trained
  with the penalty-reduced focal loss of CenterNet, Zhou et al. 2019);
* channels 1-3: log box size along each voxel axis, ``log(size_mm / 10)``;
* channel 4: log equivalent diameter, ``log(diameter_mm / 10)``.

The input has two channels: the image (normalised to the search mask's robust
range, see :func:`medcli.detect.log.normalise`) and the search mask.

References:
    Zhou X., Wang D., Kraehenbuehl P. Objects as Points. arXiv:1904.07850 (2019).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Prior probability of a centre at a voxel (sets the heatmap bias at initialisation, as CenterNet).
PRIOR = 0.01


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(cout),
                         nn.LeakyReLU(0.1, inplace=True))


class CenterNet3D(nn.Module):
    """Encoder-decoder with skips; the output is on the input grid (see the module docstring).

    Args:
        in_channels: Image + mask.
        widths: Channels per level (full resolution, /2, /4, /8).
        head: Channels of the full-resolution head.
        out_channels: Heatmap + 3 box sizes + diameter.
    """

    def __init__(self, in_channels: int = 2, widths: tuple[int, ...] = (8, 16, 32, 64), head: int = 16, out_channels: int = 5):
        super().__init__()
        w = list(widths)
        self.stem = _conv(in_channels, w[0])
        self.down = nn.ModuleList([nn.Sequential(_conv(w[i], w[i + 1], 2), _conv(w[i + 1], w[i + 1])) for i in range(len(w) - 1)])
        self.bottom = _conv(w[-1], w[-1])
        # Decoder from the bottom up to level 1 (stride 2); level 0 is the head.
        self.up = nn.ModuleList([_conv(w[i + 1] + w[i], w[i]) for i in range(len(w) - 2, 0, -1)])
        # Full resolution costs most: one 3x3x3 layer in, 1x1 layers out (the /2 features carry the context).
        self.head = nn.Sequential(nn.Conv3d(w[1] + w[0], head, 1), nn.LeakyReLU(0.1, inplace=True), nn.Conv3d(head, out_channels, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        last = self.head[-1]
        nn.init.normal_(last.weight, std=0.01)
        with torch.no_grad():
            last.bias.zero_()
            last.bias[0] = -float(torch.log(torch.tensor((1 - PRIOR) / PRIOR)))
        self.levels = len(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for d in self.down:
            skips.append(d(skips[-1]))
        y = self.bottom(skips[-1])
        for i, up in enumerate(self.up):
            skip = skips[-2 - i]
            y = up(torch.cat([F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=False), skip], 1))
        y = F.interpolate(y, size=skips[0].shape[2:], mode="trilinear", align_corners=False)
        return self.head(torch.cat([y, skips[0]], 1))

"""A configurable 2D/3D U-Net, small enough to train and run on a laptop CPU.

The network every medcli-trained model uses (architecture ``"unet"`` in
:mod:`medcli.engine.architectures`). It follows the nnU-Net recipe at a
smaller scale: two 3x3(x3) convolutions per level, instance normalisation,
leaky ReLU, strided-convolution downsampling and transposed-convolution
upsampling, and a 1x1 head that outputs logits (segmentation) or values
(regression). Input sizes must be multiples of ``2 ** (len(features) - 1)``;
:func:`pad_multiple` says by how much to pad.

Example:
    >>> import torch
    >>> net = UNet(dim=2, in_channels=1, out_channels=4, features=(8, 16, 32))
    >>> net(torch.zeros(1, 1, 64, 48)).shape
    torch.Size([1, 4, 64, 48])
    >>> round(net.n_parameters() / 1e3)
    30
    >>> net(torch.zeros(1, 1, 30, 20, 5)).shape  # a volume, slice by slice
    torch.Size([1, 4, 30, 20, 5])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _conv(dim: int):
    return nn.Conv2d if dim == 2 else nn.Conv3d


def _norm(kind: str, dim: int, channels: int) -> nn.Module:
    if kind == "instance":
        return (nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d)(channels, affine=True)
    if kind == "batch":
        return (nn.BatchNorm2d if dim == 2 else nn.BatchNorm3d)(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind in ("none", None):
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} (instance, batch, group or none)")


class ConvBlock(nn.Module):
    """conv-norm-act twice; the first convolution may downsample (stride 2)."""

    def __init__(self, dim: int, cin: int, cout: int, norm: str, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        conv = _conv(dim)
        layers: list[nn.Module] = [
            conv(cin, cout, 3, stride=stride, padding=1, bias=norm in ("none", None)),
            _norm(norm, dim, cout),
            nn.LeakyReLU(0.01, inplace=True),
        ]
        if dropout:
            layers.append((nn.Dropout2d if dim == 2 else nn.Dropout3d)(dropout))
        layers += [
            conv(cout, cout, 3, padding=1, bias=norm in ("none", None)),
            _norm(norm, dim, cout),
            nn.LeakyReLU(0.01, inplace=True),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UNet(nn.Module):
    """U-Net with ``len(features)`` resolution levels.

    Args:
        dim: 2 for slices, 3 for volumes.
        in_channels: Input channels (e.g. 1 image, or 3 adjacent slices for 2.5D).
        out_channels: Output channels (classes for segmentation, 1 for regression).
        features: Channels per level, finest first; each level halves the size.
        norm: ``instance`` (default, batch-size independent), ``batch``, ``group`` or ``none``.
        dropout: Channel dropout inside the deepest block (0 disables).
        residual: Add the input to the output (image-to-image models that
            predict a correction, e.g. denoising); needs in == out channels.
        slice_axis: For a 2D network given a volume (N, C, X, Y, Z): the
            spatial axis it is sliced along (2 = Z, axial slices in RAS).
    """

    def __init__(
        self,
        dim: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (16, 32, 64, 128),
        norm: str = "instance",
        dropout: float = 0.0,
        residual: bool = False,
        slice_axis: int = 2,
    ):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        if residual and in_channels != out_channels:
            raise ValueError("residual=True needs in_channels == out_channels")
        features = [int(f) for f in features]
        self.dim, self.residual, self.levels, self.slice_axis = dim, residual, len(features), int(slice_axis)
        conv = _conv(dim)
        up = nn.ConvTranspose2d if dim == 2 else nn.ConvTranspose3d
        self.down = nn.ModuleList()
        cin = in_channels
        for i, f in enumerate(features):
            last = i == len(features) - 1
            self.down.append(ConvBlock(dim, cin, f, norm, stride=1 if i == 0 else 2, dropout=dropout if last else 0.0))
            cin = f
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i in range(len(features) - 1, 0, -1):
            self.up.append(up(features[i], features[i - 1], 2, stride=2))
            self.merge.append(ConvBlock(dim, 2 * features[i - 1], features[i - 1], norm))
        self.head = conv(features[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dim == 2 and x.ndim == 5:
            return self.forward_slices(x)
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()
        for up, merge in zip(self.up, self.merge):
            h = merge(torch.cat([up(h), skips.pop()], dim=1))
        out = self.head(h)
        return out + x if self.residual else out

    def forward_slices(self, x: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """A 2D network on a volume (N, C, X, Y, Z): every slice along ``slice_axis``, any size.

        Lets the 3D inference engine run slice models unchanged: its patches go
        through here, are cut into slices, padded to :attr:`multiple` and restacked.
        """
        axis = 2 + self.slice_axis
        v = x.movedim(axis, 2)  # (N, C, S, A, B)
        n, c, s, a, b = v.shape
        flat = v.movedim(2, 1).reshape(n * s, c, a, b)
        (pa0, pa1), (pb0, pb1) = pad_multiple((a, b), self.multiple)
        flat = torch.nn.functional.pad(flat, (pb0, pb1, pa0, pa1))
        outs = [self.forward(flat[i : i + chunk]) for i in range(0, flat.shape[0], chunk)]
        out = torch.cat(outs)[:, :, pa0 : pa0 + a, pb0 : pb0 + b]
        out = out.reshape(n, s, -1, a, b).movedim(1, 2)  # (N, Cout, S, A, B)
        return out.movedim(2, axis)

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this."""
        return 2 ** (self.levels - 1)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def pad_multiple(shape: Sequence[int], multiple: int) -> list[tuple[int, int]]:
    """Symmetric (before, after) padding that makes every size a multiple.

    Example:
        >>> pad_multiple((182, 218), 8)
        [(1, 1), (3, 3)]
    """
    out = []
    for s in shape:
        extra = (-int(s)) % multiple
        out.append((extra // 2, extra - extra // 2))
    return out

"""The HD-BET network (Isensee et al. 2019, Apache-2.0), with its published parameter names.

HD-BET is a 3D U-Net in the style of Isensee et al.'s BraTS 2017 network:
pre-activation residual *context* modules (instance norm -> leaky ReLU ->
conv, twice, plus the input), strided-conv downsampling, trilinear
upsampling followed by a conv, and *localization* modules after each skip
concatenation. The five released folds are pickled PyTorch state dicts;
:func:`convert_hdbet_state` reads one with ``torch.load(weights_only=True)``
(run once by the model hub, which then stores safetensors).

Two quirks of the original are kept on purpose so that outputs match:

* the leaky ReLU slope is 0.01 inside the modules but ``leakiness`` (0.1 in
  HD-BET's config) for the three activations of the network body;
* instance norms were saved with running statistics but HD-BET's inference
  (``SetNetworkToVal(False, False)``) keeps them in training mode, so each
  volume is normalised by its own statistics: the running buffers are
  dropped at conversion and medcli's norms do not track them.

Example:
    >>> import torch
    >>> net = HDBetNet().eval()
    >>> with torch.no_grad():
    ...     net(torch.zeros(1, 1, 32, 32, 32)).shape
    torch.Size([1, 2, 32, 32, 32])
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

#: Slope of the leaky ReLUs inside HD-BET's modules (hard-coded there). Every activation
#: is applied in place to a fresh normalisation output, as in the original: less memory traffic.
MODULE_SLOPE = 1e-2


def _norm(channels: int, affine: bool = True) -> nn.InstanceNorm3d:
    return nn.InstanceNorm3d(channels, affine=affine, track_running_stats=False)


class EncodingModule(nn.Module):
    """Pre-activation residual block: (norm, lrelu, conv) x2 + input."""

    def __init__(self, cin: int, cout: int, dropout_p: float = 0.0, conv_bias: bool = True, norm_affine: bool = True):
        super().__init__()
        self.bn_1 = _norm(cin, norm_affine)
        self.conv1 = nn.Conv3d(cin, cout, 3, 1, 1, bias=conv_bias)
        self.dropout = nn.Dropout3d(dropout_p)
        self.bn_2 = _norm(cin, norm_affine)  # sized by cin in the original; cin == cout everywhere
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=conv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.leaky_relu(self.bn_1(x), MODULE_SLOPE, inplace=True))
        y = self.dropout(y)
        y = self.conv2(F.leaky_relu(self.bn_2(y), MODULE_SLOPE, inplace=True))
        return y + x


class DownsamplingModule(nn.Module):
    """norm + lrelu (kept as the skip connection), then a stride-2 3^3 conv."""

    def __init__(self, cin: int, cout: int, conv_bias: bool = True, norm_affine: bool = True):
        super().__init__()
        self.bn = _norm(cin, norm_affine)
        self.downsample = nn.Conv3d(cin, cout, 3, 2, 1, bias=conv_bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = F.leaky_relu(self.bn(x), MODULE_SLOPE, inplace=True)
        return skip, self.downsample(skip)


class UpsamplingModule(nn.Module):
    """Trilinear x2 (align_corners), 3^3 conv, norm, lrelu."""

    def __init__(self, cin: int, cout: int, conv_bias: bool = True, norm_affine: bool = True):
        super().__init__()
        self.upsample_conv = nn.Conv3d(cin, cout, 3, 1, 1, bias=conv_bias)
        self.bn = _norm(cout, norm_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=True)
        return F.leaky_relu(self.bn(self.upsample_conv(x)), MODULE_SLOPE, inplace=True)


class LocalizationModule(nn.Module):
    """3^3 conv + norm + lrelu, then 1x1 conv + norm + lrelu halving the channels."""

    def __init__(self, cin: int, cout: int, conv_bias: bool = True, norm_affine: bool = True):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cin, 3, 1, 1, bias=conv_bias)
        self.bn_1 = _norm(cin, norm_affine)
        self.conv2 = nn.Conv3d(cin, cout, 1, 1, 0, bias=conv_bias)
        self.bn_2 = _norm(cout, norm_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.bn_1(self.conv1(x)), MODULE_SLOPE, inplace=True)
        return F.leaky_relu(self.bn_2(self.conv2(x)), MODULE_SLOPE, inplace=True)


class HDBetNet(nn.Module):
    """HD-BET's U-Net: 5 resolution levels, ``base_filters`` * (1, 2, 4, 8, 16) channels.

    Spatial input sizes must be multiples of 16. Returns softmax probabilities
    (with ``do_ds``, the list of full-, 1/2- and 1/4-resolution outputs, as in training).

    Args:
        num_classes: Output classes (2: background, brain).
        num_input_channels: Input channels (1: HD-BET takes one sequence).
        base_filters: Channels at full resolution (21 in HD-BET).
        dropout_p: Dropout in the context modules (0 in HD-BET).
        leakiness: Slope of the body's three leaky ReLUs (0.1 in HD-BET).
        conv_bias: Convolutions have biases.
        norm_affine: Instance norms have affine parameters.
        do_ds: Return the deep-supervision outputs too.
    """

    def __init__(
        self,
        num_classes: int = 2,
        num_input_channels: int = 1,
        base_filters: int = 21,
        dropout_p: float = 0.0,
        leakiness: float = 0.1,
        conv_bias: bool = True,
        norm_affine: bool = True,
        do_ds: bool = False,
    ):
        super().__init__()
        b = base_filters
        kw = {"conv_bias": conv_bias, "norm_affine": norm_affine}
        self.leakiness = leakiness
        self.do_ds = do_ds
        self.init_conv = nn.Conv3d(num_input_channels, b, 3, 1, 1, bias=conv_bias)
        self.context1 = EncodingModule(b, b, dropout_p, **kw)
        self.down1 = DownsamplingModule(b, 2 * b, **kw)
        self.context2 = EncodingModule(2 * b, 2 * b, dropout_p, **kw)
        self.down2 = DownsamplingModule(2 * b, 4 * b, **kw)
        self.context3 = EncodingModule(4 * b, 4 * b, dropout_p, **kw)
        self.down3 = DownsamplingModule(4 * b, 8 * b, **kw)
        self.context4 = EncodingModule(8 * b, 8 * b, dropout_p, **kw)
        self.down4 = DownsamplingModule(8 * b, 16 * b, **kw)
        self.context5 = EncodingModule(16 * b, 16 * b, dropout_p, **kw)
        self.bn_after_context5 = _norm(16 * b, norm_affine)
        self.up1 = UpsamplingModule(16 * b, 8 * b, **kw)
        self.loc1 = LocalizationModule(16 * b, 8 * b, **kw)
        self.up2 = UpsamplingModule(8 * b, 4 * b, **kw)
        self.loc2 = LocalizationModule(8 * b, 4 * b, **kw)
        self.loc2_seg = nn.Conv3d(4 * b, num_classes, 1, 1, 0, bias=False)
        self.up3 = UpsamplingModule(4 * b, 2 * b, **kw)
        self.loc3 = LocalizationModule(4 * b, 2 * b, **kw)
        self.loc3_seg = nn.Conv3d(2 * b, num_classes, 1, 1, 0, bias=False)
        self.up4 = UpsamplingModule(2 * b, b, **kw)
        self.end_conv_1 = nn.Conv3d(2 * b, 2 * b, 3, 1, 1, bias=conv_bias)
        self.end_conv_1_bn = _norm(2 * b, norm_affine)
        self.end_conv_2 = nn.Conv3d(2 * b, 2 * b, 3, 1, 1, bias=conv_bias)
        self.end_conv_2_bn = _norm(2 * b, norm_affine)
        self.seg_layer = nn.Conv3d(2 * b, num_classes, 1, 1, 0, bias=False)

    def forward(self, x: torch.Tensor):
        x = self.context1(self.init_conv(x))
        skip1, x = self.down1(x)
        x = self.context2(x)
        skip2, x = self.down2(x)
        x = self.context3(x)
        skip3, x = self.down3(x)
        x = self.context4(x)
        skip4, x = self.down4(x)
        x = self.context5(x)
        x = self.up1(F.leaky_relu(self.bn_after_context5(x), self.leakiness, inplace=True))
        x = self.up2(self.loc1(torch.cat((skip4, x), 1)))
        x = self.loc2(torch.cat((skip3, x), 1))
        ds = [self.loc2_seg(x)] if self.do_ds else []
        x = self.loc3(torch.cat((skip2, self.up3(x)), 1))
        if self.do_ds:
            ds.append(self.loc3_seg(x))
        x = torch.cat((skip1, self.up4(x)), 1)
        x = F.leaky_relu(self.end_conv_1_bn(self.end_conv_1(x)), self.leakiness, inplace=True)
        x = F.leaky_relu(self.end_conv_2_bn(self.end_conv_2(x)), self.leakiness, inplace=True)
        out = torch.softmax(self.seg_layer(x), 1)
        if self.do_ds:
            return [out] + [torch.softmax(d, 1) for d in reversed(ds)]
        return out


def convert_hdbet_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read one of HD-BET's pickled fold files (``0.model`` ... ``4.model``) as a medcli state dict.

    Uses ``torch.load(weights_only=True)`` (no code runs from the pickle) and
    drops the instance norms' running statistics, which HD-BET never uses.

    Example:
        >>> state = convert_hdbet_state("0.model")  # doctest: +SKIP
        >>> HDBetNet().load_state_dict(state)  # doctest: +SKIP
        <All keys matched successfully>
    """
    raw = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if isinstance(raw, dict) and "state_dict" in raw:
        raw = raw["state_dict"]
    return {
        k: v.detach().float().contiguous()
        for k, v in raw.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }

"""Selective Kernel convolution.

Paper: `Selective Kernel Networks` - Li, Wang, Hu, Yang (arXiv:1903.06586)

    Split:  U_m = ReLU(BN(conv_m(x))),  m = 1..M     path m: 3x3 dilation m (or a dense (2m+1)x(2m+1) kernel)
    Fuse:   s = GAP(sum_m U_m),  z = ReLU(BN(W_r s)),  W_r: d x C,  d = max(C / r, L)
    Select: a = softmax over m of (W_s z reshaped M x C),  V = sum_m a_m · U_m
"""
from typing import Callable, List, Optional, Tuple

import torch
from timm.layers import create_act_layer
from torch import nn

from .conv_bn_act import ConvBnAct

__all__ = ['SelectiveKernel', 'SelectiveKernelAttn', 'sk_attn_channels', 'sk_path_kernels']


def sk_attn_channels(channels: int, reduction: int = 16, min_channels: int = 32) -> int:
    """Width d of the fuse layer: ``max(channels / reduction, min_channels)``, the paper's ``max(C/r, L)``."""
    return max(channels // reduction, min_channels)


def sk_path_kernels(num_paths: int, dilation: int = 1, keep_3x3: bool = True) -> List[Tuple[int, int]]:
    """``(kernel_size, dilation)`` of each path; path i covers a (2i+3)x(2i+3) window at unit module dilation."""
    if keep_3x3:
        return [(3, dilation * (i + 1)) for i in range(num_paths)]
    return [(2 * i + 3, dilation) for i in range(num_paths)]


class SelectiveKernelAttn(nn.Module):
    """Fuse and select: per-channel softmax weights over the paths, ``B x M x C``."""

    def __init__(
            self,
            channels: int,
            num_paths: int = 2,
            attn_channels: int = 32,
            act_layer: Callable[..., nn.Module] = nn.ReLU,
            norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
            device: Optional[torch.device] = None,
            dtype: Optional[torch.dtype] = None,
    ):
        """
        Args:
            channels: Channels C of each path.
            num_paths: Number of paths M.
            attn_channels: Width d of the fuse layer.
            act_layer: Activation after the fuse norm.
            norm_layer: Norm layer of the fuse FC. It is the block's 2d norm, applied to ``B x d x 1 x 1``, so that
                norm conversions such as timm's ``freeze_batch_norm_2d`` reach it too.
            device: Parameter device.
            dtype: Parameter dtype.
        """
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.num_paths = num_paths
        self.channels = channels
        self.fc_reduce = nn.Linear(channels, attn_channels, bias=False, **dd)
        self.bn = norm_layer(attn_channels, **dd)
        self.act = create_act_layer(act_layer, inplace=True)
        self.fc_select = nn.Linear(attn_channels, channels * num_paths, bias=False, **dd)

    def logits(self, paths: List[torch.Tensor]) -> torch.Tensor:
        """Select logits ``B x M x C`` from the path outputs."""
        s = paths[0].mean(dim=(2, 3))
        for u in paths[1:]:
            s = s + u.mean(dim=(2, 3))  # GAP of the sum is the sum of the GAPs; no B x C x H x W sum is formed
        z = self.bn(self.fc_reduce(s)[:, :, None, None]).flatten(1)
        z = self.act(z)
        return self.fc_select(z).view(-1, self.num_paths, self.channels)

    def forward(self, paths: List[torch.Tensor]) -> torch.Tensor:
        return torch.softmax(self.logits(paths), dim=1)


class SelectiveKernel(nn.Module):
    """Selective Kernel convolution: M conv paths whose outputs are mixed by per-channel attention."""

    def __init__(
            self,
            in_channels: int,
            out_channels: Optional[int] = None,
            num_paths: int = 2,
            groups: int = 32,
            stride: int = 1,
            dilation: int = 1,
            reduction: int = 16,
            min_attn_channels: int = 32,
            attn_channels: Optional[int] = None,
            keep_3x3: bool = True,
            split_input: bool = False,
            act_layer: Callable[..., nn.Module] = nn.ReLU,
            norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
            aa_layer: Optional[Callable[..., nn.Module]] = None,
            drop_layer: Optional[Callable[[], nn.Module]] = None,
            device: Optional[torch.device] = None,
            dtype: Optional[torch.dtype] = None,
    ):
        """
        Args:
            in_channels: Input channels.
            out_channels: Output channels C of every path and of the unit (default: ``in_channels``).
            num_paths: Number of paths M (at least 2).
            groups: Groups G of each path's convolution.
            stride: Stride of every path.
            dilation: Module dilation, multiplying each path's own dilation (for output strides 8 and 16).
            reduction: Reduction ratio r of the fuse layer.
            min_attn_channels: Minimum width L of the fuse layer.
            attn_channels: Explicit fuse width d, overriding ``reduction`` and ``min_attn_channels``.
            keep_3x3: Path i is a 3x3 conv with dilation i+1 (paper's choice); otherwise a dense (2i+3)x(2i+3) kernel.
            split_input: Feed each path an equal slice of the input channels (timm's basic-block SK variant)
                instead of the whole input.
            act_layer: Activation of the paths and of the fuse layer.
            norm_layer: Norm layer of the paths and of the fuse layer.
            aa_layer: Optional anti-aliasing for strided paths.
            drop_layer: Optional DropBlock factory applied in each path.
            device: Parameter device.
            dtype: Parameter dtype.
        """
        super().__init__()
        out_channels = out_channels or in_channels
        if num_paths < 2:
            raise ValueError(f'a selective kernel needs at least 2 paths to select from, got num_paths={num_paths}')
        if split_input and in_channels % num_paths:
            raise ValueError(
                f'split_input divides the {in_channels} input channels across {num_paths} paths; '
                f'use a channel count divisible by {num_paths} or split_input=False')
        path_in = in_channels // num_paths if split_input else in_channels
        if path_in % groups or out_channels % groups:
            raise ValueError(
                f'groups={groups} must divide the path input ({path_in}) and output ({out_channels}) channels')
        dd = {'device': device, 'dtype': dtype}
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_paths = num_paths
        self.split_input = split_input
        self.paths = nn.ModuleList([
            ConvBnAct(
                path_in, out_channels, kernel_size=k, stride=stride, dilation=d, groups=groups,
                act_layer=act_layer, norm_layer=norm_layer, aa_layer=aa_layer, drop_layer=drop_layer, **dd)
            for k, d in sk_path_kernels(num_paths, dilation, keep_3x3)
        ])
        self.attn = SelectiveKernelAttn(
            out_channels,
            num_paths,
            attn_channels or sk_attn_channels(out_channels, reduction, min_attn_channels),
            act_layer=act_layer,
            norm_layer=norm_layer,
            **dd,
        )

    def split(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Path outputs U_1..U_M."""
        if self.split_input:
            chunks = torch.split(x, self.in_channels // self.num_paths, dim=1)
            return [path(chunks[i]) for i, path in enumerate(self.paths)]
        return [path(x) for path in self.paths]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paths = self.split(x)
        weights = self.attn(paths)
        out = paths[0] * weights[:, 0, :, None, None]
        for i in range(1, self.num_paths):
            out = out + paths[i] * weights[:, i, :, None, None]
        return out

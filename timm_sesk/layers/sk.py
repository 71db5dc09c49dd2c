"""Selective Kernel convolution.

Paper: `Selective Kernel Networks` - Li, Wang, Hu, Yang (arXiv:1903.06586)

    Split:  U_m = ReLU(BN(conv_m(x))),  m = 1..M     path m: 3x3 dilation m (or a dense (2m+1)x(2m+1) kernel)
    Fuse:   s = GAP(sum_m U_m),  z = ReLU(BN(W_r s)),  W_r: d x C,  d = max(C / r, L)
    Select: a = softmax over m of (W_s z reshaped M x C),  V = sum_m a_m · U_m

How it is computed:
* Every submodule (each path, its conv and norm, the attention and its layers) is called as a module, in eval and in
  training, so forward hooks and torch.fx see what they see in timm's ``SelectiveKernel``.
* No ``B x M x C x H x W`` stack is formed: s is the sum of the paths' GAPs, and for M = 2 the weighted sum
  V = U_2 + a_1 (U_1 - U_2) is one ``lerp``, which keeps the memory layout (channels_last stays channels_last).
* Exports (``timm_sesk.deploy.export``) compute the same function in another form, the graph ONNX Runtime and
  OpenVINO run fastest (``sk_export.SelectiveKernelExport``); the model itself keeps this one.
* On request (``memory_efficient=True``), in training everything after the paths' convolutions (their norms and
  activations, the attention and the select) is checkpointed: only the convolution outputs are kept for backward and
  the rest is recomputed, which saves two activations per unit for a few elementwise passes. Norms do not update
  their statistics again in the recomputation, but hooks on the recomputed activations and attention fire again, as
  with timm's gradient checkpointing.

The fuse norm normalises a ``B x d`` vector, one value per sample and channel, so a training-mode BatchNorm there
needs a batch of at least 2 (see ``SelectiveKernel`` and ``freeze_sk_attn_norm``).
"""
import contextlib
from typing import Callable, List, Optional, Tuple

import torch
from timm.layers import create_act_layer, freeze_batch_norm_2d
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._tracing import is_tracing
from .conv_bn_act import (
    ConvBnAct,
    check_batch_norm_input,
    factory_kwargs,
    is_plain_batchnorm,
    norm_forward,
    recomputing,
)
from .tap import AttentionTap

__all__ = [
    'SelectiveKernel',
    'SelectiveKernelAttn',
    'freeze_sk_attn_norm',
    'path_inputs',
    'sk_attn_channels',
    'sk_path_kernels',
    'weighted_sum',
]


def sk_attn_channels(channels: int, reduction: int = 16, min_channels: int = 32) -> int:
    """Width d of the fuse layer: ``max(channels / reduction, min_channels)``, the paper's ``max(C/r, L)``."""
    return max(channels // reduction, min_channels)


def sk_path_kernels(num_paths: int, dilation: int = 1, keep_3x3: bool = True) -> List[Tuple[int, int]]:
    """``(kernel_size, dilation)`` of each path; path i covers a (2i+3)x(2i+3) window at unit module dilation."""
    if keep_3x3:
        return [(3, dilation * (i + 1)) for i in range(num_paths)]
    return [(2 * i + 3, dilation) for i in range(num_paths)]


def path_inputs(x: torch.Tensor, num_paths: int, split_channels: int = 0) -> List[torch.Tensor]:
    """The input of each path: consecutive slices of ``split_channels`` channels, or (0) ``x`` itself for every path.

    The slice width is a Python int, not read from ``x``'s shape, so that torch.fx can trace the split.
    """
    if split_channels:
        return torch.split(x, split_channels, dim=1)
    return [x] * num_paths


def weighted_sum(paths: List[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_m weights[:, m] * paths[m]``, without a stacked ``B x M x C x H x W`` tensor."""
    out = paths[0] * weights[:, 0]
    for i in range(1, len(paths)):
        out = out + paths[i] * weights[:, i]
    return out


_BATCH_OF_ONE = (
    'SelectiveKernel attention normalises its fuse vector (one value per sample and channel) with a BatchNorm, which '
    'in training needs more than one sample per batch; got a batch of 1. Train with a batch size of at least 2, or '
    'freeze the norms as detectors do: timm.layers.freeze_batch_norm_2d(model) (every BatchNorm uses its running '
    'statistics), or timm_sesk.layers.freeze_sk_attn_norm(model) (only the SK attention norms; the others keep '
    'training).')


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
        dd = factory_kwargs(device, dtype)
        self.num_paths = num_paths
        self.channels = channels
        self.fc_reduce = nn.Linear(channels, attn_channels, bias=False, **dd)
        self.bn = norm_layer(attn_channels, **dd)
        self.act = create_act_layer(act_layer, inplace=True)
        self.fc_select = nn.Linear(attn_channels, channels * num_paths, bias=False, **dd)

        self.tap = AttentionTap()

    def logits(self, paths: List[torch.Tensor]) -> torch.Tensor:
        """Select logits ``B x M x C`` from the path outputs."""
        s = paths[0].mean(dim=(2, 3))
        for u in paths[1:]:
            s = s + u.mean(dim=(2, 3))  # GAP of the sum is the sum of the GAPs; no B x C x H x W sum is formed
        z = self.act(self._norm(self.fc_reduce(s)[:, :, None, None]).flatten(1))
        return self.fc_select(z).view(-1, self.num_paths, self.channels)

    def _norm(self, z: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            check_batch_norm_input(self.bn, z, _BATCH_OF_ONE)  # z is B x d x 1 x 1: one value per sample
            return norm_forward(self.bn, z)
        return self.bn(z)

    def forward(self, paths: List[torch.Tensor]) -> torch.Tensor:
        """Selection weights ``B x M x C``, softmax over the paths, as applied."""
        return self.tap(torch.softmax(self.logits(paths), dim=1))


def freeze_sk_attn_norm(model: nn.Module) -> nn.Module:
    """Freeze the fuse BatchNorm of every Selective Kernel attention in ``model``, for training with batch size 1.

    Each becomes a ``FrozenBatchNorm2d`` (torchvision's, as timm's ``freeze_batch_norm_2d`` makes) with the same
    weight, bias and running statistics: in training too it computes what the BatchNorm computes in eval mode, so eval
    outputs do not change, and it is no longer trained. Every other norm is left alone; to freeze them all, use
    ``timm.layers.freeze_batch_norm_2d(model)``.

    Args:
        model: A model, backbone or single unit holding ``SelectiveKernelAttn`` modules.

    Returns:
        ``model``, changed in place.
    """
    for attn in [m for m in model.modules() if isinstance(m, SelectiveKernelAttn)]:
        attn.bn = freeze_batch_norm_2d(attn.bn)
    return model


class SelectiveKernel(nn.Module):
    """Selective Kernel convolution: M conv paths whose outputs are mixed by per-channel attention.

    Batch size 1 in training: the fuse BatchNorm (``attn.bn``) sees one value per sample and channel, so in training
    it needs at least 2 samples per batch; with one, the unit raises a ``ValueError`` that says so. To train or
    fine-tune with batch size 1, freeze that norm with ``freeze_sk_attn_norm(model)`` (the path norms keep training),
    or every norm with ``timm.layers.freeze_batch_norm_2d(model)`` as detectors do; a BatchNorm put in eval mode
    inside a training model uses its running statistics too. The path norms normalise over the spatial positions as
    well, so they need batch size 1 only to stop at a 1x1 feature map; there they raise a ``ValueError`` too. In
    eval mode any batch size works.
    """

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
            memory_efficient: bool = False,
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
            memory_efficient: In training, keep only the paths' convolution outputs for backward and recompute the
                rest (two activations less per unit, a few elementwise passes more; hooks on the recomputed
                modules fire again in backward).
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
        dd = factory_kwargs(device, dtype)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_paths = num_paths
        self.split_input = split_input
        self.split_channels = path_in if split_input else 0
        self.paths = nn.ModuleList([
            ConvBnAct(
                path_in, out_channels, kernel_size=k, stride=stride, dilation=d, groups=groups,
                act_layer=act_layer, norm_layer=norm_layer, aa_layer=aa_layer, drop_layer=drop_layer, **dd)
            for k, d in sk_path_kernels(num_paths, dilation, keep_3x3)
        ])
        self.memory_efficient = memory_efficient
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
        inputs = path_inputs(x, self.num_paths, self.split_channels)
        return [path(inputs[i]) for i, path in enumerate(self.paths)]

    def select(self, paths: List[torch.Tensor]) -> torch.Tensor:
        """Fuse and select: V = sum_m a_m · U_m."""
        weights = self.attn(paths)[:, :, :, None, None]
        if self.num_paths == 2:
            return torch.lerp(paths[1], paths[0], weights[:, 0])  # U_2 + a_1 (U_1 - U_2), one pass
        return weighted_sum(paths, weights)

    def _select_after_convs(self, *convs: torch.Tensor) -> torch.Tensor:
        return self.select([path.after_conv(c) for path, c in zip(self.paths, convs)])

    def _checkpointable(self) -> bool:
        return (self.memory_efficient and self.training and torch.is_grad_enabled()
                and not is_tracing()
                and all(is_plain_batchnorm(p.bn) for p in self.paths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # noqa: SIM102 - TorchScript only skips compiling a bare is_scripting() test
            if self._checkpointable():
                return self._forward_checkpointed(x)
        return self.select(self.split(x))

    @torch.jit.unused
    def _forward_checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        inputs = path_inputs(x, self.num_paths, self.split_channels)
        convs = [path.conv(inputs[i]) for i, path in enumerate(self.paths)]
        return checkpoint(
            self._select_after_convs, *convs, use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), recomputing()))

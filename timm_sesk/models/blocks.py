"""Residual blocks with Squeeze-and-Excitation and Selective-Kernel options.

Both blocks take timm's ResNet block signature, so timm's ``ResNet`` trunk builds its stages from them. On top of it:

* ``attn_layer`` / ``attn_position``: where the SE unit sits, after the SENet paper's integration study (Fig. 5):
  ``'standard'`` after the last norm before the addition, ``'pre'`` on the residual branch's input, ``'post'`` after
  the addition and its ReLU, ``'identity'`` on the identity path.
* ``sk_layer``: a Selective Kernel unit replacing the spatial 3x3 convolution (SKNet paper, Table 1).
* ``stride_in_1x1``: stride on the bottleneck's first 1x1 conv instead of the 3x3, as in the Caffe ResNets the SENet
  authors built on.
* ``branch_act``: an activation on the residual branch's output, before SE and the addition. Cadene's port of the
  SENet basic block has it, and so do the weights timm trained on that block (``legacy_seresnet18/34``).
"""
import math
from typing import Callable, Optional, Type

import torch
from timm.layers import create_attn
from torch import nn

from timm_sesk.layers import ConvBnAct, factory_kwargs

__all__ = ['SE_POSITIONS', 'BasicBlock', 'Bottleneck']

SE_POSITIONS = ('standard', 'pre', 'post', 'identity')


class _ResidualBlock(nn.Module):
    """Shared SE placement and residual merge of the two block types."""

    def _init_residual(
            self,
            inplanes: int,
            outplanes: int,
            attn_layer: Optional[Callable[..., nn.Module]],
            attn_position: str,
            downsample: Optional[nn.Module],
            drop_path: Optional[nn.Module],
            act_layer: Type[nn.Module],
            dd: dict,
    ) -> None:
        if attn_position not in SE_POSITIONS:
            raise ValueError(f'attn_position must be one of {SE_POSITIONS}, got {attn_position!r}')
        self.attn_position = attn_position
        self.se = create_attn(attn_layer, inplanes if attn_position == 'pre' else outplanes, **dd)
        self.downsample = downsample
        self.drop_path = drop_path
        self.act = act_layer(inplace=True)

    def _branch_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.se is not None and self.attn_position == 'pre':
            x = self.se(x)
        return x

    def _merge(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if self.se is not None and self.attn_position == 'standard':
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        if self.se is not None and self.attn_position == 'identity':
            shortcut = self.se(shortcut)
        x += shortcut
        x = self.act(x)
        if self.se is not None and self.attn_position == 'post':
            x = self.se(x)
        return x


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34); with ``sk_layer`` the first is a Selective Kernel unit."""

    expansion = 1

    def __init__(
            self,
            inplanes: int,
            planes: int,
            stride: int = 1,
            downsample: Optional[nn.Module] = None,
            cardinality: int = 1,
            base_width: int = 64,
            reduce_first: int = 1,
            dilation: int = 1,
            first_dilation: Optional[int] = None,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
            attn_layer: Optional[Callable[..., nn.Module]] = None,
            aa_layer: Optional[Type[nn.Module]] = None,
            drop_block: Optional[Callable[[], nn.Module]] = None,
            drop_path: Optional[nn.Module] = None,
            attn_position: str = 'standard',
            sk_layer: Optional[Callable[..., nn.Module]] = None,
            stride_in_1x1: bool = False,
            branch_act: bool = False,
            device: Optional[torch.device] = None,
            dtype: Optional[torch.dtype] = None,
    ):
        """
        Args:
            inplanes: Input channels.
            planes: Output channels (``expansion`` is 1).
            stride: Stride of the first convolution.
            downsample: Projection of the identity path, if its shape changes.
            cardinality: Must be 1: the basic block has no grouped convolution.
            base_width: Must be 64.
            reduce_first: Width reduction of the first convolution's output.
            dilation: Dilation of the second convolution.
            first_dilation: Dilation of the first convolution (default: ``dilation``).
            act_layer: Activation layer.
            norm_layer: Norm layer.
            attn_layer: SE unit factory, called with the channel count; None for no SE.
            aa_layer: Anti-aliasing layer for the strided convolution.
            drop_block: DropBlock factory.
            drop_path: Stochastic depth module for the residual branch.
            attn_position: Where the SE unit sits, one of ``SE_POSITIONS``.
            sk_layer: Selective Kernel unit factory replacing the first 3x3 conv; None for a plain conv.
            stride_in_1x1: Not applicable to the basic block (it has no 1x1 conv); must be False.
            branch_act: Apply the activation after the second conv's norm too.
            device: Parameter device.
            dtype: Parameter dtype.
        """
        super().__init__()
        if cardinality != 1 or base_width != 64:
            raise ValueError('BasicBlock supports only cardinality=1 and base_width=64; use Bottleneck for ResNeXt')
        if stride_in_1x1:
            raise ValueError('stride_in_1x1 applies to Bottleneck blocks only')
        dd = factory_kwargs(device, dtype)
        first_planes = planes // reduce_first
        outplanes = planes * self.expansion
        first_dilation = first_dilation or dilation
        conv_kwargs = dict(act_layer=act_layer, norm_layer=norm_layer, **dd)

        spatial = sk_layer if sk_layer is not None else ConvBnAct
        spatial_kwargs = {} if sk_layer is not None else {'kernel_size': 3}
        self.conv1 = spatial(
            inplanes, first_planes, stride=stride, dilation=first_dilation, groups=cardinality,
            aa_layer=aa_layer, drop_layer=drop_block, **spatial_kwargs, **conv_kwargs)
        self.conv2 = ConvBnAct(first_planes, outplanes, 3, dilation=dilation, apply_act=branch_act, **conv_kwargs)
        self._init_residual(inplanes, outplanes, attn_layer, attn_position, downsample, drop_path, act_layer, dd)

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so that the block starts as the identity."""
        if getattr(self.conv2.bn, 'weight', None) is not None:
            nn.init.zeros_(self.conv2.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self._branch_input(x)
        x = self.conv1(x)
        x = self.conv2(x)
        return self._merge(x, shortcut)


class Bottleneck(_ResidualBlock):
    """1x1 → 3x3 (grouped for ResNeXt) → 1x1; with ``sk_layer`` the 3x3 is a Selective Kernel unit (SKNet)."""

    expansion = 4

    def __init__(
            self,
            inplanes: int,
            planes: int,
            stride: int = 1,
            downsample: Optional[nn.Module] = None,
            cardinality: int = 1,
            base_width: int = 64,
            reduce_first: int = 1,
            dilation: int = 1,
            first_dilation: Optional[int] = None,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
            attn_layer: Optional[Callable[..., nn.Module]] = None,
            aa_layer: Optional[Type[nn.Module]] = None,
            drop_block: Optional[Callable[[], nn.Module]] = None,
            drop_path: Optional[nn.Module] = None,
            attn_position: str = 'standard',
            sk_layer: Optional[Callable[..., nn.Module]] = None,
            stride_in_1x1: bool = False,
            branch_act: bool = False,
            device: Optional[torch.device] = None,
            dtype: Optional[torch.dtype] = None,
    ):
        """
        Args:
            inplanes: Input channels.
            planes: Base width; the output has ``planes * 4`` channels.
            stride: Block stride, on the 3x3 conv (or the first 1x1 with ``stride_in_1x1``).
            downsample: Projection of the identity path, if its shape changes.
            cardinality: Groups of the 3x3 conv (ResNeXt) and paths' groups G of an SK unit.
            base_width: Width per group; the 3x3 conv has ``planes * base_width / 64 * cardinality`` channels.
            reduce_first: Width reduction of the first 1x1 conv's output (2 in SENet-154).
            dilation: Dilation of the 3x3 conv in later blocks of a dilated stage.
            first_dilation: Dilation of the 3x3 conv (default: ``dilation``).
            act_layer: Activation layer.
            norm_layer: Norm layer.
            attn_layer: SE unit factory, called with the channel count; None for no SE.
            aa_layer: Anti-aliasing layer for the strided 3x3 conv.
            drop_block: DropBlock factory.
            drop_path: Stochastic depth module for the residual branch.
            attn_position: Where the SE unit sits, one of ``SE_POSITIONS``.
            sk_layer: Selective Kernel unit factory replacing the 3x3 conv; None for a plain conv.
            stride_in_1x1: Put the stride on the first 1x1 conv (Caffe ResNet, SENet authors' SE-ResNets).
            branch_act: Apply the activation after the last 1x1 conv's norm too.
            device: Parameter device.
            dtype: Parameter dtype.
        """
        super().__init__()
        if stride_in_1x1 and aa_layer is not None:
            raise ValueError('stride_in_1x1 strides a 1x1 conv, which anti-aliasing (aa_layer) does not support')
        dd = factory_kwargs(device, dtype)
        width = int(math.floor(planes * (base_width / 64)) * cardinality)
        first_planes = width // reduce_first
        outplanes = planes * self.expansion
        first_dilation = first_dilation or dilation
        conv_kwargs = dict(act_layer=act_layer, norm_layer=norm_layer, **dd)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)

        self.conv1 = ConvBnAct(inplanes, first_planes, 1, stride=stride_1x1, **conv_kwargs)
        spatial = sk_layer if sk_layer is not None else ConvBnAct
        spatial_kwargs = {} if sk_layer is not None else {'kernel_size': 3}
        self.conv2 = spatial(
            first_planes, width, stride=stride_3x3, dilation=first_dilation, groups=cardinality,
            aa_layer=aa_layer, drop_layer=drop_block, **spatial_kwargs, **conv_kwargs)
        self.conv3 = ConvBnAct(width, outplanes, 1, apply_act=branch_act, **conv_kwargs)
        self._init_residual(inplanes, outplanes, attn_layer, attn_position, downsample, drop_path, act_layer, dd)

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so that the block starts as the identity."""
        if getattr(self.conv3.bn, 'weight', None) is not None:
            nn.init.zeros_(self.conv3.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self._branch_input(x)
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        return self._merge(x, shortcut)

"""Conv → norm → act: the unit every convolution in an SE/SK block is built from."""
from typing import Callable, Optional

import torch
from timm.layers import create_aa, create_act_layer, get_padding
from torch import nn

__all__ = ['ConvBnAct']


class ConvBnAct(nn.Module):
    """Conv2d followed by a norm layer, optional DropBlock, an optional activation and optional anti-aliasing.

    The attribute names (``conv``, ``bn``) match timm's ``ConvNormAct`` so that checkpoints of timm's SK models map
    onto this unit without renaming.
    """

    def __init__(
            self,
            in_channels: int,
            out_channels: int,
            kernel_size: int = 1,
            stride: int = 1,
            dilation: int = 1,
            groups: int = 1,
            apply_act: bool = True,
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
            out_channels: Output channels.
            kernel_size: Square kernel size.
            stride: Convolution stride; with ``aa_layer`` the conv runs at stride 1 and the anti-aliasing layer strides.
            dilation: Kernel dilation; padding keeps the spatial size at stride 1.
            groups: Convolution groups.
            apply_act: Apply the activation after the norm.
            act_layer: Activation layer class, or a timm activation name.
            norm_layer: Norm layer class.
            aa_layer: Optional anti-aliasing layer, used only when ``stride > 1``.
            drop_layer: Optional factory of a spatial dropout layer (DropBlock) applied after the norm.
            device: Parameter device.
            dtype: Parameter dtype.
        """
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        use_aa = aa_layer is not None and stride > 1
        conv_stride = 1 if use_aa else stride
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=conv_stride,
            padding=get_padding(kernel_size, conv_stride, dilation),
            dilation=dilation,
            groups=groups,
            bias=False,
            **dd,
        )
        self.bn = norm_layer(out_channels, **dd)
        self.drop = drop_layer() if drop_layer is not None else nn.Identity()
        self.act = create_act_layer(act_layer, inplace=True) if apply_act else nn.Identity()
        self.aa = create_aa(aa_layer, channels=out_channels, stride=stride, enable=use_aa, **dd)

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.bn(x)
        x = self.drop(x)
        x = self.act(x)
        x = self.aa(x)
        return x

"""Squeeze-and-Excitation unit.

Paper: `Squeeze-and-Excitation Networks` - Hu, Shen, Albanie, Sun, Wu (arXiv:1709.01507)

    s = squeeze(x)                        global average pool (or max pool, from the paper's ablation), B x C
    e = gate(W2 · act(W1 · s + b1) + b2)  excitation, one weight per channel, W1: C/r x C, W2: C x C/r
    y = x · e                             channel-wise rescale
"""
from typing import Callable, Optional, Union

import torch
from timm.layers import create_act_layer, make_divisible
from torch import nn

from .conv_bn_act import factory_kwargs
from .tap import AttentionTap

__all__ = ['SqueezeExcite', 'se_hidden_channels']

SQUEEZE_TYPES = ('avg', 'max')


def se_hidden_channels(channels: int, reduction: int = 16, divisor: int = 8) -> int:
    """Width of the excitation bottleneck: ``channels / reduction`` rounded to a multiple of ``divisor``.

    timm's SE-ResNets round to a multiple of 8 (so 64 channels give 8, not 4); the SENet authors' networks use
    ``channels // reduction`` exactly, which is ``divisor=1`` for every channel count they use.
    """
    return make_divisible(channels / reduction, divisor, round_limit=0.)


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation channel attention.

    The two FC layers are ``nn.Linear`` acting on the pooled ``B x C`` descriptor, as in the paper and the reference
    blog; checkpoints that store them as 1x1 convolutions are reshaped by the weight mapping.
    """

    def __init__(
            self,
            channels: int,
            reduction: int = 16,
            divisor: int = 8,
            hidden_channels: Optional[int] = None,
            squeeze: str = 'avg',
            bias: bool = True,
            act_layer: Union[str, Callable[..., nn.Module]] = nn.ReLU,
            gate_layer: Union[str, Callable[..., nn.Module]] = 'sigmoid',
            device: Optional[torch.device] = None,
            dtype: Optional[torch.dtype] = None,
    ):
        """
        Args:
            channels: Channels of the feature map being rescaled.
            reduction: Reduction ratio r of the excitation bottleneck.
            divisor: The bottleneck width is rounded to a multiple of this (and is at least this).
            hidden_channels: Explicit bottleneck width, overriding ``reduction`` and ``divisor``.
            squeeze: Global pooling for the squeeze, ``'avg'`` (paper default) or ``'max'``.
            bias: Use biases in the two FC layers (original SENet and timm: yes; the reference blog: no).
            act_layer: Activation between the FC layers.
            gate_layer: Gate producing the channel weights, ``'sigmoid'`` by default; any timm activation name.
            device: Parameter device.
            dtype: Parameter dtype.
        """
        super().__init__()
        if squeeze not in SQUEEZE_TYPES:
            raise ValueError(f'squeeze must be one of {SQUEEZE_TYPES}, got {squeeze!r}')
        dd = factory_kwargs(device, dtype)
        hidden_channels = hidden_channels or se_hidden_channels(channels, reduction, divisor)
        self.squeeze_type = squeeze
        self.fc1 = nn.Linear(channels, hidden_channels, bias=bias, **dd)
        self.act = create_act_layer(act_layer, inplace=True)
        self.fc2 = nn.Linear(hidden_channels, channels, bias=bias, **dd)
        self.gate = create_act_layer(gate_layer)
        self.tap = AttentionTap()

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        """Global descriptor ``B x C`` of a ``B x C x H x W`` feature map."""
        if self.squeeze_type == 'max':
            return x.amax(dim=(2, 3))
        return x.mean(dim=(2, 3))

    def excitation(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights ``B x C`` in the gate's range (``(0, 1)`` for the sigmoid), as applied."""
        return self.tap(self.gate(self.fc2(self.act(self.fc1(self.squeeze(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excitation(x)[:, :, None, None]

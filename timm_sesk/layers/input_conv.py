"""The network's first convolution, which checks its input before convolving."""
import torch
from torch import nn

from ._tracing import is_fx_symbolic_tracing

__all__ = ['InputConv2d']


class InputConv2d(nn.Conv2d):
    """A ``Conv2d`` that rejects inputs with the wrong channel count or below the network's minimum size.

    The checks turn PyTorch's shape errors deep in the stem into a message that names what the model expects and how
    to get it. They read only static shapes, so TorchScript and torch.compile keep them; under torch.fx symbolic
    tracing shapes are proxies and the checks are skipped.
    """

    min_size: int

    def __init__(self, *args, min_size: int = 1, **kwargs):
        """
        Args:
            *args: ``nn.Conv2d`` arguments.
            min_size: Smallest height and width the network accepts.
            **kwargs: ``nn.Conv2d`` keyword arguments.
        """
        super().__init__(*args, **kwargs)
        self.min_size = min_size

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, min_size: int = 1) -> 'InputConv2d':
        """An ``InputConv2d`` sharing ``conv``'s parameters."""
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=False, min_size=min_size, device='meta')
        new.weight = conv.weight
        new.bias = conv.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # noqa: SIM102 - TorchScript only skips compiling a bare is_scripting() test
            if is_fx_symbolic_tracing() or torch.jit.is_tracing():  # a trace would freeze the checks into constants
                return self._conv_forward(x, self.weight, self.bias)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'expected an image batch of shape (B, {self.in_channels}, H, W), got {list(x.shape)}. '
                f'Convert the images to {self.in_channels} channels, or create the model with '
                f'in_chans=<your channel count> (pretrained stem weights are adapted).')
        if x.shape[-2] < self.min_size or x.shape[-1] < self.min_size:
            raise ValueError(
                f'input of {x.shape[-2]}x{x.shape[-1]} px is below this network\'s minimum of '
                f'{self.min_size}x{self.min_size} px. Resize the input to at least that.')
        return self._conv_forward(x, self.weight, self.bias)

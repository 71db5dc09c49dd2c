"""The network's input check: a forward pre-hook on its first convolution.

A hook rather than a ``Conv2d`` subclass keeps the stem a plain ``nn.Conv2d``, as in timm: torch.fx keeps it as a
``call_module`` leaf, quantization tools swap it like any conv, and the check still runs wherever the conv is called
(the model, ``features_only`` wrappers, ``forward_intermediates``), also under TorchScript.
"""
from typing import Tuple

import torch
from torch import nn

from ._tracing import is_fx_symbolic_tracing

__all__ = ['add_input_check', 'check_input_batch']


def check_input_batch(conv: nn.Conv2d, args: Tuple[torch.Tensor]) -> None:
    """Forward pre-hook: reject inputs with the wrong channel count or below the network's minimum size.

    It turns PyTorch's shape errors deep in the stem into a message that names what the model expects and how to get
    it. It reads only static shapes; under a tracer (torch.fx symbolic tracing, ``torch.jit.trace``) it does nothing,
    so that no check is frozen into the trace.
    """
    if not torch.jit.is_scripting():  # noqa: SIM102 - TorchScript only skips compiling a bare is_scripting() test
        if is_fx_symbolic_tracing() or torch.jit.is_tracing():
            return
    x = args[0]
    if x.dim() != 4 or x.shape[1] != conv.in_channels:
        raise ValueError(
            f'expected an image batch of shape (B, {conv.in_channels}, H, W), got {list(x.shape)}. '
            f'Convert the images to {conv.in_channels} channels, or create the model with '
            f'in_chans=<your channel count> (pretrained stem weights are adapted).')
    min_size: int = conv.min_input_size
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ValueError(
            f'input of {x.shape[-2]}x{x.shape[-1]} px is below this network\'s minimum of '
            f'{min_size}x{min_size} px. Resize the input to at least that.')


def add_input_check(conv: nn.Conv2d, min_size: int = 1) -> nn.Conv2d:
    """Register ``check_input_batch`` on the network's first convolution.

    Args:
        conv: The stem's first convolution.
        min_size: Smallest height and width the network accepts.

    Returns:
        ``conv``, with the hook and its ``min_input_size`` attribute.
    """
    conv.min_input_size = min_size
    conv.register_forward_pre_hook(check_input_batch)
    return conv

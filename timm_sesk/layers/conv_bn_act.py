"""Conv → norm → act: the unit every convolution in an SE/SK block is built from.

In eval mode a BatchNorm is folded into its convolution on the fly (``conv_bn_eval``): the same function, to fp32
rounding, without a pass over the activation. ``timm_sesk.fuse`` folds the weights once and for all.
"""
import threading
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from timm.layers import create_aa, create_act_layer, get_padding
from torch import nn

from ._tracing import is_fx_symbolic_tracing

__all__ = [
    'ConvBn',
    'ConvBnAct',
    'batch_norm_train',
    'check_batch_norm_input',
    'conv_bn_eval',
    'is_plain_batchnorm',
    'is_recomputing',
    'recomputing',
    'uses_batch_statistics',
]

_recompute = threading.local()


def is_plain_batchnorm(module: nn.Module) -> bool:
    """An affine ``nn.BatchNorm2d`` with running statistics (not a subclass with extra behaviour)."""
    return (type(module) is nn.BatchNorm2d and module.affine and module.track_running_stats
            and module.running_var is not None)


def uses_batch_statistics(norm: nn.Module) -> bool:
    """A BatchNorm that normalises with the statistics of the current batch: in training mode, or without running
    statistics. Its own mode decides, not its parent's: a BatchNorm put in eval mode inside a training model (the
    detectors' way of freezing norms) uses its running statistics.

    ``SyncBatchNorm`` is left out: it pools the statistics of all processes, so one sample per process can be enough.
    """
    return (isinstance(norm, nn.modules.batchnorm._BatchNorm) and not isinstance(norm, nn.SyncBatchNorm)
            and (norm.training or norm.running_mean is None))


def check_batch_norm_input(norm: nn.Module, x: torch.Tensor, message: Optional[str] = None) -> None:
    """Raise a ``ValueError`` that says what to do where ``norm`` would normalise a single value per channel.

    PyTorch's own error ("Expected more than 1 value per channel when training") names neither the cause nor a fix.
    The check reads static shapes only; under torch.fx symbolic tracing shapes are proxies and it is skipped.

    Args:
        norm: The norm about to normalise ``x``.
        x: Its input, ``B x C x H x W``.
        message: The error's text, for callers that know a more specific cause and fix (default: a feature map of
            batch size 1 at 1x1 px).
    """
    if not uses_batch_statistics(norm) or is_fx_symbolic_tracing() or x.numel() != x.shape[1]:
        return
    raise ValueError(message or
        f'BatchNorm in training normalises each channel over the batch and the spatial positions, so it needs more '
        f'than one value per channel; got a feature map of shape {tuple(x.shape)} (batch size 1 at 1x1 px). Train '
        f'with a batch size of at least 2, or with a larger input (the deepest feature map must be larger than 1x1: '
        f'e.g. 64 px or more at the default output stride of 32), or freeze the norms: '
        f'timm.layers.freeze_batch_norm_2d(model) makes every BatchNorm use its running statistics.')


def conv_bn_eval(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))`` for an eval-mode BatchNorm, computed as one convolution with folded weights and bias.

    Folding costs one pass over the weights; it saves one over the activation and its allocation.
    """
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv._conv_forward(x, conv.weight * scale.reshape(-1, 1, 1, 1), bias)


class recomputing:
    """Marks the recomputation of a checkpointed region, during which BatchNorms must not update their statistics.

    A class rather than a generator: torch.utils.checkpoint enters the same context once per recomputation, and a
    backward with ``retain_graph=True`` recomputes more than once.
    """

    def __enter__(self) -> None:
        self._previous = getattr(_recompute, 'active', False)
        _recompute.active = True

    def __exit__(self, *exc) -> None:
        _recompute.active = self._previous


def is_recomputing() -> bool:
    """Whether the current forward is a checkpoint's recomputation (inside ``recomputing()``), not a new pass."""
    return getattr(_recompute, 'active', False)


def batch_norm_train(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Training-mode ``bn(x)`` that leaves the running statistics alone when run again under ``recomputing()``.

    The recomputation calls the same op on scratch copies of the statistics, so that it saves the same tensors for
    backward as the original forward (torch.utils.checkpoint compares them).
    """
    if is_recomputing():
        running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
        momentum = 0.0
    else:
        running_mean, running_var = bn.running_mean, bn.running_var
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(x, running_mean, running_var, bn.weight, bn.bias, True, momentum, bn.eps)


class ConvBn(nn.Sequential):
    """A ``Sequential`` ending in Conv2d → BatchNorm (timm's downsample paths), folding the norm in eval mode.

    The children keep their indices, so state dicts are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # noqa: SIM102 - TorchScript only skips compiling a bare is_scripting() test
            if len(self) >= 2 and isinstance(self[-2], nn.Conv2d) and is_plain_batchnorm(self[-1]) \
                    and not self[-1].training:
                for module in list(self)[:-2]:
                    x = module(x)
                return conv_bn_eval(self[-2], self[-1], x)
        for module in self:
            x = module(x)
        return x


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

    def after_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after the convolution: norm, DropBlock, activation, anti-aliasing."""
        check_batch_norm_input(self.bn, x)
        # The norm's own mode decides: a norm frozen with .eval() inside a training model keeps its statistics.
        x = batch_norm_train(self.bn, x) if self.bn.training and is_plain_batchnorm(self.bn) else self.bn(x)
        return self.aa(self.act(self.drop(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # noqa: SIM102 - TorchScript only skips compiling a bare is_scripting() test
            if not self.bn.training and is_plain_batchnorm(self.bn):
                return self.aa(self.act(self.drop(conv_bn_eval(self.conv, self.bn, x))))
        x = self.conv(x)
        if not torch.jit.is_scripting():
            check_batch_norm_input(self.bn, x)
        x = self.bn(x)
        x = self.drop(x)
        x = self.act(x)
        x = self.aa(x)
        return x

"""Conv → norm → act: the unit every convolution in an SE/SK block is built from.

Every submodule is called as a module, in eval and in training, as in timm's ``ConvNormAct``: forward hooks fire and
torch.fx records each conv and norm as a ``call_module``. Folding the norms for inference is ``timm_sesk.fuse``'s job.
"""
import threading
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn.functional as F
from timm.layers import create_aa, create_act_layer, get_padding
from torch import nn

from ._tracing import is_fx_symbolic_tracing

__all__ = [
    'ConvBnAct',
    'batch_norm_recomputed',
    'check_batch_norm_input',
    'factory_kwargs',
    'is_plain_batchnorm',
    'is_recomputing',
    'norm_forward',
    'recomputing',
    'uses_batch_statistics',
]

_recompute = threading.local()


def factory_kwargs(device: Optional[torch.device], dtype: Optional[torch.dtype]) -> Dict[str, Any]:
    """A layer's ``device`` and ``dtype`` arguments, those that are set: timm's layers (``create_aa``, ...) take
    them only since timm 1.0.21, so that unset ones are not passed on."""
    return {k: v for k, v in (('device', device), ('dtype', dtype)) if v is not None}


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


def batch_norm_recomputed(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` in training mode, as run again by a checkpoint's recomputation: the running statistics stay as the
    original forward left them, and the module's hooks do not fire a second time.

    It calls the same op as the module, on scratch copies of the statistics, so that it saves the same tensors for
    backward as the original forward (torch.utils.checkpoint compares them).
    """
    return F.batch_norm(x, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, True, 0.0, bn.eps)


def norm_forward(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` called as a module, except during a checkpoint's recomputation of a training-mode BatchNorm
    (``batch_norm_recomputed``). The norm's own mode decides: a norm frozen with ``.eval()`` inside a training model
    keeps its statistics."""
    if is_recomputing() and is_plain_batchnorm(norm) and norm.training:
        return batch_norm_recomputed(norm, x)
    return norm(x)


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
        dd = factory_kwargs(device, dtype)
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
        if not torch.jit.is_scripting():
            check_batch_norm_input(self.bn, x)
            x = norm_forward(self.bn, x)
        else:
            x = self.bn(x)
        return self.aa(self.act(self.drop(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_conv(self.conv(x))

"""Inference-time folding of BatchNorm into the preceding convolution or linear layer."""
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from timm_sesk.layers import ConvBnAct, SelectiveKernelAttn

__all__ = ['fuse']


def _is_bn(module: nn.Module) -> bool:
    return type(module) is nn.BatchNorm2d and module.track_running_stats


def _fold_sequential(seq: nn.Sequential) -> None:
    for i in range(len(seq) - 1):
        if isinstance(seq[i], nn.Conv2d) and _is_bn(seq[i + 1]):
            seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
            seq[i + 1] = nn.Identity()


@torch.no_grad()
def fuse(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm of a timm_sesk model into the conv or linear layer before it, in place.

    The result computes the same function in eval mode (to fp32 rounding) with one pass less over each activation.
    It is for inference only: the BatchNorms are gone, so it must not be trained.

    Args:
        model: A timm_sesk model, or a features_only wrapper of one.

    Returns:
        The same model, fused and in eval mode. A fused ``SeskResNet`` refuses ``.train()``.
    """
    model.eval()
    for module in model.modules():
        if isinstance(module, ConvBnAct) and _is_bn(module.bn):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
        elif isinstance(module, SelectiveKernelAttn) and _is_bn(module.bn):
            module.fc_reduce = fuse_linear_bn_eval(module.fc_reduce, module.bn)
            module.bn = nn.Identity()
        elif isinstance(module, nn.Sequential):
            _fold_sequential(module)
    stem_conv = getattr(model, 'conv1', None)
    if isinstance(stem_conv, nn.Sequential):
        stem_conv, parent, index = stem_conv[-1], stem_conv, len(stem_conv) - 1
    else:
        parent, index = model, None
    if isinstance(stem_conv, nn.Conv2d) and _is_bn(getattr(model, 'bn1', None)):
        fused = fuse_conv_bn_eval(stem_conv, model.bn1)
        if index is None:
            model.conv1 = fused
        else:
            parent[index] = fused
        model.bn1 = nn.Identity()
    if hasattr(model, 'fused'):
        model.fused = True
    return model

"""Squeeze-and-Excitation ResNets and ResNeXts.

Paper: `Squeeze-and-Excitation Networks` - Hu, Shen, Albanie, Sun, Wu (arXiv:1709.01507)

Two layouts:
* ``se_resnet*``, ``se_resnext*``: timm's SE-ResNet layout (stride on the 3x3 conv, SE width rounded to a multiple of
  8), the same networks as timm's ``seresnet*`` / ``seresnext*``.
* ``*_orig``: the SENet authors' released networks (github.com/hujie-frank/SENet), the layout of timm's ``legacy_*``
  models: Caffe stem pooling (no padding, ceil mode), SE width exactly ``C // 16``, and for SE-ResNet bottlenecks the
  stride on the first 1x1 conv. ``se_net154_orig`` is SENet-154, the paper's ILSVRC 2017 entry. The authors released
  no basic-block networks; ``se_resnet18_orig`` and ``se_resnet34_orig`` are Cadene's basic block in that layout
  (with a ReLU before the SE unit), on which timm trained its ``legacy_seresnet18/34`` weights.
"""
from timm.models import generate_default_cfgs, register_model

from timm_sesk.weights import Reference

from .archs import Arch, create, declare
from .blocks import BasicBlock, Bottleneck
from .trunk import SeskResNet

__all__ = []  # model entrypoints are registered with timm

_SE = dict(se_position='standard')
# SENet authors' networks: SE width C // 16 exactly, Caffe stem pooling.
_SE_ORIG = dict(se_position='standard', se_divisor=1, caffe_stem_pool=True)
_RESNEXT = dict(cardinality=32, base_width=4)

# Each architecture, declared once (timm_sesk.models.archs): its model arguments, the timm network it is proven equal
# to and how its state dict maps onto ours, its plain twin. Its default_cfgs, reference, test lists and README row
# derive from this.
default_cfgs = generate_default_cfgs(declare('se', {
    'SE-ResNet': (
        Arch('se_resnet18', dict(block=BasicBlock, layers=(2, 2, 2, 2), **_SE),
             Reference('seresnet18', 'timm_resnet'), plain_twin='resnet18'),
        Arch('se_resnet34', dict(block=BasicBlock, layers=(3, 4, 6, 3), **_SE),
             Reference('seresnet34', 'timm_resnet'), plain_twin='resnet34'),
        Arch('se_resnet50', dict(block=Bottleneck, layers=(3, 4, 6, 3), **_SE),
             Reference('seresnet50', 'timm_resnet'), plain_twin='resnet50'),
        Arch('se_resnet101', dict(block=Bottleneck, layers=(3, 4, 23, 3), **_SE),
             Reference('seresnet101', 'timm_resnet'), plain_twin='resnet101'),
        Arch('se_resnet152', dict(block=Bottleneck, layers=(3, 8, 36, 3), **_SE),
             Reference('seresnet152', 'timm_resnet'), plain_twin='resnet152'),
    ),
    'SE-ResNeXt': (
        Arch('se_resnext50_32x4d', dict(block=Bottleneck, layers=(3, 4, 6, 3), **_RESNEXT, **_SE),
             Reference('seresnext50_32x4d', 'timm_resnet'), plain_twin='resnext50_32x4d'),
        Arch('se_resnext101_32x4d', dict(block=Bottleneck, layers=(3, 4, 23, 3), **_RESNEXT, **_SE),
             Reference('seresnext101_32x4d', 'timm_resnet'), plain_twin='resnext101_32x4d'),
    ),
    # The SENet authors' layout computes another function than any plain network timm registers: no plain twins.
    "SE-ResNet, SENet authors' layout": (
        Arch('se_resnet50_orig', dict(block=Bottleneck, layers=(3, 4, 6, 3), stride_in_1x1=True, **_SE_ORIG),
             Reference('legacy_seresnet50', 'timm_senet')),
        Arch('se_resnet101_orig', dict(block=Bottleneck, layers=(3, 4, 23, 3), stride_in_1x1=True, **_SE_ORIG),
             Reference('legacy_seresnet101', 'timm_senet')),
        Arch('se_resnet152_orig', dict(block=Bottleneck, layers=(3, 8, 36, 3), stride_in_1x1=True, **_SE_ORIG),
             Reference('legacy_seresnet152', 'timm_senet')),
    ),
    "SE-ResNeXt, SENet authors' layout": (
        Arch('se_resnext26_32x4d_orig', dict(block=Bottleneck, layers=(2, 2, 2, 2), **_RESNEXT, **_SE_ORIG),
             Reference('legacy_seresnext26_32x4d', 'timm_senet')),
        Arch('se_resnext50_32x4d_orig', dict(block=Bottleneck, layers=(3, 4, 6, 3), **_RESNEXT, **_SE_ORIG),
             Reference('legacy_seresnext50_32x4d', 'timm_senet')),
        Arch('se_resnext101_32x4d_orig', dict(block=Bottleneck, layers=(3, 4, 23, 3), **_RESNEXT, **_SE_ORIG),
             Reference('legacy_seresnext101_32x4d', 'timm_senet')),
    ),
    'SENet-154': (
        Arch('se_net154_orig',
             dict(block=Bottleneck, layers=(3, 8, 36, 3), cardinality=64, base_width=4, stem_type='deep',
                  stem_width=64, block_reduce_first=2, down_kernel_size=3, drop_rate=0.2, **_SE_ORIG),
             Reference('legacy_senet154', 'timm_senet')),
    ),
    "SE-ResNet with Cadene's basic block": (
        Arch('se_resnet18_orig', dict(block=BasicBlock, layers=(2, 2, 2, 2), branch_act=True, **_SE_ORIG),
             Reference('legacy_seresnet18', 'timm_senet')),
        Arch('se_resnet34_orig', dict(block=BasicBlock, layers=(3, 4, 6, 3), branch_act=True, **_SE_ORIG),
             Reference('legacy_seresnet34', 'timm_senet')),
    ),
}))


@register_model
def se_resnet18(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-18, timm's layout."""
    return create('se_resnet18', pretrained, **kwargs)


@register_model
def se_resnet34(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-34, timm's layout."""
    return create('se_resnet34', pretrained, **kwargs)


@register_model
def se_resnet50(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-50, timm's layout."""
    return create('se_resnet50', pretrained, **kwargs)


@register_model
def se_resnet101(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-101, timm's layout."""
    return create('se_resnet101', pretrained, **kwargs)


@register_model
def se_resnet152(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-152, timm's layout."""
    return create('se_resnet152', pretrained, **kwargs)


@register_model
def se_resnext50_32x4d(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-50 (32x4d), timm's layout."""
    return create('se_resnext50_32x4d', pretrained, **kwargs)


@register_model
def se_resnext101_32x4d(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-101 (32x4d), timm's layout."""
    return create('se_resnext101_32x4d', pretrained, **kwargs)


@register_model
def se_resnet50_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-50 as released by the SENet authors: Caffe ResNet, stride on the first 1x1 conv."""
    return create('se_resnet50_orig', pretrained, **kwargs)


@register_model
def se_resnet101_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-101 as released by the SENet authors: Caffe ResNet, stride on the first 1x1 conv."""
    return create('se_resnet101_orig', pretrained, **kwargs)


@register_model
def se_resnet152_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-152 as released by the SENet authors: Caffe ResNet, stride on the first 1x1 conv."""
    return create('se_resnet152_orig', pretrained, **kwargs)


@register_model
def se_resnext26_32x4d_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-26 (32x4d) in the SENet authors' layout (timm's ``legacy_seresnext26_32x4d``)."""
    return create('se_resnext26_32x4d_orig', pretrained, **kwargs)


@register_model
def se_resnext50_32x4d_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-50 (32x4d) as released by the SENet authors."""
    return create('se_resnext50_32x4d_orig', pretrained, **kwargs)


@register_model
def se_resnext101_32x4d_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-101 (32x4d) as released by the SENet authors."""
    return create('se_resnext101_32x4d_orig', pretrained, **kwargs)


@register_model
def se_net154_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SENet-154 as released by the SENet authors: 3x3 deep stem, 64x4d grouped bottlenecks with the first 1x1 at
    half width, 3x3 downsampling convs, dropout 0.2 before the classifier."""
    return create('se_net154_orig', pretrained, **kwargs)


@register_model
def se_resnet18_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-18 in the SENet layout with Cadene's basic block (timm's ``legacy_seresnet18``)."""
    return create('se_resnet18_orig', pretrained, **kwargs)


@register_model
def se_resnet34_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-34 in the SENet layout with Cadene's basic block (timm's ``legacy_seresnet34``)."""
    return create('se_resnet34_orig', pretrained, **kwargs)

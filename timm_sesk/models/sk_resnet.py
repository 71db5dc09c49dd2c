"""Selective Kernel Networks.

Paper: `Selective Kernel Networks` - Li, Wang, Hu, Yang (arXiv:1903.06586)

* ``sk_resnet26``, ``sk_resnet50``, ``sk_resnet101``: SKNet-26/50/101 as the paper defines them (Table 1): a ResNeXt
  32x4d trunk whose grouped 3x3 convs are SK[M=2, G=32, r=16] units with L=32. ``sk_resnet50`` is the same network
  as timm's ``skresnext50_32x4d``.
* ``sk_resnet18``, ``sk_resnet34``: SK in basic blocks, timm's design (``skresnet18/34``): the first 3x3 of each block
  is an SK unit whose two paths each see half of the input channels, with r=8 and L=16.
"""
from timm.models import generate_default_cfgs, register_model

from timm_sesk.weights import Reference

from .archs import Arch, create, declare
from .blocks import BasicBlock, Bottleneck
from .trunk import SeskResNet

__all__ = []  # model entrypoints are registered with timm

# SKNet (paper): SK[M=2, G=32, r=16], L=32 in a ResNeXt 32x4d trunk.
_SKNET = dict(cardinality=32, base_width=4, sk_paths=2, sk_reduction=16, sk_min_attn_channels=32, zero_init_last=False)
# timm's basic-block SK: input split across the paths, r=8, L=16.
_SK_BASIC = dict(sk_paths=2, sk_reduction=8, sk_min_attn_channels=16, sk_split_input=True, zero_init_last=False)

# Each architecture, declared once (timm_sesk.models.archs): its model arguments, the timm network it is proven equal
# to and how its state dict maps onto ours, its plain twin. Its default_cfgs, reference, test lists and README row
# derive from this.
default_cfgs = generate_default_cfgs(declare('sk', {
    "SK in basic blocks (timm's design)": (
        Arch('sk_resnet18', dict(block=BasicBlock, layers=(2, 2, 2, 2), **_SK_BASIC),
             Reference('skresnet18', 'timm_sknet'), plain_twin='resnet18'),
        Arch('sk_resnet34', dict(block=BasicBlock, layers=(3, 4, 6, 3), **_SK_BASIC),
             Reference('skresnet34', 'timm_sknet'), plain_twin='resnet34'),
    ),
    'SKNet-26/50/101 of the SKNet paper': (
        # No plain twin: timm registers no ResNeXt-26 32x4d; its resnext26ts has a tiered stem and SiLU.
        Arch('sk_resnet26', dict(block=Bottleneck, layers=(2, 2, 2, 2), **_SKNET),
             Reference.sk_bottleneck('SKNet-26', (2, 2, 2, 2))),
        Arch('sk_resnet50', dict(block=Bottleneck, layers=(3, 4, 6, 3), **_SKNET),
             Reference('skresnext50_32x4d', 'timm_sknet'), plain_twin='resnext50_32x4d'),
        Arch('sk_resnet101', dict(block=Bottleneck, layers=(3, 4, 23, 3), **_SKNET),
             Reference.sk_bottleneck('SKNet-101', (3, 4, 23, 3)), plain_twin='resnext101_32x4d'),
    ),
}))


@register_model
def sk_resnet18(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SK-ResNet-18: basic blocks with an input-splitting SK unit (timm's ``skresnet18``)."""
    return create('sk_resnet18', pretrained, **kwargs)


@register_model
def sk_resnet34(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SK-ResNet-34: basic blocks with an input-splitting SK unit (timm's ``skresnet34``)."""
    return create('sk_resnet34', pretrained, **kwargs)


@register_model
def sk_resnet26(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SKNet-26 of the SKNet paper: units {2, 2, 2, 2}."""
    return create('sk_resnet26', pretrained, **kwargs)


@register_model
def sk_resnet50(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SKNet-50 of the SKNet paper: units {3, 4, 6, 3} (timm's ``skresnext50_32x4d``)."""
    return create('sk_resnet50', pretrained, **kwargs)


@register_model
def sk_resnet101(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SKNet-101 of the SKNet paper: units {3, 4, 23, 3}."""
    return create('sk_resnet101', pretrained, **kwargs)

"""Selective Kernel Networks.

Paper: `Selective Kernel Networks` - Li, Wang, Hu, Yang (arXiv:1903.06586)

* ``sk_resnet26``, ``sk_resnet50``, ``sk_resnet101``: SKNet-26/50/101 as the paper defines them (Table 1): a ResNeXt
  32x4d trunk whose grouped 3x3 convs are SK[M=2, G=32, r=16] units with L=32. ``sk_resnet50`` is the same network
  as timm's ``skresnext50_32x4d``.
* ``sk_resnet18``, ``sk_resnet34``: SK in basic blocks, timm's design (``skresnet18/34``): the first 3x3 of each block
  is an SK unit whose two paths each see half of the input channels, with r=8 and L=16.
"""
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model

from timm_sesk.weights import pretrained_cfgs

from .blocks import BasicBlock, Bottleneck
from .trunk import SeskResNet, create_sesk_resnet

__all__ = []  # model entrypoints are registered with timm

# SKNet (paper): SK[M=2, G=32, r=16], L=32 in a ResNeXt 32x4d trunk.
_SKNET = dict(cardinality=32, base_width=4, sk_paths=2, sk_reduction=16, sk_min_attn_channels=32, zero_init_last=False)
# timm's basic-block SK: input split across the paths, r=8, L=16.
_SK_BASIC = dict(sk_paths=2, sk_reduction=8, sk_min_attn_channels=16, sk_split_input=True, zero_init_last=False)


def _cfg(**kwargs):
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'conv1', 'classifier': 'fc',
        'license': 'apache-2.0',
        'paper_ids': 'arXiv:1903.06586', 'paper_name': 'Selective Kernel Networks',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    **pretrained_cfgs(('sk_resnet18', 'sk_resnet34', 'sk_resnet26', 'sk_resnet50', 'sk_resnet101'), _cfg),
})


@register_model
def sk_resnet18(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SK-ResNet-18: basic blocks with an input-splitting SK unit (timm's ``skresnet18``)."""
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2), **_SK_BASIC)
    return create_sesk_resnet('sk_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def sk_resnet34(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SK-ResNet-34: basic blocks with an input-splitting SK unit (timm's ``skresnet34``)."""
    model_args = dict(block=BasicBlock, layers=(3, 4, 6, 3), **_SK_BASIC)
    return create_sesk_resnet('sk_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def sk_resnet26(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SKNet-26 of the SKNet paper: units {2, 2, 2, 2}."""
    model_args = dict(block=Bottleneck, layers=(2, 2, 2, 2), **_SKNET)
    return create_sesk_resnet('sk_resnet26', pretrained, **dict(model_args, **kwargs))


@register_model
def sk_resnet50(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SKNet-50 of the SKNet paper: units {3, 4, 6, 3} (timm's ``skresnext50_32x4d``)."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3), **_SKNET)
    return create_sesk_resnet('sk_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def sk_resnet101(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SKNet-101 of the SKNet paper: units {3, 4, 23, 3}."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 23, 3), **_SKNET)
    return create_sesk_resnet('sk_resnet101', pretrained, **dict(model_args, **kwargs))

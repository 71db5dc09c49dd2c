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
from functools import partial

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model

from timm_sesk.weights import pretrained_cfgs

from .blocks import BasicBlock, Bottleneck
from .trunk import SeskResNet, create_sesk_resnet

__all__ = []  # model entrypoints are registered with timm

_SE = dict(se_position='standard')
# SENet authors' networks: SE width C // 16 exactly, Caffe stem pooling.
_SE_ORIG = dict(se_position='standard', se_divisor=1, caffe_stem_pool=True)


def _cfg(**kwargs):
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'conv1', 'classifier': 'fc',
        'license': 'apache-2.0',
        'paper_ids': 'arXiv:1709.01507', 'paper_name': 'Squeeze-and-Excitation Networks',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    **pretrained_cfgs((
        'se_resnet18', 'se_resnet34', 'se_resnet50', 'se_resnet101', 'se_resnet152',
        'se_resnext50_32x4d', 'se_resnext101_32x4d',
        'se_resnet18_orig', 'se_resnet34_orig', 'se_resnet50_orig', 'se_resnet101_orig', 'se_resnet152_orig',
        'se_resnext26_32x4d_orig', 'se_resnext50_32x4d_orig', 'se_resnext101_32x4d_orig',
    ), _cfg),
    **pretrained_cfgs(('se_net154_orig',), partial(_cfg, first_conv='conv1.0')),
})


@register_model
def se_resnet18(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-18, timm's layout."""
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2), **_SE)
    return create_sesk_resnet('se_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnet34(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-34, timm's layout."""
    model_args = dict(block=BasicBlock, layers=(3, 4, 6, 3), **_SE)
    return create_sesk_resnet('se_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnet50(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-50, timm's layout."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3), **_SE)
    return create_sesk_resnet('se_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnet101(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-101, timm's layout."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 23, 3), **_SE)
    return create_sesk_resnet('se_resnet101', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnet152(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-152, timm's layout."""
    model_args = dict(block=Bottleneck, layers=(3, 8, 36, 3), **_SE)
    return create_sesk_resnet('se_resnet152', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnext50_32x4d(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-50 (32x4d), timm's layout."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3), cardinality=32, base_width=4, **_SE)
    return create_sesk_resnet('se_resnext50_32x4d', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnext101_32x4d(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-101 (32x4d), timm's layout."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 23, 3), cardinality=32, base_width=4, **_SE)
    return create_sesk_resnet('se_resnext101_32x4d', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnet18_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-18 in the SENet layout with Cadene's basic block (timm's ``legacy_seresnet18``)."""
    model_args = dict(block=BasicBlock, branch_act=True, layers=(2, 2, 2, 2), **_SE_ORIG)
    return create_sesk_resnet('se_resnet18_orig', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnet34_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-34 in the SENet layout with Cadene's basic block (timm's ``legacy_seresnet34``)."""
    model_args = dict(block=BasicBlock, branch_act=True, layers=(3, 4, 6, 3), **_SE_ORIG)
    return create_sesk_resnet('se_resnet34_orig', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnet50_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-50 as released by the SENet authors: Caffe ResNet, stride on the first 1x1 conv."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3), stride_in_1x1=True, **_SE_ORIG)
    return create_sesk_resnet('se_resnet50_orig', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnet101_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-101 as released by the SENet authors: Caffe ResNet, stride on the first 1x1 conv."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 23, 3), stride_in_1x1=True, **_SE_ORIG)
    return create_sesk_resnet('se_resnet101_orig', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnet152_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNet-152 as released by the SENet authors: Caffe ResNet, stride on the first 1x1 conv."""
    model_args = dict(block=Bottleneck, layers=(3, 8, 36, 3), stride_in_1x1=True, **_SE_ORIG)
    return create_sesk_resnet('se_resnet152_orig', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnext26_32x4d_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-26 (32x4d) in the SENet authors' layout (timm's ``legacy_seresnext26_32x4d``)."""
    model_args = dict(block=Bottleneck, layers=(2, 2, 2, 2), cardinality=32, base_width=4, **_SE_ORIG)
    return create_sesk_resnet('se_resnext26_32x4d_orig', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnext50_32x4d_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-50 (32x4d) as released by the SENet authors."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3), cardinality=32, base_width=4, **_SE_ORIG)
    return create_sesk_resnet('se_resnext50_32x4d_orig', pretrained, **dict(model_args, **kwargs))


@register_model
def se_resnext101_32x4d_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SE-ResNeXt-101 (32x4d) as released by the SENet authors."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 23, 3), cardinality=32, base_width=4, **_SE_ORIG)
    return create_sesk_resnet('se_resnext101_32x4d_orig', pretrained, **dict(model_args, **kwargs))


@register_model
def se_net154_orig(pretrained: bool = False, **kwargs) -> SeskResNet:
    """SENet-154 as released by the SENet authors: 3x3 deep stem, 64x4d grouped bottlenecks with the first 1x1 at
    half width, 3x3 downsampling convs, dropout 0.2 before the classifier."""
    model_args = dict(
        block=Bottleneck, layers=(3, 8, 36, 3), cardinality=64, base_width=4, stem_type='deep', stem_width=64,
        block_reduce_first=2, down_kernel_size=3, drop_rate=0.2, **_SE_ORIG)
    return create_sesk_resnet('se_net154_orig', pretrained, **dict(model_args, **kwargs))

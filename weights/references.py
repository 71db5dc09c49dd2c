"""The published architecture each timm_sesk model reproduces, and how to build it.

Every model is proven equal to a reference network: timm's own implementation of the architecture, built from timm's
classes, whose state dict is mapped onto ours with a mapping from ``mapping.py``. The SENet authors' layout is
timm's ``legacy_*`` port of their Caffe models. SKNet-26 and SKNet-101 have no registered timm model; their
reference is timm's ResNet with timm's SK bottleneck at those depths, configured exactly as timm's SKNet-50.
"""
from dataclasses import dataclass, field
from typing import Any, Dict

import timm
from torch import nn

__all__ = ['REFERENCES', 'Reference', 'create_reference']


@dataclass(frozen=True)
class Reference:
    """A reference network for one of our architectures.

    Attributes:
        name: timm model name, or a descriptive name for a network built from timm's classes.
        mapping: Key of ``mapping.MAPPINGS`` turning its state dict into ours.
        timm_kwargs: For networks not registered in timm, the ``timm.models.ResNet`` arguments building them.
    """

    name: str
    mapping: str
    timm_kwargs: Dict[str, Any] = field(default_factory=dict)

    @property
    def registered(self) -> bool:
        return not self.timm_kwargs

    @property
    def description(self) -> str:
        if self.registered:
            return f"timm's `{self.name}`"
        return f"timm's ResNet with timm's SK bottleneck ({self.name})"


def _sknet(layers) -> Dict[str, Any]:
    # timm's skresnext50_32x4d configuration at another depth.
    return dict(
        layers=layers, cardinality=32, base_width=4, zero_init_last=False,
        block_args=dict(sk_kwargs=dict(rd_ratio=1 / 16, rd_divisor=32, split_input=False)))


REFERENCES: Dict[str, Reference] = {
    # SE family, timm's ResNet trunk
    'se_resnet18': Reference('seresnet18', 'timm_resnet'),
    'se_resnet34': Reference('seresnet34', 'timm_resnet'),
    'se_resnet50': Reference('seresnet50', 'timm_resnet'),
    'se_resnet101': Reference('seresnet101', 'timm_resnet'),
    'se_resnet152': Reference('seresnet152', 'timm_resnet'),
    'se_resnext50_32x4d': Reference('seresnext50_32x4d', 'timm_resnet'),
    'se_resnext101_32x4d': Reference('seresnext101_32x4d', 'timm_resnet'),
    # SE family, the SENet authors' networks
    'se_resnet18_orig': Reference('legacy_seresnet18', 'timm_senet'),
    'se_resnet34_orig': Reference('legacy_seresnet34', 'timm_senet'),
    'se_resnet50_orig': Reference('legacy_seresnet50', 'timm_senet'),
    'se_resnet101_orig': Reference('legacy_seresnet101', 'timm_senet'),
    'se_resnet152_orig': Reference('legacy_seresnet152', 'timm_senet'),
    'se_resnext26_32x4d_orig': Reference('legacy_seresnext26_32x4d', 'timm_senet'),
    'se_resnext50_32x4d_orig': Reference('legacy_seresnext50_32x4d', 'timm_senet'),
    'se_resnext101_32x4d_orig': Reference('legacy_seresnext101_32x4d', 'timm_senet'),
    'se_net154_orig': Reference('legacy_senet154', 'timm_senet'),
    # SK family
    'sk_resnet18': Reference('skresnet18', 'timm_sknet'),
    'sk_resnet34': Reference('skresnet34', 'timm_sknet'),
    'sk_resnet26': Reference('SKNet-26', 'timm_sknet', _sknet((2, 2, 2, 2))),
    'sk_resnet50': Reference('skresnext50_32x4d', 'timm_sknet'),
    'sk_resnet101': Reference('SKNet-101', 'timm_sknet', _sknet((3, 4, 23, 3))),
}


def create_reference(arch: str, **kwargs) -> nn.Module:
    """Build the reference network of one of our architectures, with timm's random initialisation.

    Args:
        arch: Our model name.
        **kwargs: Extra constructor arguments (``num_classes``, ``device``, ...).
    """
    ref = REFERENCES[arch]
    if ref.registered:
        return timm.create_model(ref.name, pretrained=False, **kwargs)
    from timm.models.resnet import ResNet
    from timm.models.sknet import SelectiveKernelBottleneck
    return ResNet(block=SelectiveKernelBottleneck, **ref.timm_kwargs, **kwargs)

"""SE and SK model families, registered with timm on import; each architecture is declared once (``archs``)."""
from . import archs, se_resnet, sk_resnet
from .archs import ARCHS, FAMILIES, Arch, Family, families_of
from .blocks import SE_POSITIONS, BasicBlock, Bottleneck
from .trunk import SeskResNet, create_sesk_resnet

__all__ = [
    'ARCHS', 'FAMILIES', 'SE_POSITIONS', 'Arch', 'BasicBlock', 'Bottleneck', 'Family', 'SeskResNet', 'archs',
    'create_sesk_resnet', 'families_of', 'se_resnet', 'sk_resnet',
]

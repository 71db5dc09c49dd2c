"""SE and SK model families, registered with timm on import."""
from . import se_resnet, sk_resnet
from .blocks import SE_POSITIONS, BasicBlock, Bottleneck
from .trunk import SeskResNet, create_sesk_resnet

__all__ = ['SE_POSITIONS', 'BasicBlock', 'Bottleneck', 'SeskResNet', 'create_sesk_resnet', 'se_resnet', 'sk_resnet']

"""The published architecture each timm_sesk model reproduces, and how to build it.

Every model is proven equal to a reference network: timm's own implementation of the architecture, built from timm's
classes, whose state dict is mapped onto ours with a mapping from ``mapping.py``. The SENet authors' layout is
timm's ``legacy_*`` port of their Caffe models. SKNet-26 and SKNet-101 have no registered timm model; their
reference is timm's ResNet with timm's SK bottleneck at those depths, configured exactly as timm's SKNet-50.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence, Tuple

import timm
from torch import nn

__all__ = ['REFERENCES', 'Reference', 'create_reference', 'describe_references']


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
        return describe_references([self])

    @classmethod
    def sk_bottleneck(cls, name: str, layers: Tuple[int, ...]) -> 'Reference':
        """SKNet at a depth timm registers no model for: timm's ResNet with timm's SK bottleneck, configured exactly
        as timm's ``skresnext50_32x4d`` (SKNet-50)."""
        return cls(name, 'timm_sknet', dict(
            layers=layers, cardinality=32, base_width=4, zero_init_last=False,
            block_args=dict(sk_kwargs=dict(rd_ratio=1 / 16, rd_divisor=32, split_input=False))))


# Our architecture -> its reference. Each model family fills it as it declares its architectures
# (timm_sesk.models.archs.declare), next to their entrypoints, as timm's registry is filled by @register_model.
REFERENCES: Dict[str, Reference] = {}


def describe_references(references: Sequence[Reference]) -> str:
    """One phrase naming several references, as README's zoo table and the model card give them."""
    registered = [f'`{r.name}`' for r in references if r.registered]
    built = [r.name for r in references if not r.registered]
    parts = [f"timm's {', '.join(registered)}"] if registered else []
    if built:
        parts.append(f"timm's ResNet with timm's SK bottleneck ({', '.join(built)})")
    return '; '.join(parts)


def create_reference(arch: str, **kwargs) -> nn.Module:
    """Build the reference network of one of our architectures, with timm's random initialisation.

    Args:
        arch: Our model name.
        **kwargs: Extra constructor arguments (``num_classes``, ``device``, ...).
    """
    ref = REFERENCES[arch]
    if ref.registered:
        return timm.create_model(ref.name, pretrained=False, **kwargs)
    from timm.models import ResNet
    from timm.models.sknet import SelectiveKernelBottleneck
    return ResNet(block=SelectiveKernelBottleneck, **ref.timm_kwargs, **kwargs)

"""Facts about each model in the zoo: size, compute, references and pretrained weights."""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from timm_sesk.weights import REFERENCES, WeightSpec, weights_for

__all__ = ['ModelFacts', 'count_gmacs', 'model_facts']


@dataclass(frozen=True)
class ModelFacts:
    """What the zoo knows about one architecture.

    Attributes:
        name: Registered model name.
        params_m: Parameters, millions (1000-class head).
        gmacs: Multiply-accumulates of convolutions and linear layers at ``input_size``, billions.
        input_size: Default input size (C, H, W).
        reference: The published network it reproduces.
        weights: Its pretrained tags, default first.
    """

    name: str
    params_m: float
    gmacs: float
    input_size: Tuple[int, int, int]
    reference: str
    weights: List[WeightSpec]

    @property
    def default_weights(self) -> Optional[WeightSpec]:
        return self.weights[0] if self.weights else None


def count_gmacs(model: torch.nn.Module, input_size: Tuple[int, int, int]) -> float:
    """MACs of one forward pass in GMACs, counted on the meta device (no memory, no compute).

    Args:
        model: Model on the meta device; counted in eval mode.
        input_size: (C, H, W) of one image.
    """
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, *input_size, device='meta'))
    model.train(was_training)
    return counter.get_total_flops() / 2e9


def model_facts(name: str) -> ModelFacts:
    """Gather the facts of a registered timm_sesk model without allocating its weights."""
    model = timm.create_model(name, device='meta')
    input_size = tuple(model.pretrained_cfg['input_size'])
    return ModelFacts(
        name=name,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        gmacs=count_gmacs(model, input_size),
        input_size=input_size,
        reference=REFERENCES[name].description,
        weights=weights_for(name),
    )

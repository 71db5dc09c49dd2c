"""Facts about each model in the zoo: size, compute, references and pretrained weights."""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from timm_sesk.layers import SelectiveKernel, SqueezeExcite
from timm_sesk.weights import REFERENCES, WeightSpec, weights_for

__all__ = ['ModelFacts', 'architecture_summary', 'count_gmacs', 'model_facts', 'window']


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


def window(kernel: int, dilation: int) -> str:
    """The window a ``kernel`` x ``kernel`` convolution with ``dilation`` covers, as ``'5x5'``."""
    size = dilation * (kernel - 1) + 1
    return f'{size}x{size}'


def _widths(pairs: Sequence[Tuple[int, int]]) -> str:
    """Distinct ``in→out`` widths, in depth order."""
    return ', '.join(f'{a}→{b}' for a, b in dict.fromkeys(pairs))


def architecture_summary(model: nn.Module) -> List[Tuple[str, str]]:
    """What a built zoo model (on any device, ``meta`` included) shows of its architecture, as (field, value)
    rows: its block layout, stem and SE / SK units."""
    stages = [getattr(model, f'layer{i}') for i in range(1, 5)]
    block = stages[0][0]
    spatial = block.conv2 if hasattr(block, 'conv3') else block.conv1  # the bottleneck's 3x3, the basic block's first
    groups = spatial.paths[0].conv.groups if isinstance(spatial, SelectiveKernel) else spatial.conv.groups
    rows = [('block', f'{type(block).__name__}, blocks per stage {tuple(len(s) for s in stages)}, 3x3 conv groups '
                      f'{groups}')]
    stem = 'deep 3x3 stem' if isinstance(model.conv1, nn.Sequential) else f'{model.conv1.kernel_size[0]}x' \
        f'{model.conv1.kernel_size[1]} stem conv'
    pool = ', Caffe max-pool (ceil mode, no padding)' if getattr(model.maxpool, 'ceil_mode', False) else ''
    rows.append(('stem', stem + pool))
    se = [(n, m) for n, m in model.named_modules() if isinstance(m, SqueezeExcite)]
    sk = [(n, m) for n, m in model.named_modules() if isinstance(m, SelectiveKernel)]
    if se:
        unit = se[0][1]
        positions = sorted({model.get_submodule(n.rpartition('.')[0]).attn_position for n, _ in se})
        rows.append(('SE units', (
            f'{len(se)}, position {"/".join(positions)}, squeeze {unit.squeeze_type}, gate '
            f'{type(unit.gate).__name__}, FC biases {"yes" if unit.fc1.bias is not None else "no"}; channels → '
            f'bottleneck: {_widths([(m.fc1.in_features, m.fc1.out_features) for _, m in se])}')))
    if sk:
        unit = sk[0][1]
        paths = ', '.join(
            f'{k}x{k} dilation {d} ({window(k, d)} window)'
            for k, d in ((p.conv.kernel_size[0], p.conv.dilation[0]) for p in unit.paths))
        rows.append(('SK units', (
            f'{len(sk)}, M={unit.num_paths} paths: {paths}; groups G={unit.paths[0].conv.groups}, input split '
            f'across paths: {"yes" if unit.split_input else "no"}; channels → fuse width d: '
            f'{_widths([(m.attn.fc_reduce.in_features, m.attn.fc_reduce.out_features) for _, m in sk])}')))
    if not se and not sk:
        rows.append(('attention', 'none (SE and SK switched off)'))
    return rows

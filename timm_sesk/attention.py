"""Attention introspection: the SE excitations and SK selection weights a model applies, block by block.

SE and SK units pass the weights they apply through an ``AttentionTap``, an identity module. ``record`` hooks those
taps only while its context is active, so a model outside it carries no hook at all: nothing costs time, and
TorchScript, torch.fx and torch.compile see the plain model.

    with timm_sesk.attention.record(model) as rec:
        model(images)
    rec.sk['layer2.0']   # B x M x C: the weight of each of the M paths, per channel, in the SK unit of block layer2.0
    rec.se['layer3.1']   # B x C: the excitation the SE unit of block layer3.1 multiplies its channels by

Keys are the names of the residual blocks holding the units (``'layer1.0'``, as in ``model.named_modules()``). A
block with more than one unit (e.g. SE and SK together, from ``sk_paths`` and ``se_position``) is keyed by each
unit's own module name instead (``'layer1.0.se'``, ``'layer1.0.conv2'``), so that keys stay unique.
"""
import contextlib
import threading
from dataclasses import dataclass
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import torch
from torch import nn

from timm_sesk.layers import AttentionTap, SelectiveKernel, SelectiveKernelAttn, SqueezeExcite
from timm_sesk.layers.conv_bn_act import is_recomputing
from timm_sesk.models.blocks import BasicBlock, Bottleneck

__all__ = ['AttentionRecord', 'AttentionUnit', 'find_units', 'record']


@dataclass(frozen=True)
class AttentionUnit:
    """One SE or SK unit of a model.

    Attributes:
        key: Its key in an ``AttentionRecord``: the residual block's name, or the unit's own name when the block
            holds several units.
        kind: ``'se'`` (excitation, ``B x C``) or ``'sk'`` (selection weights, ``B x M x C``).
        module: Name of the unit (the ``SqueezeExcite`` or ``SelectiveKernel`` module).
        block: Name of the residual block holding it (``''`` when it is not inside one).
        paths: For SK units, ``(kernel_size, dilation)`` of each path in order; a path covers a window of
            ``dilation * (kernel_size - 1) + 1`` pixels. Empty for SE units.
    """

    key: str
    kind: str
    module: str
    block: str
    paths: Tuple[Tuple[int, int], ...] = ()

    @property
    def num_paths(self) -> int:
        return len(self.paths)


def _parent(name: str) -> str:
    return name.rpartition('.')[0]


def _enclosing_block(name: str, modules: Mapping[str, nn.Module]) -> Optional[str]:
    while name:
        name = _parent(name)
        if isinstance(modules.get(name), (BasicBlock, Bottleneck)):
            return name
    return None


def _path_kernels(unit: nn.Module) -> Tuple[Tuple[int, int], ...]:
    if not isinstance(unit, SelectiveKernel):
        return ()
    return tuple((path.conv.kernel_size[0], path.conv.dilation[0]) for path in unit.paths)


def find_units(model: nn.Module) -> List[Tuple[AttentionUnit, AttentionTap]]:
    """The model's SE and SK units with their taps, in module order (input to output for the zoo's models).

    Taps that belong to no ``SqueezeExcite`` or ``SelectiveKernelAttn`` are left out.
    """
    modules = dict(model.named_modules())
    found = []  # (kind, unit name, block name, paths, tap)
    for name, tap in modules.items():
        if not isinstance(tap, AttentionTap):
            continue
        owner = _parent(name)
        if isinstance(modules.get(owner), SqueezeExcite):
            kind, unit = 'se', owner
        elif isinstance(modules.get(owner), SelectiveKernelAttn):
            # The attention is a child of its SelectiveKernel unit; name the unit, whose paths it weighs.
            kind, unit = 'sk', _parent(owner) if isinstance(modules.get(_parent(owner)), SelectiveKernel) else owner
        else:
            continue
        block = _enclosing_block(unit, modules)
        found.append((kind, unit, _parent(unit) if block is None else block, _path_kernels(modules[unit]), tap))
    per_block: Dict[str, int] = {}
    for _, _, block, _, _ in found:
        per_block[block] = per_block.get(block, 0) + 1
    units = []
    for kind, unit, block, paths, tap in found:
        key = block if per_block[block] == 1 and block else (unit or kind)
        units.append((AttentionUnit(key=key, kind=kind, module=unit, block=block, paths=paths), tap))
    return units


class AttentionRecord(Mapping[str, torch.Tensor]):
    """The attention weights recorded by ``record``: a mapping from unit key to a float32 tensor.

    SE units map to their excitation, ``B x C``; SK units to their selection weights, ``B x M x C``, which sum to 1
    over the M paths. Tensors are detached copies, safe to keep after the model runs again or changes them in place.

    Iteration follows the model's module order and covers the units recorded so far; ``units`` lists all of them.
    """

    def __init__(self, units: List[AttentionUnit], accumulate: bool = False):
        self.units: Dict[str, AttentionUnit] = {u.key: u for u in units}
        self.accumulate = accumulate
        self._weights: Dict[str, torch.Tensor] = {}

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._weights[key]

    def __iter__(self) -> Iterator[str]:
        return (key for key in self.units if key in self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    @property
    def se(self) -> Dict[str, torch.Tensor]:
        """Excitations ``B x C`` of the SE units, by key."""
        return {k: v for k, v in self.items() if self.units[k].kind == 'se'}

    @property
    def sk(self) -> Dict[str, torch.Tensor]:
        """Selection weights ``B x M x C`` of the SK units, by key."""
        return {k: v for k, v in self.items() if self.units[k].kind == 'sk'}

    def clear(self) -> None:
        """Forget everything recorded so far (the hooks stay while the context is active)."""
        self._weights.clear()

    def _add(self, unit: AttentionUnit, weights: torch.Tensor) -> None:
        weights = weights.detach().float().clone()  # the model may reuse the tensor; keep our own copy
        previous = self._weights.get(unit.key)
        if self.accumulate and previous is not None:
            weights = torch.cat([previous, weights], dim=0)
        self._weights[unit.key] = weights

    def _hook(self, unit: AttentionUnit):
        thread = threading.get_ident()

        def hook(module: nn.Module, args: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            # Hooks belong to the model, so they also see the passes other threads run on it; only the calls of the
            # thread that opened the record are its own. A memory-efficient SK unit recomputes its selection during
            # backward: that is no new forward pass.
            if threading.get_ident() == thread and not is_recomputing():
                self._add(unit, output)
        return hook


@contextlib.contextmanager
def record(model: nn.Module, accumulate: bool = False) -> Iterator[AttentionRecord]:
    """Record the SE excitations and SK selection weights of every forward pass run inside the context, by the thread
    that entered it: other threads running the same model meanwhile are not recorded (nor are the replicas that
    ``nn.DataParallel`` runs in threads of its own on several devices).

    Hooks are registered on the model's ``AttentionTap`` modules on entry and removed on exit, also when the body
    raises. Works in eval and train mode (a training step records its forward pass once, not again for the
    recomputation in backward), under ``torch.no_grad`` and ``torch.inference_mode``, in channels_last, and on
    models fused by ``timm_sesk.fuse``. The model must be an eager ``nn.Module`` (not a TorchScript module).

    Args:
        model: A timm_sesk model (or a ``features_only`` wrapper of one), or any module containing SE / SK units.
        accumulate: Several forward passes: False keeps each unit's weights from the last pass only; True
            concatenates them along the batch dimension, in the order the passes ran (inputs of different sizes
            may be mixed, since the weights are per channel).

    Yields:
        The ``AttentionRecord``, filled as the model runs; its tensors remain valid after the context exits.

    Raises:
        ValueError: The model has no SE or SK unit.
    """
    units = find_units(model)
    if not units:
        raise ValueError(
            f'{type(model).__name__} has no SE or SK unit to record (no timm_sesk AttentionTap inside a '
            f'SqueezeExcite or SelectiveKernel); record works on eager timm_sesk models, not TorchScript ones')
    rec = AttentionRecord([u for u, _ in units], accumulate=accumulate)
    handles = []
    try:
        for unit, tap in units:
            handles.append(tap.register_forward_hook(rec._hook(unit)))
        yield rec
    finally:
        for handle in handles:
            handle.remove()

"""Checkpoint files as users have them: fine-tunes, timm ``train.py`` checkpoints and source files fetched by hand.

What a file holds (its weights, and what ``train.py`` records with them: the model name and the data arguments),
which key layout it is in (timm_sesk's own, or the layout of one of the architecture's pretrained tags, which the
tag's ``pretrained_filter_fn`` maps), and, when it fits no layout, a short account of why: the keys it lacks and has
too many, and the architecture it seems to be for.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import timm
import torch
from torch import nn

from timm_sesk.weights import Checkpoint, Fit, convert_state_dict, fit, weights_for

__all__ = [
    'Layout',
    'data_args',
    'find_layout',
    'guess_arch',
    'head_size',
    'layouts',
    'mark_finetuned',
]

# train.py's data arguments that decide the eval transform (timm.data.resolve_data_config reads them).
_DATA_ARGS = ('input_size', 'img_size', 'crop_pct', 'crop_mode', 'mean', 'std', 'interpolation')
# Pretrained cfg fields that describe a tag's weights, not a fine-tune of them.
_TAG_FIELDS = ('tag', 'hf_hub_id', 'hf_hub_filename', 'url', 'file', 'origin_url', 'test_input_size',
               'test_crop_pct', 'label_names', 'label_descriptions')


@dataclass(frozen=True)
class Layout:
    """A key layout an architecture's checkpoints come in.

    Attributes:
        mapping: Key of ``timm_sesk.weights.MAPPINGS`` that maps it to timm_sesk's layout.
        tag: The pretrained tag whose source file has this layout; None for timm_sesk's own layout.
        source: The network that tag's file was saved from (``WeightSpec.trained_as``).
        graft: The file is a plain network's, grafted as it loads (a ``graft_*`` tag).
    """

    mapping: str = 'native'
    tag: Optional[str] = None
    source: Optional[str] = None
    graft: bool = False

    @property
    def plain(self) -> Optional[str]:
        """The plain timm network a graft tag's file is for."""
        return self.source if self.graft else None

    def describe(self) -> str:
        if self.tag is None:
            return "timm_sesk's layout"
        return f"{self.source}'s layout" + (', grafted' if self.graft else '')


def layouts(arch: str, tag: Optional[str] = None) -> List[Layout]:
    """The layouts a checkpoint for ``arch`` may come in: timm_sesk's own, then the tag's source layout (the default
    tag's if ``tag`` is None), then those of its other tags."""
    specs = sorted(weights_for(arch), key=lambda s: s.tag != tag) if tag else weights_for(arch)
    found = [Layout()]
    for spec in specs:
        layout = Layout(spec.mapping, spec.tag, spec.trained_as, spec.is_graft)
        if all((layout.mapping, layout.plain) != (f.mapping, f.plain) for f in found):
            found.append(layout)
    return found


def _mapped(state_dict: Dict[str, torch.Tensor], layout: Layout) -> Dict[str, torch.Tensor]:
    # A graft's file is a plain network's, which it is compared with as it is.
    return dict(state_dict) if layout.plain else convert_state_dict(state_dict, layout.mapping)


def head_size(state_dict: Dict[str, torch.Tensor], layout: Layout = Layout()) -> Optional[int]:
    """Classes of the checkpoint's classifier in a layout; None where it has none (or the layout does not apply)."""
    try:
        weight = _mapped(state_dict, layout).get('fc.weight')
    except (KeyError, ValueError):
        return None
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None


_STRUCTURES: Dict[str, Dict[str, torch.Size]] = {}


def _structure(name: str, model_args: Dict[str, Any]) -> Dict[str, torch.Size]:
    """A model's keys and shapes, built once on the meta device (no memory): guessing an architecture tries many."""
    key = f'{name} {sorted(model_args.items(), key=lambda item: item[0])!r}'
    if key not in _STRUCTURES:
        model = timm.create_model(name, device='meta', **model_args)
        _STRUCTURES[key] = {k: v.shape for k, v in model.state_dict().items()}
    return _STRUCTURES[key]


def _fit_layout(state_dict: Dict[str, torch.Tensor], arch: str, layout: Layout, model_args: Dict[str, Any]) -> Fit:
    args = dict(model_args)
    classes = head_size(state_dict, layout)
    if classes is not None:
        args.setdefault('num_classes', classes)
    if layout.plain:  # the plain twin, with no SE/SK arguments
        return fit(state_dict, _structure(layout.plain, {'num_classes': args.get('num_classes', 1000)}))
    try:
        mapped = _mapped(state_dict, layout)
    except (KeyError, ValueError):  # the mapping does not apply to these keys at all
        return Fit(list(_structure(arch, args)), list(state_dict), [])
    return fit(mapped, _structure(arch, args))


def find_layout(checkpoint: Checkpoint, arch: str, tag: Optional[str],
                model_args: Dict[str, Any]) -> Tuple[Optional[Layout], Fit]:
    """The first of ``layouts(arch, tag)`` in which the checkpoint fits the model exactly.

    Returns:
        ``(layout, fit)``: the layout (None if none fits) and its fit, or the closest layout's fit.
    """
    best = None
    for layout in layouts(arch, tag):
        result = _fit_layout(checkpoint.state_dict, arch, layout, model_args)
        if result.ok:
            return layout, result
        if best is None or result.problems < best.problems:
            best = result
    return None, best


def guess_arch(state_dict: Dict[str, torch.Tensor], candidates: Sequence[str]) -> Optional[Tuple[str, Layout]]:
    """The first of ``candidates`` (zoo architectures) that the state dict fits in one of its layouts, with default
    create_model arguments, and that layout; None if none does. Builds each on the meta device (about 0.1 s each)."""
    for arch in candidates:
        for layout in layouts(arch):
            if _fit_layout(state_dict, arch, layout, {}).ok:
                return arch, layout
    return None


def data_args(checkpoint: Checkpoint) -> Dict[str, Any]:
    """The data arguments ``train.py`` trained with (``img_size``, ``crop_pct``, ...), those that were set."""
    return {k: checkpoint.train_args[k] for k in _DATA_ARGS if checkpoint.train_args.get(k) not in (None, '')}


def mark_finetuned(model: nn.Module, data: Optional[Dict[str, Any]] = None) -> nn.Module:
    """Make the model's pretrained cfg describe its own weights, not the pretrained tag it was built from.

    The tag, its source and its evaluation recommendations go (so that exports, labels and messages do not name
    the ImageNet weights); ``data``, ``train.py``'s data arguments, sets the input size, crop and normalisation
    the weights were trained with.

    Args:
        model: A model holding fine-tuned (or random) weights.
        data: Data arguments as ``timm.data.resolve_data_config`` takes them; None keeps the cfg's.

    Returns:
        The same model.
    """
    cfg = dict(model.pretrained_cfg)
    for key in _TAG_FIELDS:
        cfg.pop(key, None)
    if data:
        from timm.data import resolve_data_config

        resolved = resolve_data_config(dict(data), model=model)
        cfg.update({k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in resolved.items()})
    model.pretrained_cfg = cfg
    return model

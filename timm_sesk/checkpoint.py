"""Checkpoint files as users have them: fine-tunes, timm ``train.py`` checkpoints and source files fetched by hand.

What a file holds (its weights, and what ``train.py`` records with them: the model name and the data arguments),
which key layout it is in (timm_sesk's own, or the layout of one of the architecture's pretrained tags, which the
tag's ``pretrained_filter_fn`` maps), and, when it fits no layout, a short account of why: the keys it lacks and has
too many, and the architecture it seems to be for.
"""
import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import timm
import torch
from torch import nn

from timm_sesk.weights import convert_state_dict, weights_for

__all__ = [
    'Checkpoint',
    'CheckpointReadError',
    'Fit',
    'Layout',
    'data_args',
    'find_layout',
    'fit',
    'guess_arch',
    'head_size',
    'layouts',
    'mark_finetuned',
    'read',
]

# Training checkpoints nest the weights under one of these keys; timm's reader prefers the EMA weights, as here.
_NESTED_KEYS = ('state_dict_ema', 'model_ema', 'state_dict', 'model')
# train.py's data arguments that decide the eval transform (timm.data.resolve_data_config reads them).
_DATA_ARGS = ('input_size', 'img_size', 'crop_pct', 'crop_mode', 'mean', 'std', 'interpolation')
# Pretrained cfg fields that describe a tag's weights, not a fine-tune of them.
_TAG_FIELDS = ('tag', 'hf_hub_id', 'hf_hub_filename', 'url', 'file', 'origin_url', 'test_input_size',
               'test_crop_pct', 'label_names', 'label_descriptions')


class CheckpointReadError(ValueError):
    """A checkpoint file cannot be read as weights."""


@dataclass
class Checkpoint:
    """A checkpoint file's weights, as published (not yet mapped to any layout).

    Attributes:
        path: The file.
        state_dict: Its weights, EMA ones first where a training checkpoint has them, wrapper prefixes removed.
        arch: The model it was trained as, where the file says (``train.py`` records ``--model`` as ``arch``).
        train_args: ``train.py``'s arguments, where the file carries them.
    """

    path: str
    state_dict: Dict[str, torch.Tensor]
    arch: Optional[str] = None
    train_args: Dict[str, Any] = field(default_factory=dict)


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


@dataclass
class Fit:
    """How a state dict fits a model: the model's keys it lacks, its keys the model lacks, and shapes that differ."""

    missing: List[str]
    unexpected: List[str]
    mismatched: List[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)

    def describe(self, examples: int = 2) -> str:
        """E.g. ``12 missing keys (layer1.0.se.fc1.weight, ...), 3 unexpected (...)``, short enough for one line."""
        parts = []
        for what, keys in (('missing key', self.missing), ('unexpected key', self.unexpected),
                           ('shape mismatch', self.mismatched)):
            if keys:
                more = ', ...' if len(keys) > examples else ''
                plural = '' if len(keys) == 1 else 'es' if what.endswith('h') else 's'
                parts.append(f'{len(keys)} {what}{plural} ({", ".join(keys[:examples])}{more})')
        return ', '.join(parts) or 'it fits'


def read(path: Union[str, Path]) -> Checkpoint:
    """Read a checkpoint: safetensors, or a PyTorch file loaded with ``weights_only=True``.

    A training checkpoint's ``argparse.Namespace`` of arguments is the one Python object allowed besides tensors,
    as timm's own reader allows it.

    Raises:
        CheckpointReadError: The file is not a checkpoint (or holds other Python objects).
    """
    path = str(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(9)
        if len(head) == 9 and head[8:9] == b'{':  # safetensors: an 8-byte header length, then the JSON header
            import safetensors.torch

            content: Any = safetensors.torch.load_file(path)
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                content = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch and safetensors raise many kinds for a bad file; each is one reason here
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointReadError(f'cannot read checkpoint {path}: {reason}') from e
    if not isinstance(content, dict):
        raise CheckpointReadError(f'cannot read checkpoint {path}: it holds a {type(content).__name__}, not weights')
    arch = content.get('arch') if isinstance(content.get('arch'), str) else None
    args = content.get('args')
    train_args = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}
    weights = next((content[k] for k in _NESTED_KEYS if isinstance(content.get(k), dict)), content)
    from timm.models import clean_state_dict

    state_dict = {k: v for k, v in clean_state_dict(weights).items() if isinstance(v, torch.Tensor)}
    if not state_dict:
        raise CheckpointReadError(f'cannot read checkpoint {path}: it holds no tensors')
    return Checkpoint(path, state_dict, arch, train_args)


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


def fit(state_dict: Dict[str, torch.Tensor], expected: Dict[str, torch.Size]) -> Fit:
    """How ``state_dict`` fits a model whose state dict has the keys and shapes ``expected``."""
    return Fit(
        missing=[k for k in expected if k not in state_dict],
        unexpected=[k for k in state_dict if k not in expected],
        mismatched=[f'{k} {tuple(state_dict[k].shape)} vs {tuple(shape)}' for k, shape in expected.items()
                    if k in state_dict and state_dict[k].shape != shape])


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

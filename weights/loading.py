"""Reading checkpoints into our layout, and timm's ``pretrained_filter_fn`` for the models.

How ``pretrained=True`` reaches a file (sources, downloads, pins, errors) is ``_pretrained``'s business; this module is
what a checkpoint goes through once read: mapped to our key layout and required to fit the model exactly.
"""
import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ._pretrained import find_spec
from .errors import CheckpointReadError
from .manifest import is_graft_tag
from .mapping import check_state_dict, convert_state_dict

__all__ = ['Checkpoint', 'checkpoint_filter_fn', 'read_checkpoint']

# Training checkpoints nest the weights under one of these keys; the EMA weights first, as timm's reader takes them.
_NESTED_KEYS = ('state_dict_ema', 'model_ema', 'state_dict', 'model')


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

    @classmethod
    def read(cls, path: Union[str, Path, os.PathLike]) -> 'Checkpoint':
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
            raise CheckpointReadError(
                f'cannot read checkpoint {path}: it holds a {type(content).__name__}, not weights')
        arch = content.get('arch') if isinstance(content.get('arch'), str) else None
        args = content.get('args')
        train_args = vars(args) if isinstance(args, argparse.Namespace) else \
            dict(args) if isinstance(args, dict) else {}
        weights = next((content[k] for k in _NESTED_KEYS if isinstance(content.get(k), dict)), content)
        from timm.models import clean_state_dict

        state_dict = {k: v for k, v in clean_state_dict(weights).items() if isinstance(v, torch.Tensor)}
        if not state_dict:
            raise CheckpointReadError(f'cannot read checkpoint {path}: it holds no tensors')
        return cls(path, state_dict, arch, train_args)


def read_checkpoint(path: Union[str, Path, os.PathLike]) -> Dict[str, torch.Tensor]:
    """A local checkpoint (a fine-tuned one, say) as a state dict in timm_sesk's key layout (``Checkpoint.read``).

    Raises:
        CheckpointReadError: The file cannot be read as weights.
    """
    return convert_state_dict(Checkpoint.read(path).state_dict, 'native')


def _source(cfg: Dict[str, Any], spec: Any) -> str:
    """The checkpoint a pretrained cfg loaded, as messages name it."""
    if cfg.get('state_dict'):
        return 'the state_dict passed in the pretrained cfg'
    if cfg.get('file'):  # a local copy of a tag's file (or a downloaded URL file): name the file itself
        return str(cfg['file'])
    if spec is not None:
        return spec.source
    return f"hf-hub:{cfg['hf_hub_id']}" if cfg.get('hf_hub_id') else str(cfg.get('url') or 'checkpoint')


def _in_own_layout(state_dict: Dict[str, Any], model: torch.nn.Module) -> bool:
    """Whether a checkpoint already holds every tensor of the model under our names (its SE/SK units included, which
    a plain network's checkpoint never has)."""
    return set(model.state_dict()) <= set(convert_state_dict(state_dict, 'native'))


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: torch.nn.Module) -> Dict[str, Any]:
    """timm ``pretrained_filter_fn``: map a checkpoint to our layout and check that it fits the model exactly.

    A ``graft_*`` tag's checkpoint is a plain ResNet's, grafted onto the model (``timm_sesk.graft``).
    """
    cfg = model.pretrained_cfg
    spec = find_spec(cfg)
    # A graft tag's own source holds the plain twin's weights, as does timm_sesk.graft's state dict; a graft tag's
    # name on another repository (a fine-tune exported with timm_sesk) holds our own layout.
    grafting = spec.is_graft if spec else (bool(cfg.get('state_dict')) and is_graft_tag(cfg.get('tag')))
    if grafting and _in_own_layout(state_dict, model):  # a fine-tune of the grafted model, passed back as a file
        grafting, spec = False, None
    if grafting:
        from timm_sesk.graft import graft_state_dict  # lazily: the graft builds on the models, which import this

        mapped = graft_state_dict(state_dict, model, mapping=spec.mapping if spec else 'timm_resnet')
    else:
        mapped = convert_state_dict(state_dict, spec.mapping if spec else 'native')
    adaptable = [cfg.get('first_conv') or 'conv1', cfg.get('classifier') or 'fc']
    check_state_dict(mapped, model, adaptable=[a + '.' for a in adaptable],
                     source=f'pretrained weights ({_source(cfg, spec)})')
    return mapped

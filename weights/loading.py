"""Reading checkpoints into our layout, and timm's ``pretrained_filter_fn`` for the models.

How ``pretrained=True`` reaches a file (sources, downloads, pins, errors) is ``_pretrained``'s business; this module is
what a checkpoint goes through once read: mapped to our key layout and required to fit the model exactly.
"""
from typing import Any, Dict

import torch

from ._pretrained import find_spec
from .manifest import is_graft_tag
from .mapping import check_state_dict, convert_state_dict

__all__ = ['checkpoint_filter_fn', 'read_checkpoint']


def read_checkpoint(path: Any) -> Dict[str, torch.Tensor]:
    """A local checkpoint (a fine-tuned one, say) as a state dict in timm_sesk's key layout.

    safetensors, or a PyTorch file read with ``weights_only=True`` (tensors only, never arbitrary objects); timm's
    reader takes a train.py checkpoint's ``state_dict`` and strips DDP / torch.compile prefixes.
    """
    from timm.models import load_state_dict

    return convert_state_dict(load_state_dict(str(path), weights_only=True), 'native')


def _source(cfg: Dict[str, Any], spec: Any) -> str:
    """The checkpoint a pretrained cfg loaded, as messages name it."""
    if cfg.get('state_dict'):
        return 'the state_dict passed in the pretrained cfg'
    if cfg.get('file'):  # a local copy of a tag's file (or a downloaded URL file): name the file itself
        return str(cfg['file'])
    if spec is not None:
        return spec.source
    return f"hf-hub:{cfg['hf_hub_id']}" if cfg.get('hf_hub_id') else str(cfg.get('url') or 'checkpoint')


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: torch.nn.Module) -> Dict[str, Any]:
    """timm ``pretrained_filter_fn``: map a checkpoint to our layout and check that it fits the model exactly.

    A ``graft_*`` tag's checkpoint is a plain ResNet's, grafted onto the model (``timm_sesk.graft``).
    """
    cfg = model.pretrained_cfg
    spec = find_spec(cfg)
    # A graft tag's own source holds the plain twin's weights, as does timm_sesk.graft's state dict; a graft tag's
    # name on another repository (a fine-tune exported with timm_sesk) holds our own layout.
    grafting = spec.is_graft if spec else (bool(cfg.get('state_dict')) and is_graft_tag(cfg.get('tag')))
    if grafting:
        from timm_sesk.graft import graft_state_dict  # lazily: the graft builds on the models, which import this

        mapped = graft_state_dict(state_dict, model, mapping=spec.mapping if spec else 'timm_resnet')
    else:
        mapped = convert_state_dict(state_dict, spec.mapping if spec else 'native')
    adaptable = [cfg.get('first_conv') or 'conv1', cfg.get('classifier') or 'fc']
    check_state_dict(mapped, model, adaptable=[a + '.' for a in adaptable],
                     source=f'pretrained weights ({_source(cfg, spec)})')
    return mapped

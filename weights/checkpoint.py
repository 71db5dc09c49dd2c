"""Checkpoint files as users have them: safetensors, PyTorch state dicts and timm ``train.py`` checkpoints.

``unwrap`` is the one place where the weights are taken out of a training checkpoint (EMA weights first, as timm's
``load_checkpoint`` takes them) and freed of wrapper prefixes; ``Checkpoint.read`` reads a file with it, with
safetensors or ``torch.load(weights_only=True)``, and keeps what ``train.py`` records beside the weights.
"""
import argparse
import os
import pickletools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from timm.models import clean_state_dict

from timm_sesk.errors import CheckpointReadError
from timm_sesk.files import not_a_file

from .values import check_storage

__all__ = ['EMA_KEYS', 'Checkpoint', 'ema_choice', 'unwrap']

StateDict = Dict[str, torch.Tensor]

# Training checkpoints nest the weights under one of these keys; the EMA weights first, as timm's reader takes them.
EMA_KEYS = ('state_dict_ema', 'model_ema')
_MODEL_KEYS = ('state_dict', 'model')
# train.py's data arguments that decide the eval transform (timm.data.resolve_data_config reads them).
_DATA_ARGS = ('input_size', 'img_size', 'crop_pct', 'crop_mode', 'mean', 'std', 'interpolation')


def unwrap(checkpoint: Mapping[str, Any], ema: bool = True) -> Tuple[StateDict, Optional[str]]:
    """The weights of a checkpoint, and the entry of a training checkpoint they were taken from.

    Args:
        checkpoint: A state dict, or a training checkpoint holding one (``train.py``'s, mmcv's, ...).
        ema: Take a training checkpoint's EMA weights where it has them.

    Returns:
        ``(state_dict, entry)``: its tensors, DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) prefixes
        removed, and the key they were nested under (``'state_dict_ema'``, ``'state_dict'``, ...), or None for a
        plain state dict.
    """
    for key in (*EMA_KEYS, *_MODEL_KEYS) if ema else _MODEL_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            return unwrap(checkpoint[key], ema)[0], key
    return {k: v for k, v in clean_state_dict(dict(checkpoint)).items() if isinstance(v, torch.Tensor)}, None


def ema_choice(checkpoint: Mapping[str, Any], entry: Optional[str]) -> Optional[bool]:
    """Whether ``unwrap`` took a training checkpoint's EMA weights (True) or its others (False), where it holds both;
    None where there was no choice (one set of weights)."""
    holds = [any(isinstance(checkpoint.get(k), Mapping) for k in keys) for keys in (EMA_KEYS, _MODEL_KEYS)]
    return entry in EMA_KEYS if all(holds) else None



# What a pickled state dict constructs besides its tensors' storages: none of it is a payload.
_TENSOR_GLOBALS = ('torch.', 'collections.OrderedDict')
# torch.save's legacy (non-zip) format: pickles of its magic number, protocol, system info, then of the object.
_LEGACY_PICKLES = 4


def is_safetensors(path: str) -> bool:
    """Whether the file is safetensors by its content (an 8-byte header length, then the JSON header), whatever its
    name."""
    with open(path, 'rb') as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b'{'


def pickled_objects(path: str) -> Optional[List[str]]:
    """The Python objects other than tensors a pickled checkpoint would construct (names where known), else None.

    A zip checkpoint (``torch.save``) is listed by torch's ``get_unsafe_globals_in_checkpoint``; a legacy one
    (``_use_new_zipfile_serialization=False``) or a bare pickle counts when its pickles parse and name any object.
    Anything else is None: a file that does not parse is corrupt, not a payload.
    """
    try:
        if zipfile.is_zipfile(path):
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or None
        ops = []
        with open(path, 'rb') as f:
            for i in range(_LEGACY_PICKLES):
                try:
                    ops += [(op.name, arg) for op, arg, _ in pickletools.genops(f)]
                except Exception:
                    if i == 0:  # not even one pickle
                        raise
                    break  # a bare pickle ends here; a legacy file's storages follow its pickles
    except Exception:  # an unparsable file holds no objects we could name: it is corrupt
        return None
    named = {str(arg).replace(' ', '.') for name, arg in ops if name in ('GLOBAL', 'INST')}
    objects = sorted(n for n in named if not n.startswith(_TENSOR_GLOBALS))
    if not objects and not any(name == 'STACK_GLOBAL' for name, _ in ops):
        return None  # tensors only (a legacy checkpoint that fails for another reason)
    return objects

@dataclass
class Checkpoint:
    """A checkpoint file's weights, as published (not yet mapped to any layout).

    Attributes:
        path: The file.
        state_dict: Its weights (``unwrap``).
        entry: The training checkpoint's entry they were taken from, None for a plain state dict.
        arch: The model it was trained as, where the file says (``train.py`` records ``--model`` as ``arch``).
        train_args: ``train.py``'s arguments, where the file carries them.
        ema: Whether they are its EMA weights, where it holds EMA and other weights (``ema_choice``); else None.
    """

    path: str
    state_dict: StateDict
    entry: Optional[str] = None
    arch: Optional[str] = None
    train_args: Dict[str, Any] = field(default_factory=dict)
    ema: Optional[bool] = None

    @classmethod
    def read(cls, path: Union[str, Path, os.PathLike], ema: bool = True) -> 'Checkpoint':
        """Read a checkpoint: safetensors (told by its content, not its name), or a PyTorch file loaded with
        ``weights_only=True``.

        A training checkpoint's ``argparse.Namespace`` of arguments is the one Python object allowed besides tensors,
        as timm's own reader allows it.

        Args:
            path: The file.
            ema: Take a training checkpoint's EMA weights where it has them.

        Raises:
            CheckpointReadError: The file is not a checkpoint (or holds other Python objects).
            InvalidWeightsError: A tensor declares more values than the file stores for it (``check_storage``):
                refused here, before its shape sizes a model.
        """
        path = str(path)
        kind = not_a_file(path)
        if kind:  # before open: a FIFO's would block until something writes to it
            raise CheckpointReadError(f'cannot read checkpoint {path}: it is {kind}, not a file')
        try:
            if is_safetensors(path):
                import safetensors.torch

                content: Any = safetensors.torch.load_file(path)
            else:
                with torch.serialization.safe_globals([argparse.Namespace]):
                    content = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:  # torch and safetensors raise many kinds for a bad file; each is one reason here
            objects = pickled_objects(path)
            if objects is not None:  # torch's own line would suggest weights_only=False: never
                named = f': {", ".join(objects)}' if objects else ''
                reason = f'it holds Python objects other than tensors, which are never unpickled here{named}'
            else:
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointReadError(f'cannot read checkpoint {path}: {reason}') from e
        if not isinstance(content, dict):
            raise CheckpointReadError(
                f'cannot read checkpoint {path}: it holds a {type(content).__name__}, not weights')
        arch = content.get('arch') if isinstance(content.get('arch'), str) else None
        args = content.get('args')
        train_args = vars(args) if isinstance(args, argparse.Namespace) else \
            dict(args) if isinstance(args, dict) else {}
        state_dict, entry = unwrap(content, ema)
        if not state_dict:
            raise CheckpointReadError(f'cannot read checkpoint {path}: it holds no tensors')
        check_storage(state_dict, f'checkpoint {path}')
        return cls(path, state_dict, entry, arch, train_args, ema_choice(content, entry))

    @property
    def data_args(self) -> Dict[str, Any]:
        """The data arguments ``train.py`` trained with (``img_size``, ``crop_pct``, ...), those that were set."""
        return {k: self.train_args[k] for k in _DATA_ARGS if self.train_args.get(k) not in (None, '')}

"""Weights checked before use: sizes backed by the bytes of their file, and values a model can compute with.

A checkpoint's tensors decide what is allocated (a model is sized by its head) and what the model computes. Both are
checked before anything loads, and a tensor that fails is refused by its name (``InvalidWeightsError``):

- ``check_storage`` (``Checkpoint.read``, before a file's head sizes a model): a tensor may not declare more values
  than its storage holds. ``torch.save`` of a broadcast view (``expand``: stride 0) stores the few values behind it
  and the whole shape, so a 46 MB file can declare a head of 1.5 billion values; with this check a file's tensors
  take at most the memory the file itself holds. (Safetensors files cannot hold such views.)
- ``check_values`` (every route of the loader, once the weights fit the model): every floating-point tensor is
  finite (NaN and infinity only ever give NaN logits), BatchNorm running variances are not negative (the norm takes
  their square root), and a tensor that the model holds in floating point is floating point in the weights (an int8
  or bool tensor would be cast into the model without a word). Integer buffers (``num_batches_tracked``) stay
  integers. It costs one float32 sum per tensor, tested all at once; only a tensor whose sum is not finite is looked
  at element by element.
"""
from typing import Dict, List, Mapping, Optional

import torch

from timm_sesk.errors import InvalidWeightsError

__all__ = ['check_storage', 'check_values']

# Sums of these are exact enough in float32 to tell finite tensors (a non-finite element makes the sum non-finite; a
# finite tensor whose sum overflows is looked at element by element).
_SUMMABLE = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _refuse(source: str, key: str, problem: str, fix: str,
            original: Optional[Mapping[str, torch.Tensor]] = None, tensor: Optional[torch.Tensor] = None) -> None:
    """Raise ``InvalidWeightsError`` for the tensor ``key``, named as the source names it where it was renamed."""
    name = next((k for k, v in (original or {}).items() if v is tensor), key)
    here = f' ({key} here)' if name != key else ''
    raise InvalidWeightsError(f'{source}: tensor {name}{here} {problem}, so nothing was loaded. {fix}', source, name)


def check_storage(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse a tensor whose shape holds more values than its storage (see the module docstring).

    Args:
        tensors: A state dict, as read.
        source: The weights, as messages name them (``checkpoint PATH``).

    Raises:
        InvalidWeightsError: A tensor declares more values than its storage holds.
    """
    for key, tensor in tensors.items():
        if tensor.device.type == 'meta':
            continue
        stored = tensor.untyped_storage().nbytes() // tensor.element_size()
        if tensor.numel() > stored:
            _refuse(source, key, f'declares {tuple(tensor.shape)} ({tensor.numel()} values) but its file stores '
                    f'{stored} (a broadcast view, saved with its stride-0 shape)',
                    'Save the tensor itself (tensor.clone()), so that its size is that of its data.')


def check_values(tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.dtype], source: str,
                 original: Optional[Mapping[str, torch.Tensor]] = None) -> None:
    """Refuse weights that a model cannot compute with (see the module docstring).

    Args:
        tensors: The weights in the model's layout.
        expected: The dtype of each of the model's tensors, by key.
        source: The weights, as messages name them.
        original: The weights as their source names them, for messages (a tensor renamed by a key mapping is the
            same tensor object).

    Raises:
        InvalidWeightsError: A tensor is refused; its name and the reason are in the message.
    """
    floating = {}
    for key, tensor in tensors.items():
        ours = expected.get(key)
        if tensor.is_floating_point():
            if tensor.device.type != 'meta':
                floating[key] = tensor
        elif ours is not None and ours.is_floating_point:
            _refuse(source, key, f'is {str(tensor.dtype)[6:]} where the model holds {str(ours)[6:]}',
                    'Integer, boolean or quantized tensors are not the float weights the model computes with: '
                    'load the floating-point checkpoint they were made from.', original, tensor)
    for key in _not_finite(floating):
        tensor = floating[key]
        nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        _refuse(source, key, f'holds {nan} NaN and {inf} infinite values (of {tensor.numel()})',
                'Non-finite weights come from a diverged training run or a broken conversion: take an earlier '
                'checkpoint.', original, tensor)
    for key, tensor in floating.items():
        if key.endswith('.running_var') and bool((tensor < 0).any()):
            _refuse(source, key, f'holds {int((tensor < 0).sum())} negative running variances',
                    'A BatchNorm variance below 0 gives NaN outputs: the checkpoint is corrupt.', original, tensor)


def _not_finite(tensors: Mapping[str, torch.Tensor]) -> List[str]:
    """The keys of the tensors holding NaN or infinity: a float32 sum of each, all tested at once, and only a tensor
    whose sum is not finite (or that cannot be summed so) tested element by element."""
    suspects = {k for k, t in tensors.items() if t.dtype not in _SUMMABLE}
    by_device: Dict[torch.device, List[str]] = {}
    for key, tensor in tensors.items():
        if tensor.dtype in _SUMMABLE:
            by_device.setdefault(tensor.device, []).append(key)
    for keys in by_device.values():
        sums = torch.stack([tensors[k].sum(dtype=torch.float32) for k in keys])
        suspects.update(keys[i] for i in torch.nonzero(~torch.isfinite(sums)).flatten().tolist())
    return [k for k in tensors if k in suspects and not bool(torch.isfinite(tensors[k]).all())]

"""Grafts: SE and SK networks that start as exactly the function of a pretrained plain ResNet.

``graft(plain, arch)`` turns a plain ResNet / ResNeXt (timm's ``resnet*``, ``resnext*``, or your own fine-tune of
one) into one of our SE or SK models whose outputs equal the plain network's, in eval and in training mode, and in
which every new parameter gets a non-zero gradient within the first two optimizer steps. ``graft_state_dict`` is the
graft itself: ``timm_sesk.load_weights`` (and so the models' pretrained filter) applies it to weights it finds in a
plain network's layout, such as the files of the ``graft_*`` tags, the plain twins' Hub weights.

How each unit starts (y is the branch's output before the residual addition):

* **SE** (standard position, after the branch's last BatchNorm): the last FC is zero (weight and bias), so the gate is
  sigmoid(0) = 0.5 exactly; the branch's last BatchNorm weight and bias are doubled, so the norm outputs exactly 2y
  (scaling by 2 is exact in floating point, in eval and in training mode) and the SE unit passes 0.5 * 2y = y. The
  first FC keeps its random init: the last FC gets a gradient at step 1 (its input is non-zero), the first at step 2.
* **SK in a bottleneck** (SKNet-26/50/101): path 1 is the plain grouped 3x3 conv and norm. Every other path starts
  at a constant c > 0: its BatchNorm has weight 0 and bias c (and neutral running statistics), which outputs c in
  eval and in training mode, and c > 0 keeps its ReLU passing gradient; its conv keeps its random init and gets a
  gradient once the norm's weight has moved (step 2). The select FC is zero, so each of the M paths gets weight 1/M
  and the unit outputs V = U_1 / M + c (M - 1) / M. The following 1x1 conv's weight W is multiplied by M, which
  gives W U_1 plus a per-channel constant K = c (M - 1) sum_i W[:, i]; adding K to that conv's BatchNorm running mean
  removes it in eval, and in training the batch mean removes it by itself (and the running mean keeps tracking it).
* **SK in a basic block** (a non-split unit with dense kernels, ``sk_split_input=False, sk_keep_3x3=False``): every
  path starts as the plain 3x3 conv, embedded in the centre of its larger kernel (the extra padding offsets the
  window by exactly the embedding), with a copy of its norm. All paths are then equal, so V = U_1 for any attention
  weights, and the attention keeps its random init: the paths get different gradients (a_1 != a_2) at step 1, and
  from step 2 on they differ, which gives the attention its gradient. A constant path cannot be used here: the next
  conv is a padded 3x3, which turns a constant into a border-dependent map.

Not graftable exactly, and refused: SK units that split their input across the paths (``sk_resnet18/34`` as timm
designs them: path 1 sees only half of the channels, so it cannot be the plain conv), dilated paths in basic blocks,
SE anywhere but the standard position or with a gate whose value at 0 is not 0.5, and the SENet authors' layout
(the ``*_orig`` models: Caffe stem pooling, stride in the first 1x1, Cadene's branch activation), which computes
another function than timm's plain ResNets with the same keys and shapes.
"""
import os
from collections import Counter
from typing import Any, Dict, Mapping, Optional, Union

import timm
import torch
from torch import nn

from timm_sesk.errors import NotGraftableError, PretrainedWeightsError
from timm_sesk.layers import ConvBnAct, SelectiveKernel, SqueezeExcite
from timm_sesk.loading import PLAIN, load_weights
from timm_sesk.models.blocks import BasicBlock, Bottleneck
from timm_sesk.weights import Checkpoint, convert_state_dict, unwrap

__all__ = ['SK_CONSTANT', 'NotGraftableError', 'graft', 'graft_state_dict']

# Value every new SK path starts at in a bottleneck: positive so that its ReLU passes gradient, of the order of a
# post-ReLU activation of the plain path.
SK_CONSTANT = 0.5

StateDict = Dict[str, torch.Tensor]


class _Ledger:
    """Builds the grafted state dict and accounts for every plain tensor: each is used exactly once."""

    def __init__(self, plain: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]):
        self.plain = plain
        self.own = own
        self.out: StateDict = {}
        self.used: Counter = Counter()

    def take(self, key: str, source: Optional[str] = None) -> None:
        """Model tensor ``key`` from plain tensor ``source`` (default: the same key), as it is (never changed in
        place: the graft computes new tensors where it changes one)."""
        source = source or key
        self.used[source] += 1
        if source in self.plain:
            self.out[key] = self.plain[source]

    def take_module(self, prefix: str, module: nn.Module, source: Optional[str] = None) -> None:
        """Every tensor of ``module`` (at ``prefix``) from the plain tensors under ``source`` (default: ``prefix``)."""
        for name in module.state_dict():
            self.take(f'{prefix}.{name}', f'{source or prefix}.{name}')

    def keep(self, prefix: str, module: nn.Module) -> None:
        """Every tensor of a new ``module`` keeps the model's own initialisation."""
        for name in module.state_dict():
            self.out[f'{prefix}.{name}'] = self.own[f'{prefix}.{name}'].clone()

    def fill(self, key: str, value: float) -> None:
        self.out[key] = torch.full_like(self.own[key], value)

    def check(self, model_side: bool = True) -> None:
        """Raise unless every plain tensor was used exactly once and (``model_side``) every model tensor was
        produced."""
        unused = [k for k in self.plain if not self.used[k]]
        absent = [k for k in self.used if k not in self.plain]
        twice = [k for k, n in self.used.items() if n > 1]
        missing = [k for k in self.own if k not in self.out] if model_side else []
        problems = [f'{what}: {", ".join(keys[:12])}' + (f', ... ({len(keys) - 12} more)' if len(keys) > 12 else '')
                    for what, keys in (('plain tensors not used', unused), ('plain tensors missing', absent),
                                       ('plain tensors used twice', twice), ('model tensors not produced', missing))
                    if keys]
        if problems:
            raise PretrainedWeightsError(
                'the plain checkpoint does not fit the grafted architecture, so nothing was loaded; '
                + '; '.join(problems) + '. The plain network must have the same trunk (depth, widths, cardinality, '
                'stem) as the SE/SK model: pass the matching create_model arguments (e.g. layers=...).')


def _spatial_and_last(block: nn.Module) -> tuple:
    """Names of the block's spatial conv (the one SK replaces) and of its last conv (before SE and the addition)."""
    return ('conv2', 'conv3') if isinstance(block, Bottleneck) else ('conv1', 'conv2')


def _graft_se(ledger: _Ledger, prefix: str, block: nn.Module, last: str) -> None:
    se = block.se
    if not isinstance(se, SqueezeExcite) or block.attn_position != 'standard':
        raise NotGraftableError(
            f'{prefix}: only SE in the standard position (after the branch\'s last norm) is graftable exactly; got '
            f'{type(se).__name__} at {block.attn_position!r}. Use se_position="standard".')
    half = se.gate(torch.zeros(1)).item()
    if half != 0.5:  # the doubled norm is only compensated by a gate of exactly 1/2 at a zero input
        raise NotGraftableError(f'{prefix}: the SE gate gives {half} at 0, not 0.5; use se_gate="sigmoid".')
    ledger.keep(f'{prefix}.se', se)
    for name in se.fc2.state_dict():
        ledger.fill(f'{prefix}.se.fc2.{name}', 0.0)
    for name in ('weight', 'bias'):
        ledger.out[f'{prefix}.{last}.bn.{name}'] = ledger.out[f'{prefix}.{last}.bn.{name}'] * 2


def _graft_sk_constant(ledger: _Ledger, prefix: str, sk: SelectiveKernel, last_prefix: str, c: float) -> None:
    """Bottleneck SK: path 1 is the plain conv, the others a constant c absorbed by the following 1x1 conv."""
    for i in range(1, sk.num_paths):
        path = f'{prefix}.paths.{i}'
        ledger.keep(path, sk.paths[i])
        ledger.fill(f'{path}.bn.weight', 0.0)
        ledger.fill(f'{path}.bn.bias', c)
        ledger.fill(f'{path}.bn.running_mean', 0.0)
        ledger.fill(f'{path}.bn.running_var', 1.0)
    ledger.keep(f'{prefix}.attn', sk.attn)
    ledger.fill(f'{prefix}.attn.fc_select.weight', 0.0)
    # V = U_1 / M + c (M - 1) / M; the next conv, weight x M, gives W U_1 + K with K = c (M - 1) sum_i W[:, i].
    weight = ledger.out[f'{last_prefix}.conv.weight']
    offset = c * (sk.num_paths - 1) * weight.double().sum(dim=(1, 2, 3))
    ledger.out[f'{last_prefix}.conv.weight'] = weight * sk.num_paths
    mean = ledger.out[f'{last_prefix}.bn.running_mean']
    ledger.out[f'{last_prefix}.bn.running_mean'] = (mean.double() + offset).to(mean.dtype)


def _graft_sk_equal_paths(ledger: _Ledger, prefix: str, sk: SelectiveKernel) -> None:
    """Basic-block SK with dense kernels: every path is the plain 3x3, embedded in its kernel's centre."""
    first = sk.paths[0].conv
    weight = ledger.out[f'{prefix}.paths.0.conv.weight']
    for i in range(1, sk.num_paths):
        path = f'{prefix}.paths.{i}'
        conv = sk.paths[i].conv
        size, inner = conv.kernel_size[0], first.kernel_size[0]
        if conv.dilation != first.dilation or (size - inner) % 2:
            raise NotGraftableError(
                f'{prefix}: path {i + 1} ({size}x{size}, dilation {conv.dilation[0]}) cannot hold the plain '
                f'{inner}x{inner} conv (dilation {first.dilation[0]}); in a basic block only dense SK kernels '
                '(sk_keep_3x3=False) are graftable exactly.')
        border = (size - inner) // 2
        embedded = weight.new_zeros(conv.weight.shape)
        embedded[:, :, border:border + inner, border:border + inner] = weight
        ledger.out[f'{path}.conv.weight'] = embedded
        for name in sk.paths[i].bn.state_dict():  # the plain norm again: same batch and running statistics
            ledger.out[f'{path}.bn.{name}'] = ledger.out[f'{prefix}.paths.0.bn.{name}']
    ledger.keep(f'{prefix}.attn', sk.attn)  # random select weights: a_1 != a_2, so the paths drift apart


def _check_plain_layout(model: nn.Module, prefix: str, block: nn.Module) -> None:
    """Refuse the SENet authors' layout switches: they change the function without changing a key or a shape."""
    _, last = _spatial_and_last(block)
    pool = getattr(model, 'maxpool', None)
    switches = [
        ('caffe_stem_pool', isinstance(pool, nn.MaxPool2d) and pool.ceil_mode),
        ('stride_in_1x1', isinstance(block, Bottleneck) and block.conv1.conv.stride != (1, 1)),
        ('branch_act', not isinstance(getattr(block, last).act, nn.Identity)),
    ]
    found = [name for name, on in switches if on]
    if found:
        raise NotGraftableError(
            f'{prefix}: {", ".join(found)} (the SENet authors\' layout of the *_orig models) computes another function '
            "than timm's plain ResNets, so no graft from one is exact; graft onto the timm-layout models instead.")


def _graft_block(ledger: _Ledger, model: nn.Module, prefix: str, block: nn.Module, sk_constant: float) -> None:
    """Take the block's plain tensors, then refuse a unit with no exact graft, or compensate the new units."""
    spatial, last = _spatial_and_last(block)
    sk = getattr(block, spatial)
    for name, child in block.named_children():
        if name == 'se' or (child is sk and isinstance(sk, SelectiveKernel)):
            continue
        ledger.take_module(f'{prefix}.{name}', child)
    if isinstance(sk, SelectiveKernel):  # path 1 is the plain spatial conv and its norm
        ledger.take_module(f'{prefix}.{spatial}.paths.0', sk.paths[0], source=f'{prefix}.{spatial}')
    if any(k.startswith(prefix + '.') and k not in ledger.plain for k in ledger.used):
        return  # the plain block lacks tensors: nothing to compensate, and the ledger's check lists them
    _check_plain_layout(model, prefix, block)
    if isinstance(sk, SelectiveKernel):
        where = f'{prefix}.{spatial}'
        if sk.split_input:
            raise NotGraftableError(
                f'{where}: this SK unit splits its input across the paths, so no path sees the whole input the plain '
                'conv sees: no exact graft exists. Use sk_split_input=False (and, in basic blocks, sk_keep_3x3=False).')
        if isinstance(block, Bottleneck):
            if not isinstance(getattr(block, last), ConvBnAct) or getattr(block, last).conv.kernel_size != (1, 1):
                raise NotGraftableError(f'{where}: the SK unit must be followed by a 1x1 conv and norm.')
            _graft_sk_constant(ledger, where, sk, f'{prefix}.{last}', sk_constant)
        else:
            _graft_sk_equal_paths(ledger, where, sk)
    if block.se is not None:
        _graft_se(ledger, prefix, block, last)


def graft_state_dict(
        state_dict: Mapping[str, Any],
        model: nn.Module,
        mapping: str = 'timm_resnet',
        sk_constant: float = SK_CONSTANT,
) -> StateDict:
    """The state dict that makes ``model`` (an SE/SK model of this package) compute the plain network's function.

    ``timm_sesk.load_weights`` applies it to weights in the plain layout. New SE/SK parameters keep the model's own
    random initialisation except where the graft fixes them (zero last SE FC and SK select, constant SK paths). The
    plain tensors are used as they are, never changed in place.

    Args:
        state_dict: The plain network's state dict (timm's ResNet layout).
        model: The SE/SK model it is grafted into (its parameters give the new tensors' initial values).
        mapping: Key mapping from the checkpoint's layout to ours (``weights.mapping.MAPPINGS``).
        sk_constant: Value c > 0 every new path of a bottleneck SK unit starts at.

    Returns:
        A state dict with every tensor of ``model``; the stem and head are passed through unchanged, to be adapted
        to ``in_chans`` and ``num_classes`` as they load.

    Raises:
        PretrainedWeightsError: The weights are not a plain network's with the model's trunk (checked first).
        NotGraftableError: They are, and a unit of ``model`` has no exact graft from them.
    """
    if sk_constant <= 0:
        raise ValueError(f'sk_constant must be positive (a ReLU at 0 passes no gradient), got {sk_constant}')
    plain = convert_state_dict(state_dict, mapping)
    ledger = _Ledger(plain, model.state_dict())
    blocks = [(n, m) for n, m in model.named_modules() if isinstance(m, (BasicBlock, Bottleneck))]
    refused = []
    for prefix, block in blocks:
        try:
            _graft_block(ledger, model, prefix, block, sk_constant)
        except NotGraftableError as e:
            refused.append(e)
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    stem, classifier = f"{cfg.get('first_conv') or 'conv1'}.", f"{cfg.get('classifier') or 'fc'}."
    in_blocks = tuple(f'{prefix}.' for prefix, _ in blocks)
    for key in plain:  # the stem, the head and other tensors outside the blocks are the plain network's, unchanged
        if not key.startswith(in_blocks) and (key in ledger.own or key.startswith((stem, classifier))):
            ledger.take(key)  # the stem and head pass even where the model lacks them: they are adapted or dropped
    for key in ledger.own:  # a headless plain network (e.g. a backbone): the model's new head keeps its init
        if key.startswith(classifier) and key not in ledger.out:
            ledger.out[key] = ledger.own[key].clone()
    ledger.check(model_side=False)  # first, whether these are a plain network's weights with the model's trunk
    if refused:  # they are: a unit of the model has no exact graft from them
        raise refused[0]
    ledger.check()
    return {**{k: ledger.out[k] for k in ledger.own}, **ledger.out}  # the model's order, then a head it lacks


def graft(
        plain: Union[nn.Module, Mapping[str, Any], str, os.PathLike],
        arch: str,
        **kwargs,
) -> nn.Module:
    """An SE or SK model that starts as exactly the function of a plain ResNet.

    Example::

        plain = timm.create_model('resnet152.a1_in1k', pretrained=True)
        model = timm_sesk.graft(plain, 'se_resnet152')             # same logits as plain, SE attention untrained
        sk = timm_sesk.graft('output/train/resnext/model_best.pth.tar', 'sk_resnet50', num_classes=10)

    The model is built with ``timm.create_model`` and the plain weights loaded by ``timm_sesk.load_weights`` in the
    plain layout, so ``num_classes`` and ``in_chans`` behave as there: another class count gives a new head, other
    input channels adapt the stem. The model's ``pretrained_cfg`` takes the plain model's data config (mean, std,
    crop, interpolation) when it has one, and names no pretrained tag.

    Args:
        plain: The plain network: a timm ResNet / ResNeXt, its state dict, a training checkpoint holding one, or the
            path of a checkpoint file (safetensors, or PyTorch read with ``weights_only=True``).
        arch: One of our SE/SK architectures with the plain network's trunk (e.g. ``se_resnet152`` for
            ``resnet152``, ``sk_resnet101`` for ``resnext101_32x4d``).
        **kwargs: ``timm.create_model`` arguments. ``num_classes`` and ``in_chans`` default to the plain network's.

    Returns:
        The grafted model, in training mode as ``timm.create_model`` returns it.

    Raises:
        NotGraftableError: ``arch`` (with ``kwargs``) has no exact graft (e.g. ``sk_resnet18``, whose SK units split
            their input; use ``sk_split_input=False, sk_keep_3x3=False``).
        PretrainedWeightsError: The plain network's trunk does not match ``arch``'s.
    """
    if isinstance(plain, (str, os.PathLike)):
        plain = Checkpoint.read(plain)  # read once: its head and stem size the model, then it loads
    state_dict = plain.state_dict() if isinstance(plain, nn.Module) else \
        plain.state_dict if isinstance(plain, Checkpoint) else unwrap(plain)[0]
    classifier = state_dict.get('fc.weight')
    stem = state_dict.get('conv1.weight', state_dict.get('conv1.0.weight'))
    if stem is not None:
        kwargs.setdefault('in_chans', stem.shape[1])
    if classifier is not None:
        kwargs.setdefault('num_classes', classifier.shape[0])
    model = timm.create_model(arch, **kwargs)
    load_weights(model, plain, layout=PLAIN)
    return model

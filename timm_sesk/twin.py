"""timm's built-in twins of the zoo's models: the same network, registered by timm itself, so that a model shared from
this zoo loads where timm_sesk is not installed.

An architecture's twin is its reference (``weights/references.py``) where timm registers it, at the architecture's
default knobs: the test suite proves each equal (``tests/test_equivalence.py``), and pretrained tags load through
the same key mappings. ``to_timm`` goes the other way: it applies that forward mapping to the twin's own keys (built
on the meta device), which tells which of our tensors each of the twin's is, every tensor accounted for both ways,
and reshapes ours to the twin's shapes. ``from_timm`` (or ``timm_sesk.load_weights``, which reads the twin's layout)
comes back.

A model built with other knobs than its architecture's (``se_reduction=8``, ``sk_paths=3``, ...) has no twin, nor
have SKNet-26 and SKNet-101, whose references timm builds from its classes but does not register: ``NoTwinError``
says why in one line. Arguments that mean the same to the twin (``num_classes``, ``in_chans``, ``global_pool``,
``output_stride``, drop rates) pass on to it where its constructor takes them.
"""
import inspect
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping

import timm
import torch
from torch import nn

from timm_sesk.errors import NoTwinError
from timm_sesk.loading import data_fields, describe_weights, load_weights
from timm_sesk.models import ARCHS, SeskResNet
from timm_sesk.weights import REFERENCES, convert_state_dict, fit

__all__ = ['TOLERANCE', 'NoTwinError', 'Twin', 'from_timm', 'is_twin', 'to_timm', 'twin_of', 'twins']

# An export's twin is held to the equivalence tests' bound: equal logits within fp32 rounding, relative to the largest.
TOLERANCE = 1e-5
# Arguments that mean the same to the twin: passed on to it where its constructor takes them.
_PASSED = ('num_classes', 'in_chans', 'global_pool', 'output_stride', 'drop_rate', 'drop_path_rate', 'drop_block_rate')
# A head's class names, which go where the head goes.
_LABEL_FIELDS = ('label_names', 'label_descriptions')
# Arguments that decide how a model is initialised, placed or trained, not what it computes once it holds weights.
_IRRELEVANT = ('zero_init_last', 'sk_memory_efficient', 'device', 'dtype')


@dataclass(frozen=True)
class Twin:
    """timm's built-in network that computes exactly what one of our models computes.

    Attributes:
        arch: Our architecture.
        name: timm's registered model.
        mapping: Key of ``timm_sesk.weights.MAPPINGS`` turning its state dict into ours.
        kwargs: The ``create_model`` arguments, beyond the built-in's defaults, that make it the model
            (``num_classes``, ``in_chans``, ...).
    """

    arch: str
    name: str
    mapping: str
    kwargs: Dict[str, Any] = field(default_factory=dict, hash=False)


def twins() -> Dict[str, str]:
    """Our architecture -> timm's built-in twin at its default knobs, for every architecture that has one."""
    return {arch: ref.name for arch, ref in REFERENCES.items() if ref.registered}


def is_twin(module: nn.Module) -> bool:
    """Whether a module is timm's built-in twin of one of the zoo's architectures (e.g. a portable export as timm
    loads it), which ``from_timm`` turns into the zoo's model."""
    return (getattr(module, 'pretrained_cfg', None) or {}).get('architecture') in twins().values()


def _show(value: Any) -> str:
    return value.__name__ if isinstance(value, type) else repr(value)


def _same(a: Any, b: Any) -> bool:
    """Equal arguments, a list and a tuple of the same items included."""
    return (tuple(a) if isinstance(a, list) else a) == (tuple(b) if isinstance(b, list) else b)


def twin_of(model: nn.Module) -> Twin:
    """timm's built-in twin of a model of the zoo, and the arguments that make it the model.

    Args:
        model: A model as ``timm.create_model`` returns one of the zoo's architectures (not ``features_only``, not
            fused), with any knobs.

    Raises:
        NoTwinError: Timm registers no network equal to it; the message says why (the architecture has none, or
            which knobs differ from those of the architecture's twin).
    """
    arch = (getattr(model, 'pretrained_cfg', None) or {}).get('architecture')
    if not isinstance(model, SeskResNet) or arch not in ARCHS:
        raise NoTwinError(f'a {type(model).__name__} is not a classifier of the zoo (timm.create_model of a timm_sesk '
                          'architecture, without features_only): it has no twin built into timm')
    if model.fused:
        raise NoTwinError(f'{arch} was fused for inference (timm_sesk.fuse): take its twin before fusing')
    reference = REFERENCES[arch]
    if not reference.registered:
        raise NoTwinError(f"{arch} has no twin built into timm: timm registers no {reference.name} (timm_sesk proves "
                          "it equal to a network it builds from timm's classes)")
    with torch.device('meta'):  # the structures only
        default = timm.create_model(arch).build_args
        accepted = inspect.signature(type(timm.create_model(reference.name)).__init__).parameters
    kwargs, knobs, unaccepted = {}, [], []
    for key, value in dict(model.build_args, num_classes=model.num_classes).items():
        if key in _IRRELEVANT:
            continue
        if key in _PASSED and key in accepted:
            if not _same(value, accepted[key].default):
                kwargs[key] = value
        elif not _same(value, default.get(key, inspect.Parameter.empty)):
            (unaccepted if key in _PASSED else knobs).append(key)
    if knobs or unaccepted:
        given = ', '.join(f'{k}={_show(model.build_args[k])}' for k in knobs + unaccepted)
        reasons = [f"timm's {reference.name} is {arch} with " + ', '.join(f'{k}={_show(default.get(k))}' for k in knobs)
                   ] if knobs else []
        reasons += [f"timm's {reference.name} takes no {', '.join(unaccepted)}"] if unaccepted else []
        raise NoTwinError(f'{arch} with {given} has no twin built into timm: {"; ".join(reasons)}')
    return Twin(arch, reference.name, reference.mapping, kwargs)


def _correspondence(theirs: Mapping[str, torch.Tensor], mapping: str) -> Dict[str, torch.Tensor]:
    """The forward mapping applied to the twin's keys: our key -> a tensor of our shape whose every element is the
    index of the twin's key it came from (each twin tensor is a number expanded to its shape: no memory)."""
    tagged = {k: torch.full((), float(i), dtype=torch.float64, device='cpu').expand(v.shape)
              for i, (k, v) in enumerate(theirs.items())}
    return convert_state_dict(tagged, mapping)


def to_timm(model: nn.Module) -> nn.Module:
    """The model as timm's built-in twin, with its weights: loads and runs where timm_sesk is not installed.

    Example::

        twin = timm_sesk.to_timm(timm.create_model('sk_resnet18', num_classes=10))  # timm's skresnet18
        timm.models.save_for_hf(twin, 'out')  # or: timm-sesk export, which checks it and writes a model card

    The twin holds copies of the model's tensors (renamed, the SE/SK linear layers reshaped to timm's 1x1 convs), on
    the model's device and in its dtype, in its training mode; its ``pretrained_cfg`` names no tag and carries the
    model's data config (input size, crop, mean, std). Its logits equal the model's within fp32 rounding.

    Raises:
        NoTwinError: Timm registers no network equal to the model (``twin_of`` says why).
    """
    twin = twin_of(model)
    with torch.device('meta'):
        module = timm.create_model(twin.name, **twin.kwargs)
    theirs, ours = module.state_dict(), model.state_dict()
    tagged = _correspondence(theirs, twin.mapping)
    result = fit(tagged, {k: v.shape for k, v in ours.items()})
    if not result.ok:  # the twin's structure is not the model's: a knob the check above does not know
        raise NoTwinError(f"{twin.arch} does not map onto timm's {twin.name}: {result.describe()}")
    keys: List[str] = list(theirs)
    state = {}
    for key, index in tagged.items():
        theirs_key = keys[int(index.reshape(-1)[0])]
        state[theirs_key] = ours[key].detach().reshape(theirs[theirs_key].shape).clone()
    module.load_state_dict(state, assign=True)  # every key of the twin, or it raises
    data = data_fields(model.pretrained_cfg)
    for key in ('input_size', 'test_input_size'):  # in the model's channels (a cfg need not say them)
        if key in data:
            data[key] = (model.build_args['in_chans'], *data[key][1:])
    describe_weights(module, {**data, 'num_classes': model.num_classes})
    return module.train(model.training)


def from_timm(module: nn.Module, **kwargs: Any) -> nn.Module:
    """The zoo's model of which ``module`` is timm's built-in twin, with its weights (``to_timm``'s inverse).

    Example::

        model = timm_sesk.from_timm(timm.create_model('hf-hub:me/sk18-cifar', pretrained=True))  # an sk_resnet18

    Args:
        module: One of timm's built-in twins (``twins()``), e.g. a portable export loaded by timm.
        **kwargs: Further ``create_model`` arguments (the head size and input channels are the module's).

    Raises:
        NoTwinError: The module is not the twin of one of our architectures.
    """
    name = (getattr(module, 'pretrained_cfg', None) or {}).get('architecture')
    arch = next((a for a, twin in twins().items() if twin == name), None)
    if arch is None:
        raise NoTwinError(f"{name or type(module).__name__} is not timm's twin of a timm_sesk architecture (those are "
                          f"{', '.join(twins().values())})")
    stem = module.get_submodule(module.pretrained_cfg['first_conv'])
    model = timm.create_model(arch, **{'num_classes': module.num_classes, 'in_chans': stem.in_channels, **kwargs})
    load_weights(model, module)
    # The head is the module's: so are the names of its classes (a portable export's label_names).
    model.pretrained_cfg.update({k: module.pretrained_cfg[k] for k in _LABEL_FIELDS if k in module.pretrained_cfg})
    return model.train(module.training)

"""Weights into the zoo's models: one core for every source, and a model built with the weights asked for.

``load_weights(model, source)`` reads the weights (a checkpoint file, a state dict or training checkpoint, a tag's
``WeightSpec``, a model), finds their key layout or takes the one it is told (``LAYOUTS``: timm_sesk's own, the timm
twin's, the SENet authors', mmpretrain's, senet.pytorch's, or a plain network's, which is grafted), maps them, requires
every key of the model to be accounted for, adapts the stem (timm's ``adapt_input_conv``) and leaves a head of another
size to the model, as timm's ``load_pretrained`` does, loads, and reports what it did (``LoadReport``).

``checkpoint_filter_fn``, the models' timm ``pretrained_filter_fn``, is the same core for ``timm.create_model(...,
pretrained=True)``: it finds, maps and checks, and timm adapts and loads. ``load(name, ...)`` builds a model once and
loads its pretrained weights, a checkpoint's, or none, as the command line does.
"""
import os
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import timm
import torch
from timm.models import adapt_input_conv, load_pretrained
from torch import nn

from timm_sesk.data import check_data_config
from timm_sesk.errors import (
    CheckpointReadError,
    ModelArgumentsError,
    ModelConfigError,
    NotGraftableError,
    PretrainedWeightsError,
    WeightsMismatchError,
)
from timm_sesk.hub_config import LOCAL_PREFIX, read_hub_config
from timm_sesk.weights import (
    MAPPINGS,
    REFERENCES,
    Checkpoint,
    WeightSpec,
    check_values,
    classifier_size,
    convert_state_dict,
    ema_choice,
    fit,
    spec_cfg,
    unwrap,
    weights_for,
)
from timm_sesk.weights._pretrained import check_hub, explained, find_spec, pretrained_source

__all__ = [
    'LAYOUTS', 'PLAIN', 'LoadReport', 'checkpoint_filter_fn', 'data_fields', 'describe_weights', 'load', 'load_weights']

StateDict = Dict[str, torch.Tensor]
Source = Union[str, os.PathLike, Mapping[str, Any], WeightSpec, Checkpoint, nn.Module]

# A plain ResNet / ResNeXt's weights (timm's resnet*, resnext*, torchvision's), grafted onto an SE/SK model.
PLAIN = 'plain'
LAYOUTS = (*MAPPINGS, PLAIN)
# Pretrained cfg fields that describe a tag's weights and where they come from, not the weights a model holds.
_SOURCE_FIELDS = ('tag', 'hf_hub_id', 'hf_hub_filename', 'url', 'file', 'state_dict', 'source', 'origin_url',
                  'test_input_size', 'test_crop_pct', 'label_names', 'label_descriptions')
# A source model's data config, which its weights take along to the model they are loaded into.
_DATA_FIELDS = ('input_size', 'test_input_size', 'crop_pct', 'test_crop_pct', 'crop_mode', 'interpolation', 'mean',
                'std', 'license', 'origin_url')


@dataclass(frozen=True)
class LoadReport:
    """What was loaded into a model, and how.

    Attributes:
        source: The weights: a tag (``sk_resnet18.ra_in1k``), ``checkpoint PATH``, ``hf-hub:ORG/NAME``, a model
            folder, ``the resnet18 module``, ``a state dict`` or ``random weights``.
        layout: Their key layout, one of ``LAYOUTS`` (``'native'``: timm_sesk's own; ``'plain'``: grafted); None
            where not checked here (random weights, a Hub repository).
        network: Whose layout that is, where not timm_sesk's own or the tag's (``skresnet18``, ``a plain ResNet``).
        entry: The training checkpoint's entry they were taken from (``'state_dict_ema'``, ...), None for a state dict.
        num_classes: Classes of the source's classifier, None where it has none.
        head: How the classifier was adapted (a new head), None where it loaded as it is.
        stem: How the first convolution was adapted to the input channels, None where it loaded as it is.
        path: The local file read, where there was one.
        ema: Whether a training checkpoint's EMA weights were taken (True) or its others (False), where it holds
            both; None where it holds one set.
        random_head: Classes of the model's own, untrained head, where it has one instead of the source's
            classifier (another ``num_classes``); None where the head holds the source's weights.
    """

    source: str
    layout: Optional[str] = None
    network: Optional[str] = None
    entry: Optional[str] = None
    num_classes: Optional[int] = None
    head: Optional[str] = None
    stem: Optional[str] = None
    path: Optional[str] = None
    ema: Optional[bool] = None
    random_head: Optional[int] = None

    def __str__(self) -> str:
        """``sk_resnet18.ra_in1k``, ``checkpoint PATH (skresnet18's layout; EMA weights)``, ``the resnet18 module
        (a plain ResNet, grafted)``; a new head is ``, random head (10 classes)`` after it."""
        notes = [f'{self.network}, grafted' if self.layout == PLAIN else f"{self.network}'s layout"] \
            if self.network else []
        if self.ema is not None:
            notes.append('EMA weights' if self.ema else 'its non-EMA weights; it also holds EMA weights')
        text = f'{self.source} ({"; ".join(notes)})' if notes else self.source
        return text + (f', random head ({self.random_head} classes)' if self.random_head else '')


# --- the core: a state dict, its layout, and the model ---------------------------------------------------------------

def _prefixes(model: nn.Module) -> Tuple[str, str]:
    """The state dict prefixes of the model's first convolution and of its classifier."""
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    return f"{cfg.get('first_conv') or 'conv1'}.", f"{cfg.get('classifier') or 'fc'}."


def _arch(model: nn.Module) -> str:
    return (getattr(model, 'pretrained_cfg', None) or {}).get('architecture') or type(model).__name__


def _layouts(arch: str) -> List[str]:
    """The layouts to try, in order: ours, the reference's, the tags' sources', the others, a plain network's last. A
    model of another zoo takes its own layout only."""
    if arch not in REFERENCES:
        return ['native']
    preferred = [REFERENCES[arch].mapping, *(spec.mapping for spec in weights_for(arch))]
    return list(dict.fromkeys(['native', *preferred, *MAPPINGS, PLAIN]))


def _network(layout: str, arch: str) -> Optional[str]:
    """Whose layout ``layout`` is: the model's reference's or one of its tags' sources'; None for our own."""
    if layout == 'native':
        return None
    names = [REFERENCES[arch].name] if arch in REFERENCES and REFERENCES[arch].mapping == layout else []
    names += [spec.trained_as for spec in weights_for(arch) if spec.mapping == layout and not spec.is_graft]
    return (names or ['a plain ResNet' if layout == PLAIN else layout])[0]


def _fit(state_dict: Mapping[str, torch.Tensor], model: nn.Module, layout: Optional[str], source: str,
         recorded_arch: Optional[str] = None, train_args: Optional[Dict[str, Any]] = None,
         adapt: Tuple[bool, bool] = (True, True)) -> Tuple[StateDict, str]:
    """The weights in our layout, fitting the model exactly but for its stem and head, checked before use, and the
    layout they were in.

    ``adapt`` says whether the stem and the head may differ from the model's, as ``_adapt`` (or timm's
    ``load_pretrained``) adapts them: a 3-channel stem to the model's input channels, a classifier of another class
    count (or none) to the model's own head. Any other difference in them is a mismatch.

    Raises:
        WeightsMismatchError: They fit in none of the layouts tried (the closest one's keys are listed, with
            ``recorded_arch`` and ``train_args`` from their file, for the message).
        NotGraftableError: They are a plain network's, and the model has no exact graft from one.
        InvalidWeightsError: They fit, but a tensor cannot be used (``timm_sesk.weights.check_values``).
    """
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS} or None (found from the keys), got {layout!r}')
    arch, (stem, head) = _arch(model), _prefixes(model)
    own = model.state_dict()
    expected = {k: v.shape for k, v in own.items()}
    closest = None
    for candidate in [layout] if layout else _layouts(arch):
        try:
            if candidate == PLAIN:
                from timm_sesk.graft import graft_state_dict  # lazily: the graft builds on the models, which load here

                mapped = graft_state_dict(state_dict, model)
            else:
                mapped = convert_state_dict(state_dict, candidate)
        except NotGraftableError:
            raise  # a plain network's weights (the graft accounted for every tensor), onto a model without a graft
        except (ValueError, PretrainedWeightsError):  # not in this layout (two keys map to one; a graft's accounting)
            if layout is not None:
                raise
            continue
        stem_weight = mapped.get(f'{stem}weight')
        adaptable = {**({stem: 1} if adapt[0] and stem_weight is not None and stem_weight.ndim == 4
                        and stem_weight.shape[1] == 3 else {}), **({head: 0} if adapt[1] else {})}
        keep_own_head = adapt[1] and not any(k.startswith(head) for k in mapped)  # a backbone's weights
        result = fit(mapped, {k: v for k, v in expected.items() if not (keep_own_head and k.startswith(head))},
                     adaptable)
        if result.ok:
            check_values(mapped, {k: v.dtype for k, v in own.items()}, source, original=state_dict)
            return mapped, candidate
        if closest is None or result.problems < closest.problems:
            closest = result
    # Only the stem or the classifier differs: the weights are this architecture's (every zoo model differs from the
    # others elsewhere), so no other is looked for.
    ends = not (closest.missing or closest.unexpected) and all(m.startswith((stem, head)) for m in closest.mismatched)
    raise WeightsMismatchError(closest.explain(source, type(model).__name__), source, arch, closest, recorded_arch,
                               train_args, guess=None if ends else partial(_fitting_arch, state_dict, arch))


@cache
def _structure(arch: str) -> nn.Module:
    """The zoo model ``arch`` with default arguments on the meta device (no memory, about 0.1 s to build), built once
    per process: the candidates weights that fit no model are tried against."""
    with torch.device('meta'):
        return timm.create_model(arch)


def _fitting_arch(state_dict: Mapping[str, torch.Tensor], exclude: str) -> Optional[Tuple[str, str]]:
    """``(architecture, layout)`` of the first zoo model, in declaration order, the weights fit with default
    arguments."""
    for arch in (a for a in REFERENCES if a != exclude):
        try:
            return arch, _fit(state_dict, _structure(arch), None, arch)[1]
        except (PretrainedWeightsError, NotGraftableError):
            continue
    return None


def _adapt(mapped: StateDict, model: nn.Module) -> Tuple[StateDict, Optional[str], Optional[str], Optional[int]]:
    """The weights to load: the stem adapted to the model's input channels (timm's ``adapt_input_conv``), a
    classifier of another size (or none) replaced by the model's own; a note on each, None where unchanged; and the
    classes of the model's own (random) head where it keeps one."""
    own, (stem, head) = model.state_dict(), _prefixes(model)
    weights, stem_note, head_note, random_head = dict(mapped), None, None, None
    key = f'{stem}weight'
    if key in weights and key in own and weights[key].shape != own[key].shape:
        theirs, ours = weights[key].shape[1], own[key].shape[1]
        try:
            weights[key] = adapt_input_conv(ours, weights[key])
        except NotImplementedError as e:
            raise PretrainedWeightsError(f'the {theirs}-channel stem {key} cannot be adapted to {ours} channels') from e
        stem_note = f'{theirs} input channels adapted to {ours} (timm adapt_input_conv)'
    theirs = {k: v for k, v in weights.items() if k.startswith(head)}
    ours = {k: v for k, v in own.items() if k.startswith(head)}
    if theirs.keys() != ours.keys() or any(v.shape != ours[k].shape for k, v in theirs.items()):
        weights = {**{k: v for k, v in weights.items() if not k.startswith(head)}, **ours}
        their, our = theirs.get(f'{head}weight'), ours.get(f'{head}weight')
        head_note = (f'a new {our.shape[0]}-class head' if our is not None else 'no head') + (
            f" (the source's {their.shape[0]}-class classifier is not loaded)" if their is not None else
            ' (the source has none)')
        random_head = our.shape[0] if our is not None else None
    return weights, head_note, stem_note, random_head


def _prepare(state_dict: Mapping[str, torch.Tensor], model: nn.Module, layout: Optional[str], source: str,
             message_source: str, tag: bool = False, **known: Any) -> Tuple[StateDict, LoadReport]:
    """The core: the weights as they load into the model, and the report of ``source``; ``known``: its
    ``entry``, ``path``, ``ema``, ``recorded_arch`` and ``train_args``."""
    entry, path, ema = known.pop('entry', None), known.pop('path', None), known.pop('ema', None)
    mapped, found = _fit(state_dict, model, layout, message_source, **known)
    weights, head, stem, random_head = _adapt(mapped, model)
    network = None if tag else _network(found, _arch(model))
    return weights, LoadReport(source, found, network, entry, classifier_size(state_dict), head, stem, path, ema,
                               random_head)


def data_fields(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """The fields of a model's pretrained cfg that describe the data its weights take (input size, crop, mean, std,
    ...), which they take along to another model they are loaded into."""
    return {k: cfg[k] for k in _DATA_FIELDS if cfg.get(k) is not None}


def describe_weights(model: nn.Module, data: Optional[Mapping[str, Any]] = None) -> None:
    """Make a model's pretrained cfg describe the weights it now holds: the tag it was built with, its source and
    its evaluation recommendations go; ``data`` (pretrained cfg fields) takes their place."""
    cfg = model.pretrained_cfg  # in place: timm's default_cfg is the same dict
    for key in _SOURCE_FIELDS:
        cfg.pop(key, None)
    cfg.update(data or {})


# --- weights a pretrained cfg names: create_model(..., pretrained=True), and tags -----------------------------------

def _names(cfg: Mapping[str, Any]) -> Tuple[str, str]:
    """The weights a pretrained cfg names, as a report names them (the tag, before a URL file is downloaded), and
    as error messages name the checkpoint (the local file, the Hub repository or the URL)."""
    spec, file = find_spec(cfg), cfg.get('file')
    where = f"hf-hub:{cfg['hf_hub_id']}" if cfg.get('hf_hub_id') else str(cfg.get('url'))
    if cfg.get('state_dict') is not None:
        return 'a state dict', 'the state_dict passed in the pretrained cfg'
    if file:
        return f'checkpoint {file}', str(file)
    return (spec.name, spec.source) if spec is not None else (where, where)


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module, layout: Optional[str] = None,
                         reports: Optional[List[LoadReport]] = None,
                         cfg: Optional[Mapping[str, Any]] = None) -> StateDict:
    """timm ``pretrained_filter_fn``: find the checkpoint's layout, map it to ours, and require it to fit the model.

    In ``timm.create_model(..., pretrained=True)`` timm then adapts the stem and head and loads. Given ``reports``
    (loading the weights a pretrained ``cfg`` names, here), this adapts them and appends what was loaded.
    """
    cfg = cfg if cfg is not None else model.pretrained_cfg
    weights, entry = unwrap(state_dict)
    (label, where), spec = _names(cfg), find_spec(cfg)
    if reports is None:
        # timm's load_pretrained adapts what is left: a stem declared (and found) 3-channel to other input channels,
        # and a head of other classes than the cfg's, which it drops; anything else must fit as it is.
        in_chans = model.get_submodule(_prefixes(model)[0][:-1]).in_channels
        declared = (cfg.get('input_size') or (3,))[0]
        timm_adapts = (in_chans != 3 and declared == 3,
                       getattr(model, 'num_classes', None) != cfg.get('num_classes', 1000))
        return _fit(weights, model, layout, f'pretrained weights ({where})', adapt=timm_adapts)[0]
    loadable, report = _prepare(weights, model, layout, label, f'pretrained weights ({where})',
                                tag=spec is not None and label == spec.name, entry=entry, path=cfg.get('file'))
    reports.append(report)
    return loadable


def _load_cfg(model: nn.Module, cfg: Mapping[str, Any], layout: Optional[str] = None,
              cache_dir: Optional[str] = None) -> LoadReport:
    """Load the weights a pretrained cfg names, as ``create_model(..., pretrained=True)`` does (timm's
    ``load_pretrained``: its sources and Hub downloads; a URL file fetched and pinned here), through the core."""
    reports: List[LoadReport] = []
    with pretrained_source(cfg, cache_dir) as loading:
        # The filter adapts the stem and head: timm is told they already match, so that it only loads.
        load_pretrained(model, pretrained_cfg=loading, num_classes=loading.get('num_classes', 1000),
                        in_chans=(loading.get('input_size') or (3,))[0], cache_dir=cache_dir,
                        filter_fn=partial(checkpoint_filter_fn, layout=layout, reports=reports, cfg=cfg))
    return reports[-1]


# --- load_weights and load ----------------------------------------------------------------------------------------

def load_weights(model: nn.Module, source: Source, *, layout: Optional[str] = None, ema: bool = True) -> LoadReport:
    """Load weights into one of timm_sesk's models, from any source, in any layout its weights come in.

    Example::

        report = timm_sesk.load_weights(model, 'output/train/EXPERIMENT/model_best.pth.tar')  # EMA weights first
        timm_sesk.load_weights(se50, timm.create_model('resnet50.a1_in1k', pretrained=True))  # a graft
        timm_sesk.load_weights(model, '/data/se_resnet50-ce0d4300.pth', layout='timm_senet')

    Weights that do not fit the model exactly, every key accounted for, load nothing. Another class count leaves the
    model's new head, other input channels adapt the stem, as in timm. The model's ``pretrained_cfg`` then describes
    the weights it holds: a tag's cfg, or no tag and the data config the source carries (a ``train.py``
    checkpoint's arguments, a source model's cfg).

    Args:
        model: A model of the zoo (on any device, in any dtype).
        source: A checkpoint file (safetensors, or PyTorch read with ``weights_only=True``: a state dict or a
            ``train.py`` checkpoint) or its ``timm_sesk.weights.Checkpoint``, a state dict or training checkpoint,
            a tag's ``WeightSpec`` (fetched as ``pretrained=True`` fetches it), or a model: one of ours, or a plain
            timm ResNet / ResNeXt to graft.
        layout: The weights' key layout, one of ``LAYOUTS``; None finds it from their keys.
        ema: Take a training checkpoint's EMA weights where it has them (timm's ``load_checkpoint`` default).

    Returns:
        What was loaded, from where, in which layout, and how the stem and head were adapted.

    Raises:
        CheckpointReadError: A file is not a checkpoint.
        WeightsMismatchError: The weights fit the model in no layout.
        InvalidWeightsError: A tensor cannot be used: NaN or infinity, not floating point where the model's is, a
            negative running variance, or more values than its file stores (``timm_sesk.weights.check_values``).
        ModelConfigError: A ``train.py`` checkpoint's data arguments are out of bounds
            (``timm_sesk.data.check_data_config``).
        NotGraftableError: A plain network's weights, onto a model with no exact graft from one.
        PretrainedWeightsError: A tag's file cannot be fetched or read.
    """
    if isinstance(source, WeightSpec):
        cfg = {**{k: v for k, v in model.pretrained_cfg.items() if k not in _SOURCE_FIELDS}, **spec_cfg(source),
               'tag': source.tag}
        report = _load_cfg(model, {**cfg, 'architecture': source.arch}, layout)  # the tag's pin, for its URL
        describe_weights(model, cfg)  # the tag's cfg, as create_model(tag) gives it
        return report
    if isinstance(source, (str, os.PathLike)):
        source = Checkpoint.read(source, ema)
    data: Dict[str, Any] = {}
    if isinstance(source, Checkpoint):
        label, known = f'checkpoint {source.path}', dict(entry=source.entry, path=source.path, ema=source.ema,
                                                         recorded_arch=source.arch, train_args=source.train_args)
        state_dict = source.state_dict
        if source.data_args:
            from timm.data import resolve_data_config

            resolved = resolve_data_config(dict(source.data_args), model=model)
            data = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in resolved.items()}
            check_data_config(data, f"{label}'s train.py arguments")  # before its input size sizes anything
    elif isinstance(source, nn.Module):
        cfg = getattr(source, 'pretrained_cfg', None) or {}
        label, known, state_dict = f"the {cfg.get('architecture') or type(source).__name__} module", {}, \
            source.state_dict()
        data = data_fields(cfg)
    elif isinstance(source, Mapping):
        state_dict, entry = unwrap(source, ema)
        label, known = 'a state dict', dict(entry=entry, ema=ema_choice(source, entry))
    else:
        raise TypeError(f'load_weights takes a checkpoint path, a state dict, a WeightSpec or a model, not '
                        f'{type(source).__name__}')
    weights, report = _prepare(state_dict, model, layout, label, label, **known)
    model.load_state_dict(weights)
    if 'input_size' in data:  # in the model's channels: its stem may have been adapted
        data['input_size'] = (model.get_submodule(_prefixes(model)[0][:-1]).in_channels, *data['input_size'][1:])
    describe_weights(model, data)
    return report


def _create(name: str, kwargs: Dict[str, Any], **defaults: Any) -> nn.Module:
    """``timm.create_model(name, **defaults, **kwargs)``; arguments the model cannot be built with raise
    ``ModelArgumentsError``."""
    try:
        return timm.create_model(name, **{**defaults, **kwargs})
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        if not kwargs or isinstance(e, (CheckpointReadError, NotGraftableError)):
            raise  # the model does not build without arguments either (a bug), or its weights failed to load
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelArgumentsError(name, kwargs, reason) from e


def _load_elsewhere(name: str, pretrained: bool, kwargs: Dict[str, Any]) -> Tuple[nn.Module, LoadReport]:
    """A model of a name outside the zoo (an ``hf-hub:`` repository, a ``local-dir:`` model folder, a timm model),
    built and loaded by timm; the config.json of a repository or folder is checked first (``timm_sesk.hub_config``)."""
    hub_id = name[len('hf-hub:'):] if name.startswith('hf-hub:') else None
    folder = name[len(LOCAL_PREFIX):] if name.startswith(LOCAL_PREFIX) else None
    if folder is not None and not (Path(folder) / 'config.json').is_file():
        raise PretrainedWeightsError(f'{folder} is not a model folder: it has no config.json (a folder written by '
                                     '`timm-sesk export --format hub` or timm save_for_hf holds one)')
    with explained(f'pretrained weights for {folder or name}', {'hf_hub_id': hub_id}):
        if hub_id:
            check_hub(hub_id, ('config.json',), kwargs.get('cache_dir'))  # timm reads it first
        architecture = read_hub_config(name, kwargs.get('cache_dir'))['architecture'] if hub_id or folder else None
        if architecture is not None and not timm.is_model(architecture):
            raise PretrainedWeightsError(
                f'{folder or name} is a {architecture} model, an architecture timm does not know (import the library '
                'that registers it first)')
        try:
            model = _create(name, kwargs, pretrained=pretrained)
        except (PretrainedWeightsError, CheckpointReadError, NotGraftableError):
            raise
        except RuntimeError as e:  # timm's loader refuses the weights (no file, shapes that differ from the model's)
            if architecture is None:
                raise
            raise PretrainedWeightsError(f'{folder or name}: {" ".join(str(e).split())}') from e
        except (ModelArgumentsError, TypeError, ValueError, AssertionError, KeyError) as e:
            if architecture is None:
                raise
            reason = e.reason if isinstance(e, ModelArgumentsError) else \
                (str(e).strip().splitlines() or [type(e).__name__])[0]
            given = ' and the arguments given' if kwargs else ''
            raise ModelConfigError(f"cannot build {folder or name} ({architecture} with its config.json's model_args"
                                   f'{given}): {reason}') from e
    if not pretrained:
        return model, LoadReport('random weights')
    if architecture is not None:  # loaded by timm's own loader (a timm model's, e.g. a portable export): values checked
        check_values(model.state_dict(), {}, folder or name)
    # timm gives a head of another size than the weights' classifier (num_classes) its own random weights.
    trained = model.pretrained_cfg.get('num_classes')
    random_head = model.num_classes if model.num_classes and trained and model.num_classes != trained else None
    return model, LoadReport(folder or name, random_head=random_head, head=None if random_head is None else (
        f"a new {random_head}-class head (the source's {trained}-class classifier is not loaded)"))


def load(name: str, *, pretrained: bool = True, checkpoint: Optional[Union[str, os.PathLike]] = None,
         ema: bool = True, **kwargs: Any) -> Tuple[nn.Module, LoadReport]:
    """Build a model, once, with the weights asked for: its pretrained tag's, a checkpoint's, or random ones.

    Example::

        model, report = timm_sesk.load('sk_resnet50')  # the default tag's weights
        model, report = timm_sesk.load('se_resnet50', checkpoint='output/train/EXPERIMENT/model_best.pth.tar')

    A checkpoint brings its head size (another ``num_classes`` gives a new head) and, from ``train.py``, the input
    size and crop it was trained with; it loads as ``load_weights`` loads it. ``pretrained_cfg_overlay`` and
    ``cache_dir`` work as in ``timm.create_model``. Names outside the zoo (``hf-hub:ORG/NAME``, timm's models) are
    built and loaded by ``timm.create_model``, and so is a model folder (config.json and weights, as ``timm-sesk
    export`` and timm's ``save_for_hf`` write it): a name that is no zoo model and is a folder is timm's
    ``local-dir:`` of it.

    Args:
        name: A zoo model, optionally with a tag (``se_resnet50.a1_in1k``), an ``hf-hub:`` id, or a model folder.
        pretrained: Load the pretrained weights (not with a checkpoint); False gives random weights.
        checkpoint: A checkpoint file to load instead of the pretrained weights.
        ema: Take a training checkpoint's EMA weights where it has them.
        **kwargs: ``timm.create_model`` arguments.

    Returns:
        The model, in training mode as ``timm.create_model`` returns it, and what was loaded into it.

    Raises:
        ModelArgumentsError: The model cannot be built with ``kwargs``.
        PretrainedWeightsError: The weights cannot be fetched, read or fitted.
    """
    if name.partition('.')[0] not in REFERENCES:
        if checkpoint is not None:
            raise ValueError(f"a checkpoint loads into one of the zoo's models (timm_sesk.list_models()), not {name}")
        return _load_elsewhere(LOCAL_PREFIX + str(name) if os.path.isdir(name) else name, pretrained, kwargs)
    if checkpoint is not None:
        weights = Checkpoint.read(checkpoint, ema)
        classes = classifier_size(weights.state_dict)
        model = _create(name, kwargs, **({} if classes is None else {'num_classes': classes}))
        return model, load_weights(model, weights)
    model = _create(name, kwargs)
    if not pretrained:
        describe_weights(model)
        return model, LoadReport('random weights')
    report = _load_cfg(model, model.pretrained_cfg, cache_dir=kwargs.get('cache_dir'))
    if find_spec(model.pretrained_cfg) is None:  # an overlay's weights, not the tag's: the cfg claims no tag
        describe_weights(model)
    return model, report

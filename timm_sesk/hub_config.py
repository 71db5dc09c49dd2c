"""A Hub repository's or model folder's ``config.json``, read and checked before timm builds a model from it.

timm builds an ``hf-hub:`` model (or a ``local-dir:`` model folder) from its ``config.json`` (``architecture``,
``num_classes``, ``model_args``, ``pretrained_cfg``) as it finds it: a ``num_classes`` of -5 built a 1000-class head
and printed ImageNet labels from random weights, one of 10**9 asked for 2 TB, ``model_args`` could name a local file to
load (``checkpoint_path``) or make the model a feature extractor, and a wrong type anywhere surfaced as a traceback
deep in timm. ``read_hub_config`` reads the same file timm reads (huggingface_hub's cache, so nothing is downloaded
twice) and refuses, in one ``ModelConfigError`` naming the field, what timm would misuse:

- not JSON, not an object, a key given twice, no ``architecture``;
- ``num_classes`` (at the top, in ``pretrained_cfg`` or in ``model_args``) other than an integer from 0 to
  ``MAX_CLASSES``, or different in two of those places;
- ``model_args`` other than an object, or holding an argument that is not the architecture's
  (``NOT_ARCHITECTURE_ARGS``); ``pretrained_cfg`` other than an object, or asking for the model's own loader
  (``custom_load``);
- label names other than strings; a data config out of bounds (``timm_sesk.data.check_data_config``).

Arguments the architecture does not take fail when timm builds the model; ``timm_sesk.load`` reports that as a
``ModelConfigError`` too.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from timm_sesk.data import check_data_config
from timm_sesk.errors import ModelConfigError

__all__ = ['LOCAL_PREFIX', 'MAX_CLASSES', 'NOT_ARCHITECTURE_ARGS', 'check_repo_id', 'hub_repo', 'read_hub_config']

HUB_PREFIX, LOCAL_PREFIX = 'hf-hub:', 'local-dir:'  # timm's
# The largest head a config may ask for: more than twice the largest label set of timm's pretrained models (115,217
# classes, vit_base_patch16_224.bamboo); a 2048-feature head of that size takes 2 GB, where 10**9 classes took 2 TB.
MAX_CLASSES = 250_000
# create_model arguments that choose weights, where they come from or what is built around the network, not the
# network: a config.json's model_args may not set them (timm passes model_args to create_model).
NOT_ARCHITECTURE_ARGS = ('pretrained', 'pretrained_cfg', 'pretrained_cfg_overlay', 'checkpoint_path', 'cache_dir',
                         'features_only', 'device', 'dtype', 'scriptable', 'exportable', 'no_jit')


def check_repo_id(repo_id: str) -> str:
    """A Hub repository id (``ORG/NAME``, or ``NAME`` in your own namespace) as huggingface_hub validates it; returns
    it, else ValueError saying what is wrong."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        reason = str(e).splitlines()[0].rstrip('.')
        raise ValueError(f'{repo_id!r} is not a Hub repository id (ORG/NAME): {reason}') from e
    return repo_id


def hub_repo(name: str) -> Tuple[str, Optional[str]]:
    """The repository and revision of ``hf-hub:ORG/NAME[@REVISION]`` (timm's syntax).

    Raises:
        ValueError: The repository id is not one the Hub allows.
    """
    repo, _, revision = name[len(HUB_PREFIX):].partition('@')
    return check_repo_id(repo), revision or None


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f'the key {key!r} is given twice')
        seen.add(key)
    return dict(pairs)


def _kind(value: Any) -> str:
    return {dict: 'an object', list: 'a list', str: 'a string', bool: 'a boolean', type(None): 'null'}.get(
        type(value), 'a number')


def check_hub_config(config: Any, where: str) -> str:
    """Check a parsed ``config.json`` (see the module docstring); returns its architecture.

    Args:
        config: The parsed file.
        where: The file, as messages name it (``hf-hub:ORG/NAME's config.json``).

    Raises:
        ModelConfigError: A field timm would misuse; the message names it and what is expected.
    """
    if not isinstance(config, dict):
        raise ModelConfigError(f'{where} holds {_kind(config)}, not an object (timm writes "architecture", '
                               '"num_classes", "model_args" and "pretrained_cfg")')
    architecture = config.get('architecture')
    if not isinstance(architecture, str) or not architecture:
        raise ModelConfigError(f'{where} names no architecture ("architecture": a timm model name, e.g. '
                               f'"sk_resnet50"), it has {_kind(architecture)}')
    pretrained = config.get('pretrained_cfg', config)  # timm's older format: one object
    model_args = config.get('model_args', {})
    for field, value in (('pretrained_cfg', pretrained), ('model_args', model_args)):
        if not isinstance(value, dict):
            raise ModelConfigError(f'{where}: {field} is {_kind(value)}, not an object')
    sizes = {f'{scope}num_classes': value for scope, value in (
        ('', config.get('num_classes')), ('pretrained_cfg.', pretrained.get('num_classes')),
        ('model_args.', model_args.get('num_classes'))) if value is not None}
    for field, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_CLASSES:
            raise ModelConfigError(f'{where}: {field} {value!r} cannot be used; expected the number of classes, an '
                                   f'integer from 0 (no classifier) to {MAX_CLASSES} (hub_config.MAX_CLASSES)')
    if len(set(sizes.values())) > 1:
        raise ModelConfigError(f'{where} gives two head sizes, ' + ' and '.join(f'{k} {v}' for k, v in sizes.items()))
    other = [key for key in model_args if key in NOT_ARCHITECTURE_ARGS]
    if other:
        raise ModelConfigError(f'{where}: model_args sets {", ".join(other)}: create_model arguments that choose '
                               'weights or what is built around the network, not the architecture, which a '
                               'config.json may not set')
    if pretrained.get('custom_load'):
        raise ModelConfigError(f"{where}: pretrained_cfg asks for custom_load, the model's own weight loader; "
                               'timm_sesk loads weights with timm and its own checks only')
    for field in ('label_names', 'labels', 'label_descriptions'):
        for scope, value in (('', config.get(field)), ('pretrained_cfg.', pretrained.get(field))):
            names = list(value.values()) if isinstance(value, dict) and field == 'label_descriptions' else value
            if value is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise ModelConfigError(f'{where}: {scope}{field} is not a list of strings')
    check_data_config(pretrained, f"{where}'s pretrained_cfg")
    return architecture


def read_hub_config(name: str, cache_dir: Optional[str] = None) -> Dict[str, Any]:
    """The ``config.json`` of an ``hf-hub:`` model (read from huggingface_hub's cache, as timm reads it, downloaded
    first where not cached) or of a ``local-dir:`` model folder, checked (``check_hub_config``).

    Raises:
        ModelConfigError: The file cannot be read as JSON, or a field timm would misuse.
        huggingface_hub's errors: The file cannot be downloaded (``weights._pretrained.explained`` names them).
    """
    if name.startswith(LOCAL_PREFIX):
        path = str(Path(name[len(LOCAL_PREFIX):]) / 'config.json')
        where = path
    else:
        from huggingface_hub import hf_hub_download

        repo, revision = hub_repo(name)
        where = f"{name}'s config.json"
        path = hf_hub_download(repo, 'config.json', revision=revision, cache_dir=cache_dir)
    try:
        with open(path, encoding='utf-8') as f:
            config = json.loads(f.read(), object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, a key twice, nested beyond the parser
        reason = str(e) if isinstance(e, ValueError) else 'it is nested too deeply'
        raise ModelConfigError(f'{where} cannot be read as JSON: {reason}') from e
    check_hub_config(config, where)
    return config

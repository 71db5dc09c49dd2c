"""How pretrained weights reach a model, on top of timm's ``load_pretrained``.

timm resolves the source (Hub, URL or file), downloads and reads the checkpoint; this module adds what the zoo
promises around it: the sha256 pin of URL files is checked as they download, the checkpoint is mapped to our layout
and must fit the model exactly, and every failure becomes one error that names the weights and the fix.
"""
import contextlib
import os
import pickle
import re
from typing import Any, Dict, Iterator, Optional, Tuple
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError

from .errors import PretrainedWeightsError
from .manifest import WEIGHTS, WeightSpec, is_graft_tag
from .mapping import check_state_dict, convert_state_dict

__all__ = [
    'PretrainedWeightsError',
    'checkpoint_filter_fn',
    'explain_load_errors',
    'fetch_url',
    'find_spec',
    'read_checkpoint',
    'resolve_source',
    'url_cache_path',
]

# torch.hub's convention: '<name>-<first 8 or more hex digits of the sha256>.<ext>'.
_HASH_IN_NAME = re.compile(r'-([a-f0-9]{8,})\.')


def find_spec(pretrained_cfg: Dict[str, Any]) -> Optional[WeightSpec]:
    """The manifest entry a resolved pretrained cfg loads, or None for other sources (e.g. a timm_sesk Hub export)."""
    name = f"{pretrained_cfg.get('architecture')}.{pretrained_cfg.get('tag')}"
    spec = next((w for w in WEIGHTS if w.name == name), None)
    hub_id = pretrained_cfg.get('hf_hub_id')
    if spec is not None and hub_id and hub_id != spec.hf_hub_id:
        return None  # same tag name, another Hub repository: weights saved by timm_sesk itself
    return spec


def resolve_source(pretrained_cfg: Dict[str, Any]) -> Tuple[str, Any]:
    """Where timm's ``load_pretrained`` will take the weights from: ``(kind, location)``.

    Follows timm's order: an in-memory state dict, then a file, then the Hub, then a URL.
    """
    if pretrained_cfg.get('source') == 'hf-hub' and pretrained_cfg.get('hf_hub_id'):
        return 'hf-hub', pretrained_cfg['hf_hub_id']
    for kind, key in (('state_dict', 'state_dict'), ('file', 'file'), ('hf-hub', 'hf_hub_id'), ('url', 'url')):
        if pretrained_cfg.get(key):
            return kind, pretrained_cfg[key]
    return '', None


def url_cache_path(url: str, cache_dir: Optional[str] = None) -> str:
    """The file torch.hub (and so timm) caches ``url`` in: the cache folder joined with the URL's file name."""
    name = os.path.basename(urlparse(url).path)
    if name in ('', '.', '..'):  # it would name the cache folder or its parent, not a file in it
        raise PretrainedWeightsError(
            f'the pretrained weights URL {url} does not end in a file name, so it cannot be downloaded into the '
            f'cache. Pass the URL of the checkpoint file itself (e.g. .../name-<sha256 prefix>.pth).')
    model_dir = cache_dir or os.path.join(torch.hub.get_dir(), 'checkpoints')
    return os.path.join(model_dir, name)


def _pin(url: str, spec: Optional[WeightSpec]) -> Optional[str]:
    if spec is not None and spec.url == url:
        return spec.hash_prefix
    match = _HASH_IN_NAME.search(os.path.basename(urlparse(url).path))
    return match.group(1) if match else None


def fetch_url(url: str, spec: Optional[WeightSpec] = None, cache_dir: Optional[str] = None,
              progress: bool = True) -> str:
    """Download ``url`` into the torch.hub cache unless it is there, refusing a file whose sha256 does not match.

    The expected sha256 prefix is the manifest's pin for the spec's own URL, else the one in the file name (torch.hub
    convention). A refused download is deleted by torch.hub before it reaches the cache.

    Returns:
        The cached file's path.
    """
    path = url_cache_path(url, cache_dir)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pin = _pin(url, spec)
        try:
            torch.hub.download_url_to_file(url, path, hash_prefix=pin, progress=progress)
        except RuntimeError as e:
            if 'invalid hash value' not in str(e):
                raise
            raise PretrainedWeightsError(
                f'refused {url}: its sha256 does not start with the pinned {pin}, so it is not the published file '
                f'({e}). Nothing was loaded and the download was discarded. Retry later; if it persists, the '
                f'file at the source has changed and its provenance must be checked.') from e
    return path


# timm reads a Hub repository's model.safetensors, else its pytorch_model.bin, unless the cfg names the file.
_HUB_DEFAULT_FILES = ('model.safetensors', 'pytorch_model.bin')


def _hub_file(location: Any) -> Tuple[str, str, Optional[str]]:
    """``(repo_id, filename, revision)`` of a Hub source: timm's ``hf_hub_id`` may end in ``@revision``."""
    hub_id, filename = location if isinstance(location, (tuple, list)) else (location, _HUB_DEFAULT_FILES[0])
    repo_id, _, revision = str(hub_id).partition('@')
    return repo_id, filename, revision or None


def _local_file(kind: str, location: Any, cache_dir: Optional[str]) -> Optional[str]:
    """The local copy of the checkpoint, to name it in a message; None where there is none or it cannot be told.

    It runs while another error is being explained, so it must not raise one of its own.
    """
    if kind == 'file':
        return str(location)
    try:
        if kind == 'url':
            return url_cache_path(location, cache_dir)
        if kind == 'hf-hub':
            from huggingface_hub import try_to_load_from_cache
            repo_id, filename, revision = _hub_file(location)
            candidates = (filename,) if isinstance(location, (tuple, list)) else _HUB_DEFAULT_FILES
            for name in candidates:
                found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision)
                if isinstance(found, str):
                    return found
    except (ValueError, OSError, PretrainedWeightsError):
        return None
    return None


def _hub_fetch_hint(location: Any) -> str:
    repo_id, filename, revision = _hub_file(location)
    revision_arg = f' --revision {revision}' if revision else ''
    return (f'download it where the Hub is reachable (`hf download {repo_id} {filename}{revision_arg}`), or fetch '
            f'{filename} by hand and pass pretrained_cfg_overlay=dict(file="/path/to/{filename}")')


@contextlib.contextmanager
def explain_load_errors(
        variant: str, pretrained_cfg: Dict[str, Any], cache_dir: Optional[str] = None) -> Iterator[None]:
    """Turn the ways a pretrained load fails into a ``PretrainedWeightsError`` naming the weights and the fix."""
    kind, location = resolve_source(pretrained_cfg)
    tag = pretrained_cfg.get('tag')
    what = f'pretrained weights for {variant}' + (f'.{tag}' if tag else '')
    where = f'hf-hub:{location[0] if isinstance(location, (tuple, list)) else location}' if kind == 'hf-hub' \
        else str(location)
    try:
        yield
    except PretrainedWeightsError:
        raise
    except LocalEntryNotFoundError as e:
        raise PretrainedWeightsError(
            f'{what} ({where}) are not in the local Hugging Face cache, and the Hub cannot be reached (offline mode '
            f'or no network). To get them, {_hub_fetch_hint(location)}.') from e
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise PretrainedWeightsError(
            f'{what}: the Hub has no such repository or file ({where}; {type(e).__name__}). Check the model name '
            f'and tag (timm.list_pretrained("{variant}*")) or the hf_hub_id you passed.') from e
    except OfflineModeIsEnabled as e:
        raise PretrainedWeightsError(f'{what} ({where}) need a download, but offline mode is on.') from e
    except FileNotFoundError as e:
        raise PretrainedWeightsError(f'{what}: no checkpoint file at {location}.') from e
    except URLError as e:
        raise PretrainedWeightsError(
            f'{what}: downloading {location} failed ({e.reason}). Fetch the file where the network allows, check '
            f'that its sha256 starts with the prefix in its name, and pass '
            f'pretrained_cfg_overlay=dict(file="/path/to/{os.path.basename(urlparse(location).path)}").') from e
    except (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError) as e:
        message = str(e)
        if isinstance(e, RuntimeError) and not any(
                marker in message for marker in ('PytorchStreamReader', 'weights_only', 'Weights only')):
            raise
        local = _local_file(kind, location, cache_dir)
        path = os.path.realpath(local) if local else where  # the Hub cache links snapshots to blobs: name the blob
        unsafe = 'weights_only' in message or 'Weights only' in message
        raise PretrainedWeightsError(
            f'{what}: {path} is not a readable checkpoint '
            + ('(it holds Python objects other than tensors, which are never unpickled here). '
               if unsafe else '(it is truncated or corrupt). ')
            + 'Nothing was loaded. Delete the file and load again to re-download it, or pass a good copy with '
              'pretrained_cfg_overlay=dict(file=...).') from e


def read_checkpoint(path: Any) -> Dict[str, torch.Tensor]:
    """A local checkpoint (a fine-tuned one, say) as a state dict in timm_sesk's key layout.

    safetensors, or a PyTorch file read with ``weights_only=True`` (tensors only, never arbitrary objects); timm's
    reader takes a train.py checkpoint's ``state_dict`` and strips DDP / torch.compile prefixes.
    """
    from timm.models import load_state_dict

    return convert_state_dict(load_state_dict(str(path), weights_only=True), 'native')


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: torch.nn.Module) -> Dict[str, Any]:
    """timm ``pretrained_filter_fn``: map a checkpoint to our layout and check that it fits the model exactly.

    A ``graft_*`` tag's checkpoint is a plain ResNet's, grafted onto the model (``timm_sesk.graft``).
    """
    cfg = model.pretrained_cfg
    spec = find_spec(cfg)
    kind, location = resolve_source(cfg)
    # A graft tag's own source holds the plain twin's weights, as does timm_sesk.graft's state dict; a graft tag's
    # name on another repository (a fine-tune exported with timm_sesk) holds our own layout.
    grafting = spec.is_graft if spec else (kind == 'state_dict' and is_graft_tag(cfg.get('tag')))
    if grafting:
        from timm_sesk.graft import graft_state_dict  # lazily: the graft builds on the models, which import this

        mapped = graft_state_dict(state_dict, model, mapping=spec.mapping if spec else 'timm_resnet')
    else:
        mapped = convert_state_dict(state_dict, spec.mapping if spec else 'native')
    adaptable = [cfg.get('first_conv') or 'conv1', cfg.get('classifier') or 'fc']
    if kind == 'file':  # a local copy of a tag's file still gets the tag's mapping, but the message names the file
        source = str(location)
    elif kind == 'state_dict':
        source = 'the state_dict passed in the pretrained cfg'
    else:
        source = spec.source if spec else str(location or 'checkpoint')
    check_state_dict(mapped, model, adaptable=[a + '.' for a in adaptable], source=f'pretrained weights ({source})')
    return mapped

"""From a resolved pretrained cfg to a weight file, and the one place where failing to get it becomes an error naming
the weights and the fix. Private: not part of the API.

1. A cfg whose only weight location is a URL is downloaded here, not by timm: into a cache of ours, its sha256
   computed as it streams in and checked against the manifest's pin before the file takes its place there. The cfg
   then gets ``file=<that path>``, and timm's ``load_pretrained`` reads exactly that file: in timm a ``file``
   outranks ``url`` and ``hf_hub_id`` (``tests/test_weights_package.py`` pins it). Nothing depends on where torch.hub
   would cache it. (torch's ``download_url_to_file`` would do the download, but it hashes in a second pass and has no
   timeout.)
2. Every other source (Hub, file, state dict, local folder) stays with timm's loader; huggingface_hub downloads Hub
   files, falls back to its cache where the Hub cannot be reached, and raises typed errors.
3. ``explained`` turns failures into one ``PretrainedWeightsError`` naming the weights and the fix. They are told
   apart by exception type, and a checkpoint that cannot be read by reading the local file again ourselves, never by
   the wording of torch's or timm's messages.

URL cache: ``<torch.hub.get_dir()>/checkpoints/timm_sesk/<16 hex digits of the URL's sha256>/<file name>``, or the same
below ``cache_dir`` when one is given: a folder per URL, so that two URLs ending in the same name never share a file.
A file is put there only once it has downloaded whole and, where pinned, matched its pin; a file found there is used
as is.

Pins come only from the manifest (``WeightSpec.hash_prefix``), for the tag's own URL. A URL passed in
``pretrained_cfg_overlay`` is not pinned, whatever its name looks like: ``-<hex>.`` is a sha256 prefix only where its
publisher says so. It must still be a tensors-only checkpoint that fits the model exactly. To pin a file of your own,
check its sha256 and pass ``pretrained_cfg_overlay=dict(file=...)``.
"""
import contextlib
import hashlib
import http.client
import os
import pickletools
import urllib.request
import uuid
import zipfile
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from timm.models import load_state_dict

from timm_sesk.errors import PretrainedWeightsError

from .manifest import WEIGHTS, WeightSpec

__all__ = ['explained', 'fetch_url', 'find_spec', 'pretrained_source', 'sha256_file', 'url_cache_path']

# The cached Hub files that may be the checkpoint timm read, looked at when a load fails (not config.json, README).
_CHECKPOINT_SUFFIXES = ('.safetensors', '.bin', '.pth', '.pt', '.tar', '.ckpt')
_PICKLED_GLOBALS = ('GLOBAL', 'INST', 'STACK_GLOBAL')  # the pickle opcodes that name a Python object to construct
_BLOCK = 1 << 20


def find_spec(pretrained_cfg: Mapping[str, Any]) -> Optional[WeightSpec]:
    """The manifest entry a pretrained cfg loads, or None for other sources (e.g. a timm_sesk Hub export)."""
    name = f"{pretrained_cfg.get('architecture')}.{pretrained_cfg.get('tag')}"
    spec = next((w for w in WEIGHTS if w.name == name), None)
    hub_id = pretrained_cfg.get('hf_hub_id')
    if spec is not None and hub_id and hub_id != spec.hf_hub_id:
        return None  # same tag name, another Hub repository: weights saved by timm_sesk itself
    return spec


def sha256_file(path: Union[str, os.PathLike]) -> str:
    """The sha256 hex digest of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(_BLOCK), b''):
            digest.update(block)
    return digest.hexdigest()


def url_cache_path(url: str, cache_dir: Optional[str] = None) -> str:
    """Where ``fetch_url`` keeps the file of ``url`` (see the module docstring)."""
    name = os.path.basename(urlparse(url).path)
    if name in ('', '.', '..'):  # it would name a folder, not a file
        raise PretrainedWeightsError(
            f'the pretrained weights URL {url} does not end in a file name, so it cannot be downloaded into the '
            f'cache. Pass the URL of the checkpoint file itself (e.g. .../name.pth).')
    root = cache_dir or os.path.join(torch.hub.get_dir(), 'checkpoints')
    return os.path.join(str(root), 'timm_sesk', hashlib.sha256(url.encode()).hexdigest()[:16], name)


def _download(url: str, path: str, progress: bool) -> str:
    """Stream ``url`` into ``path``, hashing as it writes (one pass); returns the sha256 hex digest."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={'User-Agent': 'timm_sesk'})
    with urllib.request.urlopen(request) as response, open(path, 'wb') as f:
        size = int(response.headers.get('Content-Length') or 0) or None
        with tqdm(total=size, unit='B', unit_scale=True, unit_divisor=1024, disable=not progress) as bar:
            for block in iter(lambda: response.read(_BLOCK), b''):
                f.write(block)
                digest.update(block)
                bar.update(len(block))
    return digest.hexdigest()


def fetch_url(url: str, pin: Optional[str], what: str, cache_dir: Optional[str] = None, progress: bool = True) -> str:
    """The cached file of ``url``, downloaded first unless cached; a download whose sha256 misses ``pin`` is refused.

    Args:
        url: The file's URL.
        pin: Leading hex digits its sha256 must have, or None for no check.
        what: The weights, as messages name them.
        cache_dir: Cache root instead of torch.hub's checkpoint folder.
        progress: Show a progress bar.
    """
    path = url_cache_path(url, cache_dir)
    if os.path.isfile(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f'{path}.{uuid.uuid4().hex}.part'  # one per process: concurrent loads never write the same file
    try:
        digest = _download(url, partial, progress)
        if pin and not digest.startswith(pin.lower()):
            raise PretrainedWeightsError(
                f'refused {url} for {what}: its sha256 {digest[:len(pin)]}... does not start with the pinned {pin}, '
                f'so it is not the published file. Nothing was loaded and the download was discarded. Retry later; '
                f'if it persists, the file at the source has changed and its provenance must be checked.')
        os.replace(partial, path)  # atomic: the cache holds whole, checked files only
    except (OSError, http.client.HTTPException) as e:  # URLError and HTTPError are OSErrors
        reason = e.reason if isinstance(e, URLError) else e
        check = f', check that its sha256 starts with {pin}' if pin else ''
        raise PretrainedWeightsError(
            f'{what}: downloading {url} failed ({reason}). Fetch the file where the network allows{check}, and pass '
            f'pretrained_cfg_overlay=dict(file="/path/to/{os.path.basename(path)}").') from e
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def _pickled_objects(path: str) -> Optional[List[str]]:
    """The Python objects other than tensors a pickled checkpoint would construct (names where known), else None.

    A zip checkpoint (``torch.save``) is listed by torch's ``get_unsafe_globals_in_checkpoint``; a bare pickle,
    which ``torch.save`` never writes, counts when it parses whole and names any object. Anything else is None.
    """
    try:
        if zipfile.is_zipfile(path):
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or None
        with open(path, 'rb') as f:
            ops = [(op.name, arg) for op, arg, _ in pickletools.genops(f)]
    except Exception:  # an unparsable file holds no objects we could name: it is corrupt
        return None
    if not any(name in _PICKLED_GLOBALS for name, _ in ops):
        return None
    return sorted({str(arg).replace(' ', '.') for name, arg in ops if name in ('GLOBAL', 'INST')})


def _why_unreadable(path: str, downloaded: bool) -> Optional[Tuple[str, str]]:
    """``(why, fix)`` where the checkpoint at ``path`` cannot be read; None where it reads (the failure lies elsewhere).

    Args:
        path: The local file.
        downloaded: It was downloaded (from the Hub or a URL), so a fresh download may mend it.
    """
    try:
        load_state_dict(path, weights_only=True)  # timm's own reader, as its loader reads the file
    except Exception:  # whatever torch or safetensors raise for this one file, the file is the cause
        objects = _pickled_objects(path)
        if objects is None:
            fix = ('Delete it and load again to download it afresh, or pass a good copy with '
                   'pretrained_cfg_overlay=dict(file=...).' if downloaded else
                   'Pass a good copy with pretrained_cfg_overlay=dict(file=...).')
            return 'it is truncated or corrupt', fix
        named = f': {", ".join(objects)}' if objects else ''
        return (f'it holds Python objects other than tensors, which are never unpickled here{named}',
                'Use weights saved as tensors only (safetensors, or torch.save of a state dict), e.g. with '
                'pretrained_cfg_overlay=dict(file=...).')
    return None


def _cached_hub_files(hub_id: str, cache_dir: Optional[str]) -> List[str]:
    """The checkpoint files of a Hub repository's revision in the local cache (timm's ``hf_hub_id`` is
    ``repo[@revision]``)."""
    repo_id, _, revision = hub_id.partition('@')
    try:
        cache = scan_cache_dir(cache_dir)
    except Exception:  # no cache, or one it cannot read: nothing to look at
        return []
    return [
        str(f.file_path)
        for repo in cache.repos if repo.repo_type == 'model' and repo.repo_id == repo_id
        for rev in repo.revisions if (revision or 'main') in rev.refs or rev.commit_hash == revision
        for f in rev.files if f.file_name.endswith(_CHECKPOINT_SUFFIXES)
    ]


def _unreadable_file(cfg: Mapping[str, Any], fetched: bool,
                     cache_dir: Optional[str]) -> Optional[Tuple[str, str, str]]:
    """``(path, why, fix)`` for the first local file the cfg names that cannot be read, or None."""
    file, hub_id = cfg.get('file'), cfg.get('hf_hub_id')
    candidates = [(file, fetched)] if file and os.path.isfile(file) else []
    if hub_id:
        candidates += [(path, True) for path in _cached_hub_files(hub_id, cache_dir)]
    for path, downloaded in candidates:
        unreadable = _why_unreadable(path, downloaded)
        if unreadable is not None:
            return (os.path.realpath(path), *unreadable)  # the Hub cache links snapshots to blobs: name the blob
    return None


def _hub_fetch_hint(hub_id: str, filename: Optional[str]) -> str:
    repo_id, _, revision = hub_id.partition('@')
    file_arg = f' {filename}' if filename else ''
    revision_arg = f' --revision {revision}' if revision else ''
    return (f'download it where the Hub is reachable (`hf download {repo_id}{file_arg}{revision_arg}`), or fetch '
            f'the checkpoint by hand and pass pretrained_cfg_overlay=dict(file="/path/to/'
            f'{filename or "model.safetensors"}")')


@contextlib.contextmanager
def explained(what: str, cfg: Mapping[str, Any], fetched: bool = False,
              cache_dir: Optional[str] = None) -> Iterator[None]:
    """Turn a failure to get or read the weights ``cfg`` names into one ``PretrainedWeightsError`` naming them and
    the fix (an error of another kind, a bug, passes unchanged).

    Args:
        what: The weights, as messages name them (``pretrained weights for sk_resnet18.ra_in1k``, ``hf-hub:ORG/NAME``).
        cfg: Their pretrained cfg (``hf_hub_id``, ``hf_hub_filename``, ``file``, ``url``), or as much as is known.
        fetched: ``cfg['file']`` was downloaded from its URL here.
        cache_dir: The Hub cache in use, where not the default.
    """
    hub_id, filename, file = cfg.get('hf_hub_id') or '', cfg.get('hf_hub_filename'), cfg.get('file')
    where = f'hf-hub:{hub_id}' if hub_id and not file else (file or cfg.get('url'))
    named = f'{what} ({where})' if where and where not in what else what
    repo = hub_id.partition('@')[0]
    try:
        yield
    except PretrainedWeightsError:
        raise
    except LocalEntryNotFoundError as e:  # a FileNotFoundError too: before it
        raise PretrainedWeightsError(
            f'{named} are not in the local Hugging Face cache, and the Hub cannot be reached (offline mode or no '
            f'network). To get them, {_hub_fetch_hint(hub_id, filename)}.') from e
    except RepositoryNotFoundError as e:
        raise PretrainedWeightsError(
            f'{named}: the Hub has no repository {repo} (or it is private or gated: log in with `hf auth login`). '
            f'Check the model name and tag (timm.list_pretrained()) or the Hub id you passed.') from e
    except RevisionNotFoundError as e:
        raise PretrainedWeightsError(
            f'{named}: the Hub repository {repo} has no revision {hub_id.partition("@")[2] or "main"!r}.') from e
    except EntryNotFoundError as e:
        raise PretrainedWeightsError(
            f'{named}: the Hub repository {repo} has no {filename or "such file"} (a timm model repository holds '
            f'config.json and its weights).') from e
    except OfflineModeIsEnabled as e:
        raise PretrainedWeightsError(
            f'{named} need a download, but offline mode is on (HF_HUB_OFFLINE). To get them, '
            f'{_hub_fetch_hint(hub_id, filename)}.') from e
    except FileNotFoundError as e:
        if not file or os.path.exists(file):
            raise
        raise PretrainedWeightsError(
            f'{what}: no checkpoint file at {file}. Pass the path of an existing checkpoint in '
            f'pretrained_cfg_overlay=dict(file=...).') from e
    except HfHubHTTPError as e:  # any other answer of the Hub's (rate limit, server error, ...)
        raise PretrainedWeightsError(f'{what}: the Hub refused it: {str(e).splitlines()[0]}') from e
    except Exception as e:  # torch's read errors have no telling type: read the local file again to tell
        unreadable = _unreadable_file(cfg, fetched, cache_dir)
        if unreadable is None:
            raise
        path, why, fix = unreadable
        raise PretrainedWeightsError(
            f'{what}: {path} is not a readable checkpoint ({why}). Nothing was loaded. {fix}') from e


def _no_weights(variant: str) -> PretrainedWeightsError:
    from . import archs_with_weights  # the package's own helper; this module loads before the package is complete

    return PretrainedWeightsError(
        f'{variant} has no published pretrained weights. Use pretrained=False for random initialisation, pass '
        f'your own checkpoint with pretrained_cfg_overlay=dict(file=...), or pick an architecture with weights: '
        f'{", ".join(archs_with_weights())}.')


@contextlib.contextmanager
def pretrained_source(cfg: Mapping[str, Any], cache_dir: Optional[str] = None) -> Iterator[Dict[str, Any]]:
    """Prepare loading the weights a resolved pretrained cfg names: yields the cfg to load them with.

    A URL-only source is fetched and verified first and handed to timm as ``file``; failures inside the ``with``
    block become a ``PretrainedWeightsError`` naming the weights and the fix (``explained``).

    Args:
        cfg: The resolved pretrained cfg (a dict, as ``model.pretrained_cfg``).
        cache_dir: Cache root for downloads, where not the default.
    """
    cfg = dict(cfg)
    variant, tag = cfg.get('architecture'), cfg.get('tag')
    if not any(cfg.get(k) for k in ('file', 'url', 'hf_hub_id', 'state_dict')):
        raise _no_weights(variant)
    what = f'pretrained weights for {variant}' + (f'.{tag}' if tag else '')
    fetched = False
    if cfg.get('url') and not any(cfg.get(k) for k in ('file', 'hf_hub_id', 'state_dict')):  # the URL is the one
        spec = find_spec(cfg)
        cfg['file'] = fetch_url(cfg['url'], spec.hash_prefix if spec and spec.url == cfg['url'] else None, what,
                                cache_dir)
        fetched = True
    with explained(what, cfg, fetched, cache_dir):
        yield cfg

"""From a resolved pretrained cfg to a weight file, and the one place where failing to get it becomes an error naming
the weights and the fix. Private: not part of the API.

1. A cfg whose only weight location is a URL is downloaded here, not by timm: into a cache of ours, its sha256
   computed as it streams in and checked against the manifest's pin before the file takes its place there. The cfg
   then gets ``file=<that path>``, and timm's ``load_pretrained`` reads exactly that file: in timm a ``file``
   outranks ``url`` and ``hf_hub_id`` (``tests/test_weights_package.py`` pins it). Nothing depends on where torch.hub
   would cache it. (torch's ``download_url_to_file`` would do the download, but it hashes in a second pass and has no
   timeout.)
2. Every other source (Hub, file, state dict, local folder) stays with timm's loader; huggingface_hub downloads Hub
   files, falls back to its cache where the Hub cannot be reached, and raises typed errors. Before a Hub file that is
   not cached is downloaded, the Hub is asked for it once (``check_hub``), so that a Hub that cannot be reached fails
   at once instead of after huggingface_hub's retries for each file timm tries.
3. ``explained`` turns failures into one ``PretrainedWeightsError`` naming the weights and the fix (or a
   ``StorageError`` where the disk refused to write). They are told apart by exception type, and a checkpoint that
   cannot be read by reading the local file again ourselves, never by the wording of torch's or timm's messages.

URL cache: ``<torch.hub.get_dir()>/checkpoints/timm_sesk/<16 hex digits of the URL's sha256>/<file name>``, or the same
below ``cache_dir`` when one is given: a folder per URL, so that two URLs ending in the same name never share a file.
A download streams into a partial file of its own beside it (``.part-<uuid>-<file name>``). It takes its place in the
cache only once it has arrived whole (as long as the server announced) and matched its pin, or, where it has none, read
as a checkpoint; else it is discarded. A file found there is used as is. Partial files of killed downloads are removed
by later downloads once untouched for a day (``timm_sesk.files.STALE_AFTER``): no live download leaves its file that
long.

Time limits: a download fails when the server does not connect, answer or send 1 KiB within
``TIMM_SESK_DOWNLOAD_TIMEOUT`` seconds (default 15; read when a download starts). The Hub is asked with the same
limit.

Pins come only from the manifest (``WeightSpec.hash_prefix``), for the tag's own URL. A URL passed in
``pretrained_cfg_overlay`` is not pinned, whatever its name looks like: ``-<hex>.`` is a sha256 prefix only where its
publisher says so. It must still be a tensors-only checkpoint that fits the model exactly. To pin a file of your own,
check its sha256 and pass ``pretrained_cfg_overlay=dict(file=...)``.
"""
import contextlib
import glob
import hashlib
import http.client
import os
import sys
import time
import urllib.request
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_url, scan_cache_dir, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from timm.models import load_state_dict

from timm_sesk.errors import ModelConfigError, PretrainedWeightsError
from timm_sesk.files import not_a_file, remove_stale, storage_error, storage_errors

from .checkpoint import is_safetensors, pickled_objects
from .manifest import WEIGHTS, WeightSpec

__all__ = ['HubUnreachable', 'check_hub', 'describe_network_error', 'download_timeout', 'explained', 'fetch_url',
           'find_spec', 'network_errors', 'pretrained_source', 'sha256_file', 'url_cache_path']

# The cached Hub files that may be the checkpoint timm read, looked at when a load fails (not config.json, README).
_CHECKPOINT_SUFFIXES = ('.safetensors', '.bin', '.pth', '.pt', '.tar', '.ckpt')
_BLOCK = 1 << 20
_PARTIAL = '.part-'  # a download on its way: <URL folder>/.part-<uuid>-<file name>
TIMEOUT_SETTING, DEFAULT_TIMEOUT = 'TIMM_SESK_DOWNLOAD_TIMEOUT', 15.0
_MIN_BYTES = 1024  # a download that receives less in a timeout's time has stalled (a server dripping bytes)
# The Hub files timm reads a repository's weights from, where its cfg names none: model.safetensors first (timm's
# load_state_dict_from_hf), then pytorch_model.bin.
_HUB_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')


def download_timeout() -> float:
    """Seconds a download waits for the server to connect, answer or send more (``TIMM_SESK_DOWNLOAD_TIMEOUT``)."""
    raw = os.environ.get(TIMEOUT_SETTING, '').strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        timeout = float(raw)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise PretrainedWeightsError(f'{TIMEOUT_SETTING} must be a number of seconds above 0, got {raw!r}')
    return timeout


def _client_errors(httpx_name: str, requests_names: Tuple[str, ...]) -> List[type]:
    """Exception types of the HTTP clients huggingface_hub uses, where imported: httpx2 or httpx (huggingface_hub 1
    and later), requests (0.x)."""
    kinds = [getattr(sys.modules[name], httpx_name) for name in ('httpx2', 'httpx') if name in sys.modules]
    if 'requests' in sys.modules:
        kinds += [getattr(sys.modules['requests'].exceptions, name) for name in requests_names]
    return kinds


def network_errors() -> Tuple[type, ...]:
    """The exception types of a network fault (unreachable, refused, timed out, broken off): the standard library's
    and huggingface_hub's HTTP client's. Not the Hub's answers (``HfHubHTTPError``)."""
    return (ConnectionError, TimeoutError, http.client.HTTPException, URLError,
            *_client_errors('TransportError', ('ConnectionError', 'Timeout', 'ChunkedEncodingError')))


def describe_network_error(error: BaseException, timeout: Optional[float] = None) -> str:
    """What a network fault was: ``no answer within 15 s (TIMM_SESK_DOWNLOAD_TIMEOUT)`` for a timeout of ours, else
    its type and the operating system's reason where one lies beneath it (``ConnectError: [Errno 111] Connection
    refused``), or its first line."""
    reason = error.reason if isinstance(error, URLError) and isinstance(error.reason, BaseException) else error
    if timeout is not None and isinstance(reason, (TimeoutError, *_client_errors('TimeoutException', ('Timeout',)))):
        return f'no answer within {timeout:g} s ({TIMEOUT_SETTING})'
    cause = _os_error_beneath(reason)
    text = f'[Errno {cause.errno}] {cause.strerror}' if cause is not None else str(reason).strip()
    return f'{type(reason).__name__}: {text.splitlines()[0]}' if text else type(reason).__name__


def _os_error_beneath(error: BaseException) -> Optional[OSError]:
    """The operating system's error a client's error wraps (requests nests it in its arguments, httpx chains it)."""
    seen, todo = set(), [error]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None and current.strerror:
            return current
        todo += [e for e in (current.__cause__, current.__context__, getattr(current, 'reason', None),
                             *getattr(current, 'args', ())) if isinstance(e, BaseException)]
    return None


def find_spec(pretrained_cfg: Mapping[str, Any]) -> Optional[WeightSpec]:
    """The manifest entry a pretrained cfg loads, or None for other sources (e.g. a timm_sesk Hub export).

    A cfg loads a tag's weights only where the source timm's loader takes from it is the tag's own. timm takes the
    first of ``state_dict``, ``file``, ``hf_hub_id`` and ``url`` (``_resolve_pretrained_source``), so a
    ``pretrained_cfg_overlay`` with a file, or with a URL on a tag that has none on the Hub, loads other weights than
    the tag's; a URL on a Hub tag is outranked by the Hub and loads the tag's weights.
    """
    name = f"{pretrained_cfg.get('architecture')}.{pretrained_cfg.get('tag')}"
    spec = next((w for w in WEIGHTS if w.name == name), None)
    if spec is None or pretrained_cfg.get('state_dict') is not None or pretrained_cfg.get('file'):
        return None
    if pretrained_cfg.get('hf_hub_id'):  # another repository or file: weights saved by timm_sesk itself, or others
        same = (pretrained_cfg['hf_hub_id'], pretrained_cfg.get('hf_hub_filename')) == (
            spec.hf_hub_id, spec.hf_hub_filename)
        return spec if same else None
    return spec if pretrained_cfg.get('url') == spec.url else None


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
    return os.path.join(_url_cache_root(cache_dir), hashlib.sha256(url.encode()).hexdigest()[:16], name)


def _url_cache_root(cache_dir: Optional[str]) -> str:
    return os.path.join(str(cache_dir or os.path.join(torch.hub.get_dir(), 'checkpoints')), 'timm_sesk')


class _NetworkFault(Exception):
    """A download failed on the network: unreachable, refused, no answer, stalled, or cut short."""


@contextlib.contextmanager
def _network(timeout: float) -> Iterator[None]:
    """Network faults in the block become one ``_NetworkFault`` saying what happened."""
    try:
        yield
    except HTTPError:
        raise  # the server's answer (404, ...), not a network fault
    except network_errors() as e:
        raise _NetworkFault(describe_network_error(e, timeout)) from e


def _body(response: http.client.HTTPResponse, timeout: float) -> Iterator[bytes]:
    """The response's body as it arrives. Silence for ``timeout`` seconds (the socket's timeout) or less than
    ``_MIN_BYTES`` in that time is a stall."""
    window, received = time.monotonic(), 0
    while True:
        with _network(timeout):
            block = response.read1(_BLOCK)  # what has arrived, not a whole block: a drip is seen as one
        if not block:
            return
        yield block
        received += len(block)
        if time.monotonic() - window >= timeout:
            if received < _MIN_BYTES:
                raise _NetworkFault(f'the server sent {received} bytes in {timeout:g} s ({TIMEOUT_SETTING}): '
                                    'it has stalled')
            window, received = time.monotonic(), 0


def _download(url: str, path: str, progress: bool, timeout: float) -> Tuple[str, Optional[int]]:
    """Stream ``url`` into ``path``, hashing as it writes (one pass); returns the sha256 hex digest and the length the
    server announced (None where it announced none), which the file has.

    Raises:
        HTTPError: The server answered with an error (404, ...).
        _NetworkFault: The server was unreachable, did not answer, stalled, or sent less than it announced.
        StorageError: ``path`` cannot be written (the disk is full, read-only, ...).
    """
    from tqdm import tqdm

    digest, size = hashlib.sha256(), 0
    request = urllib.request.Request(url, headers={'User-Agent': 'timm_sesk'})
    with _network(timeout):
        response = urllib.request.urlopen(request, timeout=timeout)
    announced = response.length  # Content-Length; None where absent, invalid or chunked
    with response, storage_errors(os.path.dirname(path), 'write the download into', _CACHE_FIX), \
            open(path, 'wb') as f, \
            tqdm(total=announced, unit='B', unit_scale=True, unit_divisor=1024, disable=not progress) as bar:
        for block in _body(response, timeout):
            f.write(block)
            digest.update(block)
            size += len(block)
            bar.update(len(block))
    if announced is not None and size != announced:
        raise _NetworkFault(f'the connection closed after {size} of the {announced} bytes the server announced')
    return digest.hexdigest(), announced


_CACHE_FIX = ('Free space there, or point the cache elsewhere: TORCH_HOME for URL downloads, HF_HUB_CACHE for the '
              "Hub's, or cache_dir=... .")


def _refuse_unreadable(path: str, url: str, what: str) -> None:
    """Refuse a download that timm's reader cannot read as a checkpoint of tensors, before it takes its place in the
    cache."""
    unreadable = _why_unreadable(path, downloaded=True)
    if unreadable is not None:
        raise PretrainedWeightsError(
            f'{what}: {url} sent a file that is not a readable checkpoint ({unreadable[0]}). It was discarded, '
            'nothing was cached or loaded. Retry; if it persists, pass a good copy with '
            'pretrained_cfg_overlay=dict(file=...).')


def fetch_url(url: str, pin: Optional[str], what: str, cache_dir: Optional[str] = None, progress: bool = True,
              timeout: Optional[float] = None) -> str:
    """The cached file of ``url``, downloaded first unless cached. A download that arrives short, misses ``pin``
    (its sha256 prefix) or, without a pin, does not read as a checkpoint is refused and discarded.

    Args:
        url: The file's URL.
        pin: Leading hex digits its sha256 must have, or None for no check.
        what: The weights, as messages name them.
        cache_dir: Cache root instead of torch.hub's checkpoint folder.
        progress: Show a progress bar.
        timeout: Seconds to wait for the server to connect, answer or send 1 KiB (default: ``download_timeout()``).

    Raises:
        PretrainedWeightsError: The download failed on the network, or its file was refused.
        StorageError: The cache cannot be written.
    """
    path = url_cache_path(url, cache_dir)
    if os.path.isfile(path):
        return path
    timeout = download_timeout() if timeout is None else timeout
    with storage_errors(os.path.dirname(path), 'write the download cache', _CACHE_FIX):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    remove_stale(glob.glob(os.path.join(glob.escape(_url_cache_root(cache_dir)), '*', f'{_PARTIAL}*')))
    # One per process, so that concurrent loads never write the same file; ending in the file's name, so that its
    # reader is chosen by its extension, as timm's is.
    partial = os.path.join(os.path.dirname(path), f'{_PARTIAL}{uuid.uuid4().hex}-{os.path.basename(path)}')
    check = f', check that its sha256 starts with {pin}' if pin else ''
    try:
        digest, announced = _download(url, partial, progress, timeout)
        if pin and not digest.startswith(pin.lower()):
            whole = 'it arrived as long as the server announced, so' if announced is not None else \
                'the server announced no length, so a download cut short looks the same; if a retry gives the ' \
                'same sha256,'
            raise PretrainedWeightsError(
                f'refused {url} for {what}: its sha256 {digest[:len(pin)]}... does not start with the pinned {pin}: '
                f'{whole} it is not the published file. Nothing was loaded and the download was discarded. Retry '
                f'later; if it persists, the file at the source has changed and its provenance must be checked.')
        if not pin:
            _refuse_unreadable(partial, url, what)
        with storage_errors(os.path.dirname(path), 'write the download into', _CACHE_FIX):
            os.replace(partial, path)  # atomic: the cache holds whole, checked files only
    except HTTPError as e:
        raise PretrainedWeightsError(
            f'{what}: downloading {url} failed ({e.reason}). Fetch the file where the network allows{check}, and pass '
            f'pretrained_cfg_overlay=dict(file="/path/to/{os.path.basename(path)}").') from e
    except _NetworkFault as e:
        raise PretrainedWeightsError(
            f'{what}: downloading {url} failed ({e}): a network problem, nothing was cached. Retry, or fetch the '
            f'file where the network allows{check} and pass pretrained_cfg_overlay=dict(file="/path/to/'
            f'{os.path.basename(path)}").') from e
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


class HubUnreachable(Exception):
    """The Hub cannot be reached (the reason is the message), and the files asked for are not cached."""


def check_hub(hub_id: str, filenames: Tuple[str, ...], cache_dir: Optional[str] = None,
              timeout: Optional[float] = None) -> None:
    """Where none of ``filenames`` of ``hub_id`` (``repo[@revision]``) is in the local cache, ask the Hub for the
    first, once, within ``timeout``; raise ``HubUnreachable`` where it does not answer.

    huggingface_hub, which timm calls, retries a Hub it cannot reach before saying the file is not cached (about
    23 s; over 6 min for a server that accepts and never answers), for each file timm tries. Asking once first turns
    that into one error within the timeout. Nothing is asked where a file is cached (huggingface_hub falls back to it
    after one request of its own) or offline mode is on (it asks nothing), and any answer of the Hub's, an error
    included, leaves the download to huggingface_hub, which raises it typed.

    Args:
        hub_id: The repository, optionally ``@revision``.
        filenames: The files timm may read, in its order.
        cache_dir: The Hub cache, where not the default.
        timeout: Seconds to wait for the Hub (default: ``download_timeout()``).
    """
    if hub_constants.HF_HUB_OFFLINE:
        return
    repo_id, _, revision = hub_id.partition('@')
    if any(isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision or None), str)
           for name in filenames):
        return
    timeout = download_timeout() if timeout is None else timeout
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filenames[0], revision=revision or None), timeout=timeout)
    except network_errors() as e:
        raise HubUnreachable(describe_network_error(e, timeout)) from e
    except Exception:  # an answer (a file, or an error huggingface_hub raises typed on the download)
        return


def _why_unreadable(path: str, downloaded: bool) -> Optional[Tuple[str, str]]:
    """``(why, fix)`` where the checkpoint at ``path`` cannot be read; None where it reads (the failure lies elsewhere).

    Args:
        path: The local file.
        downloaded: It was downloaded (from the Hub or a URL), so a fresh download may mend it.
    """
    try:
        load_state_dict(path, weights_only=True)  # timm's own reader, as its loader reads the file
    except Exception:  # whatever torch or safetensors raise for this one file, the file is the cause
        if is_safetensors(path) and not path.endswith('.safetensors'):
            return (f'it is a safetensors file, which timm reads as one only by its name: '
                    f'{os.path.basename(path)}', 'Rename it to end in .safetensors (timm_sesk.load_weights and '
                    '--checkpoint read a file by its content).')
        objects = pickled_objects(path)
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
    except (PretrainedWeightsError, ModelConfigError):  # explained already (a config.json is not the weights)
        raise
    except (LocalEntryNotFoundError, HubUnreachable) as e:  # a FileNotFoundError too: before it
        why = str(e) if isinstance(e, HubUnreachable) else 'offline mode or no network'
        raise PretrainedWeightsError(
            f'{named} are not in the local Hugging Face cache, and the Hub cannot be reached ({why}). To get them, '
            f'{_hub_fetch_hint(hub_id, filename)}.') from e
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
    except network_errors() as e:  # after huggingface_hub's own retries
        raise PretrainedWeightsError(
            f'{named}: the download broke off ({describe_network_error(e)}): a network problem, nothing was cached. '
            f'Retry, or {_hub_fetch_hint(hub_id, filename)}.') from e
    except Exception as e:  # torch's read errors have no telling type: read the local file again to tell
        downloading = isinstance(e, OSError) and hub_id and not file  # only a Hub download writes here
        full = storage_error(e, 'write the pretrained weights to', cache_dir or hub_constants.HF_HUB_CACHE,
                             _CACHE_FIX) if downloading else None
        if full is not None:  # the cache's disk, not the network or the file
            raise full from e
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
    fetched, local = False, any(cfg.get(k) for k in ('file', 'state_dict'))
    kind = not_a_file(cfg['file']) if cfg.get('file') and cfg.get('source') != 'local-dir' else None  # a folder
    if kind:  # a FIFO would block timm's reader until something writes to it
        raise PretrainedWeightsError(f'{what}: {cfg["file"]} is {kind}, not a checkpoint file. Pass the path of a '
                                     'checkpoint file in pretrained_cfg_overlay=dict(file=...).')
    if cfg.get('url') and not local and not cfg.get('hf_hub_id'):  # the URL is the one
        spec = find_spec(cfg)
        cfg['file'] = fetch_url(cfg['url'], spec.hash_prefix if spec and spec.url == cfg['url'] else None, what,
                                cache_dir)
        fetched = True
    with explained(what, cfg, fetched, cache_dir):
        if cfg.get('hf_hub_id') and not local:
            filename = cfg.get('hf_hub_filename')
            check_hub(cfg['hf_hub_id'], (filename,) if filename else _HUB_WEIGHT_FILES, cache_dir)
        yield cfg

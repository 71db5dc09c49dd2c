"""Building the model a command runs, with its weights: the pretrained tag's, a checkpoint file's, or random ones.

A checkpoint loads in timm_sesk's own layout or in the layout of one of the architecture's pretrained tags, through
the tag's ``pretrained_filter_fn`` as ``pretrained_cfg_overlay=dict(file=...)`` does; its head size, and for a
``train.py`` checkpoint its input size, come from the file. Failures are ``CliError``s naming the fix, and a Hub
that cannot be reached is found out in seconds, not after a minute of retries.
"""
import os
import socket
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlparse

import timm
import torch
from torch import nn

import timm_sesk
from timm_sesk import checkpoint as checkpoints
from timm_sesk.fuse import fuse
from timm_sesk.graft import NotGraftableError
from timm_sesk.weights import Checkpoint, CheckpointReadError, Fit, convert_state_dict

from .errors import EXIT_USAGE, PROG, CliError

__all__ = ['build_model', 'for_inference', 'hub_reachable']

# Seconds to wait for a TCP connection to the Hub before taking it as unreachable (a reachable one answers in well
# under a second; huggingface_hub itself would retry for about a minute).
HUB_PROBE_TIMEOUT = 3.0


def build_model(name: str, checkpoint: Optional[str], no_pretrained: bool, model_args: Dict[str, Any],
                device: str = 'cpu', kwarg_option: str = '--model-kwarg') -> Tuple[nn.Module, str]:
    """The model ``name`` with pretrained weights, a checkpoint's or random ones, in eval mode on ``device``;
    returns it and a description of its weights. ``kwarg_option`` is the command's option for create_model
    arguments, named in errors. A model holding other weights than its tag's has a pretrained cfg without the tag
    (``timm_sesk.checkpoint.mark_finetuned``)."""
    if checkpoint and no_pretrained:
        raise CliError('--checkpoint and --no-pretrained exclude each other; pass one', code=EXIT_USAGE)
    hub = name.startswith('hf-hub:')
    if checkpoint and hub:
        raise CliError(f'--checkpoint loads into a zoo model: pass its architecture with -m (`{PROG} list` names '
                       'them), not a Hub id', code=EXIT_USAGE)
    if not hub:
        _check_model_args(name, model_args, kwarg_option)
    try:
        if checkpoint:
            model, weights = _from_checkpoint(name, checkpoint, model_args, kwarg_option)
        elif no_pretrained:
            model, weights = checkpoints.mark_finetuned(timm.create_model(name, **model_args)), 'random weights'
        else:
            model, weights = _pretrained(name, model_args)
    except NotGraftableError as e:  # a graft tag's plain weights, onto a model built with other SE/SK arguments
        raise CliError(f"{e} (the weights are a plain ResNet's, grafted onto {name} as they load)",
                       code=EXIT_USAGE) from e
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise CliError(f'cannot use device {device!r} ({str(e).splitlines()[0]}); try --device cpu', 2) from e
    return model.eval(), weights


def for_inference(model: nn.Module, fused: bool = True) -> nn.Module:
    """The model as predict and validate run it: BatchNorms folded into the convolutions (``timm_sesk.fuse``, the
    same function) and channels_last memory, or as built with ``fused=False``."""
    from timm_sesk.models.trunk import SeskResNet

    if fused and isinstance(model, SeskResNet):  # fuse knows our blocks; other Hub models run as built
        fuse(model)
    if fused:
        model = model.to(memory_format=torch.channels_last)
    return model


def _describe_args(model_args: Dict[str, Any], kwarg_option: str) -> str:
    return ' '.join(f'{kwarg_option} {k}={v!r}' for k, v in model_args.items())


def _check_model_args(name: str, model_args: Dict[str, Any], kwarg_option: str) -> None:
    """Build the structure on the meta device (no memory, no weights) to refuse bad create_model arguments before
    any download."""
    try:
        timm.create_model(name, device='meta', **model_args)
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        if not model_args:  # the model itself does not build: a bug, with its traceback
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CliError(f'cannot build {name} with {_describe_args(model_args, kwarg_option)}: {reason}',
                       code=EXIT_USAGE) from e


def _from_checkpoint(name: str, path: str, model_args: Dict[str, Any], kwarg_option: str) -> Tuple[nn.Module, str]:
    if not Path(path).is_file():
        raise CliError(f'no such checkpoint file: {path}', code=EXIT_USAGE)
    overlay = model_args.get('pretrained_cfg_overlay') or {}
    if any(overlay.get(k) for k in ('file', 'state_dict', 'url', 'hf_hub_id')):
        raise CliError('--checkpoint and a pretrained_cfg_overlay source both give the weights; pass one',
                       code=EXIT_USAGE)
    try:
        ckpt = Checkpoint.read(path)
    except CheckpointReadError as e:
        raise CliError(f'{e}. Pass a .safetensors file or a PyTorch state dict (a timm train.py checkpoint works)') \
            from e
    arch, _, tag = name.partition('.')
    args = {k: v for k, v in model_args.items() if k != 'num_classes'}  # the head size is the checkpoint's
    layout, fit = checkpoints.find_layout(ckpt, arch, tag or None, args)
    if layout is None:
        raise CliError(_mismatch(name, ckpt, fit, kwarg_option))
    classes = checkpoints.head_size(ckpt.state_dict, layout)
    asked = model_args.get('num_classes')
    if classes is not None:
        if asked is not None and asked != classes:
            raise CliError(f'checkpoint {path} has a {classes}-class head, not {asked}: drop --num-classes (or '
                           'num_classes) and its head size is read from the checkpoint', code=EXIT_USAGE)
        args['num_classes'] = classes
    if layout.tag is None:  # our own layout: as it is (a tag named with the model still gives the data config)
        model = timm.create_model(name, **args)
        model.load_state_dict(convert_state_dict(ckpt.state_dict, 'native'))
        weights = f'checkpoint {path}'
    else:  # a source layout: through the tag's pretrained_filter_fn, as pretrained_cfg_overlay=dict(file=...) loads
        args['pretrained_cfg_overlay'] = dict(overlay, file=str(path), num_classes=args.get('num_classes', 1000))
        model = timm.create_model(f'{arch}.{layout.tag}', pretrained=True, **args)
        weights = f'checkpoint {path} ({layout.describe()})'
    return checkpoints.mark_finetuned(model, checkpoints.data_args(ckpt)), weights


def _mismatch(name: str, ckpt: Checkpoint, fit: Fit, kwarg_option: str) -> str:
    """Why a checkpoint fits none of the model's layouts, in one line: the architecture it is for, if known or
    guessed from its keys, what is missing and unexpected, and what to do."""
    other, hint = _trained_for(ckpt, name.partition('.')[0])
    if hint is None:
        trained = ckpt.train_args.get('model_kwargs')
        hint = f'if it was trained with other create_model arguments, pass them ({kwarg_option} KEY=VALUE' + \
            (f'; train.py had {trained}' if trained else '') + ')'
    head = f'checkpoint {ckpt.path} is for {other}, not {name}' if other else \
        f'checkpoint {ckpt.path} does not fit {name}'
    return f'{head}: {fit.describe()}; {hint}'


def _trained_for(ckpt: Checkpoint, arch: str) -> Tuple[Optional[str], Optional[str]]:
    """The architecture a checkpoint that does not fit ``arch`` is for (train.py's ``arch``, else guessed from its
    keys), and what to run it with; ``(None, None)`` where unknown or the same architecture."""
    zoo = timm_sesk.list_models()
    if ckpt.arch:
        other = ckpt.arch.split('.')[0]
        if other == arch:
            return None, None  # the right architecture, built with other arguments
        return ckpt.arch, f'run it with -m {other}' if other in zoo else 'run it with -m and its timm_sesk model'
    guess = checkpoints.guess_arch(ckpt.state_dict, [a for a in zoo if a != arch])
    if guess is None:
        return None, None
    other, layout = guess
    if layout.graft:  # a plain ResNet's weights: the graft tags take them
        return f'{layout.source} (by its keys)', f'-m {other} grafts it'
    return f'{other} (by its keys)', f'run it with -m {other}'


def _pretrained(name: str, model_args: Dict[str, Any]) -> Tuple[nn.Module, str]:
    if _uses_hub(name, model_args):
        _go_offline_unless_reachable()
    if not name.startswith('hf-hub:'):
        model = timm.create_model(name, pretrained=True, **model_args)
        cfg = model.pretrained_cfg
        tag = f"{cfg.get('architecture')}.{cfg.get('tag')}" if cfg.get('tag') else name
        overlay = model_args.get('pretrained_cfg_overlay')
        file = overlay.get('file') if isinstance(overlay, dict) else None
        return model, f'checkpoint {file} (as {tag})' if file else tag
    from huggingface_hub import errors

    repo = name[len('hf-hub:'):].partition('@')[0]
    try:
        return timm.create_model(name, pretrained=True, **model_args), name
    except errors.LocalEntryNotFoundError as e:
        raise CliError(f'{name} is not in the local Hugging Face cache, and the Hub cannot be reached (offline mode '
                       f'or no network): download it where the Hub is reachable (`hf download {repo}`)') from e
    except errors.RepositoryNotFoundError as e:
        raise CliError(f'the Hub has no repository {repo} (or it is private or gated: log in with `hf auth login`); '
                       f'`{PROG} export --repo-id ORG/NAME --push` uploads one') \
            from e
    except errors.RevisionNotFoundError as e:
        raise CliError(f'the Hub repository {repo} has no revision {name.partition("@")[2]!r}') from e
    except errors.EntryNotFoundError as e:
        raise CliError(f'{repo} is not a timm model repository (no config.json and weights in it, as '
                       f'`{PROG} export` writes them)') from e
    except errors.HfHubHTTPError as e:
        raise CliError(f'the Hub refused {name}: {str(e).splitlines()[0]}') from e
    except RuntimeError as e:
        architecture = _hub_architecture(name)
        if architecture is None or timm.is_model(architecture):
            raise
        raise CliError(f'{name} is a {architecture} model, an architecture timm does not know; {PROG} runs '
                       f'timm_sesk and timm models') from e


def _hub_architecture(name: str) -> Optional[str]:
    """The architecture an ``hf-hub:`` repository's cached config.json names, None where there is none."""
    import json

    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = name[len('hf-hub:'):].partition('@')
    path = try_to_load_from_cache(repo, 'config.json', revision=revision or None)
    try:
        return json.loads(Path(path).read_text()).get('architecture') if isinstance(path, str) else None
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, or not an object
        return None


def _uses_hub(name: str, model_args: Dict[str, Any]) -> bool:
    """Whether loading the pretrained weights of ``name`` asks the Hugging Face Hub."""
    if name.startswith('hf-hub:'):
        return True
    from timm.models import resolve_pretrained_cfg

    cfg = resolve_pretrained_cfg(name, pretrained_cfg_overlay=model_args.get('pretrained_cfg_overlay')).to_dict()
    # timm's order of sources: an in-memory state dict or a file outranks the Hub, which outranks a URL.
    return bool(cfg.get('hf_hub_id')) and not (cfg.get('state_dict') or cfg.get('file'))


def hub_reachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds (name lookup included, which
    ``socket``'s own timeout does not cover: it runs in a thread)."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == 'https' else 80)
    result = []

    def connect() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def _go_offline_unless_reachable() -> None:
    """Switch huggingface_hub to offline mode, for this process, when the Hub cannot be reached: a warm cache then
    loads at once and a cold one fails at once, instead of after huggingface_hub's minute of retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in (
            'HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy')):
        return  # offline already; or behind a proxy, which only the client's requests can test
    if not hub_reachable(constants.ENDPOINT):
        constants.HF_HUB_OFFLINE = True
        os.environ['HF_HUB_OFFLINE'] = '1'

"""What the commands that run a model share: its options, and building it with its weights.

``--model/-m`` names a zoo model (optionally with a tag) or an ``hf-hub:`` id, or with ``--runtime`` a folder
written by ``export --format onnx|openvino``; ``--checkpoint``, ``--no-pretrained`` and ``--model-kwarg`` choose its
weights and create_model arguments.
"""
import argparse
import ast
import difflib
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import timm
import torch
from torch import nn

import timm_sesk
from timm_sesk import deploy
from timm_sesk.weights import PretrainedWeightsError, check_state_dict, read_checkpoint, weights_for

from .errors import PROG, CliError

__all__ = [
    'HelpFormatter',
    'build_model',
    'check_at_least',
    'check_model_name',
    'check_model_source',
    'load_model',
    'load_runnable',
    'model_options',
    'parse_kwargs',
    'runtime_options',
]


def check_model_name(name: str) -> str:
    """The architecture of a zoo model name (``arch`` or ``arch.tag``); ``hf-hub:`` ids pass unchecked."""
    if name.startswith('hf-hub:'):
        return name
    arch, _, tag = name.partition('.')
    known = timm_sesk.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3, cutoff=0.6)
        hint = f'did you mean {" or ".join([", ".join(close[:-1]), close[-1]] if len(close) > 1 else close)}? ' \
            if close else ''
        raise CliError(f'unknown model {name!r}; {hint}`{PROG} list` shows every model', code=2)
    tags = [w.tag for w in weights_for(arch)]
    if tag and tag not in tags:
        have = f'its tags: {", ".join(tags)}' if tags else 'it has no pretrained tags'
        raise CliError(f'{arch} has no pretrained tag {tag!r}; {have} (`{PROG} info {arch}`)', code=2)
    return arch


def check_at_least(minimum: int, **options: Optional[int]) -> None:
    """Refuse integer options below ``minimum`` (None: not given)."""
    for name, value in options.items():
        if value is not None and value < minimum:
            raise CliError(f'--{name.replace("_", "-")} must be at least {minimum}, got {value}', code=2)


def parse_kwargs(items: Sequence[str]) -> Dict[str, Any]:
    """``key=value`` pairs; values are Python literals where they parse as one (``num_classes=10``), else strings."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep:
            raise CliError(f'expected key=value, got {item!r}', code=2)
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def _read_checkpoint_file(path: str) -> Dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise CliError(f'no such checkpoint file: {path}', code=2)
    try:
        return read_checkpoint(path)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CliError(f'cannot read checkpoint {path}: {first}. Pass a .safetensors file or a PyTorch state dict '
                       f'(a timm train.py checkpoint works)') from e


def load_model(args: argparse.Namespace) -> Tuple[nn.Module, str]:
    """Build ``args.model`` with its weights, in eval mode on ``args.device``; returns it and a description."""
    return build_model(args.model, args.checkpoint, args.no_pretrained, parse_kwargs(args.model_kwarg),
                        args.device, kwarg_option='--model-kwarg')


def build_model(name: str, checkpoint: Optional[str], no_pretrained: bool, model_args: Dict[str, Any],
                 device: str = 'cpu', kwarg_option: str = '--model-kwarg') -> Tuple[nn.Module, str]:
    """The model ``name`` with pretrained weights, a checkpoint's or random ones, in eval mode on ``device``;
    returns it and a description of its weights. ``kwarg_option`` is the command's option for create_model
    arguments, named in errors."""
    check_model_name(name)
    if checkpoint and no_pretrained:
        raise CliError('--checkpoint and --no-pretrained exclude each other; pass one', code=2)
    model_args = dict(model_args)
    if checkpoint:
        state_dict = _read_checkpoint_file(checkpoint)
        if 'num_classes' not in model_args and 'fc.weight' in state_dict:
            model_args['num_classes'] = state_dict['fc.weight'].shape[0]  # a fine-tuned head
        model = timm.create_model(name, **model_args)
        try:
            check_state_dict(state_dict, model, source=f'checkpoint {checkpoint}')
        except PretrainedWeightsError as e:
            raise CliError(f'{e} If it was trained with other create_model arguments, pass them with '
                           f'{kwarg_option} KEY=VALUE.') from e
        model.load_state_dict(state_dict)
        weights = f'checkpoint {checkpoint}'
    elif no_pretrained:
        model = timm.create_model(name, **model_args)
        weights = 'random weights'
    else:
        model = timm.create_model(name, pretrained=True, **model_args)
        cfg = model.pretrained_cfg
        hub_id = cfg.get('hf_hub_id')
        weights = f"{cfg.get('architecture')}.{cfg.get('tag')}" if cfg.get('tag') else f'hf-hub:{hub_id}'
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise CliError(f'cannot use device {device!r} ({str(e).splitlines()[0]}); try --device cpu', 2) from e
    return model.eval(), weights


def check_model_source(args: argparse.Namespace) -> None:
    """Fail early on a bad ``--model``: a zoo name, or with ``--runtime`` an exported folder."""
    if not args.runtime:
        check_model_name(args.model)
        return
    given = [option for option, value in (('--checkpoint', args.checkpoint), ('--no-pretrained', args.no_pretrained),
                                          ('--model-kwarg', args.model_kwarg)) if value]
    if given:
        raise CliError(f'{" and ".join(given)} do not apply with --runtime: the model and its weights are those '
                       f'exported into {args.model}', code=2)
    if args.device != 'cpu':
        raise CliError(f'--runtime {args.runtime} runs on the CPU; drop --device {args.device}', code=2)
    check_at_least(1, threads=args.threads)
    try:
        deploy.read_meta(args.model)
    except ValueError as e:
        raise CliError(str(e), code=2) from e


def load_runnable(args: argparse.Namespace) -> Tuple[Any, str]:
    """The PyTorch model, or with ``--runtime`` the exported folder in that runtime (called alike: a float batch
    in, logits out, with the same ``num_classes`` and ``pretrained_cfg``); and a description of it."""
    if not args.runtime:
        return load_model(args)
    try:
        model = deploy.load(args.model, args.runtime, args.precision, threads=args.threads)
    except ValueError as e:  # a precision the runtime or the CPU lacks, IR for ONNX Runtime
        raise CliError(str(e), code=2) from e
    return model, model.describe()


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own, and keeps paragraphs with indented lines (the examples)
    as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split('\n\n'):
            if '\n ' in paragraph:
                paragraphs.append('\n'.join(indent + line for line in paragraph.splitlines()))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return '\n\n'.join(paragraphs)


def model_options() -> argparse.ArgumentParser:
    """Options shared by the commands that run a model."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group('model')
    group.add_argument('--model', '-m', required=True,
                       help='zoo model, optionally with a pretrained tag (sk_resnet50, se_resnet50.a1_in1k), or '
                            'hf-hub:ORG/NAME for an exported model')
    # Not an argparse mutually exclusive group: copied through `parents`, it would leave the 'model' section.
    group.add_argument('--no-pretrained', action='store_true', help='random weights instead of the pretrained ones')
    group.add_argument('--checkpoint', metavar='FILE',
                         help='load this checkpoint instead (.safetensors or a PyTorch/timm state dict; read with '
                              'weights_only=True); the head size is taken from it')
    group.add_argument('--model-kwarg', action='append', default=[], metavar='KEY=VALUE',
                       help='extra create_model argument, repeatable (e.g. --model-kwarg se_position=post)')
    group.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    return parent


def runtime_options() -> argparse.ArgumentParser:
    """Options of the commands that can run an exported folder instead of a PyTorch model."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group('exported model (timm-sesk export --format onnx|openvino)')
    group.add_argument('--runtime', choices=deploy.RUNTIMES,
                       help='run the exported folder given as --model in this runtime instead of PyTorch, with the '
                            "same transforms and labels; onnxruntime reads --format onnx folders, openvino both")
    group.add_argument('--precision', choices=deploy.PRECISIONS, default='f32',
                       help='precision the runtime computes in (default: f32); bf16 needs --runtime openvino and a '
                            'CPU with AVX512_BF16 or AMX, else it is refused with the reason')
    group.add_argument('--threads', type=int, help="runtime CPU threads (default: the runtime's, one per core)")
    return parent

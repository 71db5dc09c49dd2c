"""What the commands that run a model share: its options, reading them, and loading the model they name.

``--model/-m`` names a zoo model (optionally with a tag) or an ``hf-hub:`` id; ``--checkpoint``,
``--no-pretrained``, ``--num-classes`` and ``--model-kwarg`` choose its weights and create_model arguments. The
library builds it (``timm_sesk.load``); this module checks the options first and renders what the library reports.
"""
import argparse
import ast
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

import timm_sesk
from timm_sesk.data import read_label_names
from timm_sesk.hub_config import hub_repo
from timm_sesk.loading import LoadReport
from timm_sesk.weights import EMA_KEYS, weights_for
from timm_sesk.zoo import did_you_mean

from .errors import EXIT_USAGE, PROG, CliError

# File names a checkpoint usually has (train.py's .pth.tar, safetensors, PyTorch's), for a folder given as one.
_CHECKPOINT_SUFFIXES = ('.pth.tar', '.pth', '.pt', '.safetensors', '.bin', '.ckpt')

__all__ = [
    'HelpFormatter',
    'check_at_least',
    'check_model_name',
    'check_output_file',
    'eval_options',
    'is_model_folder',
    'label_names_option',
    'load_model',
    'model_args',
    'model_options',
    'parse_kwargs',
    'positional_model',
]


def is_model_folder(name: str) -> bool:
    """Whether ``-m NAME`` names a folder rather than a zoo model (zoo names come first)."""
    return name.partition('.')[0] not in timm_sesk.list_models() and Path(name).is_dir()


def check_model_name(name: str) -> str:
    """The architecture of a zoo model name (``arch`` or ``arch.tag``); an ``hf-hub:`` id passes once its repository
    id is one the Hub allows, and a model folder (config.json and weights, as ``export --format hub`` writes it)
    once it is checked to be one."""
    if name.startswith('hf-hub:'):
        try:
            hub_repo(name)
        except ValueError as e:  # huggingface_hub's HFValidationError
            raise CliError(f'{e}; a Hub model is hf-hub:ORG/NAME[@REVISION]', code=EXIT_USAGE) from e
        return name
    if is_model_folder(name):
        folder = Path(name)
        if (folder / 'config.json').is_file():
            return name
        if (folder / 'deploy.json').is_file():
            raise CliError(f'{name} is an ONNX / OpenVINO export: run it with --runtime openvino (or onnxruntime for '
                           '--format onnx)', code=EXIT_USAGE)
        raise CliError(f'{name} is a folder but not a model folder: -m takes a zoo model, hf-hub:ORG/NAME, or a '
                       f'folder written by `{PROG} export` (config.json and model.safetensors)', code=EXIT_USAGE)
    arch, _, tag = name.partition('.')
    known = timm_sesk.list_models()
    if arch not in known:
        raise CliError(f'unknown model {name!r}; {did_you_mean(name)}`{PROG} list` shows every model', code=2)
    tags = [w.tag for w in weights_for(arch)]
    if tag and tag not in tags:
        have = f'its tags: {", ".join(tags)}' if tags else 'it has no pretrained tags'
        raise CliError(f'{arch} has no pretrained tag {tag!r}; {have} (`{PROG} info {arch}`); {did_you_mean(name)}'
                       .rstrip('; '), code=2)
    return arch


def check_at_least(minimum: int, **options: Optional[int]) -> None:
    """Refuse integer options below ``minimum`` (None: not given)."""
    for name, value in options.items():
        if value is not None and value < minimum:
            raise CliError(f'--{name.replace("_", "-")} must be at least {minimum}, got {value}', code=2)


def _literal(node: ast.AST) -> Any:
    """A Python literal, or ``dict(key=literal, ...)`` (the form timm's docs and our messages write overlays in),
    evaluated without ``eval``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict' and not node.args \
            and all(kw.arg for kw in node.keywords):
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(item) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def parse_kwargs(items: Sequence[str], option: str = '--model-kwarg') -> Dict[str, Any]:
    """``key=value`` pairs; values are Python literals where they parse as one (``num_classes=10``,
    ``pretrained_cfg_overlay=dict(file='/path/model.safetensors')``), else strings (``se_position=post``)."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key.isidentifier():
            raise CliError(f'{option} takes KEY=VALUE, got {item!r}', code=2)
        try:
            kwargs[key] = _literal(ast.parse(value, mode='eval').body)
        except (ValueError, SyntaxError, TypeError) as e:
            if value.lstrip().startswith(('dict(', '{', '[', '(')):  # meant as a literal, so not a plain string
                raise CliError(f'{option} {key}=...: cannot read {value!r} as a Python literal ({e}); quote '
                               "strings inside it, e.g. dict(file='/path/to/model.safetensors')", code=2) from e
            kwargs[key] = value
    return kwargs


def model_args(args: argparse.Namespace) -> Dict[str, Any]:
    """The create_model arguments of the model options: ``--model-kwarg``s and ``--num-classes``."""
    kwargs = parse_kwargs(args.model_kwarg)
    if getattr(args, 'num_classes', None) is not None:
        if kwargs.get('num_classes', args.num_classes) != args.num_classes:
            raise CliError('--num-classes and --model-kwarg num_classes differ; pass one', code=2)
        kwargs['num_classes'] = args.num_classes
    return kwargs


def _checkpoint_folder(folder: Path) -> str:
    """What to say of a folder given as ``--checkpoint``."""
    if (folder / 'config.json').is_file():
        return f'--checkpoint {folder} is a model folder: run it with -m {folder}'
    found = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(_CHECKPOINT_SUFFIXES))
    files = f'; its checkpoint files: {", ".join(found[:5])}' if found else ''
    return f'--checkpoint {folder} is a folder: pass a checkpoint file{files}'


def _check_weights_options(args: argparse.Namespace, kwargs: Dict[str, Any]) -> None:
    """Refuse weights options that exclude each other, before any work."""
    if args.ema is not None and not args.checkpoint:
        raise CliError(f'--{"" if args.ema else "no-"}ema chooses among the weights of a --checkpoint; none was '
                       'given', code=EXIT_USAGE)
    if not args.checkpoint:
        return
    if args.no_pretrained:
        raise CliError('--checkpoint and --no-pretrained exclude each other; pass one', code=EXIT_USAGE)
    if args.model.startswith('hf-hub:') or is_model_folder(args.model):
        raise CliError(f'--checkpoint loads into a zoo model: pass its architecture with -m (`{PROG} list` names '
                       f'them), not {"a Hub id" if args.model.startswith("hf-hub:") else "a model folder"}',
                       code=EXIT_USAGE)
    if Path(args.checkpoint).is_dir():
        raise CliError(_checkpoint_folder(Path(args.checkpoint)), code=EXIT_USAGE)
    if not Path(args.checkpoint).is_file():
        raise CliError(f'no such checkpoint file: {args.checkpoint}', code=EXIT_USAGE)
    overlay = kwargs.get('pretrained_cfg_overlay') or {}
    if any(overlay.get(k) for k in ('file', 'state_dict', 'url', 'hf_hub_id')):
        raise CliError('--checkpoint and a pretrained_cfg_overlay source both give the weights; pass one',
                       code=EXIT_USAGE)


def load_model(args: argparse.Namespace, kwargs: Optional[Dict[str, Any]] = None) -> Tuple[nn.Module, LoadReport]:
    """Build ``args.model`` with the weights its options ask for (``timm_sesk.load``), in eval mode on
    ``args.device``; returns it and what was loaded.

    Args:
        args: The parsed model options.
        kwargs: The create_model arguments, where not only ``model_args(args)``.
    """
    check_model_name(args.model)
    check_at_least(1, num_classes=getattr(args, 'num_classes', None))
    kwargs = model_args(args) if kwargs is None else kwargs
    _check_weights_options(args, kwargs)
    model, report = timm_sesk.load(args.model, pretrained=not args.no_pretrained, checkpoint=args.checkpoint,
                                   ema=bool(args.ema), **kwargs)
    if args.ema and report.entry not in EMA_KEYS:
        raise CliError(f'checkpoint {args.checkpoint} holds no EMA weights (only {report.entry or "a state dict"}); '
                       'drop --ema', code=EXIT_USAGE)
    if timm_sesk.twin.is_twin(model):  # a portable export: run it as the zoo's model (fuse, attention taps)
        model = timm_sesk.from_timm(model)
    asked = kwargs.get('num_classes')
    if args.checkpoint and asked is not None and report.num_classes not in (None, asked):
        raise CliError(f'checkpoint {args.checkpoint} has a {report.num_classes}-class head, not {asked}: drop '
                       '--num-classes (or num_classes) and its head size is read from the checkpoint', code=EXIT_USAGE)
    try:
        model = model.to(args.device)
    except (RuntimeError, AssertionError) as e:
        raise CliError(f'cannot use device {args.device!r} ({str(e).splitlines()[0]}); try --device cpu', 2) from e
    return model.eval(), report


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder, or below a file or a folder this
    user cannot write to."""
    if path.is_dir():
        raise CliError(f'{option} {path} is a folder; name a file to write', code=2)
    folder = next(p for p in path.absolute().parents if p.exists())  # the folder to write in, or to create it in
    if not folder.is_dir():
        raise CliError(f'{option} {path}: {folder} is a file, not a folder', code=2)
    if not os.access(folder, os.W_OK):
        raise CliError(f'{option} {path}: cannot write in {folder}', code=2)


def positional_model(args: argparse.Namespace, positional: Optional[str]) -> str:
    """The model of a command that takes it as ``-m/--model`` or, for compatibility, as its first positional
    argument (``positional``, None if not given); stored as ``args.model``."""
    if positional and args.model and positional != args.model:
        raise CliError(f'two models given, {positional!r} and -m {args.model!r}; pass one', code=2)
    args.model = args.model or positional
    if not args.model:
        raise CliError('name the model with -m/--model (e.g. -m sk_resnet50)', code=2)
    return args.model


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


def model_options(positional: bool = False) -> argparse.ArgumentParser:
    """Options shared by the commands that run a model. With ``positional``, ``-m/--model`` is optional, for a
    command that also takes the model as its first positional argument (see ``positional_model``)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group('model')
    group.add_argument('--model', '-m', required=not positional,
                       help='zoo model, optionally with a pretrained tag (sk_resnet50, se_resnet50.a1_in1k), '
                            'hf-hub:ORG/NAME for an exported model, or the folder of one (export --format hub)')
    # Not an argparse mutually exclusive group: copied through `parents`, it would leave the 'model' section.
    group.add_argument('--no-pretrained', action='store_true', help='random weights instead of the pretrained ones')
    group.add_argument('--checkpoint', metavar='FILE',
                       help='load this checkpoint instead: a fine-tune or a source file fetched by hand (.safetensors, '
                            'or a PyTorch or timm train.py checkpoint, read with weights_only=True), in any of the '
                            "layouts timm_sesk.load_weights reads; its head size, and a train.py checkpoint's input "
                            'size, are taken from it')
    group.add_argument('--ema', action=argparse.BooleanOptionalAction,
                       help="of a train.py checkpoint holding both, take the EMA weights (state_dict_ema) or not "
                            "(state_dict); default: not, as timm's validate.py (its --use-ema); the weights taken are "
                            'named in the output')
    group.add_argument('--num-classes', type=int, metavar='N',
                       help="classes of the head (default: the checkpoint's, else the pretrained weights'; another "
                            'size gets a new random head, as in timm)')
    group.add_argument('--model-kwarg', action='append', default=[], metavar='KEY=VALUE',
                       help='extra create_model argument, repeatable (e.g. --model-kwarg se_position=post)')
    group.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    return parent


def eval_options() -> argparse.ArgumentParser:
    """Options of the commands that classify images (predict, validate): input size, speed-ups and JSON results."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group('evaluation')
    group.add_argument('--img-size', type=int, metavar='N',
                       help="input size in pixels, with the same crop fraction (default: the checkpoint's training "
                            "size where it records one, as timm train.py checkpoints and exported folders do; else "
                            "the pretrained weights')")
    group.add_argument('--no-fuse', action='store_true',
                       help='run the PyTorch model as built; by default its BatchNorms are folded into the '
                            'convolutions (timm_sesk.fuse) and it runs channels_last: the same outputs within float '
                            'rounding, 1.5-2x faster on a CPU')
    group.add_argument('--label-names', metavar='FILE',
                       help="class names of the model's head, one per line in head order (as export --label-names "
                            "and timm's --class-map text files); default: those the model records (an exported "
                            "fine-tune's, ImageNet's for an ImageNet head), else class indices")
    group.add_argument('--skip-unreadable', action='store_true',
                       help='skip image files that cannot be read (truncated, not an image), naming them in the '
                            'summary, instead of stopping at the first')
    group.add_argument('--json', action='store_true', help='print the results as JSON instead of text')
    group.add_argument('--results-file', metavar='FILE', help='also write the results as JSON to FILE')
    return parent


def label_names_option(path: Optional[str], num_classes: Optional[int] = None) -> Optional[List[str]]:
    """The names of ``--label-names FILE`` (None if not given), ``num_classes`` of them where that is known."""
    if not path:
        return None
    try:
        names = read_label_names(path)
    except (FileNotFoundError, IsADirectoryError) as e:
        raise CliError(f'no such label names file: {path} (--label-names takes a text file, one class name per '
                       'line)', code=EXIT_USAGE) from e
    except (UnicodeDecodeError, OSError) as e:
        raise CliError(f'cannot read label names from {path}: {e}', code=EXIT_USAGE) from e
    if not names:
        raise CliError(f'{path} holds no label names (one class name per line)', code=EXIT_USAGE)
    if num_classes is not None and len(names) != num_classes:
        raise CliError(f'{path} has {len(names)} label names, but the head has {num_classes} classes: give one name '
                       'per class, in head order', code=EXIT_USAGE)
    return names

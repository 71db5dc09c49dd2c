"""Command line of the zoo: ``timm-sesk`` or ``python -m timm_sesk``."""
import argparse
import ast
import sys
from pathlib import Path
from typing import List, Optional

import timm
import torch

import timm_sesk
from timm_sesk.zoo import ModelFacts, model_facts

__all__ = ['main']


def _weights_cell(facts: ModelFacts) -> str:
    default = facts.default_weights
    if default is None:
        return 'none published'
    more = f' (+{len(facts.weights) - 1} more)' if len(facts.weights) > 1 else ''
    return f'{default.tag}: {default.source}{more}'


def _check_forward(name: str, input_size) -> str:
    """Build the model with random weights and run one image through it."""
    model = timm.create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *input_size))
    status = 'ok' if out.shape == (1, model.num_classes) and torch.isfinite(out).all() else 'FAILED'
    return f'{status}, logits {tuple(out.shape)}'


def cmd_list(args: argparse.Namespace) -> int:
    names = timm_sesk.list_models(args.filter, pretrained=args.pretrained)
    if not names:
        print(f'no model matches {args.filter!r}; all models: timm-sesk list', file=sys.stderr)
        return 1
    header = f'{"model":26s} {"params":>8s} {"GMACs":>6s} {"input":>5s}  {"pretrained weights (default tag)":58s}'
    if args.check:
        header += '  forward pass (random weights, 1 image, CPU)'
    print(header)
    print('-' * len(header))
    failed = False
    for name in names:
        facts = model_facts(name)
        line = (
            f'{name:26s} {facts.params_m:7.2f}M {facts.gmacs:6.2f} {facts.input_size[-1]:5d}  '
            f'{_weights_cell(facts):58s}')
        if args.check:
            result = _check_forward(name, facts.input_size)
            failed |= not result.startswith('ok')
            line += f'  {result}'
        print(line, flush=True)
    print(f'\n{len(names)} models. GMACs count convolutions and linear layers for one image at the input size.')
    return 1 if failed else 0


def _parse_kwargs(items: List[str]) -> dict:
    """``key=value`` pairs; values are Python literals where they parse as one (``num_classes=10``), else strings."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep:
            raise SystemExit(f'timm-sesk: error: expected key=value, got {item!r}')
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def cmd_export(args: argparse.Namespace) -> int:
    from timm_sesk.publish import export_hub_folder, upload_hub_folder

    model_args = _parse_kwargs(args.model_kwargs)
    if args.num_classes is not None:
        model_args['num_classes'] = args.num_classes
    label_names = Path(args.label_names).read_text().split() if args.label_names else None
    folder = export_hub_folder(
        args.model, args.out_dir, checkpoint=args.checkpoint, dataset=args.dataset, model_args=model_args,
        label_names=label_names, license=args.license, repo_id=args.repo_id)
    print(f'wrote {folder}: ' + ', '.join(sorted(p.name for p in folder.iterdir())))
    if args.push:
        if not args.repo_id:
            raise SystemExit('timm-sesk: error: --push needs --repo-id ORG/NAME')
        print(f'uploaded: {upload_hub_folder(folder, args.repo_id, private=args.private)}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='timm-sesk',
        description='Squeeze-and-Excitation and Selective-Kernel ResNets for timm. Without a command, lists the zoo '
                    'and runs a forward pass of every model.')
    parser.add_argument('--version', action='version', version=f'timm_sesk {timm_sesk.__version__}')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')

    p = commands.add_parser('list', help='the models of the zoo', description='List the models of the zoo.')
    p.add_argument('filter', nargs='?', default='', help='wildcard filter, e.g. "sk_*"')
    p.add_argument('--pretrained', action='store_true', help='only models with published pretrained weights')
    p.add_argument('--check', action='store_true', help='also build each model and run one forward pass')
    p.set_defaults(func=cmd_list)

    p = commands.add_parser(
        'export', help='write a Hub-ready folder (and optionally upload it)',
        description='Write model.safetensors, config.json and a README.md model card for a model, from its pretrained '
                    'tag or a fine-tuned checkpoint. After `import timm_sesk`, '
                    "timm.create_model('hf-hub:ORG/NAME', pretrained=True) loads the uploaded folder.")
    p.add_argument('model', help='model name, optionally with a pretrained tag, e.g. sk_resnet50.ra_in1k')
    p.add_argument('out_dir', help='folder to write')
    p.add_argument('--checkpoint', help='fine-tuned weights (.safetensors, or a timm/PyTorch checkpoint)')
    p.add_argument('--dataset', help='dataset the checkpoint was fine-tuned on (required with --checkpoint)')
    p.add_argument('--num-classes', type=int, help="classes of the checkpoint's head")
    p.add_argument('--model-kwargs', nargs='*', default=[], metavar='KEY=VALUE',
                   help='other create_model arguments the checkpoint needs, e.g. se_position=post')
    p.add_argument('--label-names', help='text file with one class name per line, in head order')
    p.add_argument('--license', help="licence of the exported weights (default: the pretrained tag's)")
    p.add_argument('--repo-id', help='Hub repository, ORG/NAME (used in the card, and by --push)')
    p.add_argument('--push', action='store_true', help='upload the folder to --repo-id with huggingface_hub')
    p.add_argument('--private', action='store_true', help='create the repository as private (with --push)')
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(['list', '--check'])
    return args.func(args)

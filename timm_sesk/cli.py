"""Command line of the zoo: ``timm-sesk`` or ``python -m timm_sesk``."""
import argparse
import sys
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
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(['list', '--check'])
    return args.func(args)

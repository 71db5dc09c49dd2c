"""``timm-sesk list``: the models of the zoo, their size, compute and default weights."""
import argparse

import timm
import torch

import timm_sesk
from timm_sesk.zoo import ModelFacts, model_facts

from .errors import PROG, CliError

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, **parents: argparse.ArgumentParser) -> None:
    p = commands.add_parser('list', help='the models of the zoo', description='List the models of the zoo.')
    p.add_argument('filter', nargs='?', default='', help='wildcard filter, e.g. "sk_*"')
    p.add_argument('--pretrained', action='store_true', help='only models with published pretrained weights')
    p.add_argument('--check', action='store_true', help='also build each model and run one forward pass')
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    names = timm_sesk.list_models(args.filter, pretrained=args.pretrained)
    if not names:
        raise CliError(f'no model matches {args.filter!r}; all models: {PROG} list')
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

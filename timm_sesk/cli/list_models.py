"""``timm-sesk list``: the models of the zoo, their size, compute and default weights."""
import argparse
import json
from typing import Tuple
from urllib.parse import urlsplit

import timm
import torch

import timm_sesk
from timm_sesk.weights import WeightSpec
from timm_sesk.zoo import ModelFacts, model_facts

from .errors import PROG, CliError
from .options import HelpFormatter

__all__ = ['add_parser', 'run']

_CHECK_HEADER = 'forward pass (random weights, 1 image, CPU)'


def add_parser(commands: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = commands.add_parser(
        name, help=summary, formatter_class=HelpFormatter,
        description='List the models of the zoo: parameters (1000-class head), GMACs of convolutions and linear '
                    'layers for one image at the default input size, that size, and the default pretrained weights '
                    'with their source. Parameters and GMACs are counted once on the meta device and then cached '
                    '(see timm_sesk.zoo).',
        epilog=f"examples:\n  {PROG} list 'sk_*'\n  {PROG} list --pretrained --json")
    p.add_argument('filter', nargs='?', default='', help='wildcard filter, e.g. "sk_*"')
    p.add_argument('--pretrained', action='store_true',
                   help='only models with pretrained weights (graft-only ones, whose tags load a plain ResNet\'s '
                        'weights with untrained attention, are marked)')
    p.add_argument('--check', action='store_true', help='also build each model and run one forward pass')
    p.add_argument('--json', action='store_true',
                   help='print a JSON list instead of the table, one object per model: model, params_m, gmacs, '
                        'input_size, reproduces, tags (default first), default_source, graft_only, and with --check '
                        'check')
    p.set_defaults(func=run)


def _short_source(spec: WeightSpec) -> str:
    """The source in a table cell: a Hub id as is, a URL as its host and file name."""
    if not spec.url or spec.hf_hub_id:
        return spec.source
    url = urlsplit(spec.url)
    return f'{url.netloc}/…/{url.path.rpartition("/")[2]}'


def _graft_only(facts: ModelFacts) -> bool:
    """Whether every tag of the model is a graft: a plain network's weights, its SE/SK attention untrained."""
    return bool(facts.weights) and all(w.is_graft for w in facts.weights)


def _weights_cell(facts: ModelFacts) -> str:
    default = facts.default_weights
    if default is None:
        return 'none published'
    more = f' (+{len(facts.weights) - 1} more)' if len(facts.weights) > 1 else ''
    graft = ' (graft only: attention untrained)' if _graft_only(facts) else ''
    return f'{default.tag}: {_short_source(default)}{more}{graft}'


def _check_forward(name: str, input_size: Tuple[int, int, int]) -> Tuple[bool, Tuple[int, ...]]:
    """Build the model with random weights and run one image through it: (finite logits of the right shape, shape)."""
    model = timm.create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *input_size))
    return out.shape == (1, model.num_classes) and bool(torch.isfinite(out).all()), tuple(out.shape)


def run(args: argparse.Namespace) -> int:
    names = timm_sesk.list_models(args.filter, pretrained=args.pretrained)
    if not names:
        raise CliError(f'no model matches {args.filter!r}; all models: {PROG} list')
    width = max(len('model'), *map(len, names))
    header = f'{"model":{width}s} {"params":>8s} {"GMACs":>6s} {"input":>5s}  '
    if args.check:
        header += f'{_CHECK_HEADER}  '
    header += 'pretrained weights (default tag)'
    rows, failed = [], False
    if not args.json:
        print(header)
        print('-' * len(header))
    for name in names:
        facts = model_facts(name)
        row = {
            'model': name, 'params_m': facts.params_m, 'gmacs': facts.gmacs, 'input_size': list(facts.input_size),
            'reproduces': facts.reference.replace('`', ''), 'tags': [w.tag for w in facts.weights],
            'default_source': facts.default_weights.source if facts.default_weights else None,
            'graft_only': _graft_only(facts)}
        line = f'{name:{width}s} {facts.params_m:7.2f}M {facts.gmacs:6.2f} {facts.input_size[-1]:5d}  '
        if args.check:
            ok, shape = _check_forward(name, facts.input_size)
            failed |= not ok
            row['check'] = {'ok': ok, 'logits_shape': list(shape)}
            line += f'{"ok" if ok else "FAILED"}, logits {shape}'.ljust(len(_CHECK_HEADER)) + '  '
        rows.append(row)
        if not args.json:
            print(line + _weights_cell(facts), flush=True)  # row by row: --check takes a while
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f'\n{len(names)} model{"s" if len(names) > 1 else ""}. GMACs count convolutions and linear layers for '
              'one image at the input size.')
        if any(row['graft_only'] for row in rows):
            print('Graft only: no trained weights of their own; their tags load a plain ResNet\'s weights with the '
                  'SE/SK attention untrained (fine-tune before use; README, "Grafted weights").')
    return 1 if failed else 0

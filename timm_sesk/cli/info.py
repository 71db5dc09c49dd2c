"""``timm-sesk info MODEL``: one model's architecture, size, compute, reference network and pretrained tags."""
import argparse
import json
from typing import Any, Dict, List

import timm
import torch

from timm_sesk.models import FAMILIES, families_of
from timm_sesk.weights import NO_WEIGHTS, WeightSpec
from timm_sesk.zoo import architecture_summary, model_facts

from .errors import PROG, CliError
from .options import HelpFormatter, check_model_name, positional_model

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = commands.add_parser(
        name, help=summary, formatter_class=HelpFormatter,
        description='Describe one model: its family and paper, block layout, SE/SK settings, parameters, GMACs at '
                    'the default input size, the network it reproduces, and every pretrained tag with its source, '
                    'licence and the accuracy the source reports.',
        epilog=f'examples:\n  {PROG} info sk_resnet50\n  {PROG} info -m se_resnet50.a1_in1k --json')
    p.add_argument('name', nargs='?', metavar='MODEL',
                   help='zoo model name, optionally with a tag (sk_resnet50, se_resnet50.a1_in1k); or -m MODEL')
    p.add_argument('--model', '-m', help='the model, as the other commands take it')
    p.add_argument('--json', action='store_true',
                   help='print JSON instead of text: model, selected_tag, summary, family, architecture, params_m, '
                        'gmacs, input_size, reproduces, weights (one object per tag, default first), no_weights')
    p.set_defaults(func=run)


def _accuracy(spec: WeightSpec) -> List[str]:
    return [
        f'top-1 {a.top1:.2f}%' + (f', top-5 {a.top5:.2f}%' if a.top5 is not None else '')
        + f' at {a.img_size} px, crop {a.crop_pct} (reported by {a.reported_by})'
        for a in spec.accuracy]


def _weights_json(spec: WeightSpec) -> Dict[str, Any]:
    return {
        'name': spec.name, 'tag': spec.tag, 'source': spec.source, 'license': spec.license,
        'trained_as': spec.trained_as, 'input_size': list(spec.input_size), 'crop_pct': spec.crop_pct,
        'interpolation': spec.interpolation,
        'test_input_size': list(spec.test_input_size) if spec.test_input_size else None,
        'test_crop_pct': spec.test_crop_pct,
        'accuracy': [{'top1': a.top1, 'top5': a.top5, 'img_size': a.img_size, 'crop_pct': a.crop_pct,
                      'reported_by': a.reported_by} for a in spec.accuracy],
        'origin_url': spec.origin_url, 'notes': spec.notes or None}


def _print_weights(weights: List[WeightSpec], selected: str) -> None:
    print('\npretrained weights (the first is the default):')
    for spec in weights:
        mark = '  <- selected' if spec.tag == selected else ''
        print(f'  {spec.name}{mark}')
        details = [
            ('load', f"timm.create_model('{spec.name}', pretrained=True)"),
            ('Hub id' if spec.hf_hub_id else 'URL', spec.hf_hub_id or spec.url or ''),
            ('licence', spec.license),
            ('trained as', spec.trained_as),
            ('eval input', f'{spec.input_size[-1]} px, crop {spec.crop_pct}, {spec.interpolation}'
                           + (f'; also {spec.test_input_size[-1]} px, crop {spec.test_crop_pct}'
                              if spec.test_input_size else '')),
            *(('accuracy', line) for line in _accuracy(spec) or ['none reported']),
        ]
        if spec.origin_url:
            details.append(('origin', spec.origin_url))
        if spec.notes:
            details.append(('notes', spec.notes))
        for key, value in details:
            print(f'      {key:10s}  {value}')


def run(args: argparse.Namespace) -> int:
    name = positional_model(args, args.name)
    if name.startswith('hf-hub:'):
        raise CliError(f'info describes the zoo\'s models by name (`{PROG} list`), not Hub ids', code=2)
    arch = check_model_name(name)
    selected = name.partition('.')[2]
    facts = model_facts(arch)
    with torch.device('meta'):  # the structure only: no memory for weights
        model = timm.create_model(arch)
    entry = timm.models.model_entrypoint(arch)
    summary = (entry.__doc__ or '').strip().split('\n\n')[0].replace('\n', ' ').replace('``', '')
    family = ' + '.join(f'{FAMILIES[key].paper_name} ({FAMILIES[key].paper_ids})' for key in families_of(model)) \
        or 'plain ResNet (SE and SK switched off)'
    architecture = architecture_summary(model)
    if args.json:
        print(json.dumps({
            'model': arch, 'selected_tag': selected or None, 'summary': summary, 'family': family,
            'architecture': {key.lower().replace(' ', '_'): value for key, value in architecture},
            'params_m': facts.params_m, 'gmacs': facts.gmacs, 'input_size': list(facts.input_size),
            'reproduces': facts.reference.replace('`', ''),
            'weights': [_weights_json(spec) for spec in facts.weights],
            'no_weights': None if facts.weights else NO_WEIGHTS.get(arch)}, indent=2))
        return 0
    rows = [
        ('family', family),
        *architecture,
        ('params', f'{facts.params_m:.2f} M (1000-class head)'),
        ('GMACs', f'{facts.gmacs:.2f} at {facts.input_size[-2]}x{facts.input_size[-1]} (convolutions and linear '
                  'layers, one image)'),
        ('reproduces', facts.reference),
        ('timm name', f"{arch}: timm.create_model('{arch}') after `import timm_sesk`"),
    ]
    print(f'{arch}: {summary}')
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f'  {key:{width}s}  {value}')
    if facts.weights:
        _print_weights(facts.weights, selected)
    else:
        print(f'\npretrained weights: none. {NO_WEIGHTS.get(arch, "")}'.rstrip())
    return 0

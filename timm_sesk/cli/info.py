"""``timm-sesk info MODEL``: one model's architecture, size, compute, reference network and pretrained tags."""
import argparse
from typing import List

import timm

from timm_sesk.layers import SelectiveKernel, SqueezeExcite
from timm_sesk.weights import NO_WEIGHTS, WeightSpec
from timm_sesk.zoo import architecture_summary, model_facts

from .errors import PROG, CliError
from .options import HelpFormatter, check_model_name

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, **parents: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        'info', help='one model: architecture, size, compute and pretrained weights', formatter_class=HelpFormatter,
        description='Describe one model: its family and paper, block layout, SE/SK settings, parameters, GMACs at '
                    'the default input size, the network it reproduces, and every pretrained tag with its source, '
                    'licence and the accuracy the source reports.',
        epilog=f'example:\n  {PROG} info sk_resnet50')
    p.add_argument('model', help='zoo model name, optionally with a tag (sk_resnet50, se_resnet50.a1_in1k)')
    p.set_defaults(func=run)


def _accuracy(spec: WeightSpec) -> List[str]:
    return [
        f'top-1 {a.top1:.2f}%' + (f', top-5 {a.top5:.2f}%' if a.top5 is not None else '')
        + f' at {a.img_size} px, crop {a.crop_pct} (reported by {a.reported_by})'
        for a in spec.accuracy]


def run(args: argparse.Namespace) -> int:
    if args.model.startswith('hf-hub:'):
        raise CliError(f'info describes the zoo\'s models by name (`{PROG} list`), not Hub ids', code=2)
    arch = check_model_name(args.model)
    selected = args.model.partition('.')[2]
    facts = model_facts(arch)
    model = timm.create_model(arch, device='meta')  # the structure only: no memory for weights
    cfg = model.pretrained_cfg
    entry = timm.models.model_entrypoint(arch)
    summary = (entry.__doc__ or '').strip().split('\n\n')[0].replace('\n', ' ').replace('``', '')
    family = ' + '.join(f for f, present in (
        ('Squeeze-and-Excitation', any(isinstance(m, SqueezeExcite) for m in model.modules())),
        ('Selective Kernel', any(isinstance(m, SelectiveKernel) for m in model.modules()))) if present)
    rows = [
        ('family', f"{family or 'plain ResNet'} ({cfg.get('paper_name')}, {cfg.get('paper_ids')})"),
        *architecture_summary(model),
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
    if not facts.weights:
        print(f'\npretrained weights: none. {NO_WEIGHTS.get(arch, "")}'.rstrip())
        return 0
    print('\npretrained weights (the first is the default):')
    for spec in facts.weights:
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
    return 0

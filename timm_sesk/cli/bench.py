"""``timm-sesk bench``: throughput and memory against timm, the repository's ``benchmarks/compare.py``.

benchmarks/ ships in the package as ``timm_sesk.benchmarks``, so the command works from an installed package as from
a clone (where ``python -m benchmarks.compare`` runs the same benchmark).
"""
import argparse

import timm
import torch

from timm_sesk.benchmarks import compare
from timm_sesk.layers import SelectiveKernel
from timm_sesk.zoo import min_input_size

from .errors import PROG, CliError
from .options import HelpFormatter, check_at_least, check_model_name, is_model_folder

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, name: str, summary: str) -> None:
    # The benchmark's docstring: its summary, then what it measures (its paragraphs of `python -m` examples are
    # replaced by this command's).
    first, *details = (p for p in compare.__doc__.strip().split('\n\n') if not p.startswith(' '))
    p = commands.add_parser(
        name, help=summary, formatter_class=HelpFormatter,
        description='\n\n'.join([first, *(' '.join(d.split()).replace('``', '') for d in details)]),
        epilog=f'examples:\n  {PROG} bench -m sk_resnet50                  # CPU, 2 threads, batch 8, 224 px\n'
               f'  {PROG} bench -m sk_resnet50 --train          # also a training step, batch 16, 160 px\n'
               f'  {PROG} bench -m sk_resnet50 --device cuda --amp --batch 256')
    compare.add_arguments(p)
    p.set_defaults(func=run)


def _check_device(device: str) -> None:
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:  # an unknown device string, or one this torch or machine lacks
        raise CliError(f'cannot use device {device!r} ({str(e).splitlines()[0]}); try --device cpu', code=2) from e


def run(args: argparse.Namespace) -> int:
    if args.model.startswith('hf-hub:') or is_model_folder(args.model):
        raise CliError(f'bench times the zoo\'s architectures (`{PROG} list`), not Hub ids or model folders', code=2)
    arch = check_model_name(args.model)
    if arch != args.model:
        raise CliError(f'bench times architectures on random weights: pass --model {arch}, '
                       f'not {args.model}', code=2)
    check_at_least(1, batch=args.batch, runs=args.runs, threads=args.threads)
    check_at_least(0, warmup=args.warmup)
    with torch.device('meta'):  # the structure only, for its limits
        model = timm.create_model(arch)
    train_size = args.train_size if args.train else None
    check_at_least(min_input_size(model), size=args.size, train_size=train_size)
    if args.train and any(isinstance(m, SelectiveKernel) for m in model.modules()):
        check_at_least(2, train_batch=args.train_batch)  # the SK attention's BatchNorm, in training
    _check_device(args.device)
    return compare.run(args, ' '.join([PROG, *args.argv]))

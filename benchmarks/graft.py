"""Does a graft help? A plain ResNet-18 trained for a few epochs, then continued as itself and as its SE and SK grafts.

    python -m benchmarks.graft --scripts /path/to/timm-scripts --data ../shared/data/cifar10-jpeg --out output/graft

Everything runs through timm's own ``train.py`` and ``validate.py`` (``python -m timm_sesk.run``), on a class-balanced
subset of an ImageFolder dataset (symlinks, made in ``OUT/data``), at 64 px:

1. ``resnet18`` trained from scratch (``--epochs0`` epochs, cosine schedule).
2. Its last checkpoint grafted (``timm_sesk.graft``) onto ``se_resnet18`` and onto a non-split SK-ResNet-18 with
   dense kernels (``sk_resnet18`` with ``sk_split_input=False, sk_keep_3x3=False``: the basic-block SK that has an
   exact graft); each start is validated with ``validate.py``: the three must score the same.
3. (a) the plain network, (b) the SE graft and (c) the SK graft each trained for ``--epochs1`` more epochs with the
   same schedule, learning rate and seed (``--initial-checkpoint``); the top-1 is ``train.py``'s last evaluation.

The commands and results go to ``OUT/commands.txt`` and ``OUT/results.json``; a markdown table is printed.
"""
import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

# The non-split basic-block SK, the variant with an exact graft from a plain ResNet-18.
SK_KWARGS = dict(sk_split_input=False, sk_keep_3x3=False)
ARMS = {
    'a_plain': ('resnet18', {}),
    'b_se_graft': ('se_resnet18', {}),
    'c_sk_graft': ('sk_resnet18', SK_KWARGS),
}


def make_subset(data: Path, out: Path, train_per_class: int, val_per_class: int) -> Path:
    """A class-balanced ImageFolder subset of ``data`` (first files in name order), as symlinks under ``out``."""
    for split, count in (('train', train_per_class), ('validation', val_per_class)):
        for class_dir in sorted((data / split).iterdir()):
            target = out / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted(class_dir.iterdir())[:count]:
                link = target / image.name
                if not link.exists():
                    link.symlink_to(image.resolve())
    return out


def _kwargs_args(kwargs: Dict[str, object]) -> List[str]:
    # Last on the command line: --model-kwargs takes every following word.
    return ['--model-kwargs', *(f'{k}={v}' for k, v in kwargs.items())] if kwargs else []


class Runner:
    """Runs timm's scripts through ``timm_sesk.run`` and records each command."""

    def __init__(self, scripts: Path, out: Path, threads: int):
        self.scripts = scripts
        self.log = out / 'commands.txt'
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads))

    def __call__(self, script: str, args: List[str]) -> str:
        command = [sys.executable, '-m', 'timm_sesk.run', str(self.scripts / script), *args]
        with self.log.open('a') as f:
            f.write(f'OMP_NUM_THREADS={self.env["OMP_NUM_THREADS"]} {shlex.join(command)}\n')
        start = time.time()
        result = subprocess.run(command, env=self.env, capture_output=True, text=True)
        if result.returncode:
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
            raise SystemExit(f'{script} failed ({result.returncode})')
        print(f'  {script} {args[0] if args else ""}: {time.time() - start:.0f} s', flush=True)
        return result.stdout


def _logit_diff(arch: str, kwargs: Dict[str, object], start: Path, plain: Path, data: Path) -> float:
    """Largest |logit difference| between a start and the plain network, eval mode, on 50 validation images."""
    import timm
    from timm.data import create_dataset, create_transform, resolve_model_data_config

    models = [timm.create_model(name, num_classes=10, checkpoint_path=str(path), **kw).eval()
              for name, kw, path in ((arch, kwargs, start), ('resnet18', {}, plain))]
    config = resolve_model_data_config(models[1])
    transform = create_transform(**dict(config, input_size=(3, 64, 64), crop_pct=1.0))
    dataset = create_dataset('', root=str(data), split='validation', transform=transform)
    images = torch.stack([dataset[i][0] for i in range(0, len(dataset), max(1, len(dataset) // 50))])
    with torch.no_grad():
        return (models[0](images) - models[1](images)).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scripts', type=Path, required=True, help="folder with timm's train.py and validate.py")
    parser.add_argument('--data', type=Path, required=True, help='ImageFolder dataset with train/ and validation/')
    parser.add_argument('--out', type=Path, default=Path('output/graft'))
    parser.add_argument('--train-per-class', type=int, default=200)
    parser.add_argument('--val-per-class', type=int, default=100)
    parser.add_argument('--img-size', type=int, default=64)
    parser.add_argument('--epochs0', type=int, default=4, help='epochs of the plain network before the graft')
    parser.add_argument('--epochs1', type=int, default=2, help='epochs of each arm after the graft')
    parser.add_argument('--lr0', type=float, default=0.05)
    parser.add_argument('--lr1', type=float, default=0.02)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()

    import timm_sesk

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / 'commands.txt').unlink(missing_ok=True)
    data = make_subset(args.data.resolve(), out / 'data', args.train_per_class, args.val_per_class)
    run = Runner(args.scripts.resolve(), out, args.threads)
    common = [str(data), '--device', 'cpu', '--num-classes', '10', '--img-size', str(args.img_size),
              '--batch-size', str(args.batch_size), '-j', '1', '--opt', 'sgd', '--momentum', '0.9',
              '--weight-decay', '5e-4', '--sched', 'cosine', '--scale', '0.35', '1.0', '--crop-pct', '1.0',
              '--seed', '42', '--log-interval', '1000', '--checkpoint-hist', '1', '--output', str(out)]

    print('1. plain resnet18 from scratch', flush=True)
    run('train.py', ['--model', 'resnet18', *common, '--experiment', 'plain0', '--epochs', str(args.epochs0),
                     '--lr', str(args.lr0), '--warmup-epochs', '1', '--warmup-lr', str(args.lr0 / 10)])
    plain_checkpoint = out / 'plain0' / 'last.pth.tar'

    print('2. grafts, and the top-1 of each start', flush=True)
    starts, results = {}, {}
    for arm, (arch, kwargs) in ARMS.items():
        if arch == 'resnet18':
            starts[arm] = plain_checkpoint
        else:
            model = timm_sesk.graft(str(plain_checkpoint), arch, **kwargs)
            starts[arm] = out / f'{arm}_start.pth'
            torch.save(model.state_dict(), starts[arm])
        results_file = out / f'{arm}_start.json'
        run('validate.py', [str(data), '--model', arch, *_kwargs_args(kwargs), '--checkpoint', str(starts[arm]),
                            '--device', 'cpu', '--num-classes', '10', '--img-size', str(args.img_size),
                            '--crop-pct', '1.0', '--batch-size', '100', '-j', '1',
                            '--results-file', str(results_file), '--results-format', 'json'])
        start_result = json.loads(results_file.read_text())
        results[arm] = dict(model=arch, kwargs=kwargs, top1_at_graft=float(start_result['top1']),
                            max_logit_diff_at_graft=_logit_diff(arch, kwargs, starts[arm], plain_checkpoint, data))

    print('3. each arm continued', flush=True)
    for arm, (arch, kwargs) in ARMS.items():
        start = time.time()
        run('train.py', ['--model', arch, *common, '--experiment', arm, '--initial-checkpoint', str(starts[arm]),
                         '--epochs', str(args.epochs1), '--lr', str(args.lr1), '--warmup-epochs', '0',
                         *_kwargs_args(kwargs)])
        with (out / arm / 'summary.csv').open() as f:
            rows = list(csv.DictReader(f))
        results[arm].update(top1_after=float(rows[-1]['eval_top1']), best_top1_after=max(
            float(r['eval_top1']) for r in rows), train_seconds=round(time.time() - start))

    summary = dict(machine=f'{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, '
                           f'{args.threads} threads', settings=vars(args) | dict(scripts=str(args.scripts),
                                                                              data=str(args.data), out=str(out)),
                   results=results)
    (out / 'results.json').write_text(json.dumps(summary, indent=2, default=str))
    print('\n| arm | model | top-1 at graft point | max logit diff. to plain | top-1 after | best top-1 after | '
          'train time (s) |')
    print('|---|---|---|---|---|---|---|')
    for arm, r in results.items():
        print(f"| {arm} | `{r['model']}` {r['kwargs'] or ''} | {r['top1_at_graft']:.2f} | "
              f"{r['max_logit_diff_at_graft']:.1e} | {r['top1_after']:.2f} | {r['best_top1_after']:.2f} | "
              f"{r['train_seconds']} |")


if __name__ == '__main__':
    main()

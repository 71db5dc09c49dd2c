"""The second SK path's convolution, three ways: how fast a grouped 3x3 with dilation 2 is against a plain 3x3 and
against the same 5x5 window as a dense kernel, per stage of SKNet-50, in both memory layouts.

    python -m benchmarks.sk_kernels                       # CPU, 2 threads, batch 16 at 160 px (the training benchmark)
    python -m benchmarks.sk_kernels --device cuda --batch 256 --amp

Prints the median milliseconds of a forward pass (no grad) and of a forward + backward, for each stage's shape.
"""
import argparse
import statistics
import time
from functools import partial
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

# (channels, feature size at 160 px) of the SK units' path convs in SKNet-50's four stages.
STAGES = [(128, 40), (256, 20), (512, 10), (1024, 5)]
KERNELS = [('3x3 d1', 3, 1), ('3x3 d2', 3, 2), ('5x5 dense', 5, 1)]


def _median_ms(fn: Callable[[], None], runs: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _forward(conv: Callable[[], torch.Tensor], autocast: torch.autocast) -> None:
    with torch.no_grad(), autocast:
        conv()


def _train_step(conv: Callable[[], torch.Tensor], autocast: torch.autocast) -> None:
    with autocast:
        y = conv()
    y.float().sum().backward()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--groups', type=int, default=32)
    parser.add_argument('--runs', type=int, default=7)
    parser.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith('cuda') else (lambda: None)
    autocast = torch.autocast(args.device.split(':')[0], dtype=torch.bfloat16, enabled=args.amp)
    print(f'# torch {torch.__version__}, {args.device}, {args.threads} threads, batch {args.batch}, '
          f'groups {args.groups}, {"bf16 autocast" if args.amp else "fp32"}; ms forward / forward+backward')
    print('| channels x size | layout | ' + ' | '.join(name for name, _, _ in KERNELS) + ' |')
    print('|---|---|' + '---|' * len(KERNELS))
    for channels, size in STAGES:
        for layout, fmt in (('nchw', torch.contiguous_format), ('channels_last', torch.channels_last)):
            x = torch.randn(args.batch, channels, size, size, device=args.device).to(memory_format=fmt)
            x.requires_grad_()
            cells = []
            for _, k, d in KERNELS:
                w = torch.randn(channels, channels // args.groups, k, k, device=args.device, requires_grad=True)
                conv = partial(F.conv2d, x, w, padding=d * (k - 1) // 2, dilation=d, groups=args.groups)
                forward_ms = _median_ms(partial(_forward, conv, autocast), args.runs, sync)
                train_ms = _median_ms(partial(_train_step, conv, autocast), args.runs, sync)
                cells.append(f'{forward_ms:.1f} / {train_ms:.1f}')
            print(f'| {channels} x {size}x{size} | {layout} | ' + ' | '.join(cells) + ' |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

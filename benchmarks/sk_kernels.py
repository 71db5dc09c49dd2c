"""The second SK path's convolution, three ways: how fast a grouped 3x3 with dilation 2 is against a plain 3x3 and
against the same 5x5 window as a dense kernel, per stage of SKNet-50, in both memory layouts.

    python -m benchmarks.sk_kernels                       # CPU, 2 threads, batch 16 at 160 px (the training benchmark)
    python -m benchmarks.sk_kernels --device cuda --batch 256 --amp
    python -m benchmarks.sk_kernels --runtime openvino --precision bf16 --batch 8 --size 224   # inside a runtime

Prints the median milliseconds of a forward pass (no grad) and of a forward + backward, for each stage's shape. With
``--runtime`` (``openvino`` or ``onnxruntime``) each kernel, followed by its ReLU as in an SK path, is converted to a
one-layer model and timed by the runtime's own per-op counters (forward only), with one more column: both paths of an
SK unit as one grouped 5x5 convolution of 2C outputs (the 3x3 centred, the dilated 3x3 on the even taps), the way to
run the two paths, which read the same input, as a single convolution. ``--groups`` larger than a stage's channels
per group allow times grouped convolutions of wider groups: what merging groups (block-diagonal weights) would cost.
"""
import argparse
import statistics
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

# (channels, stride of the feature map) of the SK units' path convs in SKNet-50's four stages.
STAGES = [(128, 4), (256, 8), (512, 16), (1024, 32)]
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


class _Conv(torch.nn.Module):
    """One SK path's convolution and ReLU (``paths`` 2: both paths as one 5x5 of 2C outputs)."""

    def __init__(self, channels: int, groups: int, kernel: int, dilation: int, paths: int = 1):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, paths * channels, kernel, padding=dilation * (kernel - 1) // 2,
                                    dilation=dilation, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def _runtime_ms(module: torch.nn.Module, x: torch.Tensor, runtime: str, precision: str, threads: int,
                runs: int) -> float:
    """Median milliseconds of the module's convolution in the runtime, by the runtime's per-op counters."""
    from .deploy import _is_conv, _OnnxRuntimeProfile, _OpenVINOProfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if runtime == 'openvino':
            import openvino as ov

            with warnings.catch_warnings():  # the PyTorch frontend traces with torch.jit.trace, deprecated in torch
                warnings.simplefilter('ignore', FutureWarning)
                ov_model = ov.convert_model(module.eval(), example_input=x)
            ov.save_model(ov_model, str(folder / 'model.xml'), compress_to_fp16=False)
            profile = _OpenVINOProfile(folder, precision, threads)
        else:
            torch.onnx.export(module.eval(), (x,), str(folder / 'model.onnx'), dynamo=True, input_names=['input'],
                              verbose=False)
            profile = _OnnxRuntimeProfile(folder, threads)
        for _ in range(runs + 1):
            profile.run(x.numpy())
        times = [sum(t for k, t in run.items() if _is_conv(k)) for run in profile.runs()[1:]]
    return statistics.median(times)


def runtime_table(runtime: str, precision: str, threads: int, batch: int, size: int, groups: int,
                  runs: int) -> List[str]:
    """Each kernel's forward milliseconds in the runtime, per stage of SKNet-50."""
    kernels = [*((name, (k, d, 1)) for name, k, d in KERNELS), ('both paths as one 5x5', (5, 1, 2))]
    lines = [f'# {runtime} {precision}, {threads} threads, batch {batch}, {size} px, groups {groups}; forward ms '
             f'(the runtime\'s per-op counters, median of {runs})',
             '| channels x size | ' + ' | '.join(name for name, _ in kernels) + ' |',
             '|---|' + '---|' * len(kernels)]
    for channels, stride in STAGES:
        x = torch.randn(batch, channels, size // stride, size // stride)
        cells = []
        for _, (k, d, paths) in kernels:
            module = _Conv(channels, min(groups, channels), k, d, paths)
            cells.append(f'{_runtime_ms(module, x, runtime, precision, threads, runs):.2f}')
        lines.append(f'| {channels} x {size // stride}x{size // stride} | ' + ' | '.join(cells) + ' |')
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--size', type=int, default=160, help='input size of the network, in pixels (default: 160)')
    parser.add_argument('--groups', type=int, default=32)
    parser.add_argument('--runs', type=int, default=7)
    parser.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    parser.add_argument('--runtime', choices=['openvino', 'onnxruntime'], help='time the kernels in this runtime')
    parser.add_argument('--precision', choices=['f32', 'bf16'], default='f32', help='OpenVINO inference precision')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.runtime:
        if args.runtime == 'onnxruntime' and args.precision != 'f32':
            parser.error("ONNX Runtime's CPU provider computes in f32 only")
        print('\n'.join(runtime_table(args.runtime, args.precision, args.threads, args.batch, args.size, args.groups,
                                      args.runs)))
        return 0
    sync = torch.cuda.synchronize if args.device.startswith('cuda') else (lambda: None)
    autocast = torch.autocast(args.device.split(':')[0], dtype=torch.bfloat16, enabled=args.amp)
    print(f'# torch {torch.__version__}, {args.device}, {args.threads} threads, batch {args.batch}, '
          f'groups {args.groups}, {"bf16 autocast" if args.amp else "fp32"}; ms forward / forward+backward')
    print('| channels x size | layout | ' + ' | '.join(name for name, _, _ in KERNELS) + ' |')
    print('|---|---|' + '---|' * len(KERNELS))
    for channels, stride in STAGES:
        size = args.size // stride
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

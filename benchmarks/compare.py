"""Throughput and memory of timm_sesk's models against timm's, on identical weights and identical outputs.

    python -m benchmarks.compare --model sk_resnet50                 # CPU, 2 threads, batch 8, 224 px
    python -m benchmarks.compare --model sk_resnet50 --train         # also a training step, batch 16, 160 px
    python -m benchmarks.compare --model sk_resnet50 --device cuda --amp --batch 256

For one model it times, in eval mode: timm_sesk as ``timm.create_model`` returns it; timm_sesk after
``timm_sesk.fuse`` (the documented inference path); optionally timm_sesk under ``torch.compile``; timm's twin of the
same network; the same network computed by straightforward SE/SK units written from the papers (``naive.py``); and
the plain network without SE/SK (e.g. ResNeXt-50 for SKNet-50), the cost floor. Before timing anything it checks
that every variant of the same network gives the same fp32 logits (relative error below 1e-5).

Runs are interleaved (A B C A B C ...) and medians reported, because the machine is noisy. Each variant is timed in
NCHW and channels_last and reported in its best layout. Peak training memory is the rise in resident memory of a
fresh process during one training step.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import timm
import torch
from tqdm import tqdm

import timm_sesk
from timm_sesk.models.archs import ARCHS
from timm_sesk.weights import REFERENCES, convert_state_dict, create_reference

from .naive import naive_copy

# The plain network each model adds SE or SK to, as its architecture declares it: what an SE/SK unit costs is
# measured against it. sk_resnet26 and the *_orig models have none that timm registers.
PLAIN_TWINS = {name: arch.plain_twin for name, arch in ARCHS.items() if arch.plain_twin}
TOL = 1e-5


@dataclass
class Variant:
    name: str
    model: torch.nn.Module
    same_net: bool  # computes the same function as timm_sesk's model (checked before timing)


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-identity BatchNorm statistics, so that fused and unfused paths are compared on something real."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(0.2, 0.6, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)


def build_variants(arch: str, device: str, compile_model: bool) -> List[Variant]:
    """timm_sesk's model and every comparison, sharing the reference's random weights."""
    torch.manual_seed(0)
    reference = create_reference(arch).eval()
    _randomize_bn(reference)
    ours = timm.create_model(arch).eval()
    ours.load_state_dict(convert_state_dict(reference.state_dict(), REFERENCES[arch].mapping))
    variants = [
        Variant('timm_sesk', ours, True),
        Variant('timm_sesk fuse()', timm_sesk.fuse(_copy_loaded(arch, ours)), True),
    ]
    if compile_model:
        variants.append(Variant('timm_sesk compiled', torch.compile(_copy_loaded(arch, ours), fullgraph=True), True))
    variants.append(Variant(f'timm {REFERENCES[arch].name}', reference, True))
    variants.append(Variant('naive (paper equations)', naive_copy(ours), True))
    if arch in PLAIN_TWINS:
        variants.append(Variant(f'plain {PLAIN_TWINS[arch]}', timm.create_model(PLAIN_TWINS[arch]).eval(), False))
    for v in variants:
        v.model.to(device)
    return variants


def _copy_loaded(arch: str, source: torch.nn.Module) -> torch.nn.Module:
    model = timm.create_model(arch).eval()
    model.load_state_dict(source.state_dict())
    return model


def check_outputs(variants: List[Variant], size: int, device: str) -> Dict[str, float]:
    """Relative error of every same-network variant against timm_sesk, in fp32, before any timing."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.inference_mode():
        expected = variants[0].model(x).double()
        errors = {}
        for v in variants[1:]:
            if v.same_net:
                actual = v.model(x).double()
                errors[v.name] = ((actual - expected).abs().max() / expected.abs().max()).item()
    bad = {k: e for k, e in errors.items() if e >= TOL}
    if bad:
        raise SystemExit(f'outputs differ (relative error >= {TOL}): {bad}; nothing was timed')
    return errors


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_inference(variants: List[Variant], batch: int, size: int, device: str, runs: int, warmup: int,
                   amp: bool, layouts: List[str]) -> Dict[str, Dict[str, float]]:
    """Median seconds per batch of every variant in every layout, interleaving the variants run by run."""
    results: Dict[str, Dict[str, float]] = {v.name: {} for v in variants}
    autocast = torch.autocast(device.split(':')[0], dtype=torch.bfloat16, enabled=amp)
    for layout in layouts:
        fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
        x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
        for v in variants:
            v.model.to(memory_format=fmt)
        with torch.inference_mode(), autocast:
            medians = interleaved_medians({v.name: (lambda m=v.model, x=x: m(x)) for v in variants}, runs, warmup,
                                          f'inference {layout}', lambda: _sync(device))
        for name, seconds in medians.items():
            results[name][layout] = seconds
    return results


def interleaved_times(calls: Dict[str, Callable[[], object]], runs: int, warmup: int, desc: str = 'timing',
                      sync: Callable[[], None] = lambda: None, pause: float = 0.0) -> Dict[str, List[float]]:
    """Seconds of each run of each call, timed interleaved (A B C A B C ...) so that load on a shared machine hits
    every call alike.

    Args:
        calls: Name to a function running one timed unit of work (a forward pass).
        runs: Timed rounds; each round runs every call once.
        warmup: Untimed calls of each before timing.
        desc: Progress bar label.
        sync: Run after each call, inside its timing (``torch.cuda.synchronize`` on a GPU).
        pause: Idle seconds before each timed call, outside its timing: runtimes' worker threads spin for a while
            after their work (ONNX Runtime's and OpenMP's by default), which another runtime's call would pay for.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    sync()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for _ in tqdm(range(runs), desc=desc, leave=False, file=sys.stderr):
        for name, call in calls.items():
            time.sleep(pause)
            start = time.perf_counter()
            call()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(calls: Dict[str, Callable[[], object]], runs: int, warmup: int, desc: str = 'timing',
                        sync: Callable[[], None] = lambda: None, pause: float = 0.0) -> Dict[str, float]:
    """Median seconds of each call, timed interleaved (``interleaved_times``)."""
    times = interleaved_times(calls, runs, warmup, desc, sync, pause)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _train_step(model: torch.nn.Module, x: torch.Tensor, amp: bool, device: str) -> None:
    with torch.autocast(device.split(':')[0], dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    out.float().mean().backward()


def time_training(arch: str, names: List[str], batch: int, size: int, device: str, runs: int, warmup: int,
                  amp: bool, layout: str) -> Dict[str, float]:
    """Median seconds of a forward + backward step, interleaved."""
    fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
    models = {name: _training_model(arch, name).to(device, memory_format=fmt).train() for name in names}
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for model in models.values():
        for _ in range(warmup):
            _train_step(model, x, amp, device)
    for _ in tqdm(range(runs), desc=f'training {layout}', leave=False, file=sys.stderr):
        for name, model in models.items():
            model.zero_grad(set_to_none=True)
            _sync(device)
            start = time.perf_counter()
            _train_step(model, x, amp, device)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


_TRAINING_MODELS: Dict[str, Callable[[str], torch.nn.Module]] = {
    'timm_sesk': lambda arch: timm.create_model(arch),
    'timm_sesk sk_memory_efficient=True': lambda arch: timm.create_model(arch, sk_memory_efficient=True),
    'timm': lambda arch: create_reference(arch),
    'naive (paper equations)': lambda arch: naive_copy(timm.create_model(arch)),
    'plain': lambda arch: timm.create_model(PLAIN_TWINS[arch]),
}


def training_variants(arch: str) -> List[str]:
    """The training comparisons that apply to ``arch``: the memory knob only exists for SK models."""
    names = ['timm_sesk', 'timm', 'naive (paper equations)']
    if ARCHS[arch].family == 'sk':
        names.insert(1, 'timm_sesk sk_memory_efficient=True')
    if arch in PLAIN_TWINS:
        names.append('plain')
    return names


def _training_label(arch: str, name: str) -> str:
    return f'plain {PLAIN_TWINS[arch]}' if name == 'plain' else name


def _training_model(arch: str, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return _TRAINING_MODELS[name](arch)


def training_peak_memory(arch: str, name: str, batch: int, size: int, layout: str) -> float:
    """Peak memory (MB) of one training step above the model's resident size, measured in a fresh CPU process.

    glibc is told to serve large blocks with mmap and to return freed memory at once, so that the resident size
    follows what PyTorch holds; the step's peak is the rise of the peak resident size (VmHWM, reset before the
    step) over the resident size before it. Linux only.
    """
    code = (
        f'import json; from {__spec__.name} import _peak_probe; '  # benchmarks.compare or timm_sesk.benchmarks.compare
        f'print(json.dumps(_peak_probe({arch!r}, {name!r}, {batch}, {size}, {layout!r})))')
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='0')
    # The fresh process imports this module by the same name, from the folder holding its top-level package.
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), *['..'] * __spec__.name.count('.')))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, env=env, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_probe(arch: str, name: str, batch: int, size: int, layout: str) -> float:
    torch.set_num_threads(1)
    fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
    model = _training_model(arch, name).train().to(memory_format=fmt)
    x = torch.randn(batch, 3, size, size).to(memory_format=fmt)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak resident size (VmHWM) to the current one
    baseline = _status_kb('VmRSS')
    _train_step(model, x, False, 'cpu')
    return (_status_kb('VmHWM') - baseline) / 1024


def _status_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        return int(next(line.split()[1] for line in f if line.startswith(field + ':')))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{cpu}, {os.cpu_count()} logical CPUs'


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's options, on ``parser`` (its own, or ``timm-sesk bench``'s)."""
    parser.add_argument('--model', '-m', default='sk_resnet50', help='timm_sesk model (default: sk_resnet50)')
    parser.add_argument('--batch', type=int, default=8, help='inference batch size (default: 8)')
    parser.add_argument('--size', type=int, default=224, help='inference input size in pixels (default: 224)')
    parser.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads (default: 2)')
    parser.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    parser.add_argument('--layout', choices=['best', 'nchw', 'channels_last'], default='best',
                        help='memory layout; best: time both, report the faster (default)')
    parser.add_argument('--runs', type=int, default=15, help='timed runs per variant (default: 15)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs first (default: 2)')
    parser.add_argument('--compile', action='store_true', help='also time torch.compile (slow to compile)')
    parser.add_argument('--train', action='store_true', help='also time a training step and its peak memory')
    parser.add_argument('--train-batch', type=int, default=16, help='training batch size (default: 16)')
    parser.add_argument('--train-size', type=int, default=160, help='training input size (default: 160)')
    parser.add_argument('--markdown', action='store_true', help='print the tables as markdown')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    summary, _, details = __doc__.partition('\n\n')
    parser = add_arguments(argparse.ArgumentParser(
        description=summary, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=details))
    args = parser.parse_args(argv)
    return run(args, 'python -m benchmarks.compare ' + ' '.join(argv if argv is not None else sys.argv[1:]))


def run(args: argparse.Namespace, command: str) -> int:
    """Run the benchmark for parsed options; ``command`` is the command line the report names."""
    torch.set_num_threads(args.threads)
    layouts = ['nchw', 'channels_last'] if args.layout == 'best' else [args.layout]
    print(f'# {args.model}: {machine()}; torch {torch.__version__}, timm {timm.__version__}, '
          f'timm_sesk {timm_sesk.__version__}; {args.device}, {args.threads} threads, '
          f'{"bf16 autocast" if args.amp else "fp32"}; {datetime.date.today()}')
    print(f'# command: {command}')
    variants = build_variants(args.model, args.device, args.compile)
    errors = check_outputs(variants, args.size, args.device)
    print('# fp32 relative error vs timm_sesk (checked < 1e-5 before timing): '
          + ', '.join(f'{k} {e:.1e}' for k, e in errors.items()))

    results = time_inference(variants, args.batch, args.size, args.device, args.runs, args.warmup, args.amp, layouts)
    best = {name: min(per_layout.items(), key=lambda kv: kv[1]) for name, per_layout in results.items()}
    timm_name = f'timm {REFERENCES[args.model].name}'
    plain = next((v.name for v in variants if v.name.startswith('plain ')), None)
    print(f'\n## Inference: batch {args.batch}, {args.size} px, median of {args.runs} interleaved runs\n')
    header = ['variant', 'best layout', 'ms/batch', 'img/s', f'x {timm_name}'] + ([f'time / {plain}'] if plain else [])
    rows = []
    for name, (layout, seconds) in best.items():
        row = [name, layout, f'{seconds * 1000:.0f}', f'{args.batch / seconds:.1f}',
               f'{best[timm_name][1] / seconds:.2f}']
        if plain:
            row.append(f'{seconds / best[plain][1]:.2f}')
        rows.append(row)
    _print_table(header, rows, args.markdown)
    per_layout = [[name] + [f'{results[name].get(layout, float("nan")) * 1000:.0f}' for layout in layouts]
                  for name in results]
    print()
    _print_table(['variant'] + [f'{layout} ms' for layout in layouts], per_layout, args.markdown)

    if args.train:
        names = training_variants(args.model)
        train = {layout: time_training(args.model, names, args.train_batch, args.train_size, args.device, args.runs,
                                       args.warmup, args.amp, layout) for layout in layouts}
        best_train = {name: min(((layout, train[layout][name]) for layout in layouts), key=lambda kv: kv[1])
                      for name in names}
        memory = {name: training_peak_memory(args.model, name, args.train_batch, args.train_size,
                                             best_train[name][0])
                  for name in names} if args.device == 'cpu' else {}
        print(f'\n## Training step (forward + backward): batch {args.train_batch}, {args.train_size} px, '
              f'median of {args.runs} interleaved runs\n')
        header = ['variant', 'best layout', 'ms/step', 'img/s', 'x timm'] + (
            ['peak MB', 'memory / timm'] if memory else [])
        rows = []
        for name in names:
            layout, seconds = best_train[name]
            row = [_training_label(args.model, name), layout, f'{seconds * 1000:.0f}',
                   f'{args.train_batch / seconds:.1f}', f'{best_train["timm"][1] / seconds:.2f}']
            if memory:
                row += [f'{memory[name]:.0f}', f'{memory[name] / memory["timm"]:.2f}']
            rows.append(row)
        _print_table(header, rows, args.markdown)
        print()
        _print_table(['variant'] + [f'{layout} ms/step' for layout in layouts],
                     [[_training_label(args.model, name)] + [f'{train[layout][name] * 1000:.0f}' for layout in layouts]
                      for name in names],
                     args.markdown)
    return 0


def _print_table(header: List[str], rows: List[List[str]], markdown: bool) -> None:
    if markdown:
        print('| ' + ' | '.join(header) + ' |')
        print('|' + '---|' * len(header))
        for row in rows:
            print('| ' + ' | '.join(row) + ' |')
        return
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print('  '.join(str(c).ljust(w) for c, w in zip(row, widths)))


if __name__ == '__main__':
    sys.exit(main())

"""CPU deployment of SE/SK models: PyTorch, ONNX Runtime and OpenVINO (f32, bf16, int8), checked, then timed.

    python -m benchmarks.deploy --out benchmarks/deploy_tables.md     # everything below; writes and prints the tables
    python -m benchmarks.deploy --models sk_resnet50 --batches 8 --no-accuracy --no-compile   # one quick table

For each model and batch size it builds timm's twin of the network and ours with the same random weights (as
``benchmarks.compare`` does), exports ours with ``timm_sesk.deploy.export`` (ONNX; OpenVINO IR made by OpenVINO's
PyTorch frontend and, for comparison, converted from the ONNX file; int8 IR quantized by NNCF on training images), and
checks every path against PyTorch f32 on a random batch before timing anything: f32 paths must be within 1e-4
(relative), bf16/int8 report their error. Then all paths are timed interleaved in one process (A B C A B C ..., each
call after 50 ms idle; medians), PyTorch ones in NCHW and channels_last, reported in their best layout.

SK against its plain twin (``--twins``): for each model, ours and timm's plain network of the same trunk
(``resnext50_32x4d`` for ``sk_resnet50``), random weights with BatchNorm statistics randomised alike, both exported with
``timm_sesk.deploy.export`` and run by the same runtime paths, timed interleaved (medians, and the ratio of the
fastest runs, which a shared machine's load disturbs least): the cost of the SK units in each runtime; for the first
model also ours exported with its SK units as ``timm_sesk.fuse`` leaves them (the export before
``timm_sesk.layers.sk_export``). ``--profile`` then puts their per-op times side by side (OpenVINO f32 and bf16
performance counters, ONNX Runtime's profiler) with the floor that the SK paths' convolutions set.

    python -m benchmarks.deploy --twins --models sk_resnet50 sk_resnet18 sk_resnet101 --no-accuracy \
        --profile f32 bf16 onnxruntime

Accuracy (``--finetuned``): on real images (``--images`` of the validation folder, spread evenly over its classes,
through the model's eval transform) it compares each runtime's top-1 with PyTorch f32's, for ``sk_resnet18`` with
random weights and for a fine-tuned checkpoint, and gives each path's top-1 accuracy on the folder's labels.
"""
import argparse
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import timm
import torch

import timm_sesk
from timm_sesk import deploy
from timm_sesk.data import even_indices, image_folder, read_image
from timm_sesk.weights import REFERENCES, Checkpoint

from .compare import (
    PLAIN_TWINS,
    _randomize_bn,
    build_variants,
    check_outputs,
    interleaved_medians,
    interleaved_times,
    machine,
)

DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'cifar10-jpeg'
LAYOUTS = {'nchw': torch.contiguous_format, 'channels_last': torch.channels_last}
# Idle seconds before each timed call: torch, ONNX Runtime and OpenVINO run their own thread pools, whose threads
# spin for a while after their work; interleaved, one runtime's call would otherwise pay for the previous one's.
PAUSE = 0.05


@dataclass(frozen=True)
class RuntimePath:
    """One way of running the exported model."""
    name: str
    format: str
    frontend: str
    runtime: str
    precision: str
    int8: bool = False
    hint: str = 'LATENCY'

    @property
    def export_key(self) -> Tuple[str, str, bool]:
        return self.format, self.frontend, self.int8


RUNTIME_PATHS = [
    RuntimePath('ONNX Runtime f32', 'onnx', 'onnx', 'onnxruntime', 'f32'),
    RuntimePath('OpenVINO f32', 'openvino', 'pytorch', 'openvino', 'f32'),
    RuntimePath('OpenVINO bf16', 'openvino', 'pytorch', 'openvino', 'bf16'),
    RuntimePath('OpenVINO f32, IR from the ONNX file', 'openvino', 'onnx', 'openvino', 'f32'),
    RuntimePath('OpenVINO bf16, IR from the ONNX file', 'openvino', 'onnx', 'openvino', 'bf16'),
    RuntimePath('OpenVINO bf16, THROUGHPUT hint', 'openvino', 'pytorch', 'openvino', 'bf16', hint='THROUGHPUT'),
    RuntimePath('OpenVINO int8 (NNCF), rest bf16', 'openvino', 'pytorch', 'openvino', 'bf16', int8=True),
]
# The deployment paths of the README: ONNX Runtime, and OpenVINO through the default export, f32, bf16 and int8.
MAIN_PATHS = [p for p in RUNTIME_PATHS if p.format == 'onnx' or (p.frontend == 'pytorch' and p.hint == 'LATENCY')]
# SK against the plain twin: the f32 and bf16 paths, one request at a time (both OpenVINO frontends on the first model).
TWIN_PATHS = [p for p in RUNTIME_PATHS if not p.int8 and p.hint == 'LATENCY']


def export_all(model: torch.nn.Module, workdir: Path, paths: Sequence[RuntimePath], calibration: Path,
               calibration_images: int) -> Dict[Tuple[str, str, bool], Path]:
    """Export the model once per (format, frontend, int8) the paths need; each export runs its own f32 check."""
    folders = {}
    for path in paths:
        if path.export_key in folders:
            continue
        folder = workdir / '_'.join(str(k) for k in path.export_key)
        print(f'# export {path.export_key}: ', end='', flush=True)
        deploy.export(model, folder, path.format, frontend=path.frontend,
                      int8_calibration=calibration if path.int8 else None, int8_samples=calibration_images)
        folders[path.export_key] = folder
    return folders


def load_paths(folders: Dict[Tuple[str, str, bool], Path], paths: Sequence[RuntimePath],
               threads: int) -> Dict[str, deploy.DeployedModel]:
    """Each path's runtime, skipping bf16 where the CPU has none (and saying so)."""
    loaded = {}
    for path in paths:
        try:
            loaded[path.name] = deploy.load(folders[path.export_key], path.runtime, path.precision, threads=threads,
                                            hint=path.hint)
        except deploy.UnsupportedPrecisionError as e:
            print(f'# skipped {path.name}: {e}')
    return loaded


def check_runtimes(reference: torch.nn.Module, runtimes: Dict[str, deploy.DeployedModel], paths: Sequence[RuntimePath],
                   size: int) -> Dict[str, float]:
    """Relative error of each runtime against PyTorch f32 on a random batch; f32 paths must be within 1e-4."""
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = reference(x).numpy()
    errors = {name: deploy.relative_error(model.run(x.numpy()), expected) for name, model in runtimes.items()}
    exact = {p.name for p in paths if p.precision == 'f32' and not p.int8}
    bad = {name: e for name, e in errors.items() if name in exact and e > deploy.F32_TOLERANCE}
    if bad:
        raise SystemExit(f'f32 runtimes differ from PyTorch (relative error > {deploy.F32_TOLERANCE}): {bad}; '
                         'nothing was timed')
    return errors


def speed_tables(arch: str, batches: Sequence[int], threads: int, runs: int, warmup: int,
                 compile_model: bool, paths: Sequence[RuntimePath], calibration: Path, calibration_images: int,
                 workdir: Path) -> List[str]:
    """Check, then time interleaved, every PyTorch variant and runtime path of one model, one table per batch."""
    variants = [v for v in build_variants(arch, 'cpu', compile_model)
                if not v.name.startswith(('naive', 'plain'))]
    size = deploy.data_config(variants[0].model)['input_size'][-1]  # what the export is made for
    torch_errors = check_outputs(variants, size, 'cpu')
    ours = variants[0].model
    folders = export_all(ours, workdir / arch, paths, calibration, calibration_images)
    runtimes = load_paths(folders, paths, threads)
    errors = {**torch_errors, **check_runtimes(ours, runtimes, paths, size)}
    # torch.compile only in NCHW (its best layout for sk_resnet50 in RESULTS.md): each layout and batch size is
    # another compilation of minutes.
    layouts = {layout: [(v, v.model if layout == 'nchw' else _layout_copy(v.model, fmt)) for v in variants
                        if layout == 'nchw' or not hasattr(v.model, '_orig_mod')]
               for layout, fmt in LAYOUTS.items()}
    timm_name = f'timm {REFERENCES[arch].name}'
    lines: List[str] = []
    for batch in batches:
        calls: Dict[str, Callable[[], object]] = {}
        for layout, models in layouts.items():
            x = torch.randn(batch, 3, size, size).contiguous(memory_format=LAYOUTS[layout])
            for v, model in models:
                calls[f'{v.name}@{layout}'] = _torch_call(model, x)
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
        for name, runtime in runtimes.items():
            calls[name] = (lambda r=runtime, x=x: r.run(x))
        medians = interleaved_medians(calls, runs, warmup, f'{arch} batch {batch}', pause=PAUSE)
        best: Dict[str, Tuple[str, float]] = {}
        for key, seconds in medians.items():
            name, _, layout = key.partition('@')
            if name not in best or seconds < best[name][1]:
                best[name] = (layout or 'runtime', seconds)
        rows = [[name, layout, f'{seconds * 1000:.0f}', f'{batch / seconds:.1f}',
                 f'{best[timm_name][1] / seconds:.2f}',
                 'reference' if name == variants[0].name else f'{errors[name]:.1e}']
                for name, (layout, seconds) in best.items()]
        header = ['path', 'layout', 'ms/batch', 'img/s', f'x {timm_name} eager', 'max rel. error vs PyTorch f32']
        lines += [f'### {arch}: batch {batch}, {size} px, {threads} threads, median of {runs} interleaved runs', '',
                  *_markdown(header, rows), '']
    return lines[:-1]


def _layout_copy(model: torch.nn.Module, fmt: torch.memory_format) -> torch.nn.Module:
    """The same model in another memory format."""
    import copy

    return copy.deepcopy(model).to(memory_format=fmt)


def _torch_call(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def call():
        with torch.inference_mode():
            return model(x)
    return call


# --- SK against its plain twin -------------------------------------------------------------------------------------

def twin_models(arch: str) -> Dict[str, torch.nn.Module]:
    """Ours and timm's plain twin, each with random weights and BatchNorm statistics randomised alike."""
    models = {}
    for name in (arch, PLAIN_TWINS[arch]):
        torch.manual_seed(0)
        models[name] = timm.create_model(name).eval()
        _randomize_bn(models[name])
    return models


@contextlib.contextmanager
def _fuse_form() -> Iterator[None]:
    """``deploy.export`` exporting the SK units as ``timm_sesk.fuse`` leaves them (the export before their export
    form), for comparison."""
    export_form = deploy.export_form
    deploy.export_form = lambda model, quantizable=False: model
    try:
        yield
    finally:
        deploy.export_form = export_form


def twin_tables(arch: str, batches: Sequence[int], threads: int, runs: int, warmup: int,
                paths: Sequence[RuntimePath], workdir: Path, fuse_form: bool = False) -> List[str]:
    """SK model / plain twin time in every runtime path, both exported with ``deploy.export``, timed interleaved;
    with ``fuse_form`` also the SK model exported in the form ``timm_sesk.fuse`` gives it."""
    models = twin_models(arch)
    size = deploy.data_config(models[arch])['input_size'][-1]
    plain = PLAIN_TWINS[arch]
    runtimes = {name: load_paths(export_all(model, workdir / name, paths, Path(), 0), paths, threads)
                for name, model in models.items()}
    errors = {name: check_runtimes(model, runtimes[name], paths, size) for name, model in models.items()}
    if fuse_form:
        with _fuse_form():
            runtimes['fuse'] = load_paths(export_all(models[arch], workdir / 'fuse_form', paths, Path(), 0), paths,
                                          threads)
        errors['fuse'] = check_runtimes(models[arch], runtimes['fuse'], paths, size)
    rows = []
    for batch in batches:
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
        calls = {f'{path} | {name}': (lambda r=runtimes[name][path], x=x: r.run(x))
                 for path in runtimes[arch] for name in runtimes}  # each path's models run side by side
        load = ' '.join(f'{v:.2f}' for v in os.getloadavg())
        times = interleaved_times(calls, runs, warmup, f'{arch} vs {plain}, batch {batch}', pause=PAUSE)
        for path in runtimes[arch]:
            median = {name: statistics.median(times[f'{path} | {name}']) for name in runtimes}
            fastest = {name: min(times[f'{path} | {name}']) for name in runtimes}
            rows.append([path, str(batch), f'{median[arch] * 1000:.1f}', f'{median[plain] * 1000:.1f}',
                         f'**{median[arch] / median[plain]:.2f}**', f'{fastest[arch] / fastest[plain]:.2f}',
                         *([f'{median["fuse"] / median[plain]:.2f}'] if fuse_form else []),
                         f'{errors[arch][path]:.1e} / {errors[plain][path]:.1e}', load])
    header = ['path', 'batch', f'{arch} ms', f'{plain} ms', 'SK / plain', 'SK / plain, fastest runs',
              *(['SK in its fuse() form / plain'] if fuse_form else []),
              'max rel. error vs PyTorch f32', 'load average before (1, 5, 15 min)']
    return [f'### {arch} vs {plain}: {size} px, {threads} threads, median of {runs} interleaved runs', '',
            *_markdown(header, rows)]


# --- per-op profiles ----------------------------------------------------------------------------------------------

class _OpenVINOProfile:
    """OpenVINO's per-layer counters: milliseconds per (layer type, kernel) of each run."""

    title = 'OpenVINO {precision} (layer type, kernel)'

    def __init__(self, folder: Path, precision: str, threads: int):
        import openvino as ov

        compiled = ov.Core().compile_model(str(folder / 'model.xml'), 'CPU', {
            'INFERENCE_PRECISION_HINT': precision, 'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_NUM_THREADS': threads,
            'PERF_COUNT': True})
        self._request = compiled.create_infer_request()
        self._runs: List[Dict[Tuple[str, str], float]] = []

    def run(self, x: np.ndarray) -> None:
        self._request.infer({0: x})
        times: Dict[Tuple[str, str], float] = {}
        for info in self._request.profiling_info:
            key = (info.node_type, info.exec_type)
            times[key] = times.get(key, 0.0) + info.real_time.total_seconds() * 1000
        self._runs.append(times)

    def runs(self) -> List[Dict[Tuple[str, str], float]]:
        return self._runs


class _OnnxRuntimeProfile:
    """ONNX Runtime's profiler: milliseconds per (op, convolution weight shape) of each run."""

    title = 'ONNX Runtime f32 (op, convolution weight shape)'

    def __init__(self, folder: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(folder / 'profile')
        self._session = ort.InferenceSession(str(folder / 'model.onnx'), options, providers=['CPUExecutionProvider'])

    def run(self, x: np.ndarray) -> None:
        self._session.run(None, {deploy.INPUT_NAME: x})

    def runs(self) -> List[Dict[Tuple[str, str], float]]:
        """Each run's node times, told apart by the time span of its ``model_run`` event."""
        import json

        events = json.loads(Path(self._session.end_profiling()).read_text())
        spans = sorted((e['ts'], e['ts'] + e['dur']) for e in events
                       if e.get('cat') == 'Session' and e['name'] == 'model_run')
        runs: List[Dict[Tuple[str, str], float]] = [{} for _ in spans]
        for event in events:
            if event.get('cat') != 'Node' or not event['name'].endswith('_kernel_time'):
                continue
            i = next(i for i, (start, end) in enumerate(spans) if start <= event['ts'] <= end)
            key = (event['args']['op_name'], _conv_kind(event['args']))
            runs[i][key] = runs[i].get(key, 0.0) + event['dur'] / 1000
        return runs


def _conv_kind(args: Dict) -> str:
    """'1x1', '3x3 grouped', ... for a convolution event of ONNX Runtime's profiler (its weight's shape), else ''."""
    shapes = [next(iter(s.values())) for s in args.get('input_type_shape', [])]
    if args['op_name'] not in ('Conv', 'FusedConv') or len(shapes) < 2 or len(shapes[1]) != 4:
        return ''
    (_, channels, *_), (_, per_group, kh, kw) = shapes[0], shapes[1]
    return f'{kh}x{kw}' + (' grouped' if per_group < channels else '')


def _is_conv(key: Tuple[str, str]) -> bool:
    return key[0] in ('Convolution', 'GroupConvolution', 'Conv', 'FusedConv')


def _is_spatial_conv(key: Tuple[str, str]) -> bool:
    """A convolution with a kernel larger than 1x1 (OpenVINO names its 1x1 kernels so, ONNX Runtime's are told by
    their weight shape here)."""
    return _is_conv(key) and '1x1' not in key[1]


def runtime_profiles(arch: str, batch: int, kinds: Sequence[str], threads: int, runs: int, workdir: Path,
                     top: int = 14) -> List[str]:
    """Per-op milliseconds of the model and of its plain twin (where it has one), side by side, in OpenVINO
    (``kinds`` 'f32', 'bf16') and ONNX Runtime f32 ('onnxruntime'), with the floor set by the grouped convolutions:
    the twin's time plus the time the SK paths' grouped convolutions take beyond the twin's one."""
    models = twin_models(arch) if arch in PLAIN_TWINS else {arch: timm.create_model(arch).eval()}
    size = deploy.data_config(models[arch])['input_size'][-1]
    folders = {}
    for name, model in models.items():
        for fmt in deploy.FORMATS:
            folders[name, fmt] = workdir / 'profile' / f'{name}_{fmt}'
            deploy.export(model, folders[name, fmt], fmt, log=None)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
    macs = {name: _conv_macs(model, size) for name, model in models.items()}
    lines: List[str] = []
    for kind in kinds:
        if kind == 'onnxruntime':
            profiles = {name: _OnnxRuntimeProfile(folders[name, 'onnx'], threads) for name in models}
        else:
            profiles = {name: _OpenVINOProfile(folders[name, 'openvino'], kind, threads) for name in models}
        for _ in range(runs + 1):  # interleaved; the first run of each also compiles kernels and is left out
            for profile in profiles.values():
                profile.run(x)
        mean = {name: _mean_profile(profile.runs()[1:]) for name, profile in profiles.items()}
        title = type(profiles[arch]).title.format(precision=kind)
        lines += [*([''] if lines else []), *_profile_table(title, arch, batch, size, threads, runs, mean, macs, top)]
    return lines


def _mean_profile(samples: List[Dict[Tuple[str, str], float]]) -> Dict[Tuple[str, str], float]:
    keys = {k for s in samples for k in s}
    return {k: sum(s.get(k, 0.0) for s in samples) / len(samples) for k in keys}


def _profile_table(title: str, arch: str, batch: int, size: int, threads: int, runs: int,
                   profiles: Dict[str, Dict[Tuple[str, str], float]], macs: Dict[str, Tuple[float, float]],
                   top: int) -> List[str]:
    names = list(profiles)
    keys = sorted(set().union(*profiles.values()), key=lambda k: -max(p.get(k, 0.0) for p in profiles.values()))
    totals = {name: sum(p.values()) for name, p in profiles.items()}
    rows = [[*key, *(f'{p.get(key, 0.0):.1f}' for p in profiles.values())] for key in keys[:top]]
    rest = keys[top:]
    if rest:
        rows.append(['(the rest)', '', *(f'{sum(p.get(k, 0.0) for k in rest):.1f}' for p in profiles.values())])
    rows.append(['**total**', '', *(f'**{t:.1f}**' for t in totals.values())])
    lines = [f'### {title}: {" vs ".join(names)}, batch {batch}, {size} px, {threads} threads, ms per run '
             f'(mean of {runs})', '', *_markdown(['op', 'kernel', *(f'{n} ms' for n in names)], rows)]
    if len(names) == 2:
        plain = names[1]
        spatial = {name: sum(t for k, t in p.items() if _is_spatial_conv(k)) for name, p in profiles.items()}
        floor = totals[plain] + spatial[arch] - spatial[plain]
        lines += ['', f'Spatial convolutions (3x3, grouped or not, and the stem; the 1x1s are the same in both): '
                  f'{spatial[arch]:.1f} ms in {arch}, {spatial[plain]:.1f} ms in {plain}. Floor = {plain} + the '
                  f'spatial-convolution time {arch} spends beyond it = {floor:.1f} ms = '
                  f'**{floor / totals[plain]:.2f}x**; measured {totals[arch] / totals[plain]:.2f}x, '
                  f'{totals[arch] - floor:+.1f} ms from the floor (the pooling, attention and select of the SK units, '
                  f'and the noise of the shared layers). Multiply-accumulates per image: {macs[arch][0]:.2f} G '
                  f'({macs[arch][1]:.2f} G in grouped convolutions) against {macs[plain][0]:.2f} G '
                  f'({macs[plain][1]:.2f} G), {macs[arch][0] / macs[plain][0]:.2f}x.']
    return lines


def _conv_macs(model: torch.nn.Module, size: int) -> Tuple[float, float]:
    """Multiply-accumulates of one image's convolutions and linear layers, and of its grouped convolutions, in G."""
    counts = [0.0, 0.0]

    def count(module: torch.nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        per_output = inputs[0].shape[1] // getattr(module, 'groups', 1) * int(np.prod(getattr(module, 'kernel_size',
                                                                                              (1,))))
        macs = output.numel() * per_output / 1e9
        counts[0] += macs
        if getattr(module, 'groups', 1) > 1:
            counts[1] += macs
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d,
                                                                                          torch.nn.Linear))]
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return counts[0], counts[1]


# --- accuracy on real images --------------------------------------------------------------------------------------

def real_images(folder: Path, config: Dict, count: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``count`` images of an ImageFolder split, spread over its classes, through the eval transform, and labels."""
    from timm.data import create_transform

    samples = image_folder(folder).samples
    transform = create_transform(**config)
    chosen = [samples[i] for i in even_indices(len(samples), count)]
    images = [transform(read_image(path)) for path, _ in chosen]
    return torch.stack(images), torch.tensor([t for _, t in chosen])


def _logits(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch: int = 50) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([model(images[i:i + batch]).float().numpy() for i in range(0, len(images), batch)])


def accuracy_table(title: str, model: torch.nn.Module, images: torch.Tensor, labels: Optional[torch.Tensor],
                   paths: Sequence[RuntimePath], threads: int, calibration: Path, calibration_images: int,
                   workdir: Path) -> List[str]:
    """Each runtime path against PyTorch f32 on real images: logit error, top-1 agreement, top-1 accuracy."""
    folders = export_all(model, workdir, paths, calibration, calibration_images)
    runtimes = load_paths(folders, paths, threads)
    expected = _logits(model, images)
    reference_top1 = expected.argmax(1)
    header = ['path', 'max rel. logit error', 'top-1 agreement with PyTorch f32']
    rows = [['PyTorch f32 (timm_sesk eager)', 'reference', '100%']]
    if labels is not None:
        header.append('top-1 accuracy')
        rows[0].append(f'{100 * (reference_top1 == labels.numpy()).mean():.1f}%')
    for name, runtime in runtimes.items():
        actual = _logits(runtime, images)
        top1 = actual.argmax(1)
        row = [name, f'{deploy.relative_error(actual, expected):.1e}',
               f'{100 * (top1 == reference_top1).mean():.1f}% ({(top1 != reference_top1).sum()} differ)']
        if labels is not None:
            row.append(f'{100 * (top1 == labels.numpy()).mean():.1f}%')
        rows.append(row)
    return [f'### {title}', '', *_markdown(header, rows)]


def accuracy_tables(data: Path, finetuned: Optional[Path], finetuned_sizes: Sequence[int], count: int, threads: int,
                    calibration: Path, calibration_images: int, workdir: Path) -> List[str]:
    """(a) sk_resnet18 with random weights (BatchNorm statistics randomised), (b) a fine-tuned sk_resnet18 at each
    input size of ``finetuned_sizes`` (the model's data config with that input size)."""
    paths = MAIN_PATHS
    torch.manual_seed(0)
    random_model = timm.create_model('sk_resnet18').eval()
    _randomize_bn(random_model)
    config = deploy.data_config(random_model)
    images, labels = real_images(data / 'validation', config, count)
    where = f'{len(images)} images of cifar10-jpeg/validation at {config["input_size"][-1]} px'
    lines = accuracy_table(f'(a) sk_resnet18, random weights: {where}', random_model, images, None, paths, threads,
                           calibration, calibration_images, workdir / 'random')
    if finetuned is None:
        return lines
    state_dict = Checkpoint.read(finetuned).state_dict  # a fine-tune of sk_resnet18, in its own layout
    for size in finetuned_sizes:
        model = timm.create_model('sk_resnet18', num_classes=state_dict['fc.weight'].shape[0],
                                  pretrained_cfg_overlay=dict(input_size=(3, size, size))).eval()
        model.load_state_dict(state_dict)
        config = deploy.data_config(model)
        images, labels = real_images(data / 'validation', config, count)
        where = f'{len(images)} images of cifar10-jpeg/validation at {size} px'
        lines += ['', *accuracy_table(f'(b) sk_resnet18 fine-tuned ({finetuned}): {where}', model, images, labels,
                                      paths, threads, calibration, calibration_images, workdir / f'finetuned{size}')]
    return lines


def _markdown(header: List[str], rows: List[List[str]]) -> List[str]:
    return ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] + ['| ' + ' | '.join(r) + ' |' for r in rows]


def _versions() -> str:
    import nncf
    import onnxruntime
    import openvino

    return (f'torch {torch.__version__}, timm {timm.__version__}, timm_sesk {timm_sesk.__version__}, onnxruntime '
            f'{onnxruntime.__version__}, openvino {openvino.__version__.split("-")[0]}, nncf {nncf.__version__}')


def _memory_gb() -> str:
    try:
        return f'{os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30:.0f} GB'
    except (ValueError, OSError):
        return 'unknown memory'


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--models', nargs='+', default=['sk_resnet50', 'se_resnet50', 'sk_resnet18'])
    parser.add_argument('--batches', nargs='+', type=int, default=[8, 1])
    parser.add_argument('--threads', type=int, default=2, help='CPU threads of torch and of every runtime')
    parser.add_argument('--runs', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--no-compile', dest='compile', action='store_false', help='skip torch.compile')
    parser.add_argument('--calibration', type=Path,
                        help='image folder for int8 calibration (default: the train split of --data)')
    parser.add_argument('--calibration-images', type=int, default=300)
    parser.add_argument('--images', type=int, default=1000, help='real images for the accuracy tables')
    parser.add_argument('--finetuned', type=Path, help='fine-tuned 10-class sk_resnet18 checkpoint, for table (b)')
    parser.add_argument('--finetuned-sizes', nargs='+', type=int, default=[224],
                        help='input sizes of table (b), e.g. 224 and the training size (default: 224)')
    parser.add_argument('--no-accuracy', dest='accuracy', action='store_false', help='skip the accuracy tables')
    parser.add_argument('--twins', action='store_true',
                        help='time each model against its plain twin (both exported the same way) in the f32 and '
                             'bf16 runtime paths, instead of the PyTorch and runtime table')
    parser.add_argument('--profile', nargs='*', default=[], choices=['f32', 'bf16', 'onnxruntime'],
                        help='also print the per-op times of the first model, and of its plain twin, at the first '
                             'batch size: OpenVINO at these precisions, ONNX Runtime f32 (onnxruntime)')
    parser.add_argument('--profile-runs', type=int, default=5, help='profiled runs of each model (default: 5)')
    parser.add_argument('--data', type=Path, default=DATA,
                        help='cifar10-jpeg ImageFolder tree for the accuracy tables (default: %(default)s)')
    parser.add_argument('--out', type=Path, help='also write the tables (markdown) to this file')
    args = parser.parse_args(argv)
    args.calibration = args.calibration or args.data / 'train'

    torch.set_num_threads(args.threads)
    command = 'python -m benchmarks.deploy ' + ' '.join(argv if argv is not None else sys.argv[1:])
    lines = [f'{machine()}, {_memory_gb()}; {_versions()}; {args.threads} threads; {datetime.date.today()}',
             f'load average before: {" ".join(f"{v:.2f}" for v in os.getloadavg())}', '', '```bash', command, '```']
    print('\n'.join(lines), flush=True)

    def emit(new: List[str]) -> None:
        lines.extend(['', *new])
        print('\n' + '\n'.join(new), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models:
            # The exporter and hint comparisons on the first model only: each path is another export and timing.
            if args.twins:
                paths = TWIN_PATHS if arch == args.models[0] else [p for p in TWIN_PATHS if p in MAIN_PATHS]
                emit(twin_tables(arch, args.batches, args.threads, args.runs, args.warmup, paths, Path(tmp),
                                 fuse_form=arch == args.models[0]))
            else:
                paths = RUNTIME_PATHS if arch == args.models[0] else MAIN_PATHS
                emit(speed_tables(arch, args.batches, args.threads, args.runs, args.warmup, args.compile,
                                  paths, args.calibration, args.calibration_images, Path(tmp)))
        if args.profile:
            emit(runtime_profiles(args.models[0], args.batches[0], args.profile, args.threads, args.profile_runs,
                                  Path(tmp)))
        if args.accuracy:
            emit(accuracy_tables(args.data, args.finetuned, args.finetuned_sizes, args.images, args.threads,
                                 args.calibration, args.calibration_images, Path(tmp) / 'accuracy'))
    emit([f'load average after: {" ".join(f"{v:.2f}" for v in os.getloadavg())}'])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text('\n'.join(lines) + '\n')
        print(f'\nwrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

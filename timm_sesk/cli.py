"""Command line of the zoo: ``timm-sesk`` or ``python -m timm_sesk``.

Commands: ``list`` (the zoo), ``info`` (one model), ``predict`` (top-k labels of images), ``validate`` (top-1/top-5 on
an image folder; both also run exported folders in ONNX Runtime or OpenVINO), ``attention`` (plot of the SE/SK
attention), ``export`` (Hub-ready folder, ONNX or OpenVINO IR) and ``bench`` (the repository's benchmarks).
Failures print one ``timm-sesk: error: ...`` line naming the fix and exit non-zero.
"""
import argparse
import ast
import difflib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import safetensors.torch
import timm
import torch
from torch import nn

import timm_sesk
from timm_sesk import deploy
from timm_sesk.attention import AttentionUnit, find_units, record
from timm_sesk.layers import SelectiveKernel, SqueezeExcite
from timm_sesk.weights import (
    NO_WEIGHTS,
    PretrainedWeightsError,
    WeightSpec,
    check_state_dict,
    read_checkpoint,
    weights_for,
)
from timm_sesk.zoo import ModelFacts, model_facts

__all__ = ['CliError', 'build_parser', 'main']

PROG = 'timm-sesk'
# Exit status of a process killed by SIGPIPE (128 + 13), what `cmd | head` expects of a command cut short.
_EXIT_BROKEN_PIPE = 141
_WEIGHTS_HINT = ('On the command line: --checkpoint FILE loads a local checkpoint, --no-pretrained uses random '
                 'weights.')
_IMAGENET_SYNSET = re.compile(r'^n\d{8}$')


class CliError(Exception):
    """A failure the user can fix: printed as one ``timm-sesk: error: ...`` line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# --- models -------------------------------------------------------------------------------------------------------

def _check_model_name(name: str) -> str:
    """The architecture of a zoo model name (``arch`` or ``arch.tag``); ``hf-hub:`` ids pass unchecked."""
    if name.startswith('hf-hub:'):
        return name
    arch, _, tag = name.partition('.')
    known = timm_sesk.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3, cutoff=0.6)
        hint = f'did you mean {" or ".join([", ".join(close[:-1]), close[-1]] if len(close) > 1 else close)}? ' \
            if close else ''
        raise CliError(f'unknown model {name!r}; {hint}`{PROG} list` shows every model', code=2)
    tags = [w.tag for w in weights_for(arch)]
    if tag and tag not in tags:
        have = f'its tags: {", ".join(tags)}' if tags else 'it has no pretrained tags'
        raise CliError(f'{arch} has no pretrained tag {tag!r}; {have} (`{PROG} info {arch}`)', code=2)
    return arch


def _check_at_least(minimum: int, **options: Optional[int]) -> None:
    """Refuse integer options below ``minimum`` (None: not given)."""
    for name, value in options.items():
        if value is not None and value < minimum:
            raise CliError(f'--{name.replace("_", "-")} must be at least {minimum}, got {value}', code=2)


def _parse_kwargs(items: Sequence[str]) -> Dict[str, Any]:
    """``key=value`` pairs; values are Python literals where they parse as one (``num_classes=10``), else strings."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep:
            raise CliError(f'expected key=value, got {item!r}', code=2)
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def _read_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise CliError(f'no such checkpoint file: {path}', code=2)
    try:
        return read_checkpoint(path)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CliError(f'cannot read checkpoint {path}: {first}. Pass a .safetensors file or a PyTorch state dict '
                       f'(a timm train.py checkpoint works)') from e


def _load_model(args: argparse.Namespace) -> Tuple[nn.Module, str]:
    """Build ``args.model`` with its weights, in eval mode on ``args.device``; returns it and a description."""
    return _build_model(args.model, args.checkpoint, args.no_pretrained, _parse_kwargs(args.model_kwarg),
                        args.device, kwarg_option='--model-kwarg')


def _build_model(name: str, checkpoint: Optional[str], no_pretrained: bool, model_args: Dict[str, Any],
                 device: str = 'cpu', kwarg_option: str = '--model-kwarg') -> Tuple[nn.Module, str]:
    """The model ``name`` with pretrained weights, a checkpoint's or random ones, in eval mode on ``device``;
    returns it and a description of its weights. ``kwarg_option`` is the command's option for create_model
    arguments, named in errors."""
    _check_model_name(name)
    if checkpoint and no_pretrained:
        raise CliError('--checkpoint and --no-pretrained exclude each other; pass one', code=2)
    model_args = dict(model_args)
    if checkpoint:
        state_dict = _read_checkpoint(checkpoint)
        if 'num_classes' not in model_args and 'fc.weight' in state_dict:
            model_args['num_classes'] = state_dict['fc.weight'].shape[0]  # a fine-tuned head
        model = timm.create_model(name, **model_args)
        try:
            check_state_dict(state_dict, model, source=f'checkpoint {checkpoint}')
        except PretrainedWeightsError as e:
            raise CliError(f'{e} If it was trained with other create_model arguments, pass them with '
                           f'{kwarg_option} KEY=VALUE.') from e
        model.load_state_dict(state_dict)
        weights = f'checkpoint {checkpoint}'
    elif no_pretrained:
        model = timm.create_model(name, **model_args)
        weights = 'random weights'
    else:
        model = timm.create_model(name, pretrained=True, **model_args)
        cfg = model.pretrained_cfg
        hub_id = cfg.get('hf_hub_id')
        weights = f"{cfg.get('architecture')}.{cfg.get('tag')}" if cfg.get('tag') else f'hf-hub:{hub_id}'
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise CliError(f'cannot use device {device!r} ({str(e).splitlines()[0]}); try --device cpu', 2) from e
    return model.eval(), weights


# --- exported models (--runtime) ------------------------------------------------------------------------------------

def _check_model_source(args: argparse.Namespace) -> None:
    """Fail early on a bad ``--model``: a zoo name, or with ``--runtime`` an exported folder."""
    if not args.runtime:
        _check_model_name(args.model)
        return
    given = [option for option, value in (('--checkpoint', args.checkpoint), ('--no-pretrained', args.no_pretrained),
                                          ('--model-kwarg', args.model_kwarg)) if value]
    if given:
        raise CliError(f'{" and ".join(given)} do not apply with --runtime: the model and its weights are those '
                       f'exported into {args.model}', code=2)
    if args.device != 'cpu':
        raise CliError(f'--runtime {args.runtime} runs on the CPU; drop --device {args.device}', code=2)
    _check_at_least(1, threads=args.threads)
    try:
        deploy.read_meta(args.model)
    except ValueError as e:
        raise CliError(str(e), code=2) from e


def _load_runnable(args: argparse.Namespace) -> Tuple[Any, str]:
    """The PyTorch model, or with ``--runtime`` the exported folder in that runtime (called alike: a float batch
    in, logits out, with the same ``num_classes`` and ``pretrained_cfg``); and a description of it."""
    if not args.runtime:
        return _load_model(args)
    try:
        model = deploy.load(args.model, args.runtime, args.precision, threads=args.threads)
    except ValueError as e:  # a precision the runtime or the CPU lacks, IR for ONNX Runtime
        raise CliError(str(e), code=2) from e
    return model, model.describe()


def _label_names(model: Any) -> Tuple[List[str], List[str]]:
    """Class names and descriptions of the model's head: its config's, ImageNet's, or class indices."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    cfg = model.pretrained_cfg
    num_classes = model.num_classes
    names = cfg.get('label_names')
    if names and len(names) == num_classes:  # a fine-tuned export that names its classes
        return list(names), list(cfg.get('label_descriptions') or names)
    subset = infer_imagenet_subset(model)
    if subset:
        info = ImageNetInfo(subset)
        return info.label_names(), info.label_descriptions()
    return [str(i) for i in range(num_classes)], [f'class {i}' for i in range(num_classes)]


# --- images -------------------------------------------------------------------------------------------------------

def _read_image(path: str):
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise CliError(f'no such image file: {path}', code=2)
    try:
        with Image.open(path) as image:
            return image.convert('RGB')
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise CliError(f'cannot read image {path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}); '
                       f'pass a JPEG, PNG or other image file PIL can decode') from e


def _transform(model: Any, size: Optional[int] = None):
    """timm's eval transform for the model (its pretrained cfg's resize, crop and normalisation), optionally at
    another square input size with the same crop fraction."""
    from timm.data import create_transform, resolve_model_data_config

    config = resolve_model_data_config(model)
    if size is not None:
        config['input_size'] = (config['input_size'][0], size, size)
    return create_transform(**config), config


# --- list ---------------------------------------------------------------------------------------------------------

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


def cmd_list(args: argparse.Namespace) -> int:
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


# --- info ---------------------------------------------------------------------------------------------------------

def _widths(pairs: Sequence[Tuple[int, int]]) -> str:
    """Distinct ``in→out`` widths, in depth order."""
    return ', '.join(f'{a}→{b}' for a, b in dict.fromkeys(pairs))


def _architecture(model: nn.Module) -> List[Tuple[str, str]]:
    """What the built model shows of its architecture, as (field, value) rows."""
    stages = [getattr(model, f'layer{i}') for i in range(1, 5)]
    block = stages[0][0]
    spatial = block.conv2 if hasattr(block, 'conv3') else block.conv1  # the bottleneck's 3x3, the basic block's first
    groups = spatial.paths[0].conv.groups if isinstance(spatial, SelectiveKernel) else spatial.conv.groups
    rows = [('block', f'{type(block).__name__}, blocks per stage {tuple(len(s) for s in stages)}, 3x3 conv groups '
                      f'{groups}')]
    stem = 'deep 3x3 stem' if isinstance(model.conv1, nn.Sequential) else f'{model.conv1.kernel_size[0]}x' \
        f'{model.conv1.kernel_size[1]} stem conv'
    pool = ', Caffe max-pool (ceil mode, no padding)' if getattr(model.maxpool, 'ceil_mode', False) else ''
    rows.append(('stem', stem + pool))
    se = [(n, m) for n, m in model.named_modules() if isinstance(m, SqueezeExcite)]
    sk = [(n, m) for n, m in model.named_modules() if isinstance(m, SelectiveKernel)]
    if se:
        unit = se[0][1]
        positions = sorted({model.get_submodule(n.rpartition('.')[0]).attn_position for n, _ in se})
        rows.append(('SE units', (
            f'{len(se)}, position {"/".join(positions)}, squeeze {unit.squeeze_type}, gate '
            f'{type(unit.gate).__name__}, FC biases {"yes" if unit.fc1.bias is not None else "no"}; channels → '
            f'bottleneck: {_widths([(m.fc1.in_features, m.fc1.out_features) for _, m in se])}')))
    if sk:
        unit = sk[0][1]
        paths = ', '.join(
            f'{k}x{k} dilation {d} ({_window(k, d)} window)'
            for k, d in ((p.conv.kernel_size[0], p.conv.dilation[0]) for p in unit.paths))
        rows.append(('SK units', (
            f'{len(sk)}, M={unit.num_paths} paths: {paths}; groups G={unit.paths[0].conv.groups}, input split '
            f'across paths: {"yes" if unit.split_input else "no"}; channels → fuse width d: '
            f'{_widths([(m.attn.fc_reduce.in_features, m.attn.fc_reduce.out_features) for _, m in sk])}')))
    if not se and not sk:
        rows.append(('attention', 'none (SE and SK switched off)'))
    return rows


def _accuracy(spec: WeightSpec) -> List[str]:
    return [
        f'top-1 {a.top1:.2f}%' + (f', top-5 {a.top5:.2f}%' if a.top5 is not None else '')
        + f' at {a.img_size} px, crop {a.crop_pct} (reported by {a.reported_by})'
        for a in spec.accuracy]


def cmd_info(args: argparse.Namespace) -> int:
    if args.model.startswith('hf-hub:'):
        raise CliError(f'info describes the zoo\'s models by name (`{PROG} list`), not Hub ids', code=2)
    arch = _check_model_name(args.model)
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
        *_architecture(model),
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


# --- predict ------------------------------------------------------------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    _check_model_source(args)
    _check_at_least(1, topk=args.topk, batch_size=args.batch_size)
    images = [_read_image(path) for path in args.images]  # fail on a bad file before loading any weights
    model, weights = _load_runnable(args)
    transform, config = _transform(model)
    names, descriptions = _label_names(model)
    k = min(args.topk, model.num_classes)
    size = 'x'.join(str(s) for s in config['input_size'][1:])
    for start in range(0, len(images), args.batch_size):
        batch = torch.stack([transform(image) for image in images[start:start + args.batch_size]])
        with torch.inference_mode():
            probs = model(batch.to(args.device)).float().softmax(dim=-1).cpu()
        top = probs.topk(k, dim=-1)
        for i, (values, indices) in enumerate(zip(top.values, top.indices)):
            print(f'{args.images[start + i]}: {weights}, {size}')
            for p, c in zip(values.tolist(), indices.tolist()):
                label = names[c] if names[c] == descriptions[c] else f'{names[c]}  {descriptions[c]}'
                print(f'  {p:.4f}  {label}')
    return 0


# --- validate -----------------------------------------------------------------------------------------------------

class _FolderDataset(torch.utils.data.Dataset):
    """(image, target, error) triples: a file that cannot be read is reported, not silently skipped."""

    def __init__(self, samples: List[Tuple[str, int]], transform, input_size: Tuple[int, int, int]):
        self.samples = samples
        self.transform = transform
        self.input_size = input_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        try:
            return self.transform(_read_image(path)), target, ''
        except CliError as e:
            return torch.zeros(self.input_size), target, str(e)


def _class_map(classes: List[str], model: Any) -> Tuple[Dict[str, int], str]:
    """Folder class → model class index.

    Folders named after the model's classes (ImageNet synsets such as ``n01440764`` for an ImageNet head, or the
    label names a fine-tuned export carries) map by name, so any subset of the classes works. Otherwise the folders,
    in timm's natural sort order, are taken to be the model's classes in head order.
    """
    names, _ = _label_names(model)
    index = {name: i for i, name in enumerate(names)}
    if all(c in index for c in classes):
        return {c: index[c] for c in classes}, "folder names matched to the model's class names"
    if any(_IMAGENET_SYNSET.match(c) for c in classes):
        missing = [c for c in classes if c not in index]
        raise CliError(
            f'{len(missing)} class folder(s) look like ImageNet synsets but are not classes of this model (e.g. '
            f'{missing[0]}); use a model whose head has them, or name the folders 0..N-1 in head order')
    if len(classes) > model.num_classes:
        raise CliError(f'the folder has {len(classes)} classes but the model only {model.num_classes}; pass a '
                       'fine-tuned --checkpoint with a matching head')
    from timm.utils.misc import natural_key

    ordered = sorted(classes, key=natural_key)
    return {c: i for i, c in enumerate(ordered)}, 'folder order (natural sort) taken as the model\'s class order'


def _even_subset(n: int, limit: Optional[int]) -> List[int]:
    """``limit`` indices spread evenly over ``range(n)``: a sample of a class-sorted file list that spans all of it,
    not only its first classes."""
    if not limit or limit >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / max(limit - 1, 1)) for i in range(limit)})


def cmd_validate(args: argparse.Namespace) -> int:
    from timm.data.readers.reader_image_folder import find_images_and_targets

    _check_model_source(args)
    _check_at_least(1, batch_size=args.batch_size, limit=args.limit)
    _check_at_least(0, workers=args.workers)
    root = Path(args.folder)
    if not root.is_dir():
        raise CliError(f'no such folder: {root}', code=2)
    samples, class_to_idx = find_images_and_targets(str(root))
    if not samples:
        raise CliError(f'no images in {root}: validate expects one subfolder per class holding image files, '
                       f'{root}/<class>/<image>.jpg')
    if '' in class_to_idx:
        raise CliError(f'{root} has images directly inside it; validate expects them in one subfolder per class, '
                       f'{root}/<class>/<image>.jpg')
    model, weights = _load_runnable(args)
    mapping, how = _class_map(list(class_to_idx), model)
    folder_class = {i: c for c, i in class_to_idx.items()}
    samples = [(path, mapping[folder_class[target]]) for path, target in samples]
    samples = [samples[i] for i in _even_subset(len(samples), args.limit)]
    transform, config = _transform(model)
    loader = torch.utils.data.DataLoader(
        _FolderDataset(samples, transform, config['input_size']), batch_size=args.batch_size,
        num_workers=args.workers, shuffle=False)
    print(f'{weights} on {root}: {len(samples)} images, {len(class_to_idx)} classes ({how}); '
          f'input {config["input_size"][-1]} px, crop {config["crop_pct"]}', flush=True)

    from tqdm import tqdm

    k = min(5, model.num_classes)
    correct1 = correct5 = seen = 0
    with tqdm(total=len(samples), unit='img', file=sys.stderr, disable=args.quiet or None) as progress, \
            torch.inference_mode():
        for images, targets, errors in loader:
            bad = next((e for e in errors if e), None)
            if bad:
                raise CliError(bad)
            top = model(images.to(args.device)).topk(k, dim=-1).indices.cpu()
            hits = top == targets[:, None]
            correct1 += hits[:, 0].sum().item()
            correct5 += hits.any(dim=1).sum().item()
            seen += len(targets)
            progress.update(len(targets))
            progress.set_postfix(top1=f'{100 * correct1 / seen:.2f}', refresh=False)
    print(f'top-1 {100 * correct1 / seen:.2f}%  top-{k} {100 * correct5 / seen:.2f}%  '
          f'({correct1}/{seen} and {correct5}/{seen} correct)')
    return 0


# --- attention ----------------------------------------------------------------------------------------------------

def _parse_ints(text: str, what: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise CliError(f'{what} must be positive integers separated by commas, e.g. 128,224,320; got {text!r}', 2)
    return values


def _parse_figsize(text: str) -> Tuple[float, float]:
    try:
        width, height = (float(v) for v in text.split(','))
    except ValueError:
        width = height = 0.0
    if width <= 0 or height <= 0:
        raise CliError(f'--figsize is WIDTH,HEIGHT in inches, e.g. 10,6; got {text!r}', code=2)
    return width, height


def _window(kernel: int, dilation: int) -> str:
    size = dilation * (kernel - 1) + 1
    return f'{size}x{size}'


def attention_data(model: nn.Module, images: List[Tuple[str, Any]], scales: List[Optional[int]]) -> Dict[str, Any]:
    """Run every image at every scale through the model and gather its SE/SK weights.

    Args:
        model: Model in eval mode.
        images: ``(name, PIL image)`` pairs.
        scales: Square input sizes; None for the model's default size.

    Returns:
        ``inputs``: one ``{image, input_size}`` per image and scale, image-major; ``units``: the units, in depth
        order; ``attention``: per unit key, one weight list per input (``C`` for SE, ``M x C`` for SK);
        ``mean``: per unit key, per input, the mean over channels (SK: one value per path).
    """
    units = [u for u, _ in find_units(model)]
    per_scale = {}
    for scale in dict.fromkeys(scales):
        transform, config = _transform(model, scale)
        batch = torch.stack([transform(image) for _, image in images])
        device = next(model.parameters()).device
        with torch.inference_mode(), record(model) as rec:
            model(batch.to(device))
        per_scale[scale] = ({k: v.cpu() for k, v in rec.items()}, list(config['input_size']))
    inputs, attention, mean = [], {u.key: [] for u in units}, {u.key: [] for u in units}
    for i, (name, _) in enumerate(images):
        for scale in scales:
            weights, input_size = per_scale[scale]
            inputs.append({'image': name, 'input_size': input_size})
            for unit in units:
                w = weights[unit.key][i]
                attention[unit.key].append(w.tolist())
                mean[unit.key].append(w.mean(dim=-1).tolist())
    return {
        'inputs': inputs,
        'units': [{'key': u.key, 'kind': u.kind, 'module': u.module, 'block': u.block,
                   'paths': [list(p) for p in u.paths]} for u in units],
        'attention': attention,
        'mean': mean,
    }


def _plot_attention(data: Dict[str, Any], title: str, out: Path, figsize: Tuple[float, float], dpi: int) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise CliError("the plot needs matplotlib: pip install 'timm_sesk[plot]' (or matplotlib)") from e

    units = [AttentionUnit(u['key'], u['kind'], u['module'], u['block'], tuple(tuple(p) for p in u['paths']))
             for u in data['units']]
    sk = [u for u in units if u.kind == 'sk']
    se = [u for u in units if u.kind == 'se']
    labels = [f"{Path(i['image']).name} @ {i['input_size'][-1]}px" for i in data['inputs']]
    num_paths = sk[0].num_paths if sk else 0
    panels = num_paths + (2 if se else 0)
    # An explicit figure size and dpi, and no tight bounding box: the PNG is exactly figsize * dpi pixels.
    fig = Figure(figsize=figsize, dpi=dpi, layout='constrained')
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    fig.suptitle(title, fontsize=10)
    small = dict(fontsize=7)

    def depth_axis(ax, keys: List[str]) -> None:
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, rotation=45 if len(keys) > 8 else 0, ha='right' if len(keys) > 8 else 'center',
                           **small)
        ax.tick_params(axis='y', labelsize=7)
        ax.grid(alpha=0.3)

    keys = [u.key for u in sk]
    for m in range(num_paths):
        ax = axes[m]
        for i, label in enumerate(labels):
            ax.plot(range(len(keys)), [data['mean'][k][i][m] for k in keys], marker='o', markersize=3, label=label)
        ax.axhline(1 / num_paths, color='grey', linestyle=':', linewidth=1)
        kernel, dilation = sk[0].paths[m]
        ax.set_ylabel(f'path {m}: {kernel}x{kernel} d{dilation}\n({_window(kernel, dilation)} window)', **small)
        depth_axis(ax, keys)
    if sk:
        axes[0].set_title('SK: mean selection weight of each path per unit (over channels), input to output',
                          **small)
    if se:
        keys = [u.key for u in se]
        ax = axes[num_paths]
        for i, label in enumerate(labels):
            per_block = [torch.tensor(data['attention'][k][i]) for k in keys]
            low = [w.quantile(0.1).item() for w in per_block]
            high = [w.quantile(0.9).item() for w in per_block]
            line, = ax.plot(range(len(keys)), [data['mean'][k][i] for k in keys], marker='o', markersize=3,
                            label=label)
            ax.fill_between(range(len(keys)), low, high, color=line.get_color(), alpha=0.15)
        ax.set_title('SE: excitation per block, mean and 10-90th percentile over channels', **small)
        ax.set_ylabel('excitation', **small)
        depth_axis(ax, keys)
        ax = axes[num_paths + 1]
        for i, label in enumerate(labels):
            ax.plot(data['attention'][keys[-1]][i], linewidth=0.8, label=label)
        ax.set_title(f'SE: excitation of each channel in the last block, {keys[-1]} (cf. SENet Fig. 6)', **small)
        ax.set_xlabel('channel', **small)
        ax.set_ylabel('excitation', **small)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc='best')
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)


def cmd_attention(args: argparse.Namespace) -> int:
    arch = _check_model_name(args.model)
    scales = _parse_ints(args.scales, '--scales') if args.scales else [None]
    figsize = _parse_figsize(args.figsize) if args.figsize else (10.0, 6.0)
    _check_at_least(1, dpi=args.dpi)
    images = [(path, _read_image(path)) for path in args.images]
    model, weights = _load_model(args)
    if not find_units(model):
        raise CliError(f'{args.model} has no SE or SK unit to show (were they switched off by --model-kwarg?)')
    data = attention_data(model, images, scales)
    data = {'model': args.model, 'weights': weights, **data}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(data))
        print(f'wrote {args.json}')
    out = Path(args.out or f'attention_{arch.replace(":", "_").replace("/", "_")}.png')
    _plot_attention(data, args.title or f'{args.model} ({weights})', out, figsize, args.dpi)
    print(f'wrote {out}')
    return 0


# --- bench --------------------------------------------------------------------------------------------------------

def cmd_bench(argv: List[str]) -> int:
    """Forward to the repository's ``benchmarks/compare.py``, which ships with the source, not the package."""
    root = Path.cwd()
    if not (root / 'benchmarks' / 'compare.py').is_file():
        raise CliError(f'bench runs benchmarks/compare.py from a clone of the timm_sesk repository, and {root} is '
                       f'not one: cd into the clone and run `{PROG} bench` there', code=2)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import importlib

    compare = importlib.import_module('benchmarks.compare')
    argv0, sys.argv[0] = sys.argv[0], f'{PROG} bench'  # argparse names the program after sys.argv[0]
    try:
        return compare.main(argv)
    finally:
        sys.argv[0] = argv0


# --- export -------------------------------------------------------------------------------------------------------

def cmd_export(args: argparse.Namespace) -> int:
    _check_model_name(args.model)
    if args.checkpoint and args.no_pretrained:
        raise CliError('--checkpoint and --no-pretrained exclude each other; pass one', code=2)
    if args.int8_calibration and args.format != 'openvino':
        raise CliError('--int8-calibration quantizes OpenVINO IR: use it with --format openvino', code=2)
    model_args = _parse_kwargs(args.model_kwargs)
    if args.num_classes is not None:
        model_args['num_classes'] = args.num_classes
    label_names = Path(args.label_names).read_text().split() if args.label_names else None
    if args.format == 'hub':
        folder = _export_hub(args, model_args, label_names)
    else:
        folder = _export_deployed(args, model_args, label_names)
    print(f'wrote {folder}: ' + ', '.join(sorted(p.name for p in folder.iterdir())))
    return 0


def _export_hub(args: argparse.Namespace, model_args: Dict[str, Any], label_names: Optional[List[str]]) -> Path:
    """The Hub folder (timm_sesk.publish), plus the data config every export format carries; optionally pushed."""
    import tempfile

    from timm_sesk.publish import export_hub_folder, upload_hub_folder

    if args.push and not args.repo_id:
        raise CliError('--push needs --repo-id ORG/NAME', code=2)
    if args.checkpoint and not args.dataset:
        raise CliError('name the dataset the checkpoint was fine-tuned on with --dataset, for the model card', code=2)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, dataset = args.checkpoint, args.dataset
        if args.no_pretrained:  # publish exports a tag's weights or a checkpoint's: random ones go as a checkpoint
            model, _ = _build_model(args.model, None, True, model_args, kwarg_option='--model-kwargs')
            checkpoint, dataset = str(Path(tmp) / 'random.safetensors'), dataset or 'none (random weights)'
            safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, checkpoint)
        folder = export_hub_folder(
            args.model, args.out_dir, checkpoint=checkpoint, dataset=dataset, model_args=model_args,
            label_names=label_names, license=args.license, repo_id=args.repo_id)
    structure = timm.create_model(args.model, device='meta', **model_args)  # its data config, no weights
    deploy.write_data_config(structure, folder)
    if args.push:
        print(f'uploaded: {upload_hub_folder(folder, args.repo_id, private=args.private)}')
    return folder


def _export_deployed(args: argparse.Namespace, model_args: Dict[str, Any], label_names: Optional[List[str]]) -> Path:
    """ONNX or OpenVINO IR (timm_sesk.deploy), checked against PyTorch at export."""
    hub_only = [option for option, value in (
        ('--dataset', args.dataset), ('--license', args.license), ('--repo-id', args.repo_id), ('--push', args.push),
        ('--private', args.private)) if value]
    if hub_only:
        raise CliError(f'{", ".join(hub_only)}: only for --format hub (they go into its model card and upload)', 2)
    if args.int8_calibration and not Path(args.int8_calibration).is_dir():
        raise CliError(f'no such folder: {args.int8_calibration} (--int8-calibration takes a folder of images)', 2)
    _check_at_least(1, int8_samples=args.int8_samples)
    runtime = 'onnxruntime' if args.format == 'onnx' else 'openvino'
    deploy.require(runtime, f'--format {args.format}')  # before building the model and its minutes of export
    model, weights = _build_model(args.model, args.checkpoint, args.no_pretrained, model_args,
                                  kwarg_option='--model-kwargs')
    print(f'exporting {args.model} ({weights}) to {args.format}', flush=True)
    try:
        deploy.export(model, args.out_dir, args.format, label_names=label_names,
                      int8_calibration=args.int8_calibration, int8_samples=args.int8_samples)
    except deploy.ExportCheckError as e:
        raise CliError(str(e)) from e
    except ValueError as e:  # label names that do not fit the head, a calibration folder without images
        raise CliError(str(e), code=2) from e
    return Path(args.out_dir)


# --- parser -------------------------------------------------------------------------------------------------------

class _HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own, and keeps paragraphs with indented lines (the examples)
    as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split('\n\n'):
            if '\n ' in paragraph:
                paragraphs.append('\n'.join(indent + line for line in paragraph.splitlines()))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return '\n\n'.join(paragraphs)


def _model_options() -> argparse.ArgumentParser:
    """Options shared by the commands that run a model."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group('model')
    group.add_argument('--model', '-m', required=True,
                       help='zoo model, optionally with a pretrained tag (sk_resnet50, se_resnet50.a1_in1k), or '
                            'hf-hub:ORG/NAME for an exported model')
    # Not an argparse mutually exclusive group: copied through `parents`, it would leave the 'model' section.
    group.add_argument('--no-pretrained', action='store_true', help='random weights instead of the pretrained ones')
    group.add_argument('--checkpoint', metavar='FILE',
                         help='load this checkpoint instead (.safetensors or a PyTorch/timm state dict; read with '
                              'weights_only=True); the head size is taken from it')
    group.add_argument('--model-kwarg', action='append', default=[], metavar='KEY=VALUE',
                       help='extra create_model argument, repeatable (e.g. --model-kwarg se_position=post)')
    group.add_argument('--device', default='cpu', help='torch device (default: cpu)')
    return parent


def _runtime_options() -> argparse.ArgumentParser:
    """Options of the commands that can run an exported folder instead of a PyTorch model."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group('exported model (timm-sesk export --format onnx|openvino)')
    group.add_argument('--runtime', choices=deploy.RUNTIMES,
                       help='run the exported folder given as --model in this runtime instead of PyTorch, with the '
                            "same transforms and labels; onnxruntime reads --format onnx folders, openvino both")
    group.add_argument('--precision', choices=deploy.PRECISIONS, default='f32',
                       help='precision the runtime computes in (default: f32); bf16 needs --runtime openvino and a '
                            'CPU with AVX512_BF16 or AMX, else it is refused with the reason')
    group.add_argument('--threads', type=int, help="runtime CPU threads (default: the runtime's, one per core)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=lambda prog: _HelpFormatter(prog, max_help_position=16),
        description='Squeeze-and-Excitation and Selective-Kernel ResNets for timm. Without a command, lists the zoo '
                    'and runs a forward pass of every model.',
        epilog=f'Run `{PROG} COMMAND --help` for the options of a command. Pretrained weights download from the '
               'Hugging Face Hub (or their source URL) on first use and are cached.')
    parser.add_argument('--version', action='version', version=f'timm_sesk {timm_sesk.__version__}')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    model_options = _model_options()
    runtime_options = _runtime_options()
    formatter = _HelpFormatter

    p = commands.add_parser('list', help='the models of the zoo', description='List the models of the zoo.')
    p.add_argument('filter', nargs='?', default='', help='wildcard filter, e.g. "sk_*"')
    p.add_argument('--pretrained', action='store_true', help='only models with published pretrained weights')
    p.add_argument('--check', action='store_true', help='also build each model and run one forward pass')
    p.set_defaults(func=cmd_list)

    p = commands.add_parser(
        'info', help='one model: architecture, size, compute and pretrained weights', formatter_class=formatter,
        description='Describe one model: its family and paper, block layout, SE/SK settings, parameters, GMACs at '
                    'the default input size, the network it reproduces, and every pretrained tag with its source, '
                    'licence and the accuracy the source reports.',
        epilog=f'example:\n  {PROG} info sk_resnet50')
    p.add_argument('model', help='zoo model name, optionally with a tag (sk_resnet50, se_resnet50.a1_in1k)')
    p.set_defaults(func=cmd_info)

    p = commands.add_parser(
        'predict', parents=[model_options, runtime_options], help='top-k ImageNet labels of images',
        formatter_class=formatter,
        description="Classify images with timm's eval transform for the model (resize, center crop, normalise, "
                    'from its pretrained config) and print the top-k classes with their probabilities. Labels '
                    "are ImageNet's (synset and name) for a 1000-class head, or the class names an exported model "
                    'carries.',
        epilog=f'examples:\n  {PROG} predict -m sk_resnet50 cat.jpg dog.png\n'
               f'  {PROG} predict -m se_resnet50 --checkpoint model_best.pth.tar --topk 3 photo.jpg\n'
               f'  {PROG} predict -m out/sk50-ov --runtime openvino --precision bf16 cat.jpg')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files (anything PIL reads)')
    p.add_argument('--topk', '-k', type=int, default=5, help='classes to print per image (default: 5)')
    p.add_argument('--batch-size', '-b', type=int, default=16, help='images per forward pass (default: 16)')
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser(
        'validate', parents=[model_options, runtime_options], help='top-1 / top-5 accuracy on an image folder',
        formatter_class=formatter,
        description="Top-1 and top-5 accuracy on a folder of images, FOLDER/<class>/<image>, with timm's eval "
                    "transform for the model.\n\nHow folder classes map to the model's classes: folders named "
                    "after the model's classes map by name, so an ImageNet validation set (or any subset of it) "
                    'in synset folders (n01440764, ...) works with a 1000-class model, and so do folders named '
                    'after the label names of an exported fine-tuned model. Otherwise the folders, in natural sort '
                    "order (timm's ImageFolder order), are assumed to be the model's classes in head order, as for "
                    'a model fine-tuned with timm train.py on the same folder layout.',
        epilog=f'examples:\n  {PROG} validate -m sk_resnet50 /data/imagenet/val\n'
               f'  {PROG} validate -m se_resnet50 --checkpoint model_best.pth.tar /data/cifar10/test --limit 1000\n'
               f'  {PROG} validate -m out/sk50-ov --runtime openvino --precision bf16 /data/imagenet/val')
    p.add_argument('folder', metavar='FOLDER', help='folder with one subfolder of images per class')
    p.add_argument('--batch-size', '-b', type=int, default=32, help='batch size (default: 32)')
    p.add_argument('--workers', '-j', type=int, default=2, help='data loading worker processes (default: 2)')
    p.add_argument('--limit', type=int, metavar='N',
                   help='evaluate only N images, spread evenly over the sorted file list (so over the classes, not '
                        'just the first ones)')
    p.add_argument('--quiet', '-q', action='store_true', help='no progress bar')
    p.set_defaults(func=cmd_validate)

    p = commands.add_parser(
        'attention', parents=[model_options], help='plot the SE / SK attention of a model on images',
        formatter_class=formatter,
        description='Run images through the model and plot the attention its units apply, from '
                    'timm_sesk.attention.record.\n\nSK models: the mean selection weight of each path (kernel) in '
                    'every SK unit, input to output, one line per image and scale, as in the SKNet paper\'s '
                    'analysis (Fig. 3: larger objects shift weight towards the larger kernels). SE models: the '
                    'excitation of every block (mean and 10-90th percentile over channels) and of each channel of '
                    'the last block (cf. SENet Fig. 6).\n\nCompare several images, or one image at several input '
                    'sizes (--scales): each size uses the model\'s eval transform with that crop size.',
        epilog=f'examples:\n  {PROG} attention -m sk_resnet50 cat.jpg --scales 128,224,320 --out sk50.png\n'
               f'  {PROG} attention -m se_resnet50 cat.jpg dog.jpg --json se50.json')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files')
    p.add_argument('--out', '-o', metavar='FILE.png', help='PNG to write (default: attention_MODEL.png)')
    p.add_argument('--json', metavar='FILE', help="also write the plotted data and every unit's full weights as JSON")
    p.add_argument('--scales', metavar='S1,S2,...',
                   help="input sizes in pixels, e.g. 128,224,320 (default: the model's input size)")
    p.add_argument('--figsize', metavar='W,H', help='figure size in inches (default: 10,6)')
    p.add_argument('--dpi', type=int, default=100, help='pixels per inch; the PNG is W*dpi x H*dpi (default: 100)')
    p.add_argument('--title', help='figure title (default: the model and its weights)')
    p.set_defaults(func=cmd_attention)

    p = commands.add_parser(
        'export', help='write a Hub-ready folder, or ONNX / OpenVINO IR for CPU inference',
        formatter_class=formatter,
        description='--format hub (default): write model.safetensors, config.json and a README.md model card for a '
                    'model, from its pretrained tag or a fine-tuned checkpoint. After `import timm_sesk`, '
                    "timm.create_model('hf-hub:ORG/NAME', pretrained=True) loads the uploaded folder.\n\n"
                    '--format onnx writes model.onnx (opset 18, dynamic batch, input "input", output "logits"), '
                    '--format openvino model.xml and model.bin (OpenVINO IR), both of the model after '
                    'timm_sesk.fuse. Their folder also holds deploy.json with the check run at export (maximum '
                    'relative error of the runtime against PyTorch on a random batch; the export fails above 1e-4) '
                    "and every format's folder data_config.json, the preprocessing the model expects. Run them "
                    f'with `{PROG} predict/validate -m FOLDER --runtime onnxruntime|openvino`.',
        epilog=f'examples:\n  {PROG} export sk_resnet50.ra_in1k out/sk50\n'
               f'  {PROG} export sk_resnet50 out/sk50-ov --format openvino\n'
               f'  {PROG} export sk_resnet18 out/sk18-int8 --format openvino --checkpoint model_best.pth.tar '
               '--int8-calibration data/train')
    p.add_argument('model', help='model name, optionally with a pretrained tag, e.g. sk_resnet50.ra_in1k')
    p.add_argument('out_dir', help='folder to write')
    p.add_argument('--format', choices=('hub', *deploy.FORMATS), default='hub',
                   help='hub (default): Hub-ready folder; onnx: model.onnx; openvino: OpenVINO IR')
    p.add_argument('--checkpoint', help='fine-tuned weights (.safetensors, or a timm/PyTorch checkpoint)')
    p.add_argument('--no-pretrained', action='store_true', help='export random weights')
    p.add_argument('--dataset', help='hub: dataset the checkpoint was fine-tuned on (required with --checkpoint)')
    p.add_argument('--num-classes', type=int, help="classes of the checkpoint's head")
    p.add_argument('--model-kwargs', nargs='*', default=[], metavar='KEY=VALUE',
                   help='other create_model arguments the checkpoint needs, e.g. se_position=post')
    p.add_argument('--label-names', help='text file with one class name per line, in head order')
    p.add_argument('--license', help="licence of the exported weights (default: the pretrained tag's)")
    p.add_argument('--repo-id', help='Hub repository, ORG/NAME (used in the card, and by --push)')
    p.add_argument('--push', action='store_true', help='upload the folder to --repo-id with huggingface_hub')
    p.add_argument('--private', action='store_true', help='create the repository as private (with --push)')
    p.add_argument('--int8-calibration', metavar='FOLDER',
                   help='openvino: quantize to int8 with NNCF, calibrated on images of this folder (take the '
                        'training split; check top-1 on your validation split with validate --runtime openvino)')
    p.add_argument('--int8-samples', type=int, default=300, metavar='N',
                   help='calibration images, spread evenly over the folder (default: 300)')
    p.set_defaults(func=cmd_export)

    # `bench` hands its whole command line to benchmarks/compare.py (see main), its --help included.
    commands.add_parser(
        'bench', add_help=False, help='throughput/memory against timm (benchmarks/compare.py; from a repo clone)',
        description='Forwards every argument to benchmarks/compare.py; `timm-sesk bench --help` shows its options.')
    return parser


def _error(message: str) -> None:
    print(f'{PROG}: error: {message}', file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ['bench']:
            return cmd_bench(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(['list', '--check'])
        return args.func(args)
    except CliError as e:
        _error(str(e))
        return e.code
    except PretrainedWeightsError as e:
        _error(f'{e} {_WEIGHTS_HINT}')
        return 1
    except deploy.MissingExtraError as e:
        _error(str(e))
        return 1
    except BrokenPipeError:
        # The reader went away (`timm-sesk list | head -1`). Point stdout at devnull so that the interpreter's final
        # flush does not report the broken pipe again, and stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return 130

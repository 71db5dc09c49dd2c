"""What predict and validate share: the model made ready to classify (fused, channels_last, at its input size) with
its transform, an exported folder run in its runtime instead (``--runtime``), and their JSON results (``--json``,
``--results-file``)."""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from timm_sesk import deploy
from timm_sesk.data import eval_transform
from timm_sesk.fuse import fuse
from timm_sesk.models import SeskResNet
from timm_sesk.zoo import min_input_size

from .errors import EXIT_USAGE, CliError
from .options import check_at_least, check_model_name, check_output_file, label_names_option, load_model
from .text import terminal_text

__all__ = ['Classifier', 'check_model_source', 'check_results_file', 'load_classifier', 'plural', 'runtime_options',
           'skipped_line', 'write_results']


class Classifier:
    """A model as predict and validate run it: images through its eval transform, a batch in, float logits out.

    Attributes:
        model: The PyTorch model (fused and channels_last unless ``--no-fuse``) or the exported one.
        weights: A description of its weights.
        untrained: What of it is untrained (``random weights``, ``a random head (10 classes)``), None where nothing.
        label_names: Its class names given with ``--label-names``, else None.
        transform: timm's eval transform for it, at ``--img-size`` if given.
        config: The data config of that transform.
        param_count: Parameters of the PyTorch model as built (before fusion); None for an exported one.
    """

    def __init__(self, model: Any, weights: str, device: str, channels_last: bool, img_size: Optional[int],
                 param_count: Optional[int] = None, untrained: Optional[str] = None,
                 label_names: Optional[List[str]] = None):
        self.param_count = param_count
        self.model = model
        self.weights = weights
        self.untrained = untrained
        self.label_names = label_names
        self.device = device
        self.channels_last = channels_last
        self.transform, self.config = eval_transform(model, img_size)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(images).float().cpu()

    def data_fields(self) -> Dict[str, Any]:
        """The input's fields of a result, named as timm's validate.py names them."""
        return dict(img_size=self.config['input_size'][-1], crop_pct=self.config['crop_pct'],
                    interpolation=self.config['interpolation'])


def runtime_options() -> argparse.ArgumentParser:
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


def check_model_source(args: argparse.Namespace) -> None:
    """Fail early on a bad ``--model``: a zoo name, or with ``--runtime`` an exported folder."""
    if not args.runtime:
        check_model_name(args.model)
        return
    given = [option for option, value in (('--checkpoint', args.checkpoint), ('--no-pretrained', args.no_pretrained),
                                          ('--num-classes', args.num_classes), ('--model-kwarg', args.model_kwarg),
                                          ('--ema/--no-ema', args.ema is not None),
                                          ('--no-fuse', getattr(args, 'no_fuse', False))) if value]
    if given:
        raise CliError(f'{" and ".join(given)} do not apply with --runtime: the model and its weights are those '
                       f'exported into {args.model}', code=2)
    if args.device != 'cpu':
        raise CliError(f'--runtime {args.runtime} runs on the CPU; drop --device {args.device}', code=2)
    check_at_least(1, threads=args.threads)
    try:
        deploy.read_meta(args.model)
    except ValueError as e:
        raise CliError(str(e), code=2) from e


def _load_runnable(args: argparse.Namespace) -> Tuple[Any, str, Optional[str]]:
    """The PyTorch model, or with ``--runtime`` the exported folder in that runtime (called alike: a float batch
    in, logits out, with the same ``num_classes`` and ``pretrained_cfg``); a description of its weights; and what of
    them is untrained, None where nothing is known to be."""
    if not args.runtime:
        model, report = load_model(args)
        untrained = 'random weights' if report.source == 'random weights' else \
            f'a random head ({report.random_head} classes)' if report.random_head else None
        return model, str(report), untrained
    try:
        model = deploy.load(args.model, args.runtime, args.precision, threads=args.threads)
    except ValueError as e:  # a precision the runtime or the CPU lacks, IR for ONNX Runtime
        raise CliError(str(e), code=2) from e
    return model, model.describe(), None


def load_classifier(args: argparse.Namespace) -> Classifier:
    """The model of ``args`` (PyTorch, or an exported folder with ``--runtime``) ready to classify images: for
    PyTorch, its BatchNorms folded into the convolutions (``timm_sesk.fuse``, the same function) and channels_last
    memory, unless ``--no-fuse``; with the names of ``--label-names``, as many as its classes."""
    check_at_least(1, img_size=args.img_size)
    label_names_option(args.label_names)  # a missing or empty file, before the model is built
    model, weights, untrained = _load_runnable(args)
    names = label_names_option(args.label_names, model.num_classes)
    if not isinstance(model, nn.Module):  # an exported folder in its runtime
        return Classifier(model, weights, 'cpu', False, args.img_size, untrained=untrained, label_names=names)
    smallest = min_input_size(model)
    if args.img_size is not None and args.img_size < smallest:
        raise CliError(f'--img-size {args.img_size}: {args.model} takes inputs of at least {smallest}x{smallest} px',
                       code=EXIT_USAGE)
    param_count = sum(p.numel() for p in model.parameters())  # as built: fusion removes the BatchNorms'
    fused = not args.no_fuse
    if fused:
        if isinstance(model, SeskResNet):  # fuse knows our blocks; other Hub models run as built
            fuse(model)
        model = model.to(memory_format=torch.channels_last)
    return Classifier(model, weights, args.device, fused, args.img_size, param_count, untrained, names)


def plural(n: int, word: str) -> str:
    return f'{n} {word}' + ('' if n == 1 else 's')


def skipped_line(skipped: List[str]) -> str:
    """``skipped 2 unreadable files: a.jpg, b.jpg`` (three named, then a count)."""
    more = f' and {len(skipped) - 3} more' if len(skipped) > 3 else ''
    return terminal_text(f'skipped {plural(len(skipped), "unreadable file")}: {", ".join(skipped[:3])}{more}')


def check_results_file(args: argparse.Namespace) -> None:
    """Refuse a ``--results-file`` that cannot be written, before any work."""
    if args.results_file:
        check_output_file(Path(args.results_file), '--results-file')


def write_results(args: argparse.Namespace, results: Dict[str, Any], text: Callable[[], None]) -> None:
    """Print the results as ``text()`` prints them, or as JSON with ``--json``; and write them to
    ``--results-file``."""
    encoded = json.dumps(results, indent=2)
    if args.json:
        print(encoded)
    else:
        text()
    if args.results_file:
        path = Path(args.results_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(encoded + '\n')
        print(terminal_text(f'wrote {path}'), file=sys.stderr if args.json else sys.stdout)

"""What predict and validate share: the model made ready to classify (fused, channels_last, at its input size) with
its transform, and their JSON results (``--json``, ``--results-file``)."""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
from torch import nn

from timm_sesk.data import eval_transform
from timm_sesk.zoo import min_input_size

from .errors import EXIT_USAGE, CliError
from .loading import for_inference
from .options import check_at_least, check_output_file, load_runnable

__all__ = ['Classifier', 'check_results_file', 'load_classifier', 'write_results']


class Classifier:
    """A model as predict and validate run it: images through its eval transform, a batch in, float logits out.

    Attributes:
        model: The PyTorch model (fused and channels_last unless ``--no-fuse``) or the exported one.
        weights: A description of its weights.
        transform: timm's eval transform for it, at ``--img-size`` if given.
        config: The data config of that transform.
        param_count: Parameters of the PyTorch model as built (before fusion); None for an exported one.
    """

    def __init__(self, model: Any, weights: str, device: str, channels_last: bool, img_size: Optional[int],
                 param_count: Optional[int] = None):
        self.param_count = param_count
        self.model = model
        self.weights = weights
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


def load_classifier(args: argparse.Namespace) -> Classifier:
    """The model of ``args`` (PyTorch, or an exported folder with ``--runtime``) ready to classify images."""
    check_at_least(1, img_size=args.img_size)
    model, weights = load_runnable(args)
    if not isinstance(model, nn.Module):  # an exported folder in its runtime
        return Classifier(model, weights, 'cpu', False, args.img_size)
    smallest = min_input_size(model)
    if args.img_size is not None and args.img_size < smallest:
        raise CliError(f'--img-size {args.img_size}: {args.model} takes inputs of at least {smallest}x{smallest} px',
                       code=EXIT_USAGE)
    param_count = sum(p.numel() for p in model.parameters())  # as built: fusion removes the BatchNorms'
    fused = not args.no_fuse
    return Classifier(for_inference(model, fused), weights, args.device, fused, args.img_size, param_count)


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
        print(f'wrote {path}', file=sys.stderr if args.json else sys.stdout)

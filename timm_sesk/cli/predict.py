"""``timm-sesk predict``: the top-k classes of image files, from a zoo model or an exported one."""
import argparse
from typing import Any, Dict, List, Tuple

import torch

from timm_sesk.data import ImageReadError, label_names, read_image

from .errors import PROG, CliError
from .inference import (
    check_model_source,
    check_results_file,
    load_classifier,
    runtime_options,
    skipped_line,
    write_results,
)
from .options import HelpFormatter, check_at_least, eval_options, model_options
from .text import terminal_text

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = commands.add_parser(
        name, parents=[model_options(), runtime_options(), eval_options()], help=summary, formatter_class=HelpFormatter,
        description="Classify images with timm's eval transform for the model (resize, center crop, normalise, "
                    "from its pretrained config, or a train.py checkpoint's training size) and print the top-k "
                    "classes with their probabilities. Labels are those of --label-names, else ImageNet's (synset "
                    'and name) for a 1000-class head, or the class names an exported model carries, else class '
                    'indices. -m also takes a model folder written by `export --format hub` (its own input size, '
                    'preprocessing and labels).',
        epilog=f'examples:\n  {PROG} predict -m sk_resnet50 cat.jpg dog.png\n'
               f'  {PROG} predict -m se_resnet50 --checkpoint model_best.pth.tar --topk 3 photo.jpg\n'
               f'  {PROG} predict -m sk_resnet18 --json cat.jpg > predictions.json\n'
               f'  {PROG} predict -m out/sk18-cifar --skip-unreadable photos/*.jpg\n'
               f'  {PROG} predict -m out/sk50-ov --runtime openvino --precision bf16 cat.jpg')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files (anything PIL reads)')
    p.add_argument('--topk', '-k', type=int, default=5, help='classes to print per image (default: 5)')
    p.add_argument('--batch-size', '-b', type=int, default=16, help='images per forward pass (default: 16)')
    p.set_defaults(func=run)


def _read_images(args: argparse.Namespace) -> Tuple[List[Tuple[str, Any]], List[str]]:
    """The images that can be read, with their paths, and those skipped (with ``--skip-unreadable``; else the first
    that cannot be read stops the command)."""
    images, skipped = [], []
    for path in args.images:
        try:
            images.append((path, read_image(path)))
        except ImageReadError:
            if not args.skip_unreadable:
                raise
            skipped.append(path)
    if not images:
        raise CliError(f'none of the {len(args.images)} images could be read')
    return images, skipped


def run(args: argparse.Namespace) -> int:
    check_model_source(args)
    check_at_least(1, topk=args.topk, batch_size=args.batch_size)
    check_results_file(args)
    images, skipped = _read_images(args)  # fail on a bad file before loading any weights
    classifier = load_classifier(args)
    names, descriptions = label_names(classifier.model, classifier.label_names)
    k = min(args.topk, classifier.num_classes)
    predictions: List[Dict[str, Any]] = []
    for start in range(0, len(images), args.batch_size):
        chunk = images[start:start + args.batch_size]
        top = classifier(torch.stack([classifier.transform(image) for _, image in chunk])).softmax(dim=-1).topk(k)
        for (path, _), values, indices in zip(chunk, top.values.tolist(), top.indices.tolist()):
            predictions.append(dict(image=path, top=[
                dict(index=c, label=names[c], description=descriptions[c], probability=round(p, 6))
                for p, c in zip(values, indices)]))
    size = 'x'.join(str(s) for s in classifier.config['input_size'][1:])

    def text() -> None:
        for prediction in predictions:
            print(terminal_text(f"{prediction['image']}: {classifier.weights}, {size}"))
            for item in prediction['top']:
                label = item['label'] if item['label'] == item['description'] else \
                    f"{item['label']}  {item['description']}"
                print(terminal_text(f"  {item['probability']:.4f}  {label}"))  # label names from a repository
        if skipped:
            print(skipped_line(skipped))

    results = dict(model=args.model, weights=classifier.weights, **classifier.data_fields(), topk=k,
                   predictions=predictions, skipped=skipped)
    write_results(args, results, text)
    return 0

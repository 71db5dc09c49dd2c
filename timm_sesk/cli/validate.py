"""``timm-sesk validate``: top-1 / top-5 accuracy on an image folder, one subfolder per class."""
import argparse
import sys
import time
from pathlib import Path
from typing import List, Tuple

import torch

from timm_sesk.data import FolderDataset, ImageFolder, class_mapping, even_indices, image_folder, model_class_names

from .errors import EXIT_USAGE, PROG, CliError
from .inference import (
    Classifier,
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

# Without a terminal (a log, CI), progress is a line on stderr this often, in seconds; the first after one batch.
PROGRESS_EVERY_S = 30.0


def add_parser(commands: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = commands.add_parser(
        name, parents=[model_options(), runtime_options(), eval_options()], help=summary, formatter_class=HelpFormatter,
        description="Top-1 and top-5 accuracy on a folder of images, FOLDER/<class>/<image>, with timm's eval "
                    "transform for the model.\n\nThe folder is read as timm's validate.py reads it: a dataset root "
                    'holding split folders (train/, validation/, as train.py takes it) is read at its --split, '
                    'validation by default (or val, valid, eval, evaluation); a folder holding no such split is '
                    'read itself. Images in deeper folders, split folders that were not chosen, and images beside '
                    'the class folders are refused, naming the folder: timm would take the innermost folder name as '
                    'the class. Empty class folders are named.\n\nHow folder classes map to the model\'s '
                    "classes: by name where the model's classes have names (an ImageNet head's synsets, an exported "
                    'fine-tune\'s label names, or --label-names), so any subset of them works; a folder named '
                    'after none of them stops the run, naming it. A model that records no class names (a timm '
                    'train.py checkpoint) takes the folders, in natural sort order, as its classes in head order, as '
                    "train.py assigned them; --folder-order asks for that order for any model. A model whose head "
                    'is untrained (--no-pretrained, or --num-classes replacing a pretrained head) is refused: its '
                    'accuracy is chance.\n\nAn image that cannot be read stops the run with its name, unless '
                    '--skip-unreadable.',
        epilog=f'examples:\n  {PROG} validate -m sk_resnet50 /data/imagenet/val\n'
               f'  {PROG} validate -m se_resnet50 --checkpoint model_best.pth.tar /data/my-dataset --limit 1000\n'
               f'  {PROG} validate -m out/se50-cifar /data/cifar10 --split test\n'
               f'  {PROG} validate -m sk_resnet18 /data/imagenet/val --json > results.json\n'
               f'  {PROG} validate -m out/sk50-ov --runtime openvino --precision bf16 /data/imagenet/val')
    p.add_argument('folder', metavar='FOLDER', help='folder with one subfolder of images per class, or a dataset '
                                                    'root holding split folders')
    p.add_argument('--split', metavar='NAME',
                   help="the split folder of FOLDER to read, as timm's validate.py (default: validation, or val, "
                        'valid, eval, evaluation, where FOLDER holds one; else FOLDER itself)')
    p.add_argument('--folder-order', action='store_true',
                   help="take the class folders, in natural sort order, as the model's classes in head order, even "
                        'where the model names its classes')
    p.add_argument('--batch-size', '-b', type=int, default=32, help='batch size (default: 32)')
    p.add_argument('--workers', '-j', type=int, default=2, help='data loading worker processes (default: 2)')
    p.add_argument('--limit', type=int, metavar='N',
                   help='evaluate only N images, spread evenly over the sorted file list (so over the classes, not '
                        'just the first ones)')
    p.add_argument('--quiet', '-q', action='store_true', help='no progress bar or progress lines')
    p.set_defaults(func=run)


def _folder(args: argparse.Namespace) -> ImageFolder:
    """The image folder to read, at its split, checked before any model is built."""
    root = Path(args.folder)
    if not root.is_dir():
        raise CliError(f'no such folder: {root}' if not root.exists() else f'{root} is a file; FOLDER holds one '
                       f'subfolder of images per class, {root}/<class>/<image>.jpg', code=2)
    return image_folder(root, args.split)


def run(args: argparse.Namespace) -> int:
    check_model_source(args)
    check_at_least(1, batch_size=args.batch_size, limit=args.limit)
    check_at_least(0, workers=args.workers)
    check_results_file(args)
    folder = _folder(args)
    classifier = load_classifier(args)
    names = classifier.label_names or model_class_names(classifier.model)
    mapping, how = class_mapping(folder.classes, names, classifier.num_classes, folder.empty, args.folder_order)
    if classifier.untrained:
        which = '' if classifier.weights == classifier.untrained else f'{classifier.weights}: '
        raise CliError(f'{which}the accuracy of {classifier.untrained} is chance, not a measure of the model; '
                       'validate trained weights (a fine-tune with --checkpoint FILE, or its exported folder)',
                       code=EXIT_USAGE)
    samples = [(path, mapping[folder.classes[target]]) for path, target in
               (folder.samples[i] for i in even_indices(len(folder.samples), args.limit))]
    config = classifier.config
    # With --json, stdout holds the JSON only: the header goes where the progress goes.
    print(terminal_text(f'{classifier.weights} on {folder.root}: {len(samples)} images, {len(folder.classes)} '
                        f'classes ({how}); input {config["input_size"][-1]} px, crop {config["crop_pct"]}'), flush=True,
          file=sys.stderr if args.json else sys.stdout)
    k = min(5, classifier.num_classes)
    correct1, correct5, seen, skipped = _evaluate(args, classifier, samples, k)
    if not seen:
        raise CliError(f'none of the {len(samples)} images in {folder.root} could be read')
    top1, top5 = 100 * correct1 / seen, 100 * correct5 / seen

    def text() -> None:
        if skipped:
            print(skipped_line(skipped))
        print(f'top-1 {top1:.2f}%  top-{k} {top5:.2f}%  ({correct1}/{seen} and {correct5}/{seen} correct)')

    # timm's validate.py result keys first (its top5 is also top-k for fewer than 5 classes), then ours.
    params = classifier.param_count
    results = dict(
        model=args.model, top1=round(top1, 4), top1_err=round(100 - top1, 4), top5=round(top5, 4),
        top5_err=round(100 - top5, 4), param_count=round(params / 1e6, 2) if params is not None else None,
        **classifier.data_fields(), weights=classifier.weights, folder=str(folder.root), images=seen,
        classes=len(folder.classes), class_mapping=how, empty_class_folders=folder.empty, correct1=correct1,
        correct5=correct5, topk=k, skipped=skipped)
    write_results(args, results, text)
    return 0


def _evaluate(args: argparse.Namespace, classifier: Classifier, samples: List[Tuple[str, int]],
              k: int) -> Tuple[int, int, int, List[str]]:
    """Top-1 and top-k hits over the samples; returns them, the images scored and the files skipped."""
    from tqdm import tqdm

    loader = torch.utils.data.DataLoader(
        FolderDataset(samples, classifier.transform, classifier.config['input_size']), batch_size=args.batch_size,
        num_workers=args.workers, shuffle=False)
    terminal = sys.stderr.isatty()
    correct1 = correct5 = seen = done = 0
    skipped: List[str] = []
    last_report = None
    with tqdm(total=len(samples), unit='img', file=sys.stderr, disable=args.quiet or not terminal) as progress:
        for images, targets, errors in loader:
            readable = torch.tensor([not e for e in errors])
            if not readable.all():
                if not args.skip_unreadable:
                    raise CliError(f'{next(e for e in errors if e)}; --skip-unreadable skips such files')
                skipped += [samples[done + i][0] for i, e in enumerate(errors) if e]
            done += len(targets)
            images, targets = images[readable], targets[readable]
            if len(targets):
                hits = classifier(images).topk(k, dim=-1).indices == targets[:, None]
                correct1 += hits[:, 0].sum().item()
                correct5 += hits.any(dim=1).sum().item()
                seen += len(targets)
            progress.update(len(errors))
            if seen:
                progress.set_postfix(top1=f'{100 * correct1 / seen:.2f}', refresh=False)
            if not (terminal or args.quiet) and (last_report is None or time.monotonic() - last_report
                                                 >= PROGRESS_EVERY_S or done == len(samples)):
                last_report = time.monotonic()
                accuracy = f', top-1 so far {100 * correct1 / seen:.2f}%' if seen else ''
                print(f'{PROG} validate: {done}/{len(samples)} images{accuracy}', file=sys.stderr, flush=True)
    return correct1, correct5, seen, skipped

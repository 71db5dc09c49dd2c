"""``timm-sesk validate``: top-1 / top-5 accuracy on an image folder, one subfolder per class."""
import argparse
import sys
from pathlib import Path

import torch

from timm_sesk.data import FolderDataset, class_mapping, eval_transform, even_indices

from .errors import PROG, CliError
from .options import HelpFormatter, check_at_least, check_model_source, load_runnable

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, **parents: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        'validate', parents=[parents['model'], parents['runtime']], help='top-1 / top-5 accuracy on an image folder',
        formatter_class=HelpFormatter,
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from timm.data.readers.reader_image_folder import find_images_and_targets

    check_model_source(args)
    check_at_least(1, batch_size=args.batch_size, limit=args.limit)
    check_at_least(0, workers=args.workers)
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
    model, weights = load_runnable(args)
    mapping, how = class_mapping(list(class_to_idx), model)
    folder_class = {i: c for c, i in class_to_idx.items()}
    samples = [(path, mapping[folder_class[target]]) for path, target in samples]
    samples = [samples[i] for i in even_indices(len(samples), args.limit)]
    transform, config = eval_transform(model)
    loader = torch.utils.data.DataLoader(
        FolderDataset(samples, transform, config['input_size']), batch_size=args.batch_size,
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

"""``timm-sesk predict``: the top-k classes of image files, from a zoo model or an exported one."""
import argparse

import torch

from timm_sesk.data import eval_transform, label_names, read_image

from .errors import PROG
from .options import HelpFormatter, check_at_least, check_model_source, load_runnable

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, **parents: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        'predict', parents=[parents['model'], parents['runtime']], help='top-k ImageNet labels of images',
        formatter_class=HelpFormatter,
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_model_source(args)
    check_at_least(1, topk=args.topk, batch_size=args.batch_size)
    images = [read_image(path) for path in args.images]  # fail on a bad file before loading any weights
    model, weights = load_runnable(args)
    transform, config = eval_transform(model)
    names, descriptions = label_names(model)
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

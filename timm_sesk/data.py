"""Images in, the model's classes out: reading files, timm's eval transform, label names and image folders.

What ``timm-sesk predict`` and ``validate`` (and the exported runtimes) need around a model, on top of timm's data
config and transforms: errors that name the file, and the mapping of an image folder's class subfolders onto the
model's head.
"""
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

__all__ = [
    'ClassMappingError',
    'FolderDataset',
    'ImageNotFoundError',
    'ImageReadError',
    'class_mapping',
    'eval_transform',
    'even_indices',
    'image_files',
    'label_names',
    'read_image',
    'read_label_names',
]

_IMAGENET_SYNSET = re.compile(r'^n\d{8}$')


class ImageReadError(ValueError):
    """An image file cannot be decoded."""


class ImageNotFoundError(ImageReadError):
    """An image file does not exist."""


class ClassMappingError(ValueError):
    """An image folder's classes cannot be mapped onto the model's head."""


def read_image(path: Union[str, Path]):
    """The image at ``path`` as an RGB ``PIL.Image``; ``ImageReadError`` naming the file if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise ImageNotFoundError(f'no such image file: {path}')
    try:
        with Image.open(path) as image:
            return image.convert('RGB')
    except (UnidentifiedImageError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else ''
        raise ImageReadError(f'cannot read image {path} ({type(e).__name__}: {reason}); pass a JPEG, PNG or other '
                             'image file PIL can decode') from e


def eval_transform(model: Any, size: Optional[int] = None) -> Tuple[Callable, Dict[str, Any]]:
    """timm's eval transform for the model (its pretrained cfg's resize, crop and normalisation) and its data config,
    optionally at another square input size with the same crop fraction."""
    from timm.data import create_transform, resolve_model_data_config

    config = resolve_model_data_config(model)
    if size is not None:
        config['input_size'] = (config['input_size'][0], size, size)
    return create_transform(**config), config


def label_names(model: Any) -> Tuple[List[str], List[str]]:
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


def class_mapping(classes: List[str], model: Any) -> Tuple[Dict[str, int], str]:
    """Folder class → model class index, and how it was decided.

    Folders named after the model's classes (ImageNet synsets such as ``n01440764`` for an ImageNet head, or the
    label names a fine-tuned export carries) map by name, so any subset of the classes works. Otherwise, where there
    are as many folders as the head has classes (a model fine-tuned on this folder layout), the folders in timm's
    natural sort order are taken to be the model's classes in head order. Anything else is refused: its accuracy
    would be meaningless.

    Raises:
        ClassMappingError: The folders are neither the model's class names nor as many as its classes.
    """
    names, _ = label_names(model)
    index = {name: i for i, name in enumerate(names)}
    if all(c in index for c in classes):
        return {c: index[c] for c in classes}, "folder names matched to the model's class names"
    missing = [c for c in classes if c not in index]
    if any(_IMAGENET_SYNSET.match(c) for c in classes):
        raise ClassMappingError(
            f'{len(missing)} class folder(s) look like ImageNet synsets but are not classes of this model (e.g. '
            f'{missing[0]}); use a model whose head has them, or name the folders 0..N-1 in head order')
    if len(classes) != model.num_classes:
        examples = ', '.join(missing[:3]) + (', ...' if len(missing) > 3 else '')
        raise ClassMappingError(
            f'the {len(classes)} class folders ({examples}) are not named after the model\'s classes, and its head '
            f'has {model.num_classes} classes, not {len(classes)}, so they cannot be its classes in head order '
            '(as for a model fine-tuned on these folders)')
    from timm.utils.misc import natural_key

    ordered = sorted(classes, key=natural_key)
    return {c: i for i, c in enumerate(ordered)}, "folder order (natural sort) taken as the model's class order"


def read_label_names(path: Union[str, Path]) -> List[str]:
    """Class names from a text file, one per line (a name may hold spaces; blank lines are skipped).

    Raises:
        FileNotFoundError: There is no such file.
    """
    text = Path(path).read_text(encoding='utf-8')
    return [line.strip() for line in text.splitlines() if line.strip()]


def image_files(folder: Union[str, Path]) -> List[str]:
    """Every image under ``folder`` (in class subfolders or not), sorted as timm's ImageFolder sorts them."""
    from timm.data.readers.reader_image_folder import find_images_and_targets

    samples, _ = find_images_and_targets(str(folder))
    if not samples:
        raise ImageReadError(f'no images in {folder}')
    return [path for path, _ in samples]


def even_indices(n: int, count: Optional[int]) -> List[int]:
    """``count`` indices spread evenly over ``range(n)``, first and last included: a sample of a class-sorted file
    list that spans all of it, not only its first classes. All of them for ``count`` None or at least ``n``."""
    if not count or count >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / max(count - 1, 1)) for i in range(count)})


class FolderDataset(torch.utils.data.Dataset):
    """(image, target, error) triples: a file that cannot be read is reported by its error message, not skipped
    silently, so that the caller decides (in a worker process an exception would lose the file's name)."""

    def __init__(self, samples: List[Tuple[str, int]], transform: Callable, input_size: Tuple[int, int, int]):
        self.samples = samples
        self.transform = transform
        self.input_size = input_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int, str]:
        path, target = self.samples[index]
        try:
            return self.transform(read_image(path)), target, ''
        except ImageReadError as e:
            return torch.zeros(self.input_size), target, str(e)

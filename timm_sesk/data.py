"""Images in, the model's classes out: reading files, timm's eval transform, label names and image folders.

What ``timm-sesk predict`` and ``validate`` (and the exported runtimes) need around a model, on top of timm's data
config and transforms: images read as a viewer shows them, errors that name the file, and the mapping of an image
folder's class subfolders onto the model's head.
"""
import contextlib
import re
import struct
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from timm_sesk.errors import ClassMappingError, ImageNotFoundError, ImageReadError

__all__ = [
    'MAX_ASPECT_RATIO',
    'ClassMappingError',
    'FolderDataset',
    'ImageNotFoundError',
    'ImageReadError',
    'class_mapping',
    'eval_transform',
    'even_indices',
    'image_files',
    'image_folder',
    'label_names',
    'read_image',
    'read_label_names',
]

_IMAGENET_SYNSET = re.compile(r'^n\d{8}$')


# The longer side of an image may be at most this many times its shorter side. timm's eval transform resizes the
# shorter side to the input size (over the crop fraction), so its resized image holds aspect-ratio times the pixels
# of a square one: the bound caps that at 100 square images, whatever the input size, where a 199-byte 40000 x 1 PNG
# would otherwise need 7.9 GB at 224 px. Photos (4:3, 16:9) and panoramas (2:1 to about 10:1) are far below it.
MAX_ASPECT_RATIO = 100


def read_image(path: Union[str, Path]):
    """The image at ``path`` as a viewer shows it, as an 8-bit RGB ``PIL.Image``.

    Beyond timm's ``Image.open(path).convert('RGB')``, which gives the same pixels for an 8-bit image without an EXIF
    orientation: the image is turned upright as its EXIF orientation says (``ImageOps.exif_transpose``), and samples
    of more than 8 bits are scaled to 8 bits where ``convert`` would clip them (a 16-bit PNG would read all white, a
    float TIFF all black): 16-bit samples keep their high byte, as PIL itself reads a 48-bit RGB PNG (and as
    scikit-image and torchvision convert 16 to 8 bits); float samples in [0, 1] are multiplied by 255 and rounded.
    Images whose white level is unclear are refused: float samples outside [0, 1], and 32-bit integer samples (a
    TIFF's; PIL's 32-bit reading of a 16-bit PGM or PPM, which it scales to 16 bits, is read as 16-bit).

    Images whose decoding or resizing would take absurd memory are refused from the file's header, before anything
    is allocated: above PIL's decompression-bomb limit (``2 * PIL.Image.MAX_IMAGE_PIXELS`` pixels) or with one side
    more than ``MAX_ASPECT_RATIO`` times the other.

    Raises:
        ImageNotFoundError: There is no such file.
        ImageReadError: The file cannot be decoded, or is refused as above; the message names the file.
    """
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise ImageNotFoundError(f'no such image file: {path}')
    try:
        with Image.open(path) as image:
            _check_aspect_ratio(image.size, path)
            return _eight_bit_rgb(_upright(image), path)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"cannot read image {path}: {e} (PIL's decompression-bomb limit, 2 * "
                             'PIL.Image.MAX_IMAGE_PIXELS); downscale it, or raise the limit for files you trust') from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else ''
        raise ImageReadError(f'cannot read image {path} ({type(e).__name__}: {reason}); pass a JPEG, PNG or other '
                             'image file PIL can decode') from e


def _check_aspect_ratio(size: Tuple[int, int], path: Union[str, Path]) -> None:
    ratio = max(size) / max(min(size), 1)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageReadError(
            f"cannot read image {path}: it is {size[0]} x {size[1]} px, an aspect ratio of {ratio:.0f}:1, above the "
            f"limit of {MAX_ASPECT_RATIO}:1 (timm's eval transform resizes the shorter side to the input size, so it "
            f'would take {ratio:.0f} times the memory of a square image); crop it first')


def _upright(image):
    """The image turned as its EXIF orientation says, in place."""
    from PIL import ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # PIL warns of each malformed EXIF tag it skips; viewers don't
        # PIL turns the pixels, then writes the EXIF block back without the orientation; a tag of a type its writer
        # does not expect fails that write, which only the metadata (unused here) needed.
        with contextlib.suppress(struct.error):
            ImageOps.exif_transpose(image, in_place=True)
    return image


def _eight_bit_rgb(image, path: Union[str, Path]):
    """The image in 8-bit RGB, samples of more than 8 bits scaled (see ``read_image``)."""
    import numpy as np
    from PIL import Image

    if image.mode.startswith('I;16') or (image.mode == 'I' and image.format == 'PPM'):
        samples = np.asarray(image)
        return Image.fromarray((samples >> 8).astype(np.uint8)).convert('RGB')
    if image.mode == 'I':
        raise ImageReadError(f'cannot read image {path}: its samples are 32-bit integers, which have no standard '
                             'white level; save it with 8- or 16-bit samples')
    if image.mode == 'F':
        samples = np.asarray(image)
        finite = np.isfinite(samples).all()
        if not finite or samples.min() < 0 or samples.max() > 1:
            found = 'non-finite values' if not finite else f'values in [{samples.min():g}, {samples.max():g}]'
            raise ImageReadError(f'cannot read image {path}: its float samples hold {found}, and only [0, 1] has a '
                                 'standard meaning (black to white); save it scaled to [0, 1] or as an 8- or 16-bit '
                                 'image')
        return Image.fromarray(np.rint(samples * 255).astype(np.uint8)).convert('RGB')
    return image.convert('RGB')


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
    from timm.utils import natural_key

    ordered = sorted(classes, key=natural_key)
    return {c: i for i, c in enumerate(ordered)}, "folder order (natural sort) taken as the model's class order"


def read_label_names(path: Union[str, Path]) -> List[str]:
    """Class names from a text file, one per line (a name may hold spaces; blank lines are skipped).

    Raises:
        FileNotFoundError: There is no such file.
    """
    text = Path(path).read_text(encoding='utf-8')
    return [line.strip() for line in text.splitlines() if line.strip()]


def image_folder(folder: Union[str, Path]) -> Tuple[List[Tuple[str, int]], List[str]]:
    """The images under ``folder`` as timm's ImageFolder finds and sorts them, each with its class index, and the
    class folders in index order (``''`` for images directly in ``folder``)."""
    from timm.data.readers.reader_image_folder import find_images_and_targets

    samples, class_to_idx = find_images_and_targets(str(folder))
    return samples, sorted(class_to_idx, key=class_to_idx.get)


def image_files(folder: Union[str, Path]) -> List[str]:
    """Every image under ``folder`` (in class subfolders or not), sorted as timm's ImageFolder sorts them."""
    samples, _ = image_folder(folder)
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

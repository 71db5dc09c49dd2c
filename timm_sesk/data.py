"""Images in, the model's classes out: reading files, timm's eval transform, label names and image folders.

What ``timm-sesk predict`` and ``validate`` (and the exported runtimes) need around a model, on top of timm's data
config and transforms: images read as a viewer shows them, errors that name the file, and the mapping of an image
folder's class subfolders onto the model's head.
"""
import contextlib
import difflib
import math
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from timm_sesk.errors import ClassMappingError, ImageFolderError, ImageNotFoundError, ImageReadError, ModelConfigError

__all__ = [
    'CROP_PCT_RANGE',
    'MAX_ASPECT_RATIO',
    'MAX_INPUT_SIZE',
    'SPLIT_NAMES',
    'ClassMappingError',
    'FolderDataset',
    'ImageFolder',
    'ImageFolderError',
    'ImageNotFoundError',
    'ImageReadError',
    'check_data_config',
    'class_mapping',
    'eval_transform',
    'even_indices',
    'image_files',
    'image_folder',
    'label_names',
    'model_class_names',
    'read_image',
    'read_label_names',
]

# Folder names that name a dataset's split, not a class: timm's create_dataset looks for the first five (its split
# names and their synonyms), and test splits are common beside them.
SPLIT_NAMES = ('train', 'training', 'val', 'valid', 'validation', 'eval', 'evaluation', 'test', 'testing')


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
        ImageNotFoundError: There is no such file (nothing, or a folder).
        ImageReadError: The file cannot be decoded, or is refused as above; the message names the file.
    """
    from PIL import Image, UnidentifiedImageError

    if Path(path).is_dir():
        raise ImageNotFoundError(f'{path} is a folder, not an image file: pass the images in it (e.g. {path}/*.jpg)')
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


# Bounds on the data config a file gives (a checkpoint's train.py arguments, a Hub config.json, an exported folder):
# timm's eval transform allocates the image resized to input size / crop_pct, then the input tensor, so both come from
# the file. The input size may be at most 2048 px a side, twice the largest input of timm's pretrained models (1024
# px): a 2048 x 2048 image takes 50 MB as a float tensor, where the 20000 px of a hostile train.py argument took 4.8
# GB. crop_pct may be 0.5 to 2 (timm's pretrained configs use 0.875 to 1.15), so the image resized before the crop is
# at most twice the input size a side. --img-size on the command line is the user's own and is not bounded.
MAX_INPUT_SIZE = 2048
CROP_PCT_RANGE = (0.5, 2.0)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f'{text[:57]}...'


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float32(value: Any) -> float:
    """The value as the transform computes with it (float32): NaN for a non-number, infinity beyond float32."""
    import numpy as np

    if not _number(value):
        return float('nan')
    with np.errstate(over='ignore'):
        return float(np.float32(value)) if abs(value) < 1e39 else float('inf')


def check_data_config(config: Mapping[str, Any], source: str) -> None:
    """Refuse a data config (timm's: ``input_size``, ``crop_pct``, ``mean``, ``std``, ``interpolation``, and their
    ``test_`` variants) that would make timm's eval transform allocate absurd memory or fail on the first image.
    Fields absent or None are left to timm's defaults.

    Args:
        config: The data config, or the fields of a pretrained cfg.
        source: Where it comes from, for the message (``checkpoint PATH's train.py arguments``).

    Raises:
        ModelConfigError: A field is of the wrong type or out of bounds (``MAX_INPUT_SIZE``, ``CROP_PCT_RANGE``);
            the message names it, its value and what is expected.
    """
    from timm.data import str_to_interp_mode

    def refuse(field: str, expected: str) -> None:
        raise ModelConfigError(f'{source}: {field} {_shown(config[field])} cannot be used; expected {expected}')

    channels = None  # the input's, where input_size gives them
    for field in ('input_size', 'test_input_size'):
        size = config.get(field)
        if size is None:
            continue
        if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
            refuse(field, '[channels, height, width], positive integers')
        if max(size[1:]) > MAX_INPUT_SIZE:
            refuse(field, f'a height and width of at most {MAX_INPUT_SIZE} px (timm_sesk.data.MAX_INPUT_SIZE)')
        channels = size[0] if field == 'input_size' else channels
    low, high = CROP_PCT_RANGE
    for field in ('crop_pct', 'test_crop_pct'):
        value = config.get(field)
        if value is not None and not (_number(value) and low <= value <= high):
            refuse(field, f'a number from {low} to {high} (the fraction of the resized image the center crop keeps)')
    for field in ('mean', 'std'):
        values = config.get(field)
        if values is None:
            continue
        values = values if isinstance(values, (list, tuple)) else [values]
        as_f32 = [_float32(v) for v in values]
        if not as_f32 or len(values) not in (1, channels or len(values)) or not all(
                math.isfinite(v) for v in as_f32) or (field == 'std' and min(as_f32) <= 0):
            count = ('1' if channels == 1 else f'1 or {channels}') if channels else 'one per channel, or one for all,'
            refuse(field, f'{count} finite numbers' + (', each above 0 in float32' if field == 'std' else ''))
    interpolation = config.get('interpolation')
    if interpolation is not None:
        try:
            str_to_interp_mode(interpolation)
        except (KeyError, TypeError):
            refuse('interpolation', "one of timm's interpolation names (bilinear, bicubic, nearest, ...)")


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
    optionally at another square input size with the same crop fraction.

    Raises:
        ModelConfigError: The model's data config is out of bounds (``check_data_config``): it came from a file.
    """
    from timm.data import create_transform, resolve_model_data_config

    config = resolve_model_data_config(model)
    if size is not None:
        config['input_size'] = (config['input_size'][0], size, size)
    # What came from the model's pretrained cfg (a file: a checkpoint's, a Hub repository's, an exported folder's);
    # not a size the caller gives.
    check_data_config({k: v for k, v in config.items() if size is None or k != 'input_size'},
                      "the model's data config (from its pretrained cfg)")
    return create_transform(**config), config


def _recorded_labels(model: Any) -> Optional[Tuple[List[str], List[str]]]:
    """The class names and descriptions the model records for its head: an exported fine-tune's label names, or
    ImageNet's for an ImageNet head; None where it records none."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    cfg = model.pretrained_cfg
    names = cfg.get('label_names')
    if names and len(names) == model.num_classes:  # a fine-tuned export that names its classes
        return list(names), list(cfg.get('label_descriptions') or names)
    subset = infer_imagenet_subset(model)
    if subset:
        info = ImageNetInfo(subset)
        return info.label_names(), info.label_descriptions()
    return None


def model_class_names(model: Any) -> Optional[List[str]]:
    """The class names the model records for its head (an exported fine-tune's label names, ImageNet's synsets for an
    ImageNet head); None where it records none (a ``train.py`` fine-tune: its classes are its training folders in
    natural sort order)."""
    recorded = _recorded_labels(model)
    return recorded[0] if recorded else None


def label_names(model: Any, names: Optional[Sequence[str]] = None) -> Tuple[List[str], List[str]]:
    """Class names and descriptions of the model's head: ``names`` where given (``--label-names``), else those it
    records, else class indices."""
    if names is not None:
        return list(names), list(names)
    recorded = _recorded_labels(model)
    if recorded:
        return recorded
    return [str(i) for i in range(model.num_classes)], [f'class {i}' for i in range(model.num_classes)]


def _listed(items: Sequence[str], most: int = 3) -> str:
    return ', '.join(items[:most]) + (f' and {len(items) - most} more' if len(items) > most else '')


def class_mapping(classes: Sequence[str], names: Optional[Sequence[str]], num_classes: int,
                  empty: Sequence[str] = (), folder_order: bool = False) -> Tuple[Dict[str, int], str]:
    """Folder class → model class index, and how it was decided.

    By name, where the model's classes have names (``model_class_names``, or label names given) and every class
    folder is one of them: any subset of the classes works (an ImageNet validation subset in synset folders). In
    folder order, where the model records no names (a model fine-tuned with timm's ``train.py`` on this folder layout:
    its classes are the folders in timm's natural sort order), or where ``folder_order`` asks for it: the folders in
    natural sort order are the head's classes in order. An empty class folder keeps its place where the head has a
    class for every folder, else it is left out, as timm's ImageFolder (and so ``train.py``) leaves it out.

    Args:
        classes: The class folders holding images.
        names: The model's class names in head order, None where it records none.
        num_classes: Classes of the head.
        empty: The class folders holding no image.
        folder_order: Take the folders in natural sort order even where the model's classes have names.

    Raises:
        ClassMappingError: Some folders are named after the model's classes and others are not (those are named);
            none is and folder order was not asked for; or the folders are not as many as the head's classes.
    """
    from timm.utils import natural_key

    if names is not None and not folder_order:
        index = {name: i for i, name in enumerate(names)}
        unknown = [c for c in classes if c not in index]
        if not unknown:
            return {c: index[c] for c in classes}, "folder names matched to the model's class names" + (
                f'; empty class folders: {_listed(list(empty))}' if empty else '')
        if len(unknown) < len(classes):  # a partial match: a misspelt folder, or the wrong label names
            guesses = [c + ''.join(f' (did you mean {g!r}?)' for g in difflib.get_close_matches(c, names, 1))
                       for c in unknown]
            raise ClassMappingError(
                f"{len(unknown)} of the {len(classes)} class folders {'is' if len(unknown) == 1 else 'are'} not "
                "among the model's class names: "
                f'{_listed(guesses, 5)}; rename them, or give the names it was trained with (--label-names FILE)')
        if len(classes) + len(empty) == num_classes or len(classes) == num_classes:
            raise ClassMappingError(
                f"none of the {len(classes)} class folders ({_listed(unknown)}) is among the model's class names "
                f'({_listed(list(names))}): give the names it was trained with (--label-names FILE), or take the '
                'folders, in natural sort order, as its classes in head order (--folder-order)')
    folders = sorted([*classes, *empty], key=natural_key)
    kept = len(folders) == num_classes  # the empty folders keep their place in the order
    ordered = folders if kept else sorted(classes, key=natural_key)
    if len(ordered) != num_classes:
        named = " are not named after the model's classes, and" if names is not None and not folder_order else ':'
        raise ClassMappingError(
            f'the {len(ordered)} class folders ({_listed(ordered)}){named} its head has {num_classes} classes, not '
            f'{len(ordered)}, so they cannot be its classes in head order (as for a model fine-tuned on these '
            'folders): validate the model fine-tuned on them (--checkpoint FILE, or its exported folder)')
    how = "folder order (natural sort) taken as the model's class order"
    if empty:
        where = 'kept in the order' if kept else 'left out of the order, as timm leaves them out'
        how += f'; empty class folders: {_listed(list(empty))} ({where})'
    have_images = set(classes)
    return {c: i for i, c in enumerate(ordered) if c in have_images}, how


def read_label_names(path: Union[str, Path]) -> List[str]:
    """Class names from a text file, one per line (a name may hold spaces; blank lines are skipped; a UTF-8 byte
    order mark, which Windows editors write, is not part of the first name).

    Raises:
        FileNotFoundError: There is no such file.
    """
    text = Path(path).read_text(encoding='utf-8-sig')
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class ImageFolder:
    """An image folder as ``validate`` reads it: ROOT/<class>/<image>, the layout timm's ImageFolder reads.

    Attributes:
        root: The folder read: the split's, where the folder given holds one.
        samples: (image path, class index) pairs, sorted as timm's ImageFolder sorts them.
        classes: The class folders holding images, in class index order (natural sort, as timm).
        empty: The class folders holding no image, in natural sort order (timm's ImageFolder skips them).
    """

    root: Path
    samples: List[Tuple[str, int]]
    classes: List[str]
    empty: List[str]


def image_folder(folder: Union[str, Path], split: Optional[str] = None) -> ImageFolder:
    """The images of a classification folder, as timm's ``create_dataset`` and ImageFolder find and sort them, with
    the layout checked.

    As timm's ``validate.py``, a folder holding split folders is read at its split: ``split`` or, where None,
    ``validation`` (or a synonym timm knows: ``val``, ``valid``, ``eval``, ``evaluation``), and the folder itself
    where it holds no such split. Where timm's ImageFolder would read a layout other than ROOT/<class>/<image> into
    wrong classes, this refuses it: images in deeper folders (timm takes the innermost folder's name as their class,
    so ``cat/nested/deeper/x.jpg`` is a class ``deeper``, and a split folder's classes merge with the others'), and
    images beside the class folders.

    Raises:
        ImageFolderError: The folder is not there, holds no images, or is laid out otherwise (the message says how
            and names an example); a ``split`` it does not hold.
    """
    from timm.data import create_dataset
    from timm.utils import natural_key

    given = Path(folder)
    if not given.is_dir():
        raise ImageFolderError(f'no such folder: {given}')
    try:
        reader = create_dataset('', root=str(given), split=split or 'validation').reader
    except RuntimeError as e:  # timm's "Found 0 images"
        raise ImageFolderError(f'no images in {given}: validate expects one subfolder per class holding image '
                               f'files, {given}/<class>/<image>.jpg') from e
    root = Path(reader.root)
    subfolders = sorted((p.name for p in given.iterdir() if p.is_dir()), key=natural_key)
    if split is not None and root == given:
        raise ImageFolderError(f'{given} has no {split} split folder (its folders: {_listed(subfolders, 8)})')
    classes = sorted(reader.class_to_idx, key=reader.class_to_idx.get)
    nested = [parts for parts in (Path(p).relative_to(root).parts for p, _ in reader.samples) if len(parts) > 2]
    if nested:
        splits = [f for f in dict.fromkeys(parts[0] for parts in nested) if f.lower() in SPLIT_NAMES]
        if splits:
            held_out = [f for f in splits if f.lower() not in ('train', 'training')] or splits
            raise ImageFolderError(
                f'{root} holds the splits {_listed(splits, 8)}, not class folders: name the one to read (--split '
                f'{held_out[0]})')
        example = nested[0]
        raise ImageFolderError(
            f'{root}/{example[0]} holds images in subfolders ({root.joinpath(*example)}): the layout read is '
            f"{root}/<class>/<image>, and timm's ImageFolder would make {example[-2]!r} a class of its own; move "
            'the images into their class folder, or pass the folder that holds the class folders')
    if '' in classes:
        raise ImageFolderError(f'{root} has images directly inside it; validate expects them in one subfolder per '
                               f'class, {root}/<class>/<image>.jpg')
    empty = [f for f in sorted((p.name for p in root.iterdir() if p.is_dir()), key=natural_key)
             if f not in reader.class_to_idx and not f.startswith('.')]
    return ImageFolder(root, list(reader.samples), classes, empty)


def image_files(folder: Union[str, Path]) -> List[str]:
    """Every image under ``folder`` (in class subfolders or not, at any depth), sorted as timm's ImageFolder sorts
    them."""
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

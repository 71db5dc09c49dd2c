"""Every failure timm_sesk reports, typed once.

The library raises these (each module re-exports its own, e.g. ``timm_sesk.data.ImageReadError``); the command line
maps each type to one message line and an exit status (``timm_sesk.cli.errors``). This module imports nothing, so
that the command line can know every type without importing what raises it.
"""
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

__all__ = [
    'CheckpointReadError',
    'ClassMappingError',
    'ExportCheckError',
    'ExportFolderError',
    'ImageFolderError',
    'ImageNotFoundError',
    'ImageReadError',
    'InvalidInputError',
    'InvalidWeightsError',
    'MissingExtraError',
    'ModelArgumentsError',
    'ModelConfigError',
    'NoTwinError',
    'NotGraftableError',
    'PretrainedWeightsError',
    'StorageError',
    'UnsupportedPrecisionError',
    'UploadError',
    'WeightsMismatchError',
]


class PretrainedWeightsError(RuntimeError):
    """Weights could not be loaded; nothing was loaded into any model."""


class WeightsMismatchError(PretrainedWeightsError):
    """Weights that fit none of the model's key layouts exactly; nothing was loaded.

    Attributes:
        source: The weights, as messages name them (``checkpoint PATH``, ``pretrained weights (PATH)``, ...).
        arch: The model's architecture.
        fit: How the closest layout fits: a ``timm_sesk.weights.Fit`` (missing, unexpected and mismatched keys).
        recorded_arch: The model the weights were trained as, where their file says (``train.py``'s ``arch``).
        train_args: ``train.py``'s arguments, where the file carries them.
    """

    def __init__(self, message: str, source: str, arch: str, fit: Any, recorded_arch: Optional[str] = None,
                 train_args: Optional[Dict[str, Any]] = None,
                 guess: Optional[Callable[[], Optional[Tuple[str, str]]]] = None):
        super().__init__(message)
        self.source = source
        self.arch = arch
        self.fit = fit
        self.recorded_arch = recorded_arch
        self.train_args = train_args or {}
        self._guess = guess

    def fitting_arch(self) -> Optional[Tuple[str, str]]:
        """``(architecture, layout)`` of the first zoo model the weights fit exactly, found by their keys (a few
        seconds: each candidate is built on the meta device); None if none does."""
        return self._guess() if self._guess is not None else None


class InvalidWeightsError(PretrainedWeightsError):
    """Weights whose values cannot be used: a tensor holds NaN or infinity, is not floating point where the model's
    is, holds a negative running variance, or declares more values than its file stores (a broadcast view); nothing
    was loaded.

    Attributes:
        source: The weights, as messages name them.
        key: The tensor's name in the weights.
    """

    def __init__(self, message: str, source: str, key: str):
        super().__init__(message)
        self.source = source
        self.key = key


class CheckpointReadError(ValueError):
    """A checkpoint file cannot be read as weights (not a checkpoint, no tensors, or Python objects in it)."""


class NotGraftableError(ValueError):
    """The architecture (or its configuration) has no exact graft from a plain ResNet."""


class NoTwinError(ValueError):
    """timm registers no network equal to the model (its architecture has none, or its knobs differ from those of the
    architecture's twin): it can be shared only in timm_sesk's own layout."""


class ModelArgumentsError(ValueError):
    """A model cannot be built with the ``create_model`` arguments given.

    Attributes:
        name: The model.
        kwargs: The arguments.
        reason: Why, as the model's constructor says.
    """

    def __init__(self, name: str, kwargs: Dict[str, Any], reason: str):
        args = ', '.join(f'{k}={v!r}' for k, v in kwargs.items())
        super().__init__(f'cannot build {name} with {args}: {reason}')
        self.name = name
        self.kwargs = kwargs
        self.reason = reason


class ModelConfigError(ValueError):
    """A configuration read from a file cannot be used: a Hub repository's ``config.json`` (not JSON, not an object,
    fields of the wrong type, sizes out of bounds, arguments the model cannot be built with), or the data config of
    weights (input size, crop, mean, std, interpolation); nothing was built or allocated from it."""


class ImageReadError(ValueError):
    """An image file cannot be decoded."""


class ImageNotFoundError(ImageReadError):
    """An image file does not exist."""


class ClassMappingError(ValueError):
    """An image folder's classes cannot be mapped onto the model's head."""


class ImageFolderError(ValueError):
    """A folder is not an image classification folder, ROOT/<class>/<image> (no images, splits or deeper folders)."""


class ExportCheckError(RuntimeError):
    """The exported model does not compute the PyTorch model's logits within the tolerance."""


class ExportFolderError(FileExistsError):
    """An export's folder holds files and replacing them was not asked for (``overwrite``), or it is a file; nothing
    was written.

    Attributes:
        folder: The folder.
        files: The names of the files it holds (empty where it is a file itself).
    """

    def __init__(self, folder: Any, files: Sequence[str] = ()):
        self.folder = folder
        self.files = list(files)
        super().__init__(self.describe('overwrite=True'))

    def describe(self, overwrite: str) -> str:
        """The message, naming the way to ask for overwriting (``overwrite=True``, ``--overwrite``)."""
        if not self.files:
            return f'{self.folder} is a file: name a folder to write the export in (it is created if needed)'
        shown = ', '.join(self.files[:5]) + (f' and {len(self.files) - 5} more' if len(self.files) > 5 else '')
        return (f'{self.folder} holds files ({shown}): pass {overwrite} to replace the export there (its files of '
                "an export's names go, other files stay), or write to a new or empty folder")


class StorageError(OSError):
    """A file or folder cannot be written: the disk is full, the file system read-only, the path not writable, or a
    file stands where a folder should be. Nothing half-written is left behind.

    Attributes:
        errno: The operating system's error number.
        filename: The path.
    """

    def __init__(self, message: str, errno: Optional[int] = None, filename: Any = None):
        super().__init__(message)
        self.errno = errno
        self.filename = filename

    def __str__(self) -> str:  # the message, not OSError's "[Errno N] strerror: 'filename'"
        return str(self.args[0])


class UploadError(RuntimeError):
    """Uploading a folder to the Hub failed (the network, or the Hub refused it); the folder is as it was."""


class UnsupportedPrecisionError(ValueError):
    """The runtime or the CPU cannot compute in the requested precision."""


class InvalidInputError(ValueError):
    """An input the exported model cannot take: not a float N x C x H x W batch of its channels and size."""


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` that adds it."""

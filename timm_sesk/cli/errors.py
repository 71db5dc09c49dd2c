"""How the command line fails: one ``timm-sesk: error: ...`` line naming the fix, and an exit status.

Commands raise ``CliError`` for what they check themselves, and so do argparse's usage errors (``main``'s parser);
the library's own exceptions (``timm_sesk.errors``) reach ``main`` unchanged and are looked up in ``ERRORS``, the one
table of what each failure prints and returns. An exception not in the table is a bug and keeps its traceback. Ctrl-C
ends a command with status 130 and prints nothing (while the console script starts, too: ``_timm_sesk_launcher``).
"""
import sys
from typing import Callable, Optional, Tuple, Type

from timm_sesk.errors import (
    CheckpointReadError,
    ClassMappingError,
    ExportCheckError,
    ExportFolderError,
    ImageFolderError,
    ImageNotFoundError,
    ImageReadError,
    InvalidInputError,
    InvalidWeightsError,
    MissingExtraError,
    ModelArgumentsError,
    ModelConfigError,
    NotGraftableError,
    NoTwinError,
    PretrainedWeightsError,
    StorageError,
    UnsupportedPrecisionError,
    UploadError,
    WeightsMismatchError,
)

from .text import terminal_text

__all__ = [
    'ERRORS', 'EXIT_BROKEN_PIPE', 'EXIT_FAILURE', 'EXIT_INTERRUPTED', 'EXIT_USAGE', 'PROG', 'CliError', 'report']

PROG = 'timm-sesk'
# Exit statuses: 1 a failure, 2 a usage error (as argparse), 130 interrupted (128 + SIGINT), 141 a closed pipe
# (128 + SIGPIPE, what `cmd | head` expects of a command cut short).
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 2, 130, 141

_WEIGHTS_HINT = ('On the command line: --checkpoint FILE loads a local checkpoint, --no-pretrained uses random '
                 'weights.')


class CliError(Exception):
    """A failure the user can fix: printed as one ``timm-sesk: error: ...`` line, exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code


def _trained_for(error: WeightsMismatchError) -> Tuple[Optional[str], str]:
    """The architecture weights that do not fit are for (``train.py``'s ``arch``, else found by their keys), and
    what to run them with."""
    from timm_sesk.models import ARCHS

    recorded = (error.recorded_arch or '').split('.')[0]
    if recorded and recorded != error.arch and recorded in ARCHS:
        return error.recorded_arch, f'run it with -m {recorded}'
    if recorded != error.arch:  # no arch recorded, or a model outside the zoo (a plain ResNet?): found by its keys
        fitting = error.fitting_arch()
        if fitting is not None:
            other, layout = fitting
            if layout == 'plain':  # a plain ResNet's weights: the model they graft onto takes them
                trained = error.recorded_arch or f'{ARCHS[other].plain_twin or "a plain ResNet"} (by its keys)'
                return trained, f'-m {other} grafts it'
            return error.recorded_arch or f'{other} (by its keys)', f'run it with -m {other}'
        if recorded:
            return error.recorded_arch, 'run it with -m and its timm_sesk model'
    trained = error.train_args.get('model_kwargs')
    return None, ('if it was trained with other create_model arguments, pass them (--model-kwarg KEY=VALUE'
                  + (f'; train.py had {trained}' if trained else '') + ')')


def _mismatch(error: WeightsMismatchError) -> str:
    """``checkpoint X is for sk_resnet18, not se_resnet18: 80 missing keys (...), ...; run it with -m sk_resnet18``"""
    other, hint = _trained_for(error)
    head = f'{error.source} is for {other}, not {error.arch}' if other else f'{error.source} does not fit {error.arch}'
    return f'{head}: {error.fit.describe()}; {hint}'


def _arguments(error: ModelArgumentsError) -> str:
    given = ' '.join(f'--model-kwarg {k}={v!r}' for k, v in error.kwargs.items())
    return f'cannot build {error.name} with {given}: {error.reason}'


# Exception type -> (exit status, message); the first matching row wins, so subclasses come before their bases.
ERRORS: Tuple[Tuple[Type[BaseException], Callable[[BaseException], int], Callable[[BaseException], str]], ...] = (
    (CliError, lambda e: e.code, str),
    (WeightsMismatchError, lambda e: EXIT_FAILURE, _mismatch),
    (InvalidWeightsError, lambda e: EXIT_FAILURE, str),
    (PretrainedWeightsError, lambda e: EXIT_FAILURE, lambda e: f'{e} {_WEIGHTS_HINT}'),
    (ModelArgumentsError, lambda e: EXIT_USAGE, _arguments),
    (ModelConfigError, lambda e: EXIT_FAILURE, str),
    (NotGraftableError, lambda e: EXIT_USAGE, str),
    (NoTwinError, lambda e: EXIT_USAGE, lambda e: f'{e}; export it with --layout plugin'),
    (CheckpointReadError, lambda e: EXIT_FAILURE,
     lambda e: f'{e}. Pass a .safetensors file or a PyTorch state dict (a timm train.py checkpoint works)'),
    (MissingExtraError, lambda e: EXIT_FAILURE, str),
    (ExportCheckError, lambda e: EXIT_FAILURE, str),
    (ExportFolderError, lambda e: EXIT_USAGE, lambda e: e.describe('--overwrite')),
    (StorageError, lambda e: EXIT_FAILURE, str),  # a full or read-only disk, wherever it was met
    (UploadError, lambda e: EXIT_FAILURE, str),
    (UnsupportedPrecisionError, lambda e: EXIT_USAGE, str),
    (InvalidInputError, lambda e: EXIT_USAGE, str),  # an exported model at another --img-size
    (ImageNotFoundError, lambda e: EXIT_USAGE, str),
    (ImageReadError, lambda e: EXIT_FAILURE, str),
    (ClassMappingError, lambda e: EXIT_FAILURE, str),
    (ImageFolderError, lambda e: EXIT_FAILURE, str),
)


def report(error: BaseException) -> Optional[int]:
    """Print the one-line message of a known failure and return its exit status; None for an unknown one. The line
    is terminal text (``text.terminal_text``): messages quote files, names and torch's words."""
    for kind, code, message in ERRORS:
        if isinstance(error, kind):
            print(f'{PROG}: error: {terminal_text(" ".join(message(error).split()))}', file=sys.stderr)
            return code(error)
    return None

"""How the command line fails: one ``timm-sesk: error: ...`` line naming the fix, and an exit status.

Commands raise ``CliError`` for what they check themselves, and so do argparse's usage errors (``main``'s parser);
the library's own exceptions reach ``main`` unchanged and are looked up in ``ERRORS``, the one table of what each
failure prints and returns. An exception not in the table is a bug and keeps its traceback. Ctrl-C ends a command
with status 130 and prints nothing, while it starts too (``timm_sesk/__main__.py``, ``_timm_sesk_launcher``).
"""
import sys
from typing import Callable, Optional, Tuple, Type

from timm_sesk.data import ClassMappingError, ImageNotFoundError, ImageReadError
from timm_sesk.deploy import ExportCheckError, InvalidInputError, UnsupportedPrecisionError
from timm_sesk.extras import MissingExtraError
from timm_sesk.weights import CheckpointReadError, PretrainedWeightsError

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


# Exception type -> (exit status, message); the first matching row wins, so subclasses come before their bases.
ERRORS: Tuple[Tuple[Type[BaseException], Callable[[BaseException], int], Callable[[BaseException], str]], ...] = (
    (CliError, lambda e: e.code, str),
    (PretrainedWeightsError, lambda e: EXIT_FAILURE, lambda e: f'{e} {_WEIGHTS_HINT}'),
    (MissingExtraError, lambda e: EXIT_FAILURE, str),
    (ExportCheckError, lambda e: EXIT_FAILURE, str),
    (UnsupportedPrecisionError, lambda e: EXIT_USAGE, str),
    (InvalidInputError, lambda e: EXIT_USAGE, str),  # an exported model at another --img-size
    (ImageNotFoundError, lambda e: EXIT_USAGE, str),
    (ImageReadError, lambda e: EXIT_FAILURE, str),
    (ClassMappingError, lambda e: EXIT_FAILURE, str),
    (CheckpointReadError, lambda e: EXIT_FAILURE, str),
)


def report(error: BaseException) -> Optional[int]:
    """Print the one-line message of a known failure and return its exit status; None for an unknown one."""
    for kind, code, message in ERRORS:
        if isinstance(error, kind):
            print(f'{PROG}: error: {" ".join(message(error).split())}', file=sys.stderr)
            return code(error)
    return None

"""The ``timm-sesk`` console script's entry point, outside the ``timm_sesk`` package on purpose.

Importing anything in ``timm_sesk`` runs its ``__init__``, which imports torch and timm: seconds during which a
Ctrl-C must end the command. A KeyboardInterrupt raised there is not enough: some of torch's and numpy's imports catch
BaseException, so an interrupt landing inside them is swallowed (the command then runs on, or fails later on a
half-imported module). So until the command line is loaded, SIGINT ends the process at once with status 130. This
module imports nothing heavy itself, so that holds from the first import on.
"""
import os
import signal

__all__ = ['main']

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as timm_sesk.cli.errors


def _end_interrupted(signum: int, frame: object) -> None:
    os._exit(EXIT_INTERRUPTED)  # nothing has been written yet: no cleanup to run


def main() -> int:
    """Import and run ``timm_sesk.cli.main`` on ``sys.argv``; exit status 130, quietly, if interrupted meanwhile."""
    # Not where SIGINT is ignored (a background job keeps running) or handled by whoever embeds this.
    starting = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if starting:
        signal.signal(signal.SIGINT, _end_interrupted)
    try:
        from timm_sesk.cli import main as run
    finally:
        if starting:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return run()

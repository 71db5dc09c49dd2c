"""The ``timm-sesk`` console script's entry point, outside the ``timm_sesk`` package on purpose.

Importing anything in ``timm_sesk`` runs its ``__init__``, which imports torch and timm: seconds during which a
Ctrl-C would end the command with Python's traceback of the import, before ``timm_sesk.cli.main`` can catch it. This
module imports nothing heavy itself, so the interrupt is caught here and ends the command as ``main`` ends it.
"""
__all__ = ['main']

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as timm_sesk.cli.errors


def main() -> int:
    """Import and run ``timm_sesk.cli.main`` on ``sys.argv``; exit status 130, quietly, if interrupted meanwhile."""
    try:
        from timm_sesk.cli import main as run
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return run()


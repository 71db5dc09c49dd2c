"""The ``timm-sesk`` console script, outside the ``timm_sesk`` package because any module inside it imports the
package, and so torch and timm: seconds during which Ctrl-C must end the command. A KeyboardInterrupt raised there is
not enough (some of torch's and numpy's imports catch BaseException and swallow it), so until the command line is
loaded SIGINT has its default action: the process ends at once, as a shell reports with status 130.
"""
import signal


def main() -> int:
    """Import and run ``timm_sesk.cli.main`` on ``sys.argv``."""
    starting = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not where it is ignored or handled
    if starting:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    from timm_sesk.cli import main as run

    if starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return run()

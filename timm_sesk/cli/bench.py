"""``timm-sesk bench``: the repository's benchmarks (benchmarks/compare.py), which ship with the source."""
import argparse
import importlib
import sys
from pathlib import Path
from typing import List

from .errors import PROG, CliError

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, **parents: argparse.ArgumentParser) -> None:
    # `bench` hands its whole command line to benchmarks/compare.py (see main), its --help included.
    commands.add_parser(
        'bench', add_help=False, help='throughput/memory against timm (benchmarks/compare.py; from a repo clone)',
        description='Forwards every argument to benchmarks/compare.py; `timm-sesk bench --help` shows its options.')


def run(argv: List[str]) -> int:
    """Forward to the repository's ``benchmarks/compare.py``, which ships with the source, not the package."""
    root = Path.cwd()
    if not (root / 'benchmarks' / 'compare.py').is_file():
        raise CliError(f'bench runs benchmarks/compare.py from a clone of the timm_sesk repository, and {root} is '
                       f'not one: cd into the clone and run `{PROG} bench` there', code=2)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    compare = importlib.import_module('benchmarks.compare')
    argv0, sys.argv[0] = sys.argv[0], f'{PROG} bench'  # argparse names the program after sys.argv[0]
    try:
        return compare.main(argv)
    finally:
        sys.argv[0] = argv0

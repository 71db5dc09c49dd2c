"""``timm-sesk``: the parser made of every command's module, and the one place failures become messages."""
import argparse
import os
import sys
from typing import List, Optional

import timm_sesk

from . import attention, bench, export, info, list_models, predict, validate
from .errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, PROG, report
from .options import HelpFormatter, model_options, runtime_options

__all__ = ['COMMANDS', 'build_parser', 'main']

# In the order `timm-sesk --help` lists them.
COMMANDS = (list_models, info, predict, validate, attention, export, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=lambda prog: HelpFormatter(prog, max_help_position=16),
        description='Squeeze-and-Excitation and Selective-Kernel ResNets for timm. Without a command, lists the zoo '
                    'and runs a forward pass of every model.',
        epilog=f'Run `{PROG} COMMAND --help` for the options of a command. Pretrained weights download from the '
               'Hugging Face Hub (or their source URL) on first use and are cached.')
    parser.add_argument('--version', action='version', version=f'timm_sesk {timm_sesk.__version__}')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    parents = dict(model=model_options(), runtime=runtime_options())
    for command in COMMANDS:
        command.add_parser(commands, **parents)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ['bench']:  # bench hands its whole command line, --help included, to the benchmark
            return bench.run(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(['list', '--check'])
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`timm-sesk list | head -1`). Point stdout at devnull so that the interpreter's final
        # flush does not report the broken pipe again, and stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as e:
        code = report(e)
        if code is None:  # not a failure the table knows: a bug, whose traceback is the report
            raise
        return code

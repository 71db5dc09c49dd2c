"""``timm-sesk``: the parser made of every command's module, and the one place failures become messages."""
import argparse
import os
import sys
from typing import List, NoReturn, Optional

import timm_sesk

from . import attention, bench, export, info, list_models, predict, validate
from .errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, PROG, CliError, report
from .options import HelpFormatter, model_options, runtime_options

__all__ = ['COMMANDS', 'ArgumentParser', 'build_parser', 'main']

# In the order `timm-sesk --help` lists them.
COMMANDS = (list_models, info, predict, validate, attention, export, bench)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with usage errors as one ``timm-sesk: error: ...`` line through the error table (argparse
    prints the whole usage first); the commands' parsers are of this class too (``add_subparsers`` copies it)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f'{message} (`{self.prog} --help` shows the usage)', code=EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # argparse reports them for the top level; the command's usage is the one to read
            parser_of = f'{PROG} {args.command}' if args.command else PROG
            raise CliError(f'unrecognized arguments: {" ".join(unknown)} (`{parser_of} --help` shows the usage)',
                           code=EXIT_USAGE)
        if args.command is None:
            args = parser.parse_args(['list', '--check'])
        args.argv = argv  # as given, for commands that record their command line
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

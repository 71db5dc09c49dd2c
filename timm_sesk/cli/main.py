"""``timm-sesk``: the parser made of every command's module, and the one place failures become messages."""
import argparse
import importlib
import os
import sys
from typing import List, NoReturn, Optional

from timm_sesk.version import __version__

from .errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, PROG, CliError, report

__all__ = ['COMMANDS', 'ArgumentParser', 'build_parser', 'main']

# Each command's module in this package and its summary, in the order `timm-sesk --help` lists them. A command's
# module (its options, and what it needs to run) is imported only when that command runs.
COMMANDS = {
    'list': ('list_models', 'the models of the zoo'),
    'info': ('info', 'one model: architecture, size, compute and pretrained weights'),
    'predict': ('predict', 'top-k labels of images'),
    'validate': ('validate', 'top-1 / top-5 accuracy on an image folder'),
    'attention': ('attention', 'plot the SE / SK attention of a model on images'),
    'export': ('export', 'write a Hub-ready folder, or ONNX / OpenVINO IR for CPU inference'),
    'bench': ('bench', 'throughput and memory against timm (benchmarks/compare.py)'),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with usage errors as one ``timm-sesk: error: ...`` line through the error table (argparse
    prints the whole usage first); the commands' parsers are of this class too (``add_subparsers`` copies it)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f'{message} (`{self.prog} --help` shows the usage)', code=EXIT_USAGE)


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line's parser, with the options of ``command`` (the other commands are listed, not loaded)."""
    parser = ArgumentParser(
        prog=PROG, formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=16),
        description='Squeeze-and-Excitation and Selective-Kernel ResNets for timm. Without a command, lists the zoo '
                    'and runs a forward pass of every model.',
        epilog=f'Run `{PROG} COMMAND --help` for the options of a command. Pretrained weights download from the '
               'Hugging Face Hub (or their source URL) on first use and are cached.')
    parser.add_argument('--version', action='version', version=f'timm_sesk {__version__}')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (module, summary) in COMMANDS.items():
        if name == command:
            importlib.import_module(f'{__package__}.{module}').add_parser(commands, name, summary)
        else:
            commands.add_parser(name, help=summary)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        argv = argv or ['list', '--check']
        # The top level's options take no value: the first other word names the command.
        parser = build_parser(next((a for a in argv if not a.startswith('-')), None))
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # argparse reports them for the top level; the command's usage is the one to read
            parser_of = f'{PROG} {args.command}' if args.command else PROG
            raise CliError(f'unrecognized arguments: {" ".join(unknown)} (`{parser_of} --help` shows the usage)',
                           code=EXIT_USAGE)
        if args.command is None:
            raise CliError(f'name a command (`{PROG} --help` lists them)', code=EXIT_USAGE)
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

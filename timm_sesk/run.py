"""Run a script with the timm_sesk models registered: ``python -m timm_sesk.run SCRIPT.py [ARGS...]``.

timm's ``validate.py`` and ``benchmark.py`` build models by name but have no option to import a plugin first
(``train.py`` has ``--device-modules timm_sesk``). This runner imports timm_sesk, then runs the unmodified script
as ``__main__`` with its own arguments, exactly as ``python SCRIPT.py ARGS...`` would (``sys.argv``, ``__file__``
and the script's folder on ``sys.path``). Under torchrun, launch the runner as a module::

    torchrun --nproc-per-node 2 -m timm_sesk.run train.py --model sk_resnet50 ...
"""
import os
import runpy
import sys
from typing import List, Optional

__all__ = ['main', 'run_script']

USAGE = 'usage: python -m timm_sesk.run SCRIPT.py [ARGS...]   (e.g. validate.py --model sk_resnet50 --pretrained DIR)'


def _missing(script: str) -> str:
    import timm

    return (f"no such script: {script!r}; timm's train.py, validate.py and benchmark.py are in the root of "
            f'https://github.com/huggingface/pytorch-image-models at tag v{timm.__version__} (your timm)')


def run_script(script: str, args: List[str]) -> None:
    """Import timm_sesk, then run ``script`` as ``__main__`` with ``args`` as its command line.

    Args:
        script: Path of the Python script to run.
        args: The script's arguments (``sys.argv[1:]`` as the script sees them).

    Raises:
        FileNotFoundError: The script does not exist.
    """
    if not os.path.isfile(script):
        raise FileNotFoundError(_missing(script))
    import timm_sesk  # noqa: F401 - registers the models with timm before the script builds one

    sys.argv = [script, *args]
    # `python SCRIPT.py` puts the script's folder first on sys.path, replacing the current directory.
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name='__main__')


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ('-h', '--help'):
        print(USAGE + '\n\n' + __doc__.strip(), file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    if not os.path.isfile(argv[0]):  # checked here so that the script's own FileNotFoundErrors pass untouched
        print(f'timm_sesk.run: error: {_missing(argv[0])}', file=sys.stderr)
        return 2
    run_script(argv[0], argv[1:])
    return 0


if __name__ == '__main__':
    sys.exit(main())

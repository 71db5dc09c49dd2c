"""Command line of the zoo: ``timm-sesk`` or ``python -m timm_sesk``.

One module per command, each with its options next to its handler and imported only when its command runs:
``list`` (the zoo), ``info`` (one model), ``predict`` (top-k labels of images), ``validate`` (top-1/top-5 on an image
folder; both also run exported folders in ONNX Runtime or OpenVINO), ``attention`` (plot of the SE/SK attention),
``export`` (Hub-ready folder, ONNX or OpenVINO IR) and ``bench`` (``benchmarks/compare.py``, shipped as
``timm_sesk.benchmarks``). ``options`` holds what the commands running a model share (the library builds it:
``timm_sesk.load``), ``inference`` what predict and validate share, and ``errors`` the one table turning failures into
a ``timm-sesk: error: ...`` line naming the fix, with an exit status.
"""
from .errors import CliError
from .main import build_parser, main

__all__ = ['CliError', 'build_parser', 'main']

"""timm_sesk: Squeeze-and-Excitation and Selective-Kernel ResNets for timm.

Importing the package registers every model with timm, so that ``timm.create_model('sk_resnet50')`` works.
"""
import os
import signal
import sys
from typing import List

# `python -m timm_sesk ...` (or `-m timm_sesk.run`): Python imports this package, and so torch and timm, to find the
# module to run (sys.argv[0] is '-m' until it starts), before the command can catch anything. A Ctrl-C then must end
# the program unstarted, as the command ends when interrupted: status 130, no traceback. A KeyboardInterrupt is not
# enough, since some of torch's and numpy's imports catch BaseException and swallow it; so SIGINT ends the process
# during these imports (as the console script's launcher does). An import from a running program is left alone.
_STARTING_A_MODULE = sys.argv[:1] == ['-m'] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _STARTING_A_MODULE:
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
try:
    import timm

    from . import attention, layers, models, weights
    from .fuse import fuse
    from .graft import graft
    from .version import __version__
finally:
    if _STARTING_A_MODULE:
        signal.signal(signal.SIGINT, signal.default_int_handler)

__all__ = ['MODEL_MODULES', '__version__', 'attention', 'fuse', 'graft', 'layers', 'list_models', 'models', 'weights']

# timm's registry keys models by the basename of the module registering them.
MODEL_MODULES = ('se_resnet', 'sk_resnet')


def list_models(filter: str = '', pretrained: bool = False, include_tags: bool = False) -> List[str]:
    """timm_sesk's registered models (as ``timm.list_models``, restricted to this package's model modules)."""
    return timm.list_models(filter, module=MODEL_MODULES, pretrained=pretrained, include_tags=include_tags)

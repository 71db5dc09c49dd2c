"""timm_sesk: Squeeze-and-Excitation and Selective-Kernel ResNets for timm.

Importing the package registers every model with timm, so that ``timm.create_model('sk_resnet50')`` works.
"""
import sys
from typing import List

try:
    import timm

    from . import attention, layers, models, weights
    from .fuse import fuse
    from .graft import graft
    from .version import __version__
except KeyboardInterrupt:
    # `python -m timm_sesk ...` (or `-m timm_sesk.run`): Python imports this package, and so torch and timm, to find
    # the module to run, before the command can catch anything; sys.argv[0] is '-m' until it starts. A Ctrl-C then
    # ends the program unstarted, as the command ends when interrupted: status 130, no traceback of the import. An
    # import from any running program leaves the interrupt to it.
    if sys.argv[:1] == ['-m']:
        raise SystemExit(130) from None
    raise

__all__ = ['MODEL_MODULES', '__version__', 'attention', 'fuse', 'graft', 'layers', 'list_models', 'models', 'weights']

# timm's registry keys models by the basename of the module registering them.
MODEL_MODULES = ('se_resnet', 'sk_resnet')


def list_models(filter: str = '', pretrained: bool = False, include_tags: bool = False) -> List[str]:
    """timm_sesk's registered models (as ``timm.list_models``, restricted to this package's model modules)."""
    return timm.list_models(filter, module=MODEL_MODULES, pretrained=pretrained, include_tags=include_tags)

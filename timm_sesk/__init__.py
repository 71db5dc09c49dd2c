"""timm_sesk: Squeeze-and-Excitation and Selective-Kernel ResNets for timm.

Importing the package registers every model with timm, so that ``timm.create_model('sk_resnet50')`` works, and does
nothing else.
"""
from typing import List

import timm

from . import attention, layers, models, weights
from .fuse import fuse
from .graft import graft
from .loading import LoadReport, load, load_weights
from .twin import from_timm, to_timm
from .version import __version__

__all__ = [
    'MODEL_MODULES', 'LoadReport', '__version__', 'attention', 'from_timm', 'fuse', 'graft', 'layers', 'list_models',
    'load', 'load_weights', 'models', 'to_timm', 'weights']

# timm's registry keys models by the basename of the module registering them.
MODEL_MODULES = ('se_resnet', 'sk_resnet')


def list_models(filter: str = '', pretrained: bool = False, include_tags: bool = False) -> List[str]:
    """timm_sesk's registered models (as ``timm.list_models``, restricted to this package's model modules)."""
    return timm.list_models(filter, module=MODEL_MODULES, pretrained=pretrained, include_tags=include_tags)

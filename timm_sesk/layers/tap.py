"""A pass-through point where attention weights can be observed."""
from torch import nn

__all__ = ['AttentionTap']


class AttentionTap(nn.Identity):
    """Returns its input unchanged. SE and SK layers pass the weights they apply through one, so that a forward hook
    on it (``timm_sesk.attention.record``) sees exactly those weights; with no hook it costs one empty call."""

"""Whether the current forward runs under a tracer rather than eagerly."""
import torch
from torch.fx import _symbolic_trace

__all__ = ['is_fx_symbolic_tracing', 'is_tracing']

# torch.fx renamed its query; the older one also answers True under torch.export.
_fx_query = getattr(_symbolic_trace, 'is_fx_symbolic_tracing', None) or _symbolic_trace.is_fx_tracing


def is_fx_symbolic_tracing() -> bool:
    """Inside ``torch.fx.symbolic_trace``, where tensors are proxies and shapes unknown."""
    return _fx_query()


def is_tracing() -> bool:
    """Inside torch.fx symbolic tracing or torch.compile / torch.export, where eager-only tricks must not run."""
    return _fx_query() or torch.compiler.is_compiling()

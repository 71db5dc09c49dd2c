"""The export form of a Selective Kernel unit: the function of an eval-mode ``SelectiveKernel``, written as the graph
that ONNX Runtime and OpenVINO run fastest.

``timm_sesk.deploy.export`` swaps every SK unit of its fused copy of the model for this form (``export_form``) before
tracing. The PyTorch model, and what ``timm_sesk.fuse`` makes of it, stay as they are: hooks, fx and the attention
taps work there. This form has no tap and is for eval only; it exists inside an export.

What it changes, each measured in benchmarks/RESULTS.md ("SK units in the runtimes"):

* The fuse stays on ``B x C x 1 x 1`` tensors: keep-dim pooling of each path and the two FCs as 1x1 convolutions,
  so no reshape, gather or layout reorder sits between the pooling and the select.
* Two paths: ``softmax([l1, l2])[0] == sigmoid(l1 - l2)``, so one FC of C outputs (rows ``W1 - W2``) replaces the
  FC of 2C outputs, the reshape and the softmax.
* Two paths, select: ``a U1 + (1 - a) U2 == (r U1 + U2) / (1 + r)`` with ``r = exp(l1 - l2)``: multiply, add,
  multiply, a chain in which each full-resolution tensor enters once, which OpenVINO fuses into one pass over the
  activations (``U2 + a (U1 - U2)`` makes two: it fuses no chain that reads an input twice). ``torch.lerp`` exports
  to ONNX as a ``Where`` between two formulas, computed at full resolution.
* For int8 (``quantizable=True``) the select stays ``U2 + a (U1 - U2)``: NNCF quantizes the inputs of multiplies,
  and int8 cannot hold r, which spans orders of magnitude; a lies in [0, 1].
"""
import torch
from torch import nn

from .sk import SelectiveKernel, path_inputs, weighted_sum

__all__ = ['SelectiveKernelExport', 'export_form']

# Logits l1 - l2 are clamped here before exp: r stays finite (and r U1 for |U1| < 1e29) in f32 and bf16, and
# sigmoid(20) is 1 to within 2e-9, below fp32's resolution of 1, so the form stays exact where the selection
# saturates (unclamped, exp overflowed past 88 and inf / inf gave NaN). OpenVINO fuses the clamp into the Exp, on
# B x C x 1 x 1; the full-resolution chain stays one pass. (f16, which the CPU loader does not offer, would overflow.)
_LOGIT_LIMIT = 20.0


def _conv1x1(weight: torch.Tensor, bias: torch.Tensor = None) -> nn.Conv2d:
    """A 1x1 convolution computing ``F.linear(x, weight, bias)`` on ``B x C x 1 x 1``."""
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None, device=weight.device,
                     dtype=weight.dtype)
    conv.weight.data.copy_(weight[:, :, None, None])
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv


class SelectiveKernelExport(nn.Module):
    """An eval-mode ``SelectiveKernel`` as the graph the runtimes run fastest (see the module docstring)."""

    def __init__(self, unit: SelectiveKernel, quantizable: bool = False):
        """
        Args:
            unit: The unit to compute, in eval mode and usually fused (``timm_sesk.fuse``). Its path modules and its
                fuse norm and activation are shared, not copied.
            quantizable: Select two paths with a weight in [0, 1], for int8 quantization (two passes over the
                activations in OpenVINO instead of one).
        """
        super().__init__()
        self.quantizable = quantizable
        attn = unit.attn
        self.num_paths = unit.num_paths
        self.split_channels = unit.split_channels
        self.paths = unit.paths
        self.fc_reduce = _conv1x1(attn.fc_reduce.weight.detach(), getattr(attn.fc_reduce, 'bias', None))
        self.bn = attn.bn  # the block's 2d norm on B x d x 1 x 1, as in SelectiveKernelAttn; Identity once fused
        self.act = attn.act
        select = attn.fc_select.weight.detach()
        if self.num_paths == 2:  # sigmoid of l1 - l2
            channels = unit.out_channels
            select = select[:channels] - select[channels:]
        self.fc_select = _conv1x1(select)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paths = [path(xi) for path, xi in zip(self.paths, path_inputs(x, self.num_paths, self.split_channels))]
        s = paths[0].mean((2, 3), keepdim=True)
        for u in paths[1:]:
            s = s + u.mean((2, 3), keepdim=True)
        logits = self.fc_select(self.act(self.bn(self.fc_reduce(s))))
        if self.num_paths == 2 and self.quantizable:
            return paths[1] + torch.sigmoid(logits) * (paths[0] - paths[1])
        if self.num_paths == 2:
            r = torch.exp(logits.clamp(max=_LOGIT_LIMIT))  # a / (1 - a)
            return (paths[0] * r + paths[1]) * (1 / (1 + r))
        return weighted_sum(paths, torch.softmax(logits.unflatten(1, (self.num_paths, -1)), dim=1))


def export_form(model: nn.Module, quantizable: bool = False) -> nn.Module:
    """Swap every ``SelectiveKernel`` of an eval-mode model for its ``SelectiveKernelExport``, in place.

    Args:
        model: A model, backbone or unit in eval mode (``timm_sesk.deploy.export`` passes its fused copy).
        quantizable: The form for int8 quantization (see ``SelectiveKernelExport``).

    Returns:
        ``model`` with the units swapped (a ``SelectiveKernel`` passed itself comes back as its export form).
    """
    if isinstance(model, SelectiveKernel):
        return SelectiveKernelExport(model, quantizable)
    for module in list(model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, SelectiveKernel):
                setattr(module, child_name, SelectiveKernelExport(child, quantizable))
    return model

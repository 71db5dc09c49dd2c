"""Straightforward SE and SK units written from the papers' equations, as the reference blog writes them.

They take the parameters of timm_sesk's units and compute the same function the obvious way: a list of path
outputs summed with ``reduce``, ``AdaptiveAvgPool2d``, the FC layers, ``nn.Softmax`` over the paths, ``chunk`` and a
weighted sum. ``naive_copy`` swaps them into a copy of a timm_sesk model, so that the benchmark can time the same
network and weights computed three ways: timm_sesk, timm, and this.
"""
import copy
from functools import reduce

import torch
import torch.nn.functional as F
from torch import nn

from timm_sesk.layers import SelectiveKernel, SqueezeExcite

__all__ = ['NaiveSE', 'NaiveSK', 'naive_copy']


class NaiveSE(nn.Module):
    """Eq. 2-4 of the SENet paper, as in the blog's SELayer."""

    def __init__(self, se: SqueezeExcite):
        super().__init__()
        self.se = se
        self.avg_pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = torch.relu(F.linear(y, self.se.fc1.weight, self.se.fc1.bias))
        y = torch.sigmoid(F.linear(y, self.se.fc2.weight, self.se.fc2.bias)).view(b, c, 1, 1)
        return x * y.expand_as(x)


class NaiveSK(nn.Module):
    """Split, fuse and select (SKNet paper, Eq. 1-6), as in the blog's SKConv."""

    def __init__(self, sk: SelectiveKernel):
        super().__init__()
        self.sk = sk
        self.global_pool = nn.AdaptiveAvgPool2d(output_size=1)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        sk = self.sk
        batch_size = x.size(0)
        inputs = torch.chunk(x, sk.num_paths, dim=1) if sk.split_input else [x] * sk.num_paths
        # conv -> BN -> ReLU as written, without the BN folding that timm_sesk's ConvBnAct does in eval
        output = [path.aa(path.act(path.drop(path.bn(path.conv(xi))))) for path, xi in zip(sk.paths, inputs)]
        U = reduce(lambda a, b: a + b, output)
        s = self.global_pool(U).flatten(1)
        z = torch.relu(sk.attn.bn(F.linear(s, sk.attn.fc_reduce.weight)[:, :, None, None]))
        a_b = F.linear(z.flatten(1), sk.attn.fc_select.weight)
        a_b = self.softmax(a_b.reshape(batch_size, sk.num_paths, sk.out_channels, -1))
        a_b = [w.reshape(batch_size, sk.out_channels, 1, 1) for w in a_b.chunk(sk.num_paths, dim=1)]
        V = [u * w for u, w in zip(output, a_b)]
        return reduce(lambda a, b: a + b, V)


def naive_copy(model: nn.Module) -> nn.Module:
    """A deep copy of a timm_sesk model whose SE and SK units compute the naive way (same parameters)."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, (SqueezeExcite, SelectiveKernel)):
            parent_name, _, attr = name.rpartition('.')
            parent = model.get_submodule(parent_name)
            setattr(parent, attr, NaiveSE(module) if isinstance(module, SqueezeExcite) else NaiveSK(module))
    return model

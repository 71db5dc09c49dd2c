"""SE and SK layers against straightforward implementations written from the papers' equations.

The references below use only tensor arithmetic and ``F.conv2d``; they share no code with ``timm_sesk.layers``.
Everything runs in float64, so agreement is to rounding.
"""
import pytest
import torch
import torch.nn.functional as F
from helpers import randomize_params
from torch import nn

from timm_sesk.layers import SelectiveKernel, SqueezeExcite, se_hidden_channels, sk_attn_channels
from timm_sesk.models import SE_POSITIONS, BasicBlock, Bottleneck


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    return randomize_params(module, seed).eval()


def _bn(x, bn: nn.BatchNorm2d):
    """Inference batch norm: (x - mu) / sqrt(var + eps) * gamma + beta."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return ((x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


# --- Squeeze-and-Excitation (Hu et al., Eq. 2-4) ---

def se_reference(x, w1, b1, w2, b2, squeeze='avg', gate=torch.sigmoid):
    batch, channels, height, width = x.shape
    flat = x.reshape(batch, channels, height * width)
    z = flat.sum(-1) / (height * width) if squeeze == 'avg' else flat.max(-1).values  # Eq. 2: squeeze
    hidden = torch.relu(torch.einsum('rc,bc->br', w1, z) + b1)
    s = gate(torch.einsum('cr,br->bc', w2, hidden) + b2)  # Eq. 3: excitation
    return x * s[:, :, None, None], s  # Eq. 4: scale


@pytest.mark.parametrize('squeeze', ['avg', 'max'])
@pytest.mark.parametrize('bias', [True, False])
def test_se_matches_equations(squeeze, bias):
    se = _randomize(SqueezeExcite(64, reduction=16, squeeze=squeeze, bias=bias))
    x = torch.randn(3, 64, 7, 5)
    zeros = torch.zeros(())
    expected, expected_s = se_reference(
        x, se.fc1.weight, se.fc1.bias if bias else zeros, se.fc2.weight, se.fc2.bias if bias else zeros, squeeze)
    torch.testing.assert_close(se(x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(se.excitation(x), expected_s, rtol=1e-12, atol=1e-12)
    assert se.fc1.bias is None if not bias else se.fc1.bias.shape == (se_hidden_channels(64),)


def test_se_gate_is_configurable():
    se = _randomize(SqueezeExcite(32, reduction=4, gate_layer='hard_sigmoid'))
    x = torch.randn(2, 32, 4, 4)
    expected, _ = se_reference(x, se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias, gate=F.hardsigmoid)
    torch.testing.assert_close(se(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('channels, reduction, divisor, hidden', [
    (64, 16, 8, 8),  # timm's SE-ResNet rounds up to a multiple of 8 (and at least 8)
    (64, 16, 1, 4),  # the SENet authors' C // r
    (256, 16, 8, 16),
    (2048, 16, 1, 128),
    (100, 16, 1, 6),
])
def test_se_hidden_width(channels, reduction, divisor, hidden):
    assert se_hidden_channels(channels, reduction, divisor) == hidden
    assert SqueezeExcite(channels, reduction=reduction, divisor=divisor).fc1.out_features == hidden


def test_se_rejects_unknown_squeeze():
    with pytest.raises(ValueError, match="squeeze must be one of"):
        SqueezeExcite(16, squeeze='median')


# --- Selective Kernel (Li et al., Eq. 1-6) ---

def sk_reference(sk: SelectiveKernel, x, stride, dilation, num_paths, keep_3x3, split_input, groups):
    # Split: path m is a (2m+3)-wide receptive field, as a dilated 3x3 or a dense kernel, then BN and ReLU.
    inputs = torch.chunk(x, num_paths, dim=1) if split_input else [x] * num_paths
    paths = []
    for m, (xi, path) in enumerate(zip(inputs, sk.paths)):
        k, d = (3, dilation * (m + 1)) if keep_3x3 else (2 * m + 3, dilation)
        u = F.conv2d(xi, path.conv.weight, None, stride, d * (k - 1) // 2, d, groups)
        paths.append(torch.relu(_bn(u, path.bn)))
    # Fuse, Eq. 1-2: U = sum of paths, s = GAP(U), z = ReLU(BN(W s)).
    U = sum(paths)
    s = U.mean(dim=(2, 3))
    z = torch.relu(_bn(s @ sk.attn.fc_reduce.weight.t(), sk.attn.bn))
    # Select, Eq. 5-6: per-channel softmax over the paths, V = sum_m a_m U_m.
    logits = (z @ sk.attn.fc_select.weight.t()).reshape(x.shape[0], num_paths, -1)
    a = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    V = sum(a[:, m, :, None, None] * paths[m] for m in range(num_paths))
    return V, a


@pytest.mark.parametrize('num_paths, keep_3x3, split_input, groups, stride, dilation', [
    (2, True, False, 32, 1, 1),  # SKNet's SK[2, 32, 16]
    (2, True, False, 32, 2, 1),
    (2, True, True, 1, 1, 1),  # timm's basic-block SK
    (3, True, False, 8, 1, 1),
    (3, False, False, 8, 1, 1),  # dense 3x3, 5x5, 7x7 kernels
    (2, False, True, 4, 2, 2),
    (2, True, False, 32, 1, 2),  # module dilation (output stride 16 / 8)
])
def test_sk_matches_equations(num_paths, keep_3x3, split_input, groups, stride, dilation):
    sk = _randomize(SelectiveKernel(
        96, 64, num_paths=num_paths, groups=groups, stride=stride, dilation=dilation, keep_3x3=keep_3x3,
        split_input=split_input))
    x = torch.randn(3, 96, 9, 10)
    expected, weights = sk_reference(sk, x, stride, dilation, num_paths, keep_3x3, split_input, groups)
    torch.testing.assert_close(sk(x), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sk.attn(sk.split(x)), weights, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3, 64))


@pytest.mark.parametrize('channels, reduction, min_channels, width', [
    (128, 16, 32, 32), (256, 16, 32, 32), (512, 16, 32, 32), (1024, 16, 32, 64),  # SKNet-50: max(C/16, 32)
    (64, 8, 16, 16), (512, 8, 16, 64),  # timm's SK-ResNet-18/34
])
def test_sk_fuse_width_is_max_of_ratio_and_floor(channels, reduction, min_channels, width):
    assert sk_attn_channels(channels, reduction, min_channels) == width
    sk = SelectiveKernel(channels, reduction=reduction, min_attn_channels=min_channels)
    assert sk.attn.fc_reduce.out_features == width
    assert sk.attn.fc_select.out_features == 2 * channels


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_paths=1), 'at least 2 paths'),
    (dict(split_input=True, num_paths=3), 'divisible by 3'),
    (dict(groups=5), 'groups=5 must divide'),
])
def test_sk_rejects_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelectiveKernel(64, 64, **kwargs)


# --- SE integration in residual blocks (Hu et al., Fig. 5) ---

def block_reference(block, x, position):
    """Standard: SE on the branch before the addition; PRE: on the branch input; POST: after the addition and
    ReLU; Identity: on the identity path."""
    se = block.se
    branch_in = se(x) if position == 'pre' else x
    convs = [block.conv1, block.conv2] + ([block.conv3] if hasattr(block, 'conv3') else [])
    branch = branch_in
    for conv in convs:
        branch = conv(branch)
    if position == 'standard':
        branch = se(branch)
    shortcut = block.downsample(x) if block.downsample is not None else x
    if position == 'identity':
        shortcut = se(shortcut)
    out = torch.relu(branch + shortcut)
    return se(out) if position == 'post' else out


def _downsample(inplanes, outplanes, stride):
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes))


@pytest.mark.parametrize('position', SE_POSITIONS)
@pytest.mark.parametrize('block_cls, planes', [(BasicBlock, 32), (Bottleneck, 16)])
def test_se_positions_follow_the_paper(position, block_cls, planes):
    outplanes = planes * block_cls.expansion
    block = _randomize(block_cls(
        48, planes, stride=2, downsample=_downsample(48, outplanes, 2), attn_layer=SqueezeExcite,
        attn_position=position))
    assert block.se.fc1.in_features == (48 if position == 'pre' else outplanes)
    x = torch.randn(2, 48, 8, 8)
    torch.testing.assert_close(block(x.clone()), block_reference(block, x, position), rtol=1e-12, atol=1e-12)


def test_positions_are_distinct():
    x = torch.randn(2, 64, 8, 8)
    outputs = []
    for position in SE_POSITIONS:
        block = _randomize(Bottleneck(64, 16, attn_layer=SqueezeExcite, attn_position=position))
        outputs.append(block(x.clone()))
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert not torch.allclose(outputs[i], outputs[j])


def test_unknown_position_is_rejected():
    with pytest.raises(ValueError, match='attn_position must be one of'):
        Bottleneck(64, 16, attn_layer=SqueezeExcite, attn_position='middle')


def test_stride_in_1x1_moves_the_stride():
    block = Bottleneck(64, 16, stride=2, downsample=_downsample(64, 64, 2), stride_in_1x1=True)
    assert block.conv1.conv.stride == (2, 2) and block.conv2.conv.stride == (1, 1)
    block = Bottleneck(64, 16, stride=2, downsample=_downsample(64, 64, 2))
    assert block.conv1.conv.stride == (1, 1) and block.conv2.conv.stride == (2, 2)

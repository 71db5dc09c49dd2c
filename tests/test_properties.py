"""Property-based tests: SE and SK layers and SE block positions over their configurations, against the papers'
equations written out below with the layers' own parameters.

For every drawn configuration: output shapes, finite outputs, and agreement with the equations in float64, in eval
mode (randomised BatchNorm statistics; the folded, in-place no-grad paths and the out-of-place grad-enabled paths) and
in training mode (batch statistics; gradients of every parameter exist, are finite and match autograd through the
equations, which checks the memory-efficient recomputing backward of SK units).

Examples are derandomised, so CI runs the same configurations every time.
"""
from functools import partial
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from helpers import randomize_params
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from torch import nn

from timm_sesk.layers import SelectiveKernel, SqueezeExcite, se_hidden_channels, sk_attn_channels
from timm_sesk.models import SE_POSITIONS, BasicBlock, Bottleneck

TOL = 1e-10
# Reproducible in CI, and no shrinking: a failure reports its drawn configuration at once instead of minutes later.
CI = dict(deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate))
GATES = {'sigmoid': torch.sigmoid, 'hard_sigmoid': F.hardsigmoid, 'tanh': torch.tanh}


# --- The equations ---

def bn(x: torch.Tensor, norm: nn.BatchNorm2d, training: bool) -> torch.Tensor:
    """BatchNorm over all dims but the channels: batch statistics (biased variance) in training, else running ones."""
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1, -1] + [1] * (x.dim() - 2)
    if training:
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
    else:
        mean, var = norm.running_mean, norm.running_var
    return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + norm.eps) * norm.weight.view(shape) \
        + norm.bias.view(shape)


def conv_bn(x, unit, stride: int, training: bool, act: bool = True, dilation: int = 1, groups: int = 1):
    """ReLU(BN(conv(x))) with 'same' padding for odd kernels: the unit every block convolution is."""
    k = unit.conv.weight.shape[-1]
    y = F.conv2d(x, unit.conv.weight, None, stride, dilation * (k - 1) // 2, dilation, groups)
    y = bn(y, unit.bn, training)
    return torch.relu(y) if act else y


def se_equations(se: SqueezeExcite, x, squeeze: str, gate: Callable) -> torch.Tensor:
    """Hu et al. Eq. 2-4: s = squeeze(x), e = gate(W2 relu(W1 s + b1) + b2), y = x * e."""
    flat = x.flatten(2)
    s = flat.mean(-1) if squeeze == 'avg' else flat.max(-1).values
    hidden = torch.relu(s @ se.fc1.weight.t() + (se.fc1.bias if se.fc1.bias is not None else 0))
    e = gate(hidden @ se.fc2.weight.t() + (se.fc2.bias if se.fc2.bias is not None else 0))
    return x * e[:, :, None, None]


def sk_equations(sk: SelectiveKernel, x, *, num_paths, groups, stride, dilation, keep_3x3, split_input, training):
    """Li et al.: U_m = ReLU(BN(conv_m(x))), s = GAP(sum_m U_m), z = ReLU(BN(W_r s)), a = softmax_m(W_s z),
    V = sum_m a_m U_m. Path m (0-based) is a 3x3 conv at dilation m+1, or a dense (2m+3)x(2m+3) conv."""
    inputs = torch.chunk(x, num_paths, dim=1) if split_input else [x] * num_paths
    U = [conv_bn(xm, path, stride, training, dilation=dilation * (m + 1) if keep_3x3 else dilation, groups=groups)
         for m, (xm, path) in enumerate(zip(inputs, sk.paths))]
    s = sum(U).mean(dim=(2, 3))
    z = torch.relu(bn(s @ sk.attn.fc_reduce.weight.t(), sk.attn.bn, training))
    logits = (z @ sk.attn.fc_select.weight.t()).view(x.shape[0], num_paths, -1)
    a = torch.softmax(logits, dim=1)
    return sum(a[:, m, :, None, None] * U[m] for m in range(num_paths)), a


# --- Helpers ---

def _randomize(module: nn.Module, seed: int) -> nn.Module:
    return randomize_params(module.double(), seed)


def _input(batch, channels, height, width, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, dtype=torch.float64, generator=g)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = TOL, what: str = '') -> None:
    assert actual.shape == expected.shape, what
    assert torch.isfinite(actual).all(), what
    scale = max(1.0, expected.abs().max().item())
    assert (actual - expected).abs().max().item() <= tol * scale, what


def _out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1  # odd kernels with 'same' padding


def _check_eval(module: nn.Module, x: torch.Tensor, reference: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Eval: the no-grad (folded, in place) and grad-enabled (out of place) paths both match the equations."""
    module.eval()
    with torch.no_grad():
        expected = reference(x)
        no_grad = module(x.clone())
    _assert_close(no_grad, expected, what='eval, no_grad')
    _assert_close(module(x.clone().requires_grad_()).detach(), expected, what='eval, grad enabled')


def _check_train(module: nn.Module, x: torch.Tensor, reference: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Training: output on batch statistics, and every parameter's gradient exists, is finite and matches autograd
    through the equations; BatchNorm statistics are updated once per forward, not again by any recomputation."""
    module.train()
    params: List[nn.Parameter] = list(module.parameters())
    out = module(x.clone())
    weights = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(7))
    (out * weights).sum().backward()
    expected = reference(x.clone())
    _assert_close(out.detach(), expected.detach(), what='train output')
    expected_grads = torch.autograd.grad((expected * weights).sum(), params, allow_unused=True)
    for (name, p), g in zip(module.named_parameters(), expected_grads):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        _assert_close(p.grad, g if g is not None else torch.zeros_like(p), tol=1e-8, what=name)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_batches_tracked.item() == 1


# --- Selective Kernel ---

@st.composite
def sk_configs(draw):
    num_paths = draw(st.integers(2, 4))
    groups = draw(st.sampled_from([1, 2, 4]))
    split_input = draw(st.booleans())
    in_channels = groups * draw(st.integers(1, 3)) * (num_paths if split_input else 1)
    return dict(
        in_channels=in_channels,
        out_channels=groups * draw(st.integers(1, 4)),
        num_paths=num_paths,
        groups=groups,
        reduction=draw(st.sampled_from([1, 2, 4, 8, 16])),
        min_attn_channels=draw(st.integers(1, 8)),
        stride=draw(st.sampled_from([1, 2])),
        dilation=draw(st.sampled_from([1, 2])),
        keep_3x3=draw(st.booleans()),
        split_input=split_input,
    )


def _sk(cfg, seed: int):
    sk = _randomize(SelectiveKernel(**cfg), seed)
    kwargs = {k: cfg[k] for k in ('num_paths', 'groups', 'stride', 'dilation', 'keep_3x3', 'split_input')}
    return sk, kwargs


@settings(max_examples=60, **CI)
@given(cfg=sk_configs(), batch=st.integers(1, 3), height=st.integers(5, 9), width=st.integers(5, 9),
       seed=st.integers(0, 2 ** 16))
def test_sk_eval_matches_the_equations(cfg, batch, height, width, seed):
    sk, kwargs = _sk(cfg, seed)
    assert sk.attn.fc_reduce.out_features == sk_attn_channels(
        cfg['out_channels'], cfg['reduction'], cfg['min_attn_channels'])
    x = _input(batch, cfg['in_channels'], height, width, seed)
    _check_eval(sk, x, lambda t: sk_equations(sk, t, training=False, **kwargs)[0])
    assert sk.eval()(x).shape == (batch, cfg['out_channels'], _out_size(height, cfg['stride']),
                                  _out_size(width, cfg['stride']))
    with torch.no_grad():
        weights = sk.attn(sk.split(x))
        _, expected = sk_equations(sk, x, training=False, **kwargs)
    _assert_close(weights, expected, what='attention weights')
    _assert_close(weights.sum(dim=1), torch.ones_like(weights[:, 0]), what='weights sum to one')


@settings(max_examples=50, **CI)
@given(cfg=sk_configs(), memory_efficient=st.booleans(), batch=st.integers(2, 3), height=st.integers(5, 9),
       width=st.integers(5, 9), seed=st.integers(0, 2 ** 16))
def test_sk_training_matches_the_equations(cfg, memory_efficient, batch, height, width, seed):
    sk, kwargs = _sk(dict(cfg, memory_efficient=memory_efficient), seed)
    x = _input(batch, cfg['in_channels'], height, width, seed)
    sk.train()
    assert sk._checkpointable() == memory_efficient
    _check_train(sk, x, lambda t: sk_equations(sk, t, training=True, **kwargs)[0])


# --- Squeeze-and-Excitation ---

@st.composite
def se_configs(draw):
    return dict(
        channels=draw(st.integers(1, 48)),
        reduction=draw(st.sampled_from([1, 2, 4, 8, 16])),
        divisor=draw(st.sampled_from([1, 2, 4, 8])),
        squeeze=draw(st.sampled_from(['avg', 'max'])),
        bias=draw(st.booleans()),
        gate_layer=draw(st.sampled_from(sorted(GATES))),
    )


@settings(max_examples=60, **CI)
@given(cfg=se_configs(), batch=st.integers(2, 3), height=st.integers(1, 9), width=st.integers(1, 9),
       seed=st.integers(0, 2 ** 16))
def test_se_matches_the_equations(cfg, batch, height, width, seed):
    se = _randomize(SqueezeExcite(**cfg), seed)
    hidden = se_hidden_channels(cfg['channels'], cfg['reduction'], cfg['divisor'])
    assert se.fc1.out_features == se.fc2.in_features == hidden
    assert hidden >= 1 and hidden % cfg['divisor'] == 0
    assert (se.fc1.bias is not None) == cfg['bias']
    x = _input(batch, cfg['channels'], height, width, seed)
    reference = partial(se_equations, se, squeeze=cfg['squeeze'], gate=GATES[cfg['gate_layer']])
    _check_eval(se, x, reference)
    _check_train(se, x, reference)  # SE has no norm: training is the same function, checked with gradients


# --- SE positions in residual blocks (Hu et al., Fig. 5) ---

def block_equations(block, x, *, position, stride, bottleneck, sk_kwargs: Optional[dict], training):
    """Standard: SE on the branch before the addition; pre: on the branch input; post: after the addition and its
    ReLU; identity: on the identity path. The branch is conv units (an SK unit in place of the spatial conv)."""
    def se(t):
        return se_equations(block.se, t, 'avg', torch.sigmoid)

    def spatial(t, unit, act):
        if sk_kwargs is not None:
            return sk_equations(unit, t, stride=stride, training=training, **sk_kwargs)[0]
        return conv_bn(t, unit, stride, training, act=act)

    branch = se(x) if position == 'pre' else x
    if bottleneck:
        branch = conv_bn(branch, block.conv1, 1, training)
        branch = spatial(branch, block.conv2, act=True)
        branch = conv_bn(branch, block.conv3, 1, training, act=False)
    else:
        branch = spatial(branch, block.conv1, act=True)
        branch = conv_bn(branch, block.conv2, 1, training, act=False)
    if position == 'standard':
        branch = se(branch)
    shortcut = x
    if block.downsample is not None:
        conv, norm = block.downsample[0], block.downsample[1]
        shortcut = bn(F.conv2d(x, conv.weight, None, stride), norm, training)
    if position == 'identity':
        shortcut = se(shortcut)
    out = torch.relu(branch + shortcut)
    return se(out) if position == 'post' else out


@st.composite
def block_configs(draw):
    bottleneck = draw(st.booleans())
    planes = draw(st.sampled_from([4, 8]))
    outplanes = planes * (4 if bottleneck else 1)
    stride = draw(st.sampled_from([1, 2]))
    inplanes = draw(st.sampled_from([outplanes, 8, 12])) if stride == 1 else draw(st.sampled_from([8, 12]))
    return dict(
        bottleneck=bottleneck, planes=planes, inplanes=inplanes, outplanes=outplanes, stride=stride,
        position=draw(st.sampled_from(SE_POSITIONS)), reduction=draw(st.sampled_from([2, 4, 16])),
        sk=draw(st.booleans()),
    )


def _block(cfg, seed):
    stride, inplanes, outplanes = cfg['stride'], cfg['inplanes'], cfg['outplanes']
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes))
    sk_kwargs = dict(num_paths=2, groups=1, dilation=1, keep_3x3=True, split_input=False) if cfg['sk'] else None
    block_cls = Bottleneck if cfg['bottleneck'] else BasicBlock
    block = block_cls(
        inplanes, cfg['planes'], stride=stride, downsample=downsample,
        attn_layer=partial(SqueezeExcite, reduction=cfg['reduction']), attn_position=cfg['position'],
        sk_layer=partial(SelectiveKernel, reduction=4, min_attn_channels=4) if cfg['sk'] else None)
    return _randomize(block, seed), sk_kwargs


@settings(max_examples=50, **CI)
@given(cfg=block_configs(), batch=st.integers(2, 3), height=st.integers(5, 9), width=st.integers(5, 9),
       seed=st.integers(0, 2 ** 16))
def test_se_block_positions_match_the_equations(cfg, batch, height, width, seed):
    block, sk_kwargs = _block(cfg, seed)
    assert block.se.fc1.in_features == (cfg['inplanes'] if cfg['position'] == 'pre' else cfg['outplanes'])
    x = _input(batch, cfg['inplanes'], height, width, seed)
    equations = partial(block_equations, block, position=cfg['position'], stride=cfg['stride'],
                        bottleneck=cfg['bottleneck'], sk_kwargs=sk_kwargs)
    _check_eval(block, x, partial(equations, training=False))
    with torch.no_grad():
        out = block.eval()(x.clone())
    assert out.shape == (batch, cfg['outplanes'], _out_size(height, cfg['stride']), _out_size(width, cfg['stride']))
    _check_train(block, x, partial(equations, training=True))

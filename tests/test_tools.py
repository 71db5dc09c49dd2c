"""A timm model in every tool: forward hooks, torch.fx, feature extraction and knobs behave as on timm's own twins.

Each family shape is compared with the timm network it reproduces (its reference, with the state dict mapped by the
loader's key mapping): the modules whose forward hooks fire, and the modules a torch.fx trace calls, must be the same
under the key mapping, in eval and in training. Traces must keep reading the live parameters and buffers (no tensor
constants), so that they stay equal to eager after training steps and after loading other weights.
"""
import copy
import warnings

import pytest
import timm
import torch
from helpers import IMG, randomize_bn, rel_err
from timm.models.resnet import ResNet
from timm.models.sknet import SelectiveKernelBottleneck
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import timm_sesk
from timm_sesk.layers import AttentionTap, SelectiveKernel, SelectiveKernelAttn, SqueezeExcite
from timm_sesk.weights import REFERENCES, convert_state_dict, create_reference

# One of each family shape: SE basic, SE bottleneck, the SENet authors' layout, SK basic, SK bottleneck, 3 SK paths.
FAMILIES = {
    'se_basic': ('se_resnet18', {}),
    'se_bottleneck': ('se_resnet50', {}),
    'se_orig': ('se_resnext26_32x4d_orig', {}),
    'sk_basic': ('sk_resnet18', {}),
    'sk_bottleneck': ('sk_resnet26', {}),
    'sk_3_paths': ('sk_resnet26', {'sk_paths': 3}),
}


def _twin(arch: str, kwargs: dict) -> nn.Module:
    if kwargs.get('sk_paths') == 3:
        # timm's SK bottleneck with three 3x3 paths at dilations 1, 2, 3 (its kernel_size list with keep_3x3)
        return ResNet(
            block=SelectiveKernelBottleneck, layers=(2, 2, 2, 2), cardinality=32, base_width=4, zero_init_last=False,
            block_args=dict(sk_kwargs=dict(rd_ratio=1 / 16, rd_divisor=32, split_input=False, kernel_size=[3, 5, 7])))
    return create_reference(arch)


def _pair(family: str, seed: int = 0):
    """timm's twin and ours, with the same random weights and non-identity BatchNorms."""
    arch, kwargs = FAMILIES[family]
    torch.manual_seed(seed)
    twin = randomize_bn(_twin(arch, kwargs), seed=seed)
    ours = timm.create_model(arch, **kwargs)
    ours.load_state_dict(convert_state_dict(twin.state_dict(), REFERENCES[arch].mapping))
    return twin, ours


def _x(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def _module_names_in_our_layout(twin: nn.Module, mapping: str) -> dict:
    """Each twin module that holds parameters or buffers, by name, mapped to the name of our module holding them."""
    names = {}
    for name, module in twin.named_modules():
        own = [k for k, _ in (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False))]
        if own:
            key = f'{name}.{own[0]}'
            (ours_key,) = convert_state_dict({key: twin.state_dict()[key]}, mapping)
            names[name] = ours_key.rpartition('.')[0]
    return names


def _holds_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def _hook_counts(model: nn.Module, x: torch.Tensor) -> dict:
    """How often each named module's forward hook fires in one forward pass."""
    counts = {}
    handles = [
        m.register_forward_hook(lambda m, i, o, name=name: counts.__setitem__(name, counts.get(name, 0) + 1))
        for name, m in model.named_modules() if name
    ]
    try:
        if model.training:
            model(x).sum().backward()
        else:
            with torch.no_grad():
                model(x)
    finally:
        for h in handles:
            h.remove()
    return counts


@pytest.mark.parametrize('mode', ['eval', 'train'])
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_hooks_fire_on_the_same_modules_as_on_timms_twin(family, mode):
    twin, ours = _pair(family)
    twin.train(mode == 'train')
    ours.train(mode == 'train')
    x = _x()
    twin_fired = _hook_counts(twin, x)
    ours_fired = _hook_counts(ours, x)
    to_ours = _module_names_in_our_layout(twin, REFERENCES[FAMILIES[family][0]].mapping)
    expected = {to_ours[n] for n in twin_fired if n in to_ours}
    stateful = {n for n, m in ours.named_modules() if _holds_state(m)}
    assert {n for n in ours_fired if n in stateful} == expected
    assert expected == stateful  # every conv, norm and linear of ours is one of them
    # Every SE and SK unit, SK attention and SK path is called as a module, once, as in timm.
    units = [n for n, m in ours.named_modules()
             if isinstance(m, (SqueezeExcite, SelectiveKernel, SelectiveKernelAttn, AttentionTap))
             or (n.rpartition('.')[0].endswith('.paths'))]
    assert units
    assert {n: ours_fired.get(n, 0) for n in units} == {n: 1 for n in units}
    assert all(ours_fired[n] == 1 for n in stateful)


def _traced_leaf_modules(graph_module: torch.fx.GraphModule) -> set:
    modules = dict(graph_module.named_modules())
    return {n.target for n in graph_module.graph.nodes if n.op == 'call_module' and _holds_state(modules[n.target])}


def _tensor_constants(graph_module: torch.fx.GraphModule) -> list:
    return [n.target for n in graph_module.graph.nodes if n.op == 'get_attr' and 'tensor_constant' in n.target]


def _sgd_steps(model: nn.Module, steps: int = 3) -> None:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        optimizer.zero_grad()
        model(_x(seed=10 + step)).logsumexp(dim=1).mean().backward()
        optimizer.step()


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_fx_trace_calls_the_same_modules_as_timm_and_stays_live(family):
    twin, ours = _pair(family)
    to_ours = _module_names_in_our_layout(twin, REFERENCES[FAMILIES[family][0]].mapping)
    stateful = {n for n, m in ours.named_modules() if _holds_state(m)}
    for mode in (False, True):
        traced = torch.fx.symbolic_trace(ours.train(mode))
        assert _tensor_constants(traced) == []
        # Every conv, norm and linear is a call_module, as in timm's twin (whose timm-defined norm-act layers
        # plain torch.fx traces through, so its set may be smaller).
        assert _traced_leaf_modules(traced) == stateful
        assert {to_ours[n] for n in _traced_leaf_modules(torch.fx.symbolic_trace(twin.train(mode)))} <= stateful
    # The eval trace keeps reading the model's parameters and statistics: it follows training and new weights.
    traced = torch.fx.symbolic_trace(ours.eval())
    _sgd_steps(ours)
    ours.eval()
    traced.eval()
    with torch.no_grad():
        assert rel_err(traced(_x()), ours(_x())) < 1e-5
    _, other = _pair(family, seed=5)
    traced.load_state_dict(other.state_dict())  # strict: the trace holds exactly the model's state
    with torch.no_grad():
        assert rel_err(traced(_x()), other.eval()(_x())) < 1e-5


@pytest.mark.parametrize('family', ['se_orig', 'sk_basic', 'sk_3_paths'])
def test_fx_feature_extractors_follow_training_and_new_weights(family):
    arch, kwargs = FAMILIES[family]
    eager = timm.create_model(arch, features_only=True, **kwargs)
    fx = timm.create_model(arch, features_only=True, feature_cls='fx', **kwargs)
    _, trained = _pair(family, seed=2)
    _sgd_steps(trained)
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith('fc.')}
    eager.load_state_dict(state)
    fx.graph_module.load_state_dict(state)  # strict: the graph holds exactly the backbone's state
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # torchvision warns when the train and eval graphs differ
        extractor = create_feature_extractor(trained, return_nodes={'layer2': 'c3', 'layer4': 'c5'})
    assert _tensor_constants(fx.graph_module) == [] and _tensor_constants(extractor) == []
    for module in (eager, fx, extractor, trained):
        module.eval()
    with torch.no_grad():
        expected = eager(_x())
        for actual, e in zip(fx(_x()), expected):
            assert rel_err(actual, e) < 1e-5
        features = extractor(_x())
        assert rel_err(features['c3'], expected[2]) < 1e-5 and rel_err(features['c5'], expected[4]) < 1e-5


@pytest.mark.parametrize('family', ['se_bottleneck', 'sk_basic'])
def test_a_fused_model_is_made_of_convs_that_hooks_and_fx_see(family):
    _, ours = _pair(family)
    fused = timm_sesk.fuse(copy.deepcopy(ours).eval())
    convs = {n for n, m in fused.named_modules() if isinstance(m, nn.Conv2d)}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    fired = _hook_counts(fused, _x())
    assert {n for n in convs if fired.get(n) == 1} == convs
    traced = torch.fx.symbolic_trace(fused)
    assert _tensor_constants(traced) == []
    assert convs <= _traced_leaf_modules(traced)
    with torch.no_grad():
        assert rel_err(traced(_x()), ours.eval()(_x())) < 1e-5


def test_the_input_check_is_a_hook_on_a_plain_conv():
    # The stem is an nn.Conv2d as in timm (a torch.fx leaf, swapped by quantization tools); the check still runs
    # eagerly and in features_only wrappers.
    model = timm.create_model('se_resnet18_orig')
    assert type(model.conv1) is nn.Conv2d
    with pytest.raises(ValueError, match='minimum of 5x5'):
        model(torch.randn(1, 3, 4, 4))
    backbone = timm.create_model('sk_resnet18', features_only=True)
    with pytest.raises(ValueError, match=r'expected an image batch of shape \(B, 3, H, W\)'):
        backbone(torch.randn(1, 1, 32, 32))


# Every knob value, through timm.create_model (which drops arguments whose value is None), checked on the modules.
SE_KNOBS = [
    ({'se_position': 'none'}, lambda m: not _units(m, SqueezeExcite)),
    ({'se_position': 'standard'}, lambda m: m.layer1[0].attn_position == 'standard' and _se(m).fc1.in_features == 256),
    ({'se_position': 'pre'}, lambda m: m.layer1[0].attn_position == 'pre' and _se(m).fc1.in_features == 64),
    ({'se_position': 'post'}, lambda m: m.layer1[0].attn_position == 'post'),
    ({'se_position': 'identity'}, lambda m: m.layer1[0].attn_position == 'identity'),
    ({'se_reduction': 4}, lambda m: _se(m).fc1.out_features == 64),
    ({'se_reduction': 64}, lambda m: _se(m).fc1.out_features == 8),  # 256 / 64 = 4, rounded up to a multiple of 8
    ({'se_reduction': 64, 'se_divisor': 1}, lambda m: _se(m).fc1.out_features == 4),
    ({'se_squeeze': 'max'}, lambda m: _se(m).squeeze_type == 'max'),
    ({'se_gate': 'hard_sigmoid'}, lambda m: 'hard' in type(_se(m).gate).__name__.lower()),
    ({'se_bias': False}, lambda m: _se(m).fc1.bias is None and _se(m).fc2.bias is None),
]
SK_KNOBS = [
    ({'sk_paths': 0}, lambda m: not _units(m, SelectiveKernel)),
    ({'sk_paths': 3}, lambda m: [p.conv.dilation[0] for p in _sk(m).paths] == [1, 2, 3]),
    ({'sk_reduction': 2, 'sk_min_attn_channels': 1}, lambda m: _sk(m).attn.fc_reduce.out_features == 64),
    ({'sk_min_attn_channels': 48}, lambda m: _sk(m).attn.fc_reduce.out_features == 48),  # max(128 / 16, 48)
    ({'sk_keep_3x3': False}, lambda m: [p.conv.kernel_size[0] for p in _sk(m).paths] == [3, 5]),
    ({'sk_split_input': True}, lambda m: _sk(m).paths[0].conv.in_channels == 64),
    ({'sk_memory_efficient': True}, lambda m: _sk(m).memory_efficient),
]
LAYOUT_KNOBS = [
    ({'stride_in_1x1': True}, lambda m: m.layer2[0].conv1.conv.stride == (2, 2)),
    ({'caffe_stem_pool': True}, lambda m: m.maxpool.ceil_mode and m.maxpool.padding == 0),
    ({'branch_act': True}, lambda m: isinstance(m.layer1[0].conv3.act, nn.ReLU)),
]


def _units(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


def _se(model):
    return model.layer1[0].se


def _sk(model):
    return model.layer1[0].conv2


@pytest.mark.parametrize('arch, knobs, check', [
    *[('se_resnet50', k, c) for k, c in SE_KNOBS],
    *[('sk_resnet50', k, c) for k, c in SK_KNOBS],
    *[('se_resnet50', k, c) for k, c in LAYOUT_KNOBS],
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
def test_every_knob_value_builds_what_it_says_through_create_model(arch, knobs, check):
    model = timm.create_model(arch, device='meta', **knobs)
    assert check(model), knobs


def test_timm_drops_none_so_no_se_is_spelled_none():
    # timm.create_model leaves out keyword arguments that are None: se_position=None cannot switch SE off through it
    # (README says to write 'none'); if timm ever passes None through, this fails and README should change.
    assert _units(timm.create_model('se_resnet18', device='meta', se_position=None), SqueezeExcite)
    assert not _units(timm.create_model('se_resnet18', device='meta', se_position='none'), SqueezeExcite)
    with pytest.raises(ValueError, match=r"se_position must be one of .*'none' for no SE"):
        timm.create_model('se_resnet18', device='meta', se_position='bogus')

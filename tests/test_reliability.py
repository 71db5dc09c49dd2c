"""Hostile inputs and numerical edge cases: each either works, or fails with a message that says what was expected
and how to fix it. No silent wrong answer, no NaN, no partially loaded model.

What other modules already cover is not repeated here: tiny and wrong-channel inputs in eval (test_model_api), bf16
autocast logits (test_model_api), NCHW vs channels_last and fused vs reference (test_fast_paths), URL pin mismatches,
corrupt Hub files, missing keys and pickled payloads in a local file (test_pretrained).
"""
import ast
import copy
import json
import os
import pickle
import re
from pathlib import Path
from typing import Dict, List

import pytest
import safetensors.torch
import timm
import torch
from helpers import IMG, randomize_bn, rel_err
from timm.layers import freeze_batch_norm_2d
from timm.models import load_pretrained
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

import timm_sesk
from timm_sesk.layers import AttentionTap, SelectiveKernel, SelectiveKernelAttn, freeze_sk_attn_norm
from timm_sesk.loading import checkpoint_filter_fn
from timm_sesk.weights import REFERENCES, PretrainedWeightsError, convert_state_dict, create_reference

REPO_ROOT = Path(__file__).resolve().parent.parent


def _x(batch=2, height=IMG, width=IMG, seed=1):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _model(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize_bn(timm.create_model(name, **kwargs), seed=seed).eval()


def _attn_stats(model) -> Dict[str, torch.Tensor]:
    return {
        f'{n}.{b}': buf.clone()
        for n, m in model.named_modules() if isinstance(m, SelectiveKernelAttn)
        for b, buf in m.bn.named_buffers()
    }


def _finite_grads(model) -> None:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params
    for name, p in params:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


# --- 1. Batch size 1 in training ---

@pytest.mark.parametrize('memory_efficient', [True, False])
def test_sk_attention_refuses_a_batch_of_one_in_training_and_says_what_to_do(memory_efficient):
    model = timm.create_model('sk_resnet18', sk_memory_efficient=memory_efficient).train()
    with pytest.raises(ValueError) as err:
        model(_x(batch=1))
    message = str(err.value)
    assert 'SelectiveKernel attention' in message and 'more than one sample per batch' in message
    for fix in ('batch size of at least 2', 'timm.layers.freeze_batch_norm_2d(model)',
                'timm_sesk.layers.freeze_sk_attn_norm(model)'):
        assert fix in message
    unit = SelectiveKernel(16, 16, groups=4, memory_efficient=memory_efficient).train()
    with pytest.raises(ValueError, match='more than one sample per batch'):
        unit(torch.randn(1, 16, 5, 5))
    with torch.no_grad():
        assert model.eval()(_x(batch=1)).shape == (1, 1000)  # eval: any batch size


@pytest.mark.parametrize('freeze', ['sk_attn', 'sk_attn_recomputed', 'all', 'norms_in_eval_mode'])
def test_batch_of_one_trains_once_the_norms_are_frozen(freeze):
    model = _model('sk_resnet18', sk_memory_efficient=freeze != 'sk_attn')
    if freeze.startswith('sk_attn'):
        assert freeze_sk_attn_norm(model) is model
    elif freeze == 'all':
        model = freeze_batch_norm_2d(model)
    model.train()
    if freeze == 'norms_in_eval_mode':  # the detectors' other way: BatchNorms in eval mode inside a training model
        for m in model.modules():
            if isinstance(m, SelectiveKernelAttn):
                m.bn.eval()
    attn_before = _attn_stats(model)
    path_bn = model.layer1[0].conv1.paths[0].bn
    path_mean = path_bn.running_mean.clone()
    out = model(_x(batch=1))
    out.sum().backward()
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    _finite_grads(model)
    for key, value in _attn_stats(model).items():
        assert torch.equal(value, attn_before[key]), f'{key} changed: the attention norm is frozen'
    if freeze != 'all':  # the path norms still train on the batch
        assert not torch.equal(path_bn.running_mean, path_mean)


def test_freeze_sk_attn_norm_keeps_eval_outputs_and_checkpoints():
    model = _model('sk_resnet18').double()
    state_dict = copy.deepcopy(model.state_dict())
    norms = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    x = _x().double()
    with torch.no_grad():
        expected = model(x)
        frozen = freeze_sk_attn_norm(model)
        actual = frozen(x)
    attns = [m for m in frozen.modules() if isinstance(m, SelectiveKernelAttn)]
    assert attns and all(type(m.bn) is FrozenBatchNorm2d for m in attns)
    assert sum(type(m) is nn.BatchNorm2d for m in frozen.modules()) == norms - len(attns)  # only those
    assert rel_err(actual, expected) < 1e-12  # eval-mode BatchNorm either way
    frozen.load_state_dict(state_dict)  # an unfrozen checkpoint still loads strictly (num_batches_tracked dropped)
    assert freeze_sk_attn_norm(frozen) is frozen  # idempotent


@pytest.mark.parametrize('memory_efficient', [False, True])
def test_norms_in_eval_mode_inside_a_training_model_use_their_running_statistics(memory_efficient):
    # model.train() with the BatchNorms put back in eval mode: every norm must use and keep its running statistics,
    # on the memory-efficient (recomputing) path too.
    torch.manual_seed(0)
    unit = SelectiveKernel(16, 16, groups=4, memory_efficient=memory_efficient).double().train()
    for m in unit.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.eval()
    assert unit._checkpointable() == memory_efficient
    stats = copy.deepcopy(list(unit.buffers()))
    x = torch.randn(4, 16, 6, 6, dtype=torch.float64)
    expected = copy.deepcopy(unit).eval()(x)
    out = unit(x)
    out.sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for before, after in zip(stats, unit.buffers()):
        assert torch.equal(before, after)


@pytest.mark.parametrize('name', ['sk_resnet18', 'se_resnet18'])
def test_norms_in_training_mode_inside_an_eval_model_use_batch_statistics(name):
    # The reverse (re-estimating BatchNorm statistics with the rest in eval): the norms' own mode decides, as in
    # PyTorch, so nothing may fold them with their running statistics.
    model = _model(name)
    trained = copy.deepcopy(model).train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    x = _x()
    with torch.no_grad():
        assert rel_err(model(x), trained(x)) < 1e-5
    for (key, a), b in zip(model.state_dict().items(), trained.state_dict().values()):
        torch.testing.assert_close(a, b, msg=key)


@pytest.mark.parametrize('name', ['se_resnet18', 'sk_resnet18'])
def test_batch_of_one_at_a_1x1_feature_map_says_what_to_do(name):
    model = freeze_sk_attn_norm(timm.create_model(name)).train()
    with pytest.raises(ValueError) as err:
        model(_x(batch=1, height=32, width=32))  # 32 px: the last stage is 1x1
    message = str(err.value)
    assert 'more than one value per channel' in message and 'batch size 1 at 1x1 px' in message
    assert 'batch size of at least 2' in message and 'timm.layers.freeze_batch_norm_2d(model)' in message
    model(_x(batch=1, height=33, width=32)).sum().backward()  # a 2x1 last stage is enough
    model(_x(batch=2, height=32, width=32)).sum().backward()


def test_batch_size_check_leaves_fx_tracing_in_training_alone():
    torch.manual_seed(0)
    unit = SelectiveKernel(16, 16, groups=4).double().train()
    traced = torch.fx.symbolic_trace(unit)
    x = torch.randn(3, 16, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(traced(x), copy.deepcopy(unit)(x))


# --- 2. Input sizes ---

def _reference_pair(arch):
    torch.manual_seed(0)
    reference = randomize_bn(create_reference(arch)).eval()
    ours = timm.create_model(arch).eval()
    ours.load_state_dict(convert_state_dict(reference.state_dict(), REFERENCES[arch].mapping))
    return reference, ours


@pytest.mark.parametrize('arch', ['sk_resnet18', 'se_resnet18', 'sk_resnet26', 'se_resnext26_32x4d_orig'])
def test_odd_non_square_input_matches_the_reference(arch):
    reference, ours = _reference_pair(arch)
    x = _x(height=65, width=97)
    with torch.no_grad():
        features, expected_features = ours.forward_features(x), reference.forward_features(x)
        assert features.shape == expected_features.shape
        assert rel_err(features, expected_features) < 1e-5
        assert rel_err(ours(x), reference(x)) < 1e-5


@pytest.mark.parametrize('name, min_size', [
    ('se_resnet18', 1), ('sk_resnet18', 1), ('sk_resnet26', 1), ('se_resnext26_32x4d_orig', 5),
])
def test_smallest_input_trains_with_a_batch_of_two(name, min_size):
    model = timm.create_model(name, num_classes=10).train()
    for height, width in ((min_size, min_size), (min_size, 97), (97, min_size)):
        out = model(_x(batch=2, height=height, width=width))
        out.sum().backward()
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        _finite_grads(model)
        model.zero_grad()
    with pytest.raises(ValueError, match=f'minimum of {min_size}x{min_size} px. Resize'):
        model(_x(batch=2, height=min_size - 1, width=IMG))


@pytest.mark.parametrize('name', ['sk_resnet18', 'se_resnet18'])
def test_large_input(name):
    model = _model(name, num_classes=0, global_pool='')
    with torch.no_grad():
        features = model(_x(batch=1, height=512, width=768))
    assert features.shape == (1, 512, 16, 24)
    assert torch.isfinite(features).all()


# --- 3. dtypes and devices ---

def _record_taps(model) -> List[torch.Tensor]:
    taps = []
    for module in model.modules():
        if isinstance(module, AttentionTap):
            module.register_forward_hook(lambda m, i, o: taps.append(o.detach()))
    return taps


@pytest.mark.parametrize('name', ['sk_resnet18', 'se_resnet18'])
def test_float64_after_construction(name):
    model = _model(name)
    x = _x()
    with torch.no_grad():
        expected = model(x)
        model = model.to(torch.float64)
        taps = _record_taps(model)
        actual = model(x.double())
    assert actual.dtype == torch.float64 and all(t.dtype == torch.float64 for t in taps) and len(taps) == 8
    assert rel_err(actual, expected) < 1e-4
    model.train()(x.double()).sum().backward()
    assert all(p.grad.dtype == torch.float64 for p in model.parameters())
    _finite_grads(model)


@pytest.mark.parametrize('name', ['sk_resnet18', 'se_resnet18'])
@pytest.mark.parametrize('dtype, tol', [(torch.bfloat16, 0.1), (torch.float16, 0.02)])
def test_autocast_attention_and_logits_stay_finite(name, dtype, tol):
    model = _model(name)
    x = _x()
    with torch.no_grad():
        expected = model(x)
        taps = _record_taps(model)
        with torch.autocast('cpu', dtype=dtype):
            actual = model(x)
    assert actual.dtype == dtype and torch.isfinite(actual).all()
    assert rel_err(actual.float(), expected) < tol
    assert len(taps) == 8
    for weights in taps:  # SE gates and SK first-path weights, as applied: in [0, 1]
        assert torch.isfinite(weights).all() and weights.min() >= 0 and weights.max() <= 1


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_training_step_has_finite_gradients(dtype):
    model = _model('sk_resnet18').train()  # the memory-efficient path recomputes under autocast in backward
    with torch.autocast('cpu', dtype=dtype):
        out = model(_x())
    out.float().sum().backward()
    assert torch.isfinite(out).all()
    _finite_grads(model)


@pytest.mark.parametrize('name', ['sk_resnet18', 'se_resnet18'])
def test_meta_construction_then_to_empty(name):
    source = _model(name)
    model = timm.create_model(name, device='meta')
    assert all(t.device.type == 'meta' for t in [*model.parameters(), *model.buffers()])
    model = model.to_empty(device='cpu')
    model.load_state_dict(source.state_dict())
    assert all(t.device.type == 'cpu' for t in [*model.parameters(), *model.buffers()])
    x = _x()
    with torch.no_grad():
        assert torch.equal(model.eval()(x), source(x))


def test_channels_last_training_matches_nchw():
    # Eval-mode layouts are compared in test_fast_paths; here the memory-efficient training path, in float64 so that
    # the comparison is about the function and not about fp32 summation order.
    model = _model('sk_resnet18').double().train()
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = _x().double()
    out = model(x)
    out_cl = channels_last(x.to(memory_format=torch.channels_last))
    out.sum().backward()
    out_cl.sum().backward()
    assert rel_err(out_cl, out) < 1e-10
    for (name, p), q in zip(model.named_parameters(), channels_last.parameters()):
        assert rel_err(q.grad, p.grad) < 1e-8, name


# --- 4. Weights ---

def _save(path: Path, state_dict) -> Path:
    if path.suffix == '.safetensors':
        safetensors.torch.save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    else:
        torch.save(state_dict, path)
    return path


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_truncated_local_file_is_a_clear_error(tmp_path, suffix):
    path = _save(tmp_path / f'full{suffix}', timm.create_model('sk_resnet18').state_dict())
    truncated = tmp_path / f'truncated{suffix}'
    data = path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    expected = re.escape(f'{truncated} is not a readable checkpoint (it is truncated or corrupt)')
    with pytest.raises(PretrainedWeightsError, match=expected):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(truncated)))


def test_corrupt_hub_file_at_a_revision_is_a_clear_error(hub):
    # A Hub id with '@revision' once made the error handler fail on the id and hide the real error.
    data = safetensors.torch.save(timm.create_model('sk_resnet18').state_dict())
    repo = 'sesk-test/corrupt-at-revision'
    hub.publish(repo, 'model.safetensors', data[: len(data) // 2])
    with pytest.raises(PretrainedWeightsError, match=r'is not a readable checkpoint \(it is truncated or corrupt\)'):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=repo + '@main'))


def _expected_key_error(path, missing, unexpected):
    def keys(names):
        return ', '.join(names[:20]) + (f', ... ({len(names) - 20} more)' if len(names) > 20 else '')
    problems = ([f'missing keys: {keys(missing)}'] if missing else []) + \
        ([f'unexpected keys: {keys(unexpected)}'] if unexpected else [])
    return (f'pretrained weights ({path}) does not fit SeskResNet exactly, so nothing was loaded; '
            + '; '.join(problems) + '. Check that the checkpoint was trained for this architecture')


def test_wrong_architecture_from_a_file_lists_the_keys(tmp_path):
    se_state = timm.create_model('se_resnet18').state_dict()
    sk_keys = list(timm.create_model('sk_resnet18', device='meta').state_dict())
    path = _save(tmp_path / 'se_resnet18.pth', se_state)
    missing = [k for k in sk_keys if k not in se_state]
    unexpected = [k for k in se_state if k not in sk_keys]
    with pytest.raises(PretrainedWeightsError) as err:
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert str(err.value).startswith(_expected_key_error(path, missing, unexpected))


@pytest.mark.parametrize('change', ['extra', 'missing_and_extra'])
def test_extra_keys_are_listed_exactly(tmp_path, change):
    state_dict = timm.create_model('sk_resnet18').state_dict()
    state_dict['layer1.0.se.fc1.weight'] = torch.zeros(8, 64)
    state_dict['head.fc.weight'] = torch.zeros(10, 512)
    missing = []
    if change == 'missing_and_extra':
        del state_dict['layer4.1.conv2.bn.running_var']
        missing = ['layer4.1.conv2.bn.running_var']
    path = _save(tmp_path / 'extra.pth', state_dict)
    with pytest.raises(PretrainedWeightsError) as err:
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert str(err.value).startswith(
        _expected_key_error(path, missing, ['layer1.0.se.fc1.weight', 'head.fc.weight']))


def test_a_refused_checkpoint_leaves_an_existing_model_unchanged(tmp_path):
    model = timm.create_model('sk_resnet18')
    before = copy.deepcopy(model.state_dict())
    state_dict = timm.create_model('sk_resnet18').state_dict()  # other random weights, one key too many
    state_dict['layer1.0.se.fc1.weight'] = torch.zeros(8, 64)
    cfg = dict(model.pretrained_cfg, file=str(_save(tmp_path / 'extra.pth', state_dict)))
    with pytest.raises(PretrainedWeightsError, match=r'nothing was loaded; unexpected keys: layer1\.0\.se\.fc1\.'):
        load_pretrained(model, pretrained_cfg=cfg, filter_fn=checkpoint_filter_fn)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize('prefix, nest, suffix', [
    ('module.', None, '.pth'),  # DistributedDataParallel
    ('_orig_mod.', None, '.pth'),  # torch.compile
    ('_orig_mod.module.', None, '.pth'),  # torch.compile of DDP
    ('module.', 'state_dict', '.pth'),  # a training checkpoint
    ('_orig_mod.', None, '.safetensors'),
])
def test_wrapper_prefixes_are_stripped(tmp_path, prefix, nest, suffix):
    source = timm.create_model('sk_resnet18')
    wrapped = {prefix + k: v for k, v in source.state_dict().items()}
    checkpoint = {nest: wrapped, 'epoch': 3} if nest else wrapped
    path = tmp_path / f'wrapped{suffix}'
    if suffix == '.safetensors':
        _save(path, wrapped)
    else:
        torch.save(checkpoint, path)
    model = timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize('tail', ['', '..'])
def test_url_without_a_file_name_is_refused(hub, tail):
    url = f'{hub.url}/files/{tail}'
    with pytest.raises(PretrainedWeightsError, match='does not end in a file name'):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(url=url, hf_hub_id=None))


# --- 5. Determinism ---

@pytest.mark.parametrize('name', ['sk_resnet18', 'se_resnet18'])
def test_eval_is_bitwise_deterministic(name):
    model = _model(name)
    twin = timm.create_model(name).eval()
    twin.load_state_dict(model.state_dict())
    x = _x()
    runs = {}
    with torch.no_grad():
        for label, m, inp in (('nchw', model, x), ('twin', twin, x)):
            runs[label] = [m(inp), m(inp)]
        channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x_cl = x.to(memory_format=torch.channels_last)
        runs['channels_last'] = [channels_last(x_cl), channels_last(x_cl)]
        fused = timm_sesk.fuse(copy.deepcopy(model))
        runs['fused'] = [fused(x), fused(x)]
    runs['grad'] = [model(x).detach(), model(x).detach()]  # eval with autograd on: the out-of-place paths
    for label, (first, second) in runs.items():
        assert torch.equal(first, second), label
    assert torch.equal(runs['nchw'][0], runs['twin'][0])
    assert rel_err(runs['channels_last'][0], runs['nchw'][0]) < 1e-5
    assert rel_err(runs['fused'][0], runs['nchw'][0]) < 1e-5


def test_training_step_is_bitwise_deterministic():
    model = _model('sk_resnet18').train()
    twin = copy.deepcopy(model)
    x = _x()
    out, out_twin = model(x), twin(x)
    out.sum().backward()
    out_twin.sum().backward()
    assert torch.equal(out, out_twin)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad), name
    for (name, b), c in zip(model.named_buffers(), twin.buffers()):
        assert torch.equal(b, c), name


# --- 7. Security ---

_LOADERS = {'torch.load', 'torch.serialization.load', 'torch.hub.load_state_dict_from_url'}
_RUNS_CODE = {'torch.hub.load', 'pickle.load', 'pickle.loads', 'dill.load', 'dill.loads', 'marshal.loads'}


def _dotted(node: ast.AST, aliases: Dict[str, str]) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ''
    parts.append(aliases.get(node.id, node.id))
    return '.'.join(reversed(parts))


def _is_true(call: ast.Call, keyword: str) -> bool:
    return any(k.arg == keyword and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def unsafe_loads(source: str, filename: str = '<source>') -> List[str]:
    """Calls that could unpickle arbitrary objects or run downloaded code: ``torch.load`` and
    ``load_state_dict_from_url`` without a literal ``weights_only=True``, any ``weights_only`` that is not literally
    True, ``torch.hub.load``, ``pickle.load(s)``, and ``trust_remote_code`` other than False. Import aliases
    (``import torch as th``, ``from torch import load``) are followed."""
    tree = ast.parse(source, filename)
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname})
        elif isinstance(node, ast.ImportFrom) and node.module:
            aliases.update({a.asname or a.name: f'{node.module}.{a.name}' for a in node.names})
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        where = f'{filename}:{node.lineno}: {name or "call"}'
        if name in _LOADERS and not _is_true(node, 'weights_only'):
            problems.append(f'{where} without weights_only=True')
        elif name in _RUNS_CODE:
            problems.append(f'{where} can run code from the file')
        elif any(k.arg == 'weights_only' for k in node.keywords) and not _is_true(node, 'weights_only'):
            problems.append(f'{where} with weights_only other than True')
        elif any(k.arg == 'trust_remote_code' and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                 for k in node.keywords):
            problems.append(f'{where} with trust_remote_code')
    return problems


@pytest.mark.parametrize('snippet, flagged', [
    ('import torch\ntorch.load(p)', True),
    ('import torch\ntorch.load(p, weights_only=False)', True),
    ('import torch\ntorch.load(p, **kwargs)', True),
    ('import torch as th\nth.load(p)', True),
    ('from torch import load as L\nL(p)', True),
    ('from torch.hub import load_state_dict_from_url\nload_state_dict_from_url(u)', True),
    ('import torch\ntorch.hub.load("owner/repo", "model")', True),
    ('import pickle\npickle.loads(b)', True),
    ('from timm.models import load_state_dict\nload_state_dict(p, weights_only=False)', True),
    ('import torch\ntorch.load(p, map_location="cpu", weights_only=True)', False),
    ('import torch\nmodel.load_state_dict(sd)', False),
])
def test_unsafe_load_checker_flags_what_it_should(snippet, flagged):
    assert bool(unsafe_loads(snippet)) == flagged


def test_no_unsafe_deserialisation_in_the_sources():
    folders = ('timm_sesk', 'weights', 'benchmarks', 'tests')
    files = [path for folder in folders for path in (REPO_ROOT / folder).rglob('*.py')]
    assert len(files) > 20
    problems = [problem for path in files
                for problem in unsafe_loads(path.read_text(), str(path.relative_to(REPO_ROOT)))]
    assert not problems, '\n'.join(problems)


def test_a_hub_repos_code_and_pickles_are_never_run(hub, tmp_path):
    # A hostile Hub repository: a config naming our architecture, a pickle payload as its weights, and Python files.
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    repo = 'sesk-test/hostile'
    code = f'import os\nos.system("touch {marker}")\n'.encode()
    config = {'architecture': 'sk_resnet18', 'num_classes': 1000, 'pretrained_cfg': {}}
    hub.publish(repo, 'config.json', json.dumps(config).encode())
    hub.publish(repo, 'pytorch_model.bin', pickle.dumps({'conv1.weight': Payload()}, protocol=2))
    for name in ('hubconf.py', 'modeling.py', '__init__.py'):
        hub.publish(repo, name, code)
    with pytest.raises(PretrainedWeightsError, match='holds Python objects other than tensors'):
        timm.create_model(f'hf-hub:{repo}', pretrained=True)
    with pytest.raises(PretrainedWeightsError, match='holds Python objects other than tensors'):
        timm.create_model('sk_resnet18', pretrained=True,
                          pretrained_cfg_overlay=dict(hf_hub_id=repo, hf_hub_filename='pytorch_model.bin'))
    assert not marker.exists()
    fetched = [path for _, path in hub.requests if path.startswith(f'/{repo}/')]
    assert fetched and not [path for path in fetched if path.endswith('.py')]


def _files_outside(root: Path, inside: Path) -> Dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob('*')
            if p.is_file() and inside not in p.parents}


@pytest.mark.parametrize('overlay, offending', [
    (dict(hf_hub_id='../../x'), '../../x'),
    (dict(hf_hub_id='sesk-test/safe', hf_hub_filename='../../../etc/passwd'), '../../../etc/passwd'),
    (dict(hf_hub_id='sesk-test/safe', hf_hub_filename='sub/../../model.safetensors'), 'sub/../../model.safetensors'),
    (dict(hf_hub_id='sesk-test/safe', hf_hub_filename='/etc/passwd'), '/etc/passwd'),
    (dict(hf_hub_id='sesk-test/safe@../../x'), 'sesk-test/safe@../../x'),
])
def test_hub_ids_and_filenames_cannot_escape_the_cache(hub, overlay, offending):
    # huggingface_hub validates repo ids and refuses '..' and absolute file names; a revision is sent to the Hub
    # URL-quoted. This pins that behaviour: a clear error naming the input, and nothing written outside the cache.
    hub.publish('sesk-test/safe', 'model.safetensors', b'never read')
    cache = Path(os.environ['HF_HUB_CACHE']).resolve()
    session_root = cache.parent
    before = _files_outside(session_root, cache)
    with pytest.raises((ValueError, PretrainedWeightsError)) as err:
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=overlay)
    assert offending in str(err.value)
    assert _files_outside(session_root, cache) == before
    for path in cache.rglob('*'):
        assert cache in Path(os.path.realpath(path)).parents, path

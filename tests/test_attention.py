"""timm_sesk.attention.record: what it records, that it is what the units apply, and that it leaves no trace."""
import contextlib
import threading

import pytest
import timm
import torch
from helpers import IMG, randomize_bn
from torch import nn

import timm_sesk
from timm_sesk.attention import find_units, record
from timm_sesk.layers import AttentionTap, SelectiveKernel

BLOCKS_2222 = [f'layer{s}.{b}' for s in range(1, 5) for b in range(2)]
GRAD_MODES = {'grad': contextlib.nullcontext, 'no_grad': torch.no_grad, 'inference_mode': torch.inference_mode}


def _model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(timm.create_model(name, **kwargs), seed=seed).eval()


def _x(batch: int = 2, size: int = IMG, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _taps(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, AttentionTap)]


def _prepare(model: nn.Module, x: torch.Tensor, channels_last: bool, fused: bool):
    if fused:
        timm_sesk.fuse(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def test_se_model_records_one_excitation_per_block():
    model = _model('se_resnet18')
    with torch.no_grad(), record(model) as rec:
        model(_x(batch=3))
    assert list(rec) == BLOCKS_2222 and list(rec.se) == BLOCKS_2222 and rec.sk == {}
    for key, excitation in rec.items():
        block = model.get_submodule(key)
        assert excitation.shape == (3, block.conv2.out_channels)
        assert excitation.dtype == torch.float32 and not excitation.requires_grad
        assert ((excitation > 0) & (excitation < 1)).all()  # sigmoid gate
        unit = rec.units[key]
        assert (unit.kind, unit.module, unit.block, unit.paths) == ('se', f'{key}.se', key, ())


@pytest.mark.parametrize('name, unit_attr', [('sk_resnet18', 'conv1'), ('sk_resnet26', 'conv2')])
def test_sk_model_with_two_paths_records_both_weights(name, unit_attr):
    model = _model(name)
    with torch.no_grad(), record(model) as rec:
        model(_x())
    assert list(rec) == BLOCKS_2222 and list(rec.sk) == BLOCKS_2222 and rec.se == {}
    for key, weights in rec.items():
        unit = model.get_submodule(f'{key}.{unit_attr}')
        assert isinstance(unit, SelectiveKernel)
        assert weights.shape == (2, 2, unit.out_channels)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, unit.out_channels))
        assert rec.units[key].module == f'{key}.{unit_attr}' and rec.units[key].paths == ((3, 1), (3, 2))
    assert not all(torch.allclose(w, torch.full_like(w, 0.5), atol=1e-3) for w in rec.values())


def test_sk_model_with_three_paths_records_the_softmax():
    model = _model('sk_resnet26', sk_paths=3)
    with torch.no_grad(), record(model) as rec:
        model(_x())
    assert list(rec.sk) == BLOCKS_2222
    for key, weights in rec.items():
        assert weights.shape == (2, 3, model.get_submodule(f'{key}.conv2').out_channels)
        assert (weights > 0).all()
        torch.testing.assert_close(weights.sum(dim=1), torch.ones_like(weights[:, 0]))
        assert rec.units[key].paths == ((3, 1), (3, 2), (3, 3))


def test_block_with_se_and_sk_keys_each_unit_by_its_name():
    model = _model('sk_resnet18', se_position='standard')
    with torch.no_grad(), record(model) as rec:
        model(_x())
    assert list(rec.sk) == [f'{b}.conv1' for b in BLOCKS_2222]
    assert list(rec.se) == [f'{b}.se' for b in BLOCKS_2222]
    assert all(u.block in BLOCKS_2222 for u in rec.units.values())


@pytest.mark.parametrize('name, kwargs, grad_mode, channels_last, fused', [
    ('sk_resnet18', {}, 'no_grad', False, False),  # M = 2 in no-grad: the select lerps in place into path 1
    ('sk_resnet18', {}, 'grad', True, False),
    ('sk_resnet26', {}, 'inference_mode', True, True),
    ('sk_resnet26', {'sk_paths': 3}, 'no_grad', False, True),
    ('sk_resnet26', {'sk_paths': 3}, 'grad', True, False),
])
def test_recorded_sk_weights_are_the_ones_applied(name, kwargs, grad_mode, channels_last, fused):
    model, x = _prepare(_model(name, **kwargs), _x(), channels_last, fused)
    units = {n: m for n, m in model.named_modules() if isinstance(m, SelectiveKernel)}
    paths, outputs, handles = {}, {}, []
    for unit_name, unit in units.items():
        for m, path in enumerate(unit.paths):
            handles.append(path.register_forward_hook(
                lambda mod, args, out, key=(unit_name, m): paths.__setitem__(key, out.detach().clone())))
        handles.append(unit.register_forward_hook(
            lambda mod, args, out, key=unit_name: outputs.__setitem__(key, out.detach().clone())))
    with GRAD_MODES[grad_mode](), record(model) as rec:
        model(x)
    for handle in handles:
        handle.remove()
    assert len(outputs) == len(rec) == 8
    for key, weights in rec.items():
        unit_name = rec.units[key].module
        expected = sum(weights[:, m, :, None, None] * paths[unit_name, m] for m in range(weights.shape[1]))
        torch.testing.assert_close(outputs[unit_name], expected, rtol=1e-5, atol=1e-5)
        # The weights matter: with the paths swapped the output would differ.
        swapped = sum(weights.flip(1)[:, m, :, None, None] * paths[unit_name, m] for m in range(weights.shape[1]))
        assert not torch.allclose(outputs[unit_name], swapped, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('grad_mode, channels_last, fused', [
    ('no_grad', False, False),  # standard SE in no-grad: shortcut + x * e is one in-place addcmul
    ('grad', True, False),
    ('inference_mode', True, True),
])
def test_recorded_se_excitation_is_the_one_applied(grad_mode, channels_last, fused):
    model, x = _prepare(_model('se_resnet18'), _x(), channels_last, fused)
    seen, handles = {}, []

    def keep(name):
        def hook(module, args, out):
            seen[name] = out.detach().clone()
        return hook

    for block_name in BLOCKS_2222:
        block = model.get_submodule(block_name)
        handles.append(block.register_forward_pre_hook(
            lambda mod, args, key=block_name: seen.__setitem__((key, 'in'), args[0].detach().clone())))
        handles.append(block.register_forward_hook(keep((block_name, 'out'))))
        handles.append(block.conv2.register_forward_hook(keep((block_name, 'branch'))))
    with GRAD_MODES[grad_mode](), record(model) as rec:
        model(x)
    for handle in handles:
        handle.remove()
    for key, excitation in rec.items():
        block = model.get_submodule(key)
        shortcut = seen[key, 'in']
        if block.downsample is not None:
            with torch.no_grad():  # the kept tensors may be inference tensors, which autograd cannot save
                shortcut = block.downsample(shortcut)
        expected = torch.relu(shortcut + seen[key, 'branch'] * excitation[:, :, None, None])
        torch.testing.assert_close(seen[key, 'out'], expected, rtol=1e-5, atol=1e-5)


def test_recorded_se_excitation_rescales_the_unit_input():
    model = _model('se_resnet18', se_position='post')  # the SE unit itself runs: y = x * e
    seen = {}
    handles = [model.get_submodule(f'{b}.se').register_forward_hook(
        lambda mod, args, out, key=b: seen.__setitem__(key, (args[0].detach().clone(), out.detach().clone())))
        for b in BLOCKS_2222]
    with torch.no_grad(), record(model) as rec:
        model(_x())
    for handle in handles:
        handle.remove()
    for key, excitation in rec.items():
        unit_in, unit_out = seen[key]
        torch.testing.assert_close(unit_out, unit_in * excitation[:, :, None, None])


def test_hooks_exist_only_inside_the_context():
    model = _model('sk_resnet18')
    taps = _taps(model)
    assert len(taps) == 8 and not any(t._forward_hooks for t in taps)
    with torch.no_grad(), record(model) as rec:
        assert all(len(t._forward_hooks) == 1 for t in taps)
        model(_x(batch=1))
    assert not any(t._forward_hooks for t in taps)
    before = {k: v.clone() for k, v in rec.items()}
    with torch.no_grad():
        model(_x(batch=1, seed=5))  # outside the context nothing is recorded any more
    assert all(torch.equal(rec[k], v) for k, v in before.items())


def test_hooks_are_removed_when_the_body_raises():
    model = _model('se_resnet18')
    with pytest.raises(RuntimeError, match='boom'), record(model):
        assert all(t._forward_hooks for t in _taps(model))
        raise RuntimeError('boom')
    assert not any(t._forward_hooks for t in _taps(model))


def test_several_passes_keep_the_last_or_accumulate():
    model = _model('sk_resnet18')
    first, second = _x(batch=1, seed=2), _x(batch=2, size=IMG + 32, seed=3)
    with torch.no_grad():
        with record(model) as alone:
            model(first)
        with record(model) as last:
            model(first)
            model(second)
        with record(model, accumulate=True) as both:
            model(first)
            model(second)
    for key in BLOCKS_2222:
        assert last[key].shape[0] == 2 and both[key].shape[0] == 3
        torch.testing.assert_close(both[key][:1], alone[key])
        torch.testing.assert_close(both[key][1:], last[key])


def test_a_record_holds_only_the_passes_of_the_thread_that_opened_it():
    # Hooks belong to the model: a record took every thread's passes on it while it was open.
    model = _model('sk_resnet18')
    with torch.no_grad(), record(model) as alone:
        model(_x(batch=1))
    both_open, both_ran = threading.Barrier(2, timeout=60), threading.Barrier(2, timeout=60)
    records = {}

    def run(batch: int) -> None:
        with torch.no_grad(), record(model, accumulate=True) as rec:
            both_open.wait()
            model(_x(batch=batch))
            both_ran.wait()
        records[batch] = rec
    threads = [threading.Thread(target=run, args=(batch,)) for batch in (1, 3)]
    for thread in threads:
        thread.start()
    with torch.no_grad(), record(model, accumulate=True) as idle:
        for thread in threads:
            thread.join()
    assert len(idle) == 0  # a thread that ran nothing recorded nothing
    assert sorted(records) == [1, 3]
    for batch, rec in records.items():
        assert len(rec) == 8 and all(w.shape[0] == batch for w in rec.values())
    for key in BLOCKS_2222:
        torch.testing.assert_close(records[1][key], alone[key])


@pytest.mark.parametrize('memory_efficient', [False, True])
def test_a_training_step_records_its_forward_pass_once(memory_efficient):
    # Memory-efficient SK units recompute their selection in backward: that is no new forward pass.
    model = _model('sk_resnet18', sk_memory_efficient=memory_efficient).train()
    with record(model, accumulate=True) as rec:
        model(_x(batch=2)).sum().backward()
    assert all(w.shape[0] == 2 for w in rec.values()) and len(rec) == 8


def test_the_model_still_scripts_after_recording():
    model = _model('se_resnet18')
    with torch.no_grad(), record(model):
        expected = model(_x())
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(_x()), expected)
    with pytest.raises(ValueError, match='no SE or SK unit'), record(scripted):
        pass


def test_a_model_without_units_is_refused():
    with pytest.raises(ValueError, match='no SE or SK unit'), record(timm.create_model('resnet18')):
        pass


def test_find_units_lists_units_in_depth_order():
    units = [u for u, _ in find_units(timm.create_model('sk_resnet26', device='meta'))]
    assert [u.key for u in units] == BLOCKS_2222 and all(u.kind == 'sk' and u.num_paths == 2 for u in units)

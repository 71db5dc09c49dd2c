"""Every fast path computes the published network's function: NCHW and channels_last, ``timm_sesk.fuse``,
torch.compile, the memory-efficient (recomputing) SK training path, and the SK units' export form."""
import copy

import pytest
import timm
import torch
from helpers import IMG, randomize_bn, randomize_params, rel_err
from timm.layers import freeze_batch_norm_2d

import timm_sesk
from timm_sesk.layers import SelectiveKernel
from timm_sesk.layers.sk_export import SelectiveKernelExport, export_form
from timm_sesk.weights import REFERENCES, convert_state_dict, create_reference

TOL = 1e-5
ARCHS = ['sk_resnet18', 'sk_resnet26', 'se_resnet18', 'se_resnext26_32x4d_orig']


def _pair(arch, seed=0):
    torch.manual_seed(seed)
    reference = randomize_bn(create_reference(arch), seed=seed).eval()
    ours = timm.create_model(arch).eval()
    ours.load_state_dict(convert_state_dict(reference.state_dict(), REFERENCES[arch].mapping))
    return reference, ours


def _x(batch=2):
    return torch.randn(batch, 3, IMG, IMG, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize('mode', ['no_grad', 'inference_mode', 'grad'])
def test_eval_paths_match_the_reference(arch, layout, mode):
    reference, ours = _pair(arch)
    x = _x()
    with torch.no_grad():
        expected = reference(x)
    ours = ours.to(memory_format=layout)
    x = x.to(memory_format=layout)
    if mode == 'grad':  # eval mode with autograd on (saliency maps): the out-of-place paths
        actual = ours(x)
    else:
        with torch.no_grad() if mode == 'no_grad' else torch.inference_mode():
            actual = ours(x)
    assert rel_err(actual, expected) < TOL


@pytest.mark.parametrize('arch', ARCHS)
def test_fuse_matches_the_reference(arch):
    reference, ours = _pair(arch)
    fused = timm_sesk.fuse(ours)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    for layout in (torch.contiguous_format, torch.channels_last):
        x = _x().to(memory_format=layout)
        with torch.no_grad():
            assert rel_err(fused.to(memory_format=layout)(x), reference(x)) < TOL
    with pytest.raises(RuntimeError, match='fused for inference'):
        fused.train()


@pytest.mark.parametrize('arch, kwargs', [
    ('sk_resnet18', {}),  # split input, groups 1
    ('sk_resnet26', {}),  # SKNet unit: whole input, groups 32
    ('sk_resnet26', {'sk_paths': 3}),  # three paths: a softmax, not the two-path sigmoid
])
@pytest.mark.parametrize('fused, quantizable', [(True, False), (False, False), (True, True)])
def test_export_form_matches_the_model(arch, kwargs, fused, quantizable):
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model(arch, **kwargs)).eval()
    units = sum(isinstance(m, SelectiveKernel) for m in model.modules())
    form = copy.deepcopy(model)
    form = export_form(timm_sesk.fuse(form) if fused else form, quantizable)
    assert not any(isinstance(m, SelectiveKernel) for m in form.modules())
    assert sum(isinstance(m, SelectiveKernelExport) for m in form.modules()) == units > 0
    for layout in (torch.contiguous_format, torch.channels_last):
        x = _x().to(memory_format=layout)
        with torch.no_grad():
            assert rel_err(form.to(memory_format=layout)(x), model(x)) < TOL


@pytest.mark.parametrize('num_paths, quantizable', [(2, False), (2, True), (3, False)])
def test_export_form_is_exact_where_the_selection_saturates(num_paths, quantizable):
    # Logit differences of hundreds: the weights are 0 and 1 to fp32, which the form's exp(l1 - l2) must survive
    # (unclamped, it overflowed to inf and inf / inf gave NaN); the sigmoid and the softmax over 3 paths too.
    torch.manual_seed(0)
    unit = randomize_params(SelectiveKernel(32, 32, num_paths=num_paths, groups=4, min_attn_channels=8)).eval()
    unit.attn.fc_select.weight.data *= 100
    x = torch.randn(2, 32, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        weights = unit.attn(unit.split(x))[:, 0]
        assert (weights == 1).any() and (weights < 1e-30).any()
        actual = export_form(unit, quantizable)(x)
        assert torch.isfinite(actual).all() and rel_err(actual, unit(x)) < TOL


def test_fuse_applies_to_a_features_only_backbone():
    _, ours = _pair('sk_resnet18')
    backbone = timm.create_model('sk_resnet18', features_only=True).eval()
    backbone.load_state_dict(ours.state_dict(), strict=False)
    with torch.no_grad():
        expected = backbone(_x())
        actual = timm_sesk.fuse(backbone)(_x())
    for a, e in zip(actual, expected):
        assert rel_err(a, e) < TOL


def test_running_again_leaves_returned_tensors_alone():
    # Nothing handed back to the caller (inputs, intermediates) may change when the model runs again.
    _, ours = _pair('sk_resnet18')
    x = _x()
    x_copy = x.clone()
    with torch.no_grad():
        _, taps = ours.forward_intermediates(x)
        kept = [t.clone() for t in taps]
        ours(x)
    assert torch.equal(x, x_copy)
    for tap, copy_ in zip(taps, kept):
        assert torch.equal(tap, copy_)


def test_frozen_batchnorm_is_not_folded_but_still_exact():
    reference, ours = _pair('sk_resnet26')
    frozen = freeze_batch_norm_2d(copy.deepcopy(ours)).eval()
    with torch.no_grad():
        assert rel_err(frozen(_x()), reference(_x())) < TOL


def _train_step(model, x):
    out = model(x)
    weights = torch.linspace(-1, 1, out.shape[1], dtype=out.dtype).reshape(1, -1, *([1] * (out.dim() - 2)))
    (out * weights).sum().backward()  # a loss that weights channels differently, so gradients differ per channel
    return out


@pytest.mark.parametrize('split_input', [False, True])
def test_memory_efficient_training_matches_plain_autograd(split_input):
    torch.manual_seed(0)
    unit = SelectiveKernel(
        32, 32, groups=4 if not split_input else 1, split_input=split_input, memory_efficient=True).double().train()
    plain = copy.deepcopy(unit)
    plain.memory_efficient = False
    x = torch.randn(4, 32, 9, 9, dtype=torch.float64, requires_grad=True)
    x_plain = x.detach().clone().requires_grad_()
    out = _train_step(unit, x)
    expected = _train_step(plain, x_plain)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, x_plain.grad, rtol=1e-10, atol=1e-12)
    for (name, p), q in zip(unit.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)
    for (name, b), c in zip(unit.named_buffers(), plain.buffers()):  # running stats updated once, not twice
        torch.testing.assert_close(b, c, rtol=1e-12, atol=1e-12, msg=name)


def test_memory_efficient_training_gradcheck():
    torch.manual_seed(0)
    unit = SelectiveKernel(8, 8, groups=2, num_paths=2, min_attn_channels=4, memory_efficient=True).double().train()
    x = torch.randn(3, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    assert unit._checkpointable()
    assert torch.autograd.gradcheck(lambda t: unit(t), (x,), eps=1e-6, atol=1e-5)


def test_memory_efficient_training_keeps_fewer_tensors():
    torch.manual_seed(0)

    def saved_bytes(memory_efficient):
        unit = SelectiveKernel(64, 64, memory_efficient=memory_efficient).train()
        x = torch.randn(4, 64, 16, 16, requires_grad=True)
        sizes = {}

        def pack(t):
            sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            unit(x).sum().backward()
        return sum(sizes.values())

    activation = 4 * 64 * 16 * 16 * 4
    assert saved_bytes(False) - saved_bytes(True) >= 2 * activation  # the two paths' activations


def test_whole_model_memory_efficient_training_matches():
    torch.manual_seed(0)
    model = timm.create_model('sk_resnet26', num_classes=10, sk_memory_efficient=True).double().train()
    plain = timm.create_model('sk_resnet26', num_classes=10).double().train()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(_train_step(model, x), _train_step(plain, x))
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-11, msg=name)


def _small_se_sk_model():
    # An SK model with standard SE too, one block per stage to keep compile time CI-sized; float64 so that the
    # comparison is about the function, not about a compiler's fp32 summation order.
    torch.manual_seed(0)
    model = timm.create_model('sk_resnet18', layers=(1, 1, 1, 1), se_position='standard', num_classes=10)
    return randomize_bn(model).double()


def test_compiled_matches_eager_in_eval():
    model = _small_se_sk_model().eval()
    x = _x().double()
    compiled = torch.compile(model, fullgraph=True)  # inductor; fullgraph: any graph break is an error
    with torch.no_grad():
        assert rel_err(compiled(x), model(x)) < 1e-10


def test_compiled_training_step_is_one_graph_and_matches_eager():
    # aot_eager traces the whole training step (forward and autograd backward) as inductor would, without its
    # C++ compile time; the eval test above covers inductor's code generation.
    model = _small_se_sk_model().train()
    eager_model = copy.deepcopy(model)
    x = _x().double()
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    assert rel_err(_train_step(compiled, x), _train_step(eager_model, x)) < 1e-10
    for (name, p), q in zip(model.named_parameters(), eager_model.parameters()):
        assert rel_err(p.grad, q.grad) < 1e-8, name

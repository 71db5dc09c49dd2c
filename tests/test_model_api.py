"""The timm model contract, checked on our models.

timm's own tests/test_models.py runs against every model in CI (see the Makefile's ``timm-contract``); this module
covers what it does not: the full list of create_model kwargs, cfg completeness, and equality (not just shapes)
across the scripted, traced, channels_last and checkpointed paths.
"""
import pytest
import timm
import torch
from helpers import IMG, randomize_bn, rel_err
from timm.models import get_pretrained_cfg
from timm.models._manipulate import group_parameters

import timm_sesk

ALL = sorted(timm_sesk.list_models())
# One of each layout: SE basic block, Caffe bottleneck, SE-ResNeXt, SK basic (split input), SKNet, deep stem.
REPRESENTATIVE = ['se_resnet18', 'se_resnet50_orig', 'se_resnext26_32x4d_orig', 'sk_resnet18', 'sk_resnet26']
CFG_FIELDS = (
    'input_size', 'pool_size', 'crop_pct', 'interpolation', 'mean', 'std', 'first_conv', 'classifier', 'license',
    'paper_ids',
)


def _model(name, **kwargs):
    torch.manual_seed(0)
    return randomize_bn(timm.create_model(name, **kwargs)).eval()


def _x(batch=2, size=IMG):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize('name', timm_sesk.list_models(include_tags=True) + ALL)
def test_pretrained_cfg_is_complete(name):
    cfg = get_pretrained_cfg(name).to_dict()
    for field in CFG_FIELDS:
        assert cfg.get(field) is not None, field
    assert cfg['input_size'][0] == 3 and len(cfg['pool_size']) == 2


@pytest.mark.parametrize('name', ALL)
def test_create_model_kwargs(name):
    model = timm.create_model(
        name, num_classes=7, in_chans=1, global_pool='max', drop_rate=0.25, drop_path_rate=0.1,
        device='meta', dtype=torch.float64)
    assert model.num_classes == 7 and model.get_classifier().out_features == 7
    assert model.global_pool.pool_type == 'max'
    assert model.drop_rate == 0.25
    first_conv = model.get_submodule(model.pretrained_cfg['first_conv'])
    assert first_conv.in_channels == 1
    assert any(type(m).__name__ == 'DropPath' for m in model.modules())
    assert all(p.device.type == 'meta' and p.dtype == torch.float64 for p in model.parameters())
    with pytest.raises(TypeError):
        timm.create_model(name, device='meta', not_a_model_arg=1)


@pytest.mark.parametrize('name', REPRESENTATIVE)
@pytest.mark.parametrize('pool', ['avg', 'max', 'fast', 'avgmax', 'catavgmax', ''])
def test_global_pool(name, pool):
    model = _model(name, global_pool=pool, num_classes=0)
    with torch.no_grad():
        out = model(_x())
    if pool == '':
        assert out.shape == (2, model.num_features, IMG // 32, IMG // 32)
    else:
        assert out.shape == (2, model.num_features * (2 if pool == 'catavgmax' else 1))


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_head_api(name):
    model = _model(name, global_pool='max')
    x = _x()
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
        torch.testing.assert_close(model(x), logits)
        torch.testing.assert_close(pre_logits, features.amax(dim=(2, 3)))
        torch.testing.assert_close(logits, model.get_classifier()(pre_logits))
    model.reset_classifier(10)
    assert model.global_pool.pool_type == 'max', 'reset_classifier must keep the current pooling'
    assert model.get_classifier().out_features == 10 and model.num_classes == 10
    with torch.no_grad():
        assert model(x).shape == (2, 10)


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_grad_checkpointing_keeps_outputs_and_grads(name):
    model = _model(name)
    model.train()
    x = _x(batch=4)
    torch.manual_seed(1)
    plain = model(x)
    plain.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    checkpointed = model(x)
    checkpointed.sum().backward()
    torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_group_matcher(name):
    model = timm.create_model(name, device='meta')
    names = {n for n, _ in model.named_parameters()}
    for coarse in (True, False):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        grouped = [n for members in groups.values() for n in members]
        assert sorted(grouped) == sorted(names)
        assert len(groups) >= (6 if coarse else 10)


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_intermediates_agree_with_features_only(name):
    model = _model(name)
    x = _x()
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        features = timm.create_model(name, features_only=True, out_indices=(0, 1, 2, 3, 4))
        features.load_state_dict(model.state_dict(), strict=False)
        taps = features.eval()(x)
    assert len(taps) == len(intermediates) == 5
    for tap, intermediate, info in zip(taps, intermediates, features.feature_info.get_dicts()):
        torch.testing.assert_close(tap, intermediate)
        assert tap.shape[1] == info['num_chs']
        assert tap.shape[-1] == -(-IMG // info['reduction'])
    assert features.feature_info.reduction() == [2, 4, 8, 16, 32]


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_features_only_out_indices(name):
    model = timm.create_model(name, features_only=True, out_indices=(2, 4)).eval()
    with torch.no_grad():
        outs = model(_x())
    assert [o.shape[1] for o in outs] == model.feature_info.channels()
    assert model.feature_info.reduction() == [8, 32]


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_prune_intermediate_layers(name):
    model = _model(name)
    x = _x()
    with torch.no_grad():
        taps = model.forward_intermediates(x, indices=[2], intermediates_only=True)
        model.prune_intermediate_layers([2])
        torch.testing.assert_close(model.forward_intermediates(x, indices=[2], intermediates_only=True)[0], taps[0])
    assert model.num_classes == 0


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_torchscript_matches_eager(name):
    with timm.layers.set_scriptable(True):
        model = _model(name)
    scripted = torch.jit.script(model)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_fx_matches_eager(name):
    model = _model(name)
    x = _x()
    traced = torch.fx.symbolic_trace(model)
    extractor = timm.models.create_feature_extractor(model, return_nodes=['layer2', 'layer4'])
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
        torch.testing.assert_close(extractor(x)['layer4'], model.forward_features(x))


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_channels_last_matches(name):
    model = _model(name)
    x = _x()
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        actual = model(x.to(memory_format=torch.channels_last))
    assert rel_err(actual, expected) < 1e-5


@pytest.mark.parametrize('name', REPRESENTATIVE)
def test_bf16_autocast_cpu(name):
    model = _model(name)
    x = _x()
    with torch.no_grad():
        expected = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            actual = model(x)
    assert actual.dtype == torch.bfloat16
    assert torch.isfinite(actual).all()
    assert rel_err(actual.float(), expected) < 0.1


@pytest.mark.parametrize('name', ['se_resnet18', 'sk_resnet50', 'se_net154_orig'])
def test_wrong_channel_count_names_the_expected_count(name):
    model = timm.create_model(name, in_chans=3).eval()
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\).*in_chans='):
        model(torch.randn(1, 1, IMG, IMG))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        model(torch.randn(3, IMG, IMG))  # an unbatched image
    gray = timm.create_model(name, in_chans=1).eval()
    with torch.no_grad():
        assert gray(torch.randn(1, 1, IMG, IMG)).shape == (1, 1000)


def test_tiny_inputs():
    # Padded stems and convolutions take any size; the Caffe stem pool has no padding and needs 5 px.
    for name in ('se_resnet18', 'sk_resnet18', 'se_resnet50'):
        with torch.no_grad():
            assert timm.create_model(name).eval()(torch.randn(1, 3, 1, 1)).shape == (1, 1000)
    orig = timm.create_model('se_resnet18_orig').eval()
    with torch.no_grad():
        assert orig(torch.randn(1, 3, 5, 7)).shape == (1, 1000)
        with pytest.raises(ValueError, match='minimum of 5x5 px'):
            orig(torch.randn(1, 3, 4, 32))

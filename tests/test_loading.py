"""One loader for every source: ``timm_sesk.load_weights`` reads, finds the layout, maps, accounts for every key,
adapts stem and head, and reports; ``timm_sesk.load`` builds a model once with the weights asked for.

Each source is a reference network with random weights and randomised BatchNorm statistics; the loaded model must
compute its logits (relative error below 1e-5 in fp32).
"""
import argparse
import io
import json
import re

import pytest
import safetensors.torch
import timm
import torch
from helpers import IMG, randomize_bn, rel_err
from source_nets import build_source_network
from sources import publish_source

import timm_sesk
from timm_sesk.data import CROP_PCT_RANGE, MAX_INPUT_SIZE, eval_transform
from timm_sesk.errors import InvalidWeightsError, ModelConfigError, NotGraftableError, WeightsMismatchError
from timm_sesk.weights import WEIGHTS, create_reference
from timm_sesk.weights._pretrained import find_spec


def _x(batch=2):
    return torch.randn(batch, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


def _random(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize_bn(timm.create_model(name, **kwargs), seed=seed).eval()


def _reference(arch, seed=0):
    torch.manual_seed(seed)
    return randomize_bn(create_reference(arch), seed=seed).eval()


def _save(state_dict, path):
    if path.suffix == '.safetensors':
        safetensors.torch.save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    else:
        torch.save(state_dict, path)
    return path


def _same_logits(model, source):
    model.eval()
    with torch.no_grad():
        return rel_err(model(_x()), source(_x()))


def test_a_timm_twins_file(tmp_path):
    source = _reference('sk_resnet18')
    model = timm.create_model('sk_resnet18')
    report = timm_sesk.load_weights(model, _save(source.state_dict(), tmp_path / 'skresnet18.pth'))
    assert _same_logits(model, source) < 1e-5
    assert (report.layout, report.network, str(report)) == (
        'timm_sknet', 'skresnet18', f"checkpoint {tmp_path / 'skresnet18.pth'} (skresnet18's layout)")


def test_our_own_safetensors(tmp_path):
    source = _random('se_resnet18', seed=1)
    model = timm.create_model('se_resnet18')
    report = timm_sesk.load_weights(model, _save(source.state_dict(), tmp_path / 'weights.safetensors'))
    assert _same_logits(model, source) < 1e-5
    assert (report.layout, report.network, report.path) == ('native', None, str(tmp_path / 'weights.safetensors'))


def test_the_senet_authors_layout(tmp_path):
    source = _reference('se_resnet18_orig', seed=2)  # timm's legacy_seresnet18
    model = timm.create_model('se_resnet18_orig')
    report = timm_sesk.load_weights(model, _save(source.state_dict(), tmp_path / 'seresnet18-4bb0ce65.pth'))
    assert _same_logits(model, source) < 1e-5
    assert (report.layout, report.network) == ('timm_senet', 'legacy_seresnet18')


def test_a_train_py_checkpoint_ema_weights_first(tmp_path):
    trained, ema = _random('sk_resnet18', seed=3, num_classes=5), _random('sk_resnet18', seed=4, num_classes=5)
    path = tmp_path / 'model_best.pth.tar'
    torch.save({'epoch': 3, 'arch': 'sk_resnet18', 'args': argparse.Namespace(img_size=IMG, crop_pct=1.0),
                'state_dict': {f'module.{k}': v for k, v in trained.state_dict().items()},
                'state_dict_ema': ema.state_dict()}, path)
    model = timm.create_model('sk_resnet18.ra_in1k', num_classes=5)
    report = timm_sesk.load_weights(model, path)
    assert _same_logits(model, ema) < 1e-5 and report.entry == 'state_dict_ema' and report.num_classes == 5
    cfg = model.pretrained_cfg  # it now describes these weights: no tag, train.py's input size and crop
    assert 'tag' not in cfg and 'hf_hub_id' not in cfg and (cfg['input_size'], cfg['crop_pct']) == ((3, IMG, IMG), 1.0)
    assert report.ema is True and str(report) == f'checkpoint {path} (EMA weights)'
    report = timm_sesk.load_weights(model, path, ema=False)
    assert _same_logits(model, trained) < 1e-5 and report.entry == 'state_dict'
    assert report.ema is False and str(report) == f'checkpoint {path} (its non-EMA weights; it also holds EMA weights)'
    one = tmp_path / 'last.pth.tar'  # one set of weights: no choice to name
    torch.save({'arch': 'sk_resnet18', 'state_dict': trained.state_dict()}, one)
    report = timm_sesk.load_weights(model, one, ema=False)
    assert (report.ema, str(report)) == (None, f'checkpoint {one}')


def test_a_plain_resnet18_module_grafts_onto_se_resnet18():
    plain = _random('resnet18.tv_in1k', seed=5)
    model = timm.create_model('se_resnet18')
    report = timm_sesk.load_weights(model, plain)
    assert _same_logits(model, plain) < 1e-5
    assert (report.layout, str(report)) == ('plain', 'the resnet18 module (a plain ResNet, grafted)')
    assert model.pretrained_cfg['interpolation'] == 'bilinear' and 'tag' not in model.pretrained_cfg  # its data cfg


def test_a_tag_loads_as_pretrained_true_fetches_it(hub):
    spec = next(s for s in WEIGHTS if s.name == 'sk_resnet18.ra_in1k')
    source = publish_source(hub, spec, seed=6)
    model = timm.create_model('sk_resnet18', num_classes=3)
    report = timm_sesk.load_weights(model, spec)
    assert (str(report), report.layout, report.num_classes) == (
        'sk_resnet18.ra_in1k, random head (3 classes)', 'timm_sknet', 1000)  # never the tag alone: its head is new
    assert report.head == "a new 3-class head (the source's 1000-class classifier is not loaded)"
    assert model.pretrained_cfg['tag'] == 'ra_in1k'
    with torch.no_grad():
        features = model.eval().forward_features(_x())
        assert rel_err(features, source.forward_features(_x())) < 1e-5


def test_the_stem_and_head_adapt_as_in_timm():
    source = _random('se_resnet18', seed=7)
    model = timm.create_model('se_resnet18', in_chans=1, num_classes=0)
    report = timm_sesk.load_weights(model, source.state_dict())
    assert report.stem == '3 input channels adapted to 1 (timm adapt_input_conv)'
    assert report.head == "no head (the source's 1000-class classifier is not loaded)"
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    gray = _x()[:, :1]
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(gray), source.forward_head(
            source.forward_features(gray.expand(-1, 3, -1, -1)), pre_logits=True), rtol=1e-4, atol=1e-5)


def test_a_told_layout_is_the_only_one_tried(tmp_path):
    source = _reference('se_resnet18_orig', seed=8)
    model = timm.create_model('se_resnet18_orig')
    assert timm_sesk.load_weights(model, source.state_dict(), layout='timm_senet').layout == 'timm_senet'
    with pytest.raises(WeightsMismatchError, match='does not fit SeskResNet exactly'):
        timm_sesk.load_weights(model, source.state_dict(), layout='native')
    with pytest.raises(ValueError, match='layout must be one of'):
        timm_sesk.load_weights(model, source.state_dict(), layout='caffe')


def test_weights_that_fit_nothing_load_nothing_and_say_what_they_are_for():
    model = timm.create_model('sk_resnet18')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as err:
        timm_sesk.load_weights(model, _random('se_resnet18').state_dict())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert 'missing keys: layer1.0.conv1.paths.0.conv.weight' in str(err.value)
    assert err.value.fitting_arch() == ('se_resnet18', 'native')
    with pytest.raises(NotGraftableError, match='splits its input'):  # plain weights, a model with no exact graft
        timm_sesk.load_weights(model, _random('resnet18').state_dict())


@pytest.mark.parametrize('spec', WEIGHTS, ids=lambda s: s.name)
def test_every_tags_source_layout_is_found_by_its_keys(spec):
    """On the meta device (shapes only): each source's state dict is found in its tag's layout, and in no earlier
    one that would map it otherwise."""
    with torch.device('meta'):
        source = build_source_network(spec.trained_as) if ':' in spec.trained_as else timm.create_model(
            spec.trained_as)
        model = timm.create_model(spec.arch)
    expected = 'plain' if spec.is_graft else spec.mapping
    assert timm_sesk.load_weights(model, source.state_dict()).layout == expected


def test_load_builds_once_with_a_checkpoints_head_and_input_size(tmp_path, monkeypatch):
    from timm_sesk.models import SeskResNet

    path = tmp_path / 'finetuned.pth'
    torch.save({'arch': 'se_resnet18', 'args': argparse.Namespace(img_size=IMG),
                'state_dict': _random('se_resnet18', seed=9, num_classes=7).state_dict()}, path)
    built = []
    init = SeskResNet.__init__
    monkeypatch.setattr(SeskResNet, '__init__', lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    model, report = timm_sesk.load('se_resnet18', checkpoint=path)
    assert len(built) == 1 and model.num_classes == 7 and report.head is None
    assert model.pretrained_cfg['input_size'] == (3, IMG, IMG)
    model, report = timm_sesk.load('se_resnet18', pretrained=False, se_position='post')
    assert str(report) == 'random weights' and 'tag' not in model.pretrained_cfg and len(built) == 2


# --- weights checked before use (issue 21) --------------------------------------------------------------------------

_SK18 = {}


def _sk18_state() -> dict:
    """sk_resnet18's random weights (made once), a fresh copy each time."""
    if not _SK18:
        _SK18.update(_random('sk_resnet18', seed=10).state_dict())
    return {k: v.clone() for k, v in _SK18.items()}


def _with(key, value):
    state = _sk18_state()
    state[key] = value(state[key]) if callable(value) else value
    return state


UNUSABLE = {  # the fault: (the tensor, its new value, what the refusal says)
    'NaN': ('fc.weight', lambda t: t.index_fill(0, torch.tensor([3]), float('nan')), 'holds 512 NaN and 0 infinite'),
    'infinity': ('layer2.0.conv2.bn.running_mean', lambda t: t.fill_(float('-inf')), 'holds 0 NaN and 128 infinite'),
    'int8': ('conv1.weight', lambda t: t.to(torch.int8), 'is int8 where the model holds float32'),
    'bool': ('fc.bias', lambda t: t > 0, 'is bool where the model holds float32'),
    'negative running variance': ('bn1.running_var', lambda t: -t, 'holds 64 negative running variances'),
}


@pytest.mark.parametrize('fault', list(UNUSABLE))
def test_weights_that_cannot_be_used_are_refused_by_name(fault):
    key, value, says = UNUSABLE[fault]
    model = timm.create_model('sk_resnet18')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidWeightsError) as err:
        timm_sesk.load_weights(model, _with(key, value))
    assert f'a state dict: tensor {key} {says}' in str(err.value) and err.value.key == key
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing loaded


def test_every_route_checks_the_weights(tmp_path, monkeypatch):
    from timm_sesk.models import SeskResNet

    path = tmp_path / 'int8.pth'  # a file, read by load_weights
    torch.save(_with('conv1.weight', lambda t: t.to(torch.int8)), path)
    with pytest.raises(InvalidWeightsError, match=f'checkpoint {path}: tensor conv1.weight is int8'):
        timm_sesk.load_weights(timm.create_model('sk_resnet18'), path)
    path = _save(_with('fc.weight', lambda t: t.fill_(float('nan'))), tmp_path / 'nan.safetensors')  # timm's route
    with pytest.raises(InvalidWeightsError, match=r'tensor fc\.weight holds 512000 NaN'):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    source = _random('sk_resnet18', seed=11)  # a module
    source.layer4[1].conv2.bn.running_var[5] = -1.0
    with pytest.raises(InvalidWeightsError, match=r'the sk_resnet18 module: tensor layer4\.1\.conv2\.bn\.running_var'):
        timm_sesk.load_weights(timm.create_model('sk_resnet18'), source)
    # A 3-million-class head saved as a broadcast view takes 2 KB in its file and would size a 6 GB model: refused
    # when the file is read, before any model is built.
    path = tmp_path / 'broadcast.pth'
    torch.save(_with('fc.weight', torch.zeros(1, 512).expand(3_000_000, 512)), path)
    assert path.stat().st_size < 60e6
    built = []
    init = SeskResNet.__init__
    monkeypatch.setattr(SeskResNet, '__init__', lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    with pytest.raises(InvalidWeightsError, match=r'declares \(3000000, 512\) \(1536000000 values\) but its file '
                                                  r'stores 512 \(a broadcast view'):
        timm_sesk.load('sk_resnet18', checkpoint=path)
    assert not built


def test_integer_buffers_and_half_precision_weights_load():
    state = {k: v.half() if v.is_floating_point() else v for k, v in _sk18_state().items()}
    state['bn1.num_batches_tracked'] = torch.tensor(7.0)  # a float count: cast, as load_state_dict casts it
    model = timm.create_model('sk_resnet18')
    timm_sesk.load_weights(model, state)
    assert model.conv1.weight.dtype == torch.float32 and torch.equal(model.conv1.weight, state['conv1.weight'].float())
    assert model.bn1.num_batches_tracked.dtype == torch.int64 and int(model.bn1.num_batches_tracked) == 7


MISFITS = {  # a stem or head that differs other than where timm adapts it: (the tensor, its shape, the mismatch)
    'head of other features': ('fc.weight', (1000, 7), 'fc.weight (1000, 7) vs (1000, 512)'),
    'head weight and bias disagree': ('fc.bias', (10,), 'fc.bias (10,) vs '),
    'stem of another kernel': ('conv1.weight', (64, 3, 3, 3), 'conv1.weight (64, 3, 3, 3) vs (64, 3, 7, 7)'),
    'stem of 1 channel into 3': ('conv1.weight', (64, 1, 7, 7), 'conv1.weight (64, 1, 7, 7) vs (64, 3, 7, 7)'),
}


@pytest.mark.parametrize('route', ['load_weights', 'create_model'])
@pytest.mark.parametrize('misfit', list(MISFITS))
def test_a_stem_or_head_that_cannot_be_adapted_is_a_mismatch(misfit, route, tmp_path):
    """Before, a silently new random head (a head of other features, or of inconsistent classes) or a traceback from
    load_state_dict (another stem)."""
    key, shape, says = MISFITS[misfit]
    path = _save(_with(key, torch.zeros(shape)), tmp_path / 'misfit.safetensors')
    with pytest.raises(WeightsMismatchError, match=re.escape(says)) as err:
        if route == 'load_weights':
            timm_sesk.load_weights(timm.create_model('sk_resnet18'), path)
        else:
            timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert err.value.fitting_arch() is None  # the weights are this architecture's: no other is looked for


def test_timm_still_adapts_the_stem_and_head_it_adapts(tmp_path):
    source = _random('sk_resnet18', seed=12)
    path = _save(source.state_dict(), tmp_path / 'weights.safetensors')
    model = timm.create_model('sk_resnet18', pretrained=True, in_chans=1, num_classes=10,
                              pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    assert model.fc.weight.shape == (10, 512)


def test_a_checkpoints_data_arguments_are_bounded_before_anything_uses_them(tmp_path):
    state = _sk18_state()
    for args, says in ((dict(img_size=20000), 'input_size (3, 20000, 20000) cannot be used; expected a height and '
                                              f'width of at most {MAX_INPUT_SIZE} px'),
                       (dict(crop_pct=0.001), 'crop_pct 0.001 cannot be used'),
                       (dict(mean=[0.5, float('nan'), 0.5]), 'mean (0.5, nan, 0.5) cannot be used')):
        path = tmp_path / 'train.pth.tar'
        torch.save({'arch': 'sk_resnet18', 'args': argparse.Namespace(**args), 'state_dict': state}, path)
        model = timm.create_model('sk_resnet18')
        before = model.conv1.weight.clone()
        with pytest.raises(ModelConfigError, match=re.escape(f"checkpoint {path}'s train.py arguments: {says}")):
            timm_sesk.load_weights(model, path)
        assert torch.equal(model.conv1.weight, before)
    args = dict(img_size=MAX_INPUT_SIZE, crop_pct=CROP_PCT_RANGE[0])  # at the bounds: loads
    torch.save({'arch': 'sk_resnet18', 'args': argparse.Namespace(**args), 'state_dict': state}, path)
    model, _ = timm_sesk.load('sk_resnet18', checkpoint=path)
    assert model.pretrained_cfg['input_size'] == (3, MAX_INPUT_SIZE, MAX_INPUT_SIZE)


def test_the_eval_transform_refuses_a_data_config_out_of_bounds():
    """The one place predict, validate, attention and the exported runtimes make their transform: whatever file the
    model's data config came from (an exported folder's, an overlay's), it is bounded before any image is resized."""
    model = timm.create_model('sk_resnet18', pretrained_cfg_overlay=dict(input_size=(3, 4096, 4096)))
    with pytest.raises(ModelConfigError, match=r"the model's data config .*: input_size"):
        eval_transform(model)
    assert eval_transform(model, size=IMG)[1]['input_size'] == (3, IMG, IMG)  # unless --img-size sets its own


# --- what a report names is what was loaded (pretrained_cfg_overlay) ------------------------------------------------

def test_an_overlay_url_is_reported_as_what_timm_loads(hub):
    """timm takes the first of state_dict, file, hf_hub_id and url: an overlay URL on a URL tag loads that URL's
    file, on a Hub tag the Hub's. Before, the URL tag's report (and a card) named the tag for the other file."""
    tag = next(s for s in WEIGHTS if s.name == 'se_resnet18_orig.in1k')  # a URL tag
    other = _reference('se_resnet18_orig', seed=13)
    url = hub.publish_url('other-se18.pth', _bytes(other.state_dict()))
    model, report = timm_sesk.load(tag.name, pretrained_cfg_overlay=dict(url=url))
    assert report.source == url and find_spec(model.pretrained_cfg) is None and 'tag' not in model.pretrained_cfg
    assert _same_logits(model, other) < 1e-5

    hub_tag = next(s for s in WEIGHTS if s.name == 'sk_resnet18.ra_in1k')
    source = publish_source(hub, hub_tag, seed=14)
    model, report = timm_sesk.load(hub_tag.name, pretrained_cfg_overlay=dict(url=url))  # outranked by hf_hub_id
    assert report.source == hub_tag.name and model.pretrained_cfg['tag'] == 'ra_in1k'
    assert _same_logits(model, source) < 1e-5
    mine = _random('sk_resnet18', seed=15)  # the URL wins where the overlay clears the Hub id, as in timm
    url = hub.publish_url('other-sk18.pth', _bytes(mine.state_dict()))
    model, report = timm_sesk.load(hub_tag.name, pretrained_cfg_overlay=dict(url=url, hf_hub_id=None))
    assert report.source == url and 'tag' not in model.pretrained_cfg and _same_logits(model, mine) < 1e-5


def _bytes(state_dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


# --- a Hub repository's config.json, checked before timm builds from it ---------------------------------------------

@pytest.mark.parametrize('change, says', [
    (dict(num_classes=-5), 'num_classes -5 cannot be used'),  # built a 1000-class head over random weights
    (dict(num_classes=10 ** 9), 'num_classes 1000000000 cannot be used'),  # asked for 2 TB
    (dict(model_args={'features_only': True}), 'model_args sets features_only'),
    (dict(pretrained_cfg={'std': [0, 0, 0]}), 'std [0, 0, 0] cannot be used'),
])
def test_a_hub_config_is_checked_before_a_model_is_built(change, says, hub, monkeypatch):
    from timm_sesk.models import SeskResNet

    config = {'architecture': 'sk_resnet18', 'num_classes': 3, 'pretrained_cfg': {}, **change}
    repo = f'sesk-test/loading-config-{abs(hash(says))}'
    hub.publish(repo, 'config.json', json.dumps(config).encode())
    hub.publish(repo, 'model.safetensors', b'never read')
    built = []
    init = SeskResNet.__init__
    monkeypatch.setattr(SeskResNet, '__init__', lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    with pytest.raises(ModelConfigError, match=re.escape(f"hf-hub:{repo}'s config.json") + '.*' + re.escape(says)):
        timm_sesk.load(f'hf-hub:{repo}')
    assert not built

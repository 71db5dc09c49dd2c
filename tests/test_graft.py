"""Grafts: SE and SK models that start as exactly the function of a plain ResNet (``timm_sesk.graft``).

The plain twin is timm's own ResNet / ResNeXt with random weights and random, non-identity BatchNorm statistics. Every
graft must give its logits and features in eval mode and in a training-mode forward (and stay equal after it, when
the running statistics have moved), at output strides 8, 16 and 32; every parameter must get a gradient within two
SGD steps; every plain tensor must be used exactly once. Trunks are shortened and narrowed (``SHORT``) to keep the
file fast: the graft is per block, so depth and width add nothing to what is tested.
"""
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from helpers import IMG, randomize_bn, rel_err
from timm.models import get_pretrained_cfg

import timm_sesk
from timm_sesk.graft import NotGraftableError, graft_state_dict
from timm_sesk.weights import NO_WEIGHTS, WEIGHTS, PretrainedWeightsError
from timm_sesk.weights.manifest import NOT_GRAFTABLE

SHORT = dict(layers=(1, 1, 1, 1), channels=(32, 64, 128, 256), stem_width=32)
DENSE_SK = dict(sk_split_input=False, sk_keep_3x3=False)  # the basic-block SK with an exact graft
# (plain twin, our architecture, create_model kwargs of both, kwargs of ours only)
CASES = {
    'se_basic': ('resnet18', 'se_resnet18', SHORT, {}),
    'se_bottleneck': ('resnext50_32x4d', 'se_resnext50_32x4d', SHORT, {}),
    'sk_bottleneck': ('resnext50_32x4d', 'sk_resnet26', SHORT, {}),  # constant path 2, absorbed by conv3
    'sk_basic_dense': ('resnet18', 'sk_resnet18', SHORT, DENSE_SK),  # equal paths
    'se_sk_bottleneck': ('resnext50_32x4d', 'sk_resnet26', SHORT, dict(se_position='standard')),
    'sk3_bottleneck': ('resnext50_32x4d', 'sk_resnet26', SHORT, dict(sk_paths=3)),
}
GRAFT_SPECS = [spec for spec in WEIGHTS if spec.is_graft]


def _x(batch=4, seed=1):
    return torch.randn(batch, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def _plain(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize_bn(timm.create_model(name, **kwargs), seed=seed)


def _pair(case, **common):
    plain_name, arch, trunk, ours = CASES[case]
    plain = _plain(plain_name, **trunk, **common)
    return plain, timm_sesk.graft(plain, arch, **trunk, **ours, **common)


@pytest.mark.parametrize('case', list(CASES))
def test_graft_computes_the_plain_function_in_eval_and_training(case):
    plain, grafted = _pair(case)
    for model in (plain, grafted):
        model.eval()
    with torch.no_grad():
        assert rel_err(grafted(_x()), plain(_x())) < 1e-5
        plain.train()
        grafted.train()
        assert rel_err(grafted(_x(seed=2)), plain(_x(seed=2))) < 1e-5  # batch statistics
        plain.eval()
        grafted.eval()
        assert rel_err(grafted(_x(seed=3)), plain(_x(seed=3))) < 1e-5  # running statistics after that update


@pytest.mark.parametrize('output_stride', [8, 16])
@pytest.mark.parametrize('case', ['se_basic', 'sk_bottleneck', 'sk_basic_dense'])
def test_dilated_graft_features_equal_the_plain_features(case, output_stride):
    plain, grafted = _pair(case, features_only=True, output_stride=output_stride)
    plain.eval()
    grafted.eval()
    with torch.no_grad():
        for ours, theirs in zip(grafted(_x()), plain(_x())):
            assert ours.shape == theirs.shape and rel_err(ours, theirs) < 1e-5
    assert grafted.feature_info.reduction() == plain.feature_info.reduction()


def _grads_over_two_steps(model, lr=0.1):
    """Gradients of every parameter at the first two plain-SGD steps, in training mode."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    target = torch.arange(4) % model.num_classes
    grads = []
    for step in range(2):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(_x(seed=10 + step)), target).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        optimizer.step()
    return grads


def _dead(grads):
    return [n for n in grads[0] if not any(g[n].abs().sum() > 0 for g in grads)]


@pytest.mark.parametrize('case', ['se_bottleneck', 'sk_bottleneck', 'sk_basic_dense', 'se_sk_bottleneck'])
def test_no_parameter_stays_dead_for_two_steps(case):
    _, grafted = _pair(case, num_classes=10)
    assert _dead(_grads_over_two_steps(grafted)) == []


def test_zero_init_blocks_for_exactly_one_step():
    # The derivation: a zero last SE FC gives its first FC no gradient at step 1 and one at step 2; in a bottleneck SK
    # the zero select does the same to the fuse FC, and the new path's conv waits for its norm's weight to move.
    _, se = _pair('se_bottleneck', num_classes=10)
    _, sk = _pair('sk_bottleneck', num_classes=10)
    for model, blocked in ((se, ('layer2.0.se.fc1.weight',)),
                           (sk, ('layer2.0.conv2.attn.fc_reduce.weight', 'layer2.0.conv2.paths.1.conv.weight'))):
        first, second = _grads_over_two_steps(model)
        for name in blocked:
            assert first[name].abs().sum() == 0 and second[name].abs().sum() > 0, name


def test_the_dead_check_sees_a_dead_path():
    # Control: a new SK path at a constant 0 sits at its ReLU's kink and never learns; the check must report it.
    _, grafted = _pair('sk_bottleneck', num_classes=10)
    with torch.no_grad():
        grafted.layer2[0].conv2.paths[1].bn.bias.zero_()
    assert 'layer2.0.conv2.paths.1.bn.weight' in _dead(_grads_over_two_steps(grafted))


def test_every_plain_tensor_is_used_once_and_only_the_graft_changes_them():
    plain = _plain('resnext50_32x4d', **SHORT)
    model = timm.create_model('sk_resnet26', se_position='standard', **SHORT)
    grafted = graft_state_dict(plain.state_dict(), model)
    assert list(grafted) == list(model.state_dict())
    reference = timm_sesk.weights.convert_state_dict(plain.state_dict(), 'timm_resnet')
    changed = []
    for key, value in reference.items():
        ours = key.replace('.conv2.conv.', '.conv2.paths.0.conv.').replace('.conv2.bn.', '.conv2.paths.0.bn.')
        if not torch.equal(grafted[ours], value):
            changed.append(ours)
    # conv3: weight x2 (select 1/2), running mean + K (constant path), norm affine x2 (SE gate 1/2)
    expected = {f'layer{i}.0.conv3.{name}' for i in range(1, 5)
                for name in ('conv.weight', 'bn.running_mean', 'bn.weight', 'bn.bias')}
    assert set(changed) == expected
    block = 'layer3.0.conv3.'
    torch.testing.assert_close(grafted[block + 'conv.weight'], 2 * reference[block + 'conv.weight'], rtol=0, atol=0)
    torch.testing.assert_close(grafted[block + 'bn.weight'], 2 * reference[block + 'bn.weight'], rtol=0, atol=0)
    offset = 0.5 * reference[block + 'conv.weight'].sum(dim=(1, 2, 3))
    torch.testing.assert_close(grafted[block + 'bn.running_mean'], reference[block + 'bn.running_mean'] + offset)


def test_unused_and_missing_plain_tensors_are_listed():
    deeper = timm.create_model('resnet34', device='meta').state_dict()
    with pytest.raises(PretrainedWeightsError, match=r'plain tensors not used: layer1\.2\.conv1\.conv\.weight'):
        graft_state_dict(deeper, timm.create_model('se_resnet18', device='meta'))
    shallower = timm.create_model('resnet18', device='meta').state_dict()
    with pytest.raises(PretrainedWeightsError, match=r'plain tensors missing: layer1\.2\.conv1\.conv\.weight'):
        graft_state_dict(shallower, timm.create_model('se_resnet34', device='meta'))
    extra = dict(shallower, **{'layer1.0.se.fc1.weight': torch.zeros(8, 64, device='meta')})  # an SE net is no plain
    with pytest.raises(PretrainedWeightsError, match=r'not used: layer1\.0\.se\.fc1\.weight'):
        graft_state_dict(extra, timm.create_model('se_resnet18', device='meta'))


@pytest.mark.parametrize('plain, arch, kwargs, match', [
    ('resnet18', 'sk_resnet18', {}, 'splits its input'),
    ('resnet18', 'sk_resnet18', dict(sk_split_input=False), r'cannot hold the plain 3x3'),
    ('resnet18', 'se_resnet18', dict(se_position='post'), 'standard position'),
    ('resnet18', 'se_resnet18', dict(se_gate='tanh'), 'not 0.5'),
    # same keys and shapes as the plain network, another function
    ('resnet18', 'se_resnet18_orig', {}, 'caffe_stem_pool, branch_act'),
    ('resnet50', 'se_resnet50_orig', dict(caffe_stem_pool=False), r'layer2\.0: stride_in_1x1'),
])
def test_inexact_grafts_are_refused(plain, arch, kwargs, match):
    with pytest.raises(NotGraftableError, match=match):
        graft_state_dict(timm.create_model(plain, device='meta').state_dict(),
                         timm.create_model(arch, device='meta', **kwargs))


@pytest.mark.parametrize('spec', GRAFT_SPECS, ids=lambda s: s.name)
def test_graft_tag_cfg_is_its_plain_sources(spec):
    plain_name = spec.hf_hub_id.split('/', 1)[1]  # the plain twin's timm name with tag, e.g. resnet152.a1_in1k
    plain = get_pretrained_cfg(plain_name).to_dict()
    ours = get_pretrained_cfg(spec.name).to_dict()
    assert spec.tag == 'graft_' + plain_name.replace('.', '_')
    for field in ('hf_hub_id', 'input_size', 'test_input_size', 'crop_pct', 'test_crop_pct', 'interpolation', 'mean',
                  'std', 'license'):
        assert ours.get(field) == plain.get(field), field
    assert all(plain_name in a.reported_by for a in spec.accuracy)
    assert spec.arch not in NO_WEIGHTS
    # The full-depth trunks match (on the meta device: no memory, no forward).
    graft_state_dict(timm.create_model(spec.trained_as, device='meta').state_dict(),
                     timm.create_model(spec.arch, device='meta'))


def _load_tag_from_its_plain_twin(hub, arch: str, seed: int):
    """Publish a random short plain twin where the arch's graft tag loads it from; load the tag and check that it
    computes the plain network's logits."""
    spec = next(s for s in GRAFT_SPECS if s.arch == arch)
    plain = _plain(spec.trained_as, seed=seed, **SHORT).eval()
    hub.publish(spec.hf_hub_id, 'model.safetensors', safetensors.torch.save(plain.state_dict()))
    model = timm.create_model(spec.name, pretrained=True, **SHORT).eval()
    with torch.no_grad():
        assert rel_err(model(_x()), plain(_x())) < 1e-5
    return spec, plain, model


def test_tag_loads_the_plain_twin_from_the_hub_and_grafts_it(hub):
    spec, plain, _ = _load_tag_from_its_plain_twin(hub, 'se_resnet18', seed=4)
    assert ('GET', f'/{spec.hf_hub_id}/resolve/main/model.safetensors') in hub.requests
    backbone = timm.create_model(spec.name, pretrained=True, features_only=True, output_stride=8, **SHORT).eval()
    plain_backbone = timm.create_model(spec.trained_as, features_only=True, output_stride=8, **SHORT).eval()
    plain_backbone.load_state_dict({k: v for k, v in plain.state_dict().items() if not k.startswith('fc.')})
    with torch.no_grad():
        for ours, theirs in zip(backbone(_x()), plain_backbone(_x())):
            assert rel_err(ours, theirs) < 1e-5


def test_sk_tag_with_a_short_trunk_and_a_new_head(hub):
    spec, plain, model = _load_tag_from_its_plain_twin(hub, 'sk_resnet101', seed=5)
    headless = timm.create_model(spec.name, pretrained=True, num_classes=0, **SHORT)
    with torch.no_grad():
        assert rel_err(headless.eval()(_x()), plain.forward_head(plain.forward_features(_x()), pre_logits=True)) < 1e-5

    # The grafted network fine-tuned and published elsewhere under the same tag name holds our layout: no graft.
    with torch.no_grad():
        model.layer1[0].conv2.attn.fc_select.weight.normal_()
    hub.publish('me/sk101-finetuned', 'model.safetensors', safetensors.torch.save(model.state_dict()))
    overlay = dict(hf_hub_id='me/sk101-finetuned')
    again = timm.create_model(spec.name, pretrained=True, pretrained_cfg_overlay=overlay, **SHORT).eval()
    with torch.no_grad():
        assert rel_err(again(_x()), model(_x())) < 1e-5


def test_graft_of_a_fine_tune_checkpoint_file(tmp_path):
    # A user's own plain fine-tune: 10 classes, saved as train.py saves it; its data config travels with a module.
    plain = _plain('resnet18', seed=6, num_classes=10, **SHORT).eval()
    path = tmp_path / 'model_best.pth.tar'
    torch.save({'epoch': 3, 'arch': 'resnet18', 'state_dict': plain.state_dict()}, path)
    grafted = timm_sesk.graft(path, 'se_resnet18', **SHORT).eval()
    assert grafted.num_classes == 10
    with torch.no_grad():
        assert rel_err(grafted(_x()), plain(_x())) < 1e-5
    assert not {'state_dict', 'tag', 'hf_hub_id', 'file'} & set(grafted.pretrained_cfg)  # no pretend tag or source

    tv = _plain('resnet18.tv_in1k', seed=6, **SHORT)
    new_head = timm_sesk.graft(tv, 'se_resnet18', num_classes=5, **SHORT)
    assert new_head.fc.out_features == 5
    assert new_head.pretrained_cfg['interpolation'] == 'bilinear' == tv.pretrained_cfg['interpolation']
    assert 'tag' not in new_head.pretrained_cfg
    for key, value in tv.state_dict().items():
        if key.startswith('layer1.0.conv1.'):
            torch.testing.assert_close(new_head.state_dict()[key.replace('conv1.', 'conv1.conv.', 1)], value)


def test_a_fine_tune_of_a_graft_tag_loads_back_through_the_tag(tmp_path):
    # Fine-tuned after the graft, the checkpoint is in our own layout, SE units included: the tag's filter takes it
    # as it is instead of grafting it again (which would refuse it).
    tag = 'se_resnet18.graft_resnet18_a1_in1k'
    tuned = randomize_bn(timm.create_model('se_resnet18', num_classes=4, **SHORT)).eval()
    path = tmp_path / 'tuned.pth'
    torch.save(tuned.state_dict(), path)
    # num_classes in the overlay too: timm keeps a checkpoint's head only when it has the cfg's class count.
    loaded = timm.create_model(tag, pretrained=True, num_classes=4,
                               pretrained_cfg_overlay=dict(file=str(path), num_classes=4), **SHORT).eval()
    with torch.no_grad():
        assert rel_err(loaded(_x()), tuned(_x())) < 1e-6
    plain = tmp_path / 'plain.pth'  # the plain twin's file is still grafted
    torch.save(_plain('resnet18', seed=7, **SHORT).state_dict(), plain)
    assert timm.create_model(tag, pretrained=True, pretrained_cfg_overlay=dict(file=str(plain)), **SHORT)


def test_readme_and_card_list_what_is_and_is_not_graftable():
    card = (Path(__file__).resolve().parents[1] / 'MODEL_CARD.md').read_text(encoding='utf-8')  # drift: test_manifest
    for spec in GRAFT_SPECS:
        assert spec.name in card
    for archs in NOT_GRAFTABLE:
        assert archs in card

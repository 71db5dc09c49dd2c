"""The package registers the zoo with timm, and names that are not ours get timm's own errors."""
import subprocess
import sys

import pytest
import timm
import torch

import timm_sesk

SE_MODELS = [
    'se_resnet18', 'se_resnet34', 'se_resnet50', 'se_resnet101', 'se_resnet152',
    'se_resnext50_32x4d', 'se_resnext101_32x4d',
    'se_resnet18_orig', 'se_resnet34_orig', 'se_resnet50_orig', 'se_resnet101_orig', 'se_resnet152_orig',
    'se_resnext26_32x4d_orig', 'se_resnext50_32x4d_orig', 'se_resnext101_32x4d_orig', 'se_net154_orig',
]
SK_MODELS = ['sk_resnet18', 'sk_resnet26', 'sk_resnet34', 'sk_resnet50', 'sk_resnet101']


def test_version():
    assert isinstance(timm_sesk.__version__, str) and timm_sesk.__version__.count('.') == 2


def test_every_model_is_registered():
    assert sorted(timm_sesk.list_models()) == sorted(SE_MODELS + SK_MODELS)
    assert set(SE_MODELS) <= set(timm.list_models('se_*'))
    assert set(SK_MODELS) <= set(timm.list_models('sk_*'))
    for name in SE_MODELS + SK_MODELS:
        assert timm.is_model(name)


def test_model_modules_do_not_collide_with_timm():
    # timm keys its registry by module basename: ours must not merge into timm's senet/sknet/resnet listings.
    for module in timm_sesk.MODEL_MODULES:
        assert set(timm.list_models(module=module)) <= set(SE_MODELS + SK_MODELS)
    assert not set(timm.list_models(module=['senet', 'sknet', 'resnet'])) & set(SE_MODELS + SK_MODELS)


def test_registration_happens_on_import():
    code = (
        'import timm; assert not timm.is_model("sk_resnet50"); '
        'import timm_sesk; assert timm.is_model("sk_resnet50"); print("ok")'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'


def test_unknown_model_gets_timms_error():
    with pytest.raises(RuntimeError, match='Unknown model'):
        timm.create_model('sk_resnet51')


def test_unknown_tag_gets_timms_error():
    with pytest.raises(RuntimeError, match='Invalid pretrained tag'):
        timm.create_model('sk_resnet50.no_such_tag')


@pytest.mark.parametrize('name', list(timm_sesk.weights.NO_WEIGHTS))  # sk_resnet101, se_resnet152: graft tags
def test_pretrained_without_weights_names_the_alternatives(name):
    with pytest.raises(RuntimeError) as err:
        timm.create_model(name, pretrained=True)
    message = str(err.value)
    assert f'{name} has no published pretrained weights' in message
    assert 'pretrained=False' in message
    for arch in timm_sesk.weights.archs_with_weights():
        assert arch in message


def test_pretrained_without_weights_accepts_a_local_file(tmp_path):
    source = timm.create_model('sk_resnet26')
    path = tmp_path / 'sk_resnet26.pth'
    torch.save(source.state_dict(), path)
    model = timm.create_model('sk_resnet26', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name

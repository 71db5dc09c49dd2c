"""Pretrained weights through the real download path: huggingface_hub and timm's loader against the loopback Hub.

Every tag's source network is published with random weights (and randomised BatchNorm statistics) where the tag
loads it from, then ``timm.create_model(tag, pretrained=True)`` must reproduce that network's logits.
"""
import dataclasses
import hashlib
import io
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
import timm
import torch
from helpers import IMG, rel_err
from sources import publish_source, source_network

import timm_sesk
from timm_sesk.errors import CheckpointReadError
from timm_sesk.weights import WEIGHTS, PretrainedWeightsError, convert_state_dict, weights_for
from timm_sesk.weights import _pretrained as plumbing

SPECS = {spec.name: spec for spec in WEIGHTS}
TESTS_DIR = os.path.dirname(__file__)


def _x(batch=2):
    return torch.randn(batch, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize('tag', list(SPECS))
def test_every_tag_reproduces_its_source(hub, tag):
    spec = SPECS[tag]
    source = publish_source(hub, spec)
    model = timm.create_model(tag, pretrained=True).eval()
    with torch.no_grad():
        assert rel_err(model(_x()), source(_x())) < 1e-5
    cfg = model.pretrained_cfg
    assert (cfg['architecture'], cfg['tag']) == (spec.arch, spec.tag)
    assert (cfg['interpolation'], cfg['crop_pct'], tuple(cfg['input_size'])) == (
        spec.interpolation, spec.crop_pct, spec.input_size)


def test_default_tag_is_the_first_listed(hub):
    publish_source(hub, SPECS['se_resnet50.ra2_in1k'])
    assert weights_for('se_resnet50')[0].tag == 'ra2_in1k'
    assert timm.create_model('se_resnet50', pretrained=True).pretrained_cfg['tag'] == 'ra2_in1k'


def test_url_pins_are_only_where_the_publisher_names_files_by_their_sha256():
    unpinned = set()
    for spec in WEIGHTS:
        if spec.hash_prefix:
            assert spec.url and f'-{spec.hash_prefix}.' in os.path.basename(spec.url), spec.name
        elif spec.url:
            unpinned.add(spec.name)
            assert 'not pinned' in spec.notes, f'{spec.name}: say why its URL file is not pinned'
    # senet.pytorch loads its file with check_hash=False: the hex digits in its name are not known to be a sha256.
    assert unpinned == {'se_resnet50.senet_pytorch_in1k'}


def _checkpoint_bytes(model):
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def _files_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_url_file_is_downloaded_once_into_our_cache_and_timm_reads_that_file(hub):
    # A user's URL whose name merely looks like '<name>-<sha256 prefix>.pth' is not pinned: the digits are wrong here.
    source = source_network(SPECS['se_resnet18_orig.in1k'], seed=5)
    url = hub.publish_url('seresnet18-00000000.pth', _checkpoint_bytes(source))
    for _ in range(2):
        model = timm.create_model('se_resnet18_orig', pretrained=True, pretrained_cfg_overlay=dict(url=url)).eval()
        with torch.no_grad():
            assert rel_err(model(_x()), source(_x())) < 1e-5
    assert hub.requests.count(('GET', '/files/seresnet18-00000000.pth')) == 1, 'the second load uses the cache'
    cached = plumbing.url_cache_path(url)
    assert model.pretrained_cfg['file'] == cached and os.path.isfile(cached)
    # timm never downloaded it itself: torch.hub's own cache file for the URL does not exist.
    assert not os.path.exists(os.path.join(torch.hub.get_dir(), 'checkpoints', 'seresnet18-00000000.pth'))


def _serve_tag_from_loopback(hub, monkeypatch, spec, name, data, pin=None):
    """Serve a URL tag's file from the loopback as ``name`` and point the manifest at it (the cache is per URL)."""
    url = hub.publish_url(name, data)
    moved = dataclasses.replace(spec, url=url, hash_prefix=pin or spec.hash_prefix)
    monkeypatch.setattr(plumbing, 'WEIGHTS', tuple(moved if w is spec else w for w in WEIGHTS))
    return url


def test_manifest_pin_refuses_a_tampered_file_and_discards_it(hub, monkeypatch):
    spec = SPECS['se_resnet34_orig.in1k']
    data = _checkpoint_bytes(source_network(spec, seed=7))
    url = _serve_tag_from_loopback(hub, monkeypatch, spec, 'tampered.pth', data)
    with pytest.raises(PretrainedWeightsError, match=r'refused .* does not start with the pinned a4004e63.*discarded'):
        timm.create_model(spec.name, pretrained=True, pretrained_cfg_overlay=dict(url=url))
    assert _files_in(os.path.dirname(plumbing.url_cache_path(url))) == [], 'a refused download must leave nothing'


def test_manifest_pin_accepts_the_genuine_file(hub, monkeypatch):
    spec = SPECS['se_resnet34_orig.in1k']
    source = source_network(spec, seed=8)
    data = _checkpoint_bytes(source)
    pin = hashlib.sha256(data).hexdigest()[:8]
    url = _serve_tag_from_loopback(hub, monkeypatch, spec, 'genuine.pth', data, pin=pin)
    model = timm.create_model(spec.name, pretrained=True, pretrained_cfg_overlay=dict(url=url)).eval()
    with torch.no_grad():
        assert rel_err(model(_x()), source(_x())) < 1e-5


def test_a_url_file_that_is_no_checkpoint_is_refused_before_it_is_cached(hub):
    # The server sends it whole (as long as it announces), but it is half a checkpoint: once cached, every later load
    # would fail until the file was deleted by hand. Unpinned, it must read as a checkpoint to be cached.
    data = _checkpoint_bytes(source_network(SPECS['se_resnet18_orig.in1k'], seed=9))
    url = hub.publish_url('seresnet18-truncated.pth', data[: len(data) // 2])
    with pytest.raises(PretrainedWeightsError) as err:
        timm.create_model('se_resnet18_orig', pretrained=True, pretrained_cfg_overlay=dict(url=url))
    assert f'{url} sent a file that is not a readable checkpoint (it is truncated or corrupt). It was discarded, ' \
           'nothing was cached or loaded' in str(err.value)
    assert _files_in(os.path.dirname(plumbing.url_cache_path(url))) == []


def test_failed_url_download_names_the_fix(hub):
    url = f'{hub.url}/files/no-such-file.pth'
    with pytest.raises(PretrainedWeightsError, match=r'downloading .*no-such-file.pth failed \(Not Found\)\. .*'
                                                     r'pretrained_cfg_overlay=dict\(file="/path/to/no-such-file.pth"\)'):
        timm.create_model('se_resnet18_orig', pretrained=True, pretrained_cfg_overlay=dict(url=url))
    assert _files_in(os.path.dirname(plumbing.url_cache_path(url))) == []


@pytest.mark.parametrize('damage', ['truncated', 'garbage'])
def test_corrupt_hub_file_is_a_clear_error(hub, damage):
    spec = SPECS['sk_resnet18.ra_in1k']
    data = safetensors.torch.save(source_network(spec).state_dict())
    repo = 'sesk-test/corrupt-' + damage
    hub.publish(repo, 'model.safetensors', data[: len(data) // 2] if damage == 'truncated' else b'\0' * 4096)
    with pytest.raises(PretrainedWeightsError, match=r'is not a readable checkpoint \(it is truncated or corrupt\)'):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=repo))


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    path = tmp_path / 'evil.pth'
    path.write_bytes(pickle.dumps({'conv1.weight': Payload()}))
    with pytest.raises(PretrainedWeightsError, match='holds Python objects other than tensors'):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert not marker.exists()


@pytest.mark.parametrize('save', [
    pytest.param(lambda obj, path: torch.save(obj, path), id='zip'),
    pytest.param(lambda obj, path: torch.save(obj, path, _use_new_zipfile_serialization=False), id='legacy'),
])
def test_pickled_code_is_named_as_such_on_every_route(tmp_path, save):
    """torch's legacy format was called truncated or corrupt through the overlay, and through --checkpoint torch's
    own line suggested loading it with weights_only=False."""
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    path = tmp_path / 'evil.pth'
    save({'state_dict': {'conv1.weight': Payload()}}, path)
    why = r'holds Python objects other than tensors, which are never unpickled here: posix\.system'
    with pytest.raises(PretrainedWeightsError, match=why):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    with pytest.raises(CheckpointReadError, match=why):
        timm_sesk.load('sk_resnet18', checkpoint=path)
    assert not marker.exists()


def test_a_legacy_checkpoint_of_tensors_cut_short_is_corrupt_not_a_payload(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save(timm.create_model('sk_resnet18').state_dict(), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    with pytest.raises(PretrainedWeightsError, match=r'\(it is truncated or corrupt\)'):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_a_safetensors_file_under_another_name_is_named_as_one(tmp_path):
    """timm reads an overlay file by its name: a safetensors file named .pth was called truncated or corrupt, while
    --checkpoint, which reads by content, took it."""
    state = timm.create_model('sk_resnet18').state_dict()
    path = tmp_path / 'weights.pth'
    safetensors.torch.save_file(state, str(path))
    with pytest.raises(PretrainedWeightsError, match=r'it is a safetensors file.*Rename it to end in \.safetensors'):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    model, _ = timm_sesk.load('sk_resnet18', checkpoint=path)
    assert torch.equal(model.state_dict()['fc.weight'], state['fc.weight'])


def test_wrong_architecture_lists_the_keys_and_loads_nothing(hub):
    # skresnet34 weights published where skresnet18 weights are expected
    repo = 'sesk-test/wrong-arch'
    hub.publish(repo, 'model.safetensors', safetensors.torch.save(timm.create_model('skresnet34').state_dict()))
    with pytest.raises(PretrainedWeightsError, match=r'does not fit SeskResNet exactly.*unexpected keys: layer1\.2'):
        timm.create_model('sk_resnet18.ra_in1k', pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=repo))


def test_missing_keys_are_listed(tmp_path):
    state_dict = timm.create_model('sk_resnet18').state_dict()
    del state_dict['layer2.0.conv1.attn.fc_select.weight']
    path = tmp_path / 'partial.pth'
    torch.save(state_dict, path)
    with pytest.raises(PretrainedWeightsError, match=r'missing keys: layer2\.0\.conv1\.attn\.fc_select\.weight'):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_unknown_hub_repo_is_a_clear_error():
    with pytest.raises(PretrainedWeightsError, match='the Hub has no repository nobody/nothing'):
        timm.create_model('sk_resnet18', pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id='nobody/nothing'))


def test_adaptation_to_num_classes_and_in_chans(hub):
    spec = SPECS['sk_resnet34.ra_in1k']
    source = publish_source(hub, spec)
    model = timm.create_model(spec.name, pretrained=True, num_classes=10, in_chans=1).eval()
    reference = convert_state_dict(source.state_dict(), spec.mapping)
    adapted = model.state_dict()
    assert adapted['fc.weight'].shape == (10, 512)
    torch.testing.assert_close(adapted['conv1.weight'], reference['conv1.weight'].sum(dim=1, keepdim=True))
    for key, value in adapted.items():
        if not key.startswith(('fc.', 'conv1.')):
            torch.testing.assert_close(value, reference[key], msg=key)
    headless = timm.create_model(spec.name, pretrained=True, num_classes=0).eval()
    with torch.no_grad():
        torch.testing.assert_close(headless(_x()), source.forward_head(source.forward_features(_x()), pre_logits=True))


def test_features_only_backbone_gets_the_weights(hub):
    spec = SPECS['se_resnext50_32x4d.racm_in1k']
    source = publish_source(hub, spec)
    backbone = timm.create_model(spec.name, pretrained=True, features_only=True, out_indices=(4,)).eval()
    with torch.no_grad():
        assert rel_err(backbone(_x())[0], source.forward_features(_x())) < 1e-5


def test_tag_weights_from_a_local_copy_of_the_published_file(tmp_path):
    # A user who fetched the published file by hand passes it as a file; the tag's key mapping still applies.
    spec = SPECS['se_resnet50_orig.in1k']
    source = source_network(spec, seed=2)
    path = tmp_path / os.path.basename(spec.url)
    torch.save(source.state_dict(), path)
    model = timm.create_model(spec.name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    with torch.no_grad():
        assert rel_err(model(_x()), source(_x())) < 1e-5


def _run(code, env_extra=None, timeout=300):
    env = dict(os.environ, PYTHONPATH=TESTS_DIR + os.pathsep + os.environ.get('PYTHONPATH', ''), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=timeout)


def test_offline_with_warm_cache_works_and_cold_cache_says_how_to_fix(hub, tmp_path):
    spec = SPECS['sk_resnet18.ra_in1k']
    publish_source(hub, spec, seed=3)
    cache = str(tmp_path / 'hf_cache')
    load = 'import timm, timm_sesk; timm.create_model("sk_resnet18", pretrained=True); print("loaded")'
    cold = _run(load, dict(HF_HUB_CACHE=cache, HF_HUB_OFFLINE='1'))
    assert cold.returncode != 0
    assert 'PretrainedWeightsError' in cold.stderr
    assert 'timm/skresnet18.ra_in1k' in cold.stderr and 'pretrained_cfg_overlay=dict(file=' in cold.stderr
    assert _run(load, dict(HF_HUB_CACHE=cache)).stdout.strip() == 'loaded'  # online: fills the cache
    requests = len(hub.requests)
    warm = _run(load, dict(HF_HUB_CACHE=cache, HF_HUB_OFFLINE='1'))
    assert warm.stdout.strip() == 'loaded', warm.stderr
    assert len(hub.requests) == requests, 'offline mode must not touch the network'


def test_two_processes_downloading_at_once_both_succeed(hub, tmp_path):
    spec = SPECS['sk_resnet18.ra_in1k']
    source = publish_source(hub, spec, seed=4)
    hub.delay = 1.0  # hold each download open so that the two overlap
    code = '''
        import sys, torch, timm, timm_sesk
        model = timm.create_model("sk_resnet18", pretrained=True)
        torch.save(model.state_dict(), sys.argv[1])
    '''
    env = dict(os.environ, PYTHONPATH=TESTS_DIR, HF_HUB_CACHE=str(tmp_path / 'shared_cache'))
    try:
        procs = [
            subprocess.Popen([sys.executable, '-c', textwrap.dedent(code), str(tmp_path / f'rank{rank}.pth')],
                             env=env, stderr=subprocess.PIPE, text=True)
            for rank in range(2)
        ]
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        hub.delay = 0.0
    assert [p.returncode for p in procs] == [0, 0], errors
    expected = convert_state_dict(source.state_dict(), 'timm_sknet')
    for rank in range(2):
        loaded = torch.load(tmp_path / f'rank{rank}.pth', weights_only=True)
        for key, value in expected.items():
            torch.testing.assert_close(loaded[key], value, msg=key)

"""``timm_sesk.weights`` as a package: one module identity, an honest public API, and the timm behaviour it relies on.

The pretrained path hands timm a resolved cfg and, for URL sources, the exact file to read (``weights/_pretrained.py``).
What that relies on in timm is pinned here, so that a timm upgrade that changes it fails loudly.
"""
import ast
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from helpers import rel_err
from timm.models import load_pretrained, resolve_pretrained_cfg

import timm_sesk
from timm_sesk.weights import WEIGHTS

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_a_file_in_the_cfg_is_what_timm_loads_before_hub_and_url(tmp_path):
    # The URL path adds file=<downloaded file> to a cfg that keeps its url; timm must read the file, and nothing else,
    # and pass what it read to the filter function with the model.
    source = timm.create_model('sk_resnet18').eval()
    path = tmp_path / 'weights.pth'
    torch.save(source.state_dict(), path)
    model = timm.create_model('sk_resnet18').eval()
    calls = []

    def filter_fn(state_dict, target):
        calls.append((sorted(state_dict) == sorted(source.state_dict()), target))
        return state_dict

    cfg = dict(model.pretrained_cfg, file=str(path), url='http://127.0.0.1:9/never.pth', hf_hub_id='nobody/never')
    load_pretrained(model, pretrained_cfg=cfg, filter_fn=filter_fn)
    assert calls == [(True, model)]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(model(x), source(x)) == 0


def test_resolve_pretrained_cfg_merges_the_overlay_into_the_tag(tmp_path):
    spec = next(w for w in WEIGHTS if w.url and w.hash_prefix)
    cfg = resolve_pretrained_cfg(spec.arch, pretrained_cfg=spec.tag, pretrained_cfg_overlay=dict(file='/x.pth'))
    assert (cfg.architecture, cfg.tag, cfg.url, cfg.file) == (spec.arch, spec.tag, spec.url, '/x.pth')
    assert cfg.has_weights
    assert not resolve_pretrained_cfg('sk_resnet26').has_weights  # no published weights: our error, not timm's


def test_the_public_api_is_what_users_need():
    public = set(timm_sesk.weights.__all__)
    assert all(hasattr(timm_sesk.weights, name) for name in public)
    assert {'PretrainedWeightsError', 'WEIGHTS', 'Checkpoint', 'convert_state_dict', 'weights_for'} <= public
    for plumbing in ('fetch_url', 'find_spec', 'pretrained_source', 'explained', 'url_cache_path', 'sha256_file'):
        assert not hasattr(timm_sesk.weights, plumbing), plumbing


def test_weights_know_weights_not_models():
    # The models import the weights package (their default_cfgs, the pretrained path); it imports none of them back.
    models = ('timm_sesk.models', 'timm_sesk.graft', 'timm_sesk.loading', 'timm_sesk.layers', 'timm_sesk.zoo')
    imported = []
    for path in sorted((REPO_ROOT / 'weights').glob('*.py')):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ''] if isinstance(node, ast.ImportFrom) else []
            imported += [f'{path.name}: {name}' for name in names if name.startswith(models)]
    assert imported == []


def test_a_source_checkout_imports_one_weights_package():
    # Only the checkout and the venv's site-packages on the path: no .pth files (python -S), so no editable install.
    code = f'''
        import sys
        sys.path[:0] = [{str(REPO_ROOT)!r}]
        sys.path.append({sysconfig.get_paths()['purelib']!r})
        import timm, timm_sesk
        print(timm_sesk.__file__)
        try:
            timm.create_model('sk_resnet26', pretrained=True)
        except timm_sesk.weights.PretrainedWeightsError:
            print('the models raise timm_sesk.weights.PretrainedWeightsError')
        try:
            import weights
        except ImportError as e:
            print(e)
        print('weights' in sys.modules)
    '''
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run([sys.executable, '-S', '-c', textwrap.dedent(code)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        str(REPO_ROOT / 'timm_sesk' / '__init__.py'),
        'the models raise timm_sesk.weights.PretrainedWeightsError',
        'the weights/ folder is the package timm_sesk.weights: import timm_sesk.weights, not weights',
        'False',
    ]


@pytest.mark.parametrize('module', ['weights', 'weights.manifest'])
def test_weights_is_refused_as_a_top_level_package(module, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    with pytest.raises(ImportError, match=r'import timm_sesk\.weights, not weights'):
        __import__(module)
    assert 'weights' not in sys.modules


def test_one_checkpoint_reader_for_every_caller(tmp_path):
    import argparse

    import safetensors.torch

    from timm_sesk.weights import Checkpoint, CheckpointReadError

    model = timm.create_model('se_resnet18', num_classes=3)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    # As timm's train.py saves: arch, argparse arguments, DDP-prefixed weights and EMA weights.
    train = tmp_path / 'model_best.pth.tar'
    torch.save({'epoch': 3, 'arch': 'se_resnet18', 'args': argparse.Namespace(img_size=64, crop_pct=None),
                'state_dict': {f'module.{k}': v for k, v in model.state_dict().items()}, 'state_dict_ema': ema}, train)
    ckpt = Checkpoint.read(train)
    assert ckpt.arch == 'se_resnet18' and ckpt.train_args['img_size'] == 64 and ckpt.entry == 'state_dict_ema'
    for name, tensor in ckpt.state_dict.items():
        assert torch.equal(tensor, ema[name]), name  # the EMA weights, as timm's load_checkpoint takes them
    plain = Checkpoint.read(train, ema=False)  # the model's own weights, prefixes removed
    assert plain.entry == 'state_dict' and sorted(plain.state_dict) == sorted(model.state_dict())
    for name, tensor in plain.state_dict.items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    # safetensors recognised by its content, whatever the file's name.
    named_pth = tmp_path / 'weights.pth'
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, named_pth)
    assert sorted(Checkpoint.read(named_pth).state_dict) == sorted(model.state_dict())
    # Not weights: refused with the file named, never unpickled beyond tensors.
    (tmp_path / 'text.pth').write_text('not a checkpoint')
    torch.save([torch.zeros(1)], tmp_path / 'list.pth')
    torch.save({'fn': os.system}, tmp_path / 'code.pth')
    for bad in ('text.pth', 'list.pth', 'code.pth'):
        with pytest.raises(CheckpointReadError, match=f'cannot read checkpoint {tmp_path / bad}'):
            Checkpoint.read(tmp_path / bad)

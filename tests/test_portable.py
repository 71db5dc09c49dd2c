"""Portable by default: a fine-tune shared from the zoo is timm's built-in twin, which loads where timm_sesk is not
installed (plain timm, the Hub, transformers), with the plugin model's logits; and it comes back exactly."""
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from helpers import IMG, randomize_bn, rel_err
from PIL import Image
from sources import publish_source

import timm_sesk
from timm_sesk.cli import main
from timm_sesk.errors import NoTwinError
from timm_sesk.publish import export_hub_folder
from timm_sesk.twin import twin_of
from timm_sesk.weights import REFERENCES, WEIGHTS

TESTS = Path(__file__).resolve().parent
LABELS = ['airplane', 'cargo ship', 'cat', 'deer', 'dog', 'frog', 'horse']
# The issue's four: SK in basic blocks, a graft tag's fine-tune, SKNet-50, the SENet authors' layout.
FINETUNES = ('sk_resnet18', 'se_resnet18', 'sk_resnet50', 'se_resnet50_orig')
GRAFT = next(s for s in WEIGHTS if s.name == 'se_resnet18.graft_resnet18_a1_in1k')


@dataclass
class Export:
    model: torch.nn.Module  # the fine-tune, as timm_sesk loads its checkpoint
    checkpoint: Path
    folder: Path
    repo: str


def _finetune(hub, name: str, seed: int) -> torch.nn.Module:
    """A 7-class fine-tune: every weight moved from where it started, BatchNorms with trained-like statistics."""
    torch.manual_seed(seed)
    if name == GRAFT.arch:  # fine-tuned from its graft tag
        publish_source(hub, GRAFT, seed)
        model = timm.create_model(GRAFT.name, pretrained=True, num_classes=len(LABELS))
    else:
        model = timm.create_model(name, num_classes=len(LABELS))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return randomize_bn(model).eval()


@pytest.fixture(scope='module')
def exports(hub, tmp_path_factory):
    """Each fine-tune saved as train.py saves it, exported as `timm-sesk export` exports it, and uploaded to the
    loopback Hub (the ~25M-parameter models are built once, on CPU)."""
    root = tmp_path_factory.mktemp('portable')
    out = {}
    for seed, name in enumerate(FINETUNES):
        checkpoint = root / f'{name}.pth.tar'
        torch.save({'arch': name, 'state_dict': _finetune(hub, name, seed).state_dict()}, checkpoint)
        model, _ = timm_sesk.load(name, checkpoint=checkpoint)
        repo = f'sesk-test/portable-{name}'
        folder = export_hub_folder(name, root / name, checkpoint=checkpoint, dataset='toy', label_names=LABELS,
                                   repo_id=repo, model=model)
        for path in folder.iterdir():
            hub.publish(repo, path.name, path)
        out[name] = Export(model.eval(), checkpoint, folder, repo)
    return out


def test_the_finetunes_load_without_the_plugin_in_timm_and_transformers(exports, tmp_path):
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))
    job = {'inputs': str(tmp_path / 'x.safetensors'), 'logits': str(tmp_path / 'logits.safetensors'),
           'seen': str(tmp_path / 'seen.json'),
           'cases': {name: {'folder': str(e.folder), 'repo': e.repo} for name, e in exports.items()}}
    safetensors.torch.save_file({'x': x}, job['inputs'])
    (tmp_path / 'job.json').write_text(json.dumps(job))
    result = subprocess.run([sys.executable, str(TESTS / 'without_plugin.py'), str(tmp_path / 'job.json')],
                            capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-3000:]
    logits = safetensors.torch.load_file(job['logits'])
    seen = json.loads(Path(job['seen']).read_text())
    for name, export in exports.items():
        assert seen[name]['architecture'] == twin_of(export.model).name == REFERENCES[name].name
        with torch.no_grad():
            expected = export.model(x)
            for loader in ('local', 'hub', 'transformers'):
                assert rel_err(logits[f'{name}.{loader}'], expected) < 1e-5, (name, loader)
            probs = export.model(logits[f'{name}.pixels']).softmax(dim=1)[0]
        assert seen[name]['id2label'] == {str(i): label for i, label in enumerate(LABELS)}
        top = probs.topk(3)
        assert [p['label'] for p in seen[name]['pipeline']] == [LABELS[i] for i in top.indices.tolist()]
        assert [p['score'] for p in seen[name]['pipeline']] == pytest.approx(top.values.tolist(), rel=1e-4)


def test_a_portable_folder_is_timms_twin_and_says_so(exports):
    export = exports['se_resnet50_orig']
    config = json.loads((export.folder / 'config.json').read_text())
    assert config['architecture'] == 'legacy_seresnet50' and config['label_names'] == LABELS
    assert 'num_classes' not in config.get('model_args', {})  # transformers passes it itself
    assert config['pretrained_cfg']['first_conv'] == 'layer0.conv1'  # the twin's own names
    with safetensors.safe_open(str(export.folder / 'model.safetensors'), 'pt') as f:
        metadata, keys = f.metadata(), set(f.keys())
    assert metadata['architecture'] == 'legacy_seresnet50' and metadata['timm_sesk_architecture'] == 'se_resnet50_orig'
    assert metadata['weights'] == 'fine-tuned' and metadata['timm_sesk_version'] == timm_sesk.__version__
    with torch.device('meta'):
        assert keys == set(timm.create_model('legacy_seresnet50', num_classes=len(LABELS)).state_dict())
    card = (export.folder / 'README.md').read_text()
    assert 'import timm_sesk' not in card and 'pip install timm' in card
    assert "timm's legacy_seresnet50, exported from se_resnet50_orig" in card and 'max relative error' in card
    assert "timm.create_model('hf-hub:sesk-test/portable-se_resnet50_orig', pretrained=True)" in card


@pytest.mark.parametrize('name', FINETUNES)
def test_a_portable_export_loads_back_into_its_timm_sesk_model_exactly(exports, name):
    export = exports[name]
    file = export.folder / 'model.safetensors'
    overlay = timm.create_model(name, pretrained=True, num_classes=len(LABELS),  # the file's head, as timm is told it
                                pretrained_cfg_overlay=dict(file=str(file), num_classes=len(LABELS)))
    checkpoint, report = timm_sesk.load(name, checkpoint=file)  # what the command line's --checkpoint does
    assert report.layout == REFERENCES[name].mapping
    loaded = timm.create_model(name, num_classes=len(LABELS))
    timm_sesk.load_weights(loaded, file)
    twin = timm.create_model(f'local-dir:{export.folder}', pretrained=True)
    expected = export.model.state_dict()
    for model in (overlay, checkpoint, loaded, timm_sesk.from_timm(twin)):
        state = model.state_dict()
        assert state.keys() == expected.keys() and all(torch.equal(state[k], v) for k, v in expected.items())


def test_the_command_line_round_trip_loses_nothing(exports, capsys, tmp_path):
    """Portable folder -> --checkpoint -> plugin folder: which holds the fine-tune's tensors, bit for bit."""
    export = exports['sk_resnet18']
    assert main(['export', '-m', 'sk_resnet18', str(tmp_path / 'plugin'), '--checkpoint',
                 str(export.folder / 'model.safetensors'), '--dataset', 'toy', '--layout', 'plugin']) == 0
    assert "portable: wrote timm's" not in capsys.readouterr().out
    assert json.loads((tmp_path / 'plugin' / 'config.json').read_text())['architecture'] == 'sk_resnet18'
    state = safetensors.torch.load_file(str(tmp_path / 'plugin' / 'model.safetensors'))
    expected = export.model.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], v) for k, v in expected.items())


def test_a_twinless_export_keeps_the_plugin_layout_and_names_the_plugin(tmp_path):
    lines = []
    model = timm.create_model('sk_resnet18', num_classes=3, sk_keep_3x3=False)
    folder = export_hub_folder('sk_resnet18', tmp_path / 'out', model=model, dataset='none', log=lines.append)
    assert lines == ["plugin layout: sk_resnet18 with sk_keep_3x3=False has no twin built into timm: timm's skresnet18 "
                     'is sk_resnet18 with sk_keep_3x3=True; loading the folder needs timm_sesk, as its card says']
    assert json.loads((folder / 'config.json').read_text())['architecture'] == 'sk_resnet18'
    card = (folder / 'README.md').read_text()
    assert 'Loading it needs timm_sesk installed and `import timm_sesk`' in card and '\nimport timm_sesk ' in card
    with pytest.raises(NoTwinError, match='sk_keep_3x3=False'):
        export_hub_folder('sk_resnet18', tmp_path / 'refused', model=model, dataset='none', layout='portable')
    assert not (tmp_path / 'refused').exists()


def test_the_command_line_refuses_a_portable_export_without_a_twin_in_one_line(capsys, tmp_path):
    assert main(['export', '-m', 'se_resnet18', str(tmp_path / 'out'), '--no-pretrained', '--layout', 'portable',
                 '--model-kwarg', 'se_reduction=8']) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("timm-sesk: error: se_resnet18 with se_reduction=8 has no twin built into timm: timm's seresnet18 "
                   'is se_resnet18 with se_reduction=16; export it with --layout plugin')
    assert main(['export', '-m', 'se_resnet18', str(tmp_path / 'onnx'), '--format', 'onnx', '--layout', 'plugin']) == 2
    assert '--layout: only for --format hub' in capsys.readouterr().err


def test_the_command_line_runs_a_portable_folder_as_the_zoo_model(exports, capsys, tmp_path):
    """A portable folder holds timm's twin: -m FOLDER runs it as the zoo's model with the folder's labels, so attention
    finds its SK units (it said the folder had none) and fuse's fast path applies."""
    folder = exports['sk_resnet18'].folder
    twin = timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert timm_sesk.from_timm(twin).pretrained_cfg['label_names'] == LABELS
    image = tmp_path / 'photo.png'
    Image.fromarray(torch.randint(0, 256, (IMG, IMG, 3), dtype=torch.uint8).numpy()).save(image)
    assert main(['attention', '-m', str(folder), str(image), '--out', str(tmp_path / 'att.png')]) == 0
    assert (tmp_path / 'att.png').stat().st_size > 0
    capsys.readouterr()
    assert main(['predict', '-m', str(folder), '--json', str(image)]) == 0
    assert {t['label'] for t in json.loads(capsys.readouterr().out)['predictions'][0]['top']} <= set(LABELS)

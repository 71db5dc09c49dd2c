"""Hub-ready folders: what they contain, and that timm loads them back through `hf-hub:` (and after an upload)."""
import ast
import json
import os
import re
import subprocess
import sys

import pytest
import safetensors
import timm
import torch
import yaml
from helpers import IMG, rel_err
from sources import publish_source

import timm_sesk
from timm_sesk import publish
from timm_sesk.errors import ExportCheckError
from timm_sesk.publish import export_hub_folder, upload_hub_folder
from timm_sesk.twin import to_timm
from timm_sesk.weights import WEIGHTS

SPEC = next(s for s in WEIGHTS if s.name == 'sk_resnet18.ra_in1k')


def _x():
    return torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(3))


def _front_matter(readme: str) -> dict:
    assert readme.startswith('---\n')
    block = readme.split('---\n')[1]
    fields, key = {}, None
    for line in block.splitlines():
        if line.startswith('- '):
            fields.setdefault(key, []).append(line[2:])
        else:
            key, _, value = line.partition(':')
            if value.strip():
                fields[key] = value.strip()
    return fields


@pytest.mark.parametrize('layout', [None, 'plugin'])  # None: portable, timm's skresnet18
def test_exported_folder_loads_back_through_hf_hub(hub, tmp_path, layout):
    source = publish_source(hub, SPEC, seed=11)
    repo = f'sesk-test/sk18-{layout}'
    folder = export_hub_folder(SPEC.name, tmp_path / 'export', repo_id=repo, layout=layout)
    assert sorted(p.name for p in folder.iterdir()) == ['README.md', 'config.json', 'data_config.json',
                                                        'model.safetensors']
    architecture = 'sk_resnet18' if layout == 'plugin' else 'skresnet18'

    with safetensors.safe_open(str(folder / 'model.safetensors'), 'pt') as f:
        metadata = f.metadata()
    assert metadata['architecture'] == architecture
    assert metadata['weights'] == SPEC.name and metadata['weights_source'] == SPEC.source
    assert set(metadata) == {'format', 'architecture', 'timm_sesk_version', 'timm_version', 'weights',
                             'weights_source', *([] if layout == 'plugin' else ['timm_sesk_architecture'])}

    config = json.loads((folder / 'config.json').read_text())
    assert config['architecture'] == architecture and config['num_classes'] == 1000
    assert config['pretrained_cfg']['interpolation'] == SPEC.interpolation

    readme = (folder / 'README.md').read_text()
    front = _front_matter(readme)
    assert front['library_name'] == 'timm' and front['license'] == SPEC.license
    assert front['datasets'] == ['imagenet-1k'] and {'timm', 'timm_sesk', 'selective-kernel'} <= set(front['tags'])
    assert ('import timm_sesk' in readme) == (layout == 'plugin') and f"create_model('hf-hub:{repo}'" in readme
    assert SPEC.source in readme and 'reported by timm results-imagenet.csv' in readme

    for path in folder.iterdir():
        hub.publish(repo, path.name, path)
    model = timm.create_model(f'hf-hub:{repo}', pretrained=True).eval()
    assert model.pretrained_cfg['architecture'] == architecture
    with torch.no_grad():
        assert rel_err(model(_x()), source(_x())) < 1e-5


def test_finetuned_checkpoint_uploads_and_loads_back(hub, tmp_path):
    finetuned = timm.create_model('se_resnet18', num_classes=7, se_position='post').eval()
    checkpoint = tmp_path / 'checkpoint.pth.tar'
    torch.save({'epoch': 3, 'state_dict': finetuned.state_dict()}, checkpoint)  # as timm's train.py saves it
    folder = export_hub_folder(
        'se_resnet18', tmp_path / 'export', checkpoint=checkpoint, dataset='cifar10',
        model_args=dict(num_classes=7, se_position='post'), repo_id='sesk-test/se18-cifar')
    readme = (folder / 'README.md').read_text()
    assert _front_matter(readme)['datasets'] == ['cifar10'] and 'sha256' in readme
    # SE after the residual addition: no twin in timm, so the plugin layout, and a card that names the plugin
    assert 'Loading it needs timm_sesk installed and `import timm_sesk`' in readme and '\nimport timm_sesk ' in readme
    assert json.loads((folder / 'config.json').read_text())['model_args']['se_position'] == 'post'

    commit_url = upload_hub_folder(folder, 'sesk-test/se18-cifar', token=False)
    assert 'sesk-test/se18-cifar/commit/' in commit_url
    assert ('POST', '/api/models/sesk-test/se18-cifar/commit/main') in hub.requests

    model = timm.create_model('hf-hub:sesk-test/se18-cifar', pretrained=True).eval()
    assert model.num_classes == 7 and model.layer1[0].attn_position == 'post'
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), finetuned(_x()))


def _claims(folder) -> tuple:
    """What a folder says its weights are: the metadata's weights, config.json's tag, whether the card gives a
    top-1, and whether it names the tag."""
    with safetensors.safe_open(str(folder / 'model.safetensors'), 'pt') as f:
        weights = f.metadata()['weights']
    readme = (folder / 'README.md').read_text()
    tag = json.loads((folder / 'config.json').read_text())['pretrained_cfg'].get('tag')
    return weights, tag, 'top-1' in readme, SPEC.name in readme


def test_an_in_memory_model_claims_no_tag_unless_its_load_report_proves_it(hub, tmp_path):
    """A model passed in may have been fine-tuned, or built without weights (its cfg still names the default tag):
    only the report of the load that gave it its weights lets the card claim the tag and its accuracy."""
    publish_source(hub, SPEC, seed=13)
    model, report = timm_sesk.load(SPEC.name)
    assert _claims(export_hub_folder(SPEC.name, tmp_path / 'proven', model=model, report=report, layout='plugin')) == (
        SPEC.name, 'ra_in1k', True, True)
    # timm's twin names no tag of ours in its config; the metadata and the card still claim the tag's weights
    assert _claims(export_hub_folder(SPEC.name, tmp_path / 'portable', model=model, report=report)) == (
        SPEC.name, None, True, True)
    assert _claims(export_hub_folder(SPEC.name, tmp_path / 'in-memory', model=model)) == (
        'unverified', None, False, False)
    random = timm.create_model('sk_resnet18')
    assert random.pretrained_cfg['tag'] == 'ra_in1k'  # what the card used to claim, with the tag's top-1
    folder = export_hub_folder('sk_resnet18', tmp_path / 'random', model=random)
    assert _claims(folder) == ('unverified', None, False, False)
    assert 'datasets' not in _front_matter((folder / 'README.md').read_text())  # not imagenet-1k


def test_checkpoint_needs_its_dataset(tmp_path):
    with pytest.raises(ValueError, match='name the dataset'):
        export_hub_folder('se_resnet18', tmp_path, checkpoint=tmp_path / 'x.pth')


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save(timm.create_model('sk_resnet18').state_dict(), path)
    with pytest.raises(RuntimeError, match='does not fit'):
        export_hub_folder('se_resnet18', tmp_path / 'out', checkpoint=path, dataset='x')


def test_export_command(hub, tmp_path):
    publish_source(hub, SPEC, seed=12)
    out = tmp_path / 'cli'
    result = subprocess.run(
        [sys.executable, '-m', 'timm_sesk', 'export', SPEC.name, str(out), '--repo-id', 'sesk-test/cli'],
        capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    error = float(re.search(r'max relative error (\S+)\)', result.stdout).group(1))
    assert f"portable: wrote timm's skresnet18 (exactly equal to sk_resnet18, max relative error {error:.0e}); loads " \
           'with timm alone\n' in result.stdout and 0 <= error < 1e-5
    assert 'model.safetensors' in result.stdout and f'max relative error {error:.0e}' in (out / 'README.md').read_text()
    assert json.loads((out / 'config.json').read_text())['architecture'] == 'skresnet18'


def test_a_folder_whose_twin_computes_otherwise_is_refused(monkeypatch, tmp_path):
    def wrong(model):
        twin = to_timm(model)
        twin.fc.bias.data[0] += 1.0
        return twin

    monkeypatch.setattr(publish, 'to_timm', wrong)
    model = timm.create_model('sk_resnet18', num_classes=3)
    with pytest.raises(ExportCheckError, match=r"timm's skresnet18 built from .* does not compute what sk_resnet18 "
                                               r'computes'):
        export_hub_folder('sk_resnet18', tmp_path, model=model, dataset='none')
    assert list(tmp_path.iterdir()) == []  # neither weights, config nor card


def test_strings_from_the_user_are_quoted_in_the_card(tmp_path):
    """The YAML front matter reads back exactly the strings given; before, a dataset or licence could end its field
    and add others. (A repository id is validated before anything is written; the snippet writes it as a literal.)"""
    dataset, license, repo_id = 'cifar10\nlicense: mit\ntags: [evil]', 'other # see LICENSE', 'me/x.y-z'
    folder = export_hub_folder('se_resnet18', tmp_path / 'out', model=timm.create_model('se_resnet18', num_classes=3),
                               dataset=dataset, license=license, repo_id=repo_id)
    readme = (folder / 'README.md').read_text()
    front = yaml.safe_load(readme.split('---\n')[1])
    assert front['license'] == license and front['datasets'] == [dataset.lower()]
    assert set(front) == {'tags', 'pipeline_tag', 'library_name', 'license', 'datasets'} and 'evil' not in front['tags']
    snippet = readme.split('```python\n')[1].split('```')[0]
    loads = [node for node in ast.walk(ast.parse(snippet)) if isinstance(node, ast.Call)
             and getattr(node.func, 'attr', '') == 'create_model']
    assert len(loads) == 1 and ast.literal_eval(loads[0].args[0]) == f'hf-hub:{repo_id}'

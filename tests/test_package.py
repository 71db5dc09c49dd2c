"""The package registers the zoo with timm, each architecture as declared once, and names that are not ours get
timm's own errors."""
import ast
import importlib
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.models import get_pretrained_cfg
from timm.models.resnet import ResNet
from torch import nn

import timm_sesk
from timm_sesk.models.archs import ARCHS, FAMILIES, families_of
from timm_sesk.weights import REFERENCES

REPO = Path(__file__).resolve().parents[1]
README = REPO / 'README.md'
CARD = runpy.run_path(str(REPO / 'docs' / 'card.py'))  # the generator: a script
with_zoo_table, with_twin_table = CARD['with_zoo_table'], CARD['with_twin_table']


def _meta(name, **kwargs):
    return timm.create_model(name, device='meta', **kwargs)


def test_version():
    assert isinstance(timm_sesk.__version__, str) and timm_sesk.__version__.count('.') == 2


def test_every_declared_architecture_is_registered_with_its_reference():
    assert sorted(timm_sesk.list_models()) == sorted(ARCHS) == sorted(REFERENCES)
    for name, arch in ARCHS.items():
        assert timm.is_model(name) and REFERENCES[name] is arch.reference
        assert name in timm.list_models(f'{arch.family}_*')  # the family's name prefix


@pytest.mark.parametrize('name', sorted(ARCHS))
def test_family_is_what_the_model_contains(name):
    assert families_of(_meta(name)) == (ARCHS[name].family,)


def test_families_follow_the_model_arguments():
    assert families_of(_meta('sk_resnet26', se_position='standard')) == ('se', 'sk')
    assert families_of(_meta('se_resnet18', se_position='none')) == ()
    assert families_of(_meta('se_resnet18', sk_paths=2)) == ('se', 'sk')


def test_cfgs_cite_the_family_paper():
    for name, arch in ARCHS.items():
        cfg = get_pretrained_cfg(name).to_dict()
        paper = FAMILIES[arch.family]
        assert (cfg['paper_ids'], cfg['paper_name']) == (paper.paper_ids, paper.paper_name)


def _trunk(model: nn.Module):
    """What a plain twin shares with the model: timm's ResNet, its stem, stage depths and widths, activations (but
    the gates')."""
    acts = {type(m).__name__ for m in model.modules() if isinstance(m, (nn.ReLU, nn.SiLU, nn.GELU))}
    if not isinstance(model, ResNet):
        return type(model).__name__, sorted(acts)
    depths = [len(getattr(model, f'layer{i}')) for i in range(1, 5)]
    return type(model.conv1).__name__, depths, [f['num_chs'] for f in model.feature_info], sorted(acts)


@pytest.mark.parametrize('name', sorted(n for n, a in ARCHS.items() if a.plain_twin))
def test_plain_twin_has_the_same_trunk(name):
    assert _trunk(_meta(ARCHS[name].plain_twin)) == _trunk(_meta(name))


def test_resnext26ts_is_not_sk_resnet26s_plain_twin():
    assert ARCHS['sk_resnet26'].plain_twin is None
    assert _trunk(_meta('resnext26ts')) == ('ByobNet', ['SiLU'])  # timm's ResNeXt-26 has a tiered stem and SiLU


def test_readme_zoo_table_is_generated_from_the_declarations():
    text = README.read_text(encoding='utf-8')
    assert with_zoo_table(text) == text, (
        "README.md's zoo table drifted from timm_sesk/models: run `make zoo-table`")
    for name in ARCHS:
        assert f'`{name}`' in text.split('## The zoo')[1].split('End of the generated zoo table')[0]


def test_readme_twin_table_is_generated_from_the_declarations():
    text = README.read_text(encoding='utf-8')
    assert with_twin_table(text) == text, (
        "README.md's table of timm's built-in twins drifted from timm_sesk/models: run `make zoo-table`")
    table = text.split('### Sharing a fine-tune')[1].split('End of the generated twin table')[0]
    for name in ARCHS:
        assert f'`{name}`' in table


def test_model_modules_do_not_collide_with_timm():
    # timm keys its registry by module basename: ours must not merge into timm's senet/sknet/resnet listings.
    for module in timm_sesk.MODEL_MODULES:
        assert set(timm.list_models(module=module)) <= set(ARCHS)
    assert not set(timm.list_models(module=['senet', 'sknet', 'resnet'])) & set(ARCHS)


def test_import_registers_the_models_and_does_nothing_else():
    # As `python -m timm_sesk` imports it to find the module to run (sys.argv[0] is '-m' then): no signal handler.
    code = (
        'import signal, sys, timm; assert not timm.is_model("sk_resnet50"); '
        'set_handler, calls = signal.signal, []; '
        'signal.signal = lambda *args: calls.append(args[0]) or set_handler(*args); sys.argv[:] = ["-m"]; '
        'import timm_sesk, timm_sesk.cli; assert timm.is_model("sk_resnet50"); '
        'assert signal.getsignal(signal.SIGINT) is signal.default_int_handler; print(calls)'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


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


# The private names of timm and torch the package still relies on, where neither has a public equivalent; each must
# exist, so that an upgrade that removes one fails here, by name.
PRIVATE_NAMES = {
    # publish: the model card's front matter, as timm's own uploads write it, and config.json as save_for_hf writes
    # it (save_for_hf itself writes the weights through safetensors' writer, whose errors hide a full disk)
    'timm.models._hub': ('generate_readme', 'save_config_for_hf'),
    'timm.data.readers.reader_image_folder': ('find_images_and_targets',),  # data: ImageFolder's files and classes
    'timm.models.sknet': ('SelectiveKernelBottleneck',),  # weights.references: SKNet-26/101's timm reference
    'torch.fx._symbolic_trace': ('is_fx_tracing',),  # layers._tracing: whether a forward runs under fx
}
# What timm exports for others to use (its packages' __init__); anything else of timm's is private.
_PUBLIC_TIMM = {'timm', 'timm.data', 'timm.layers', 'timm.models', 'timm.optim', 'timm.scheduler', 'timm.utils'}


@pytest.mark.parametrize('module', sorted(PRIVATE_NAMES))
def test_the_private_names_still_used_exist(module):
    for name in PRIVATE_NAMES[module]:
        assert hasattr(importlib.import_module(module), name), f'{module}.{name}'


def test_no_other_private_name_is_used():
    used = set()
    for path in [*REPO.joinpath('timm_sesk').rglob('*.py'), *REPO.joinpath('weights').glob('*.py')]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] in ('timm', 'torch'):
                for alias in node.names:
                    module = node.module if not alias.name.startswith('_') else f'{node.module}.{alias.name}'
                    private = any(part.startswith('_') for part in module.split('.')) or (
                        module.startswith('timm') and module not in _PUBLIC_TIMM)
                    if private:
                        used.add(module)
    assert used == set(PRIVATE_NAMES)

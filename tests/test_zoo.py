"""timm_sesk.zoo: the names a user may have meant, the smallest input a model takes, and the cache of its counts."""
import json

import pytest
import timm
import torch

import timm_sesk
from timm_sesk import zoo


@pytest.mark.parametrize('name, expected', [
    # timm's name of one of our networks: ours, with the tag where ours has it
    ('skresnext50_32x4d', ['sk_resnet50']),
    ('skresnext50_32x4d.ra_in1k', ['sk_resnet50.ra_in1k']),
    ('legacy_seresnet18.in1k', ['se_resnet18_orig.in1k']),
    ('seresnet50.a1_in1k', ['se_resnet50.a1_in1k']),
    ('seresnet50.no_such_tag', ['se_resnet50']),
    # a tag the architecture lacks: the architectures that have it, closest name first; or its tags spelled alike
    ('se_resnet18.in1k', ['se_resnet18_orig.in1k']),
    ('sk_resnet50.ra_in1', ['sk_resnet50.ra_in1k']),
    ('sk_resnet50.in22k', []),
    # misspellings, of ours or of timm's names for ours
    ('sk_resnet81', ['sk_resnet18']),
    ('seresnet5', ['se_resnet50']),
    # names of the zoo, and names nothing resembles
    ('sk_resnet50', []),
    ('sk_resnet50.ra_in1k', []),
    ('vit_base_patch16_224', []),
])
def test_suggest_our_equivalent_of_timm_names_and_tags(name, expected):
    suggested = zoo.suggest(name)
    assert suggested[:len(expected)] == expected
    assert len(suggested) <= 3 and all(timm_sesk.list_models(s.partition('.')[0]) for s in suggested)


def test_did_you_mean_names_timms_equivalent():
    assert zoo.did_you_mean('skresnext50_32x4d') == "did you mean sk_resnet50 (our name for timm's skresnext50_32x4d)? "
    assert zoo.did_you_mean('sk_resnet81').startswith('did you mean sk_resnet18')
    assert zoo.did_you_mean('sk_resnet50') == zoo.did_you_mean('vit_base_patch16_224') == ''


def test_min_input_size_is_the_stems_check():
    orig = timm.create_model('se_resnet50_orig', device='meta')
    assert zoo.min_input_size(orig) == 5  # 7x7 stride-2 stem and a ceil-mode max-pool without padding
    with pytest.raises(ValueError, match='minimum of 5x5 px'):
        timm.create_model('se_resnet50_orig').eval()(torch.randn(1, 3, 4, 4))
    assert zoo.min_input_size(torch.nn.Conv2d(3, 8, 3)) == 1  # no input check


# --- the cache of counts ------------------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, and a record of the models counted (built and traced) from here on."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    counted = []
    count = zoo._count
    monkeypatch.setattr(zoo, '_count', lambda name: counted.append(name) or count(name))
    zoo._counts.cache_clear()
    yield tmp_path / 'timm_sesk', counted
    zoo._counts.cache_clear()
    zoo._cache_key.cache_clear()


def test_counts_once_per_process_then_from_the_cache_file(cache):
    folder, counted = cache
    first = zoo.model_facts('sk_resnet18')
    assert counted == ['sk_resnet18']
    model = timm.create_model('sk_resnet18', device='meta')
    assert first.params_m == sum(p.numel() for p in model.parameters()) / 1e6
    assert first.gmacs == zoo.count_gmacs(model, (3, 224, 224)) and first.input_size == (3, 224, 224)
    assert zoo.model_facts('sk_resnet18') == first and counted == ['sk_resnet18']  # this process: counted once
    zoo._counts.cache_clear()  # as a new process
    assert zoo.model_facts('sk_resnet18') == first and counted == ['sk_resnet18']  # from the file
    (path,) = folder.glob('model_facts-*.json')
    assert path == zoo.facts_cache_file() and list(json.loads(path.read_text())) == ['sk_resnet18']


def test_another_version_or_source_counts_afresh(cache, monkeypatch, tmp_path):
    _, counted = cache
    zoo.model_facts('se_resnet18')
    old = zoo.facts_cache_file()
    # Another torch: another key, counted again, and the old file goes.
    monkeypatch.setattr(torch, '__version__', torch.__version__ + '+other')
    zoo._cache_key.cache_clear()
    zoo._counts.cache_clear()
    zoo.model_facts('se_resnet18')
    assert counted == ['se_resnet18'] * 2 and zoo.facts_cache_file() != old and not old.exists()
    # Another source file content: another key.
    package = tmp_path / 'pkg'
    (package / 'models').mkdir(parents=True)
    (package / '__init__.py').write_text('')
    (package / 'models' / 'x.py').write_text('A = 1\n')
    monkeypatch.setattr(timm_sesk, '__file__', str(package / '__init__.py'))
    keys = []
    for text in ('A = 1\n', 'A = 2\n'):
        (package / 'models' / 'x.py').write_text(text)
        zoo._cache_key.cache_clear()
        keys.append(zoo._cache_key())
    assert keys[0] != keys[1]


def test_a_damaged_or_unwritable_cache_only_costs_a_count(cache, monkeypatch, tmp_path):
    folder, counted = cache
    folder.mkdir()
    for damaged in ('{not json', '[]', '{"sk_resnet26": [1.0]}'):
        zoo._counts.cache_clear()
        zoo.facts_cache_file().write_text(damaged)
        facts = zoo.model_facts('sk_resnet26')
        entry = json.loads(zoo.facts_cache_file().read_text())['sk_resnet26']
        assert entry == [facts.params_m, facts.gmacs, [3, 224, 224]]  # counted again and stored whole
    assert counted == ['sk_resnet26'] * 3
    # A cache folder that cannot be made (below a file; root too is refused there): counted, nothing written.
    (tmp_path / 'a-file').write_text('')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'a-file'))
    zoo._counts.cache_clear()
    assert zoo.model_facts('sk_resnet26') == facts and counted == ['sk_resnet26'] * 4
    assert (tmp_path / 'a-file').read_text() == ''


def test_list_from_a_warm_cache_builds_no_model(cache, monkeypatch, capsys):
    from timm_sesk.cli import main

    assert main(['list', 'sk_resnet18']) == 0
    first = capsys.readouterr().out
    zoo._counts.cache_clear()  # as a new process

    def build(*args, **kwargs):
        raise AssertionError('list built a model')

    monkeypatch.setattr(timm, 'create_model', build)
    assert main(['list', 'sk_resnet18']) == 0
    assert capsys.readouterr().out == first

"""The weights manifest is consistent, and everything generated from it (default_cfgs, MODEL_CARD.md) matches it."""
import runpy
from pathlib import Path

import pytest
import timm
from timm.models import get_pretrained_cfg

import timm_sesk
from timm_sesk.weights import MAPPINGS, NO_WEIGHTS, WEIGHTS, archs_with_weights, weights_for

REPO = Path(__file__).resolve().parents[1]
MODEL_CARD = REPO / 'MODEL_CARD.md'
render = runpy.run_path(str(REPO / 'docs' / 'card.py'))['render']  # the generator: a script outside the package


def test_model_card_is_generated_from_the_manifest():
    assert MODEL_CARD.read_text(encoding='utf-8') == render(), (
        'MODEL_CARD.md drifted from weights/manifest.py: run `python docs/card.py --write MODEL_CARD.md`')


def test_every_architecture_has_weights_or_a_reason():
    with_weights = set(archs_with_weights())
    assert set(timm_sesk.list_models()) == with_weights | set(NO_WEIGHTS)
    assert not with_weights & set(NO_WEIGHTS)


def test_tags_are_unique_and_registered():
    names = [spec.name for spec in WEIGHTS]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(timm.list_pretrained('s[ek]_*'))
    assert sorted(timm_sesk.list_models(pretrained=True)) == sorted(archs_with_weights())


@pytest.mark.parametrize('spec', WEIGHTS, ids=lambda s: s.name)
def test_spec_is_complete(spec):
    assert spec.mapping in MAPPINGS
    assert spec.license and spec.trained_as and spec.accuracy
    assert bool(spec.hf_hub_id) != bool(spec.url), 'exactly one source'
    for acc in spec.accuracy:
        assert 0 < acc.top1 < 100 and acc.reported_by


@pytest.mark.parametrize('spec', WEIGHTS, ids=lambda s: s.name)
def test_default_cfg_is_generated_from_the_spec(spec):
    cfg = get_pretrained_cfg(spec.name).to_dict()
    assert cfg.get('hf_hub_id') == spec.hf_hub_id and cfg.get('url') == spec.url
    assert tuple(cfg['input_size']) == spec.input_size
    assert cfg['pool_size'] == (spec.input_size[1] // 32, spec.input_size[2] // 32)
    assert (cfg['crop_pct'], cfg['interpolation'], cfg['license']) == (spec.crop_pct, spec.interpolation, spec.license)
    assert tuple(cfg['mean']) == tuple(spec.mean) and tuple(cfg['std']) == tuple(spec.std)
    assert cfg.get('test_input_size') == spec.test_input_size


def test_default_tag_is_the_best_reported():
    for arch in archs_with_weights():
        specs = weights_for(arch)
        best = max(s.accuracy[0].top1 for s in specs)
        assert specs[0].accuracy[0].top1 == best, arch
        assert get_pretrained_cfg(arch).tag == specs[0].tag


def test_grafts_start_from_the_declared_plain_twin():
    from timm_sesk.models.archs import ARCHS

    for spec in (s for s in WEIGHTS if s.is_graft):
        assert spec.trained_as == ARCHS[spec.arch].plain_twin, spec.name

"""pytest plugin that runs timm's own ``tests/test_models.py`` against timm_sesk's models, and only those.

timm's test file ships in timm's sdist; ``make timm-contract`` downloads the one matching the installed timm and runs

    python -m pytest -p tests.timm_contract .cache/timm-tests/timm-<version>/tests/test_models.py

Loading this plugin registers our models before the test file is imported, so its module-level ``list_models()``
parametrisations include them; every test item not parametrised with one of our models is deselected. The
pretrained-loading tests get their weights from a loopback Hub, where each tag's source network is published with
random weights just before the test that needs it.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # the test helpers are top-level modules of tests/
from loopback_hub import start_session_hub

HUB = start_session_hub()  # before timm (and so huggingface_hub) is imported

from sources import publish_source  # noqa: E402

import timm_sesk  # noqa: E402
from timm_sesk.weights import weights_for  # noqa: E402

OURS = frozenset(timm_sesk.list_models(include_tags=True)) | frozenset(timm_sesk.list_models())

# test_models.py picks the models for these tests by timm module name (resnet, senet, ...), which ours cannot share.
# Our models implement the same forward_intermediates / prune_intermediate_layers API, so they take part.
_BY_MODULE_TESTS = frozenset({
    'test_model_forward_intermediates',
    'test_model_forward_intermediates_features',
    'test_prune_intermediate_layers_contract',
})

_MARKERS = (
    'base', 'forward', 'backward', 'cfg', 'cfg_nonstd', 'torchscript', 'features', 'fxforward', 'fxbackward',
    'timeout(seconds): per-test time limit (pytest-timeout)',
)


def pytest_configure(config):
    for marker in _MARKERS:
        config.addinivalue_line('markers', marker if ':' in marker else f'{marker}: a timm test_models.py group')


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ not in _BY_MODULE_TESTS:
        return
    markers = metafunc.definition.own_markers
    for i, mark in enumerate(markers):
        if mark.name == 'parametrize' and mark.args and mark.args[0] == 'model_name':
            markers[i] = pytest.mark.parametrize('model_name', sorted(timm_sesk.list_models())).mark


_PRETRAINED_TESTS = frozenset({'test_model_load_pretrained', 'test_model_features_pretrained'})
_published = set()


def pytest_runtest_setup(item):
    if item.originalname not in _PRETRAINED_TESTS:
        return
    arch, _, tag = item.callspec.params['model_name'].partition('.')
    specs = weights_for(arch)
    spec = next(s for s in specs if s.tag == tag) if tag else specs[0]  # no tag: the default weights
    if spec.name not in _published:
        publish_source(HUB, spec)
        _published.add(spec.name)


# As timm's own CI leaves its biggest models out of the fx tests, the deepest of ours (ResNet-101/152 depth and
# SENet-154: the same blocks and trunk as their 50-layer siblings, 3-5x the time) skip the slowest tests, so that
# the suite fits its CI budget on 2 CPUs. They still take every forward, backward, cfg and features test.
_SLOW_TESTS = frozenset({
    'test_model_forward_fx',
    'test_model_backward_fx',
    'test_model_forward_fx_torchscript',
    'test_model_forward_torchscript',
    'test_prune_intermediate_layers_contract',
})
_DEEPEST = frozenset(name for name in OURS if any(depth in name for depth in ('101', '152', '154')))


def _selected(item) -> bool:
    model_name = getattr(getattr(item, 'callspec', None), 'params', {}).get('model_name')
    if model_name not in OURS:
        return False
    return not (item.originalname in _SLOW_TESTS and model_name in _DEEPEST)


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        (keep if _selected(item) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

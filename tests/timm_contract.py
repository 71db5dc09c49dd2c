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


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, 'callspec', None), 'params', {})
        (keep if params.get('model_name') in OURS else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

"""Every command that runs a model, against every fault a file can hold: one ``timm-sesk: error:`` line through the
error table, or a correct run; never a traceback, and never a terminal control character in what is printed.

``FAULTS`` is the table. A row makes its fault (a hostile checkpoint, a Hub repository with a hostile config.json, a
bad model name) and says where the command meets it and what the line must name. To add a fault (a network or disk
fault, say), add a row: a function of ``Places`` that returns the ``-m ...`` options that meet it, and the words the
error line must hold (None for a run that must succeed). ``COMMANDS`` says how each command is run against them.
"""
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
import safetensors.torch
import timm
import torch
from PIL import Image

from timm_sesk.cli import main
from timm_sesk.publish import export_hub_folder

PREFIX = 'timm-sesk: error: '
ARCH = 'sk_resnet18'
CLASSES = 3


@dataclass
class Places:
    """Where a fault is made: a fresh folder, the loopback Hub, and the inputs every command shares."""

    root: Path
    hub: object
    name: str  # the fault's name, for file and repository names

    def path(self, suffix: str) -> Path:
        return self.root / f'{self.slug}{suffix}'

    @property
    def slug(self) -> str:
        return '-'.join(''.join(c if c.isalnum() else ' ' for c in self.name).split())


# --- the faults ------------------------------------------------------------------------------------------------------

_STATE: Dict[str, Dict[str, torch.Tensor]] = {}


def _state_dict() -> Dict[str, torch.Tensor]:
    """A random state dict of ARCH (built once per process); rows change a copy."""
    if not _STATE:
        torch.manual_seed(0)
        _STATE.update(timm.create_model(ARCH).state_dict())
    return {k: v.clone() for k, v in _STATE.items()}


def checkpoint(change: Callable[[Dict[str, torch.Tensor]], object] = lambda state: None,
               args: Optional[dict] = None, content: object = None):
    """A row's maker: ARCH's weights changed in place by ``change`` (or ``content`` instead), passed with
    --checkpoint; ``args``: train.py arguments saved with them."""
    def make(places: Places) -> List[str]:
        state = _state_dict()
        change(state)
        saved = state if content is None else content
        if args is not None:
            saved = {'arch': ARCH, 'state_dict': saved, 'args': args}
        path = places.path('.pth')
        torch.save(saved, path)
        return ['-m', ARCH, '--checkpoint', str(path)]
    return make


def overlay(change: Callable[[Dict[str, torch.Tensor]], None]):
    """A row's maker: ARCH's weights changed by ``change``, passed as pretrained_cfg_overlay=dict(file=...)."""
    def make(places: Places) -> List[str]:
        state = _state_dict()
        change(state)
        path = places.path('.safetensors')
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return ['-m', ARCH, '--model-kwarg', f'pretrained_cfg_overlay=dict(file={str(path)!r})']
    return make


_EXPORT: Dict[str, bytes] = {}


def _export(root: Path) -> Dict[str, bytes]:
    """A Hub export of a 3-class ARCH (made once per process): its config.json and model.safetensors."""
    if not _EXPORT:
        folder = export_hub_folder(ARCH, root / 'export', model=timm.create_model(ARCH, num_classes=CLASSES),
                                   dataset='toy')
        _EXPORT.update({p.name: p.read_bytes() for p in folder.iterdir()})
    return _EXPORT


def hub(change: Callable[[dict], object] = lambda config: None, raw: Optional[bytes] = None, weights: bool = False,
        tensors: Callable[[Dict[str, torch.Tensor]], object] = lambda state: None, folder: bool = False):
    """A row's maker: a Hub repository (or, with ``folder``, a model folder) holding the export's config.json changed
    in place by ``change`` (or the bytes ``raw``), with the export's weights changed in place by ``tensors`` (or,
    without ``weights``, where the config is refused first, a file that is none)."""
    def make(places: Places) -> List[str]:
        files = _export(places.root)
        config = json.loads(files['config.json'])
        change(config)
        state = safetensors.torch.load(files['model.safetensors'])
        tensors(state)
        content = {'config.json': raw if raw is not None else json.dumps(config).encode(),
                   'model.safetensors': safetensors.torch.save(state) if weights else b'not weights'}
        if folder:
            where = places.root / f'folder-{places.slug}'
            where.mkdir()
            for name, data in content.items():
                (where / name).write_bytes(data)
            return ['-m', str(where)]
        repo = f'sesk-test/faults-{places.slug}'
        for name, data in content.items():
            places.hub.publish(repo, name, data)
        return ['-m', f'hf-hub:{repo}']
    return make


def _set(tensors: Dict[str, torch.Tensor], key: str, value: torch.Tensor) -> None:
    tensors[key] = value


def _model_args(config: dict, **args) -> None:
    config.setdefault('model_args', {}).update(args)  # timm writes model_args where the model has any


def _pretrained(config: dict, **fields) -> None:
    config['pretrained_cfg'].update(fields)


def _classes(config: dict, classes: int) -> None:
    config['num_classes'] = config['pretrained_cfg']['num_classes'] = classes


class _Payload:
    def __reduce__(self):
        return print, ('this must never run',)


# name: (maker, what the error line names, or None where the command must succeed)
FAULTS: Dict[str, tuple] = {
    # weights checked before use (issue 21, item 5 and 6)
    'checkpoint: NaN': (checkpoint(lambda s: s['fc.weight'].fill_(float('nan'))), 'tensor fc.weight holds'),
    'checkpoint: infinite running variance': (
        checkpoint(lambda s: s['bn1.running_var'].fill_(float('inf'))), 'tensor bn1.running_var holds 0 NaN and 64'),
    'checkpoint: negative running variance': (
        checkpoint(lambda s: s['bn1.running_var'].fill_(-1.0)), 'bn1.running_var holds 64 negative'),
    'checkpoint: int8 weights': (
        checkpoint(lambda s: _set(s, 'conv1.weight', s['conv1.weight'].to(torch.int8))), 'conv1.weight is int8'),
    'checkpoint: bool weights': (
        checkpoint(lambda s: _set(s, 'fc.bias', s['fc.bias'] > 0)), 'fc.bias is bool'),
    'checkpoint: broadcast head': (
        checkpoint(lambda s: _set(s, 'fc.weight', torch.zeros(1, 512).expand(3_000_000, 512))), 'a broadcast view'),
    'checkpoint: head of other features': (
        checkpoint(lambda s: _set(s, 'fc.weight', torch.zeros(1000, 7))), 'fc.weight (1000, 7) vs (1000, 512)'),
    'checkpoint: head weight and bias disagree': (
        checkpoint(lambda s: _set(s, 'fc.bias', torch.zeros(7))), 'fc.weight (1000, 512) vs fc.bias (7,)'),
    'checkpoint: 3x3 stem': (
        checkpoint(lambda s: _set(s, 'conv1.weight', torch.zeros(64, 3, 3, 3))), 'conv1.weight (64, 3, 3, 3) vs'),
    'checkpoint: train.py img_size 20000': (checkpoint(args={'img_size': 20000}), 'input_size (3, 20000, 20000)'),
    'checkpoint: train.py crop_pct 0.0001': (checkpoint(args={'crop_pct': 0.0001}), 'crop_pct 0.0001'),
    'checkpoint: train.py std of 0': (checkpoint(args={'std': [0, 0, 0]}), 'std (0, 0, 0)'),
    'checkpoint: a list': (checkpoint(content=[1, 2]), 'it holds a list, not weights'),
    'checkpoint: pickled code': (checkpoint(content={'fc.weight': _Payload()}), 'cannot read checkpoint'),
    'overlay: NaN': (overlay(lambda s: s['layer1.0.conv1.paths.0.conv.weight'].fill_(float('inf'))),
                     'tensor layer1.0.conv1.paths.0.conv.weight holds 0 NaN'),
    'overlay: 3x3 stem': (overlay(lambda s: _set(s, 'conv1.weight', torch.zeros(64, 3, 3, 3))),
                          'conv1.weight (64, 3, 3, 3) vs (64, 3, 7, 7)'),
    'overlay: head of other features': (overlay(lambda s: _set(s, 'fc.weight', torch.zeros(1000, 7))),
                                        'fc.weight (1000, 7) vs (1000, 512)'),
    # Hub config.json (items 5, 6 and 7)
    'hub: num_classes -5': (hub(lambda c: c.update(num_classes=-5)), 'num_classes -5'),
    'hub: num_classes 10**9': (hub(lambda c: c.update(num_classes=10 ** 9)), 'num_classes 1000000000'),
    'hub: num_classes a string': (hub(lambda c: c.update(num_classes='3')), "num_classes '3'"),
    'hub: two head sizes': (hub(lambda c: _model_args(c, num_classes=10)), 'gives two head sizes'),
    'hub: head of the weights differs': (hub(lambda c: _classes(c, 4), weights=True), 'fc.weight'),
    'hub: NaN weights': (hub(weights=True, tensors=lambda s: s['fc.weight'].fill_(float('nan'))),
                         'tensor fc.weight holds 1536 NaN'),
    'hub: unknown model_args key': (hub(lambda c: _model_args(c, bogus=1)), "unexpected keyword argument"),
    'hub: features_only': (hub(lambda c: _model_args(c, features_only=True)), 'sets features_only'),
    'hub: checkpoint_path': (hub(lambda c: _model_args(c, checkpoint_path='/etc/hostname')),
                             'sets checkpoint_path'),
    'hub: pretrained_cfg_overlay': (hub(lambda c: _model_args(c, pretrained_cfg_overlay={'file': '/x'})),
                                    'sets pretrained_cfg_overlay'),
    'hub: model_args a list': (hub(lambda c: c.update(model_args=[1, 2])), 'model_args is a list'),
    'hub: config a list': (hub(raw=b'[1, 2, 3]'), 'holds a list, not an object'),
    'hub: not JSON': (hub(raw=b'{not json'), 'cannot be read as JSON'),
    'hub: not UTF-8': (hub(raw=b'{"architecture": "\xff"}'), 'cannot be read as JSON'),
    'hub: nested too deeply': (hub(raw=b'[' * 100000), 'cannot be read as JSON'),
    'hub: a key twice': (hub(raw=b'{"architecture": "sk_resnet18", "num_classes": 3, "num_classes": 4}'),
                         "the key 'num_classes' is given twice"),
    'hub: no architecture': (hub(lambda c: c.pop('architecture')), 'names no architecture'),
    'hub: unknown architecture': (hub(lambda c: c.update(architecture='not_a_timm_model')),
                                  'an architecture timm does not know'),
    'hub: std of 0': (hub(lambda c: _pretrained(c, std=[0, 0, 0])), 'std [0, 0, 0]'),
    'hub: std a string': (hub(lambda c: _pretrained(c, std='x')), "std 'x'"),
    'hub: unknown interpolation': (hub(lambda c: _pretrained(c, interpolation='nope')), "interpolation 'nope'"),
    'hub: input size 20000': (hub(lambda c: _pretrained(c, input_size=[3, 20000, 20000])), 'input_size [3, 20000'),
    'hub: crop_pct 0.0001': (hub(lambda c: _pretrained(c, crop_pct=0.0001)), 'crop_pct 0.0001'),
    'hub: custom_load': (hub(lambda c: _pretrained(c, custom_load=True)), 'custom_load'),
    'hub: label names not strings': (hub(lambda c: c.update(label_names=[1, 2, 3])), 'label_names is not a list'),
    'hub: 1-channel stem of another kernel': (
        hub(lambda c: (_model_args(c, in_chans=1), _pretrained(c, input_size=[1, 64, 64], mean=[0.5], std=[0.5])),
            weights=True, tensors=lambda s: _set(s, 'conv1.weight', torch.zeros(64, 1, 3, 3))), 'conv1'),
    'folder: num_classes -5': (hub(lambda c: c.update(num_classes=-5), folder=True), 'num_classes -5'),
    'folder: not JSON': (hub(raw=b'{not json', folder=True), 'config.json cannot be read as JSON'),
    'folder: NaN weights': (hub(weights=True, tensors=lambda s: s['conv1.weight'].fill_(float('inf')), folder=True),
                            'tensor conv1.weight holds 0 NaN'),
    # text from outside (item 8): label names that are terminal escape sequences are printed harmless
    'hub: label names with escape sequences': (
        hub(lambda c: c.update(label_names=['\x1b[2J\x1b]0;pwned\x07a', 'b\u202e', 'c\x9b31m']), weights=True), None),
    # model names
    'hf-hub: no id': (lambda places: ['-m', 'hf-hub:'], 'is not a Hub repository id'),
    'hf-hub: three parts': (lambda places: ['-m', 'hf-hub:a/b/c'], 'is not a Hub repository id'),
    'hf-hub: a space': (lambda places: ['-m', 'hf-hub:a b/c'], 'is not a Hub repository id'),
}

# How each command runs against a fault's model options.
COMMANDS: Dict[str, Callable[[List[str], dict], List[str]]] = {
    'predict': lambda model, p: ['predict', *model, str(p['image'])],
    'validate': lambda model, p: ['validate', *model, '-j', '0', '-q', '--folder-order', str(p['folder'])],
    'attention': lambda model, p: ['attention', *model, '--out', str(p['out'] / 'attention.png'), str(p['image'])],
    'export': lambda model, p: ['export', *model, str(p['out'] / 'export'),
                                *(['--dataset', 'toy'] if '--checkpoint' in model else [])],
}

_MADE: Dict[str, List[str]] = {}


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp('fault-inputs')
    Image.new('RGB', (64, 48), (200, 120, 40)).save(root / 'photo.jpg')
    for name in ('a', 'b', 'c'):  # as many class folders as the 3-class export has classes
        (root / 'val' / name).mkdir(parents=True)
        Image.new('RGB', (40, 40), (10, 90, 200)).save(root / 'val' / name / 'x.png')
    return dict(image=root / 'photo.jpg', folder=root / 'val', root=root)


def _unprintable(text: str) -> List[str]:
    return [c for c in text if not (c.isprintable() or c == '\n')]


@pytest.mark.parametrize('command', list(COMMANDS))
@pytest.mark.parametrize('fault', list(FAULTS))
def test_a_fault_is_one_line_or_a_correct_run(fault, command, inputs, hub, tmp_path, capsys):
    make, expected = FAULTS[fault]
    if fault not in _MADE:  # each fault made once per process, whichever command meets it first
        _MADE[fault] = make(Places(inputs['root'], hub, fault))
    argv = COMMANDS[command](copy.copy(_MADE[fault]), dict(inputs, out=tmp_path))
    code = main(argv)  # an exception escaping main would be a traceback
    out, err = capsys.readouterr()
    assert not _unprintable(out + err), (out, err)
    if expected is None:
        assert code == 0 and err == '', err
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and lines[0].startswith(PREFIX), err
    assert expected in lines[0], lines[0]

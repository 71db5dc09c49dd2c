"""The command line's models: checkpoints in every layout, fine-tuned exports, inference options and their errors.

Small models at 64 px; checkpoints are random but rigged where a test checks labels or accuracy (the classifier
ignores the image and always answers one class).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from helpers import IMG, hostile_images, randomize_bn, train_checkpoint
from PIL import Image
from sources import publish_source, source_network
from timm.data import ImageNetInfo

from timm_sesk.cli import main
from timm_sesk.cli.options import parse_kwargs
from timm_sesk.data import ClassMappingError, class_mapping, eval_transform, read_label_names
from timm_sesk.weights import WEIGHTS, Checkpoint

REPO = Path(__file__).resolve().parents[1]
SK18 = next(s for s in WEIGHTS if s.name == 'sk_resnet18.ra_in1k')
SE18_ORIG = next(s for s in WEIGHTS if s.name == 'se_resnet18_orig.in1k')
CLASSES = ('airplane', 'cargo ship', 'cat')


def run_cli(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``python -m timm_sesk ARGS``, online unless ``env`` says otherwise."""
    environ = {k: v for k, v in os.environ.items() if k != 'HF_HUB_OFFLINE'}
    environ.update(OMP_NUM_THREADS='1', **(env or {}))
    return subprocess.run([sys.executable, '-m', 'timm_sesk', *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=environ)


def closed_port() -> int:
    """A local port nothing listens on: connections to it are refused at once."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('timm-sesk: error: '), stderr
    return lines[0]


def save_safetensors(model: torch.nn.Module, path: Path) -> Path:
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def probabilities(stdout: str) -> Dict[str, Dict[int, float]]:
    """``{image: {class index: probability}}`` from predict's JSON."""
    return {p['image']: {t['index']: t['probability'] for t in p['top']} for p in json.loads(stdout)['predictions']}


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A photo, a 3-class image folder, fine-tuned checkpoints and label files, made once for the module."""
    root = tmp_path_factory.mktemp('cli-models')
    g = torch.Generator().manual_seed(0)
    photo = root / 'photo.png'
    Image.fromarray(torch.randint(0, 256, (80, 96, 3), generator=g, dtype=torch.uint8).numpy()).save(photo)
    folder = root / 'val'
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(torch.randint(0, 256, (IMG, IMG, 3), generator=g, dtype=torch.uint8).numpy()).save(
                folder / name / f'{i}.png')
    (root / 'labels.txt').write_text('airplane\n\ncargo ship\ncat\n')
    (root / 'two-labels.txt').write_text('airplane\ncat\n')
    (root / 'a-file').write_text('keep me')
    torch.save({'foo': torch.zeros(3)}, root / 'foreign.pth')
    torch.save({'arch': 'resnet18', 'state_dict': timm.create_model('resnet18', num_classes=3).state_dict()},
               root / 'resnet18.pth.tar')  # a plain ResNet fine-tuned with train.py
    return dict(
        root=root, photo=photo, folder=folder, labels=root / 'labels.txt', two_labels=root / 'two-labels.txt',
        file=root / 'a-file', foreign=root / 'foreign.pth', empty_cache=root / 'empty-cache',
        plain=root / 'resnet18.pth.tar',
        # trained at 64 px; its EMA weights answer 'cargo ship' (1), its plain ones 'airplane' (0)
        se3=train_checkpoint(root / 'se3.pth.tar', 'se_resnet18', 3, answer=0, ema_answer=1, img_size=IMG),
        sk3=train_checkpoint(root / 'sk3.pth.tar', 'sk_resnet18', 3, img_size=IMG),
    )


def fmt(argv, files) -> list:
    return [a.format(**files) for a in argv]


# --- errors: one line naming the fix, nothing written --------------------------------------------------------------

ERROR_CASES = [
    # (argv, exit status, words of the message)
    (['validate', '-m', 'se_resnet18', '--no-pretrained', '{folder}'], 1,
     ["3 class folders (airplane, cargo ship, cat) are not named after the model's classes",
      'head has 1000 classes', '--checkpoint FILE']),
    (['predict', '-m', 'se_resnet18', '--no-pretrained', '--model-kwarg', 'se_position=bogus', '{photo}'], 2,
     ["cannot build se_resnet18 with --model-kwarg se_position='bogus'", 'se_position must be one of']),
    (['predict', '-m', 'se_resnet18', '--no-pretrained', '--model-kwarg', 'foo=1', '{photo}'], 2,
     ['cannot build se_resnet18 with --model-kwarg foo=1', "unexpected keyword argument 'foo'"]),
    (['predict', '-m', 'se_resnet18', '--model-kwarg', 'pretrained_cfg_overlay=dict(file=/x.pth)', '{photo}'], 2,
     ['cannot read', "quote strings inside it, e.g. dict(file='/path/to/model.safetensors')"]),
    (['predict', '-m', 'se_resnet18', '--model-kwarg', '=1', '{photo}'], 2, ['--model-kwarg takes KEY=VALUE']),
    (['predict', '-m', 'hf-hub:sesk-test/nonexistent', '{photo}'], 1, ['the Hub has no repository sesk-test/nonex']),
    (['predict', '-m', 'se_resnet18', '--checkpoint', '{se3}', '--num-classes', '5', '{photo}'], 2,
     ['has a 3-class head, not 5', 'drop --num-classes']),
    (['predict', '-m', 'se_resnet18', '--checkpoint', '{sk3}', '{photo}'], 1,
     ['checkpoint {sk3} is for sk_resnet18, not se_resnet18: ', 'missing keys (', 'unexpected keys (',
      'run it with -m sk_resnet18']),
    (['predict', '-m', 'se_resnet18', '--checkpoint', '{foreign}', '{photo}'], 1,
     ['checkpoint {foreign} does not fit se_resnet18: ', '1 unexpected key (foo)', '--model-kwarg KEY=VALUE']),
    (['predict', '-m', 'se_resnet34', '--checkpoint', '{plain}', '{photo}'], 1,
     ['checkpoint {plain} is for resnet18, not se_resnet34: ', '; -m se_resnet18 grafts it']),
    (['predict', '-m', 'hf-hub:sesk-test/x', '--checkpoint', '{se3}', '{photo}'], 2, ['not a Hub id']),
    (['validate', '-m', 'se_resnet18', '--no-pretrained', '--results-file', '{root}', '{folder}'], 2,
     ['--results-file {root} is a folder']),
    (['predict', '-m', 'se_resnet18', '--no-pretrained', '--results-file', '{file}/r.json', '{photo}'], 2,
     ['--results-file {file}/r.json: {file} is a file, not a folder']),
    (['export', '-m', 'se_resnet18', '{root}/out', '--checkpoint', '{se3}'], 2, ['with --dataset NAME']),
    (['export', '-m', 'se_resnet18', '{root}/out', '--no-pretrained', '--label-names', '{root}/missing.txt'], 2,
     ['no such label names file: {root}/missing.txt']),
    (['export', '-m', 'se_resnet18', '{root}/out', '--checkpoint', '{se3}', '--dataset', 'x', '--label-names',
      '{two_labels}'], 2, ['{two_labels} has 2 label names, but the head has 3 classes']),
    (['export', '-m', 'se_resnet18', '{file}', '--no-pretrained'], 2, ['{file} is a file: name a folder']),
    (['export', '-m', 'se_resnet18', '{folder}', '--no-pretrained'], 2,
     ['{folder} holds files (airplane, cargo ship, cat): pass --overwrite to replace the export there']),
    (['export', '-m', 'se_resnet18', '{root}/out', '--no-pretrained', '--repo-id', 'me/my model', '--push'], 2,
     ["--repo-id 'me/my model' is not a Hub repository id (ORG/NAME): Repo id must use alphanumeric chars"]),
    (['export', 'se_resnet18', '{root}/out', '--no-pretrained', '--push'], 2, ['--push needs --repo-id']),
    (['export', 'sk_resnet18', '{root}/out', '-m', 'se_resnet18'], 2,
     ["two models given, 'sk_resnet18' and -m 'se_resnet18'"]),
    (['export', '{root}/out', '--no-pretrained'], 2, ['name the model with -m/--model']),
    (['predict', '-m', 'sk_resnet18', '--checkpoint', '{sk3}', '--ema', '{photo}'], 2,
     ['checkpoint {sk3} holds no EMA weights (only state_dict); drop --ema']),
    (['predict', '-m', 'sk_resnet18', '--ema', '{photo}'], 2, ['--ema chooses among the weights of a --checkpoint']),
    (['validate', '-m', 'se_resnet18', '--checkpoint', '{root}', '{folder}'], 2,
     ['--checkpoint {root} is a folder: pass a checkpoint file; its checkpoint files: foreign.pth, '
      'resnet18.pth.tar, se3.pth.tar, sk3.pth.tar']),
    (['predict', '-m', 'se_resnet18', '--checkpoint', '{se3}', '{root}'], 2,
     ['{root} is a folder, not an image file: pass the images in it (e.g. {root}/*.jpg)']),
]


@pytest.mark.parametrize('argv, code, words', ERROR_CASES, ids=[' '.join(c[0][:4]) for c in ERROR_CASES])
def test_errors_are_one_line_and_write_nothing(files, capsys, argv, code, words):
    before = {p: p.read_bytes() for p in files['root'].rglob('*') if p.is_file()}
    assert main(fmt(argv, files)) == code  # an exception escaping main would be a traceback
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    for word in words:
        assert word.format(**files) in line
    assert not (files['root'] / 'out').exists()
    assert {p: p.read_bytes() for p in files['root'].rglob('*') if p.is_file()} == before


# --- checkpoints ----------------------------------------------------------------------------------------------------

def test_the_offline_hint_works_a_hub_file_in_timm_layout_loads_with_checkpoint(files, tmp_path):
    """Offline with a cold cache the error says --checkpoint FILE; the tag's Hub file fetched by hand (timm's
    skresnet18 layout) then loads that way, and computes what timm's network computes."""
    offline = {'HF_HUB_OFFLINE': '1', 'HF_HUB_CACHE': str(files['empty_cache'])}
    result = run_cli('predict', '-m', 'sk_resnet18', str(files['photo']), env=offline)
    assert result.returncode == 1 and '--checkpoint FILE' in one_error_line(result.stderr)

    source = source_network(SK18, seed=3)
    path = save_safetensors(source, tmp_path / 'model.safetensors')  # what `hf download timm/skresnet18...` gets
    result = run_cli('predict', '-m', 'sk_resnet18', '--checkpoint', str(path), '--img-size', str(IMG), '--json',
                     str(files['photo']), env=offline)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)['weights'] == f"checkpoint {path} (skresnet18's layout)"
    transform, _ = eval_transform(timm.create_model('sk_resnet18', device='meta'), IMG)
    with torch.no_grad(), Image.open(files['photo']) as image:
        expected = source(transform(image.convert('RGB'))[None]).softmax(-1)[0]
    for index, p in probabilities(result.stdout)[str(files['photo'])].items():
        assert p == pytest.approx(expected[index].item(), abs=2e-5)


def test_source_layouts_load_through_the_tags_mapping(files, tmp_path, capsys):
    """The SENet authors' layout (se_resnet50-ce0d4300.pth style), a plain ResNet for a graft tag, and the overlay
    form the library's messages suggest."""
    legacy = save_safetensors(source_network(SE18_ORIG, seed=4), tmp_path / 'seresnet18-4bb0ce65.safetensors')
    plain = randomize_bn(timm.create_model('resnet18')).eval()
    plain_file = save_safetensors(plain, tmp_path / 'resnet18.safetensors')
    argv = ['predict', '--img-size', str(IMG), '--json', str(files['photo'])]
    assert main([*argv, '-m', 'se_resnet18_orig', '--checkpoint', str(legacy)]) == 0
    assert json.loads(capsys.readouterr().out)['weights'] == f"checkpoint {legacy} (legacy_seresnet18's layout)"

    transform, _ = eval_transform(timm.create_model('se_resnet18', device='meta'), IMG)
    with torch.no_grad(), Image.open(files['photo']) as image:
        expected = plain(transform(image.convert('RGB'))[None]).softmax(-1)[0]  # a graft computes the plain net
    overlay = f'pretrained_cfg_overlay=dict(file={str(plain_file)!r})'
    for how in (['--checkpoint', str(plain_file)], ['--model-kwarg', overlay]):
        assert main([*argv, '-m', 'se_resnet18', *how]) == 0
        out = capsys.readouterr().out
        for index, p in probabilities(out)[str(files['photo'])].items():
            assert p == pytest.approx(expected[index].item(), abs=2e-5)


def test_a_train_py_checkpoint_brings_its_head_and_input_size_and_its_weights_as_validate_py_takes_them(files, capsys):
    """timm's validate.py takes a checkpoint's EMA weights only with --use-ema: so does every command, naming them."""
    argv = ['predict', '-m', 'se_resnet18', '--checkpoint', str(files['se3']), str(files['photo'])]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"{files['photo']}: checkpoint {files['se3']} (its non-EMA weights; it also holds EMA "
                        f'weights), {IMG}x{IMG}')  # train.py's --img-size
    assert lines[1].endswith('  0  class 0') and len(lines) == 4  # the state_dict's answer, of 3 classes
    assert main([*argv, '--ema']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{files['photo']}: checkpoint {files['se3']} (EMA weights), {IMG}x{IMG}"
    assert lines[1].endswith('  1  class 1')  # state_dict_ema's
    assert main(['predict', '-m', 'se_resnet18', '--checkpoint', str(files['se3']), '--img-size', '96', '--json',
                 str(files['photo'])]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result['img_size'], result['crop_pct'], result['topk']) == (96, 0.95, 3)  # the tag's crop fraction


@pytest.mark.parametrize('weights', ['pretrained', 'checkpoint'])
def test_predict_builds_its_model_once(files, hub, capsys, monkeypatch, weights):
    from timm_sesk.models import SeskResNet

    publish_source(hub, SK18, seed=6)
    built = []
    init = SeskResNet.__init__
    monkeypatch.setattr(SeskResNet, '__init__', lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    given = ['--checkpoint', str(files['sk3'])] if weights == 'checkpoint' else []
    assert main(['predict', '-m', 'sk_resnet18', *given, '--img-size', str(IMG), str(files['photo'])]) == 0
    assert len(built) == 1


def test_fused_channels_last_gives_the_models_outputs(files, capsys, tmp_path):
    path = train_checkpoint(tmp_path / 'sk.pth', 'sk_resnet18', 3, img_size=IMG)
    runs = {}
    for flags in ([], ['--no-fuse']):
        assert main(['predict', '-m', 'sk_resnet18', '--checkpoint', str(path), '--json', *flags,
                     str(files['photo'])]) == 0
        runs[bool(flags)] = probabilities(capsys.readouterr().out)[str(files['photo'])]
    assert runs[True].keys() == runs[False].keys() == {0, 1, 2}
    for index, p in runs[True].items():
        assert runs[False][index] == pytest.approx(p, abs=1e-5)


# --- validate -------------------------------------------------------------------------------------------------------

def test_validate_skips_unreadable_files_when_asked_and_reports_progress(files, capsys, tmp_path):
    folder = shutil.copytree(files['folder'], tmp_path / 'val')
    broken = folder / 'cat' / 'truncated.jpg'
    broken.write_bytes(b'\xff\xd8\xff\xe0 truncated')
    argv = ['validate', '-m', 'se_resnet18', '--checkpoint', str(files['se3']), '-j', '0', str(folder)]
    assert main(argv) == 1
    assert '--skip-unreadable skips such files' in one_error_line(capsys.readouterr().err)

    results = files['root'] / 'results' / 'se3.json'
    assert main([*argv, '--skip-unreadable', '--results-file', str(results)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"checkpoint {files['se3']} (its non-EMA weights; it also holds EMA weights) on "
                               f'{folder}: 7 images, 3 classes (folder order')
    assert lines[-3:-1] == [f'skipped 1 unreadable file: {broken}',
                            'top-1 33.33%  top-3 100.00%  (2/6 and 6/6 correct)']  # always 'airplane'
    assert 'timm-sesk validate: 7/7 images, top-1 so far 33.33%' in captured.err  # no terminal: progress lines
    data = json.loads(results.read_text())
    assert {k: data[k] for k in ('top1', 'top1_err', 'top5', 'img_size', 'images', 'skipped')} == dict(
        top1=33.3333, top1_err=66.6667, top5=100.0, img_size=IMG, images=6, skipped=[str(broken)])
    assert 10 < data['param_count'] < 12 and data['interpolation'] == 'bicubic'


def test_validate_json_is_the_only_stdout(files, capsys):
    assert main(['validate', '-m', 'se_resnet18', '--checkpoint', str(files['se3']), '-j', '0', '-q', '--json',
                 str(files['folder'])]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result['model'] == 'se_resnet18' and result['top1'] == pytest.approx(100 / 3, abs=1e-3)
    assert result['class_mapping'].startswith('folder order') and 'on ' in captured.err


def test_hostile_images_are_skipped_by_validate_and_refused_by_predict_in_one_line(files, capsys, tmp_path):
    folder = shutil.copytree(files['folder'], tmp_path / 'val')
    hostile = hostile_images(folder / 'cat')
    argv = ['validate', '-m', 'se_resnet18', '--checkpoint', str(files['se3']), '-j', '0', '-q', str(folder)]
    assert main(argv) == 1
    assert one_error_line(capsys.readouterr().err).startswith(f"timm-sesk: error: cannot read image {hostile['bomb']}")
    assert main([*argv, '--skip-unreadable']) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"skipped 2 unreadable files: {hostile['bomb']}, {hostile['wide']}",
        'top-1 33.33%  top-3 100.00%  (2/6 and 6/6 correct)']  # always 'airplane'
    argv = ['predict', '-m', 'se_resnet18', '--checkpoint', str(files['se3']), str(files['photo']),
            str(hostile['wide'])]
    assert main(argv) == 1
    assert one_error_line(capsys.readouterr().err).startswith(
        f"timm-sesk: error: cannot read image {hostile['wide']}: it is 40000 x 1 px, an aspect ratio of 40000:1, "
        'above the limit of 100:1')
    assert main([*argv, '--skip-unreadable']) == 0  # the others' results, and the skipped named
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{files['photo']}: ") and lines[-1] == f"skipped 1 unreadable file: {hostile['wide']}"


def test_predict_sees_16_bit_and_turned_images_as_a_viewer_shows_them(files, capsys, tmp_path):
    pixels = np.asarray(Image.open(files['photo']))  # 80 x 96, not square: a quarter turn changes the crop
    eight, sixteen = tmp_path / 'grey8.png', tmp_path / 'grey16.png'
    Image.fromarray(pixels[..., 0]).save(eight)
    Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(sixteen)
    turned, upright = tmp_path / 'turned.jpg', tmp_path / 'upright.png'
    exif = Image.Exif()
    exif[0x0112] = 8  # a viewer turns it a quarter counter-clockwise
    Image.fromarray(pixels).save(turned, exif=exif)
    with Image.open(turned) as stored:
        stored.convert('RGB').transpose(Image.Transpose.ROTATE_90).save(upright)
    images = [eight, sixteen, turned, upright]
    assert main(['predict', '-m', 'sk_resnet18', '--checkpoint', str(files['sk3']), '--json',
                 *map(str, images)]) == 0
    p = probabilities(capsys.readouterr().out)
    assert p[str(sixteen)] == p[str(eight)] and p[str(turned)] == p[str(upright)]
    assert p[str(eight)] != p[str(upright)]  # the probabilities tell images apart


CIFAR = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']


def test_class_mapping_is_by_name_or_stops_naming_the_folders_that_differ():
    imagenet = ImageNetInfo().label_names()
    assert class_mapping(['n01440764', 'n04266014'], imagenet, 1000)[0] == {'n01440764': 0, 'n04266014': 812}
    assert class_mapping(CIFAR[3:6], CIFAR, 10)[0] == {'cat': 3, 'deer': 4, 'dog': 5}  # any subset, by name
    misspelt = [*CIFAR[:9], 'truk']  # 9 of 10 names match: no silent fall-back to folder order
    with pytest.raises(ClassMappingError, match=r"^1 of the 10 class folders is not among the model's class names: "
                                                r"truk \(did you mean 'truck'\?\)"):
        class_mapping(misspelt, CIFAR, 10)
    with pytest.raises(ClassMappingError, match=r'none of the 10 class folders .* \(--folder-order\)'):
        class_mapping([f'c{i}' for i in range(10)], CIFAR, 10)
    assert class_mapping(misspelt, CIFAR, 10, folder_order=True)[0]['truk'] == 9  # when asked for
    with pytest.raises(ClassMappingError, match='head has 1000 classes, not 2'):
        class_mapping(['cat', 'dog'], imagenet, 1000)


def test_a_model_without_class_names_takes_the_folders_in_order_as_train_py_did():
    assert class_mapping(['b', 'a10', 'a9'], None, 3)[0] == {'a9': 0, 'a10': 1, 'b': 2}
    with pytest.raises(ClassMappingError, match='head has 2 classes, not 3'):
        class_mapping(['a', 'b', 'c'], None, 2)
    # An empty folder keeps its place where the head has a class for it, else it is left out (as train.py did).
    kept, how = class_mapping(['a', 'c'], None, 3, empty=['b'])
    assert kept == {'a': 0, 'c': 2} and 'empty class folders: b (kept in the order)' in how
    left, how = class_mapping(['a', 'c'], None, 2, empty=['b'])
    assert left == {'a': 0, 'c': 1} and 'empty class folders: b (left out of the order' in how


def test_label_names_lose_a_byte_order_mark(tmp_path):
    path = tmp_path / 'classes.txt'
    path.write_text('\n'.join(CLASSES) + '\n', encoding='utf-8-sig')  # as Windows Notepad writes UTF-8
    assert path.read_bytes().startswith(b'\xef\xbb\xbf')
    assert read_label_names(path) == list(CLASSES)


# --- export ---------------------------------------------------------------------------------------------------------

def test_a_finetuned_export_describes_itself_not_the_imagenet_tag(files, hub, capsys, tmp_path):
    out = tmp_path / 'se3'
    assert main(['export', '-m', 'se_resnet18', str(out), '--checkpoint', str(files['se3']), '--ema', '--dataset',
                 'toy3', '--label-names', str(files['labels'])]) == 0  # no --num-classes: the checkpoint's head
    config = json.loads((out / 'config.json').read_text())
    assert config['num_classes'] == 3 and 'tag' not in config['pretrained_cfg']
    assert config['label_names'] == list(CLASSES)  # 'cargo ship' whole, the blank line skipped
    assert config['pretrained_cfg']['input_size'] == [3, IMG, IMG]  # train.py's size
    card = (out / 'README.md').read_text()
    assert 'graft' not in card and 'Pretrained weights' not in card and 'top-1' not in card
    assert "timm.create_model('hf-hub:ORG/NAME', pretrained=True)" in card
    assert read_label_names(files['labels']) == list(CLASSES)

    for path in out.iterdir():
        hub.publish('sesk-test/cli-models-se3', path.name, path)
    capsys.readouterr()
    assert main(['predict', '-m', 'hf-hub:sesk-test/cli-models-se3', '-k', '1', str(files['photo'])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{files['photo']}: hf-hub:sesk-test/cli-models-se3, {IMG}x{IMG}"  # not the tag's name
    assert lines[1].split('  ')[-1] == 'cargo ship' and len(lines) == 2


def test_a_replaced_head_is_a_random_head_everywhere_and_claims_nothing(files, hub, capsys, tmp_path):
    """--num-classes on a pretrained tag: predict labelled it the tag, validate printed chance with status 0, and
    export's card claimed imagenet-1k, the tag and its top-1."""
    publish_source(hub, SK18, seed=7)
    head = 'sk_resnet18.ra_in1k, random head (3 classes)'
    assert main(['predict', '-m', 'sk_resnet18', '--num-classes', '3', '--img-size', str(IMG), '--json',
                 str(files['photo'])]) == 0
    assert json.loads(capsys.readouterr().out)['weights'] == head
    assert main(['validate', '-m', 'sk_resnet18', '--num-classes', '3', '-j', '0', str(files['folder'])]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f'timm-sesk: error: {head}: the accuracy of a random head (3 classes) is chance, not a measure of the model; '
        'validate trained weights (a fine-tune with --checkpoint FILE, or its exported folder)')
    out = tmp_path / 'random-head'
    assert main(['export', '-m', 'sk_resnet18', str(out), '--num-classes', '3']) == 0
    assert f'exporting sk_resnet18 ({head}) to hub' in capsys.readouterr().out
    card = (out / 'README.md').read_text()
    assert 'top-1' not in card and 'ra_in1k' not in card and 'imagenet' not in card
    assert 'a new, untrained classifier head: no accuracy is claimed' in card
    assert 'tag' not in json.loads((out / 'config.json').read_text())['pretrained_cfg']


def test_an_exported_folder_is_a_model_with_its_own_size_preprocessing_and_labels(files, capsys, tmp_path):
    """`-m FOLDER` was an unknown model, and its model.safetensors as --checkpoint ran at 224 px without labels."""
    out = tmp_path / 'sk3'
    assert main(['export', '-m', 'sk_resnet18', str(out), '--checkpoint', str(files['sk3']), '--dataset', 'toy3',
                 '--label-names', str(files['labels'])]) == 0
    capsys.readouterr()
    assert main(['predict', '-m', str(out), '--json', str(files['photo'])]) == 0
    folder = json.loads(capsys.readouterr().out)
    assert (folder['weights'], folder['img_size']) == (str(out), IMG)  # train.py's size, kept in config.json
    assert {t['label'] for t in folder['predictions'][0]['top']} == set(CLASSES)
    assert main(['predict', '-m', 'sk_resnet18', '--checkpoint', str(files['sk3']), '--label-names',
                 str(files['labels']), '--json', str(files['photo'])]) == 0
    checkpoint = json.loads(capsys.readouterr().out)
    # the same model, labels too (the folder holds timm's twin: equal within fp32 rounding)
    top, folder_top = checkpoint['predictions'][0]['top'], folder['predictions'][0]['top']
    assert [t['label'] for t in top] == [t['label'] for t in folder_top]
    assert [t['probability'] for t in top] == pytest.approx([t['probability'] for t in folder_top], abs=1e-5)
    assert main(['validate', '-m', str(out), '-j', '0', str(files['folder'])]) == 0
    assert f"{out} on {files['folder']}: 6 images, 3 classes (folder names matched" in capsys.readouterr().out


def test_a_hub_model_of_an_unknown_architecture_says_so(files, hub, capsys):
    config = {'architecture': 'not_a_timm_model', 'num_classes': 3, 'pretrained_cfg': {}}
    hub.publish('sesk-test/cli-models-alien', 'config.json', json.dumps(config).encode())
    hub.publish('sesk-test/cli-models-alien', 'model.safetensors', b'unused')
    assert main(['predict', '-m', 'hf-hub:sesk-test/cli-models-alien', str(files['photo'])]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith('timm-sesk: error: ') and '\n' not in line
    assert 'not_a_timm_model' in line and 'architecture timm does not know' in line


def test_export_takes_the_model_options_of_predict(files, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(['export', '--help'])
    help_text = capsys.readouterr().out
    for option in ('--model MODEL, -m MODEL', '--checkpoint FILE', '--no-pretrained', '--num-classes N',
                   '--model-kwarg KEY=VALUE', '--device DEVICE'):
        assert option in help_text
    assert '--model-kwargs' not in help_text  # the old spelling is still read, not advertised
    out = tmp_path / 'random'
    assert main(['export', '-m', 'se_resnet18', str(out), '--no-pretrained', '--num-classes', '3',
                 '--model-kwargs', 'se_position=post']) == 0
    config = json.loads((out / 'config.json').read_text())
    assert config['num_classes'] == 3 and config['model_args']['se_position'] == 'post'


# --- the Hub out of reach: huggingface_hub's own fallback to its cache, nothing switched for the process ----------

def _offline_state():
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE, os.environ.get('HF_HUB_OFFLINE')


def test_an_unreachable_hub_leaves_a_warm_cache_usable_and_switches_nothing(files, hub, capsys, monkeypatch):
    """huggingface_hub falls back to its cache by itself; a cold cache gives the error test_cli's offline test reads
    (the same LocalEntryNotFoundError, after huggingface_hub's retries: about 50 s, so not run here)."""
    from huggingface_hub import constants

    publish_source(hub, SK18, seed=5)
    argv = ['predict', '-m', 'sk_resnet18', '--img-size', str(IMG), '--json', str(files['photo'])]
    assert main(argv) == 0  # the Hub reachable: downloads into the cache
    online = json.loads(capsys.readouterr().out)
    unreachable = f'http://127.0.0.1:{closed_port()}'  # what HF_ENDPOINT sets as huggingface_hub is imported
    monkeypatch.setattr(constants, 'ENDPOINT', unreachable)  # (restored after the test)
    monkeypatch.setattr(constants, 'HUGGINGFACE_CO_URL_TEMPLATE', f'{unreachable}/{{repo_id}}/resolve/{{revision}}/'
                                                                   '{filename}')
    before = _offline_state()
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == online
    assert _offline_state() == before  # nothing switched offline for the rest of the process


def test_a_hub_id_missing_from_the_cache_offline_is_one_line(files, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    assert main(['predict', '-m', 'hf-hub:sesk-test/never-published', str(files['photo'])]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert 'pretrained weights for hf-hub:sesk-test/never-published are not in the local Hugging Face cache' in line
    assert '`hf download sesk-test/never-published`' in line


# --- option parsing -------------------------------------------------------------------------------------------------

def test_model_kwargs_read_literals_and_dict_calls_without_eval():
    assert parse_kwargs(['num_classes=10', 'se_position=post', "pretrained_cfg_overlay=dict(file='/m.pth', n=[1, 2])",
                         "x={'a': (1, dict(b=None))}"]) == dict(
        num_classes=10, se_position='post', pretrained_cfg_overlay=dict(file='/m.pth', n=[1, 2]),
        x={'a': (1, dict(b=None))})
    with pytest.raises(Exception, match='cannot read'):
        parse_kwargs(['x=dict(a=open("/etc/passwd"))'])


def test_checkpoint_reader_prefers_ema_and_keeps_train_args(files):
    ckpt = Checkpoint.read(files['se3'])
    assert ckpt.arch == 'se_resnet18' and ckpt.train_args['img_size'] == IMG
    assert ckpt.state_dict['fc.bias'].argmax().item() == 1  # state_dict_ema's
    assert ckpt.data_args == {'img_size': IMG}  # train.py's unset ones (None, '') are not given

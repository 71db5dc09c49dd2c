"""``validate`` on folders as timm lays them out: dataset roots with splits, nested and empty class folders, and
class folders mapped onto the model's classes by name, by train.py's order, or not at all.

The model is a 64 px se_resnet18 checkpoint whose classifier always answers one class, so each accuracy tells which
images were scored and how their folders were mapped.
"""
import json
from pathlib import Path
from typing import Dict, List

import pytest
from helpers import IMG, train_checkpoint
from PIL import Image

from timm_sesk.cli import main
from timm_sesk.data import image_folder

PREFIX = 'timm-sesk: error: '


def _images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new('RGB', (IMG, IMG), (40 * i, 90, 160)).save(folder / f'{i}.png')


def _dataset(root: Path, layout: Dict[str, Dict[str, int]]) -> Path:
    """``{split or '': {class: images}}`` under ``root``."""
    for split, classes in layout.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            _images(root / split / name, count)
    return root


@pytest.fixture(scope='module')
def answers_a(tmp_path_factory) -> Path:
    """A 3-class train.py checkpoint (no class names) that always answers class 0."""
    return train_checkpoint(tmp_path_factory.mktemp('ckpt') / 'a.pth.tar', 'se_resnet18', 3, answer=0, img_size=IMG)


def _validate(checkpoint: Path, *argv: str) -> List[str]:
    return ['validate', '-m', 'se_resnet18', '--checkpoint', str(checkpoint), '-j', '0', '-q', *argv]


def _error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(PREFIX), lines
    return lines[0][len(PREFIX):]


def test_a_dataset_root_is_read_at_its_validation_split_as_timm_validate_py_reads_it(answers_a, tmp_path, capsys):
    """train.py's root (train/ and validation/) was scored as one set: 4/8 = 50% here, not validation's 1/3."""
    root = _dataset(tmp_path / 'data', {'train': {'a': 3, 'b': 1, 'c': 1}, 'validation': {'a': 1, 'b': 1, 'c': 1}})
    assert main(_validate(answers_a, '--json', str(root))) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert (result['folder'], result['images'], result['top1']) == (str(root / 'validation'), 3, 33.3333)
    assert f'on {root / "validation"}: 3 images, 3 classes' in captured.err
    assert main(_validate(answers_a, '--split', 'train', '--json', str(root))) == 0
    assert json.loads(capsys.readouterr().out)['top1'] == 60.0  # 3 of its 5 images are of class 'a'
    assert main(_validate(answers_a, '--split', 'test', str(root))) == 1
    assert _error(capsys) == f'{root} has no test split folder (its folders: train, validation)'


def test_split_folders_that_are_not_chosen_are_refused_naming_them(answers_a, tmp_path, capsys):
    root = _dataset(tmp_path / 'data', {'train': {'a': 1, 'b': 1}, 'test': {'a': 1, 'b': 1}})
    assert main(_validate(answers_a, str(root))) == 1
    assert _error(capsys) == (f'{root} holds the splits test, train, not class folders: name the one to read '
                              '(--split test)')
    assert image_folder(root, 'test').root == root / 'test'


def test_nested_class_folders_are_refused_not_read_as_a_class_deeper(answers_a, tmp_path, capsys):
    root = _dataset(tmp_path / 'val', {'': {'a': 1, 'c': 1}})
    _images(root / 'b' / 'nested' / 'deeper', 1)
    assert main(_validate(answers_a, str(root))) == 1
    line = _error(capsys)
    assert line.startswith(f'{root}/b holds images in subfolders ({root}/b/nested/deeper/0.png)')
    assert "timm's ImageFolder would make 'deeper' a class of its own" in line


def test_an_empty_class_folder_is_named_and_keeps_its_place(answers_a, tmp_path, capsys):
    root = _dataset(tmp_path / 'val', {'': {'a': 1, 'c': 2}})
    (root / 'b').mkdir()
    assert main(_validate(answers_a, '--json', str(root))) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result['empty_class_folders'] == ['b'] and result['top1'] == pytest.approx(100 / 3, abs=1e-3)
    assert 'empty class folders: b (kept in the order)' in captured.err  # 'c' is class 2, not 1


def test_label_names_map_folders_by_name_and_a_misspelt_one_stops_the_run(answers_a, tmp_path, capsys):
    """With names, folders map by name whatever their order; 2 of 3 names matching once fell back to folder order
    without a word."""
    names = tmp_path / 'names.txt'
    names.write_text('cat\nairplane\nbird\n', encoding='utf-8-sig')  # head order, not sorted; a BOM before 'cat'
    root = _dataset(tmp_path / 'val', {'': {'airplane': 1, 'bird': 1, 'cat': 2}})
    assert main(_validate(answers_a, '--label-names', str(names), '--json', str(root))) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['top1'] == 50.0 and result['class_mapping'].startswith('folder names matched')  # 'cat' is class 0
    (root / 'cat').rename(root / 'cats')
    assert main(_validate(answers_a, '--label-names', str(names), str(root))) == 1
    assert _error(capsys) == ("1 of the 3 class folders is not among the model's class names: cats (did you mean "
                              "'cat'?); rename them, or give the names it was trained with (--label-names FILE)")
    assert main(_validate(answers_a, '--label-names', str(names), '--folder-order', '--json', str(root))) == 0
    assert json.loads(capsys.readouterr().out)['top1'] == 25.0  # airplane, bird, cats: 'airplane' is class 0

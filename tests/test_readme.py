"""README.md's Python examples run as written (pretrained weights come from the loopback Hub)."""
import re
from pathlib import Path

import pytest
from sources import publish_source

from timm_sesk.weights import weights_for

README = Path(__file__).resolve().parents[1] / 'README.md'
BLOCKS = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.S)


def _publish_weights_used(hub, code):
    for name in re.findall(r"create_model\('([\w.]+)', pretrained=True|export_hub_folder\('([\w.]+)'", code):
        name = ''.join(name)
        arch, _, tag = name.partition('.')
        specs = weights_for(arch)
        publish_source(hub, next(s for s in specs if s.tag == tag) if tag else specs[0])


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_python_block_runs(hub, index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files the examples write (an ONNX export) land here
    _publish_weights_used(hub, BLOCKS[index])
    exec(compile(BLOCKS[index], f'README.md python block {index}', 'exec'), {})


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2

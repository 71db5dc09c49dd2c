"""Smoke test of the lowest timm setup.cfg declares, run by `make floor` in a venv holding exactly that timm.

Every architecture builds, trains one step and runs in eval at 64 px; a pretrained tag loads from a file of its
source's layout, through timm's loader and through ``timm_sesk.load_weights``; Hub folders export, in timm_sesk's
layout and as timm's built-in twin, and load back. The test suite runs on the current timm; this shows the declared
floor is not a guess.

    python tests/floor_smoke.py
"""
import sys
import tempfile
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import timm_sesk
from timm_sesk.publish import export_hub_folder

IMG = 64


def _x(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return ((a - b).abs().max() / b.abs().max()).item() < 1e-5


def every_architecture_trains_and_evaluates() -> None:
    for name in timm_sesk.list_models():
        model = timm.create_model(name, num_classes=4).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
        F.cross_entropy(model(_x()), torch.tensor([0, 3])).backward()
        optimizer.step()
        with torch.no_grad():
            logits = model.eval()(_x())
        assert logits.shape == (2, 4) and torch.isfinite(logits).all(), name


def a_tag_loads_from_a_file(path: Path) -> None:
    source = timm.create_model('skresnet18').eval()  # the tag's source network, in timm's layout
    torch.save(source.state_dict(), path)
    model = timm.create_model('sk_resnet18.ra_in1k', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    again = timm.create_model('sk_resnet18')
    assert timm_sesk.load_weights(again, path).layout == 'timm_sknet'
    with torch.no_grad():
        expected = source(_x())
        assert _close(model.eval()(_x()), expected) and _close(again.eval()(_x()), expected)


def hub_folders_export_and_load_back(checkpoint: Path, folder: Path) -> None:
    knobs = dict(sk_memory_efficient=True)
    model, _ = timm_sesk.load('sk_resnet18', checkpoint=checkpoint, **knobs)
    plugin = export_hub_folder('sk_resnet18', folder / 'plugin', checkpoint=checkpoint, dataset='none',
                               model_args=knobs, model=model, layout='plugin')
    portable = export_hub_folder('sk_resnet18', folder / 'portable', checkpoint=checkpoint, dataset='none',
                                 model_args=knobs, model=model)
    loaded = timm.create_model(f'local-dir:{plugin}', pretrained=True).eval()
    assert loaded.layer1[0].conv1.memory_efficient  # the model arguments travel in config.json
    twin = timm.create_model(f'local-dir:{portable}', pretrained=True).eval()
    assert twin.pretrained_cfg['architecture'] == 'skresnet18'  # timm's own: loads without timm_sesk
    with torch.no_grad():
        assert _close(loaded(_x()), model.eval()(_x())) and _close(twin(_x()), model(_x()))


def main() -> int:
    every_architecture_trains_and_evaluates()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / 'skresnet18.pth'
        a_tag_loads_from_a_file(checkpoint)
        hub_folders_export_and_load_back(checkpoint, Path(tmp))
    print(f'timm {timm.__version__}, torch {torch.__version__}: {len(timm_sesk.list_models())} architectures build, '
          'train and evaluate; a tag loads from a file; Hub folders export (plugin and portable) and load back')
    return 0


if __name__ == '__main__':
    sys.exit(main())

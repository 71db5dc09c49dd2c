"""An exported folder loads in transformers (AutoModel, AutoImageProcessor, pipeline) as timm's own models do: a
portable one as timm's built-in twin, a plugin one after ``import timm_sesk`` (this process has it imported; without
it, tests/test_portable.py)."""
import json

import numpy as np
import pytest
import timm
import torch
import transformers
from helpers import randomize_bn, rel_err
from PIL import Image
from sources import publish_source

from timm_sesk.publish import export_hub_folder
from timm_sesk.weights import WEIGHTS

SPEC = next(s for s in WEIGHTS if s.name == 'sk_resnet18.ra_in1k')


def _image(seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(96, 80, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _check_in_transformers(folder, expected_model: torch.nn.Module, labels=None) -> None:
    model = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    pixels = processor(_image(), return_tensors='pt')['pixel_values']
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
        expected = expected_model.eval()(pixels)
    assert logits.shape == expected.shape
    assert rel_err(logits, expected) < 1e-5
    if labels is not None:
        assert model.config.id2label == dict(enumerate(labels))
    classify = transformers.pipeline('image-classification', model=folder, top_k=3)
    best = classify(_image())
    probs = expected.softmax(dim=1)[0]
    top = probs.topk(3)
    assert [p['score'] for p in best] == pytest.approx(top.values.tolist(), rel=1e-4)
    assert [p['label'] for p in best] == [model.config.id2label[i] for i in top.indices.tolist()]


def test_a_pretrained_export_loads_in_transformers_locally_and_from_the_hub(hub, tmp_path):
    source = publish_source(hub, SPEC, seed=21)
    folder = export_hub_folder(SPEC.name, tmp_path / 'export')
    assert json.loads((folder / 'config.json').read_text())['architecture'] == 'skresnet18'  # portable
    ours = timm.create_model(SPEC.name, pretrained=True)
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert rel_err(ours.eval()(x), source(x)) < 1e-5
    _check_in_transformers(str(folder), ours)
    for path in folder.iterdir():  # the same folder as a Hub repository (the loopback Hub)
        hub.publish('sesk-test/sk18-transformers', path.name, path)
    _check_in_transformers('sesk-test/sk18-transformers', ours)


def test_a_finetuned_plugin_export_loads_in_transformers_with_its_labels(tmp_path):
    torch.manual_seed(0)
    finetuned = randomize_bn(timm.create_model('se_resnet18', num_classes=4)).eval()
    checkpoint = tmp_path / 'model_best.pth.tar'
    torch.save({'arch': 'se_resnet18', 'state_dict': finetuned.state_dict()}, checkpoint)  # as train.py saves it
    labels = ['cargo truck', 'cat', 'dog', 'ship']
    folder = export_hub_folder(
        'se_resnet18', tmp_path / 'export', checkpoint=checkpoint, dataset='cifar10',
        model_args=dict(num_classes=4), label_names=labels, layout='plugin')
    assert json.loads((folder / 'config.json').read_text())['architecture'] == 'se_resnet18'
    _check_in_transformers(str(folder), finetuned, labels)

"""Deployment paths: torch.jit.trace and ONNX (run in onnxruntime) give eager's outputs.

TorchScript scripting, fx and torch.compile are checked in test_model_api.py and test_fast_paths.py.
"""
import numpy as np
import onnxruntime
import pytest
import timm
import torch
from helpers import IMG, randomize_bn

import timm_sesk  # noqa: F401 - registers the models

# One of each family: SE basic block, Caffe bottleneck SE, SE-ResNeXt, SK basic (split input), SKNet, and SK with
# three paths (a softmax over the paths' axis instead of the two-path sigmoid).
FAMILIES = ['se_resnet18', 'se_resnet50_orig', 'se_resnext26_32x4d_orig', 'sk_resnet18', 'sk_resnet26',
            'sk_resnet26:sk_paths=3']


def _model(name):
    name, _, knob = name.partition(':')
    kwargs = {knob.split('=')[0]: int(knob.split('=')[1])} if knob else {}
    torch.manual_seed(0)
    return randomize_bn(timm.create_model(name, **kwargs)).eval()


@pytest.mark.parametrize('name', ['se_resnet18', 'sk_resnet18', 'sk_resnet26'])
def test_trace_matches_eager(name):
    model = _model(name)
    example = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
        x = torch.randn(3, 3, IMG + 32, IMG)  # another batch and size than the trace saw
        torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', FAMILIES)
def test_onnx_export_runs_in_onnxruntime(name, tmp_path):
    model = _model(name)
    path = tmp_path / 'model.onnx'
    batch = torch.export.Dim('batch', min=1, max=64)
    torch.onnx.export(model, (torch.randn(2, 3, IMG, IMG),), str(path), dynamo=True, opset_version=18,
                      dynamic_shapes=({0: batch},))
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    input_name = session.get_inputs()[0].name
    for size in (1, 3):  # the batch dimension is dynamic
        x = torch.randn(size, 3, IMG, IMG, generator=torch.Generator().manual_seed(size))
        (actual,) = session.run(None, {input_name: x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())

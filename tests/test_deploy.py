"""Deployment (timm_sesk.deploy and the CLI's export formats and runtimes): ONNX and OpenVINO IR of SE and SK models
compute PyTorch's logits in ONNX Runtime and OpenVINO; predict and validate on an exported folder agree with the
PyTorch path; a missing runtime names the extra that installs it.

Models are one block per stage and take 64 px inputs (their data config says so), to keep the exports fast.
"""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from helpers import IMG, randomize_bn, rel_err
from PIL import Image

import timm_sesk  # registers the models
from timm_sesk import deploy
from timm_sesk.cli import main

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(layers=(1, 1, 1, 1), pretrained_cfg_overlay=dict(input_size=(3, IMG, IMG)))
# SE basic block, SK basic block (split input), SE-ResNeXt bottleneck (Caffe layout), SKNet bottleneck with three
# paths (a softmax over the paths instead of the two-path sigmoid).
FAMILIES = {
    'se_resnet18': {},
    'sk_resnet18': {},
    'se_resnext26_32x4d_orig': {},
    'sk_resnet26:sk_paths=3': {'sk_paths': 3},
}
# Each format with the runtimes that read it.
RUNTIMES = {'onnx': ('onnxruntime', 'openvino'), 'openvino': ('openvino',)}


def _model(name: str, num_classes: int = 1000) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name.partition(':')[0], num_classes=num_classes, **SMALL, **FAMILIES.get(name, {}))
    return randomize_bn(model).eval()


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Export each (model, format) once for the module."""
    cache = {}

    def get(name: str, fmt: str):
        if (name, fmt) not in cache:
            model = _model(name)
            folder = tmp_path_factory.mktemp(f'{name.replace(":", "_")}_{fmt}')
            meta = deploy.export(model, folder, fmt, log=None)
            cache[name, fmt] = model, folder, meta
        return cache[name, fmt]
    return get


def _batch(size: int, seed: int) -> torch.Tensor:
    return torch.randn(size, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('fmt', deploy.FORMATS)
@pytest.mark.parametrize('name', FAMILIES)
def test_export_runs_in_every_runtime_with_pytorch_logits(exported, name, fmt):
    model, folder, meta = exported(name, fmt)
    files = {'onnx': ['model.onnx'], 'openvino': ['model.bin', 'model.xml']}[fmt]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, 'data_config.json', 'deploy.json'])
    check = meta['check']
    assert check['passed'] and check['max_relative_error'] < deploy.F32_TOLERANCE
    assert json.loads((folder / 'deploy.json').read_text())['check'] == check
    for runtime in RUNTIMES[fmt]:
        deployed = deploy.load(folder, runtime, threads=1)
        for size in (1, 3):  # other batch sizes than the export saw: the batch dimension is dynamic
            x = _batch(size, seed=size)
            with torch.no_grad():
                expected = model(x)
            actual = deployed(x)
            assert actual.shape == expected.shape
            assert rel_err(actual, expected) < deploy.F32_TOLERANCE, (runtime, size)


def test_onnx_graph_is_the_fused_model_with_named_dynamic_io(exported):
    import onnx

    _, folder, meta = exported('sk_resnet18', 'onnx')
    graph = onnx.load(str(folder / 'model.onnx')).graph
    assert [i.name for i in graph.input] == ['input'] and [o.name for o in graph.output] == ['logits']
    assert not graph.input[0].type.tensor_type.shape.dim[0].HasField('dim_value')  # symbolic batch
    assert meta['opset'] >= 18
    ops = {node.op_type for node in graph.node}
    assert 'Conv' in ops and 'BatchNormalization' not in ops  # fuse() folded every BatchNorm
    # The SK units' export form: no softmax, gather or reshape in the fuse, no Where (torch.lerp's export) in the select
    assert not ops & {'Softmax', 'Gather', 'Squeeze', 'Unsqueeze', 'Where', 'Transpose'}


def test_saturated_sk_selection_runs_exactly_in_every_runtime(tmp_path):
    # Logit gaps of hundreds between the paths (a fine-tune or an adversarial input can make them): the selection
    # weights are exactly 0 and 1 in fp32. The export form's exp(l1 - l2) overflowed to inf there, and inf / inf gave
    # NaN logits in both runtimes, where PyTorch computes finite ones. (The softmax over 3 paths is safe; its
    # saturation is tested on the export form in test_fast_paths.)
    model = _model('sk_resnet18')
    for unit in model.modules():
        if isinstance(unit, timm_sesk.layers.SelectiveKernel):
            unit.attn.fc_select.weight.data *= 1000
    x = _batch(2, seed=3)
    with torch.no_grad(), timm_sesk.attention.record(model) as rec:
        expected = model(x)
    weights = torch.cat([w.flatten() for w in rec.sk.values()])
    assert (weights == 1).any() and (weights == 0).any() and expected.isfinite().all()
    for fmt, runtimes in RUNTIMES.items():
        folder = tmp_path / fmt
        deploy.export(model, folder, fmt, log=None)  # its check: each runtime within F32_TOLERANCE
        for runtime in runtimes:
            assert rel_err(deploy.load(folder, runtime, threads=1)(x), expected) < deploy.F32_TOLERANCE, runtime
    if deploy.bf16_support() is None:
        actual = deploy.load(tmp_path / 'openvino', precision='bf16', threads=1)(x)
        # Loose: with the attention's logits scaled 1000x, bf16 rounding flips near-tied selections (PyTorch's own
        # bf16 differs from its f32 by 0.07 here); the point is that exp did not overflow.
        assert actual.isfinite().all() and rel_err(actual, expected) < 0.25


def test_export_does_not_touch_the_model_and_records_what_predict_needs(exported):
    model, folder, _ = exported('se_resnet18', 'openvino')
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the caller's model is not fused
    deployed = deploy.load(folder)
    assert deployed.num_classes == model.num_classes
    assert deploy.data_config(deployed) == deploy.data_config(model)
    assert json.loads((folder / 'data_config.json').read_text()) == deploy.data_config(model)
    assert deploy.data_config(model)['input_size'] == [3, IMG, IMG]


# --- calls: checked before the runtime, sharing no state ----------------------------------------------------------

LOADS = [(fmt, runtime) for fmt, runtimes in RUNTIMES.items() for runtime in runtimes]


@pytest.mark.parametrize('fmt, runtime', LOADS)
def test_a_refused_input_leaves_the_next_calls_right(exported, fmt, runtime):
    # OpenVINO took each of these without an error, answered with the previous call's logits, and after the empty
    # batch went on answering later calls wrongly, in new infer requests too.
    model, folder, _ = exported('sk_resnet18', fmt)
    deployed = deploy.load(folder, runtime, threads=1)
    good = [_batch(2, seed=seed) for seed in (10, 11, 12)]
    with torch.no_grad():
        expected = [model(x) for x in good]
    assert rel_err(deployed(good[0]), expected[0]) < deploy.F32_TOLERANCE
    bad = {
        'an empty batch': torch.zeros(0, 3, IMG, IMG),
        'a smaller size': torch.zeros(2, 3, IMG // 2, IMG // 2),
        'a larger size': torch.zeros(2, 3, 2 * IMG, 2 * IMG),
        'one channel': torch.zeros(2, 1, IMG, IMG),
        'no batch dimension': torch.zeros(3, IMG, IMG),
        'integers': torch.zeros(2, 3, IMG, IMG, dtype=torch.uint8),
    }
    for i, (case, x) in enumerate(bad.items()):
        with pytest.raises(deploy.InvalidInputError) as e:
            deployed(x)
        got = ' x '.join(map(str, x.shape))
        assert str(e.value) == (
            f'{folder} takes float batches of N x 3 x {IMG} x {IMG}, N >= 1 (the channels and size it was exported '
            f'for: transform images with its data_config.json), got {got} {x.numpy().dtype}'), case
        after = 1 + i % 2  # not the previous good call's batch: stale logits would not pass
        assert rel_err(deployed(good[after]), expected[after]) < deploy.F32_TOLERANCE, case
    assert rel_err(torch.from_numpy(deployed.run(good[0].double().numpy())), expected[0]) < deploy.F32_TOLERANCE


@pytest.mark.parametrize('fmt, runtime', LOADS)
def test_a_sample_holding_nan_or_inf_gets_nan_logits_as_in_pytorch(exported, fmt, runtime):
    model, folder, _ = exported('sk_resnet18', fmt)
    x = _batch(3, seed=7)
    x[0] = float('nan')
    x[1, 0, 5, 5] = float('inf')
    with torch.no_grad():
        expected = model(x)
    assert expected[:2].isnan().all() and expected[2].isfinite().all()
    actual = deploy.load(folder, runtime, threads=1)(x)  # OpenVINO computed finite logits for both
    assert actual[:2].isnan().all()
    assert rel_err(actual[2:], expected[2:]) < deploy.F32_TOLERANCE


@pytest.mark.parametrize('fmt, runtime', LOADS)
def test_calls_from_several_threads_each_get_their_own_logits(exported, fmt, runtime):
    # One OpenVINO infer request shared by the calls: threads overwrote each other's input, most logits were wrong.
    model, folder, _ = exported('sk_resnet18', fmt)
    deployed = deploy.load(folder, runtime, threads=1)
    inputs = [_batch(size, seed=20 + size) for size in (1, 2, 3, 4)]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    errors = {}

    def calls(i: int) -> None:
        errors[i] = max(rel_err(deployed(inputs[i]), expected[i]) for _ in range(8))
    threads = [threading.Thread(target=calls, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == len(inputs) and max(errors.values()) < deploy.F32_TOLERANCE, errors


def test_bf16_is_close_where_the_cpu_has_it_and_refused_with_the_reason_where_not(exported, monkeypatch):
    model, folder, _ = exported('sk_resnet18', 'openvino')
    x = _batch(2, seed=5)
    if deploy.bf16_support() is None:
        with torch.no_grad():
            error = rel_err(deploy.load(folder, precision='bf16', threads=1)(x), model(x))
        assert 1e-6 < error < 5e-2  # bf16 really computed (not f32), and still the same network
    monkeypatch.setattr(deploy, 'bf16_support', lambda: 'this CPU (test) has no bf16 instructions')
    with pytest.raises(deploy.UnsupportedPrecisionError, match='no bf16 instructions'):
        deploy.load(folder, precision='bf16')
    with pytest.raises(deploy.UnsupportedPrecisionError, match='f32 only'):
        deploy.load(exported('sk_resnet18', 'onnx')[1], 'onnxruntime', precision='bf16')
    with pytest.raises(ValueError, match='ONNX Runtime cannot read'):
        deploy.load(folder, 'onnxruntime')


def test_a_wrong_export_fails_its_check(monkeypatch, tmp_path):
    model = _model('se_resnet18')
    original = deploy.fuse

    def broken_fuse(m):  # an exporter bug stand-in: the exported graph computes something else
        fused = original(m)
        fused.fc.bias.data += 1.0
        return fused
    monkeypatch.setattr(deploy, 'fuse', broken_fuse)
    with pytest.raises(deploy.ExportCheckError, match='FAILED'):
        deploy.export(model, tmp_path, 'openvino', log=None)
    assert json.loads((tmp_path / 'deploy.json').read_text())['check']['passed'] is False


def _images(folder: Path, classes: int, per_class: int) -> Path:
    g = np.random.default_rng(0)
    for c in range(classes):
        (folder / f'class{c}').mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(g.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f'class{c}' / f'{i}.png')
    return folder


def test_int8_quantizes_and_stays_the_same_network(tmp_path):
    model = _model('sk_resnet18', num_classes=4)
    calibration = _images(tmp_path / 'calibration', classes=2, per_class=4)
    said = []
    meta = deploy.export(model, tmp_path / 'int8', 'openvino', int8_calibration=calibration, int8_samples=8,
                         log=said.append)
    assert meta['quantization'].startswith('int8') and meta['check']['tolerance'] is None
    assert meta['check']['passed'] is None  # not held to a tolerance: neither passed nor failed
    (line,) = said  # was "export check ok" at any error, 3.9e-01 on a CIFAR fine-tune
    assert line.startswith('export check not applied (int8 quantization changes the logits on purpose): openvino')
    assert 'ok' not in line.split()
    assert 'FakeQuantize' in (tmp_path / 'int8' / 'model.xml').read_text()  # int8 where NNCF put its quantizers
    x = torch.from_numpy(np.concatenate(list(deploy._image_batches(calibration, deploy.data_config(model),
                                                                   range(8)))))
    with torch.no_grad():
        error = rel_err(deploy.load(tmp_path / 'int8', threads=1)(x), model(x))
    assert 1e-6 < error < 0.2


# --- command line -------------------------------------------------------------------------------------------------

def _run(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'timm_sesk', *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS='1', **(env or {})))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A fine-tuned-like 3-class checkpoint of a small sk_resnet18, and the model it holds."""
    model = _model('sk_resnet18', num_classes=3)
    path = tmp_path_factory.mktemp('ckpt') / 'model.safetensors'
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, model


def _layers_kwargs() -> list:
    return [f'{k}={v!r}' for k, v in SMALL.items()]


def test_cli_export_then_validate_in_a_subprocess_and_predict(checkpoint, exported, tmp_path, capsys):
    path, model = checkpoint
    images = _images(tmp_path / 'val', classes=3, per_class=2)
    out = tmp_path / 'openvino'
    assert main(['export', 'sk_resnet18', str(out), '--format', 'openvino', '--checkpoint', str(path),
                 '--model-kwargs', *_layers_kwargs()]) == 0
    assert 'export check ok' in capsys.readouterr().out
    # The PyTorch path on the same checkpoint is the reference: same transform, same class mapping, same numbers.
    assert main(['validate', '-m', 'sk_resnet18', '--checkpoint', str(path), '-q', '-j', '0', str(images),
                 *(a for kv in _layers_kwargs() for a in ('--model-kwarg', kv))]) == 0
    expected = capsys.readouterr().out.splitlines()[-1]
    assert expected.startswith('top-1 ')
    result = _run('validate', '-m', str(out), '--runtime', 'openvino', '-q', '-j', '0', str(images))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == expected
    assert 'in openvino f32 on' in result.stdout

    model, folder, _ = exported('sk_resnet18', 'onnx')  # 1000 ImageNet classes: predict prints their names
    image = sorted((images / 'class1').iterdir())[0]
    assert main(['predict', '-m', str(folder), '--runtime', 'onnxruntime', '--topk', '3', str(image)]) == 0
    with torch.no_grad():
        probs = model(_transformed(model, image)).softmax(-1)[0]
    lines = capsys.readouterr().out.splitlines()
    assert 'onnxruntime f32' in lines[0]
    synsets = timm.data.ImageNetInfo().label_names()
    top = probs.sort(descending=True)
    assert [line.split()[1] for line in lines[1:4]] == [synsets[i] for i in top.indices[:3]]
    assert np.allclose([float(line.split()[0]) for line in lines[1:4]], top.values[:3].numpy(), atol=2e-4)


def _transformed(model: torch.nn.Module, image: Path) -> torch.Tensor:
    from timm.data import create_transform

    with Image.open(image) as im:
        return create_transform(**deploy.data_config(model))(im.convert('RGB'))[None]


def test_cli_hub_export_of_random_weights_carries_the_data_config(tmp_path, capsys):
    out = tmp_path / 'hub'
    assert main(['export', 'sk_resnet18', str(out), '--no-pretrained', '--model-kwargs', *_layers_kwargs()]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['README.md', 'config.json', 'data_config.json',
                                                     'model.safetensors']
    assert json.loads((out / 'data_config.json').read_text())['input_size'] == [3, IMG, IMG]
    assert 'random initialisation, untrained' in (out / 'README.md').read_text()


def test_cli_refuses_what_does_not_apply(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    cases = [
        (['export', 'sk_resnet18', str(tmp_path / 'a'), '--format', 'onnx', '--no-pretrained', '--dataset', 'x'],
         '--dataset: only for --format hub'),
        (['export', 'sk_resnet18', str(tmp_path / 'b'), '--format', 'onnx', '--no-pretrained',
          '--int8-calibration', str(tmp_path)], 'use it with --format openvino'),
        (['export', 'sk_resnet18', str(tmp_path / 'c'), '--format', 'onnx', '--no-pretrained', '--checkpoint',
          str(path)], 'exclude each other'),
        (['predict', '-m', str(tmp_path), '--runtime', 'openvino', 'x.png'], 'not an exported folder'),
        (['predict', '-m', str(tmp_path), '--runtime', 'openvino', '--no-pretrained', 'x.png'],
         '--no-pretrained do not apply with --runtime'),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_cli_runs_an_export_at_its_size_only_and_says_so_in_one_line(exported, tmp_path, capsys):
    _, folder, _ = exported('sk_resnet18', 'openvino')
    image = _images(tmp_path / 'img', classes=1, per_class=1) / 'class0' / '0.png'
    assert main(['predict', '-m', str(folder), '--runtime', 'openvino', '--img-size', str(2 * IMG), str(image)]) == 2
    assert capsys.readouterr().err == (
        f'timm-sesk: error: {folder} takes float batches of N x 3 x {IMG} x {IMG}, N >= 1 (the channels and size it '
        f'was exported for: transform images with its data_config.json), got 1 x 3 x {2 * IMG} x {2 * IMG} '
        'float32\n')


def test_missing_runtime_names_the_pip_install(exported, tmp_path, monkeypatch, capsys):
    _, folder, _ = exported('sk_resnet18', 'onnx')
    image = _images(tmp_path / 'img', classes=1, per_class=1) / 'class0' / '0.png'
    for module in ('openvino', 'onnxruntime'):
        monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed: its import fails
    assert main(['export', 'se_resnet18', str(tmp_path / 'out'), '--format', 'openvino', '--no-pretrained']) == 1
    assert main(['predict', '-m', str(folder), '--runtime', 'onnxruntime', str(image)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f'timm-sesk: error: {purpose} needs {module}, which is not installed: pip install ".[{extra}]" in your '
        f'timm_sesk checkout, or pip install {module}'
        for purpose, module, extra in (('--format openvino', 'openvino', 'openvino'),
                                       ('--runtime onnxruntime', 'onnxruntime', 'onnx'))]
    assert not (tmp_path / 'out').exists()  # refused before any work

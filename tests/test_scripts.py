"""timm's scripts with our models: the ``timm_sesk.run`` runner, torchrun, and a fine-tune made of the timm library
calls that train.py makes (pretrained weights from the loopback Hub, layer decay, grad checkpointing, checkpoints).
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sources import publish_source
from timm.data import create_dataset, create_loader, resolve_data_config
from timm.models import resume_checkpoint
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import CheckpointSaver

from timm_sesk.weights import weights_for

# Asserts what a timm script relies on: our names resolve through timm's registry, and the runner hands over a
# normal __main__ with the script's own argv and file.
STAND_IN_SCRIPT = textwrap.dedent('''
    import os, sys, timm
    assert __name__ == '__main__', __name__
    assert os.path.abspath(__file__) == os.path.abspath(sys.argv[0])
    assert sys.path[0] == os.path.dirname(os.path.abspath(__file__))
    assert 'sk_resnet50' in timm.list_models('sk_*') and timm.is_model('se_resnet50')
    model = timm.create_model(sys.argv[sys.argv.index('--model') + 1], num_classes=3)
    rank = os.environ.get('RANK', '-')
    print(f'ok rank={rank} model={type(model).__name__} argv={sys.argv[1:]}')
''')

DISTRIBUTED_SCRIPT = textwrap.dedent('''
    import torch, torch.distributed as dist, timm
    dist.init_process_group('gloo')
    model = timm.create_model('se_resnet18', num_classes=2)
    total = torch.tensor([float(sum(p.numel() for p in model.parameters()))])
    dist.all_reduce(total)
    print(f'rank {dist.get_rank()} of {dist.get_world_size()}: {int(total.item())}')
    dist.destroy_process_group()
''')


def _run(*args, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([*args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def test_runner_runs_a_script_as_main_with_the_models_registered(tmp_path):
    script = tmp_path / 'stand_in.py'
    script.write_text(STAND_IN_SCRIPT)
    result = _run(sys.executable, '-m', 'timm_sesk.run', str(script), '--model', 'sk_resnet18', '--flag')
    assert result.returncode == 0, result.stderr
    assert "ok rank=- model=SeskResNet argv=['--model', 'sk_resnet18', '--flag']" in result.stdout


def test_without_the_runner_the_script_cannot_see_the_models(tmp_path):
    # The control for the test above: the stand-in script fails when run plainly, so the runner is what fixes it.
    script = tmp_path / 'stand_in.py'
    script.write_text(STAND_IN_SCRIPT)
    result = _run(sys.executable, str(script), '--model', 'sk_resnet18')
    assert result.returncode != 0 and 'AssertionError' in result.stderr


def test_runner_exit_status_and_errors_pass_through(tmp_path):
    script = tmp_path / 'fails.py'
    script.write_text('import sys\nopen("/nonexistent/file")\n')
    failed = _run(sys.executable, '-m', 'timm_sesk.run', str(script))
    assert failed.returncode == 1 and 'FileNotFoundError' in failed.stderr and '/nonexistent/file' in failed.stderr
    script.write_text('import sys\nsys.exit(3)\n')
    assert _run(sys.executable, '-m', 'timm_sesk.run', str(script)).returncode == 3


def test_runner_explains_a_missing_script_and_usage(tmp_path):
    missing = _run(sys.executable, '-m', 'timm_sesk.run', str(tmp_path / 'validate.py'), '--model', 'x')
    assert missing.returncode == 2
    assert 'no such script' in missing.stderr and f'v{timm.__version__}' in missing.stderr
    usage = _run(sys.executable, '-m', 'timm_sesk.run')
    assert usage.returncode == 2 and 'usage: python -m timm_sesk.run SCRIPT.py' in usage.stderr


def test_runner_under_torchrun(tmp_path):
    script = tmp_path / 'ddp.py'
    script.write_text(DISTRIBUTED_SCRIPT)
    result = _run(sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', '2',
                  '-m', 'timm_sesk.run', str(script))
    assert result.returncode == 0, result.stderr[-3000:]
    params = sum(p.numel() for p in timm.create_model('se_resnet18', num_classes=2).parameters())
    for rank in (0, 1):
        assert f'rank {rank} of 2: {2 * params}' in result.stdout


def _write_image_folder(root, classes=3, per_class=8, size=40):
    """A tiny ImageFolder whose classes differ by colour, so that a few steps can learn them."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f'class_{c}'
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 96, size=(size, size, 3))
            pixels[..., c] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f'{i}.png')


def _epoch(model, loader, optimizer, scheduler, epoch, loss_fn):
    model.train()
    losses = []
    for step, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step_update(num_updates=epoch * len(loader) + step + 1)
        losses.append(loss.item())
    scheduler.step(epoch + 1)
    return sum(losses) / len(losses)


def test_fine_tune_with_timm_library_calls(hub, tmp_path):
    spec = weights_for('sk_resnet18')[0]
    publish_source(hub, spec)
    _write_image_folder(tmp_path / 'train')
    torch.manual_seed(0)

    # As train.py does it: --pretrained --num-classes 3 --img-size 64 --grad-checkpointing --opt adamw
    # --layer-decay 0.7 --sched cosine --warmup-epochs 0
    model = timm.create_model('sk_resnet18', pretrained=True, num_classes=3)
    assert model.pretrained_cfg['hf_hub_id'] == spec.hf_hub_id
    model.set_grad_checkpointing(True)
    data_config = resolve_data_config({'img_size': 64}, model=model, verbose=False)
    assert data_config['input_size'] == (3, 64, 64) and data_config['mean'] == model.pretrained_cfg['mean']
    dataset = create_dataset('', root=str(tmp_path / 'train'), is_training=True)
    loader = create_loader(
        dataset, input_size=data_config['input_size'], batch_size=6, is_training=True, use_prefetcher=False,
        interpolation=data_config['interpolation'], mean=data_config['mean'], std=data_config['std'],
        num_workers=0, scale=(0.6, 1.0), hflip=0.5)
    optimizer = create_optimizer_v2(model, opt='adamw', lr=2e-3, weight_decay=0.05, layer_decay=0.7)
    lr_scales = sorted({group['lr_scale'] for group in optimizer.param_groups})
    assert len(lr_scales) >= 5 and lr_scales[-1] == 1.0  # layer decay found the layers through group_matcher
    num_epochs = 4
    scheduler, num_epochs = create_scheduler_v2(optimizer, sched='cosine', num_epochs=num_epochs, warmup_epochs=0)
    saver = CheckpointSaver(model, optimizer, checkpoint_dir=str(tmp_path), recovery_dir=str(tmp_path),
                            decreasing=True, max_history=1)
    loss_fn = torch.nn.CrossEntropyLoss()

    losses = []
    for epoch in range(num_epochs):
        losses.append(_epoch(model, loader, optimizer, scheduler, epoch, loss_fn))
        best_loss, best_epoch = saver.save_checkpoint(epoch, metric=losses[-1])
    assert losses[-1] < 0.7 * losses[0], losses
    assert best_epoch == int(np.argmin(losses)) and best_loss == min(losses)

    # The best checkpoint reloads the way validate.py (--checkpoint) and train.py (--resume) read it.
    best_path = tmp_path / f'checkpoint-{best_epoch}.pth.tar'
    last_path = tmp_path / 'last.pth.tar'
    reloaded = timm.create_model('sk_resnet18', num_classes=3, checkpoint_path=str(last_path)).eval()
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x))
    resumed = timm.create_model('sk_resnet18', num_classes=3)
    resumed_optimizer = create_optimizer_v2(resumed, opt='adamw', lr=2e-3, weight_decay=0.05, layer_decay=0.7)
    assert resume_checkpoint(resumed, str(best_path), optimizer=resumed_optimizer, log_info=False) == best_epoch + 1
    assert resumed_optimizer.state_dict()['state'], 'optimizer state was not restored'


@pytest.mark.parametrize('name', ['se_resnet18', 'sk_resnet26'])
def test_grad_checkpointing_gradients_match_in_float64(name):
    # timm's grad checkpointing wraps our SK units' own recomputation; the gradients must not change. (BN running
    # statistics are updated again by timm's recomputation, as in timm's own ResNets, so they are not compared.)
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=4).double().train()
    reference = timm.create_model(name, num_classes=4).double().train()
    reference.load_state_dict(model.state_dict())
    model.set_grad_checkpointing(True)
    x = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    model(x).square().sum().backward()
    reference(x).square().sum().backward()
    for (n, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=n)

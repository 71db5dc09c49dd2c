"""Distributed training: DistributedDataParallel over two CPU processes (gloo) trains our SE and SK models as one
process would, and SyncBatchNorm conversion (timm's ``train.py --sync-bn``) keeps the units working."""
import copy
import os
import socket

import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from helpers import randomize_bn
from timm.layers import freeze_batch_norm_2d
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import timm_sesk  # noqa: F401 - registers the models (the spawned processes import this module)

ARCHS = ('sk_resnet18', 'se_resnet18')
WORLD = 2
STEPS = 3
PER_RANK = 2


def _model(arch: str, frozen_norms: bool) -> nn.Module:
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model(arch, num_classes=5, layers=(1, 1, 1, 1))).double().train()
    return freeze_batch_norm_2d(model) if frozen_norms else model


def _batch(step: int):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(WORLD * PER_RANK, 3, 32, 32, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 5, (WORLD * PER_RANK,), generator=g)


def _train(model: nn.Module, forward_loss) -> nn.Module:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(STEPS):
        optimizer.zero_grad()
        forward_loss(*_batch(step)).backward()
        optimizer.step()
    return model


def _rank_slice(rank: int) -> slice:
    return slice(rank * PER_RANK, (rank + 1) * PER_RANK)


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=WORLD)
    try:
        for arch in ARCHS:
            for frozen in (False, True):
                ddp = DistributedDataParallel(_model(arch, frozen))
                _train(ddp, lambda x, y, m=ddp: F.cross_entropy(m(x[_rank_slice(rank)]), y[_rank_slice(rank)]))
                torch.save(ddp.module.state_dict(), os.path.join(out_dir, f'{arch}-{frozen}-{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _assert_params_close(actual: dict, expected: dict, names) -> None:
    # Parameters only: each rank's BatchNorm statistics follow its own batch (DDP broadcasts rank 0's at the next
    # forward; timm's train.py averages them with distribute_bn).
    for key in names:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-9, atol=1e-10, msg=key)


def test_ddp_over_two_processes_trains_as_one_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for arch in ARCHS:
        for frozen in (False, True):
            ranks = [torch.load(tmp_path / f'{arch}-{frozen}-{r}.pt', weights_only=True) for r in range(WORLD)]
            single = _model(arch, frozen)
            names = [k for k, _ in single.named_parameters()]
            _assert_params_close(ranks[1], ranks[0], names)  # every rank holds the same model
            if frozen:
                # Norms with running statistics make each sample independent of the others: one process on the
                # concatenated batch is exactly what DDP computes.
                _train(single, lambda x, y, m=single: F.cross_entropy(m(x), y))
            else:
                # Training-mode BatchNorm normalises over each process's own batch, as DDP does without SyncBatchNorm:
                # the same model on each rank's slice, with the gradients averaged as DDP's all-reduce averages them.
                _train(single, lambda x, y, m=single: sum(
                    F.cross_entropy(m(x[_rank_slice(r)]), y[_rank_slice(r)]) for r in range(WORLD)) / WORLD)
            _assert_params_close(ranks[0], single.state_dict(), names)
            assert not torch.equal(ranks[0]['fc.weight'], _model(arch, frozen).fc.weight)  # it did train


def test_sync_batchnorm_conversion_keeps_the_units_working():
    # Without an initialised process group SyncBatchNorm computes BatchNorm; in a group it needs a GPU (PyTorch's own
    # limitation), so this checks the conversion itself: every norm, SK attention's included, becomes a
    # SyncBatchNorm that the units call, with the same outputs in training and eval.
    for arch in ARCHS:
        model = _model(arch, frozen_norms=False)
        synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
        assert not any(type(m) is nn.BatchNorm2d for m in synced.modules())
        called = []
        for m in synced.modules():
            if isinstance(m, nn.SyncBatchNorm):
                m.register_forward_hook(lambda *_, calls=called: calls.append(1))
        x = _batch(0)[0]
        for train in (True, False):
            model.train(train)
            synced.train(train)
            torch.testing.assert_close(synced(x), model(x))
        assert len(called) == 2 * sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())

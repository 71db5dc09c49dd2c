"""Helpers shared by the test modules."""
import argparse
import itertools
import re
import struct
import zlib
from pathlib import Path
from typing import Dict, Iterable, Optional

import timm
import torch
from PIL import Image
from torch import nn

# Inputs are small to keep the suite fast on two cores; every network here accepts 64 px.
IMG = 64

_BN = nn.modules.batchnorm._BatchNorm
_RESIDUAL_BLOCK = re.compile(r'(^|\.)layer\d+\.\d+$')  # the blocks of a ResNet-style stage, at any nesting


def randomize_params(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter N(0, 0.5) and every BatchNorm's running statistics random, for checking a layer against its
    equations with nothing sitting at an identity or a zero."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.data.normal_(0, 0.5, generator=g)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    return module


def randomize_bn(model: nn.Module, seed: int = 0, calib_batch: int = 4) -> nn.Module:
    """Give every BatchNorm random, non-identity parameters and running statistics, like a trained network's.

    Statistics are first calibrated on a random batch (so activations stay in range through 150 layers), then
    perturbed: means shift by up to a fraction of a std, variances scale by 0.5-2x, scales and shifts are random.
    As in trained ResNets, the last norm of each residual branch gets a small scale; otherwise deep random networks
    amplify fp32 rounding chaotically and no two implementations of the same function agree to 1e-5.
    """
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, _BN)]
    for bn in norms:
        bn.weight.data.uniform_(0.5, 1.5, generator=g)
        bn.bias.data.normal_(0.0, 0.2, generator=g)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: the calibration batch's exact statistics
    blocks = [m for n, m in model.named_modules() if _RESIDUAL_BLOCK.search(n)]
    for block in blocks:
        branch_norms = [m for n, m in block.named_modules() if isinstance(m, _BN) and not n.startswith('downsample')]
        branch_norms[-1].weight.data.uniform_(0.1, 0.3, generator=g)
    was_training = model.training
    model.train()
    with torch.no_grad():
        model(torch.randn(calib_batch, getattr(model, 'in_chans', 3), IMG, IMG, generator=g))
    for bn in norms:
        bn.momentum = 0.1
        std = bn.running_var.sqrt()
        bn.running_mean.add_(torch.randn(bn.running_mean.shape, generator=g) * 0.2 * std)
        bn.running_var.mul_(torch.empty(bn.running_var.shape).uniform_(0.5, 2.0, generator=g))
    model.train(was_training)
    return model


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Max absolute difference relative to the largest expected magnitude."""
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def write_png(path: Path, width: int, height: int, bit_depth: int, color_type: int, rows: Iterable[bytes]) -> Path:
    """A PNG written chunk by chunk from its packed scanlines: for what PIL cannot write (48-bit RGB) or would first
    have to hold in memory (a huge image). ``color_type`` is PNG's: 0 grey, 2 RGB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    stream = zlib.compressobj()
    data = b''.join(stream.compress(b'\0' + row) for row in rows) + stream.flush()  # filter 0 on every row
    header = struct.pack('>IIBBBBB', width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', data) + chunk(b'IEND', b''))
    return path


def hostile_images(folder: Path) -> Dict[str, Path]:
    """Tiny files that would take gigabytes: ``wide``, a 40000 x 1 PNG of about 100 bytes, which timm's eval resize
    turns into 40000 times a square image (7.9 GB at 224 px); ``bomb``, a 14000 x 14000 PNG of about 24 KB, above
    PIL's decompression-bomb limit."""
    folder.mkdir(parents=True, exist_ok=True)
    wide = folder / 'wide.png'
    Image.new('L', (40000, 1)).save(wide)
    bomb = write_png(folder / 'bomb.png', 14000, 14000, 1, 0, itertools.repeat(bytes(14000 // 8), 14000))
    return dict(wide=wide, bomb=bomb)


def train_checkpoint(path: Path, arch: str, num_classes: int, answer: Optional[int] = None,
                     ema_answer: Optional[int] = None, img_size: Optional[int] = None) -> Path:
    """A checkpoint as timm's train.py saves it (arch, args, state_dict, optionally state_dict_ema); with ``answer``
    its classifier always answers that class."""
    def weights(rigged: Optional[int]) -> Dict[str, torch.Tensor]:
        state_dict = randomize_bn(timm.create_model(arch, num_classes=num_classes)).state_dict()
        if rigged is not None:
            state_dict['fc.weight'].zero_()
            state_dict['fc.bias'] = -1e-3 * torch.arange(num_classes, dtype=torch.float32)
            state_dict['fc.bias'][rigged] = 10.0
        return state_dict

    args = argparse.Namespace(model=arch, num_classes=num_classes, img_size=img_size, input_size=None,
                              crop_pct=None, mean=None, std=None, interpolation='', model_kwargs={})
    checkpoint = {'epoch': 2, 'arch': arch, 'state_dict': weights(answer), 'optimizer': {}, 'version': 2,
                  'args': args, 'metric': 50.0}
    if ema_answer is not None:
        checkpoint['state_dict_ema'] = weights(ema_answer)
    torch.save(checkpoint, path)
    return path

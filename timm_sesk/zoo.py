"""Facts about each model in the zoo: size, compute, references and pretrained weights; and the zoo names meant by a
name that is not one (timm's names for our networks, tags of other architectures, misspellings).

Counting parameters and MACs builds each model on the meta device and traces one forward pass, about 0.2 s a model.
``model_facts`` does that once per process and keeps the counts in a cache file (``$XDG_CACHE_HOME/timm_sesk``, else
``~/.cache/timm_sesk``) keyed by the versions of torch, timm and timm_sesk and a hash of timm_sesk's source files, so
any change to the code that builds or counts a model counts afresh.
"""
import difflib
import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import timm_sesk
from timm_sesk.layers import SelectiveKernel, SqueezeExcite
from timm_sesk.weights import REFERENCES, WeightSpec, weights_for

__all__ = [
    'ModelFacts',
    'architecture_summary',
    'count_gmacs',
    'did_you_mean',
    'facts_cache_file',
    'min_input_size',
    'model_facts',
    'suggest',
    'window',
]


@dataclass(frozen=True)
class ModelFacts:
    """What the zoo knows about one architecture.

    Attributes:
        name: Registered model name.
        params_m: Parameters, millions (1000-class head).
        gmacs: Multiply-accumulates of convolutions and linear layers at ``input_size``, billions.
        input_size: Default input size (C, H, W).
        reference: The published network it reproduces.
        weights: Its pretrained tags, default first.
    """

    name: str
    params_m: float
    gmacs: float
    input_size: Tuple[int, int, int]
    reference: str
    weights: List[WeightSpec]

    @property
    def default_weights(self) -> Optional[WeightSpec]:
        return self.weights[0] if self.weights else None


def count_gmacs(model: torch.nn.Module, input_size: Tuple[int, int, int]) -> float:
    """MACs of one forward pass in GMACs, counted on the meta device (no memory, no compute).

    Args:
        model: Model on the meta device; counted in eval mode.
        input_size: (C, H, W) of one image.
    """
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, *input_size, device='meta'))
    model.train(was_training)
    return counter.get_total_flops() / 2e9


def model_facts(name: str) -> ModelFacts:
    """Gather the facts of a registered timm_sesk model without allocating its weights (counted once, then cached:
    see the module's docstring)."""
    params_m, gmacs, input_size = _counts(name)
    return ModelFacts(
        name=name,
        params_m=params_m,
        gmacs=gmacs,
        input_size=input_size,
        reference=REFERENCES[name].description,
        weights=weights_for(name),
    )


def min_input_size(model: nn.Module) -> int:
    """The smallest height and width the model accepts (its stem's input check; 1 where it has none)."""
    return max((getattr(m, 'min_input_size', 1) for m in model.modules()), default=1)


# --- the counts and their cache -----------------------------------------------------------------------------------

def _count(name: str) -> Tuple[float, float, Tuple[int, int, int]]:
    with torch.device('meta'):  # the structure only: no memory for weights
        model = timm.create_model(name)
    input_size = tuple(model.pretrained_cfg['input_size'])
    return sum(p.numel() for p in model.parameters()) / 1e6, count_gmacs(model, input_size), input_size


@functools.cache
def _cache_key() -> str:
    """Versions of torch, timm and timm_sesk, and the contents of every source file of timm_sesk."""
    digest = hashlib.sha256(f'{torch.__version__} {timm.__version__} {timm_sesk.__version__}'.encode())
    root = Path(timm_sesk.__file__).parent
    # weights/ and benchmarks/ are links in a source checkout: follow them as a wheel's copies would be read.
    files = sorted(Path(d, f) for d, _, names in os.walk(root, followlinks=True) for f in names if f.endswith('.py'))
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b'\0' + path.read_bytes())
    return digest.hexdigest()[:16]


def facts_cache_file() -> Path:
    """The file ``model_facts`` keeps its counts in, for this torch, timm and timm_sesk."""
    cache = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'timm_sesk'
    return cache / f'model_facts-{_cache_key()}.json'


def _read_cache(path: Path) -> Dict[str, list]:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, unreadable or damaged: count again
        return {}
    return cached if isinstance(cached, dict) else {}


def _write_cache(path: Path, counts: Dict[str, list]) -> None:
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Whole files only, even with several processes writing: write aside, then rename over.
        with tempfile.NamedTemporaryFile('w', dir=path.parent, suffix='.tmp', delete=False) as f:
            temporary = Path(f.name)
            json.dump(counts, f)
        os.replace(temporary, path)
        for old in path.parent.glob('model_facts-*.json'):  # other versions' counts
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:  # a read-only or full disk: the counts stay in this process
        if temporary is not None:
            temporary.unlink(missing_ok=True)


@functools.cache
def _counts(name: str) -> Tuple[float, float, Tuple[int, int, int]]:
    path = facts_cache_file()
    cached = _read_cache(path)
    try:
        params_m, gmacs, input_size = cached[name]
        return float(params_m), float(gmacs), tuple(int(s) for s in input_size)
    except (KeyError, TypeError, ValueError):  # not counted yet, or a damaged entry
        counts = _count(name)
    cached[name] = list(counts)
    _write_cache(path, cached)
    return counts


# --- names the user may have meant ----------------------------------------------------------------------------------

def _tags(arch: str) -> List[str]:
    return [w.tag for w in weights_for(arch)]


def _closest(word: str, candidates: Sequence[str], n: int) -> List[str]:
    return sorted(candidates, key=lambda c: -difflib.SequenceMatcher(None, word, c).ratio())[:n]


def _timm_equivalents(arch: str) -> List[str]:
    """Our architectures whose reference network is timm's model ``arch``."""
    return [ours for ours, ref in REFERENCES.items() if ref.registered and ref.name == arch]


def suggest(name: str, n: int = 3) -> List[str]:
    """Zoo names the user may have meant by ``name`` (``arch`` or ``arch.tag``), best first; empty if it is one.

    For timm's name of one of our networks (``skresnext50_32x4d``, ``legacy_seresnet18.in1k``), ours (with the tag
    where ours has it); for a tag the architecture lacks, the architectures that have it, closest name first, or
    its own tags that are spelled alike; otherwise zoo names spelled alike, ours or timm's for ours.
    """
    arch, _, tag = name.partition('.')
    ours = timm_sesk.list_models()
    if arch in ours:
        if not tag or tag in _tags(arch):
            return []
        having = [a for a in ours if tag in _tags(a)]
        if having:
            return [f'{a}.{tag}' for a in _closest(arch, having, n)]
        return [f'{arch}.{t}' for t in difflib.get_close_matches(tag, _tags(arch), n=n, cutoff=0.6)]
    equivalents = _timm_equivalents(arch)
    if not equivalents:
        timm_names = [ref.name for ref in REFERENCES.values() if ref.registered]
        spelled = difflib.get_close_matches(arch, ours + timm_names, n=n, cutoff=0.6)
        equivalents = list(dict.fromkeys(a for s in spelled for a in ([s] if s in ours else _timm_equivalents(s))))
    return [f'{a}.{tag}' if tag in _tags(a) else a for a in equivalents[:n]]


def did_you_mean(name: str) -> str:
    """``'did you mean X, Y or Z? '`` for ``suggest(name)``, naming timm's equivalent; ``''`` without suggestions."""
    names = suggest(name)
    if not names:
        return ''
    arch = name.partition('.')[0]
    same = f" (our name for timm's {arch})" if _timm_equivalents(arch) else ''
    listed = names[0] if len(names) == 1 else f'{", ".join(names[:-1])} or {names[-1]}'
    return f'did you mean {listed}{same}? '


def window(kernel: int, dilation: int) -> str:
    """The window a ``kernel`` x ``kernel`` convolution with ``dilation`` covers, as ``'5x5'``."""
    size = dilation * (kernel - 1) + 1
    return f'{size}x{size}'


def _widths(pairs: Sequence[Tuple[int, int]]) -> str:
    """Distinct ``in→out`` widths, in depth order."""
    return ', '.join(f'{a}→{b}' for a, b in dict.fromkeys(pairs))


def architecture_summary(model: nn.Module) -> List[Tuple[str, str]]:
    """What a built zoo model (on any device, ``meta`` included) shows of its architecture, as (field, value)
    rows: its block layout, stem and SE / SK units."""
    stages = [getattr(model, f'layer{i}') for i in range(1, 5)]
    block = stages[0][0]
    spatial = block.conv2 if hasattr(block, 'conv3') else block.conv1  # the bottleneck's 3x3, the basic block's first
    groups = spatial.paths[0].conv.groups if isinstance(spatial, SelectiveKernel) else spatial.conv.groups
    rows = [('block', f'{type(block).__name__}, blocks per stage {tuple(len(s) for s in stages)}, 3x3 conv groups '
                      f'{groups}')]
    stem = 'deep 3x3 stem' if isinstance(model.conv1, nn.Sequential) else f'{model.conv1.kernel_size[0]}x' \
        f'{model.conv1.kernel_size[1]} stem conv'
    pool = ', Caffe max-pool (ceil mode, no padding)' if getattr(model.maxpool, 'ceil_mode', False) else ''
    rows.append(('stem', stem + pool))
    se = [(n, m) for n, m in model.named_modules() if isinstance(m, SqueezeExcite)]
    sk = [(n, m) for n, m in model.named_modules() if isinstance(m, SelectiveKernel)]
    if se:
        unit = se[0][1]
        positions = sorted({model.get_submodule(n.rpartition('.')[0]).attn_position for n, _ in se})
        rows.append(('SE units', (
            f'{len(se)}, position {"/".join(positions)}, squeeze {unit.squeeze_type}, gate '
            f'{type(unit.gate).__name__}, FC biases {"yes" if unit.fc1.bias is not None else "no"}; channels → '
            f'bottleneck: {_widths([(m.fc1.in_features, m.fc1.out_features) for _, m in se])}')))
    if sk:
        unit = sk[0][1]
        paths = ', '.join(
            f'{k}x{k} dilation {d} ({window(k, d)} window)'
            for k, d in ((p.conv.kernel_size[0], p.conv.dilation[0]) for p in unit.paths))
        rows.append(('SK units', (
            f'{len(sk)}, M={unit.num_paths} paths: {paths}; groups G={unit.paths[0].conv.groups}, input split '
            f'across paths: {"yes" if unit.split_input else "no"}; channels → fuse width d: '
            f'{_widths([(m.attn.fc_reduce.in_features, m.attn.fc_reduce.out_features) for _, m in sk])}')))
    if not se and not sk:
        rows.append(('attention', 'none (SE and SK switched off)'))
    return rows

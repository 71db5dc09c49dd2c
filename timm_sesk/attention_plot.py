"""Plots of the SE / SK attention a model applies to images (``timm-sesk attention``), from ``record``.

``attention_data`` runs images through a model at one or more input sizes and gathers what
``timm_sesk.attention.record`` sees, as JSON-ready lists; ``plot_attention`` draws it with matplotlib (the ``plot``
extra).
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from timm_sesk.attention import AttentionUnit, find_units, record
from timm_sesk.data import eval_transform
from timm_sesk.zoo import window

__all__ = ['attention_data', 'plot_attention']


def attention_data(model: nn.Module, images: List[Tuple[str, Any]], scales: List[Optional[int]]) -> Dict[str, Any]:
    """Run every image at every scale through the model and gather its SE/SK weights.

    Args:
        model: Model in eval mode.
        images: ``(name, PIL image)`` pairs.
        scales: Square input sizes; None for the model's default size.

    Returns:
        ``inputs``: one ``{image, input_size}`` per image and scale, image-major; ``units``: the units, in depth
        order; ``attention``: per unit key, one weight list per input (``C`` for SE, ``M x C`` for SK);
        ``mean``: per unit key, per input, the mean over channels (SK: one value per path).
    """
    units = [u for u, _ in find_units(model)]
    per_scale = {}
    for scale in dict.fromkeys(scales):
        transform, config = eval_transform(model, scale)
        batch = torch.stack([transform(image) for _, image in images])
        device = next(model.parameters()).device
        with torch.inference_mode(), record(model) as rec:
            model(batch.to(device))
        per_scale[scale] = ({k: v.cpu() for k, v in rec.items()}, list(config['input_size']))
    inputs, attention, mean = [], {u.key: [] for u in units}, {u.key: [] for u in units}
    for i, (name, _) in enumerate(images):
        for scale in scales:
            weights, input_size = per_scale[scale]
            inputs.append({'image': name, 'input_size': input_size})
            for unit in units:
                w = weights[unit.key][i]
                attention[unit.key].append(w.tolist())
                mean[unit.key].append(w.mean(dim=-1).tolist())
    return {
        'inputs': inputs,
        'units': [{'key': u.key, 'kind': u.kind, 'module': u.module, 'block': u.block,
                   'paths': [list(p) for p in u.paths]} for u in units],
        'attention': attention,
        'mean': mean,
    }


def plot_attention(data: Dict[str, Any], title: str, out: Path, figsize: Tuple[float, float] = (10.0, 6.0),
                   dpi: int = 100) -> None:
    """Plot ``attention_data``'s result into the PNG ``out``, exactly ``figsize * dpi`` pixels (needs matplotlib).

    SK units: one panel per path, the mean selection weight of that path in every unit, one line per input.
    SE units: the excitation of every block (mean and 10-90th percentile over channels), and of each channel of the
    last block.
    """
    from matplotlib.figure import Figure

    units = [AttentionUnit(u['key'], u['kind'], u['module'], u['block'], tuple(tuple(p) for p in u['paths']))
             for u in data['units']]
    sk = [u for u in units if u.kind == 'sk']
    se = [u for u in units if u.kind == 'se']
    labels = [f"{Path(i['image']).name} @ {i['input_size'][-1]}px" for i in data['inputs']]
    num_paths = sk[0].num_paths if sk else 0
    panels = num_paths + (2 if se else 0)
    # An explicit figure size and dpi, and no tight bounding box: the PNG is exactly figsize * dpi pixels.
    fig = Figure(figsize=figsize, dpi=dpi, layout='constrained')
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    fig.suptitle(title, fontsize=10)
    small = dict(fontsize=7)

    def depth_axis(ax, keys: List[str]) -> None:
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, rotation=45 if len(keys) > 8 else 0, ha='right' if len(keys) > 8 else 'center',
                           **small)
        ax.tick_params(axis='y', labelsize=7)
        ax.grid(alpha=0.3)

    keys = [u.key for u in sk]
    for m in range(num_paths):
        ax = axes[m]
        for i, label in enumerate(labels):
            ax.plot(range(len(keys)), [data['mean'][k][i][m] for k in keys], marker='o', markersize=3, label=label)
        ax.axhline(1 / num_paths, color='grey', linestyle=':', linewidth=1)
        kernel, dilation = sk[0].paths[m]
        ax.set_ylabel(f'path {m}: {kernel}x{kernel} d{dilation}\n({window(kernel, dilation)} window)', **small)
        depth_axis(ax, keys)
    if sk:
        axes[0].set_title('SK: mean selection weight of each path per unit (over channels), input to output',
                          **small)
    if se:
        keys = [u.key for u in se]
        ax = axes[num_paths]
        for i, label in enumerate(labels):
            per_block = [torch.tensor(data['attention'][k][i]) for k in keys]
            low = [w.quantile(0.1).item() for w in per_block]
            high = [w.quantile(0.9).item() for w in per_block]
            line, = ax.plot(range(len(keys)), [data['mean'][k][i] for k in keys], marker='o', markersize=3,
                            label=label)
            ax.fill_between(range(len(keys)), low, high, color=line.get_color(), alpha=0.15)
        ax.set_title('SE: excitation per block, mean and 10-90th percentile over channels', **small)
        ax.set_ylabel('excitation', **small)
        depth_axis(ax, keys)
        ax = axes[num_paths + 1]
        for i, label in enumerate(labels):
            ax.plot(data['attention'][keys[-1]][i], linewidth=0.8, label=label)
        ax.set_title(f'SE: excitation of each channel in the last block, {keys[-1]} (cf. SENet Fig. 6)', **small)
        ax.set_xlabel('channel', **small)
        ax.set_ylabel('excitation', **small)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc='best')
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)

"""Plots of the SE / SK attention a model applies to images (``timm-sesk attention``), from ``record``.

``attention_data`` runs images through a model at one or more input sizes and gathers what
``timm_sesk.attention.record`` sees, as JSON-ready lists; ``plot_attention`` draws it with matplotlib (the ``plot``
extra).
"""
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from timm_sesk.attention import AttentionUnit, find_units, record
from timm_sesk.data import eval_transform
from timm_sesk.zoo import window

if TYPE_CHECKING:  # matplotlib is an optional dependency (the plot extra), imported when plotting
    from matplotlib.figure import Figure

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


# Line styles and markers, one per input size: a colour tells the image, a style its size.
_DASHES = ('-', '--', ':', '-.', (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 3)), (0, (3, 1, 3, 3)))
_MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*')


def _colours(n: int) -> List[Any]:
    """``n`` distinct colours: tab10 up to 10, tab20 up to 20, then evenly spread over a perceptual colormap."""
    from matplotlib import colormaps

    if n <= 20:
        cmap = colormaps['tab10' if n <= 10 else 'tab20']
        return [cmap(i) for i in range(n)]
    return [colormaps['turbo'](i / (n - 1)) for i in range(n)]


def _style(i: int) -> Dict[str, Any]:
    """Line style and marker of the ``i``-th input size; beyond the named ones, ever longer dashes."""
    dash = _DASHES[i] if i < len(_DASHES) else (0, (2 + i, 2))
    return dict(linestyle=dash, marker=_MARKERS[i % len(_MARKERS)])


def _path_name(path: Tuple[int, int], line: str = ' ') -> str:
    """An SK path by the window it sees, and how for a dilated kernel: ``5x5 path (3x3 dilated by 2)``."""
    kernel, dilation = path
    how = f'{line}({kernel}x{kernel} dilated by {dilation})' if dilation > 1 else ''
    return f'{window(kernel, dilation)} path{how}'


def _channel_panel(fig: 'Figure', ax: Any, data: Dict[str, Any], key: str, line_styles: List[Dict[str, Any]],
                   sizes: bool) -> None:
    """The excitation of each channel of the last SE block: a line for one input; for several, one row per input
    of a colour map, since a thousand or more channels drawn as overlapping lines cannot be told apart."""
    small = dict(fontsize=7)
    weights = data['attention'][key]
    ax.set_title(f'SE: excitation of each channel in the last block, {key} (cf. SENet Fig. 6)', **small)
    if len(weights) == 1:
        ax.plot(weights[0], linewidth=0.8, color=line_styles[0]['color'])
        ax.set_ylabel('excitation', **small)
        ax.grid(alpha=0.3)
    else:
        image = ax.imshow(weights, aspect='auto', interpolation='antialiased', cmap='viridis')
        names = [Path(i['image']).name + (f", {i['input_size'][-1]} px" if sizes else '') for i in data['inputs']]
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, **small)
        for label, style in zip(ax.get_yticklabels(), line_styles):
            label.set_color(style['color'])  # the image's colour in the panels above
        bar = fig.colorbar(image, ax=ax, pad=0.01, aspect=10)
        bar.set_label('excitation', **small)
        bar.ax.tick_params(labelsize=7)
    ax.set_xlabel('channel', **small)
    ax.tick_params(labelsize=7)


def plot_attention(data: Dict[str, Any], title: str, out: Path, figsize: Tuple[float, float] = (10.0, 6.0),
                   dpi: int = 100) -> 'Figure':
    """Plot ``attention_data``'s result into the PNG ``out``, exactly ``figsize * dpi`` pixels (needs matplotlib);
    returns the figure.

    SK units: the mean selection weight of each path in every unit, one line per input; with two paths, whose
    weights sum to 1, only the second (larger) path's. SE units: the excitation of every block (mean and 10-90th
    percentile over channels), and of each channel of the last block (a line for one input, a row of a colour map
    per input for several). Each image has its colour and each input size its line style; the legend sits below the
    panels.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    units = [AttentionUnit(u['key'], u['kind'], u['module'], u['block'], tuple(tuple(p) for p in u['paths']))
             for u in data['units']]
    sk = [u for u in units if u.kind == 'sk']
    se = [u for u in units if u.kind == 'se']
    num_paths = sk[0].num_paths if sk else 0
    shown_paths = [num_paths - 1] if num_paths == 2 else list(range(num_paths))  # path 0 of two is 1 - path 1
    images = list(dict.fromkeys(i['image'] for i in data['inputs']))
    sizes = list(dict.fromkeys(i['input_size'][-1] for i in data['inputs']))
    colours = _colours(len(images))
    line_styles = [dict(color=colours[images.index(i['image'])], **_style(sizes.index(i['input_size'][-1])))
                   for i in data['inputs']]
    legend = [Line2D([], [], color=c, label=Path(image).name) for image, c in zip(images, colours)]
    if len(sizes) > 1:
        legend += [Line2D([], [], color='black', label=f'{size} px', **_style(k)) for k, size in enumerate(sizes)]
    columns = min(len(legend), 5)
    legend_height = 0.3 + 0.2 * -(-len(legend) // columns)  # inches: its rows of entries and a margin
    panels = len(shown_paths) + (2 if se else 0)
    panel_height = max(figsize[1] - legend_height, 0.5) / panels
    # An explicit figure size and dpi, and no tight bounding box: the PNG is exactly figsize * dpi pixels.
    fig = Figure(figsize=figsize, dpi=dpi, layout='constrained')
    ratios = [panel_height] * panels + [legend_height]
    axes = fig.subplots(panels + 1, 1, squeeze=False, gridspec_kw=dict(height_ratios=ratios))[:, 0]
    fig.suptitle(title, fontsize=10)
    small = dict(fontsize=7)
    axes[-1].axis('off')
    axes[-1].legend(handles=legend, loc='center', ncol=columns, frameon=False, **small)

    def depth_axis(ax, keys: List[str]) -> None:
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, rotation=45 if len(keys) > 8 else 0, ha='right' if len(keys) > 8 else 'center',
                           **small)
        ax.tick_params(axis='y', labelsize=7)
        ax.grid(alpha=0.3)

    keys = [u.key for u in sk]
    for ax, m in zip(axes, shown_paths):
        for i, style in enumerate(line_styles):
            ax.plot(range(len(keys)), [data['mean'][k][i][m] for k in keys], markersize=3, linewidth=1, **style)
        ax.axhline(1 / num_paths, color='grey', linestyle=':', linewidth=1)
        ax.set_ylabel(f'weight of the {_path_name(sk[0].paths[m], line=chr(10))}', **small)
        depth_axis(ax, keys)
    if sk:
        if num_paths == 2:
            small_path, large_path = (_path_name(p) for p in sk[0].paths)
            what = f'weight of the {large_path}; the {small_path} takes 1 minus it'
        else:
            what = 'weight of each path'
        axes[0].set_title(f'SK: {what}. Per unit, mean over channels, input to output', **small)
    if se:
        keys = [u.key for u in se]
        ax = axes[len(shown_paths)]
        for i, style in enumerate(line_styles):
            per_block = [torch.tensor(data['attention'][k][i]) for k in keys]
            low = [w.quantile(0.1).item() for w in per_block]
            high = [w.quantile(0.9).item() for w in per_block]
            ax.plot(range(len(keys)), [data['mean'][k][i] for k in keys], markersize=3, linewidth=1, **style)
            ax.fill_between(range(len(keys)), low, high, color=style['color'], alpha=0.1)
        ax.set_title('SE: excitation per block, mean and 10-90th percentile over channels', **small)
        ax.set_ylabel('excitation', **small)
        depth_axis(ax, keys)
        _channel_panel(fig, axes[len(shown_paths) + 1], data, keys[-1], line_styles, len(sizes) > 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return fig

"""timm_sesk.attention_plot.plot_attention on made-up attention data: panels, colours, line styles and the legend."""
from itertools import product

import pytest
import torch
from matplotlib.colors import to_hex
from PIL import Image

from timm_sesk.attention_plot import plot_attention

BLOCKS = ['layer1.0', 'layer2.0', 'layer3.0', 'layer4.0']
PATHS = {2: [[3, 1], [3, 2]], 3: [[3, 1], [3, 2], [3, 3]]}


def made_up(kind: str, images: int, sizes: list, paths: int = 2, channels: int = 16) -> dict:
    """What ``attention_data`` returns, for ``images`` images at each size, with random weights."""
    g = torch.Generator().manual_seed(0)
    inputs = [{'image': f'/photos/img{i}.jpg', 'input_size': [3, s, s]} for i, s in product(range(images), sizes)]
    units = [{'key': k, 'kind': kind, 'module': f'{k}.conv2', 'block': k, 'paths': PATHS[paths] if kind == 'sk' else []}
             for k in BLOCKS]
    attention, mean = {}, {}
    for k in BLOCKS:
        if kind == 'sk':
            w = torch.rand(len(inputs), paths, channels, generator=g).softmax(dim=1)
        else:
            w = torch.rand(len(inputs), channels, generator=g)
        attention[k], mean[k] = w.tolist(), w.mean(dim=-1).tolist()
    return {'inputs': inputs, 'units': units, 'attention': attention, 'mean': mean}


def panels(fig):
    """The data panels: not the legend's axes, nor a colour bar."""
    return [ax for ax in fig.axes if ax.axison and ax.get_label() != '<colorbar>']


def test_two_paths_draw_one_panel_of_the_larger_path(tmp_path):
    data = made_up('sk', images=2, sizes=[224])
    fig = plot_attention(data, 'title', tmp_path / 'sk.png')
    (ax,) = panels(fig)  # not two mirror images: path 0's weight is 1 - path 1's
    assert ax.get_ylabel() == 'weight of the 5x5 path\n(3x3 dilated by 2)'  # was 'path 1: 3x3 d2 ... 1 - this'
    assert ax.get_title().startswith('SK: weight of the 5x5 path (3x3 dilated by 2); the 3x3 path takes 1 minus it')
    for i, line in enumerate(ax.get_lines()[:2]):
        assert list(line.get_ydata()) == [data['mean'][k][i][1] for k in BLOCKS]


def test_more_paths_draw_a_panel_each(tmp_path):
    fig = plot_attention(made_up('sk', images=1, sizes=[224], paths=3), 'title', tmp_path / 'sk3.png')
    assert [ax.get_ylabel() for ax in panels(fig)] == [
        'weight of the 3x3 path', 'weight of the 5x5 path\n(3x3 dilated by 2)',
        'weight of the 7x7 path\n(3x3 dilated by 3)']


def test_se_channels_of_several_inputs_are_a_row_each_not_a_tangle_of_lines(tmp_path):
    """Lines of 2048 channels for several images drawn over each other could not be told apart."""
    data = made_up('se', images=3, sizes=[128, 224], channels=2048)
    fig = plot_attention(data, 'title', tmp_path / 'se.png')
    channels = panels(fig)[1]
    (image,) = channels.get_images()
    assert image.get_array().shape == (6, 2048) and not channels.get_lines()
    assert image.get_array().tolist() == data['attention']['layer4.0']  # a row per input, in input order
    assert [t.get_text() for t in channels.get_yticklabels()] == [
        f'img{i}.jpg, {s} px' for i in range(3) for s in (128, 224)]
    fig = plot_attention(made_up('se', images=1, sizes=[224]), 'title', tmp_path / 'one.png')
    assert len(panels(fig)[1].get_lines()) == 1 and not panels(fig)[1].get_images()  # one input: a line


def test_each_image_a_colour_each_size_a_line_style(tmp_path):
    images, sizes = 12, [96, 160, 224]  # past tab10's ten colours
    fig = plot_attention(made_up('sk', images, sizes), 'title', tmp_path / 'many.png')
    lines = panels(fig)[0].get_lines()[:images * len(sizes)]  # one per input, before the 1/M reference line
    colours = [to_hex(line.get_color()) for line in lines]
    styles = [(line.get_linestyle(), line.get_marker()) for line in lines]
    assert len(set(colours)) == images and len(set(styles)) == len(sizes)
    for i in range(images):  # image-major: one colour per image, its sizes in their styles
        assert len(set(colours[i * len(sizes):(i + 1) * len(sizes)])) == 1
        assert styles[i * len(sizes):(i + 1) * len(sizes)] == styles[:len(sizes)]


@pytest.mark.parametrize('kind', ['sk', 'se'])
def test_legend_sits_below_the_data(kind, tmp_path):
    fig = plot_attention(made_up(kind, images=4, sizes=[128, 224]), 'title', tmp_path / f'{kind}.png')
    fig.canvas.draw()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 1 and not legends[0].axes.axison  # in an axes of its own, no data in it
    texts = [t.get_text() for t in legends[0].get_texts()]
    assert texts == ['img0.jpg', 'img1.jpg', 'img2.jpg', 'img3.jpg', '128 px', '224 px']  # 4 + 2, not 4 x 2
    box = legends[0].get_window_extent()
    for ax in panels(fig):
        assert box.y1 < ax.get_window_extent().y0  # wholly below every panel
    assert len(panels(fig)) == (1 if kind == 'sk' else 2)


def test_png_is_exactly_figsize_times_dpi(tmp_path):
    out = tmp_path / 'deep' / 'se.png'
    plot_attention(made_up('se', images=1, sizes=[224]), 'title', out, figsize=(6.0, 4.0), dpi=50)
    with Image.open(out) as png:
        assert png.size == (300, 200)

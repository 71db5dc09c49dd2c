"""``timm-sesk attention``: plot the SE / SK attention of a model on images (``timm_sesk.attention_plot``)."""
import argparse
import json
from pathlib import Path
from typing import List, Tuple

from timm_sesk.attention import find_units
from timm_sesk.attention_plot import attention_data, plot_attention
from timm_sesk.data import read_image
from timm_sesk.extras import require
from timm_sesk.zoo import min_input_size

from .errors import PROG, CliError
from .options import HelpFormatter, check_at_least, check_model_name, check_output_file, load_model, model_options
from .text import terminal_text

__all__ = ['add_parser', 'run']

_MAX_PIXELS = 65535  # matplotlib's (Agg's) largest image side


def add_parser(commands: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = commands.add_parser(
        name, parents=[model_options()], help=summary, formatter_class=HelpFormatter,
        description='Run images through the model and plot the attention its units apply, from '
                    'timm_sesk.attention.record.\n\nSK models: the mean selection weight of each path (kernel) in '
                    'every SK unit, input to output, one line per image and scale, as in the SKNet paper\'s '
                    'analysis (Fig. 3: larger objects shift weight towards the larger kernels); with two paths, '
                    'whose weights sum to 1, the larger kernel\'s only. SE models: the excitation of every block '
                    '(mean and 10-90th percentile over channels) and of each channel of the last block (cf. SENet '
                    'Fig. 6).\n\nCompare several images, or one image at several input sizes (--scales): each '
                    'size uses the model\'s eval transform with that crop size. Each image has its colour, each '
                    'size its line style and marker; the legend sits below the panels.',
        epilog=f'examples:\n  {PROG} attention -m sk_resnet50 cat.jpg --scales 128,224,320 --out sk50.png\n'
               f'  {PROG} attention -m se_resnet50 cat.jpg dog.jpg --json se50.json')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files')
    p.add_argument('--out', '-o', metavar='FILE.png',
                   help='PNG to write (default: attention_MODEL.png; .png is added to a name without an extension, '
                        'and .pdf or .svg write those formats)')
    p.add_argument('--json', metavar='FILE', help="also write the plotted data and every unit's full weights as JSON")
    p.add_argument('--scales', metavar='S1,S2,...',
                   help="input sizes in pixels, e.g. 128,224,320 (default: the model's input size)")
    p.add_argument('--figsize', metavar='W,H', help='figure size in inches (default: 10,6)')
    p.add_argument('--dpi', type=int, default=100, help='pixels per inch; the PNG is W*dpi x H*dpi (default: 100)')
    p.add_argument('--title', help='figure title (default: the model and its weights)')
    p.set_defaults(func=run)


def _parse_ints(text: str, what: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise CliError(f'{what} must be positive integers separated by commas, e.g. 128,224,320; got {text!r}', 2)
    return values


def _parse_figsize(text: str) -> Tuple[float, float]:
    try:
        width, height = (float(v) for v in text.split(','))
    except ValueError:
        width = height = 0.0
    if not (0 < width < 1000 and 0 < height < 1000):  # not NaN, not 0, and inches a screen or page can have
        raise CliError(f'--figsize is WIDTH,HEIGHT in inches, e.g. 10,6; got {text!r}', code=2)
    return width, height


def _check_format(out: Path) -> None:
    """Refuse a file name whose extension names no format matplotlib writes."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        raise CliError(f'--out {out}: matplotlib writes {", ".join(sorted(formats))}, not {out.suffix}; name a .png '
                       'file', code=2)


def run(args: argparse.Namespace) -> int:
    arch = check_model_name(args.model)
    scales = _parse_ints(args.scales, '--scales') if args.scales else [None]
    figsize = _parse_figsize(args.figsize) if args.figsize else (10.0, 6.0)
    check_at_least(1, dpi=args.dpi)
    if max(figsize) * args.dpi > _MAX_PIXELS:
        raise CliError(f'a {figsize[0]:g} x {figsize[1]:g} in figure at {args.dpi} dpi is over {_MAX_PIXELS} px a '
                       'side, more than matplotlib draws: lower --dpi or --figsize', code=2)
    out = Path(args.out or f'attention_{arch.replace(":", "_").replace("/", "_")}.png')
    if not out.suffix and not out.is_dir():  # matplotlib would add .png itself: name the file it writes
        out = out.with_name(f'{out.name}.png')
    check_output_file(out, '--out')
    if args.json:
        check_output_file(Path(args.json), '--json')
    images = [(path, read_image(path)) for path in args.images]
    require('matplotlib', 'the attention plot')  # before minutes of loading and running the model
    _check_format(out)
    model, report = load_model(args)
    weights = str(report)
    if not find_units(model):
        raise CliError(f'{args.model} has no SE or SK unit to show (were they switched off by --model-kwarg?)')
    smallest = min_input_size(model)
    if min(s or smallest for s in scales) < smallest:
        raise CliError(f'--scales {args.scales}: {args.model} takes inputs of at least {smallest}x{smallest} px; '
                       f'use sizes of {smallest} or more', code=2)
    data = {'model': args.model, 'weights': weights, **attention_data(model, images, scales)}
    plot_attention(data, args.title or f'{args.model} ({weights})', out, figsize, args.dpi)
    print(terminal_text(f'wrote {out}'))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(data))
        print(terminal_text(f'wrote {args.json}'))
    return 0

"""``timm-sesk export``: a Hub-ready folder (``timm_sesk.publish``), or ONNX / OpenVINO IR (``timm_sesk.deploy``)."""
import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional

from torch import nn

from timm_sesk import deploy
from timm_sesk.extras import require
from timm_sesk.files import check_export_folder
from timm_sesk.hub_config import check_repo_id
from timm_sesk.loading import LoadReport
from timm_sesk.publish import LAYOUTS, export_hub_folder, upload_hub_folder

from .errors import EXIT_USAGE, PROG, CliError
from .options import (
    HelpFormatter,
    check_at_least,
    check_model_name,
    label_names_option,
    load_model,
    model_args,
    model_options,
    parse_kwargs,
    positional_model,
)
from .text import terminal_text

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = commands.add_parser(
        name, parents=[model_options(positional=True)], help=summary, formatter_class=HelpFormatter,
        description='--format hub (default): write model.safetensors, config.json and a README.md model card for a '
                    'model, from its pretrained tag or a fine-tuned checkpoint (whose head size, and a train.py '
                    "checkpoint's input size, are read from it; the folder then names no pretrained tag). Where timm "
                    "has the model's network built in (its twin: sk_resnet18 is timm's skresnet18, ...), the folder "
                    'holds that twin, checked equal at export, and timm alone loads it: timm.create_model('
                    "'hf-hub:ORG/NAME', pretrained=True), transformers, ... (--layout portable, the default). "
                    '--layout plugin, and models without a twin (sk_resnet26, sk_resnet101, other SE/SK knobs), '
                    "keep timm_sesk's layout, which loads after `import timm_sesk`."
                    '\n\n--format onnx writes model.onnx (opset 18, dynamic batch, input "input", output '
                    '"logits"), --format openvino model.xml and model.bin (OpenVINO IR), both of the model after '
                    'timm_sesk.fuse. Their folder also holds deploy.json with the check run at export (maximum '
                    'relative error of the runtime against PyTorch on a random batch; the export fails above 1e-4) '
                    "and every format's folder data_config.json, the preprocessing the model expects. Run them "
                    f'with `{PROG} predict/validate -m FOLDER --runtime onnxruntime|openvino`.\n\nThe model may '
                    'also be given first, without -m, as in earlier versions.',
        epilog=f'examples:\n  {PROG} export -m sk_resnet50.ra_in1k out/sk50\n'
               f'  {PROG} export -m se_resnet50 out/se50-cifar --checkpoint model_best.pth.tar --dataset cifar10 '
               '--label-names classes.txt\n'
               f'  {PROG} export -m se_resnet50 out/se50-plugin --layout plugin\n'
               f'  {PROG} export -m sk_resnet50 out/sk50-ov --format openvino\n'
               f'  {PROG} export -m sk_resnet18 out/sk18-int8 --format openvino --checkpoint model_best.pth.tar '
               '--int8-calibration data/train')
    p.add_argument('positional_model', nargs='?', metavar='MODEL', help='the model, where -m does not name it')
    p.add_argument('out_dir', metavar='OUT_DIR', help='folder to write (created if needed; empty unless --overwrite)')
    p.add_argument('--overwrite', action='store_true',
                   help="replace the export in OUT_DIR: its files of an export's names (model.*, config.json, "
                        'README.md, deploy.json, data_config.json) go, other files stay')
    p.add_argument('--format', choices=('hub', *deploy.FORMATS), default='hub',
                   help='hub (default): Hub-ready folder; onnx: model.onnx; openvino: OpenVINO IR')
    p.add_argument('--dataset', help='hub: dataset the checkpoint was fine-tuned on (required with --checkpoint)')
    p.add_argument('--layout', choices=LAYOUTS,
                   help="hub: portable (timm's built-in twin, loads with timm alone; the default where the model has "
                        "one) or plugin (timm_sesk's layout, loads after import timm_sesk)")
    # Before -m and --model-kwarg, export took create_model arguments as one list: still read, not advertised.
    p.add_argument('--model-kwargs', nargs='*', default=[], metavar='KEY=VALUE', help=argparse.SUPPRESS)
    p.add_argument('--label-names', metavar='FILE',
                   help='text file with the class names, one per line in head order (as many as the head has)')
    p.add_argument('--license', help="licence of the exported weights (default: the pretrained tag's)")
    p.add_argument('--repo-id', help='Hub repository, ORG/NAME (used in the card, and by --push)')
    p.add_argument('--push', action='store_true', help='upload the folder to --repo-id with huggingface_hub')
    p.add_argument('--private', action='store_true', help='create the repository as private (with --push)')
    p.add_argument('--int8-calibration', metavar='FOLDER',
                   help='openvino: quantize to int8 with NNCF, calibrated on images of this folder (take the '
                        'training split; check top-1 on your validation split with validate --runtime openvino)')
    p.add_argument('--int8-samples', type=int, default=300, metavar='N',
                   help='calibration images, spread evenly over the folder (default: 300)')
    p.set_defaults(func=run)


def _paths(args: argparse.Namespace) -> Path:
    """The model (``-m`` or the first positional) and the output folder, refused before any work where the export
    may not write it."""
    positional_model(args, args.positional_model)
    return check_export_folder(args.out_dir, args.overwrite)


def _check_options(args: argparse.Namespace) -> None:
    """Refuse option combinations that cannot work, before building or writing anything."""
    if args.int8_calibration and args.format != 'openvino':
        raise CliError('--int8-calibration quantizes OpenVINO IR: use it with --format openvino', code=EXIT_USAGE)
    if args.format == 'hub':
        if args.push and not args.repo_id:
            raise CliError('--push needs --repo-id ORG/NAME', code=EXIT_USAGE)
        if args.repo_id:
            try:
                check_repo_id(args.repo_id)
            except ValueError as e:
                raise CliError(f'--repo-id {e}', code=EXIT_USAGE) from e
        if args.checkpoint and not args.dataset:
            raise CliError('name the dataset the checkpoint was fine-tuned on with --dataset NAME, for the model '
                           'card', code=EXIT_USAGE)
        return
    hub_only = [option for option, value in (
        ('--dataset', args.dataset), ('--layout', args.layout), ('--license', args.license),
        ('--repo-id', args.repo_id), ('--push', args.push), ('--private', args.private)) if value]
    if hub_only:
        raise CliError(f'{", ".join(hub_only)}: only for --format hub (they go into its model card and upload)',
                       code=EXIT_USAGE)
    if args.int8_calibration and not Path(args.int8_calibration).is_dir():
        raise CliError(f'no such folder: {args.int8_calibration} (--int8-calibration takes a folder of images)',
                       code=EXIT_USAGE)
    check_at_least(1, int8_samples=args.int8_samples)
    require('onnxruntime' if args.format == 'onnx' else 'openvino', f'--format {args.format}')  # before the model


def run(args: argparse.Namespace) -> int:
    out = _paths(args)
    check_model_name(args.model)
    check_at_least(1, num_classes=args.num_classes)
    _check_options(args)
    label_names_option(args.label_names)  # a missing or empty file, before the model is built
    kwargs = {**model_args(args), **parse_kwargs(args.model_kwargs, option='--model-kwargs')}
    model, report = load_model(args, kwargs)
    model = model.cpu()  # both formats are written (and checked) from the CPU
    label_names = label_names_option(args.label_names, model.num_classes)
    print(terminal_text(f'exporting {args.model} ({report}) to {args.format}'), flush=True)
    if args.format == 'hub':
        _export_hub(args, model, report, out, {**kwargs, 'num_classes': model.num_classes}, label_names)
    else:
        try:
            deploy.export(model, out, args.format, label_names=label_names, int8_calibration=args.int8_calibration,
                          int8_samples=args.int8_samples, overwrite=args.overwrite)
        except ValueError as e:  # a calibration folder without images
            raise CliError(str(e), code=EXIT_USAGE) from e
    print(terminal_text(f'wrote {out}: ' + ', '.join(sorted(p.name for p in out.iterdir()))))
    return 0


def _export_hub(args: argparse.Namespace, model: nn.Module, report: LoadReport, out: Path, kwargs: Dict[str, Any],
                label_names: Optional[List[str]]) -> None:
    """The Hub folder (timm_sesk.publish); optionally pushed."""
    export_hub_folder(args.model, out, checkpoint=args.checkpoint, dataset=args.dataset, model_args=kwargs,
                      label_names=label_names, license=args.license, repo_id=args.repo_id, model=model, report=report,
                      layout=args.layout, log=print, overwrite=args.overwrite)
    if args.push:
        print(terminal_text(f'uploaded: {upload_hub_folder(out, args.repo_id, private=args.private)}'))

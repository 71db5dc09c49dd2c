"""``timm-sesk export``: a Hub-ready folder (``timm_sesk.publish``), or ONNX / OpenVINO IR (``timm_sesk.deploy``)."""
import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional

import safetensors.torch
import timm

from timm_sesk import deploy
from timm_sesk.extras import require

from .errors import PROG, CliError
from .options import HelpFormatter, build_model, check_at_least, check_model_name, parse_kwargs

__all__ = ['add_parser', 'run']


def add_parser(commands: argparse._SubParsersAction, **parents: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        'export', help='write a Hub-ready folder, or ONNX / OpenVINO IR for CPU inference',
        formatter_class=HelpFormatter,
        description='--format hub (default): write model.safetensors, config.json and a README.md model card for a '
                    'model, from its pretrained tag or a fine-tuned checkpoint. After `import timm_sesk`, '
                    "timm.create_model('hf-hub:ORG/NAME', pretrained=True) loads the uploaded folder.\n\n"
                    '--format onnx writes model.onnx (opset 18, dynamic batch, input "input", output "logits"), '
                    '--format openvino model.xml and model.bin (OpenVINO IR), both of the model after '
                    'timm_sesk.fuse. Their folder also holds deploy.json with the check run at export (maximum '
                    'relative error of the runtime against PyTorch on a random batch; the export fails above 1e-4) '
                    "and every format's folder data_config.json, the preprocessing the model expects. Run them "
                    f'with `{PROG} predict/validate -m FOLDER --runtime onnxruntime|openvino`.',
        epilog=f'examples:\n  {PROG} export sk_resnet50.ra_in1k out/sk50\n'
               f'  {PROG} export sk_resnet50 out/sk50-ov --format openvino\n'
               f'  {PROG} export sk_resnet18 out/sk18-int8 --format openvino --checkpoint model_best.pth.tar '
               '--int8-calibration data/train')
    p.add_argument('model', help='model name, optionally with a pretrained tag, e.g. sk_resnet50.ra_in1k')
    p.add_argument('out_dir', help='folder to write')
    p.add_argument('--format', choices=('hub', *deploy.FORMATS), default='hub',
                   help='hub (default): Hub-ready folder; onnx: model.onnx; openvino: OpenVINO IR')
    p.add_argument('--checkpoint', help='fine-tuned weights (.safetensors, or a timm/PyTorch checkpoint)')
    p.add_argument('--no-pretrained', action='store_true', help='export random weights')
    p.add_argument('--dataset', help='hub: dataset the checkpoint was fine-tuned on (required with --checkpoint)')
    p.add_argument('--num-classes', type=int, help="classes of the checkpoint's head")
    p.add_argument('--model-kwargs', nargs='*', default=[], metavar='KEY=VALUE',
                   help='other create_model arguments the checkpoint needs, e.g. se_position=post')
    p.add_argument('--label-names', help='text file with one class name per line, in head order')
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


def run(args: argparse.Namespace) -> int:
    check_model_name(args.model)
    if args.checkpoint and args.no_pretrained:
        raise CliError('--checkpoint and --no-pretrained exclude each other; pass one', code=2)
    if args.int8_calibration and args.format != 'openvino':
        raise CliError('--int8-calibration quantizes OpenVINO IR: use it with --format openvino', code=2)
    model_args = parse_kwargs(args.model_kwargs)
    if args.num_classes is not None:
        model_args['num_classes'] = args.num_classes
    label_names = Path(args.label_names).read_text().split() if args.label_names else None
    if args.format == 'hub':
        folder = _export_hub(args, model_args, label_names)
    else:
        folder = _export_deployed(args, model_args, label_names)
    print(f'wrote {folder}: ' + ', '.join(sorted(p.name for p in folder.iterdir())))
    return 0


def _export_hub(args: argparse.Namespace, model_args: Dict[str, Any], label_names: Optional[List[str]]) -> Path:
    """The Hub folder (timm_sesk.publish), plus the data config every export format carries; optionally pushed."""
    import tempfile

    from timm_sesk.publish import export_hub_folder, upload_hub_folder

    if args.push and not args.repo_id:
        raise CliError('--push needs --repo-id ORG/NAME', code=2)
    if args.checkpoint and not args.dataset:
        raise CliError('name the dataset the checkpoint was fine-tuned on with --dataset, for the model card', code=2)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, dataset = args.checkpoint, args.dataset
        if args.no_pretrained:  # publish exports a tag's weights or a checkpoint's: random ones go as a checkpoint
            model, _ = build_model(args.model, None, True, model_args, kwarg_option='--model-kwargs')
            checkpoint, dataset = str(Path(tmp) / 'random.safetensors'), dataset or 'none (random weights)'
            safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, checkpoint)
        folder = export_hub_folder(
            args.model, args.out_dir, checkpoint=checkpoint, dataset=dataset, model_args=model_args,
            label_names=label_names, license=args.license, repo_id=args.repo_id)
    structure = timm.create_model(args.model, device='meta', **model_args)  # its data config, no weights
    deploy.write_data_config(structure, folder)
    if args.push:
        print(f'uploaded: {upload_hub_folder(folder, args.repo_id, private=args.private)}')
    return folder


def _export_deployed(args: argparse.Namespace, model_args: Dict[str, Any], label_names: Optional[List[str]]) -> Path:
    """ONNX or OpenVINO IR (timm_sesk.deploy), checked against PyTorch at export."""
    hub_only = [option for option, value in (
        ('--dataset', args.dataset), ('--license', args.license), ('--repo-id', args.repo_id), ('--push', args.push),
        ('--private', args.private)) if value]
    if hub_only:
        raise CliError(f'{", ".join(hub_only)}: only for --format hub (they go into its model card and upload)', 2)
    if args.int8_calibration and not Path(args.int8_calibration).is_dir():
        raise CliError(f'no such folder: {args.int8_calibration} (--int8-calibration takes a folder of images)', 2)
    check_at_least(1, int8_samples=args.int8_samples)
    runtime = 'onnxruntime' if args.format == 'onnx' else 'openvino'
    require(runtime, f'--format {args.format}')  # before building the model and its minutes of export
    model, weights = build_model(args.model, args.checkpoint, args.no_pretrained, model_args,
                                  kwarg_option='--model-kwargs')
    print(f'exporting {args.model} ({weights}) to {args.format}', flush=True)
    try:
        deploy.export(model, args.out_dir, args.format, label_names=label_names,
                      int8_calibration=args.int8_calibration, int8_samples=args.int8_samples)
    except deploy.ExportCheckError as e:
        raise CliError(str(e)) from e
    except ValueError as e:  # label names that do not fit the head, a calibration folder without images
        raise CliError(str(e), code=2) from e
    return Path(args.out_dir)

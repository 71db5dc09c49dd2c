"""Deploy a timm_sesk model to a CPU runtime: export to ONNX or OpenVINO IR, verified, and run it back.

``export(model, out_dir, format='onnx' | 'openvino')`` writes a folder holding

- ``model.onnx`` (``torch.onnx.export(dynamo=True)``, opset 18) or ``model.xml`` + ``model.bin`` (OpenVINO IR),
  computed from the model after ``timm_sesk.fuse`` (BatchNorm folded away) with its SK units in their export form
  (``timm_sesk.layers.sk_export``: the same function, as the graph the runtimes run fastest), with a dynamic batch
  dimension, input ``input`` (N x 3 x H x W, float32, normalised as the data config says) and output ``logits``;
- ``data_config.json``: timm's data config of the model (``resolve_model_data_config``), i.e. the preprocessing the
  exported model expects: ``timm.data.create_transform(**json.load(f))`` rebuilds the eval transform;
- ``deploy.json``: what the loader needs (format, head size, the model's pretrained config for labels and
  transforms, versions) and the check run at export: the maximum relative error of the runtime's logits against
  PyTorch's (unfused, float32) on a random batch. An f32 export that misses ``F32_TOLERANCE`` raises
  ``ExportCheckError`` after writing the folder, so that the measured error can be inspected.

``load(folder, runtime=..., precision=...)`` returns a ``DeployedModel`` that is called like the PyTorch model
(a float tensor in, logits out) and carries ``num_classes`` and ``pretrained_cfg``, so that timm's data config and
the CLI's label mapping treat it exactly as the PyTorch model it was exported from.

The runtimes are optional extras, ``onnx`` (ONNX, ONNX Runtime) and ``openvino`` (OpenVINO, and NNCF for int8); a
missing one raises ``timm_sesk.extras.MissingExtraError`` naming the ``pip install`` that adds it.
"""
import copy
import errno
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import timm
import torch
from torch import nn

from timm_sesk.data import even_indices, image_files, read_image
from timm_sesk.errors import ExportCheckError, InvalidInputError, UnsupportedPrecisionError
from timm_sesk.extras import require
from timm_sesk.files import export_folder
from timm_sesk.fuse import fuse
from timm_sesk.layers.sk_export import export_form
from timm_sesk.version import __version__

__all__ = [
    'FORMATS',
    'PRECISIONS',
    'RUNTIMES',
    'DeployedModel',
    'ExportCheckError',
    'InvalidInputError',
    'UnsupportedPrecisionError',
    'bf16_support',
    'data_config',
    'export',
    'load',
    'read_meta',
    'relative_error',
    'write_data_config',
]

FORMATS = ('onnx', 'openvino')
RUNTIMES = ('onnxruntime', 'openvino')
PRECISIONS = ('f32', 'bf16')
FRONTENDS = ('onnx', 'pytorch')
INPUT_NAME = 'input'
OUTPUT_NAME = 'logits'
OPSET = 18
# An f32 runtime computes the same network as PyTorch up to summation order; 1e-4 of the largest logit is far above
# that (~1e-6) and far below what a wrong graph gives.
F32_TOLERANCE = 1e-4
META_FILE = 'deploy.json'
DATA_CONFIG_FILE = 'data_config.json'
_MODEL_FILES = {'onnx': 'model.onnx', 'openvino': 'model.xml'}


def data_config(model: nn.Module) -> Dict[str, Any]:
    """timm's eval data config of the model (input size, interpolation, mean, std, crop), JSON-ready."""
    from timm.data import resolve_model_data_config

    return json.loads(json.dumps(resolve_model_data_config(model)))


def write_data_config(model: nn.Module, folder: Union[str, Path]) -> Path:
    """Write the model's data config to ``folder/data_config.json``: the preprocessing the exported model expects,
    for ``timm.data.create_transform(**config)``."""
    path = Path(folder) / DATA_CONFIG_FILE
    path.write_text(json.dumps(data_config(model), indent=2) + '\n')
    return path


def relative_error(actual: Union[np.ndarray, torch.Tensor], expected: Union[np.ndarray, torch.Tensor]) -> float:
    """Max absolute difference relative to the largest expected magnitude (the measure of every check here)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def bf16_support() -> Optional[str]:
    """None when OpenVINO can compute in bf16 on this CPU, else why not (for an error message)."""
    ov = require('openvino', 'bf16 inference')
    core = ov.Core()
    capabilities = core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    if 'BF16' in capabilities:
        return None
    return (f"this CPU ({core.get_property('CPU', 'FULL_DEVICE_NAME')}) has no bf16 instructions (OpenVINO reports "
            f"{', '.join(capabilities)}); bf16 needs AVX512_BF16 or AMX. Use --precision f32")


# --- export -------------------------------------------------------------------------------------------------------

def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.onnx's dynamo exporter, batch dimension dynamic, weights inside the one file."""
    require('onnxscript', 'ONNX export')
    batch = torch.export.Dim('batch', min=1, max=4096)
    torch.onnx.export(
        model, (example,), str(path), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), external_data=False, verbose=False)


def _convert_openvino(model: nn.Module, example: torch.Tensor, frontend: str, workdir: Path) -> Any:
    """An ``openvino.Model`` of the fused model, through our ONNX export or OpenVINO's PyTorch frontend."""
    ov = require('openvino', 'OpenVINO export')
    if frontend == 'onnx':
        onnx_path = workdir / 'model.onnx'
        _export_onnx(model, example, onnx_path)
        ov_model = ov.convert_model(str(onnx_path))
    elif frontend == 'pytorch':
        with warnings.catch_warnings():  # the frontend traces with torch.jit.trace, which torch calls deprecated
            warnings.simplefilter('ignore', FutureWarning)
            ov_model = ov.convert_model(model, example_input=example, input=[-1, *example.shape[1:]])
    else:
        raise ValueError(f'frontend must be one of {FRONTENDS}, got {frontend!r}')
    # The PyTorch frontend names tensors after the traced graph; one naming for every path.
    ov_model.inputs[0].get_tensor().set_names({INPUT_NAME})
    ov_model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return ov_model


def _image_batches(folder: Union[str, Path], config: Dict[str, Any], indices: Sequence[int],
                   files: Optional[List[str]] = None) -> Iterable[np.ndarray]:
    """The images of an image folder at ``indices`` (of its sorted file list), one per batch, through the eval
    transform."""
    from timm.data import create_transform

    transform = create_transform(**config)
    files = files if files is not None else image_files(folder)
    for i in indices:
        yield transform(read_image(files[i]))[None].numpy()


def _quantize_int8(ov_model: Any, calibration: Union[str, Path], config: Dict[str, Any], samples: int) -> Any:
    """NNCF post-training int8 quantization of the OpenVINO model, calibrated on ``samples`` images of a folder."""
    nncf = require('nncf', 'int8 quantization')
    files = image_files(calibration)
    batches = list(_image_batches(calibration, config, even_indices(len(files), samples), files))
    return nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=len(batches))


def export(
        model: nn.Module,
        out_dir: Union[str, Path],
        format: str = 'onnx',
        *,
        label_names: Optional[Sequence[str]] = None,
        int8_calibration: Optional[Union[str, Path]] = None,
        int8_samples: int = 300,
        frontend: str = 'pytorch',
        check_batch: int = 2,
        log: Optional[Callable[[str], None]] = print,
        overwrite: bool = False,
) -> Dict[str, Any]:
    """Export a model for ONNX Runtime or OpenVINO, check it against PyTorch, and write the deployment folder.

    The model is copied, fused (``timm_sesk.fuse``) and its SK units swapped for their export form
    (``timm_sesk.layers.sk_export``) before export; the original is left as it is and is the reference of the check.

    Args:
        model: A timm_sesk model (any timm classifier works) with its weights.
        out_dir: Folder to write (created if needed; it must be empty unless ``overwrite``).
        format: ``'onnx'`` (model.onnx) or ``'openvino'`` (model.xml and model.bin, OpenVINO IR).
        label_names: Class names of the head, in head order, stored for predict/validate.
        int8_calibration: OpenVINO only: quantize weights and activations to int8 with NNCF, calibrated on images
            of this folder (the training split, not the one you validate on).
        int8_samples: Number of calibration images, spread evenly over the folder.
        frontend: OpenVINO only: convert the model with OpenVINO's PyTorch frontend (``'pytorch'``, the default) or
            from our ONNX export (``'onnx'``). Both give OpenVINO graphs of the same speed (benchmarks/RESULTS.md);
            the PyTorch frontend exports several times faster and needs no ONNX packages.
        check_batch: Batch size of the random input of the export check.
        log: Where to print the check (None: quiet).
        overwrite: Replace the export in a folder that holds files (its files of an export's names go, others stay);
            without it such a folder is refused. Files move into the folder only once all are written
            (``timm_sesk.files.export_folder``).

    Returns:
        The contents of ``deploy.json``; its ``check`` entry holds the measured relative error.

    Raises:
        ExportCheckError: An f32 export's logits differ from PyTorch's by more than ``F32_TOLERANCE`` (relative).
        ExportFolderError: ``out_dir`` is a file, or holds files and ``overwrite`` is False.
        MissingExtraError: The runtime of the format is not installed.
        StorageError: The disk refused to write the folder.
    """
    if format not in FORMATS:
        raise ValueError(f'format must be one of {FORMATS}, got {format!r}')
    if int8_calibration is not None and format != 'openvino':
        raise ValueError('int8 quantization writes OpenVINO IR: use format="openvino"')
    runtime = 'onnxruntime' if format == 'onnx' else 'openvino'
    require(runtime, f'{format} export')  # before minutes of exporting, not after
    model = model.eval()
    config = data_config(model)
    pretrained_cfg = json.loads(json.dumps(dict(model.pretrained_cfg), default=str))
    if label_names is not None:
        if len(label_names) != model.num_classes:
            raise ValueError(f'{len(label_names)} label names for a head of {model.num_classes} classes')
        pretrained_cfg['label_names'] = list(label_names)
    example = torch.randn(check_batch, *config['input_size'], generator=torch.Generator().manual_seed(0))
    fused = export_form(fuse(copy.deepcopy(model)), quantizable=int8_calibration is not None)
    with export_folder(out_dir, overwrite) as stage:
        if format == 'onnx':
            _export_onnx(fused, example, stage / _MODEL_FILES['onnx'])
            files = [_MODEL_FILES['onnx']]
        else:
            ov = require('openvino', 'OpenVINO export')
            with tempfile.TemporaryDirectory() as tmp:
                ov_model = _convert_openvino(fused, example, frontend, Path(tmp))
            if int8_calibration is not None:
                ov_model = _quantize_int8(ov_model, int8_calibration, config, int8_samples)
            # save_model compresses weights to fp16 by default; the IR must hold the model's f32 weights.
            try:
                ov.save_model(ov_model, str(stage / _MODEL_FILES['openvino']), compress_to_fp16=False)
            except RuntimeError as e:  # OpenVINO's writer reports a full disk as an "iostream error": tell by the room
                if shutil.disk_usage(stage).free < sum(t.nbytes for t in fused.state_dict().values()):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(stage)) from e
                raise
            files = [_MODEL_FILES['openvino'], 'model.bin']
        write_data_config(model, stage)
        meta = {
            'format': format,
            'files': files,
            'input': INPUT_NAME,
            'output': OUTPUT_NAME,
            'input_size': config['input_size'],
            'num_classes': model.num_classes,
            'architecture': pretrained_cfg.get('architecture'),
            'fused': True,
            'quantization': 'int8 (NNCF post-training)' if int8_calibration is not None else None,
            'frontend': 'torch.onnx (dynamo)' if format == 'onnx' or frontend == 'onnx' else
                        'openvino PyTorch frontend',
            'opset': OPSET if format == 'onnx' else None,
            'versions': {'timm_sesk': __version__, 'timm': timm.__version__, 'torch': torch.__version__},
            'pretrained_cfg': pretrained_cfg,
        }
        _write_meta(stage, meta)
        # As many runtime threads as torch uses here: under parallel test workers or a thread limit, not every core.
        deployed = load(stage, runtime=runtime, precision='f32', threads=torch.get_num_threads())
        meta['check'] = _check(model, deployed, example, quantized=int8_calibration is not None)
        del deployed  # before its files move
        _write_meta(stage, meta)
    if log is not None:
        log(_describe_check(meta['check']))
    if meta['check']['passed'] is False:
        raise ExportCheckError(f'{_describe_check(meta["check"])}; the folder {out_dir} was written for inspection')
    return meta


def _write_meta(folder: Path, meta: Dict[str, Any]) -> None:
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + '\n')


def _check(model: nn.Module, deployed: 'DeployedModel', example: torch.Tensor, quantized: bool) -> Dict[str, Any]:
    """The export check: the runtime's logits against PyTorch's (the unfused model, f32) on a random batch."""
    with torch.inference_mode():
        expected = model(example).float().numpy()
    actual = deployed.run(example.numpy())
    error = relative_error(actual, expected)
    return {
        'runtime': deployed.runtime,
        'precision': deployed.precision,
        'input': f'random normal batch of {tuple(example.shape)}',
        'reference': 'PyTorch f32, the model before fuse()',
        'max_relative_error': error,
        # int8 changes the function on purpose: its error is reported, and its accuracy is measured on real images
        # (benchmarks/deploy.py, validate --runtime openvino), not held to the f32 tolerance: neither passed nor failed.
        'tolerance': None if quantized else F32_TOLERANCE,
        'passed': None if quantized else error <= F32_TOLERANCE,
    }


def _describe_check(check: Dict[str, Any]) -> str:
    measured = (f'{check["runtime"]} {check["precision"]} vs {check["reference"]}, {check["input"]}: max relative '
                f'error {check["max_relative_error"]:.1e}')
    if check['tolerance'] is None:
        return (f'export check not applied (int8 quantization changes the logits on purpose): {measured}; measure '
                'its accuracy on your validation images (timm-sesk validate --runtime openvino)')
    return f'export check {"ok" if check["passed"] else "FAILED"}: {measured} (tolerance {check["tolerance"]:.0e})'


# --- load and run -------------------------------------------------------------------------------------------------

def read_meta(folder: Union[str, Path]) -> Dict[str, Any]:
    """``deploy.json`` of an exported folder; ValueError when the folder is not one."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ValueError(f'{folder} is not an exported folder (no {META_FILE}); write one with `timm-sesk export '
                         f'MODEL {folder} --format onnx` or --format openvino')
    return json.loads(path.read_text())


# A runner: the runtime's call on a float32 N x C x H x W array, and the input shape its model declares, with None for
# a dynamic dimension (the batch).
_Runner = Tuple[Callable[[np.ndarray], np.ndarray], Tuple[Optional[int], ...]]


def _onnxruntime_runner(path: Path, precision: str, threads: Optional[int]) -> _Runner:
    if precision != 'f32':
        raise UnsupportedPrecisionError(
            "ONNX Runtime's CPU provider computes in f32 only; for bf16 use --runtime openvino")
    ort = require('onnxruntime', '--runtime onnxruntime')
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    shape = tuple(d if isinstance(d, int) else None for d in session.get_inputs()[0].shape)
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0], shape


def _openvino_runner(path: Path, precision: str, threads: Optional[int], hint: str) -> _Runner:
    ov = require('openvino', '--runtime openvino')
    if precision == 'bf16':
        why_not = bf16_support()
        if why_not:
            raise UnsupportedPrecisionError(why_not)
    # OpenVINO's CPU default on a bf16-capable CPU is bf16: f32 must be asked for.
    config = {'INFERENCE_PRECISION_HINT': precision, 'PERFORMANCE_HINT': hint}
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    compiled = ov.Core().compile_model(str(path), 'CPU', config)
    shape = tuple(d.get_length() if d.is_static else None for d in compiled.input(0).get_partial_shape())
    # A new infer request per call, which costs well under 1% of a call: calls from several threads into one request
    # kept across calls overwrite each other's input in it, and get wrong logits without an error.
    return lambda x: compiled.create_infer_request().infer({0: x})[0], shape


class DeployedModel:
    """An exported model run by ONNX Runtime or OpenVINO, called like the PyTorch model it was exported from.

    Calls share no state. Each is checked before the runtime sees it: a float N x C x H x W batch, N >= 1, of the
    exported channels and size (OpenVINO 2026.4 answers another shape without an error, with the previous call's
    logits, and leaves the compiled model answering later calls wrongly). Each runs in an OpenVINO infer request of
    its own, so that calls from several threads are safe. A sample holding NaN or infinity gets NaN logits, as in
    PyTorch and ONNX Runtime (OpenVINO computes finite ones).

    Attributes:
        folder: The exported folder.
        runtime: ``'onnxruntime'`` or ``'openvino'``.
        precision: ``'f32'`` or ``'bf16'`` (the precision the runtime computes in).
        meta: The folder's ``deploy.json``.
        num_classes: Classes of the head.
        pretrained_cfg: The exported model's pretrained config, so that ``timm.data.resolve_model_data_config``
            and label look-ups see what they saw on the PyTorch model.
        input_shape: The input shape the runtime's model declares, None for a dynamic dimension:
            ``(None, 3, 224, 224)``.
    """

    def __init__(self, folder: Union[str, Path], runtime: Optional[str] = None, precision: str = 'f32',
                 threads: Optional[int] = None, hint: str = 'LATENCY'):
        self.folder = Path(folder)
        self.meta = read_meta(folder)
        fmt = self.meta['format']
        runtime = runtime or ('onnxruntime' if fmt == 'onnx' else 'openvino')
        if runtime not in RUNTIMES:
            raise ValueError(f'runtime must be one of {RUNTIMES}, got {runtime!r}')
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
        if runtime == 'onnxruntime' and fmt != 'onnx':
            raise ValueError(f'{folder} holds OpenVINO IR, which ONNX Runtime cannot read: use --runtime openvino, '
                             'or export with --format onnx')
        self.runtime = runtime
        self.precision = precision
        self.num_classes = self.meta['num_classes']
        self.pretrained_cfg = self.meta['pretrained_cfg']
        path = self.folder / _MODEL_FILES[fmt]
        if runtime == 'onnxruntime':
            self._run, self.input_shape = _onnxruntime_runner(path, precision, threads)
        else:  # OpenVINO reads both its IR and ONNX
            self._run, self.input_shape = _openvino_runner(path, precision, threads, hint)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits of a float N x C x H x W array, as a float32 array; rows of samples holding NaN or infinity are NaN.

        Raises:
            InvalidInputError: ``x`` is not a float array of that shape with N >= 1 and the exported C, H and W.
        """
        x = np.asarray(x)
        self._check(x)
        x = np.ascontiguousarray(x, dtype=np.float32)
        logits = self._run(x)
        finite = np.isfinite(x).all(axis=(1, 2, 3))
        return logits if finite.all() else np.where(finite[:, None], logits, np.float32(np.nan))

    def _check(self, x: np.ndarray) -> None:
        expected = ' x '.join('N' if d is None else str(d) for d in self.input_shape)
        fits = (x.dtype.kind == 'f' and x.ndim == len(self.input_shape) and x.shape[0] >= 1
                and all(d is None or d == n for d, n in zip(self.input_shape, x.shape)))
        if not fits:
            got = ' x '.join(map(str, x.shape)) or 'a scalar'
            raise InvalidInputError(
                f'{self.folder} takes float batches of {expected}, N >= 1 (the channels and size it was exported '
                f'for: transform images with its {DATA_CONFIG_FILE}), got {got} {x.dtype}')

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu()
        if x.is_floating_point():  # bf16 and f16 as f32; an integer tensor stays one, for run() to refuse
            x = x.float()
        return torch.from_numpy(np.array(self.run(x.numpy())))

    def describe(self) -> str:
        """One line naming the model, its weights' origin, the runtime and the precision."""
        quantized = f", {self.meta['quantization']}" if self.meta.get('quantization') else ''
        return f'{self.folder} ({self.meta["architecture"]}{quantized}) in {self.runtime} {self.precision}'


def load(folder: Union[str, Path], runtime: Optional[str] = None, precision: str = 'f32',
         threads: Optional[int] = None, hint: str = 'LATENCY') -> DeployedModel:
    """Load an exported folder for a runtime.

    Args:
        folder: A folder written by ``export``.
        runtime: ``'onnxruntime'`` (ONNX folders) or ``'openvino'`` (both); default: the format's own runtime.
        precision: ``'f32'`` or ``'bf16'``. bf16 needs OpenVINO and a CPU with bf16 instructions (AVX512_BF16 or
            AMX); otherwise ``UnsupportedPrecisionError`` says so. ONNX Runtime computes in f32 only.
        threads: CPU threads of the runtime (default: the runtime's, one per core).
        hint: OpenVINO performance hint: ``'LATENCY'`` (one request at a time, all threads on it) or
            ``'THROUGHPUT'``.

    Returns:
        The model, called like a PyTorch model (float tensor in, logits tensor out).
    """
    return DeployedModel(folder, runtime=runtime, precision=precision, threads=threads, hint=hint)


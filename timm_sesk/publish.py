"""Turn a model, and optionally a fine-tuned checkpoint, into a folder ready for the Hugging Face Hub.

The folder holds what timm's ``hf-hub:`` loader reads: ``model.safetensors`` and ``config.json`` in timm's format,
as timm's ``save_for_hf`` writes them (the weights with provenance metadata, and ``num_classes`` taken out of the
config's ``model_args``), a ``README.md`` model card with YAML front matter, written by timm's ``generate_readme``,
and ``data_config.json``, the preprocessing, as every export format writes it. The folder is written as every
export's is (``timm_sesk.files.export_folder``): whole or not at all, and over another export only with
``overwrite``. timm's ``push_to_hf_hub`` would upload its own files, without the metadata and with
``num_classes`` twice, so ``upload_hub_folder`` uploads this folder with huggingface_hub.

Two layouts. ``portable`` (the default, where the model has a twin built into timm: ``timm_sesk.twin``): the folder
holds timm's twin (``config.json`` names it, the weights are in its layout), so timm alone loads it, and so do the
tools built on timm (transformers, ...); the export builds it from the written folder, as timm does, and refuses a
folder whose logits differ from the model's. ``plugin``: the model in timm_sesk's own layout, which needs
``import timm_sesk`` before ``timm.create_model('hf-hub:<org>/<repo>', pretrained=True)``; the only layout of the
models without a twin.
"""
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import safetensors.torch
import timm
import torch
from timm.models._hub import generate_readme, save_config_for_hf
from torch import nn

from timm_sesk.deploy import data_config, relative_error, write_data_config
from timm_sesk.errors import ExportCheckError, NoTwinError, UploadError
from timm_sesk.files import EXPORT_FILES, check_export_folder, export_folder
from timm_sesk.hub_config import check_repo_id
from timm_sesk.loading import LoadReport, load
from timm_sesk.models.archs import FAMILIES, families_of
from timm_sesk.twin import TOLERANCE, Twin, to_timm, twin_of
from timm_sesk.version import __version__
from timm_sesk.weights import REFERENCES, WEIGHTS, WeightSpec
from timm_sesk.weights._pretrained import describe_network_error, network_errors, sha256_file
from timm_sesk.zoo import count_gmacs

__all__ = ['LAYOUTS', 'export_hub_folder', 'upload_hub_folder']

# portable: timm's built-in twin, which timm alone loads; plugin: timm_sesk's own layout, loaded after import timm_sesk.
LAYOUTS = ('portable', 'plugin')

_PLACEHOLDER = 'hf-hub:ORG/NAME'
# create_model arguments that choose weights or where they are cached, not the architecture: not for config.json.
_NOT_MODEL_ARGS = ('num_classes', 'pretrained_cfg', 'pretrained_cfg_overlay', 'cache_dir')


def _usage(name: str, portable: bool = False) -> str:
    """The card's snippet, loading ``name``: the repository, the pretrained tag, or a placeholder for the repository
    a fine-tune is uploaded to (never the tag it may have started from), as a Python string literal; a portable
    folder's with timm alone."""
    where = '  # ORG/NAME: the repository you upload this folder to' if name == _PLACEHOLDER else ''
    imports = 'import timm  # pip install timm: nothing else is needed\n' if portable else (
        'import timm\n'
        'import timm_sesk  # registers the architecture with timm\n')
    return (
        '```python\n'
        f'{imports}\n'
        f"model = timm.create_model({name!r}, pretrained=True).eval(){where}\n"
        'config = timm.data.resolve_data_config(model=model)\n'
        'transform = timm.data.create_transform(**config)\n'
        '```\n')


def _yaml_scalar(text: str) -> str:
    """``text`` for the card's YAML front matter, where timm's ``generate_readme`` writes it as it is (a dataset also
    lower-cased): unchanged where YAML reads it back as that string, else double-quoted (JSON's quoting is YAML's),
    so that a user's string can neither end the field nor add fields."""
    import yaml

    def plain(value: str) -> bool:
        try:
            return yaml.safe_load(f'- {value}') == [value]
        except yaml.YAMLError:
            return False

    return text if plain(text) and plain(text.lower()) else json.dumps(text)


# What the card says of weights that are neither a pretrained tag's nor a named checkpoint's, by their metadata label.
_UNCLAIMED = {
    'random-init': 'random initialisation, untrained',
    'random-head': 'a new, untrained classifier head: no accuracy is claimed',
    'unverified': "not proven to be a pretrained tag's (an in-memory model, e.g. fine-tuned): no accuracy is claimed",
}


def _provenance(arch: str, spec: Optional[WeightSpec], checkpoint_sha: Optional[str], dataset: Optional[str],
                weights: str, twin: Optional[Twin] = None, error: Optional[float] = None) -> Dict[str, Any]:
    details: Dict[str, Any] = {
        'Architecture': f'{arch} (timm_sesk {__version__}), proven equal to {REFERENCES[arch].description}'
        if twin is None else f"timm's `{twin.name}`, exported from {arch} (timm_sesk {__version__}), which it equals "
                             f'exactly: max relative error {error:.0e} of its logits on a random batch at export',
    }
    if spec is not None:
        details['Pretrained weights'] = {
            'tag': spec.name,
            'trained as': spec.trained_as,
            'source': spec.source,
            'licence': spec.license,
            **{f'top-1 @ {a.img_size} (reported by {a.reported_by})': a.top1 for a in spec.accuracy},
        }
    if checkpoint_sha is not None:
        details['Fine-tuned checkpoint'] = {'sha256': checkpoint_sha, 'dataset': dataset}
    if weights in _UNCLAIMED:
        details['Weights'] = _UNCLAIMED[weights]
    return details


def _claims(report: Optional[LoadReport]) -> Optional[WeightSpec]:
    """The pretrained tag a model's weights are, by the report of their loading: its weights as published, head
    included; None for anything else (a new head, a checkpoint, random weights, or no report: an in-memory model
    whose weights nothing proves to be the tag's, e.g. fine-tuned since)."""
    if report is None or report.random_head is not None:
        return None
    return next((w for w in WEIGHTS if w.name == report.source), None)


def _weights_label(spec: Optional[WeightSpec], checkpoint_sha: Optional[str], report: Optional[LoadReport]) -> str:
    """The ``weights`` entry of the file's metadata."""
    if spec is not None:
        return spec.name
    if checkpoint_sha:
        return 'fine-tuned'
    if report is not None and report.source == 'random weights':
        return 'random-init'
    return 'random-head' if report is not None and report.random_head else 'unverified'


def _save(model: nn.Module, out: Path, model_args: Dict[str, Any], model_config: Optional[Dict[str, Any]],
          metadata: Dict[str, str], tagged: bool) -> None:
    """What timm's ``save_for_hf`` writes: ``config.json`` by its ``save_config_for_hf``, but without ``num_classes``
    in ``model_args`` (the root ``num_classes`` already gives it to timm, and transformers'
    ``TimmWrapperForImageClassification`` passes it to ``create_model`` itself, so a second copy fails with "got
    multiple values for keyword argument 'num_classes'") and without the model's pretrained tag unless ``tagged``
    (the weights are proven to be the tag's); and the weights as safetensors with ``metadata``, written by Python's
    file I/O, whose errors say a disk is full (safetensors' own writer reports it as text)."""
    path = out / 'config.json'
    save_config_for_hf(model, path, model_config=model_config,
                       model_args={k: v for k, v in model_args.items() if k not in _NOT_MODEL_ARGS} or None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    (out / 'model.safetensors').write_bytes(safetensors.torch.save(state, metadata=metadata))
    config = json.loads(path.read_text())
    config.get('model_args', {}).pop('num_classes', None)
    if not tagged:
        config.get('pretrained_cfg', {}).pop('tag', None)
    path.write_text(json.dumps(config, indent=2))


def export_hub_folder(
        model_name: str,
        out_dir: Union[str, Path],
        checkpoint: Optional[Union[str, Path]] = None,
        dataset: Optional[str] = None,
        model_args: Optional[Dict[str, Any]] = None,
        label_names: Optional[List[str]] = None,
        license: Optional[str] = None,
        repo_id: Optional[str] = None,
        model: Optional[nn.Module] = None,
        report: Optional[LoadReport] = None,
        layout: Optional[str] = None,
        log: Optional[Callable[[str], None]] = None,
        overwrite: bool = False,
) -> Path:
    """Write a Hub-ready folder for a model: timm's built-in twin where it has one (``portable``), else the model in
    timm_sesk's own layout (``plugin``).

    Args:
        model_name: timm_sesk model, optionally with a pretrained tag (``sk_resnet50.ra_in1k``).
        out_dir: Folder to write (created if needed).
        checkpoint: Fine-tuned weights (safetensors, or a timm/PyTorch checkpoint, read with ``weights_only=True``).
            Without it, the tag's pretrained weights are exported.
        dataset: Dataset the checkpoint was fine-tuned on; required with ``checkpoint``.
        model_args: ``create_model`` arguments the checkpoint needs (``num_classes``, SE/SK knobs, ...).
        label_names: Class names of the checkpoint's head.
        license: Licence of the exported weights (default: the pretrained tag's, or ``apache-2.0``).
        repo_id: Hub repository the folder is meant for, used in the card's usage example.
        model: The model to export, already holding its weights (``checkpoint`` then only names their file, for
            its sha256). Without ``report``, nothing proves its weights to be a pretrained tag's (it may have been
            fine-tuned, or built without them), so the card claims no tag and no accuracy.
        report: What ``timm_sesk.load`` (or ``load_weights``) reported loading into ``model``, which has not been
            changed since: the card claims the tag it names, where it loaded with its head, and its reported
            accuracy.
        layout: ``'portable'``: timm's built-in twin (``timm_sesk.to_timm``), which timm alone loads, built from the
            written folder and compared with the model before the card is written; ``'plugin'``: timm_sesk's own
            layout, loaded after ``import timm_sesk``. None (the default): portable where the model has a twin.
        log: Where to say which layout was written and why (None: quiet).
        overwrite: Replace the export in a folder that holds files (its files of an export's names go, others stay);
            without it such a folder is refused. Files move into the folder only once all are written
            (``timm_sesk.files.export_folder``).

    Returns:
        The folder.

    Raises:
        NoTwinError: ``layout='portable'``, and timm has no twin of the model (the message says why).
        ExportCheckError: The folder's twin, as timm builds it, does not compute the model's logits; nothing is
            written.
        ExportFolderError: ``out_dir`` is a file, or holds files and ``overwrite`` is False.
        StorageError: The disk refused to write the folder.
    """
    if checkpoint is not None and not dataset:
        raise ValueError('name the dataset the checkpoint was fine-tuned on (dataset=...), for the model card')
    if layout not in (None, *LAYOUTS):
        raise ValueError(f'layout must be one of {LAYOUTS} or None (portable where the model has a twin), not '
                         f'{layout!r}')
    if repo_id is not None:
        check_repo_id(repo_id)
    check_export_folder(out_dir, overwrite)  # before building the model
    model_args = dict(model_args or {})
    if model is None:
        model, report = load(model_name, checkpoint=checkpoint, **model_args)
    model = model.eval()
    arch = model.pretrained_cfg['architecture']
    twin = _twin(model, layout, log)
    spec = _claims(report)
    checkpoint_sha = sha256_file(checkpoint) if checkpoint is not None else None
    dataset = dataset or ('imagenet-1k' if spec is not None else None)
    license = license or (spec.license if spec is not None else 'apache-2.0')

    weights = _weights_label(spec, checkpoint_sha, report)
    metadata = {
        'format': 'pt',
        'architecture': arch,
        'timm_sesk_version': __version__,
        'timm_version': timm.__version__,
        'weights': weights,
        'weights_source': spec.source if spec is not None else '',
    }
    if checkpoint_sha:
        metadata['finetuned_checkpoint_sha256'] = checkpoint_sha
    with export_folder(out_dir, overwrite) as out:  # a staging folder, moved into out_dir once whole
        model_config = {'label_names': label_names} if label_names else None
        error = None
        if twin is None:
            _save(model, out, model_args, model_config, metadata, spec is not None)
        else:
            _save(to_timm(model), out, twin.kwargs, model_config,
                  {**metadata, 'architecture': twin.name, 'timm_sesk_architecture': arch}, spec is not None)
            error = _check_portable(model, out, twin, out_dir)
            if log is not None:
                log(f"portable: wrote timm's {twin.name} (exactly equal to {arch}, max relative error {error:.0e}); "
                    'loads with timm alone')

        # The families of the model as built (model_args can add SE to an SK model, or switch it off).
        families = [FAMILIES[key] for key in families_of(model)]
        papers = {'Paper': '; '.join(f'{f.paper_name}, {f.paper_url}' for f in families)} if families else {}
        input_size = tuple(model.pretrained_cfg['input_size'])
        with torch.device('meta'):  # the structure only, for its GMACs
            structure = timm.create_model(arch, **model_args)
        card = {
            'tags': ['image-classification', 'timm', 'timm_sesk', *(f.hub_tag for f in families)],
            'license': _yaml_scalar(license),
            'description': f'{arch} from timm_sesk, the Squeeze-and-Excitation / Selective-Kernel ResNet zoo for '
                           'timm. Loading it needs timm_sesk installed and `import timm_sesk` before '
                           '`timm.create_model`.'
            if twin is None else
            f"timm's {twin.name}, exported from {arch} of timm_sesk, the Squeeze-and-Excitation / Selective-Kernel "
            f'ResNet zoo for timm: the same network, built into timm, so it loads with timm alone (`pip install '
            f'timm`, no timm_sesk), and so in the tools built on timm. It computes exactly what {arch} computes '
            f'(checked at export: max relative error {error:.0e}); with timm_sesk, `timm_sesk.from_timm(model)` gives '
            f'the {arch} back.',
            'details': {
                'Model Type': 'Image classification / feature backbone',
                'Model Stats': {
                    'Params (M)': round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                    'GMACs': round(count_gmacs(structure, input_size), 2),
                    'Image size': f'{input_size[-2]} x {input_size[-1]}',
                },
                **papers,
                **({'Dataset': _yaml_scalar(dataset)} if dataset else {}),
                **_provenance(arch, spec, checkpoint_sha, dataset, weights, twin, error),
            },
            'usage': _usage(f'hf-hub:{repo_id}' if repo_id else spec.name if spec is not None and twin is None else
                            _PLACEHOLDER, portable=twin is not None),
        }
        if families:
            card['citation'] = [f.bibtex for f in families]
        readme = generate_readme(card, repo_id.split('/')[-1] if repo_id else arch)
        (out / 'README.md').write_text(readme, encoding='utf-8')
        write_data_config(model, out)
    return Path(out_dir)


def _twin(model: nn.Module, layout: Optional[str], log: Optional[Callable[[str], None]]) -> Optional[Twin]:
    """The twin to write, None for the plugin layout (asked for, or where the model has no twin)."""
    if layout == 'plugin':
        return None
    try:
        return twin_of(model)
    except NoTwinError as e:
        if layout == 'portable':
            raise
        if log is not None:
            log(f'plugin layout: {e}; loading the folder needs timm_sesk, as its card says')
        return None


def _check_portable(model: nn.Module, out: Path, twin: Twin, out_dir: Union[str, Path]) -> float:
    """The export check: the folder's model (``out``, the staging folder of ``out_dir``), built by timm alone as
    whoever loads it builds it, against the model, on a random batch; the relative error of the logits."""
    loaded = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    param = next(model.parameters())
    # At the input size the folder's data config gives: what whoever loads it feeds it.
    x = torch.randn(2, *data_config(loaded)['input_size'], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        error = relative_error(loaded.to(param)(x.to(param)).float().cpu(), model(x.to(param)).float().cpu())
    if not error <= TOLERANCE:  # NaN fails too
        raise ExportCheckError(
            f"timm's {twin.name} built from {out_dir} does not compute what {twin.arch} computes (max relative error "
            f"{error:.1e} of the logits, above {TOLERANCE:.0e}): nothing was written; export it in timm_sesk's layout "
            "(layout='plugin', --layout plugin)")
    return error


def upload_hub_folder(folder: Union[str, Path], repo_id: str, private: bool = False,
                      token: Optional[str] = None) -> str:
    """Create the Hub repository if needed and upload the folder's export files (``EXPORT_FILES``; any other file in
    it stays local) with huggingface_hub; returns the commit URL.

    Raises:
        ValueError: ``repo_id`` is not a Hub repository id.
        UploadError: The upload failed on the network, or the Hub refused it.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    check_repo_id(repo_id)
    config = json.loads((Path(folder) / 'config.json').read_text())
    api = HfApi(token=token, library_name='timm', library_version=timm.__version__)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), allow_patterns=sorted(EXPORT_FILES),
            commit_message=f"Add {config['architecture']} (timm_sesk)")
    except (HfHubHTTPError, *network_errors()) as e:
        reason = str(e).strip().splitlines()[0] if isinstance(e, HfHubHTTPError) else describe_network_error(e)
        raise UploadError(f'uploading {folder} to the Hub repository {repo_id} failed ({reason}). The folder is as '
                          f'it was: upload it later with `hf upload {repo_id} {folder} .`') from e
    return commit.commit_url

"""MODEL_CARD.md, generated from the weights manifest and the registered models; README.md's zoo table and table of
timm's built-in twins, generated from the declared architectures. A script of the repository, not part of the
installed package.

    python docs/card.py --write MODEL_CARD.md           # regenerate the card (make card)
    python docs/card.py --check MODEL_CARD.md           # exit 1 if the file has drifted
    python docs/card.py --zoo-table --write README.md   # regenerate README's two tables (make zoo-table)

The test suite compares both files with what this generates, so neither can disagree with the manifest or the models.
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from timm_sesk import list_models
from timm_sesk.models.archs import ARCHS, FAMILIES, Arch
from timm_sesk.twin import twins
from timm_sesk.weights.manifest import NO_WEIGHTS, NOT_GRAFTABLE, WEIGHTS, ReportedAccuracy, WeightSpec
from timm_sesk.weights.references import REFERENCES, describe_references
from timm_sesk.zoo import model_facts

__all__ = [
    'TWIN_TABLE_BEGIN', 'TWIN_TABLE_END', 'ZOO_TABLE_BEGIN', 'ZOO_TABLE_END', 'render', 'render_twin_table',
    'render_zoo_table', 'with_twin_table', 'with_zoo_table']

_HEADER = """# timm_sesk model card

<!-- Generated from weights/manifest.py by `python docs/card.py --write MODEL_CARD.md`.
     Do not edit by hand: the test suite fails when this file and the manifest disagree. -->

## Model family

Squeeze-and-Excitation (SE) and Selective-Kernel (SK) ResNets for timm, ImageNet-1k classifiers and feature backbones.

- **SE** ({se}): each residual block rescales its channels
  by weights computed from the globally pooled features. `se_resnet*` and `se_resnext*` have timm's layout;
  `*_orig` models have the layout of the SENet authors' released networks.
- **SK** ({sk}): the spatial convolution of each block becomes
  several paths with different receptive fields, mixed per channel by softmax attention. `sk_resnet26/50/101` are
  SKNet-26/50/101 of the paper; `sk_resnet18/34` are timm's SK design for basic blocks.
"""

_TABLE_NOTE = """
Params and GMACs (multiply-accumulates of convolutions and linear layers, one image at the input size) are counted
from the registered models. **Top-1 and top-5 are the figures the weights' source reports** on the ImageNet-1k
validation set, at the eval size and crop given (see *Reported by* below); this project has not evaluated them.
"""

_FOOTER = """
## Intended use

Image classification on ImageNet-1k classes, fine-tuning on other image datasets (for example with timm's
`train.py`), and backbones for detection and segmentation through `features_only=True`.

## Limitations

- The weights are ImageNet-1k classifiers: 1000 classes, natural photographs, about 224 px. Other domains need
  fine-tuning; expect accuracy to fall on images unlike ImageNet.
- ImageNet-1k inherits its biases (geography, subjects photographed, label noise); the models inherit them too.
- The accuracies above are the sources' own figures, not re-measured here. Weights converted from other frameworks
  (Caffe, MXNet, mmcv) can differ slightly from the source's own evaluation because of image decoding and resizing.
- The `_orig` models need inputs of at least 5x5 px (their stem pooling has no padding).
- No weight file could be downloaded while this project was built (it has no network access), so no file was
  inspected and no full sha256 is known. A URL file is checked as it downloads against the sha256 prefix its
  publisher puts in its name, where the publisher follows that convention (timm's releases, the Cadene/SENet
  conversions, OpenMMLab's publish_model); senet.pytorch's file is not pinned (see its tag). Hub files rely on the
  Hub. Each key mapping is proven on checkpoints laid out as the source lays them out, not on the real files.

## How equivalence is verified

Every architecture has a reference network: timm's own implementation of it, or the source's network for weights
from outside timm (`weights/references.py`, `tests/source_nets.py`). The test suite gives the reference random
weights and random, non-identity BatchNorm statistics, maps its state dict onto ours with the same key mapping the
loader uses (`weights/mapping.py`), and requires the logits to agree to a relative error below 1e-5 in fp32. For
every pretrained tag it publishes such a checkpoint where the tag loads from (a loopback stand-in of the Hugging
Face Hub, or timm_sesk's download cache for URL files), loads it with `timm.create_model(tag, pretrained=True)` and
compares the logits with the source network's.

## Citations

```bibtex
"""
# The families' papers are cited from timm_sesk.models.archs.FAMILIES; timm is cited here.
_TIMM_BIBTEX = """@misc{rw2019timm,
  author={Ross Wightman},
  title={PyTorch Image Models},
  year={2019},
  howpublished={\\url{https://github.com/huggingface/pytorch-image-models}}
}"""


def _source_cell(spec: WeightSpec) -> str:
    if spec.hf_hub_id:
        return f'Hub `{spec.hf_hub_id}`'
    return f'[{spec.url.rsplit("/", 1)[-1]}]({spec.url})'


def _accuracy_cells(spec: WeightSpec) -> List[str]:
    if spec.is_graft:  # no accuracy is claimed for a grafted network: see the grafts' section
        return ['graft', 'graft']
    if not spec.accuracy:
        return ['—', '—']
    first = spec.accuracy[0]
    top5 = f'{first.top5:.2f}' if first.top5 is not None else 'n/r'
    return [f'{first.top1:.2f} @{first.img_size}', top5]


def _models_table() -> List[str]:
    lines = [
        '| model | params (M) | GMACs | input | pretrained tag | trained as | source | top-1 | top-5 | licence |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for name in list_models():
        facts = model_facts(name)
        stats = [f'`{name}`', f'{facts.params_m:.2f}', f'{facts.gmacs:.2f}', str(facts.input_size[-1])]
        if not facts.weights:
            lines.append('| ' + ' | '.join([*stats, 'none published', '—', '—', '—', '—', '—']) + ' |')
        for spec in facts.weights:
            size = str(spec.input_size[-1])
            row = [*stats[:3], size, f'`{spec.tag}`', f'`{spec.trained_as}`', _source_cell(spec),
                   *_accuracy_cells(spec), spec.license]
            lines.append('| ' + ' | '.join(row) + ' |')
    return lines


def _figures(accuracy: ReportedAccuracy) -> str:
    """'top-1 / top-5 at SIZE px, crop CROP', as a source reports them."""
    top5 = f' / {accuracy.top5:.2f}' if accuracy.top5 is not None else ''
    return f'{accuracy.top1:.2f}{top5} at {accuracy.img_size} px, crop {accuracy.crop_pct}'


def _provenance() -> List[str]:
    lines = ['', '### Provenance of each tag', '']
    for spec in (w for w in WEIGHTS if not w.is_graft):
        pin = f' Pinned: its sha256 must start with `{spec.hash_prefix}`, the prefix in its file name.' \
            if spec.hash_prefix else ''
        reported = '; '.join(f'{_figures(a)} ({a.reported_by})' for a in spec.accuracy)
        notes = f' {spec.notes}' if spec.notes else ''
        lines.append(
            f'- `{spec.name}`: key mapping `{spec.mapping}`; data config {spec.input_size[-1]} px, crop '
            f'{spec.crop_pct}, {spec.interpolation}.{pin} Reported by: {reported}.{notes}')
    return lines


def _no_weights() -> List[str]:
    lines = ['', '## Architectures without published weights', '',
             '`pretrained=True` on these raises an error that lists the architectures with weights.', '']
    for arch, reason in NO_WEIGHTS.items():
        lines.append(f'- `{arch}` ({REFERENCES[arch].description}): {reason}')
    return lines


_GRAFTS_INTRO = """
## Grafted starting points (`graft_*` tags)

Five architectures have no trained weights anywhere. For four of them, a `graft_*` tag loads the weights of a strong
plain twin from its own Hub repository and grafts them on as they load (the loader finds them in a plain network's
layout and grafts them, `timm_sesk.graft`): the SE or SK network then computes exactly the plain network's function
(the same logits in eval within fp32 rounding, the same training-mode forward). Each **starts at the plain network's
reported top-1**, given below with its source; **its SE/SK attention is untrained: fine-tune before use.** No
accuracy is claimed for the grafted network itself, and the table above shows none.

- SE: the last SE FC is zero, so the gate is exactly 0.5, and the branch's last BatchNorm weight and bias are doubled
  (exact in floating point).
- SK (bottleneck): path 1 is the plain grouped 3x3; the new dilated path starts at a constant c = 0.5 (norm weight 0,
  bias c: a live ReLU), the select FC is zero (weights 0.5 / 0.5), the next 1x1 conv's weight is doubled and its
  BatchNorm running mean takes the constant offset c * sum(W) (in training the batch mean removes it).
- Every new parameter gets a gradient within two optimizer steps; the test suite checks all of this against timm's
  plain networks (`tests/test_graft.py`).
"""


def _grafts() -> List[str]:
    lines = [_GRAFTS_INTRO.rstrip('\n'), '']
    for spec in (w for w in WEIGHTS if w.is_graft):
        starts = '; '.join(_figures(a) for a in spec.accuracy)
        lines.append(
            f'- `{spec.name}`: weights from Hub `{spec.hf_hub_id}` (licence {spec.license}; data config '
            f'{spec.input_size[-1]} px, crop {spec.crop_pct}, {spec.interpolation}). Starts at the plain network\'s '
            f'reported top-1 / top-5: {starts} (reported by: {spec.accuracy[0].reported_by}). {spec.notes}')
    lines += ['', 'Not graftable exactly, so no tag:', '']
    lines += [f'- `{archs}`: {why}' for archs, why in NOT_GRAFTABLE.items()]
    return lines


def render() -> str:
    """The full MODEL_CARD.md text."""
    header = _HEADER.format(**{key: f'{f.authors}, *{f.paper_name}*, {f.paper_ids}' for key, f in FAMILIES.items()})
    lines = [header, '## Models and weights', '', *_models_table(), _TABLE_NOTE.rstrip('\n'), *_provenance(),
             *_grafts(), *_no_weights()]
    citations = '\n'.join([*(f.bibtex for f in FAMILIES.values()), _TIMM_BIBTEX])
    return '\n'.join(lines) + '\n' + _FOOTER + citations + '\n```\n'


ZOO_TABLE_BEGIN = '<!-- Zoo table generated from timm_sesk/models by `make zoo-table`; do not edit by hand. -->'
ZOO_TABLE_END = '<!-- End of the generated zoo table. -->'


def render_zoo_table() -> str:
    """README's zoo table: a row for each network the model families declare, in declaration order."""
    networks: Dict[str, List[Arch]] = {}
    for arch in ARCHS.values():
        networks.setdefault(arch.network, []).append(arch)
    lines = ['| model | network | reproduces |', '|---|---|---|']
    for network, archs in networks.items():
        names = ', '.join(f'`{a.name}`' for a in archs)
        lines.append(f'| {names} | {network} | {describe_references([a.reference for a in archs])} |')
    return '\n'.join(lines)


def _with_table(readme: str, begin_marker: str, end_marker: str, table: str) -> str:
    """The README text with the table between the two markers replaced."""
    head, begin, rest = readme.partition(begin_marker)
    _, end, tail = rest.partition(end_marker)
    if not (begin and end):
        raise ValueError(f'no table markers in the README: {begin_marker} ... {end_marker}')
    return f'{head}{begin}\n\n{table}\n\n{end}{tail}'


def with_zoo_table(readme: str) -> str:
    """The README text with the zoo table between its markers regenerated."""
    return _with_table(readme, ZOO_TABLE_BEGIN, ZOO_TABLE_END, render_zoo_table())


TWIN_TABLE_BEGIN = '<!-- Twin table generated from timm_sesk/models by `make zoo-table`; do not edit by hand. -->'
TWIN_TABLE_END = '<!-- End of the generated twin table. -->'


def render_twin_table() -> str:
    """README's table of timm's built-in twins: a row for each network's portable architectures, in declaration
    order, and one for those without a twin."""
    portable = twins()
    networks: Dict[str, List[Arch]] = {}
    for arch in ARCHS.values():
        if arch.name in portable:
            networks.setdefault(arch.network, []).append(arch)
    lines = ["| model | a portable export is timm's |", '|---|---|']
    for archs in networks.values():
        names = ', '.join(f'`{a.name}`' for a in archs)
        built_in = ', '.join(f'`{portable[a.name]}`' for a in archs)
        lines.append(f'| {names} | {built_in} |')
    twinless = [a for a in ARCHS.values() if a.name not in portable]
    if twinless:
        lines.append(f"| {', '.join(f'`{a.name}`' for a in twinless)} | no twin (timm registers no "
                     f"{', '.join(a.reference.name for a in twinless)}): timm_sesk's layout |")
    return '\n'.join(lines)


def with_twin_table(readme: str) -> str:
    """The README text with the twin table between its markers regenerated."""
    return _with_table(readme, TWIN_TABLE_BEGIN, TWIN_TABLE_END, render_twin_table())


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate MODEL_CARD.md from the weights manifest, or README.md's zoo table from the models.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument('--write', metavar='PATH', help='write the card (or the zoo table of the README) to PATH')
    group.add_argument('--check', metavar='PATH', help='exit 1 if PATH differs from what is generated')
    parser.add_argument('--zoo-table', action='store_true',
                        help="PATH is README.md: generate its zoo table and its twin table only")
    args = parser.parse_args(argv)
    path = Path(args.write or args.check)
    current = path.read_text(encoding='utf-8') if args.check or args.zoo_table else None
    text = with_twin_table(with_zoo_table(current)) if args.zoo_table else render()
    if args.write:
        path.write_text(text, encoding='utf-8')
        return 0
    if current != text:
        flag = ' --zoo-table' if args.zoo_table else ''
        print(f'{path} is out of date; run: python docs/card.py{flag} --write {path}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Key mappings from published checkpoint layouts to timm_sesk's.

Each mapping is a pure function of the state dict: it renames keys and reshapes tensors, and never drops one. The one
tensor ever added is a zero bias where a source's SE layers have none, which computes the same function. Whether the
result fits a model exactly is ``fit``'s to say.
"""
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import torch

__all__ = ['MAPPINGS', 'Fit', 'classifier_size', 'convert_state_dict', 'fit']

StateDict = Dict[str, torch.Tensor]

# The SE and SK FC layers are nn.Linear here; timm, the SENet port and mmpretrain store them as 1x1 convolutions.
_FC_SUFFIXES = ('.fc1.weight', '.fc2.weight', '.fc_reduce.weight', '.fc_select.weight')

# timm's ResNet blocks name each conv and norm separately (conv1, bn1); ours group them into ConvBnAct units.
_SPLIT_CONV_BN = (
    (r'^(layer\d+\.\d+)\.conv(\d)\.weight$', r'\1.conv\2.conv.weight'),
    (r'^(layer\d+\.\d+)\.bn(\d)\.', r'\1.conv\2.bn.'),
)

# The SENet authors' layout (timm's senet.py, from Cadene's port): stem under layer0, SE as se_module, last_linear.
_SENET_STEM_7X7 = (
    (r'^layer0\.conv1\.', 'conv1.'),
    (r'^layer0\.bn1\.', 'bn1.'),
)
_SENET_STEM_DEEP = (  # three 3x3 convs (SENet-154), laid out as timm's deep stem: conv1.{0,1,3,4,6} + bn1
    (r'^layer0\.conv1\.', 'conv1.0.'),
    (r'^layer0\.bn1\.', 'conv1.1.'),
    (r'^layer0\.conv2\.', 'conv1.3.'),
    (r'^layer0\.bn2\.', 'conv1.4.'),
    (r'^layer0\.conv3\.', 'conv1.6.'),
    (r'^layer0\.bn3\.', 'bn1.'),
)
_SENET_BODY = (
    *_SPLIT_CONV_BN,
    (r'\.se_module\.', '.se.'),
    (r'^last_linear\.', 'fc.'),
)


# mmpretrain (OpenMMLab) SE-ResNets: an ImageClassifier with backbone/head, SE convs wrapped in ConvModules.
_MMPRETRAIN = (
    (r'^backbone\.', ''),
    (r'^head\.fc\.', 'fc.'),
    (r'\.se_layer\.conv(\d)\.conv\.', r'.se.fc\1.'),  # ConvModule (mmcls from 2020-06-30, the released weights)
    (r'\.se_layer\.conv(\d)\.', r'.se.fc\1.'),  # plain Conv2d (earlier mmcls)
    *_SPLIT_CONV_BN,
)

# moskomule/senet.pytorch: torchvision's ResNet with an SE bottleneck, SE as Sequential(Linear, ReLU, Linear, Sigmoid).
_SENET_PYTORCH = (
    (r'\.se\.fc\.0\.', '.se.fc1.'),
    (r'\.se\.fc\.2\.', '.se.fc2.'),
    *_SPLIT_CONV_BN,
)


def _rename(state_dict: Mapping[str, torch.Tensor], rules: Iterable[Tuple[str, str]]) -> StateDict:
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out = {}
    for key, value in state_dict.items():
        new_key = key
        for pattern, repl in compiled:
            new_key = pattern.sub(repl, new_key)
        if new_key in out:
            raise ValueError(f'key mapping sends two checkpoint keys to {new_key!r}')
        out[new_key] = value
    return out


def _fc_as_linear(state_dict: StateDict) -> StateDict:
    return {
        k: v.flatten(1) if k.endswith(_FC_SUFFIXES) and v.ndim == 4 else v
        for k, v in state_dict.items()
    }


def native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """timm_sesk's own layout (our exports and fine-tuned checkpoints)."""
    return dict(state_dict)


def timm_resnet(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """timm's ``resnet.py`` models (``seresnet*``, ``seresnext*``): split conv/bn names, SE FCs as 1x1 convs."""
    return _fc_as_linear(_rename(state_dict, _SPLIT_CONV_BN))


def timm_sknet(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """timm's ``sknet.py`` models (``skresnet*``, ``skresnext*``): same unit names, SK FCs as 1x1 convs."""
    return _fc_as_linear(dict(state_dict))


def timm_senet(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """timm's ``senet.py`` models (``legacy_*``), the SENet authors' networks as ported by Cadene."""
    stem = _SENET_STEM_DEEP if 'layer0.conv2.weight' in state_dict else _SENET_STEM_7X7
    return _fc_as_linear(_rename(state_dict, (*stem, *_SENET_BODY)))


def mmpretrain(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmpretrain's ``SEResNet`` classifiers (``seresnet50_8xb32_in1k``, ``seresnet101_8xb32_in1k``)."""
    return _fc_as_linear(_rename(state_dict, _MMPRETRAIN))


def senet_pytorch(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """moskomule/senet.pytorch's ``se_resnet50``. Its SE layers have no biases; they get zero biases here."""
    out = _rename(state_dict, _SENET_PYTORCH)
    for key in [k for k in out if k.endswith(('.se.fc1.weight', '.se.fc2.weight'))]:
        bias = key[:-len('weight')] + 'bias'
        if bias not in out:
            out[bias] = out[key].new_zeros(out[key].shape[0])
    return out


MAPPINGS: Dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    'native': native,
    'timm_resnet': timm_resnet,
    'timm_sknet': timm_sknet,
    'timm_senet': timm_senet,
    'mmpretrain': mmpretrain,
    'senet_pytorch': senet_pytorch,
}


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], mapping: str) -> StateDict:
    """Apply the named mapping to a state dict.

    Args:
        state_dict: State dict in the source layout (``timm_sesk.weights.unwrap`` takes one out of a training
            checkpoint).
        mapping: A key of ``MAPPINGS``.

    Returns:
        The state dict in timm_sesk's layout.
    """
    if mapping not in MAPPINGS:
        raise KeyError(f'unknown key mapping {mapping!r}; known: {sorted(MAPPINGS)}')
    return MAPPINGS[mapping](state_dict)


def classifier_size(state_dict: Mapping[str, torch.Tensor]) -> Optional[int]:
    """Classes of a checkpoint's classifier, in whichever of the layouts of ``MAPPINGS`` it is; None where it has
    none (a backbone)."""
    for convert in MAPPINGS.values():
        try:
            weight = convert(state_dict).get('fc.weight')
        except ValueError:  # the mapping sends two keys to one: not this layout
            continue
        if weight is not None and weight.ndim == 2:
            return int(weight.shape[0])
    return None


def _describe(keys: List[str], limit: int = 20) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')


@dataclass
class Fit:
    """How a state dict fits a model: the model's keys it lacks, its keys the model lacks, and shapes that differ."""

    missing: List[str]
    unexpected: List[str]
    mismatched: List[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)

    def describe(self, examples: int = 2) -> str:
        """E.g. ``12 missing keys (layer1.0.se.fc1.weight, ...), 3 unexpected (...)``, short enough for one line."""
        parts = []
        for what, keys in (('missing key', self.missing), ('unexpected key', self.unexpected),
                           ('shape mismatch', self.mismatched)):
            if keys:
                more = ', ...' if len(keys) > examples else ''
                plural = '' if len(keys) == 1 else 'es' if what.endswith('h') else 's'
                parts.append(f'{len(keys)} {what}{plural} ({", ".join(keys[:examples])}{more})')
        return ', '.join(parts) or 'it fits'

    def explain(self, source: str, model: str) -> str:
        """Why ``source`` does not load into a ``model``, every key listed (up to 20 of each kind), and the fix."""
        problems = [f'{what}: {_describe(keys)}' for what, keys in (
            ('missing keys', self.missing), ('unexpected keys', self.unexpected),
            ('shape mismatches (checkpoint vs model)', self.mismatched)) if keys]
        return (f'{source} does not fit {model} exactly, so nothing was loaded; ' + '; '.join(problems)
                + '. Check that the checkpoint was trained for this architecture and that its key mapping is right.')


def fit(state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size],
        adaptable: Mapping[str, int] = MappingProxyType({})) -> Fit:
    """How ``state_dict`` fits a model whose state dict has the keys and shapes ``expected``.

    Args:
        state_dict: The weights, in the model's layout.
        expected: The model's keys and shapes.
        adaptable: Key prefixes whose tensors may differ from the model's in one dimension, ``{prefix: dim}``, or
            be absent from the model: the stem's input channels (``{'conv1.': 1}``, which timm's
            ``adapt_input_conv`` adapts) and the classifier's classes (``{'fc.': 0}``, a new head). Every other
            dimension must match, and the prefix's tensors must agree on that one (a classifier's weight and bias
            on its classes).
    """
    def dim_of(key: str) -> Optional[int]:
        return next((dim for prefix, dim in adaptable.items() if key.startswith(prefix)), None)

    def fits(key: str) -> bool:
        theirs, ours, dim = state_dict[key].shape, expected[key], dim_of(key)
        return theirs == ours or (dim is not None and len(theirs) == len(ours) and all(
            a == b for i, (a, b) in enumerate(zip(theirs, ours)) if i != dim))

    mismatched = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(shape)}' for k, shape in expected.items()
                  if k in state_dict and not fits(k)]
    for prefix, dim in adaptable.items():
        sizes = {k: v.shape[dim] for k, v in state_dict.items() if k.startswith(prefix) and k in expected
                 and v.ndim > dim}
        if len(set(sizes.values())) > 1:
            mismatched.append(' vs '.join(f'{k} {tuple(state_dict[k].shape)}' for k in sizes))
    return Fit(
        missing=[k for k in expected if k not in state_dict],
        unexpected=[k for k in state_dict if k not in expected and dim_of(k) is None],
        mismatched=mismatched)

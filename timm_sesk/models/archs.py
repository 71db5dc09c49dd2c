"""The zoo's architectures, each declared once, and the families and papers they belong to.

A family module (``se_resnet``, ``sk_resnet``) declares its architectures in one table of ``Arch`` rows, grouped by
the network they are, above its thin ``@register_model`` entrypoints, as timm's modules put ``default_cfgs`` above
theirs. Everything else about an architecture derives from its row:

* its ``default_cfgs`` (``declare``: the family's paper, the manifest's pretrained tags),
* the model its entrypoint builds (``create``: the row's ``model_args``),
* the reference network it is proven equal to (``timm_sesk.weights.REFERENCES``),
* its plain twin (benchmarks' cost floor; grafts start from it),
* the test suite's model lists, and README's zoo table (``docs/card.py``).

Adding an architecture is one row and one entrypoint, plus its manifest entry (or ``NO_WEIGHTS`` reason).
"""
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Optional, Sequence, Tuple

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from timm_sesk.layers import SelectiveKernel, SqueezeExcite
from timm_sesk.weights import REFERENCES, Reference, pretrained_cfgs

from .trunk import SeskResNet, create_sesk_resnet

__all__ = ['ARCHS', 'FAMILIES', 'Arch', 'Family', 'create', 'declare', 'families_of']


@dataclass(frozen=True)
class Family:
    """An attention family and the paper that defines it: the one place its paper data is written.

    Attributes:
        key: ``'se'`` or ``'sk'``: the prefix of its models' names.
        unit: Module type whose presence in a model makes the model a member of the family.
        hub_tag: Hugging Face Hub tag of its models.
        paper_name: Title of the paper.
        arxiv: arXiv id of the paper.
        authors: Short author credit, as the model card cites it.
        bibtex: BibTeX entry of the paper.
    """

    key: str
    unit: type
    hub_tag: str
    paper_name: str
    arxiv: str
    authors: str
    bibtex: str

    @property
    def paper_ids(self) -> str:
        return f'arXiv:{self.arxiv}'

    @property
    def paper_url(self) -> str:
        return f'https://arxiv.org/abs/{self.arxiv}'


FAMILIES: Dict[str, Family] = {f.key: f for f in (
    Family(
        'se', SqueezeExcite, 'squeeze-and-excitation', 'Squeeze-and-Excitation Networks', '1709.01507', 'Hu et al.',
        '@inproceedings{hu2018senet,\n'
        '  title={Squeeze-and-Excitation Networks},\n'
        '  author={Hu, Jie and Shen, Li and Albanie, Samuel and Sun, Gang and Wu, Enhua},\n'
        '  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},\n'
        '  year={2018}\n'
        '}'),
    Family(
        'sk', SelectiveKernel, 'selective-kernel', 'Selective Kernel Networks', '1903.06586', 'Li et al.',
        '@inproceedings{li2019sknet,\n'
        '  title={Selective Kernel Networks},\n'
        '  author={Li, Xiang and Wang, Wenhai and Hu, Xiaolin and Yang, Jian},\n'
        '  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},\n'
        '  year={2019}\n'
        '}'),
)}


@dataclass(frozen=True)
class Arch:
    """One architecture of the zoo.

    Attributes:
        name: Registered model name; its entrypoint has this name.
        model_args: ``SeskResNet`` arguments that make it this network.
        reference: The published network it is proven equal to.
        plain_twin: timm's registered plain network with the same trunk (stem, depths, widths, activations) and no
            SE/SK, or None where timm registers none.
        family: Key of ``FAMILIES``; set by ``declare``.
        network: What network it is, the zoo table's row; set by ``declare`` from the table's grouping.
    """

    name: str
    model_args: Dict[str, Any] = field(hash=False)
    reference: Reference
    plain_twin: Optional[str] = None
    family: str = ''
    network: str = ''


# Every declared architecture by name, in declaration order (filled by ``declare``, as timm's registry is filled by
# ``@register_model``).
ARCHS: Dict[str, Arch] = {}


def _cfg(family: Family, **kwargs) -> Dict[str, Any]:
    return {
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'conv1', 'classifier': 'fc',
        'license': 'apache-2.0',
        'paper_ids': family.paper_ids, 'paper_name': family.paper_name,
        **kwargs,
    }


def declare(family: str, networks: Dict[str, Sequence[Arch]]) -> Dict[str, Dict[str, Any]]:
    """Declare a family module's architectures; returns the entries of its ``default_cfgs``.

    Args:
        family: Key of ``FAMILIES``.
        networks: The architectures, grouped under what network they are (README's zoo table has a row a group).

    Returns:
        ``{'arch.tag': cfg}`` for every pretrained tag of the manifest, ``{'arch': cfg}`` for architectures without.
    """
    cfgs = {}
    for network, archs in networks.items():
        for arch in archs:
            if arch.name in ARCHS:
                raise ValueError(f'{arch.name} is declared twice')
            ARCHS[arch.name] = replace(arch, family=family, network=network)
            REFERENCES[arch.name] = arch.reference
            # A deep stem is a Sequential in timm's ResNet: its first conv is conv1.0.
            first_conv = 'conv1.0' if 'deep' in arch.model_args.get('stem_type', '') else 'conv1'
            cfgs.update(pretrained_cfgs(arch.name, _cfg(FAMILIES[family], first_conv=first_conv)))
    return cfgs


def create(variant: str, pretrained: bool = False, **kwargs) -> SeskResNet:
    """Build a declared architecture: its ``model_args`` overridden by ``kwargs``."""
    return create_sesk_resnet(variant, pretrained, **dict(ARCHS[variant].model_args, **kwargs))


def families_of(model: nn.Module) -> Tuple[str, ...]:
    """Keys of the families whose units the model contains: ``('sk',)``, ``('se', 'sk')``, or ``()`` if none."""
    return tuple(f.key for f in FAMILIES.values() if any(isinstance(m, f.unit) for m in model.modules()))

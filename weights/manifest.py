"""Every pretrained tag of timm_sesk: where its weights come from and what is known of them.

This file is the single source of truth for pretrained weights. The models' ``default_cfgs`` and the table in
MODEL_CARD.md are generated from it. Accuracy figures are those the source reports; none were measured here.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ['GRAFT_TAG_PREFIX', 'NOT_GRAFTABLE', 'NO_WEIGHTS', 'WEIGHTS', 'ReportedAccuracy', 'WeightSpec']

# Tags named graft_<plain network> hold a plain network's weights, grafted onto the SE/SK model as they load: the
# loader finds them in the plain layout (timm_sesk.loading) and grafts them (timm_sesk.graft).
GRAFT_TAG_PREFIX = 'graft'


@dataclass(frozen=True)
class ReportedAccuracy:
    """ImageNet-1k validation accuracy as reported by the weights' source (not measured by this project).

    Attributes:
        top1: Top-1 accuracy, percent.
        top5: Top-5 accuracy, percent (None where the source reports none).
        img_size: Evaluation image size.
        crop_pct: Evaluation center-crop fraction.
        reported_by: Where the figures are published.
    """

    top1: float
    top5: Optional[float]
    img_size: int
    crop_pct: float
    reported_by: str


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained tag.

    Attributes:
        arch: Our model name.
        tag: Pretrained tag; the first tag listed for an architecture is its default.
        trained_as: The network the weights were trained on, as published (timm model name or source repository).
        mapping: Key of ``mapping.MAPPINGS`` turning the published checkpoint into our layout.
        license: Licence of the weights.
        hf_hub_id: Hugging Face Hub repository of the weights, if hosted there.
        hf_hub_filename: File in that repository (timm's default, ``model.safetensors``, if None).
        url: Direct URL of the weights, for sources not on the Hub.
        hash_prefix: Leading hex digits the file's sha256 must have, checked as it downloads. Set only where the
            publisher names its files ``<name>-<sha256 prefix>.<ext>`` (timm's releases, the Cadene/SENet
            conversions, OpenMMLab's ``publish_model``); hex digits in a name are no pin by themselves.
        input_size: Training/eval input size (C, H, W).
        test_input_size: Larger evaluation size the source recommends, if any.
        crop_pct: Center-crop fraction for evaluation.
        test_crop_pct: Crop fraction at ``test_input_size``.
        interpolation: Resize interpolation.
        mean: Input normalisation mean.
        std: Input normalisation std.
        accuracy: Accuracy the source reports, at the eval size first. For a graft, the plain network's: the graft
            starts as that network's function, and no accuracy is claimed for it after training.
        origin_url: Page describing the weights.
        notes: Provenance notes for the model card.
    """

    arch: str
    tag: str
    trained_as: str
    mapping: str
    license: str
    hf_hub_id: Optional[str] = None
    hf_hub_filename: Optional[str] = None
    url: Optional[str] = None
    hash_prefix: Optional[str] = None
    input_size: Tuple[int, int, int] = (3, 224, 224)
    test_input_size: Optional[Tuple[int, int, int]] = None
    crop_pct: float = 0.875
    test_crop_pct: Optional[float] = None
    interpolation: str = 'bicubic'
    mean: Tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: Tuple[float, ...] = IMAGENET_DEFAULT_STD
    accuracy: Tuple[ReportedAccuracy, ...] = ()
    origin_url: Optional[str] = None
    notes: str = ''

    @property
    def name(self) -> str:
        return f'{self.arch}.{self.tag}'

    @property
    def is_graft(self) -> bool:
        """The weights are a plain network's (``trained_as``), grafted: SE/SK attention untrained."""
        return self.tag.startswith(f'{GRAFT_TAG_PREFIX}_')

    @property
    def source(self) -> str:
        """Where the file is fetched from, for messages and the model card."""
        if self.hf_hub_id:
            return f'hf-hub:{self.hf_hub_id}'
        return self.url or ''


_TIMM_RESULTS = 'timm results-imagenet.csv (pytorch-image-models@aa4b585)'
_TIMM_RELEASES = 'https://github.com/rwightman/pytorch-image-models/releases/download'
_TIMM_REPO = 'https://github.com/huggingface/pytorch-image-models'
_GLUON = 'https://cv.gluon.ai/model_zoo/classification.html'
_SENET = 'https://github.com/hujie-frank/SENet'
_MMPRETRAIN = 'https://github.com/open-mmlab/mmpretrain/tree/main/configs/seresnet'
_MMPRETRAIN_RESULTS = 'mmpretrain configs/seresnet/metafile.yml (open-mmlab/mmpretrain@ee7f2e8)'
_MMPRETRAIN_NOTES = (
    'Trained by OpenMMLab (training logs of 2020-07) and published on 2020-08-04, before mmclassification v0.6; the '
    "metafile's link to v0.15 is to the code, not to when the weights were made. Published as an mmcv checkpoint "
    "(meta + state_dict). The 8 hex digits in its name are the sha256 prefix OpenMMLab's publish_model writes, "
    'pinned here. Not checked against the real file here.')


def _timm_acc(*rows: Tuple[float, float, int, float]) -> Tuple[ReportedAccuracy, ...]:
    """Rows of timm's results-imagenet.csv: (top1, top5, img_size, crop_pct)."""
    return tuple(ReportedAccuracy(top1, top5, size, crop, _TIMM_RESULTS) for top1, top5, size, crop in rows)


def _hash_in_name(filename: str) -> str:
    """The sha256 prefix a published file name carries, '<name>-<hex>.<ext>' (torch.hub / OpenMMLab convention)."""
    return filename.rsplit('-', 1)[1].split('.')[0]


def _mmpretrain(arch: str, config: str, filename: str, top1: float, top5: float) -> WeightSpec:
    """OpenMMLab's SE-ResNet weights, an mmcv checkpoint on download.openmmlab.com."""
    return WeightSpec(
        arch, 'mmpretrain_in1k', trained_as=f'mmpretrain:{config}', mapping='mmpretrain', license='apache-2.0',
        url=f'https://download.openmmlab.com/mmclassification/v0/se-resnet/{filename}',
        hash_prefix=_hash_in_name(filename), interpolation='bilinear', origin_url=_MMPRETRAIN,
        accuracy=(ReportedAccuracy(top1, top5, 224, 0.875, _MMPRETRAIN_RESULTS),), notes=_MMPRETRAIN_NOTES)


def _timm_hub(arch: str, tag: str, trained_as: str, mapping: str, **kwargs) -> WeightSpec:
    """Weights hosted by timm on the Hub, under ``timm/{trained_as}.{tag}``."""
    return WeightSpec(
        arch, tag, trained_as=trained_as, mapping=mapping, license='apache-2.0',
        hf_hub_id=f'timm/{trained_as}.{tag}', **kwargs)


def _senet_layout(arch: str, trained_as: str, release: str, filename: str, **kwargs) -> WeightSpec:
    """Weights of timm's legacy SENet port, released as GitHub assets whose names carry their sha256 prefix."""
    kwargs.setdefault('interpolation', 'bilinear')
    return WeightSpec(
        arch, 'in1k', trained_as=trained_as, mapping='timm_senet', license='apache-2.0',
        url=f'{_TIMM_RELEASES}/{release}/{filename}', hash_prefix=_hash_in_name(filename), **kwargs)


def _graft(arch: str, plain: str, license: str, accuracy: Tuple[Tuple[float, float, int, float], ...],
           why: str, **kwargs) -> WeightSpec:
    """A plain timm network's Hub weights, grafted onto ``arch`` as they load: tag ``graft_<plain name>``.

    The data config (``kwargs``) is the plain tag's, as timm registers it; the accuracy is the plain network's, as
    timm's results CSV reports it: the graft starts as that network's function.
    """
    trained_as = plain.split('.')[0]
    reported_by = f"{_TIMM_RESULTS}, the plain {plain}'s figure: the graft's starting point"
    return WeightSpec(
        arch, f'{GRAFT_TAG_PREFIX}_{plain.replace(".", "_")}', trained_as=trained_as, mapping='timm_resnet',
        license=license, hf_hub_id=f'timm/{plain}',
        accuracy=tuple(ReportedAccuracy(*row, reported_by) for row in accuracy),
        notes=f'Grafted from the plain {plain} (timm_sesk.graft), which it starts as exactly; the attention units '
              f'it adds are untrained: fine-tune before use. No trained weights exist: {why}',
        **kwargs)


_RSB = dict(crop_pct=0.95, test_input_size=(3, 288, 288), test_crop_pct=1.0, origin_url=_TIMM_REPO)
_CADENE = (
    "The SENet authors' Caffe model (github.com/hujie-frank/SENet), converted to PyTorch by Cadene "
    '(pretrainedmodels); timm re-hosts the converted file.')
_CADENE_REHASHED = (
    "The SENet authors' Caffe model (github.com/hujie-frank/SENet), converted to PyTorch by Cadene "
    '(pretrainedmodels), first published as data.lip6.fr/cadene/pretrainedmodels/{}; timm re-hosts it under a new '
    'name after a pickle scan and re-hash (timm commit e11efa87).')
_TIMM_TRAINED = "Trained by timm's author on this layout (timm's legacy SENet code)."

WEIGHTS: Tuple[WeightSpec, ...] = (
    # --- SK family: timm's trainings (RandAugment recipe) ---
    _timm_hub('sk_resnet18', 'ra_in1k', 'skresnet18', 'timm_sknet',
              accuracy=_timm_acc((73.020, 91.172, 224, 0.875))),
    _timm_hub('sk_resnet34', 'ra_in1k', 'skresnet34', 'timm_sknet',
              accuracy=_timm_acc((76.956, 93.320, 224, 0.875))),
    _timm_hub('sk_resnet50', 'ra_in1k', 'skresnext50_32x4d', 'timm_sknet',
              accuracy=_timm_acc((80.168, 94.644, 224, 0.875)),
              notes="timm's skresnext50_32x4d is SKNet-50 of the paper (paper: 79.21 top-1 at 224)."),
    # --- SE family, timm's layout ---
    _timm_hub('se_resnet50', 'ra2_in1k', 'seresnet50', 'timm_resnet',
              test_input_size=(3, 288, 288), test_crop_pct=0.95, origin_url=_TIMM_REPO,
              accuracy=_timm_acc((80.260, 95.068, 224, 0.875), (81.288, 95.652, 288, 0.95))),
    _timm_hub('se_resnet50', 'a2_in1k', 'seresnet50', 'timm_resnet', **_RSB,
              accuracy=_timm_acc((80.102, 94.720, 224, 0.95), (81.094, 95.230, 288, 1.0)),
              notes='ResNet strikes back, procedure A2 (arXiv:2110.00476).'),
    _timm_hub('se_resnet50', 'a1_in1k', 'seresnet50', 'timm_resnet', **_RSB,
              accuracy=_timm_acc((80.012, 94.704, 224, 0.95), (81.114, 95.122, 288, 1.0)),
              notes='ResNet strikes back, procedure A1 (arXiv:2110.00476).'),
    _mmpretrain('se_resnet50', 'seresnet50_8xb32_in1k', 'se-resnet50_batch256_imagenet_20200804-ae206104.pth',
                77.74, 93.84),
    WeightSpec(
        'se_resnet50', 'senet_pytorch_in1k', trained_as='senet.pytorch:se_resnet50', mapping='senet_pytorch',
        license='mit',
        url='https://github.com/moskomule/senet.pytorch/releases/download/archive/seresnet50-60a8950a85b2b.pkl',
        interpolation='bilinear', origin_url='https://github.com/moskomule/senet.pytorch',
        accuracy=(ReportedAccuracy(77.06, None, 224, 0.875, 'senet.pytorch README (max. top-1 over epochs)'),),
        notes='Its SE layers are the reference blog\'s bias-free nn.Linear; they load as zero biases, the same '
              'function. Its file name carries 60a8950a85b2b, but senet.pytorch never checks it as a hash (it loads '
              'the file with check_hash=False) and nothing shows it is a sha256 prefix, so it is not pinned here: the '
              'download is checked only for being a tensors-only checkpoint that fits the model exactly.'),
    _timm_hub('se_resnet50', 'a3_in1k', 'seresnet50', 'timm_resnet',
              input_size=(3, 160, 160), crop_pct=0.95, test_input_size=(3, 224, 224), test_crop_pct=0.95,
              origin_url=_TIMM_REPO, accuracy=_timm_acc((75.104, 92.096, 160, 0.95), (77.036, 93.072, 224, 0.95)),
              notes='ResNet strikes back, procedure A3 (arXiv:2110.00476), trained at 160 px.'),
    _timm_hub('se_resnext50_32x4d', 'racm_in1k', 'seresnext50_32x4d', 'timm_resnet',
              test_input_size=(3, 288, 288), test_crop_pct=0.95, origin_url=_TIMM_REPO,
              accuracy=_timm_acc((81.268, 95.624, 224, 0.875), (82.186, 96.146, 288, 0.95))),
    _timm_hub('se_resnext50_32x4d', 'gluon_in1k', 'seresnext50_32x4d', 'timm_resnet', origin_url=_GLUON,
              accuracy=_timm_acc((79.916, 94.816, 224, 0.875)),
              notes='Trained with MXNet Gluon (GluonCV model zoo), ported by timm.'),
    _timm_hub('se_resnext101_32x4d', 'gluon_in1k', 'seresnext101_32x4d', 'timm_resnet', origin_url=_GLUON,
              accuracy=_timm_acc((80.886, 95.268, 224, 0.875)),
              notes='Trained with MXNet Gluon (GluonCV model zoo), ported by timm.'),
    _mmpretrain('se_resnet101', 'seresnet101_8xb32_in1k', 'se-resnet101_batch256_imagenet_20200804-ba5b51d4.pth',
                78.26, 94.07),
    # --- SE family, the SENet authors' layout (timm's legacy_* weights) ---
    _senet_layout('se_resnet18_orig', 'legacy_seresnet18', 'v0.1-weights', 'seresnet18-4bb0ce65.pth',
                  interpolation='bicubic', accuracy=_timm_acc((71.742, 90.340, 224, 0.875)), notes=_TIMM_TRAINED),
    _senet_layout('se_resnet34_orig', 'legacy_seresnet34', 'v0.1-weights', 'seresnet34-a4004e63.pth',
                  accuracy=_timm_acc((74.788, 92.134, 224, 0.875)), notes=_TIMM_TRAINED),
    _senet_layout('se_resnet50_orig', 'legacy_seresnet50', 'v0.1-cadene', 'se_resnet50-ce0d4300.pth',
                  accuracy=_timm_acc((77.650, 93.732, 224, 0.875)), origin_url=_SENET, notes=_CADENE),
    _senet_layout('se_resnet101_orig', 'legacy_seresnet101', 'v0.1-cadene', 'se_resnet101-7e38fcc6.pth',
                  accuracy=_timm_acc((78.370, 94.264, 224, 0.875)), origin_url=_SENET, notes=_CADENE),
    _senet_layout('se_resnet152_orig', 'legacy_seresnet152', 'v0.1-cadene', 'se_resnet152-d17c99b7.pth',
                  accuracy=_timm_acc((78.662, 94.370, 224, 0.875)), origin_url=_SENET, notes=_CADENE),
    _senet_layout('se_resnext26_32x4d_orig', 'legacy_seresnext26_32x4d', 'v0.1-weights',
                  'seresnext26_32x4d-65ebdb501.pth', interpolation='bicubic',
                  accuracy=_timm_acc((77.100, 93.332, 224, 0.875)),
                  notes=_TIMM_TRAINED + ' Its name carries 9 hex digits (65ebdb501), not the usual 8; all 9 are '
                                        'pinned, as torch.hub would check them.'),
    _senet_layout('se_resnext50_32x4d_orig', 'legacy_seresnext50_32x4d', 'v0.1-weights',
                  'legacy_se_resnext50_32x4d-f3651bad.pth', accuracy=_timm_acc((79.080, 94.428, 224, 0.875)),
                  origin_url=_SENET, notes=_CADENE_REHASHED.format('se_resnext50_32x4d-a260b3a4.pth')),
    _senet_layout('se_resnext101_32x4d_orig', 'legacy_seresnext101_32x4d', 'v0.1-weights',
                  'legacy_se_resnext101_32x4d-37725eac.pth', accuracy=_timm_acc((80.274, 95.032, 224, 0.875)),
                  origin_url=_SENET, notes=_CADENE_REHASHED.format('se_resnext101_32x4d-3b2fe3d8.pth')),
    _senet_layout('se_net154_orig', 'legacy_senet154', 'v0.1-weights', 'legacy_senet154-e9eb9fe6.pth',
                  accuracy=_timm_acc((81.320, 95.502, 224, 0.875)), origin_url=_SENET,
                  notes=_CADENE_REHASHED.format('senet154-c7b49a05.pth')),
    # --- Grafts: plain twins' weights, grafted as they load (timm_sesk.graft); no trained weights exist ---
    _graft('se_resnet18', 'resnet18.a1_in1k', 'apache-2.0',
           ((71.504, 90.086, 224, 0.95), (73.164, 91.054, 288, 1.0)),
           "timm registers seresnet18 but publishes no weights for it. The trained SE-ResNet-18 (timm's "
           'legacy_seresnet18) has the SENet layout: se_resnet18_orig.', **_RSB),
    _graft('se_resnet34', 'resnet34.a1_in1k', 'apache-2.0',
           ((76.420, 92.896, 224, 0.95), (77.930, 93.758, 288, 1.0)),
           "timm registers seresnet34 but publishes no weights for it. The trained SE-ResNet-34 (timm's "
           'legacy_seresnet34) has the SENet layout: se_resnet34_orig.', **_RSB),
    _graft('se_resnet152', 'resnet152.a1_in1k', 'apache-2.0',
           ((81.998, 95.294, 224, 0.95), (82.742, 95.734, 288, 1.0)),
           "none is published in this layout: timm's seresnet152 is untrained (its trained seresnet152d has a deep "
           'stem and average-pool downsampling, a different network) and mmpretrain releases SE-ResNet-50/101 only. '
           "The SENet authors' SE-ResNet-152 is se_resnet152_orig.", **_RSB),
    _graft('sk_resnet101', 'resnext101_32x4d.gluon_in1k', 'apache-2.0', ((80.336, 94.908, 224, 0.875),),
           'the SKNet authors release SKNet-101 only as a Caffe model on Google Drive (github.com/implus/SKNet), '
           'which cannot be fetched or checked here; no PyTorch conversion of known provenance exists.',
           origin_url=_GLUON),
)

# Why an architecture has no pretrained tag. The model card lists these; a test checks that every such model is here.
NO_WEIGHTS = {
    'sk_resnet26': 'None published: the SKNet authors release SKNet-50 and SKNet-101 only (github.com/implus/SKNet), '
                   'and timm trains no SKNet-26. No graft either: no plain ResNeXt-26 32x4d with weights has its '
                   "stem (timm's resnext26ts and seresnext26d/t have other stems).",
}

# Architectures with no exact graft from a plain ResNet, and why (README and MODEL_CARD.md list them).
NOT_GRAFTABLE = {
    'sk_resnet18, sk_resnet34': 'their SK units split the input channels across the paths, so no path sees what the '
                                'plain 3x3 conv sees. The non-split variant with dense kernels '
                                '(sk_split_input=False, sk_keep_3x3=False) is graftable.',
    'sk_resnet26': 'graftable from a plain ResNeXt-26 32x4d (e.g. your own), but no such network with weights has its '
                   'stem, so there is no tag.',
    '*_orig': "the SENet authors' layout (Caffe stem pooling, stride in the first 1x1, SE width C // 16, Cadene's "
              "basic block) computes another function than timm's plain ResNets.",
}

"""Every pretrained tag of timm_sesk: where its weights come from and what is known of them.

This file is the single source of truth for pretrained weights. The models' ``default_cfgs`` and the table in
MODEL_CARD.md are generated from it. Accuracy figures are those the source reports; none were measured here.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ['WEIGHTS', 'ReportedAccuracy', 'WeightSpec']


@dataclass(frozen=True)
class ReportedAccuracy:
    """ImageNet-1k validation accuracy as reported by the weights' source (not measured by this project).

    Attributes:
        top1: Top-1 accuracy, percent.
        top5: Top-5 accuracy, percent.
        img_size: Evaluation image size.
        crop_pct: Evaluation center-crop fraction.
        reported_by: Where the figures are published.
    """

    top1: float
    top5: float
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
        hash_prefix: Leading hex digits of the file's sha256, as carried in its name (torch.hub convention).
        sha256: Full sha256 of the file, recorded only where computed from the real file.
        input_size: Training/eval input size (C, H, W).
        test_input_size: Larger evaluation size the source recommends, if any.
        crop_pct: Center-crop fraction for evaluation.
        test_crop_pct: Crop fraction at ``test_input_size``.
        interpolation: Resize interpolation.
        mean: Input normalisation mean.
        std: Input normalisation std.
        accuracy: Accuracy the source reports.
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
    sha256: Optional[str] = None
    input_size: Tuple[int, int, int] = (3, 224, 224)
    test_input_size: Optional[Tuple[int, int, int]] = None
    crop_pct: float = 0.875
    test_crop_pct: Optional[float] = None
    interpolation: str = 'bicubic'
    mean: Tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: Tuple[float, ...] = IMAGENET_DEFAULT_STD
    accuracy: Optional[ReportedAccuracy] = None
    origin_url: Optional[str] = None
    notes: str = ''

    @property
    def name(self) -> str:
        return f'{self.arch}.{self.tag}'

    @property
    def source(self) -> str:
        """Where the file is fetched from, for messages and the model card."""
        if self.hf_hub_id:
            return f'hf-hub:{self.hf_hub_id}'
        return self.url or ''


WEIGHTS: Tuple[WeightSpec, ...] = ()

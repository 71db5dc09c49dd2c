"""Every model computes the same function as the published network it reproduces.

For each architecture: build its reference (timm's own implementation), randomise every BatchNorm, map the
reference's state dict onto ours with the mapping the pretrained loader uses, and compare logits in fp32.
"""
import pytest
import timm
import torch
from helpers import IMG, randomize_bn, rel_err

import timm_sesk
from timm_sesk.weights import REFERENCES, convert_state_dict, create_reference

TOL = 1e-5


def _reference_and_ours(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    reference = randomize_bn(create_reference(arch), seed=seed).eval()
    ours = timm.create_model(arch).eval()
    ours.load_state_dict(convert_state_dict(reference.state_dict(), REFERENCES[arch].mapping), strict=True)
    return reference, ours


def test_every_model_has_a_reference():
    assert sorted(REFERENCES) == sorted(timm_sesk.list_models())


@pytest.mark.parametrize('arch', sorted(REFERENCES))
def test_logits_match_reference(arch):
    reference, ours = _reference_and_ours(arch)
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        actual = ours(x)
    assert actual.shape == expected.shape
    assert rel_err(actual, expected) < TOL


@pytest.mark.parametrize('arch', ['se_resnet50_orig', 'se_net154_orig', 'sk_resnet50'])
def test_features_match_reference_at_odd_size(arch):
    # An odd, non-square input exercises the stem pooling's padding and ceil mode, where the layouts differ.
    reference, ours = _reference_and_ours(arch, seed=3)
    x = torch.randn(1, 3, 75, 53, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference.forward_features(x)
        actual = ours.forward_features(x)
    assert actual.shape == expected.shape
    assert rel_err(actual, expected) < TOL


@pytest.mark.parametrize('arch, impostor', [
    ('se_resnet50_orig', 'se_resnet50'),  # stride on the 3x3 and a padded stem pool instead of the Caffe layout
    ('se_resnext50_32x4d_orig', 'se_resnext50_32x4d'),  # only the stem pool differs
])
def test_a_near_miss_layout_gives_different_logits(arch, impostor):
    """The comparison is sharp: the same tensors in a near-miss architecture fail it."""
    reference, _ = _reference_and_ours(arch)
    wrong = timm.create_model(impostor).eval()
    mapped = convert_state_dict(reference.state_dict(), REFERENCES[arch].mapping)
    wrong.load_state_dict(mapped, strict=True)
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel_err(wrong(x), reference(x)) > 1e-2


def test_se_width_difference_is_caught_by_strict_loading():
    # timm's SE-ResNet-18 rounds the SE width of 64 channels up to 8; the SENet layout keeps 64 // 16 = 4.
    reference, _ = _reference_and_ours('se_resnet18_orig')
    mapped = convert_state_dict(reference.state_dict(), REFERENCES['se_resnet18_orig'].mapping)
    with pytest.raises(RuntimeError, match='size mismatch'):
        timm.create_model('se_resnet18').load_state_dict(mapped, strict=True)

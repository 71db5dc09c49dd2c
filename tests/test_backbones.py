"""Backbones for detection and segmentation: ``features_only`` at output strides 32, 16 and 8, and a consumer."""
import pytest
import timm
import torch
from helpers import IMG, randomize_bn
from torch import nn
from torch.nn import functional as F

import timm_sesk
from timm_sesk.layers import SelectiveKernel

ALL = sorted(timm_sesk.list_models())
REPRESENTATIVE = ['se_resnet18', 'se_resnet50_orig', 'se_resnext26_32x4d_orig', 'sk_resnet18', 'sk_resnet26']
REDUCTIONS = {32: [2, 4, 8, 16, 32], 16: [2, 4, 8, 16, 16], 8: [2, 4, 8, 8, 8]}


@pytest.mark.parametrize('name', ALL)
@pytest.mark.parametrize('output_stride', [32, 16, 8])
def test_feature_info_of_every_model(name, output_stride):
    model = timm.create_model(name, features_only=True, output_stride=output_stride, device='meta')
    plain = timm.create_model(name, device='meta')
    assert model.feature_info.reduction() == REDUCTIONS[output_stride]
    assert model.feature_info.channels() == [info['num_chs'] for info in plain.feature_info]
    assert model.feature_info.module_name() == ['act1', 'layer1', 'layer2', 'layer3', 'layer4']


@pytest.mark.parametrize('name', REPRESENTATIVE)
@pytest.mark.parametrize('output_stride', [16, 8])
def test_dilated_features_match_feature_info(name, output_stride):
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model(name, features_only=True, output_stride=output_stride)).eval()
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        features = model(x)
    for feature, info in zip(features, model.feature_info.get_dicts()):
        assert feature.shape[1:] == (info['num_chs'], IMG // info['reduction'], IMG // info['reduction'])
        assert torch.isfinite(feature).all()
    # Dilation, not just a missing stride: the SK paths of dilated stages widen their receptive fields.
    for module_name, module in model.named_modules():
        if isinstance(module, SelectiveKernel):
            dilations = [path.conv.dilation[0] for path in module.paths]
            stage_dilation = dilations[0]
            assert dilations == [stage_dilation * (i + 1) for i in range(module.num_paths)], module_name
            if module_name.startswith('layer4.1'):
                assert stage_dilation == 32 // output_stride


def test_dilated_backbone_keeps_its_weights():
    # output_stride changes no parameter: a dilated backbone loads the classifier's weights strictly.
    classifier = timm.create_model('sk_resnet18')
    backbone = timm.create_model('sk_resnet18', features_only=True, output_stride=8)
    trunk = {k: v for k, v in classifier.state_dict().items() if not k.startswith('fc.')}
    backbone.load_state_dict(trunk, strict=True)


class TinyFPN(nn.Module):
    """Lateral 1x1 convs, a top-down pathway and 3x3 smoothing, as in Feature Pyramid Networks."""

    def __init__(self, in_channels, width=32):
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in in_channels])
        self.smooth = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in in_channels])

    def forward(self, features):
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:])
        return [conv(f) for conv, f in zip(self.smooth, laterals)]


@pytest.mark.parametrize('name,output_stride', [('sk_resnet18', 16), ('se_resnet18', 32)])
def test_fpn_on_the_backbone_trains(name, output_stride):
    torch.manual_seed(0)
    backbone = timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4), output_stride=output_stride)
    neck = TinyFPN(backbone.feature_info.channels())
    backbone.train()
    x = torch.randn(2, 3, IMG, IMG).to(memory_format=torch.channels_last)
    pyramid = neck(backbone(x))
    assert [p.shape[-1] for p in pyramid] == [IMG // r for r in backbone.feature_info.reduction()]
    loss = sum(p.square().mean() for p in pyramid)
    loss.backward()
    for n, p in backbone.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    first_conv = dict(backbone.named_parameters())['conv1.weight']
    assert first_conv.grad.abs().sum() > 0

"""The networks of the two non-timm weight sources, written from their published code, for use as test references.

* mmpretrain's ``SEResNet`` classifier (open-mmlab/mmpretrain, ``mmpretrain/models/backbones/seresnet.py``,
  ``mmpretrain/models/utils/se_layer.py``): an ImageClassifier with ``backbone``, a global-average-pool neck and
  ``head.fc``; the SE convs are mmcv ConvModules (``.conv`` with bias, then the activation).
* moskomule/senet.pytorch's ``se_resnet50`` (``senet/se_resnet.py``, ``senet/se_module.py``): torchvision's ResNet
  with an SE bottleneck whose SE layer is ``Sequential(Linear(C, C/16, bias=False), ReLU, Linear, Sigmoid)``.

Both use torchvision's ResNet body, as the sources do, with blocks written here.
"""
from torch import nn
from torchvision.models.resnet import ResNet

__all__ = ['build_source_network']


class _ConvModule(nn.Module):
    """mmcv's ConvModule without a norm: a biased conv, then an activation."""

    def __init__(self, in_channels, out_channels, act):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=True)
        self.activate = act

    def forward(self, x):
        return self.activate(self.conv(x))


class _MMSELayer(nn.Module):
    def __init__(self, channels, ratio=16):
        super().__init__()
        hidden = max(8, int(channels // ratio + 4) // 8 * 8)  # make_divisible(channels // ratio, 8)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = _ConvModule(channels, hidden, nn.ReLU(inplace=True))
        self.conv2 = _ConvModule(hidden, channels, nn.Sigmoid())

    def forward(self, x):
        return x * self.conv2(self.conv1(self.global_avgpool(x)))


class _SenetPytorchSELayer(nn.Module):
    def __init__(self, channel, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        b, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)


def _se_bottleneck(se_attr: str, se_factory):
    """A torchvision-compatible bottleneck (stride on the 3x3) with an SE unit after bn3, before the addition."""

    class SEBottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                     norm_layer=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            setattr(self, se_attr, se_factory(planes * 4))
            self.downsample = downsample

        def forward(self, x):
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = getattr(self, se_attr)(self.bn3(self.conv3(out)))
            if self.downsample is not None:
                identity = self.downsample(x)
            return self.relu(out + identity)

    return SEBottleneck


class _MMClassifier(nn.Module):
    """mmpretrain's ImageClassifier: backbone → global average pool → head.fc."""

    def __init__(self, layers):
        super().__init__()
        self.backbone = ResNet(_se_bottleneck('se_layer', _MMSELayer), layers)
        self.backbone.fc = nn.Identity()  # the classifier lives in the head
        self.head = nn.Module()
        self.head.fc = nn.Linear(2048, 1000)
        self.in_chans = 3

    def forward(self, x):
        return self.head.fc(self.backbone(x))


def build_source_network(trained_as: str) -> nn.Module:
    """The network a non-timm manifest entry was trained as (its ``trained_as`` field)."""
    if trained_as == 'mmpretrain:seresnet50_8xb32_in1k':
        return _MMClassifier([3, 4, 6, 3])
    if trained_as == 'mmpretrain:seresnet101_8xb32_in1k':
        return _MMClassifier([3, 4, 23, 3])
    if trained_as == 'senet.pytorch:se_resnet50':
        model = ResNet(_se_bottleneck('se', _SenetPytorchSELayer), [3, 4, 6, 3])
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.in_chans = 3
        return model
    raise KeyError(f'no test reference for {trained_as}')

"""ResNet-50 (He et al., the "v1.5" form with the stride on the 3x3 conv), with torchvision's
module names, so its state_dict keys are torchvision's (conv1, bn1, layer1.0.conv1, ...,
layerN.0.downsample.{0,1}, fc) and its initialisation is torchvision's: kaiming_normal
(fan_out, ReLU gain) for every conv, BatchNorm weight 1 and bias 0, nn.Linear's default for fc.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

LAYERS_50 = (3, 4, 6, 3)


def conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=False)


def conv1x1(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 1, stride, bias=False)


class Bottleneck(nn.Module):
    """relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + downsample(x)): 1x1, 3x3 (stride), 1x1."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


def make_layer(inplanes: int, planes: int, blocks: int, stride: int = 1, block=Bottleneck) -> nn.Sequential:
    """`blocks` bottlenecks; the first changes the width (and stride) and has the 1x1 downsample."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(conv1x1(inplanes, planes * block.expansion, stride),
                                   nn.BatchNorm2d(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation for every Conv2d and BatchNorm2d under `module`."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class ResNet(nn.Module):
    """The 2-D ResNet trunk: stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), four stages of
    bottlenecks, global average pool, fc. `features` stops before the pool."""

    def __init__(self, layers: Sequence[int] = LAYERS_50, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        widths, strides = (64, 128, 256, 512), (1, 2, 2, 2)
        inplanes = 64
        for i, (planes, blocks, stride) in enumerate(zip(widths, layers, strides)):
            setattr(self, f"layer{i + 1}", make_layer(inplanes, planes, blocks, stride))
            inplanes = planes * Bottleneck.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        self.num_features = inplanes
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 with torchvision's keys and initialisation (25,557,032 parameters at 1000 classes)."""
    return ResNet(LAYERS_50, num_classes)

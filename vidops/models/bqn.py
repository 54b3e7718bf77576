"""Busy-Quiet Net ResNet-50 as busy-quiet-net's public code builds it (src/bqn_resnet.py, src/model.py).

    busy, quiet = mbpf1(clip)       Busy: motion band-pass stem (9x9 LoG sigma 1.1, 3-tap temporal
                                    filter with stride 3); Quiet: the first frame of each triplet
    Q = maxpool(relu(bn1(conv1(quiet))))        B = maxpool(relu(d_bn1(d_conv1(busy))))
    per block of the four stages (DuoPath):
        Q, B = path_c(Q), path_f(B)             two TSM-shifted bottlenecks (shift before conv1)
        Q, B = Q + BN(Conv1x1(B)), B + BN(Conv1x1(MBPM(Q)))   band-pass lateral, sigma 0.9, k = 7
                                                (k = 3 in layer4), BN gamma = beta = 0 at init
    logits = (fc(dropout(pool(Q))) + fc(dropout(pool(B)))) / 2, then averaged over the segments

Keys as the authors' (864 entries, 88,675,084 parameters at 400 classes): `base_model.mbpf1.*`,
`base_model.conv1/bn1` (Quiet stem), `base_model.d_conv1/d_bn1` (Busy stem),
`base_model.layerL.i.{path_f,path_c,mbpf,d_up,d_down}.*`, `base_model.fc.*`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.band_pass_lateral import BandPassLateral
from ..nn.busy_quiet import BusyQuietSplit
from ..nn.temporal_shift import TemporalShift
from ._common import check_impl, clip_frames, set_impl, video_to_frames
from .resnet import LAYERS_50, Bottleneck, conv1x1, init_weights

LATERAL_SIGMA = 0.9


class ShiftedBottleneck(Bottleneck):
    """A bottleneck whose residual branch reads the TSM-shifted input. The shift is a parameterless
    TemporalShift around an Identity (busy-quiet-net calls its shift inline, so the conv keys stay
    `conv1.weight`)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None, num_segments=8, impl="vidops"):
        super().__init__(inplanes, planes, stride, downsample)
        self.shift = TemporalShift(nn.Identity(), num_segments, 8, impl)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return super().residual(self.shift(x))


def _downsample(inplanes: int, outplanes: int, stride: int):
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes))


class DuoPath(BandPassLateral):
    """One BQN block: the Busy (path_f) and Quiet (path_c) bottlenecks, then the band-pass lateral
    connection between their outputs (this class's BandPassLateral part: mbpf, d_up, d_down)."""

    def __init__(self, inplanes: int, planes: int, stride: int, num_segments: int, kernel_size: int,
                 impl: str = "vidops"):
        out = planes * Bottleneck.expansion
        super().__init__(out, sigma=LATERAL_SIGMA, kernel_size=kernel_size, num_segments=num_segments)
        self.path_f = ShiftedBottleneck(inplanes, planes, stride, _downsample(inplanes, out, stride), num_segments, impl)
        self.path_c = ShiftedBottleneck(inplanes, planes, stride, _downsample(inplanes, out, stride), num_segments, impl)
        for name in ("mbpf", "d_up", "d_down"):  # the authors' key order: path_f, path_c, mbpf, d_up, d_down
            self._modules[name] = self._modules.pop(name)

    def forward(self, qb):
        q, b = qb
        return super().forward(self.path_c(q), self.path_f(b))


class BusyQuietResNet(nn.Module):
    """The BQN trunk (the authors' `base_model`): a clip (N, 3, 3S, H, W) -> per-frame logits
    (N*S, num_classes)."""

    def __init__(self, num_classes: int, num_segments: int, dropout: float = 0.5, impl: str = "vidops"):
        super().__init__()
        self.num_segments = num_segments
        self.mbpf1 = BusyQuietSplit(3, sigma=1.1, kernel_size=9, quiet="first")
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.d_conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.d_bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        inplanes = 64
        for i, (planes, blocks, stride) in enumerate(zip((64, 128, 256, 512), LAYERS_50, (1, 2, 2, 2))):
            k = 3 if i == 3 else 7
            layer = [DuoPath(inplanes, planes, stride, num_segments, k, impl)]
            inplanes = planes * Bottleneck.expansion
            layer += [DuoPath(inplanes, planes, 1, num_segments, k, impl) for _ in range(1, blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self)
        for m in self.modules():  # the lateral connections start as exact no-ops (BN gamma = beta = 0)
            if isinstance(m, DuoPath):
                for seq in (m.d_up, m.d_down):
                    nn.init.zeros_(seq[1].weight)
                    nn.init.zeros_(seq[1].bias)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        busy, quiet = self.mbpf1(clip)
        q = self.maxpool(self.relu(self.bn1(self.conv1(video_to_frames(quiet)))))
        b = self.maxpool(self.relu(self.d_bn1(self.d_conv1(video_to_frames(busy)))))
        q, b = self.layer4(self.layer3(self.layer2(self.layer1((q, b)))))
        pooled = torch.cat([torch.flatten(self.avgpool(q), 1), torch.flatten(self.avgpool(b), 1)], 0)
        logits_q, logits_b = self.fc(self.dropout(pooled)).chunk(2)
        return (logits_q + logits_b) / 2


class BQNResNet50(nn.Module):
    """BQN ResNet-50 on a clip of 3*num_segments frames (num_segments triplets):
    (N, 3, 3S, H, W) or the TSN layout (N, 9S, H, W) -> (N, num_classes). H, W >= 56: the
    reflect padding of the layer3/layer4 laterals must be narrower than their feature maps."""

    def __init__(self, num_classes: int, num_segments: int = 8, dropout: float = 0.5, impl: str = "vidops"):
        super().__init__()
        if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(f"vidops.models.BQNResNet50: num_segments must be a positive int, got {num_segments!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"vidops.models.BQNResNet50: num_classes must be a positive int, got {num_classes!r}")
        check_impl(impl, "BQNResNet50")
        self.num_classes, self.num_segments = num_classes, num_segments
        self.base_model = BusyQuietResNet(num_classes, num_segments, dropout, impl)
        set_impl(self, impl)

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S, num_classes) per-segment logits of a clip."""
        clip = clip_frames(x, 3 * self.num_segments, type(self).__name__)
        H, W = clip.shape[-2:]
        if min(H, W) < 56:
            raise ValueError(f"vidops.models.BQNResNet50: H and W must be >= 56 (the laterals' reflect padding "
                             f"needs wider feature maps), got {H}x{W}")
        return self.base_model(clip).view(clip.shape[0], self.num_segments, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(x).mean(1)


def bqn_resnet50(num_classes: int, num_segments: int = 8, impl: str = "vidops", dropout: float = 0.5) -> BQNResNet50:
    """Busy-Quiet Net ResNet-50 with the authors' keys (864 entries). Input: 3*num_segments frames."""
    return BQNResNet50(num_classes, num_segments, dropout, impl)

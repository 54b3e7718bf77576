"""Busy-Quiet Net on X3D-M as busy-quiet-net's public code builds it (src/bqn_x3d.py, src/model.py).

    clip: 3S frames (S = num_segments triplets; 48 frames for S = 16)
    busy, quiet = mbpf1(clip)    Busy: motion band-pass stem (9x9 LoG sigma 1.1, [-1, 2, -1]/3 in
                                 time with stride 3), S frames at full size; Quiet: the first frame
                                 of each triplet, bilinear x 0.625 (256 -> 160)
    B, Q = blocks.0.path_f(busy), blocks.0.path_c(quiet)        two X3D-M stems
    per residual block of the four stages (DuoPath, 26 of them):
        B, Q = path_f(B), path_c(Q)                             two X3D-M blocks
        B = B + up.2(up.1(resize(mbpf(Q), B's size)))           MBPM (LoG sigma 0.9, 7x7; 3x3 where
                                                                C = 192) -> 1x1 conv -> BatchNorm2d
        Q = Q + down.2(down.1(resize(B, Q's size)))             the updated B -> 1x1 conv -> BN2d
    logits = (blocks.5.path_f(B) + blocks.5.path_c(Q)) / 2      two X3D-M heads, global average pool

Keys as the authors' TSN-wrapped model (1,492 entries, `base_model.` prefix; `module.` of their
DataParallel checkpoints is stripped by load_checkpoint): 8,432,256 parameters at 400 classes.
Thesis Table 5.9 lists 6.6M: 8,432,256 - 1,788,144 (one X3D-M head) = 6,644,112, i.e. the table
leaves out the second head. Multiply-adds at the training input (48 x 256^2: busy 16 x 256^2,
quiet 16 x 160^2) by `count_flops`: 11.00 G = 9.96 G convolutions (8.70 G dense, 1.26 G
depthwise) + 1.04 G band-pass (the stem 0.77 G, the 26 laterals 0.27 G); bilinear resizes and
BatchNorms are not counted. No complete count gives the thesis's 9.7 G per view; the closest is
the convolutions alone (9.96 G), which is what counters that only see nn.Conv modules report
(the band-pass filters are functional convolutions there).

Input size: the authors' laterals resize by fixed factors (x 1.6, x 0.625), which match the two
pathways' maps only at H = W in 253-256 (509-512, ...). Here each lateral resizes to the other
pathway's map size (bilinear, align_corners=False), which is the same resize wherever the
authors' factors fit (at 253-256 the two coincide), so any H, W >= 79 runs: the quiet stage-3 map,
ceil(floor(0.625 H) / 16), must be at least 4 wide for the 7x7 band-pass's reflect padding.
T must be 3 * num_segments.

Initialisation: X3D's (pytorchvideo's), and the lateral BatchNorms' gamma and beta zero, so every
lateral starts as an exact no-op. The authors' code zeroes them too, but pytorchvideo's init, run
after, resets gamma to 1: with identity BN statistics (eval mode at initialisation) the laterals
then add the band-pass's gain (L1 norm ~827 for the 7x7 LoG divided by its near-zero sum) at every
block, and the features overflow to NaN in stage 3. With zero gammas a fresh model is finite in
eval mode; trained checkpoints carry their own BN values either way.

impl="reference" runs the laterals as the authors do (on (N*T, C, H, W) frames, nn.Upsample,
Conv2d, BatchNorm2d, their band-pass formulation) and the depthwise convs as nn.Conv3d;
impl="vidops" keeps the 5-D clip (no frame copies), fused band-pass and depthwise ops.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn._impl import uses_reference
from ..nn.band_pass_lateral import _apply_conv_bn_5d
from ..nn.busy_quiet import BusyQuietSplit
from ..nn.motion_band_pass import MotionBandPass
from ._common import check_impl, clip_frames, set_impl, video_to_frames
from .x3d import CONFIGS, X3D, _positive_int, follow_layout

LATERAL_SIGMA = 0.9
QUIET_SCALE = 160 / 256
MIN_SIZE = 79


class Resize(nn.Module):
    """Bilinear resize of (N*T, C, H, W) frames to a given size (align_corners=False, no
    antialias); `scale` records the authors' nn.Upsample factor. No parameters."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


def _lateral(channels: int, scale: float) -> nn.Sequential:
    seq = nn.Sequential(Resize(scale), nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
    nn.init.kaiming_normal_(seq[1].weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(seq[2].weight)
    nn.init.zeros_(seq[2].bias)
    return seq


def resize_frames(x: torch.Tensor, size) -> torch.Tensor:
    """Per-frame bilinear resize of (N, C, T, H, W) to (N, C, T, *size) without copying the clip
    into frames: NCDHW is viewed as (N, C*T, H, W), channels_last_3d as channels_last
    (N*T, C, H, W) frames; the output keeps the input's layout."""
    N, C, T, H, W = x.shape
    if tuple(size) == (H, W):
        return x
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        frames = x.transpose(1, 2).reshape(N * T, C, H, W)                 # a view (channels_last)
        y = F.interpolate(frames, size=tuple(size), mode="bilinear", align_corners=False)
        y = y.contiguous(memory_format=torch.channels_last)
        return y.view(N, T, C, *size).transpose(1, 2)
    y = F.interpolate(x.reshape(N, C * T, H, W), size=tuple(size), mode="bilinear", align_corners=False)
    return y.view(N, C, T, *size)


class DuoStem(nn.Module):
    def __init__(self, path_f: nn.Module, path_c: nn.Module):
        super().__init__()
        self.path_f, self.path_c = path_f, path_c


class DuoHead(nn.Module):
    def __init__(self, path_f: nn.Module, path_c: nn.Module):
        super().__init__()
        self.path_f, self.path_c = path_f, path_c

    def forward(self, b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return (self.path_c(q) + self.path_f(b)) / 2


class DuoPath(nn.Module):
    """One BQN X3D block: the Busy (path_f) and Quiet (path_c) X3D blocks, then the band-pass
    lateral connections (mbpf, up, down)."""

    impl = "vidops"

    def __init__(self, path_f: nn.Module, path_c: nn.Module, channels: int, impl: str = "vidops"):
        super().__init__()
        self.path_f, self.path_c = path_f, path_c
        self.mbpf = MotionBandPass(channels, LATERAL_SIGMA, 7 if channels < 192 else 3, temporal_stride=1,
                                   temporal_padding="replicate")
        self.up = _lateral(channels, 1 / QUIET_SCALE)
        self.down = _lateral(channels, QUIET_SCALE)
        self.impl = impl

    def forward(self, qb):
        q, b = qb
        b, q = self.path_f(b), self.path_c(q)
        if uses_reference(self):
            N, C, T = q.shape[:3]
            q4, b4 = video_to_frames(q), video_to_frames(b)
            band4 = video_to_frames(self.mbpf(q))
            b4 = b4 + self.up[2](self.up[1](self.up[0](band4, b4.shape[-2:])))
            q4 = q4 + self.down[2](self.down[1](self.down[0](b4, q4.shape[-2:])))
            video = lambda y: y.view(N, T, C, *y.shape[-2:]).transpose(1, 2)  # noqa: E731
            return follow_layout(video(q4), q), follow_layout(video(b4), b)
        band = resize_frames(self.mbpf(q), b.shape[-2:])
        b = b + _apply_conv_bn_5d(self.up[1:], band)
        q = q + _apply_conv_bn_5d(self.down[1:], resize_frames(b, q.shape[-2:]))
        return q, b


class DuoStage(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, qb):
        for block in self.res_blocks:
            qb = block(qb)
        return qb


class BusyQuietX3DNet(nn.Module):
    """The authors' `base_model`: a clip (N, 3, 3S, H, W) -> logits (N, num_classes)."""

    def __init__(self, num_classes: int, dropout: float = 0.5, impl: str = "vidops"):
        super().__init__()
        _, _, depth = CONFIGS["x3d_m"]
        busy = X3D(num_classes, depth, dropout=dropout, impl=impl)
        quiet = X3D(num_classes, depth, dropout=dropout, impl=impl)
        blocks = [DuoStem(busy.blocks[0], quiet.blocks[0])]
        for s in range(1, 5):
            pairs = zip(busy.blocks[s].res_blocks, quiet.blocks[s].res_blocks)
            width = busy.blocks[s].res_blocks[0].branch2.conv_c.out_channels
            blocks.append(DuoStage([DuoPath(f, c, width, impl) for f, c in pairs]))
        for head in (busy.blocks[5], quiet.blocks[5]):
            head.pool.pool_size = None          # the authors' AdaptiveAvgPool3d(1)
        blocks.append(DuoHead(busy.blocks[5], quiet.blocks[5]))
        self.blocks = nn.ModuleList(blocks)
        self.mbpf1 = BusyQuietSplit(3, sigma=1.1, kernel_size=9, quiet="first", quiet_scale=QUIET_SCALE)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        busy, quiet = self.mbpf1(clip)
        if not clip.is_contiguous() and clip.is_contiguous(memory_format=torch.channels_last_3d):
            busy = busy.contiguous(memory_format=torch.channels_last_3d)
            quiet = quiet.contiguous(memory_format=torch.channels_last_3d)
        b, q = self.blocks[0].path_f(busy), self.blocks[0].path_c(quiet)
        for s in range(1, 5):
            q, b = self.blocks[s]((q, b))
        return self.blocks[5](b, q)


def quiet_map_sizes(H: int) -> list:
    """The quiet pathway's map size after the stem and each of the 4 stages, for input size H."""
    sizes, q = [], math.floor(H * QUIET_SCALE)
    for _ in range(5):
        q = (q + 1) // 2
        sizes.append(q)
    return sizes


class BQNX3D(nn.Module):
    """BQN X3D-M on 3 * num_segments frames: (N, 3, 3S, H, W) or the TSN layout (N, 9S, H, W) ->
    logits (N, num_classes). H, W >= 79 (see the module docstring). The authors' input: [0, 1]
    pixels normalised by mean 0.45, std 0.225, 256^2 crops."""

    crop_size = 256
    input_mean, input_std = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)

    def __init__(self, num_classes: int, num_segments: int = 16, dropout: float = 0.5, impl: str = "vidops"):
        super().__init__()
        name = type(self).__name__
        _positive_int("num_classes", name, num_classes)
        _positive_int("num_segments", name, num_segments)
        check_impl(impl, name)
        self.num_classes, self.num_segments = num_classes, num_segments
        self.base_model = BusyQuietX3DNet(num_classes, dropout, impl)
        set_impl(self, impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clip = clip_frames(x, 3 * self.num_segments, type(self).__name__)
        H, W = clip.shape[-2:]
        if min(H, W) < MIN_SIZE:
            raise ValueError(f"vidops.models.{type(self).__name__}: H and W must be >= {MIN_SIZE} (the quiet "
                             f"pathway's stage-3 map, ceil(floor(0.625 H) / 16), must be >= 4 for the 7x7 "
                             f"band-pass's reflect padding), got {H}x{W}")
        return self.base_model(clip)


def bqn_x3d_m(num_classes: int, num_segments: int = 16, impl: str = "vidops", dropout: float = 0.5) -> BQNX3D:
    """Busy-Quiet Net X3D-M with the authors' keys (1,492 entries; 8,432,256 parameters at 400
    classes, thesis Table 5.9's 6.6M is that minus one X3D head). Input: 3 * num_segments frames
    (48 for the thesis's 16 segments), any H, W >= 79 (the authors train and test at 256)."""
    return BQNX3D(num_classes, num_segments, dropout, impl)

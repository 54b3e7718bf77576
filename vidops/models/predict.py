"""The thesis's test recipe: class scores of a whole video from one or several views.

    scores = vidops.models.predict(model, "video.mp4", views="3x2")   # (num_classes,) probabilities
    scores = vidops.models.predict(model, frames)                     # frames: (T, H, W, 3) uint8

A view is one spatial crop of one temporal clip; "CxK" takes C crops (1: the centre crop; 3: three
crops covering the frame along its long side) of K clips, runs the model on each and averages
the softmax scores over the C*K views (thesis 3.6.1, 5.5.1: one centre-cropped clip for the
ablations, 3 crops x 2 clips or more for the final tables).

Temporal sampling follows the model's family (`sampling_of(model)`):

- "segment" (TSN, the TSM family: models with `num_segments`): the video is cut into S equal
  segments; a clip takes `frames_per_segment` consecutive frames from each (1 for TSM / RNL, 3 for
  BQN's triplets, T for DAN), clip k of K starting at (k + 1/2) / K of every segment (K = 1: the
  segment centres, TSN's test sampling).
- "dense" (X3D, SlowFast-style, and TeSNet's K consecutive frames): a clip is `frames` frames
  `frame_stride` apart; K clips are spread evenly over the video (K = 1: the middle).

A model may set `sampling` ("segment" / "dense"), `frames`, `frame_stride`, `frames_per_segment`,
`crop_size`, `input_mean`, `input_std` as attributes to override what is derived here.

Spatial: the short side is resized (bilinear, antialiased) to `short_side` = crop * 256 / 224 for
the segment family (TSN: 256 then the 224 centre crop) and to the crop size for the dense family
(X3D); "1xK" takes the centre `crop_size` square, "3xK" three `short_side` squares at the start,
centre and end of the long side. Frames are scaled to [0, 1] and normalised by the model's mean
and standard deviation (ImageNet's for the ResNet-50 models; 0.45 / 0.225 for X3D, pytorchvideo's).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
# X3D's published clips (frames x stride): XS 4 x 12, S 13 x 6, M and L 16 x 5
X3D_STRIDES = {4: 12, 13: 6, 16: 5}


@dataclass
class Sampling:
    """How `predict` samples a clip for `model`."""
    kind: str                   # "segment" or "dense"
    frames: int                 # frames per clip
    segments: int = 1           # segment sampling: S
    frames_per_segment: int = 1
    frame_stride: int = 1       # dense sampling
    crop_size: int = 224
    short_side: int = 256
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD


def _triplet_stem(model: nn.Module) -> bool:
    """The model's stem reads 3 consecutive frames per segment (BQN, Busy: a band-pass filter of
    temporal stride 3)."""
    from ..nn.busy_quiet import BusyQuietSplit
    from ..nn.motion_band_pass import MotionBandPass

    return any(isinstance(m, BusyQuietSplit) or (isinstance(m, MotionBandPass) and getattr(m, "temporal_stride", 1) == 3)
               for m in model.modules())


def _pool_frames(model: nn.Module) -> Optional[tuple]:
    for m in model.modules():
        size = getattr(m, "pool_size", None)
        if isinstance(size, tuple) and len(size) == 3:
            return size
    return None


def sampling_of(model: nn.Module) -> Sampling:
    """The model's test sampling (see the module docstring), from its attributes."""
    a = lambda name, default=None: getattr(model, name, default)  # noqa: E731
    kind = a("sampling") or ("segment" if a("num_segments") else "dense")
    if kind not in ("segment", "dense"):
        raise ValueError(f"vidops.models.predict: {type(model).__name__}.sampling must be 'segment' or 'dense', "
                         f"got {kind!r}")
    if kind == "segment":
        S = a("num_segments")
        if not S:
            raise ValueError(f"vidops.models.predict: segment sampling needs {type(model).__name__}.num_segments")
        per = a("frames_per_segment") or (3 if _triplet_stem(model) else 1)
        crop = a("crop_size", 224)
        return Sampling("segment", S * per, S, per, 1, crop, a("short_side") or round(crop * 256 / 224),
                        a("input_mean", IMAGENET_MEAN), a("input_std", IMAGENET_STD))
    pool = _pool_frames(model)
    frames = a("frames") or a("K") or (pool[0] if pool else None)
    if not frames:
        raise ValueError(f"vidops.models.predict: dense sampling needs {type(model).__name__}.frames")
    x3d = pool is not None
    stride = a("frame_stride") or (X3D_STRIDES.get(frames, 1) if x3d else 1)
    crop = a("crop_size") or (32 * pool[1] if x3d else 224)
    mean = a("input_mean", KINETICS_MEAN if x3d else IMAGENET_MEAN)
    std = a("input_std", KINETICS_STD if x3d else IMAGENET_STD)
    short = a("short_side") or (crop if x3d else round(crop * 256 / 224))
    return Sampling("dense", frames, 1, 1, stride, crop, short, mean, std)


def decode_video(path: Union[str, os.PathLike]) -> torch.Tensor:
    """All frames of a video file as (T, H, W, 3) uint8 RGB, decoded with PyAV (`pip install av`)."""
    try:
        import av
    except ImportError as e:
        raise ImportError("vidops.models.predict: reading a video file needs PyAV (pip install av); "
                          "or pass the decoded frames as a (T, H, W, 3) uint8 tensor") from e
    import numpy as np

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"vidops.models.predict: no video frames in {path}")
    return torch.from_numpy(np.stack(frames))


def frame_indices(num_frames: int, s: Sampling, clips: int) -> list:
    """[clip][frame] indices into a video of num_frames frames (clamped: a short video repeats its
    last frame, as the authors' loaders do)."""
    out = []
    for k in range(clips):
        if s.kind == "segment":
            tick = num_frames / s.segments
            starts = [int(tick * (i + (k + 0.5) / clips)) for i in range(s.segments)]
            idx = [st + j for st in starts for j in range(s.frames_per_segment)]
        else:
            span = (s.frames - 1) * s.frame_stride + 1
            room = max(num_frames - span, 0)
            start = room / 2 if clips == 1 else room * k / (clips - 1)
            idx = [int(round(start)) + j * s.frame_stride for j in range(s.frames)]
        out.append([min(max(i, 0), num_frames - 1) for i in idx])
    return out


def _parse_views(views: str):
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", str(views))
    if not m or int(m.group(1)) not in (1, 3) or int(m.group(2)) < 1:
        raise ValueError(f"vidops.models.predict: views must be 'CxK' with C in (1, 3) crops and K >= 1 clips "
                         f"(e.g. '1x1', '3x2'), got {views!r}")
    return int(m.group(1)), int(m.group(2))


def _resize_short(clip: torch.Tensor, short: int) -> torch.Tensor:
    """(C, T, H, W) float, short side to `short` (bilinear, antialiased)."""
    H, W = clip.shape[-2:]
    if min(H, W) == short:
        return clip
    scale = short / min(H, W)
    size = (short, max(short, round(W * scale))) if H <= W else (max(short, round(H * scale)), short)
    return F.interpolate(clip, size=size, mode="bilinear", align_corners=False, antialias=True)


def _crops(clip: torch.Tensor, n: int, crop: int, full: int) -> list:
    """n = 1: the centre crop x crop square; n = 3: three full x full squares along the long side."""
    H, W = clip.shape[-2:]
    size = crop if n == 1 else min(full, H, W)
    if n == 1:
        ys, xs = [(H - size) // 2], [(W - size) // 2]
    elif H <= W:
        ys, xs = [(H - size) // 2] * 3, [0, (W - size) // 2, W - size]
    else:
        ys, xs = [0, (H - size) // 2, H - size], [(W - size) // 2] * 3
    return [clip[..., y:y + size, x:x + size] for y, x in zip(ys, xs)]


def views_of(video: torch.Tensor, s: Sampling, views: str = "1x1") -> torch.Tensor:
    """The C*K views (V, 3, frames, h, w) of a decoded video (T, H, W, 3) uint8, normalised."""
    crops, clips = _parse_views(views)
    T = video.shape[0]
    out = []
    for idx in frame_indices(T, s, clips):
        clip = video[idx].permute(3, 0, 1, 2).float().div_(255)          # (3, frames, H, W)
        clip = _resize_short(clip, s.short_side)
        if crops == 1 and min(clip.shape[-2:]) < s.crop_size:
            raise ValueError(f"vidops.models.predict: frames {tuple(clip.shape[-2:])} are smaller than the crop "
                             f"{s.crop_size}")
        out += _crops(clip, crops, s.crop_size, s.short_side)
    mean = torch.tensor(s.mean).view(3, 1, 1, 1)
    std = torch.tensor(s.std).view(3, 1, 1, 1)
    return torch.stack([(v - mean) / std for v in out])


def _as_video(video) -> torch.Tensor:
    if isinstance(video, (str, os.PathLike)):
        return decode_video(video)
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"vidops.models.predict: video must be a file path or a tensor, got {type(video).__name__}")
    if video.dim() != 4 or video.shape[-1] != 3 or video.shape[0] < 1:
        raise ValueError(f"vidops.models.predict: video must be decoded frames (T, H, W, 3) (uint8, or float "
                         f"in [0, 255]), got shape {tuple(video.shape)}")
    return video


@torch.no_grad()
def predict(model: nn.Module, video, views: str = "1x1", *, batch_size: int = 8, device=None,
            return_views: bool = False) -> torch.Tensor:
    """Class probabilities of a video: the softmax scores of the model's logits averaged over
    the views (see the module docstring).

    Args:
        model: a vidops model (run in eval mode; its training flag is restored afterwards).
        video: a file path (decoded with PyAV) or decoded frames (T, H, W, 3), uint8 RGB (a float
            tensor is taken in [0, 255]).
        views: "CxK": C in (1, 3) spatial crops times K temporal clips ("1x1", "3x2", "3x10").
        batch_size: views per forward pass. device: where the model runs (default: its parameters').
        return_views: also return the per-view scores (V, num_classes).
    Returns: (num_classes,) probabilities (and the (V, num_classes) scores with return_views).
    """
    frames = _as_video(video)
    s = sampling_of(model)
    clips = views_of(frames, s, views)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    dtype = next((q.dtype for q in model.parameters() if q.is_floating_point()), torch.float32)
    was_training = model.training
    model.eval()
    try:
        scores = []
        for i in range(0, clips.shape[0], max(1, int(batch_size))):
            out = model(clips[i:i + batch_size].to(device, dtype))
            logits = out[0] if isinstance(out, (tuple, list)) else out
            scores.append(logits.float().softmax(-1).cpu())
    finally:
        model.train(was_training)
    per_view = torch.cat(scores)
    mean = per_view.mean(0)
    return (mean, per_view) if return_views else mean

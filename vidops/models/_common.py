"""What every model shares: the two input layouts and the `impl` switch."""
from __future__ import annotations

import torch
from torch import nn

from ..nn._impl import IMPLS


def clip_frames(x: torch.Tensor, frames: int, model: str) -> torch.Tensor:
    """A clip of `frames` RGB frames as an (N, 3, frames, H, W) view. Takes (N, 3, frames, H, W)
    or the authors' TSN layout (N, frames*3, H, W) (frames stacked on channels, RGB within)."""
    if x.dim() == 5 and x.shape[1] == 3 and x.shape[2] == frames:
        return x
    if x.dim() == 4 and x.shape[1] == 3 * frames:
        N, _, H, W = x.shape
        return x.view(N, frames, 3, H, W).transpose(1, 2)
    raise ValueError(f"vidops.models.{model}: input must be a clip (N, 3, {frames}, H, W) or the TSN layout "
                     f"(N, {3 * frames}, H, W), got shape {tuple(x.shape)}")


def video_to_frames(video: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N*T, C, H, W), n-major and t-minor as the 2-D backbones expect."""
    N, C, T, H, W = video.shape
    return video.transpose(1, 2).reshape(N * T, C, H, W)


def check_impl(impl: str, model: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"vidops.models.{model}: impl must be one of {IMPLS}, got {impl!r}")
    return impl


def set_impl(model: nn.Module, impl: str) -> nn.Module:
    """Set `impl` ("vidops": the fused ops, or "reference": plain PyTorch as the authors' code runs)
    on every submodule that has the attribute; parameters are untouched. Returns the model."""
    check_impl(impl, "set_impl")
    for m in model.modules():
        if hasattr(m, "impl"):
            m.impl = impl
    return model


def impls(model: nn.Module) -> set:
    """The set of `impl` values found on the model's submodules."""
    return {m.impl for m in model.modules() if hasattr(m, "impl")}

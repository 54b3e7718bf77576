"""The two layouts every video module accepts: (N, C, T, H, W), and the 2-D backbone's
(N*T, C, H, W) with num_segments (n-major, t-minor)."""
from __future__ import annotations

import torch


def to_video(x: torch.Tensor, num_segments, module: str) -> torch.Tensor:
    """(N*T, C, H, W) -> an (N, C, T, H, W) view; 5-D input passes through."""
    if x.dim() == 5:
        return x
    if x.dim() != 4:
        raise ValueError(f"vidops.nn.{module}: input must be (N, C, T, H, W) or (N*T, C, H, W), "
                         f"got shape {tuple(x.shape)}")
    if num_segments is None:
        raise ValueError(f"vidops.nn.{module}: a 4-D (N*T, C, H, W) input needs num_segments")
    NT, C, H, W = x.shape
    if NT % num_segments != 0:
        raise ValueError(f"vidops.nn.{module}: batch {NT} of the (N*T, C, H, W) input is not a "
                         f"multiple of num_segments={num_segments}")
    return x.view(NT // num_segments, num_segments, C, H, W).transpose(1, 2)


def to_frames(y: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N*T, C, H, W)."""
    N, C, T, H, W = y.shape
    return y.transpose(1, 2).reshape(N * T, C, H, W)


class WeightHolder(torch.nn.Module):
    """A submodule that only holds `weight`, so parameter keys read `conv_s.weight` as in the
    reference's LoG/LO modules."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)

"""`TemporalShift`: TSM's residual temporal shift as a wrapper of a layer.

STAND-IN: a temporary plain-PyTorch version of this module, with the interface of the real one
(`TemporalShift(net, num_segments, fold_div=8, impl="vidops")`, attributes .net, .num_segments,
.fold_div, .impl), so that the models can be built and tested before the fused
`vidops.temporal_shift` op lands. The real module replaces this file at merge.

On (N*T, C, H, W), n-major and t-minor, with fold = C // fold_div:

    out[:, t, 0:fold]      = x[:, t+1, 0:fold]       (zero at t = T-1)
    out[:, t, fold:2fold]  = x[:, t-1, fold:2fold]   (zero at t = 0)
    out[:, t, 2fold:]      = x[:, t, 2fold:]

then `net(out)`. Wrapping the first conv of a bottleneck gives the residual shift: the identity
path sees the unshifted input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMPLS = ("vidops", "reference")


def _check(x: torch.Tensor, num_segments: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"vidops.nn.TemporalShift: input must be (N*T, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] % num_segments:
        raise ValueError(f"vidops.nn.TemporalShift: batch {x.shape[0]} is not a multiple of "
                         f"num_segments={num_segments}")


def shift_slice_copy(x: torch.Tensor, num_segments: int, fold_div: int = 8) -> torch.Tensor:
    """The shift as TSM's ops/temporal_shift.py runs it: zeros, then three slice copies."""
    nt, c, h, w = x.shape
    v = x.view(nt // num_segments, num_segments, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


def shift_out_of_place(x: torch.Tensor, num_segments: int, fold_div: int = 8) -> torch.Tensor:
    """The same shift with no in-place writes: two zero-padded time slices and a concatenation."""
    nt, c, h, w = x.shape
    v = x.view(nt // num_segments, num_segments, c, h, w)
    fold = c // fold_div
    if fold == 0:
        return x.clone()
    # F.pad on (N, T, C, H, W) pads from the last dim: (w, w, h, h, c, c, t_before, t_after)
    future = F.pad(v[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))
    past = F.pad(v[:, :-1, fold:2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))
    return torch.cat([future, past, v[:, :, 2 * fold:]], 2).reshape(nt, c, h, w)


class TemporalShift(nn.Module):
    """net(shift(x)) with the TSM shift above; impl "vidops" or "reference" (the slice copies).
    Both are plain PyTorch in this stand-in and give identical results."""

    def __init__(self, net: nn.Module, num_segments: int, fold_div: int = 8, impl: str = "vidops"):
        super().__init__()
        if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(f"vidops.nn.TemporalShift: num_segments must be a positive int, got {num_segments!r}")
        if isinstance(fold_div, bool) or not isinstance(fold_div, int) or fold_div < 1:
            raise ValueError(f"vidops.nn.TemporalShift: fold_div must be a positive int, got {fold_div!r}")
        if impl not in IMPLS:
            raise ValueError(f"vidops.nn.TemporalShift: impl must be one of {IMPLS}, got {impl!r}")
        self.net, self.num_segments, self.fold_div, self.impl = net, num_segments, fold_div, impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check(x, self.num_segments)
        if self.impl == "reference":
            shifted = shift_slice_copy(x, self.num_segments, self.fold_div)
        elif self.impl == "vidops":
            shifted = shift_out_of_place(x, self.num_segments, self.fold_div)
        else:
            raise ValueError(f"vidops.nn.TemporalShift: impl must be one of {IMPLS}, got {self.impl!r}")
        return self.net(shifted)

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, fold_div={self.fold_div}, impl={self.impl!r}"

"""Reference temporal shift (TSM).

x (N*T, C, H, W) is viewed as (N, T, C, H, W); with fold = C // fold_div,

    out[:, t, c] = x[:, t + 1, c]   for c in [0, fold)        (0 at t = T - 1)
    out[:, t, c] = x[:, t - 1, c]   for c in [fold, 2 fold)   (0 at t = 0)
    out[:, t, c] = x[:, t, c]       for c >= 2 fold.

The backward is the mirror shift: the first fold's gradient goes to frame t + 1, the second's to
frame t - 1 (the same formula with the two folds' directions swapped).

Two forms:
- `temporal_shift`: out of place from slices, zero blocks and torch.cat (traceable, exportable,
  differentiable by autograd); the test oracle in float64.
- `temporal_shift_slice_copy`: the form TSM's code runs (a zeros_like output and three slice
  assignments), what models built with impl="reference" use and what the benchmark compares with.
"""
from __future__ import annotations

import torch


def _shift_frames(v: torch.Tensor, step: int) -> torch.Tensor:
    """v (N, T, c, H, W) -> w with w[:, t] = v[:, t + step] (step = +1 or -1), zero outside [0, T)."""
    N = v.shape[0]
    zero = v.new_zeros((N, 1) + tuple(v.shape[2:]))
    if step > 0:
        return torch.cat([v[:, 1:], zero], 1)
    return torch.cat([zero, v[:, :-1]], 1)


def temporal_shift(x: torch.Tensor, num_segments: int, fold_div: int = 8, backward: bool = False) -> torch.Tensor:
    """The shift (backward=True: its mirror, the gradient map) as slices and torch.cat; a new tensor."""
    NT, C, H, W = x.shape
    v = x.reshape(NT // num_segments, num_segments, C, H, W)
    fold = C // fold_div
    first, second, rest = v[:, :, :fold], v[:, :, fold:2 * fold], v[:, :, 2 * fold:]
    step = -1 if backward else 1
    out = torch.cat([_shift_frames(first, step), _shift_frames(second, -step), rest], 2)
    return out.reshape(NT, C, H, W)


def temporal_shift_slice_copy(x: torch.Tensor, num_segments: int, fold_div: int = 8) -> torch.Tensor:
    """The shift as TSM's code writes it: zeros_like, then three slice copies.

    Checks its arguments like `vidops.temporal_shift` (TSM's code returns x unchanged when
    C < fold_div; here that is an error, so both impls of a model accept the same inputs).
    """
    from ..ops.temporal_shift import check_args

    check_args(x, num_segments, fold_div)
    NT, C, H, W = x.shape
    v = x.view(NT // num_segments, num_segments, C, H, W)
    fold = C // fold_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.view(NT, C, H, W)

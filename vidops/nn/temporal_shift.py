"""`TemporalShift`: TSM's residual shift, a wrapper that shifts its input before the wrapped layer."""
from __future__ import annotations

import torch

from ..ops.temporal_shift import temporal_shift
from ..reference.temporal_shift import temporal_shift_slice_copy

IMPLS = ("vidops", "reference")


class TemporalShift(torch.nn.Module):
    """forward(x) = net(temporal_shift(x, num_segments, fold_div)) on (N*T, C, H, W) frames.

    Wrapping a bottleneck's conv1 (`block.conv1 = TemporalShift(block.conv1, 8)`) shifts the
    residual branch only, as TSM does; the wrapped layer is the submodule `net`, so the keys are
    TSM's (`conv1.net.weight`). `impl` is a plain attribute, switchable at any time:
    "vidops" runs vidops.temporal_shift (its backend chosen as usual), "reference" the slice-copy
    form of TSM's code (vidops.reference.temporal_shift.temporal_shift_slice_copy).
    """

    def __init__(self, net: torch.nn.Module, num_segments: int = 8, fold_div: int = 8, impl: str = "vidops"):
        super().__init__()
        for name, v in (("num_segments", num_segments), ("fold_div", fold_div)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"vidops.nn.TemporalShift: {name} must be a positive int, got {v!r}")
        self.net = net
        self.num_segments = num_segments
        self.fold_div = fold_div
        self.impl = impl
        self._check_impl()

    def _check_impl(self):
        if self.impl not in IMPLS:
            raise ValueError(f"vidops.nn.TemporalShift: impl must be one of {IMPLS}, got {self.impl!r}")

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        self._check_impl()
        if self.impl == "reference":
            return temporal_shift_slice_copy(x, self.num_segments, self.fold_div)
        return temporal_shift(x, self.num_segments, self.fold_div)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.shift(x))

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, fold_div={self.fold_div}, impl={self.impl!r}"

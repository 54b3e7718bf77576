"""`count_flops(model, clip_shape)`: multiply-adds of one forward pass, vidops ops included.

PyTorch's `torch.utils.flop_counter.FlopCounterMode` counts convolutions and matrix products; this
module registers the formulas of the vidops custom ops with it, so a model built from vidops layers
is counted with its band-pass, projection, attention and shift ops, as the thesis's tables count
them (multiply-adds, "GFLOPs" in the video literature: a TSM ResNet-50 at 8 x 224^2 is ~32.9 G).
The model runs on the meta device: nothing is computed and no memory is allocated.

Formulas (multiply-adds of the operator as defined, not of a particular kernel):
- motion_band_pass: the k x k filter on every input frame plus the 3 temporal taps per output
  frame, `N C H W (T k^2 + 3 T_out)` (the authors' conv2d-then-conv1d order);
- busy_quiet: the same for Busy (Quiet is a copy or a resize);
- depthwise_conv3d: `N C T_out H_out W_out kt kh kw` (the output's size: strided convs count the
  positions they compute, as PyTorch counts nn.Conv3d; no bias);
- temporal_relation: `N P h w C'` (P = T(T-1)/2 pairs);
- pixelwise_temporal_projection: per pixel the Gram matrix and solve, `T D^2 + D^3`, and per
  channel the projection and residual, `C T (2 D + 1)`;
- temporal_squeeze: the same with the basis shared by all pixels, `N (K D^2 + D^3) + N C H W K (2 D + 1)`;
- region_attention: logits and weighted sum, `N Lq Lk (d + dv)`; "dot" as `Q (K^T V)`, `2 N L d dv`;
- temporal_shift: 0 (a copy).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _mbp(x_shape, sw_shape, tw_shape, *args, out_shape=None, **kwargs) -> int:
    N, C, T, H, W = x_shape
    k = sw_shape[-1]
    T_out = out_shape[2] if out_shape is not None and len(out_shape) == 5 else T
    return 2 * N * C * H * W * (T * k * k + 3 * T_out)


def _busy_quiet(x_shape, sw_shape, tw_shape, *args, **kwargs) -> int:
    N, C, T, H, W = x_shape
    k = sw_shape[-1]
    return 2 * N * C * H * W * (T * k * k + 3 * (T // 3))


def _depthwise(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    positions = _prod(out_shape) if out_shape is not None and len(out_shape) == 5 else _prod(x_shape)
    return 2 * positions * _prod(w_shape[-3:])


def _temporal_relation(f_shape, *args, **kwargs) -> int:
    N, C, T, h, w = f_shape
    return 2 * N * (T * (T - 1) // 2) * h * w * C


def _pwtp(x_shape, basis_shape, *args, **kwargs) -> int:
    N, C, T, H, W = x_shape
    D = basis_shape[1] // T
    return 2 * N * H * W * (T * D * D + D ** 3 + C * T * (2 * D + 1))


def _tsp(x_shape, basis_shape, *args, **kwargs) -> int:
    N, C, K, H, W = x_shape
    D = basis_shape[-1]
    return 2 * (N * (K * D * D + D ** 3) + N * C * H * W * K * (2 * D + 1))


def _region_attention(q_shape, v_shape, k_shape=None, mode="softmax", *args, **kwargs) -> int:
    N, d = q_shape[0], q_shape[1]
    Lq = _prod(q_shape[2:])
    Lk = Lq if k_shape is None else _prod(k_shape[2:])
    dv = v_shape[1]
    if mode == "dot":
        return 2 * 2 * N * Lk * d * dv
    return 2 * N * Lq * Lk * (d + dv)


def _zero(*args, **kwargs) -> int:
    return 0


FORMULAS = {
    "motion_band_pass": _mbp,
    "busy_quiet": _busy_quiet,
    "depthwise_conv3d": _depthwise,
    "temporal_relation": _temporal_relation,
    "pixelwise_temporal_projection": _pwtp,
    "temporal_squeeze": _tsp,
    "region_attention": _region_attention,
    "temporal_shift": _zero,
}

_registered: set = set()


def register_vidops_flop_formulas() -> list:
    """Register the formulas above for every vidops op this build has; returns the op names."""
    import vidops  # noqa: F401  (the ops register themselves on import)

    names = []
    for name, fn in FORMULAS.items():
        if name not in _registered:
            try:
                packet = getattr(torch.ops.vidops, name)
            except (AttributeError, RuntimeError):
                continue
            register_flop_formula(packet)(fn)
            _registered.add(name)
        names.append(name)
    return names


@dataclass
class FlopCount:
    """Multiply-adds of one forward pass: `macs` in all, `by_op` per operator."""
    macs: int
    by_op: dict = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def __str__(self) -> str:
        rows = ", ".join(f"{k} {v / 1e9:.3g}G" for k, v in sorted(self.by_op.items(), key=lambda kv: -kv[1]))
        return f"{self.gmacs:.2f} GMACs ({rows})"


def count_flops(model: torch.nn.Module, clip_shape, *, dtype: torch.dtype = torch.float32) -> FlopCount:
    """Multiply-adds of `model` on one input of `clip_shape` (include the batch: (1, 3, 8, 224, 224)).

    The model is copied to the meta device and run there in eval mode; returns a `FlopCount`.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"vidops.models.count_flops: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(clip_shape, (tuple, list, torch.Size)) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in clip_shape):
        raise ValueError(f"vidops.models.count_flops: clip_shape must be a tuple of non-negative ints, got {clip_shape!r}")
    register_vidops_flop_formulas()
    meta = copy.deepcopy(model).to(device="meta").eval()
    x = torch.empty(tuple(clip_shape), device="meta", dtype=dtype)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(x)
    by_op = {str(op).split(".")[-1] if "vidops" not in str(op) else str(op).replace("vidops.", ""): int(n) // 2
             for op, n in counter.get_flop_counts()["Global"].items()}
    return FlopCount(macs=int(counter.get_total_flops()) // 2, by_op=by_op)

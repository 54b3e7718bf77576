"""Triton kernel of `vidops.temporal_shift` (forward and its mirror, the backward).

x (N*T, C, H, W) viewed as (N, T, C, H, W), fold = C // fold_div:
    out[n*T + t, c] = x[n*T + t + d(c), c]  when 0 <= t + d(c) < T, else 0,
    d(c) = +1 on [0, fold), -1 on [fold, 2 fold), 0 after; the backward negates d.

The output is walked in its memory order as a (rows, inner) matrix: contiguous output rows are the
(n*T + t, c) planes with the H*W pixels inner; channels_last output rows are the (n*T + t, h, w)
positions with the C channels inner. A program copies a [BLOCK_R, BLOCK_I] tile, reading x through
its strides (any layout). The shift moves bit patterns: the launcher views x as an integer type of
the same width, so every floating dtype is copied exactly.
"""
import torch
import triton
import triton.language as tl

from ._linalg import next_pow2

OP = "temporal_shift"

_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


@triton.jit
def _shift_kernel(x_ptr, out_ptr, rows, inner, T, C, HW, W, fold,
                  s0, s1, s2, s3,
                  BACKWARD: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                  BLOCK_R: tl.constexpr, BLOCK_I: tl.constexpr):
    r = (tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)).to(tl.int64)[:, None]
    i = (tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)).to(tl.int64)[None, :]
    m = (r < rows) & (i < inner)
    if CHANNELS_LAST:
        nt = r // HW
        hw = r - nt * HW
        c = i
    else:
        nt = r // C
        c = r - nt * C
        hw = i
    h = hw // W
    w = hw - h * W
    d = tl.where(c < fold, 1, tl.where(c < 2 * fold, -1, 0))
    if BACKWARD:
        d = -d
    ts = nt % T + d
    valid = m & (ts >= 0) & (ts < T)
    src = x_ptr + (nt + d) * s0 + c * s1 + h * s2 + w * s3
    v = tl.load(src, mask=valid, other=0)
    tl.store(out_ptr + r * inner + i, v, mask=m)


def output_is_channels_last(x):
    """Same rule as the op's fake: channels_last inputs (that are not also contiguous) stay so."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _shift(x, num_segments, fold_div, backward):
    if x.dim() != 4:
        raise ValueError(f"vidops.{OP} (triton): x must be 4-D (N*T, C, H, W), got shape {tuple(x.shape)}")
    NT, C, H, W = x.shape
    cl = output_is_channels_last(x)
    out = torch.empty_like(x, memory_format=torch.channels_last if cl else torch.contiguous_format)
    if out.numel() == 0:
        return out
    bits = _BITS[x.element_size()]
    xb, ob = x.view(bits), out.view(bits)
    HW = H * W
    rows, inner = (NT * HW, C) if cl else (NT * C, HW)
    BLOCK_I = min(next_pow2(inner), 512)
    BLOCK_R = max(1, min(next_pow2(rows), 2048 // BLOCK_I))
    grid = (triton.cdiv(rows, BLOCK_R), triton.cdiv(inner, BLOCK_I))
    _shift_kernel[grid](xb, ob, rows, inner, num_segments, C, HW, W, C // fold_div, *x.stride(),
                        BACKWARD=backward, CHANNELS_LAST=cl, BLOCK_R=BLOCK_R, BLOCK_I=BLOCK_I)
    return out


def forward(x, num_segments, fold_div):
    """The shift of x; a new tensor (channels_last for a channels_last x, else contiguous)."""
    return _shift(x, num_segments, fold_div, False)


def backward(grad_out, num_segments, fold_div):
    """The mirror shift of grad_out (the gradient of `forward`)."""
    return _shift(grad_out, num_segments, fold_div, True)

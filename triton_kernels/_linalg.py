"""Helpers shared by the PWTP and TSP Triton kernels: D <= 4 Cholesky, fully unrolled.

The D x D system matrix G = A^T A + reg * I is held as its 10 upper entries (g00 .. g33), each a
tensor of any shape (a scalar per sample for TSP, a [BLOCK] vector of pixels for PWTP). Entries of
unused dimensions (d >= D) are ignored: `chol_factor` returns zeros for them and `chol_solve`
returns y_d = 0 there, so callers never build more than the D x D part.

Every pivot is floored at FLOOR before its square root: a singular G (A = 0 with a tiny
regulariser flushed to zero) then gives a finite factor, and b = A^T v = 0 gives y = 0.

Python floats reach a Triton kernel as float32. Values that must keep float64 precision (eps, the
upsampling scales) are passed as two float32 halves, hi + lo, and recombined in the kernel's
accumulation type (`split_f64` on the host, `join` in the kernel): about 48 significant bits.
"""
import triton
import triton.language as tl

from ._common import interpreter as interpreted
from ._common import next_pow2, tl_acc


def device_fn(fn):
    """`triton.jit` for a device helper called from the kernels. Under the interpreter the plain
    Python function is used instead: the calling kernel has already patched triton.language for
    the whole launch, and the interpreter's per-call handling of a jitted helper (re-patching the
    language, milliseconds per call) dominated the tests' run time. Same source either way."""
    return fn if interpreted() else triton.jit(fn)


TINY = 1e-30  # the regulariser eps * (trace(A^T A) / D + TINY) keeps A = 0 well defined
FLOOR32 = 1e-30  # pivot floor, float32 accumulation (a normal float32)
FLOOR64 = 1e-300  # pivot floor, float64 accumulation


def split_f64(v):
    """v -> (hi, lo), two float32-representable floats with hi + lo == v to ~48 bits."""
    import struct

    hi = struct.unpack("f", struct.pack("f", float(v)))[0]
    lo = struct.unpack("f", struct.pack("f", float(v) - hi))[0]
    return hi, lo


def acc_dtype(*tensors):
    """Triton accumulation type for these inputs: float64 when any is float64, else float32."""
    import torch

    return tl_acc(torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors)
                  else torch.float32)


def floor_for(acc):
    return FLOOR64 if acc == tl.float64 else FLOOR32


def block_size(gpu_block, rows, row_elems, limit=1 << 15):
    """Rows per program. On a GPU `gpu_block`; under the interpreter as many rows as fit `limit`
    elements (every program and every nested jit call costs milliseconds there, numpy ops on
    bigger blocks almost nothing), so tests run one or few programs per sample."""
    if not interpreted():
        return gpu_block
    return max(gpu_block, min(next_pow2(max(rows, 1)), max(16, next_pow2(limit // max(row_elems, 1)) // 2)))


@device_fn
def join(hi, lo, ACC: tl.constexpr):
    """hi + lo (two float32 kernel arguments) in precision ACC, as a 0-d tensor."""
    return tl.full([], hi, ACC) + tl.full([], lo, ACC)


@device_fn
def chol_factor(g00, g01, g02, g03, g11, g12, g13, g22, g23, g33, D: tl.constexpr, FLOOR: tl.constexpr):
    """G = L L^T for the leading D x D block. Returns the strictly lower entries
    (l10, l20, l30, l21, l31, l32) and the inverse diagonal (i00, i11, i22, i33); zeros where d >= D."""
    zero = tl.full(g00.shape, 0.0, g00.dtype)
    i00 = 1.0 / tl.sqrt(tl.maximum(g00, FLOOR))
    l10 = zero
    l20 = zero
    l30 = zero
    l21 = zero
    l31 = zero
    l32 = zero
    i11 = zero
    i22 = zero
    i33 = zero
    if D >= 2:
        l10 = g01 * i00
        i11 = 1.0 / tl.sqrt(tl.maximum(g11 - l10 * l10, FLOOR))
    if D >= 3:
        l20 = g02 * i00
        l21 = (g12 - l20 * l10) * i11
        i22 = 1.0 / tl.sqrt(tl.maximum(g22 - l20 * l20 - l21 * l21, FLOOR))
    if D >= 4:
        l30 = g03 * i00
        l31 = (g13 - l30 * l10) * i11
        l32 = (g23 - l30 * l20 - l31 * l21) * i22
        i33 = 1.0 / tl.sqrt(tl.maximum(g33 - l30 * l30 - l31 * l31 - l32 * l32, FLOOR))
    return l10, l20, l30, l21, l31, l32, i00, i11, i22, i33


@device_fn
def chol_solve(l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, b0, b1, b2, b3, D: tl.constexpr):
    """y = G^{-1} b from the factor of `chol_factor` (forward then backward substitution).
    b_d for d >= D is ignored (pass any tensor of b0's shape); y_d = 0 there."""
    z0 = b0 * i00
    y1 = tl.full(z0.shape, 0.0, z0.dtype)
    y2 = tl.full(z0.shape, 0.0, z0.dtype)
    y3 = tl.full(z0.shape, 0.0, z0.dtype)
    if D == 1:
        y0 = z0 * i00
    if D == 2:
        z1 = (b1 - l10 * z0) * i11
        y1 = z1 * i11
        y0 = (z0 - l10 * y1) * i00
    if D == 3:
        z1 = (b1 - l10 * z0) * i11
        z2 = (b2 - l20 * z0 - l21 * z1) * i22
        y2 = z2 * i22
        y1 = (z1 - l21 * y2) * i11
        y0 = (z0 - l10 * y1 - l20 * y2) * i00
    if D == 4:
        z1 = (b1 - l10 * z0) * i11
        z2 = (b2 - l20 * z0 - l21 * z1) * i22
        z3 = (b3 - l30 * z0 - l31 * z1 - l32 * z2) * i33
        y3 = z3 * i33
        y2 = (z2 - l32 * y3) * i22
        y1 = (z1 - l21 * y2 - l31 * y3) * i11
        y0 = (z0 - l10 * y1 - l20 * y2 - l30 * y3) * i00
    return y0, y1, y2, y3

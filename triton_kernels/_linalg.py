"""Helpers shared by the PWTP and TSP Triton kernels: the D <= 4 LDL^T solve, fully unrolled.

The kernels solve with G = A^T A + lam I, lam = e * trace(A^T A) / D (e for A = 0),
e = max(eps, FLOOR_ULPS * u) (u the accumulation type's machine epsilon; `effective_eps` on the
host), the same algorithm as the C++/CUDA kernels and the reference: G = L diag(d) L^T with each
pivot floored at lam (exact pivots of G are >= lam, so the floor only absorbs the rounding that
makes a rank-deficient G indefinite), then forward/back substitution. A is first scaled by the
power of two `pow2_scale` of its largest entry (to [0.5, 1)), so that nothing over- or underflows
and the projection does not depend on the basis's scale. The Gram matrix A^T A is
held as its 10 upper entries (g00 .. g33), each a tensor of any shape (a scalar per sample for
TSP, a [BLOCK] vector of pixels for PWTP). Entries of unused dimensions (d >= D) are ignored:
`ldl_factor` returns zeros for them and `ldl_solve` returns y_d = 0 there, so callers never build
more than the D x D part.

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


FLOOR_ULPS = 8  # e >= FLOOR_ULPS machine epsilons of the accumulation type
MACHINE_EPS = {32: 2.0 ** -23, 64: 2.0 ** -52}


def effective_eps(eps, acc):
    """e = max(eps, FLOOR_ULPS * u) for the accumulation type `acc` (tl.float32 or tl.float64)."""
    return max(float(eps), FLOOR_ULPS * MACHINE_EPS[64 if acc == tl.float64 else 32])


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
def regulariser(g00, g11, g22, g33, e, D: tl.constexpr):
    """lam = e * trace / D, e where the trace is 0 (A = 0); g_dd for d >= D must be zero."""
    tr = g00 + g11 + g22 + g33
    return e * tl.where(tr > 0.0, tr / D, 1.0)


@device_fn
def pow2_scale(m, ACC: tl.constexpr):
    """The power of two s with s m in [0.5, 1) for m > 0, from m's exponent bits, clamped to the
    normal numbers (a subnormal m gets 2^126, float64 2^1022); 0 where m = 0 (a zero basis: y = s y'
    and grad_A = s grad_A' are 0 there). The C++/CUDA
    kernels' pow2_scale and the reference's (frexp) give the same s."""
    if ACC == tl.float64:
        ex = (m.to(tl.int64, bitcast=True) >> 52) & 0x7FF
        sb = tl.minimum(tl.maximum(2045 - ex, 1), 2046)
        s = (sb << 52).to(tl.float64, bitcast=True)
    else:
        ex = (m.to(tl.int32, bitcast=True) >> 23) & 0xFF
        sb = tl.minimum(tl.maximum(253 - ex, 1), 254)
        s = (sb << 23).to(tl.float32, bitcast=True)
    return tl.where(m > 0.0, s, 0.0)


@device_fn
def ldl_factor(g00, g01, g02, g03, g11, g12, g13, g22, g23, g33, lam, D: tl.constexpr):
    """G = A^T A + lam I = L diag(d) L^T for the leading D x D block, pivots floored at lam.
    Returns the strictly lower entries of L (l10, l20, l30, l21, l31, l32) and the inverse pivots
    (i00, i11, i22, i33); zeros where d >= D."""
    zero = tl.full(g00.shape, 0.0, g00.dtype)
    d0 = tl.maximum(g00 + lam, lam)
    i00 = 1.0 / d0
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
        d1 = tl.maximum(g11 + lam - l10 * l10 * d0, lam)
        i11 = 1.0 / d1
    if D >= 3:
        l20 = g02 * i00
        l21 = (g12 - l20 * l10 * d0) * i11
        d2 = tl.maximum(g22 + lam - l20 * l20 * d0 - l21 * l21 * d1, lam)
        i22 = 1.0 / d2
    if D >= 4:
        l30 = g03 * i00
        l31 = (g13 - l30 * l10 * d0) * i11
        l32 = (g23 - l30 * l20 * d0 - l31 * l21 * d1) * i22
        d3 = tl.maximum(g33 + lam - l30 * l30 * d0 - l31 * l31 * d1 - l32 * l32 * d2, lam)
        i33 = 1.0 / d3
    return l10, l20, l30, l21, l31, l32, i00, i11, i22, i33


@device_fn
def ldl_solve(l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, b0, b1, b2, b3, D: tl.constexpr):
    """y = G^{-1} b from the factor of `ldl_factor` (forward then backward substitution).
    b_d for d >= D is ignored (pass any tensor of b0's shape); y_d = 0 there."""
    y1 = tl.full(b0.shape, 0.0, b0.dtype)
    y2 = tl.full(b0.shape, 0.0, b0.dtype)
    y3 = tl.full(b0.shape, 0.0, b0.dtype)
    if D == 1:
        y0 = b0 * i00
    if D == 2:
        z1 = b1 - l10 * b0
        y1 = z1 * i11
        y0 = b0 * i00 - l10 * y1
    if D == 3:
        z1 = b1 - l10 * b0
        z2 = b2 - l20 * b0 - l21 * z1
        y2 = z2 * i22
        y1 = z1 * i11 - l21 * y2
        y0 = b0 * i00 - l10 * y1 - l20 * y2
    if D == 4:
        z1 = b1 - l10 * b0
        z2 = b2 - l20 * b0 - l21 * z1
        z3 = b3 - l30 * b0 - l31 * z1 - l32 * z2
        y3 = z3 * i33
        y2 = z2 * i22 - l32 * y3
        y1 = z1 * i11 - l21 * y2 - l31 * y3
        y0 = b0 * i00 - l10 * y1 - l20 * y2 - l30 * y3
    return y0, y1, y2, y3
